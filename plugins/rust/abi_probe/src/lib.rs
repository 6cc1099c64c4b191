//! `abi_probe`: exercises the host functions one at a time.
//!
//! The request header `x-case` selects what a request does. Results are
//! written back as *request* headers named `x-result-*` (so an embedder can
//! read them right after `on_request_headers`, or after the request resumes
//! for the asynchronous cases), unless the case answers with a local reply.
//! The exact inputs and outputs of every case are listed in
//! `plugins/rust/README.md`; the host's integration tests assert them.
//!
//! Where the SDK's convenience methods would `unwrap()` a status that a case
//! wants to report, the case calls `proxy_wasm::hostcalls` directly and writes
//! the status name (`Status`'s `Debug` form, e.g. `NotFound`) instead.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{
    Action, BufferType, ContextType, GrpcStatusCode, LogLevel, MetricType, Status,
};
use std::time::{Duration, UNIX_EPOCH};

proxy_wasm::main! {{
    // Installs the SDK's logger and a panic hook, so the `trap` case logs its
    // panic message at critical level before the module traps.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(ProbeRoot { metrics: None })
    });
}}

/// The probe expects to run with this vm_id (the `queue` case resolves its
/// own queue through it).
const VM_ID: &str = "probe-vm";
const QUEUE_NAME: &str = "probe-queue";
const SHARED_KEY: &str = "probe/counter";
const CALLOUT_TIMEOUT: Duration = Duration::from_millis(500);

fn log(level: LogLevel, message: &str) {
    hostcalls::log(level, message).unwrap();
}

/// Metric ids, defined once per VM and copied into every HTTP context.
#[derive(Clone, Copy)]
struct Metrics {
    requests: u32,
    gauge: u32,
    latency: u32,
    ticks: u32,
}

impl Metrics {
    fn define() -> Metrics {
        let define = |metric_type, name| hostcalls::define_metric(metric_type, name).unwrap();
        Metrics {
            requests: define(MetricType::Counter, "probe_requests"),
            gauge: define(MetricType::Gauge, "probe_gauge"),
            latency: define(MetricType::Histogram, "probe_latency"),
            ticks: define(MetricType::Counter, "probe_ticks"),
        }
    }
}

struct ProbeRoot {
    metrics: Option<Metrics>,
}

impl Context for ProbeRoot {
    fn on_foreign_function(&mut self, function_id: u32, arguments_size: usize) {
        let args = hostcalls::get_buffer(BufferType::CallData, 0, arguments_size)
            .unwrap()
            .unwrap_or_default();
        log(
            LogLevel::Info,
            &format!(
                "probe foreign: function_id={} args={}",
                function_id,
                String::from_utf8_lossy(&args)
            ),
        );
    }
}

