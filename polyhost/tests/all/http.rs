//! HTTP filters: headers, bodies, trailers, local responses, logging,
//! properties, metrics and foreign functions.

use crate::harness::{
    RUST_TARGETS, Services, engine_tests, fixture, log_texts, request, start, with,
};
use polyhost::{Decision, Engine, HeaderMap, LogLevel, Plugin, PluginConfig, PluginErrorKind};

engine_tests!(
    hello_edits_request_and_response_headers,
    hello_denies_with_local_response,
    hello_rewrites_the_buffered_body,
    hello_reads_vm_configuration_and_logs_on_log,
    hello_rejects_invalid_configuration_with_its_log,
    probe_replaces_the_whole_header_map,
    probe_round_trips_non_utf8_header_bytes,
    probe_sends_local_responses,
    probe_edits_bodies_in_chunks,
    probe_edits_trailers,
    probe_logs_at_every_level_and_filters,
    probe_reads_the_clock,
    probe_reads_and_sets_properties,
    a_streams_provider_answers_after_what_the_plugin_set,
    request_query_and_url_path_split_the_path,
    probe_calls_foreign_functions,
    probe_updates_metrics,
    host_calls_plugin_foreign_function,
);

fn probe<E: Engine>(engine: &E, target: &str, services: &Services) -> polyhost::Vm<E> {
    let config = PluginConfig {
        vm_id: "probe-vm".into(),
        ..PluginConfig::named("abi_probe")
    };
    start(engine, &fixture(target, "abi_probe"), config, services).1
}

/// Sends request headers with `x-case: case` and returns the decision and
/// the request headers as the plugin left them.
fn run_case<E: Engine>(
    vm: &mut polyhost::Vm<E>,
    case: &str,
    extra: &[(&str, &str)],
) -> (polyhost::ContextId, Decision, HeaderMap) {
    let id = vm.create_http_stream().unwrap();
    let mut headers = with(request("/probe"), extra);
    headers.add("x-case", case);
    let decision = vm.on_request_headers(id, headers, false).unwrap();
    let after = vm.stream(id).unwrap().request_headers.clone();
    (id, decision, after)
}

fn hello_edits_request_and_response_headers<E: Engine>(engine: E) {
    for target in RUST_TARGETS {
        let services = Services::new();
        let (_, mut vm) = start(
            &engine,
            &fixture(target, "hello"),
            PluginConfig::named("hello"),
            &services,
        );
        let id = vm.create_http_stream().unwrap();
        let headers = with(
            request("/x"),
            &[
                ("user-agent", "curl"),
                ("x-remove-me", "1"),
                ("x-remove-me", "2"),
            ],
        );
        assert_eq!(
            vm.on_request_headers(id, headers, true).unwrap(),
            Decision::Continue
        );
        let req = &vm.stream(id).unwrap().request_headers;
        assert_eq!(req.get_str("x-hello"), Some("polyhost"), "{target}");
        assert_eq!(req.get_str("user-agent"), Some("polyhost-hello"));
        assert_eq!(req.get("x-remove-me"), None);
        assert_eq!(req.get_str(":path"), Some("/x"));
        let response: HeaderMap = [(":status", "200")].into_iter().collect();
        assert_eq!(
            vm.on_response_headers(id, response, false).unwrap(),
            Decision::Continue
        );
        assert_eq!(
            vm.stream(id)
                .unwrap()
                .response_headers
                .get_str("x-powered-by"),
            Some("polyhost")
        );
        assert!(log_texts(&vm).contains(&"info hello: GET /x".to_string()));
        vm.finish_stream(id).unwrap();
        assert!(vm.stream(id).is_none());
    }
}

fn hello_denies_with_local_response<E: Engine>(engine: E) {
    let services = Services::new();
    let config = PluginConfig {
        configuration: r#"{"deny_path": "/private", "header": "x-team", "value": "edge"}"#.into(),
        ..PluginConfig::named("hello")
    };
    let (_, mut vm) = start(&engine, &fixture("rust-wasip1", "hello"), config, &services);
    let id = vm.create_http_stream().unwrap();
    match vm
        .on_request_headers(id, request("/private/keys"), true)
        .unwrap()
    {
        Decision::LocalResponse(r) => {
            assert_eq!(r.status, 403);
            assert_eq!(r.body, b"access denied\n");
            assert_eq!(r.headers.get_str("x-denied-by"), Some("hello"));
            assert_eq!(r.grpc_status, None);
            // As Envoy's encoder path does, the reply goes through the
            // plugin's own response callbacks, which add their header; the
            // reply it sent earlier is not taken as a new decision.
            let encoded = vm.encode_local_response(id, r).unwrap();
            assert_eq!(encoded.status, 403);
            assert_eq!(encoded.body, b"access denied\n");
            assert_eq!(encoded.headers.get_str("x-denied-by"), Some("hello"));
            assert_eq!(encoded.headers.get_str("x-powered-by"), Some("polyhost"));
            assert_eq!(encoded.headers.get_str("content-type"), Some("text/plain"));
            assert_eq!(encoded.headers.get(":status"), None);
            let seen = &vm.stream(id).unwrap().response_headers;
            assert_eq!(seen.get_str(":status"), Some("403"));
        }
        other => panic!("expected a local response, got {other:?}"),
    }
    let other = vm.create_http_stream().unwrap();
    vm.on_request_headers(other, request("/public"), true)
        .unwrap();
    assert_eq!(
        vm.stream(other).unwrap().request_headers.get_str("x-team"),
        Some("edge")
    );
}

fn hello_rewrites_the_buffered_body<E: Engine>(engine: E) {
    for target in RUST_TARGETS {
        let services = Services::new();
        let (_, mut vm) = start(
            &engine,
            &fixture(target, "hello"),
            PluginConfig::named("hello"),
            &services,
        );
        let id = vm.create_http_stream().unwrap();
        vm.on_request_headers(id, request("/upload"), false)
            .unwrap();
        assert_eq!(
            vm.on_request_body(id, b"say hel", false).unwrap(),
            Decision::Pause
        );
        assert_eq!(
            vm.on_request_body(id, b"lo, hello", true).unwrap(),
            Decision::Continue
        );
        assert_eq!(vm.take_request_body(id), b"say HELLO, HELLO");
    }
}

fn hello_reads_vm_configuration_and_logs_on_log<E: Engine>(engine: E) {
    let services = Services::new();
    let config = PluginConfig {
        vm_configuration: "vm-config-1".into(),
        ..PluginConfig::named("hello")
    };
    let (_, mut vm) = start(&engine, &fixture("rust-wasip1", "hello"), config, &services);
    assert!(log_texts(&vm).contains(&"info hello: vm_start config=vm-config-1".to_string()));
    let id = vm.create_http_stream().unwrap();
    vm.on_request_headers(id, request("/"), true).unwrap();
    vm.on_response_headers(id, [(":status", "204")].into_iter().collect(), true)
        .unwrap();
    vm.finish_stream(id).unwrap();
    assert_eq!(log_texts(&vm).last().unwrap(), "debug hello: done 204");
}

fn hello_rejects_invalid_configuration_with_its_log<E: Engine>(engine: E) {
    let services = Services::new();
    let config = PluginConfig {
        configuration: "{".into(),
        ..PluginConfig::named("strict-hello")
    };
    let plugin = Plugin::load(
        &engine,
        &fixture("rust-wasip1", "hello"),
        config,
        services.host.clone(),
    )
    .unwrap();
    let err = plugin.new_vm().err().expect("configure must fail");
    assert_eq!(err.kind(), PluginErrorKind::StartFailed);
    assert_eq!(err.plugin(), "strict-hello");
    assert!(
        err.logs()
            .iter()
            .any(|l| l.message == "hello: invalid configuration" && l.level == LogLevel::Error)
    );
    let text = err.to_string();
    assert!(
        text.contains("strict-hello") && text.contains("proxy_on_configure"),
        "{text}"
    );
    assert!(text.contains("hello: invalid configuration"), "{text}");

    // bad_config always refuses.
    let plugin = Plugin::load(
        &engine,
        &fixture("rust-unknown", "bad_config"),
        PluginConfig::named("bad"),
        services.host.clone(),
    )
    .unwrap();
    let err = plugin.new_vm().err().expect("bad_config must fail");
    assert_eq!(err.kind(), PluginErrorKind::StartFailed);
    assert!(
        err.to_string()
            .contains("bad_config: rejecting configuration")
    );
}