impl RootContext for ProbeRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.metrics = Some(Metrics::define());
        self.register_shared_queue(QUEUE_NAME);

        // A VM configuration that is a decimal number turns on the tick timer
        // with that period in milliseconds; anything else leaves it off.
        let vm_config = self.get_vm_configuration().unwrap_or_default();
        let period = std::str::from_utf8(&vm_config)
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok());
        if let Some(ms) = period.filter(|&ms| ms > 0) {
            self.set_tick_period(Duration::from_millis(ms));
        }
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        true
    }

    fn on_tick(&mut self) {
        if let Some(metrics) = self.metrics {
            hostcalls::increment_metric(metrics.ticks, 1).unwrap();
        }
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        // Drain everything: the host signals readiness once per enqueue, but
        // may coalesce signals.
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            log(
                LogLevel::Info,
                &format!("probe queue: {}", String::from_utf8_lossy(&item)),
            );
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // define_metric is idempotent per name, so defining here is only a
        // fallback for a host that skipped on_vm_start.
        let metrics = self.metrics.unwrap_or_else(Metrics::define);
        Some(Box::new(Probe {
            metrics,
            case: String::new(),
            body_op: String::new(),
            stream_messages: String::new(),
            stream_initial: None,
            stream_trailing: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Probe {
    metrics: Metrics,
    /// Value of `x-case`, remembered for the later callbacks.
    case: String,
    /// Value of `x-body-op` for the `body` case.
    body_op: String,
    /// gRPC stream state for the `grpc-stream` case.
    stream_messages: String,
    stream_initial: Option<u32>,
    stream_trailing: Option<u32>,
}

fn status_name(status: Status) -> String {
    format!("{:?}", status)
}

fn or_none(value: Option<Vec<u8>>) -> String {
    value.map_or_else(
        || "none".to_string(),
        |v| String::from_utf8_lossy(&v).into_owned(),
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{:02x}", b)).collect()
}

/// Byte-wise replace, so bodies that are not UTF-8 survive untouched.
fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}

impl Probe {
    /// Results are *added* (proxy_add_header_map_value), so a result never
    /// depends on whether the host's replace also inserts missing keys.
    fn result(&self, name: &str, value: &str) {
        self.add_http_request_header(name, value);
    }

    fn dispatch_failed(&self, status: Status) -> Action {
        let body = format!("dispatch failed: {}", status_name(status));
        self.send_http_response(503, vec![], Some(body.as_bytes()));
        Action::Pause
    }

    fn case_log(&self) -> Action {
        for (level, name) in [
            (LogLevel::Trace, "trace"),
            (LogLevel::Debug, "debug"),
            (LogLevel::Info, "info"),
            (LogLevel::Warn, "warn"),
            (LogLevel::Error, "error"),
            (LogLevel::Critical, "critical"),
        ] {
            log(level, &format!("probe {}", name));
        }
        let level = hostcalls::get_log_level().unwrap();
        self.result("x-result-log-level", &(level as u32).to_string());
        Action::Continue
    }

    fn case_time(&self) -> Action {
        let since_epoch = self
            .get_current_time()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.result("x-result-time", &since_epoch.as_nanos().to_string());
        Action::Continue
    }

    fn case_headers(&self) -> Action {
        let pairs = self.get_http_request_headers();
        let count = pairs.len().to_string();
        let missing = match self.get_http_request_header("x-nope") {
            None => "none".to_string(),
            Some(value) => format!("present:{}", value),
        };
        // Replace the whole map: every original pair (x-case included), in
        // order, followed by the results gathered so far.
        let mut map: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        map.push(("x-result-count", &count));
        map.push(("x-result-missing", &missing));
        map.push(("x-result-rewritten", "yes"));
        self.set_http_request_headers(map);

        let size = self.get_http_request_headers().len();
        self.result("x-result-size", &size.to_string());
        Action::Continue
    }

    fn case_bytes_header(&self) -> Action {
        // "\xc3\x28" is an invalid UTF-8 sequence. After this the SDK's
        // String-based header getters would panic on this map, so nothing
        // later in this request reads the whole map.
        self.set_http_request_header_bytes("x-result-bytes", Some(&[0xc3, 0x28]));
        let back = self.get_http_request_header_bytes("x-result-bytes");
        let back = back.map_or_else(|| "none".to_string(), |b| hex(&b));
        self.result("x-result-bytes-hex", &back);
        Action::Continue
    }

    fn case_local(&self) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let status = self
            .get_http_request_header("x-status")
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(418);
        let body = format!("local:{}", path);
        self.send_http_response(status, vec![("x-local", "1")], Some(body.as_bytes()));
        Action::Pause
    }

    fn case_grpc_status(&self) -> Action {
        self.send_grpc_response(GrpcStatusCode::PermissionDenied, Some("denied"), vec![]);
        Action::Pause
    }

    fn case_http_call(&self) -> Action {
        let headers = vec![
            (":method", "GET"),
            (":path", "/check"),
            (":authority", "auth"),
            ("x-from", "probe"),
        ];
        match self.dispatch_http_call(
            "auth-cluster",
            headers,
            Some(b"ping"),
            vec![],
            CALLOUT_TIMEOUT,
        ) {
            Ok(_) => Action::Pause,
            Err(status) => self.dispatch_failed(status),
        }
    }

    fn case_grpc_call(&self) -> Action {
        let metadata: Vec<(&str, &[u8])> = vec![("x-md", b"1")];
        match self.dispatch_grpc_call(
            "grpc-cluster",
            "pkg.Service",
            "Method",
            metadata,
            Some(b"req"),
            CALLOUT_TIMEOUT,
        ) {
            Ok(_) => Action::Pause,
            Err(status) => self.dispatch_failed(status),
        }
    }

    /// Opens the stream and sends "m1"; returns the token.
    fn open_stream(&self) -> Result<u32, Status> {
        let token = self.open_grpc_stream("grpc-cluster", "pkg.Service", "Stream", vec![])?;
        hostcalls::send_grpc_stream_message(token, Some(b"m1"), false)?;
        Ok(token)
    }

    fn case_grpc_stream(&self) -> Action {
        match self.open_stream() {
            Ok(_) => Action::Pause,
            Err(status) => self.dispatch_failed(status),
        }
    }

    /// Cancelling is final: no gRPC callback follows, so the request is not
    /// paused. The second cancel of the same token reports the host's status.
    fn case_grpc_cancel(&self) -> Action {
        let token = match self.open_stream() {
            Ok(token) => token,
            Err(status) => return self.dispatch_failed(status),
        };
        let outcome = |r: Result<(), Status>| r.map_or_else(status_name, |()| "ok".to_string());
        self.result(
            "x-result-cancel",
            &outcome(hostcalls::cancel_grpc_stream(token)),
        );
        self.result(
            "x-result-cancel-again",
            &outcome(hostcalls::cancel_grpc_stream(token)),
        );
        Action::Continue
    }

    fn case_shared(&self) -> Action {
        let (value, cas) = self.get_shared_data(SHARED_KEY);
        let current = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let next = (current + 1).to_string();
        let shared = match self.set_shared_data(SHARED_KEY, Some(next.as_bytes()), cas) {
            Ok(()) => next.clone(),
            Err(status) => status_name(status),
        };
        self.result("x-result-shared", &shared);

        // Make a cas stale on purpose: read the current cas, write the same
        // value with it (which bumps the cas), then write again with the
        // now-outdated cas. This works on the very first request too, when
        // the key did not exist and `cas` above was None.
        let (_, cas_now) = self.get_shared_data(SHARED_KEY);
        let _ = self.set_shared_data(SHARED_KEY, Some(next.as_bytes()), cas_now);
        let stale = match self.set_shared_data(SHARED_KEY, Some(next.as_bytes()), cas_now) {
            Err(Status::CasMismatch) => "mismatch".to_string(),
            Ok(()) => "other:Ok".to_string(),
            Err(status) => format!("other:{}", status_name(status)),
        };
        self.result("x-result-cas", &stale);
        Action::Continue
    }

    fn case_queue(&self) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        let outcome = match self.resolve_shared_queue(VM_ID, QUEUE_NAME) {
            None => "missing".to_string(),
            Some(queue_id) => match self.enqueue_shared_queue(queue_id, Some(path.as_bytes())) {
                Ok(()) => "enqueued".to_string(),
                Err(status) => format!("error:{}", status_name(status)),
            },
        };
        self.result("x-result-queue", &outcome);
        Action::Continue
    }

    fn case_metrics(&self) -> Action {
        let m = self.metrics;
        let writes = [
            hostcalls::increment_metric(m.requests, 1),
            hostcalls::record_metric(m.gauge, 42),
            hostcalls::record_metric(m.latency, 7),
        ];
        for status in writes.iter().filter_map(|r| r.err()) {
            log(
                LogLevel::Warn,
                &format!("probe: metric write failed: {}", status_name(status)),
            );
        }
        let read = |id| hostcalls::get_metric(id).map_or_else(status_name, |v| v.to_string());
        self.result("x-result-counter", &read(m.requests));
        self.result("x-result-gauge", &read(m.gauge));
        Action::Continue
    }

    fn case_property(&self) -> Action {
        let get = |path: Vec<&str>| match hostcalls::get_property(path) {
            Ok(value) => or_none(value),
            Err(status) => format!("error:{}", status_name(status)),
        };
        self.result("x-result-path", &get(vec!["request", "path"]));
        self.result("x-result-plugin", &get(vec!["plugin_name"]));
        // The SDK panics (traps) unless the host answers Ok here.
        self.set_property(vec!["probe", "prop"], Some(b"v1"));
        self.result("x-result-prop", &get(vec!["probe", "prop"]));
        Action::Continue
    }

    fn case_foreign(&self) -> Action {
        let echo = match self.call_foreign_function("echo", Some(b"abc")) {
            Ok(value) => or_none(value),
            Err(status) => format!("error:{}", status_name(status)),
        };
        self.result("x-result-foreign", &echo);
        let missing = match self.call_foreign_function("nope", None) {
            Ok(_) => "unexpected-ok".to_string(),
            Err(status) => status_name(status),
        };
        self.result("x-result-foreign-missing", &missing);
        Action::Continue
    }
}

impl Context for Probe {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        // A failed or timed-out callout arrives with no headers at all.
        if num_headers == 0 {
            self.send_http_response(503, vec![], Some(b"callout failed"));
            return;
        }
        let status = self.get_http_call_response_header(":status");
        let body = self
            .get_http_call_response_body(0, body_size)
            .unwrap_or_default();
        let auth = self.get_http_call_response_header("x-auth");
        self.result("x-result-status", status.as_deref().unwrap_or("none"));
        self.result("x-result-body", &String::from_utf8_lossy(&body));
        self.result("x-result-callout-header", auth.as_deref().unwrap_or("none"));
        self.resume_http_request();
    }

    fn on_grpc_call_response(&mut self, _token_id: u32, status_code: u32, response_size: usize) {
        // The SDK maps proxy_on_grpc_receive to (status 0, size) and
        // proxy_on_grpc_close to (status, size 0).
        let body = if response_size > 0 {
            self.get_grpc_call_response_body(0, response_size)
        } else {
            None
        };
        self.result("x-result-grpc-status", &status_code.to_string());
        self.result("x-result-grpc-body", &or_none(body));
        self.resume_http_request();
    }

    fn on_grpc_stream_initial_metadata(&mut self, _token_id: u32, num_elements: u32) {
        self.stream_initial = Some(num_elements);
    }

    fn on_grpc_stream_message(&mut self, _token_id: u32, message_size: usize) {
        let message = self
            .get_grpc_stream_message(0, message_size)
            .unwrap_or_default();
        self.stream_messages
            .push_str(&String::from_utf8_lossy(&message));
    }

    fn on_grpc_stream_trailing_metadata(&mut self, _token_id: u32, num_elements: u32) {
        self.stream_trailing = Some(num_elements);
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        if self.case != "grpc-stream" {
            // Only grpc-stream waits for a close; anything else is a host bug
            // worth seeing in the log (e.g. a close after grpc-cancel).
            log(
                LogLevel::Warn,
                &format!(
                    "probe: unexpected grpc close token={} status={}",
                    token_id, status_code
                ),
            );
            return;
        }
        let count = |n: Option<u32>| n.map_or_else(|| "none".to_string(), |n| n.to_string());
        self.result("x-result-stream", &self.stream_messages);
        self.result("x-result-stream-status", &status_code.to_string());
        self.result("x-result-stream-initial", &count(self.stream_initial));
        self.result("x-result-stream-trailing", &count(self.stream_trailing));
        self.resume_http_request();
    }
}

impl HttpContext for Probe {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.case = self.get_http_request_header("x-case").unwrap_or_default();
        match self.case.as_str() {
            "log" => self.case_log(),
            "time" => self.case_time(),
            "headers" => self.case_headers(),
            "bytes-header" => self.case_bytes_header(),
            "local" => self.case_local(),
            "grpc-status" => self.case_grpc_status(),
            "body" => {
                self.body_op = self
                    .get_http_request_header("x-body-op")
                    .unwrap_or_default();
                Action::Continue
            }
            "http-call" => self.case_http_call(),
            "grpc-call" => self.case_grpc_call(),
            "grpc-stream" => self.case_grpc_stream(),
            "grpc-cancel" => self.case_grpc_cancel(),
            "shared" => self.case_shared(),
            "queue" => self.case_queue(),
            "metrics" => self.case_metrics(),
            "property" => self.case_property(),
            "foreign" => self.case_foreign(),
            "trap" => panic!("probe trap"),
            // "done", "trailers" (acts later) and anything unknown.
            _ => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.case != "body" {
            return Action::Continue;
        }
        // Pause until the end so the host buffers the whole body.
        if !end_of_stream {
            return Action::Pause;
        }
        match self.body_op.as_str() {
            "replace" => {
                let body = self.get_http_request_body(0, body_size).unwrap_or_default();
                self.set_http_request_body(0, body_size, &replace_all(&body, b"foo", b"bar"));
            }
            "prepend" => self.set_http_request_body(0, 0, b"<<"),
            "append" => self.set_http_request_body(body_size, 0, b">>"),
            _ => {}
        }
        Action::Continue
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.case == "trailers" {
            self.add_http_request_trailer("x-result-trailer", "seen");
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Not buffered: "!" goes after the last chunk the host delivers.
        if self.case == "body" && end_of_stream {
            self.set_http_response_body(body_size, 0, b"!");
        }
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.case == "trailers" && self.get_http_response_trailer("grpc-status").is_some() {
            self.set_http_response_trailer("grpc-status", Some("0"));
        }
        Action::Continue
    }
}