fn probe_replaces_the_whole_header_map<E: Engine>(engine: E) {
    for target in RUST_TARGETS {
        let services = Services::new();
        let mut vm = probe(&engine, target, &services);
        let (_, decision, headers) = run_case(&mut vm, "headers", &[]);
        assert_eq!(decision, Decision::Continue);
        // :method :path :authority :scheme x-case
        assert_eq!(headers.get_str("x-result-count"), Some("5"));
        assert_eq!(headers.get_str("x-result-missing"), Some("none"));
        assert_eq!(headers.get_str("x-result-rewritten"), Some("yes"));
        assert_eq!(headers.get_str("x-result-size"), Some("8"));
        assert_eq!(headers.len(), 9);
        assert_eq!(headers.iter().next().unwrap().0, b":method");
    }
}

fn probe_round_trips_non_utf8_header_bytes<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-wasip1", &services);
    let (_, _, headers) = run_case(&mut vm, "bytes-header", &[]);
    assert_eq!(headers.get("x-result-bytes"), Some(&[0xc3, 0x28][..]));
    assert_eq!(headers.get_str("x-result-bytes-hex"), Some("c328"));
}

fn probe_sends_local_responses<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-unknown", &services);
    let (_, decision, _) = run_case(&mut vm, "local", &[("x-status", "451")]);
    let Decision::LocalResponse(r) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!((r.status, r.body.as_slice()), (451, &b"local:/probe"[..]));
    assert_eq!(r.headers.get_str("x-local"), Some("1"));
    let (_, decision, _) = run_case(&mut vm, "grpc-status", &[]);
    let Decision::LocalResponse(r) = decision else {
        panic!("{decision:?}")
    };
    assert_eq!(
        (r.status, r.grpc_status, r.body.as_slice()),
        (200, Some(7), &b"denied"[..])
    );
}

fn probe_edits_bodies_in_chunks<E: Engine>(engine: E) {
    for target in RUST_TARGETS {
        let services = Services::new();
        let mut vm = probe(&engine, target, &services);
        for (op, expected) in [
            ("replace", "bar bar"),
            ("prepend", "<<foo foo"),
            ("append", "foo foo>>"),
        ] {
            let (id, _, _) = run_case(&mut vm, "body", &[("x-body-op", op)]);
            assert_eq!(
                vm.on_request_body(id, b"foo ", false).unwrap(),
                Decision::Pause
            );
            assert_eq!(
                vm.on_request_body(id, b"foo", true).unwrap(),
                Decision::Continue
            );
            assert_eq!(
                String::from_utf8(vm.take_request_body(id)).unwrap(),
                expected,
                "{op} on {target}"
            );
            vm.on_response_headers(id, [(":status", "200")].into_iter().collect(), false)
                .unwrap();
            assert_eq!(
                vm.on_response_body(id, b"resp", true).unwrap(),
                Decision::Continue
            );
            assert_eq!(vm.take_response_body(id), b"resp!");
            vm.finish_stream(id).unwrap();
        }
    }
}

fn probe_edits_trailers<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-wasip1", &services);
    let (id, _, _) = run_case(&mut vm, "trailers", &[]);
    vm.on_request_trailers(id, [("x-t", "1")].into_iter().collect())
        .unwrap();
    assert_eq!(
        vm.stream(id)
            .unwrap()
            .request_trailers
            .get_str("x-result-trailer"),
        Some("seen")
    );
    vm.on_response_headers(id, [(":status", "200")].into_iter().collect(), false)
        .unwrap();
    vm.on_response_trailers(id, [("grpc-status", "13")].into_iter().collect())
        .unwrap();
    assert_eq!(
        vm.stream(id)
            .unwrap()
            .response_trailers
            .get_str("grpc-status"),
        Some("0")
    );
}

fn probe_logs_at_every_level_and_filters<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-wasip1", &services);
    vm.take_logs();
    let (_, _, headers) = run_case(&mut vm, "log", &[]);
    assert_eq!(
        log_texts(&vm),
        [
            "trace probe trace",
            "debug probe debug",
            "info probe info",
            "warn probe warn",
            "error probe error",
            "critical probe critical"
        ]
    );
    assert_eq!(headers.get_str("x-result-log-level"), Some("0"));

    let config = PluginConfig {
        vm_id: "probe-vm".into(),
        log_level: LogLevel::Warn,
        ..PluginConfig::named("abi_probe")
    };
    let (_, mut vm) = start(
        &engine,
        &fixture("rust-wasip1", "abi_probe"),
        config,
        &services,
    );
    let (_, _, headers) = run_case(&mut vm, "log", &[]);
    assert_eq!(
        log_texts(&vm),
        [
            "warn probe warn",
            "error probe error",
            "critical probe critical"
        ]
    );
    assert_eq!(headers.get_str("x-result-log-level"), Some("3"));

    // The level changes while the VM runs (an operator's `/logging`).
    vm.take_logs();
    vm.set_log_level(LogLevel::Debug);
    let (_, _, headers) = run_case(&mut vm, "log", &[]);
    assert_eq!(
        log_texts(&vm)[0],
        "debug probe debug",
        "on {}",
        engine.name()
    );
    assert_eq!(log_texts(&vm).len(), 5);
    assert_eq!(headers.get_str("x-result-log-level"), Some("1"));
}

fn probe_reads_the_clock<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-unknown", &services);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let (_, _, headers) = run_case(&mut vm, "time", &[]);
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let t: u128 = headers.get_str("x-result-time").unwrap().parse().unwrap();
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
}

fn probe_reads_and_sets_properties<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-wasip1", &services);
    let (_, _, headers) = run_case(&mut vm, "property", &[]);
    assert_eq!(headers.get_str("x-result-path"), Some("/probe"));
    assert_eq!(headers.get_str("x-result-plugin"), Some("abi_probe"));
    assert_eq!(headers.get_str("x-result-prop"), Some("v1"));
}

/// Properties the embedder provides for one stream, counting the reads.
struct RequestFacts(std::sync::atomic::AtomicUsize);

impl polyhost::services::PropertyProvider for RequestFacts {
    fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match path {
            [b"source", b"address"] => Some(b"10.1.2.3:4567".to_vec()),
            [b"route_name"] => Some(b"provided-route".to_vec()),
            _ => None,
        }
    }
}

fn a_streams_provider_answers_after_what_the_plugin_set<E: Engine>(engine: E) {
    // Logs `source.address`, then sets `route_name` and logs it, then
    // logs `cluster_name` (no one has it: nothing is logged).
    let imports = r#"
        (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (import "env" "proxy_get_property"
            (func $get (param i32 i32 i32 i32) (result i32)))
        (import "env" "proxy_set_property"
            (func $set (param i32 i32 i32 i32) (result i32)))
    "#;
    let body = r#"
        (data (i32.const 32) "source\00address")
        (data (i32.const 48) "route_name")
        (data (i32.const 64) "mine")
        (data (i32.const 96) "cluster_name")
        (func $log_property (param $path i32) (param $len i32)
            (if (i32.eqz (call $get (local.get $path) (local.get $len)
                    (i32.const 80) (i32.const 84)))
                (then (drop (call $log (i32.const 2)
                    (i32.load (i32.const 80)) (i32.load (i32.const 84)))))))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (call $log_property (i32.const 32) (i32.const 14))
            (drop (call $set (i32.const 48) (i32.const 10) (i32.const 64) (i32.const 4)))
            (call $log_property (i32.const 48) (i32.const 10))
            (call $log_property (i32.const 96) (i32.const 12))
            (i32.const 0))
    "#;
    let services = Services::new();
    let wasm = crate::harness::wat_plugin(imports, body);
    let (_, mut vm) = start(&engine, &wasm, PluginConfig::named("facts"), &services);
    let facts = std::sync::Arc::new(RequestFacts(Default::default()));
    let id = vm.create_http_stream().unwrap();
    vm.stream_mut(id).unwrap().provided = Some(polyhost::StreamProperties(facts.clone()));
    vm.on_request_headers(id, request("/"), true).unwrap();
    assert_eq!(
        log_texts(&vm),
        ["info 10.1.2.3:4567", "info mine"],
        "on {}",
        engine.name()
    );
    // `route_name` was the plugin's own: the provider was asked for the
    // address and for `cluster_name` only.
    assert_eq!(facts.0.load(std::sync::atomic::Ordering::Relaxed), 2);
    vm.finish_stream(id).unwrap();
}

fn request_query_and_url_path_split_the_path<E: Engine>(engine: E) {
    // Logs `request.url_path`, then `request.query`.
    let imports = r#"
        (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (import "env" "proxy_get_property"
            (func $get (param i32 i32 i32 i32) (result i32)))
    "#;
    let body = r#"
        (data (i32.const 32) "request\00url_path")
        (data (i32.const 64) "request\00query")
        (func $log_property (param $path i32) (param $len i32)
            (if (i32.eqz (call $get (local.get $path) (local.get $len)
                    (i32.const 80) (i32.const 84)))
                (then (drop (call $log (i32.const 2)
                    (i32.load (i32.const 80)) (i32.load (i32.const 84)))))))
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (call $log_property (i32.const 32) (i32.const 16))
            (call $log_property (i32.const 64) (i32.const 13))
            (i32.const 0))
    "#;
    let services = Services::new();
    let wasm = crate::harness::wat_plugin(imports, body);
    let (_, mut vm) = start(&engine, &wasm, PluginConfig::named("query"), &services);
    for (path, expected) in [
        ("/items?id=42&x=1", ["info /items", "info id=42&x=1"]),
        ("/items", ["info /items", "info "]),
    ] {
        let id = vm.create_http_stream().unwrap();
        vm.on_request_headers(id, request(path), true).unwrap();
        let logs = log_texts(&vm);
        assert_eq!(
            logs[logs.len() - 2..],
            expected,
            "{path} on {}",
            engine.name()
        );
        vm.finish_stream(id).unwrap();
    }
}

fn probe_calls_foreign_functions<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-wasip1", &services);
    let (_, _, headers) = run_case(&mut vm, "foreign", &[]);
    assert_eq!(headers.get_str("x-result-foreign"), Some("abc"));
    assert_eq!(
        headers.get_str("x-result-foreign-missing"),
        Some("NotFound")
    );
}

fn probe_updates_metrics<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-unknown", &services);
    let (_, _, first) = run_case(&mut vm, "metrics", &[]);
    let (_, _, second) = run_case(&mut vm, "metrics", &[]);
    assert_eq!(first.get_str("x-result-counter"), Some("1"));
    assert_eq!(second.get_str("x-result-counter"), Some("2"));
    assert_eq!(second.get_str("x-result-gauge"), Some("42"));
    use polyhost::services::{HistogramSummary, MetricValue};
    assert_eq!(
        services.metrics.value("probe_requests"),
        Some(MetricValue::Counter(2))
    );
    assert_eq!(
        services.metrics.value("probe_gauge"),
        Some(MetricValue::Gauge(42))
    );
    assert_eq!(
        services.metrics.value("probe_latency"),
        Some(MetricValue::Histogram(HistogramSummary::from_samples([
            7, 7
        ])))
    );
}

fn host_calls_plugin_foreign_function<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = probe(&engine, "rust-wasip1", &services);
    vm.call_foreign_function(9, b"xyz").unwrap();
    assert_eq!(
        log_texts(&vm).last().unwrap(),
        "info probe foreign: function_id=9 args=xyz"
    );
}
