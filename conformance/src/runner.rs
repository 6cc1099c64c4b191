//! Runs cases on one engine and compares engines.

use crate::case::{Case, Expect, Language, PluginSpec, Step};
use polyhost::services::{
    CalloutQueue, CalloutRequest, ForeignFunctionRegistry, HistogramSummary, HostServices,
    InMemoryMetrics, InMemorySharedData, MetricValue, SharedDataStore,
};
use polyhost::{
    ContextId, Decision, Engine, GrpcResult, HeaderMap, HttpCallResult, PeerType, Plugin,
    PluginConfig, PluginError, PluginErrorKind, StreamEvent, StreamType, Vm,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// How one case went for one language on one engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Every expectation held.
    Pass,
    /// An expectation failed or the host errored; the message says which.
    Fail(String),
    /// The language's SDK cannot express the case; the reason.
    NotExpressible(String),
    /// The fixture was not built (run `scripts/setup.sh`).
    NoFixture(String),
}

/// One cell of the matrix.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    /// Case name.
    pub case: &'static str,
    /// Plugin language.
    pub language: Language,
    /// What happened.
    pub outcome: Outcome,
    /// What the host observed, step by step (compared across engines).
    #[serde(skip)]
    pub transcript: Vec<String>,
}

/// Every result of one engine.
#[derive(Debug, Clone, Serialize)]
pub struct EngineRun {
    /// Engine name.
    pub engine: &'static str,
    /// One result per case and language.
    pub results: Vec<CaseResult>,
}

/// Two engines that observed different things for the same case.
#[derive(Debug, Clone, Serialize)]
pub struct Mismatch {
    /// Case name.
    pub case: &'static str,
    /// Plugin language.
    pub language: Language,
    /// First engine and what it saw.
    pub a: (&'static str, String),
    /// Second engine and what it saw.
    pub b: (&'static str, String),
}

/// Runs `cases` for `languages` on `engine`, with fixtures from `fixtures`
/// (the `build/plugins` folder).
pub fn run_engine<E: Engine>(
    engine: &E,
    cases: &[Case],
    languages: &[Language],
    fixtures: &Path,
) -> EngineRun {
    let mut modules = ModuleCache::default();
    let mut results = Vec::new();
    for case in cases {
        for &language in languages.iter().filter(|l| case.languages.contains(l)) {
            let (outcome, transcript) = run_one(engine, case, language, fixtures, &mut modules);
            results.push(CaseResult {
                case: case.name,
                language,
                outcome,
                transcript,
            });
        }
    }
    EngineRun {
        engine: engine.name(),
        results,
    }
}

/// Compares the transcripts of every pair of engines for every case and
/// language both ran.
pub fn differential(runs: &[EngineRun]) -> Vec<Mismatch> {
    let mut mismatches = Vec::new();
    let Some((first, rest)) = runs.split_first() else {
        return mismatches;
    };
    for other in rest {
        for (a, b) in first.results.iter().zip(&other.results) {
            debug_assert_eq!((a.case, a.language), (b.case, b.language));
            let ran = |r: &CaseResult| matches!(r.outcome, Outcome::Pass | Outcome::Fail(_));
            if !ran(a) || !ran(b) || a.transcript == b.transcript {
                continue;
            }
            let at = a
                .transcript
                .iter()
                .zip(&b.transcript)
                .position(|(x, y)| x != y)
                .unwrap_or(a.transcript.len().min(b.transcript.len()));
            let line = |t: &[String]| t.get(at).cloned().unwrap_or_else(|| "(nothing)".into());
            mismatches.push(Mismatch {
                case: a.case,
                language: a.language,
                a: (first.engine, line(&a.transcript)),
                b: (other.engine, line(&b.transcript)),
            });
        }
    }
    mismatches
}

/// Compiled modules by path, so each fixture compiles once per engine.
struct ModuleCache<E: Engine> {
    modules: HashMap<PathBuf, E::Module>,
}

impl<E: Engine> ModuleCache<E> {
    /// Prepares the plugin at `path` with `spec`'s settings. `Err(None)`:
    /// the file cannot be read; `Err(Some(_))`: the host refused it.
    fn load(
        &mut self,
        engine: &E,
        path: &Path,
        spec: &PluginSpec,
        services: &HostServices,
    ) -> Result<Plugin<E>, Option<PluginError>> {
        let config = plugin_config(spec);
        let services = services.clone();
        if let Some(module) = self.modules.get(path) {
            return Plugin::from_module(engine, module.clone(), config, services).map_err(Some);
        }
        let bytes = std::fs::read(path).map_err(|_| None)?;
        match engine.compile(&bytes) {
            Ok(module) => {
                self.modules.insert(path.to_path_buf(), module.clone());
                Plugin::from_module(engine, module, config, services)
            }
            // A module that does not compile is not cached: the plugin
            // loader compiles it again to name the plugin and the problem.
            Err(_) => Plugin::load(engine, &bytes, config, services),
        }
        .map_err(Some)
    }
}

impl<E: Engine> Default for ModuleCache<E> {
    fn default() -> Self {
        ModuleCache {
            modules: HashMap::new(),
        }
    }
}

fn run_one<E: Engine>(
    engine: &E,
    case: &Case,
    language: Language,
    fixtures: &Path,
    modules: &mut ModuleCache<E>,
) -> (Outcome, Vec<String>) {
    if let Some((_, why)) = case.not_expressible.iter().find(|(l, _)| *l == language) {
        return (Outcome::NotExpressible((*why).to_string()), Vec::new());
    }
    let services = Services::new();
    let mut run = Run {
        plugins: Vec::new(),
        vms: Vec::new(),
        services,
        current: 0,
        stream: None,
        last: None,
        events: Vec::new(),
        transcript: Vec::new(),
        volatile: case.volatile,
        logs: Vec::new(),
        clock: Instant::now(),
    };
    for (i, spec) in case.plugins.iter().enumerate() {
        let path = fixtures
            .join(language.dir())
            .join(format!("{}.wasm", spec.plugin));
        if !path.exists() {
            return (Outcome::NoFixture(path.display().to_string()), Vec::new());
        }
        let plugin = match modules.load(engine, &path, spec, &run.services.host) {
            Ok(plugin) => plugin,
            Err(Some(e)) => {
                // Refusing a broken module is an observable result too.
                run.transcript
                    .push(format!("vm {i} failed to load: {:?}", e.kind()));
                run.plugins.push(None);
                run.vms.push(Err(e));
                continue;
            }
            Err(None) => {
                return (
                    Outcome::Fail(format!("cannot read {}", path.display())),
                    Vec::new(),
                );
            }
        };
        let vm = plugin.new_vm();
        match &vm {
            Ok(_) => run.transcript.push(format!("vm {i} started")),
            Err(e) => {
                run.transcript
                    .push(format!("vm {i} failed to start: {:?}", e.kind()));
                run.logs.extend(
                    e.logs()
                        .iter()
                        .map(|l| format!("{} {}", l.level.as_str(), l.message)),
                );
            }
        }
        run.plugins.push(Some(plugin));
        run.vms.push(vm);
    }
    let outcome = match run.steps(&case.steps) {
        Ok(()) => Outcome::Pass,
        Err(message) => Outcome::Fail(message),
    };
    (outcome, run.transcript)
}

fn plugin_config(spec: &PluginSpec) -> PluginConfig {
    PluginConfig {
        vm_id: spec.vm_id.into(),
        configuration: spec.configuration.into(),
        vm_configuration: spec.vm_configuration.into(),
        ..PluginConfig::named(spec.plugin)
    }
}

struct Services {
    host: HostServices,
    callouts: Arc<CalloutQueue>,
    metrics: Arc<InMemoryMetrics>,
    shared: Arc<InMemorySharedData>,
}

impl Services {
    fn new() -> Self {
        let callouts = Arc::new(CalloutQueue::default());
        let metrics = Arc::new(InMemoryMetrics::default());
        let shared = Arc::new(InMemorySharedData::default());
        let host = HostServices {
            callouts: callouts.clone(),
            metrics: metrics.clone(),
            shared_data: shared.clone(),
            foreign: Arc::new(ForeignFunctionRegistry::default().with("echo", |a| Ok(a.to_vec()))),
            ..HostServices::default()
        };
        Services {
            host,
            callouts,
            metrics,
            shared,
        }
    }
}

/// The state of one case being run.
struct Run<E: Engine> {
    /// `None` where the host refused to load the plugin.
    plugins: Vec<Option<Plugin<E>>>,
    vms: Vec<Result<Vm<E>, PluginError>>,
    services: Services,
    current: usize,
    stream: Option<ContextId>,
    /// The last stream callback's decision or error.
    last: Option<Result<Decision, PluginError>>,
    /// Events the plugin raised on the current stream, taken from the VM.
    events: Vec<StreamEvent>,
    transcript: Vec<String>,
    volatile: &'static [&'static str],
    /// Every log line of the case so far, as `level message`.
    logs: Vec<String>,
    clock: Instant,
}

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    pairs.iter().copied().collect()
}

impl<E: Engine> Run<E> {
    fn vm(&mut self) -> Result<&mut Vm<E>, String> {
        match &mut self.vms[self.current] {
            Ok(vm) => Ok(vm),
            Err(e) => Err(format!("plugin did not start: {e}")),
        }
    }

    fn stream(&self) -> Result<ContextId, String> {
        self.stream
            .ok_or_else(|| "no stream: add a NewHttp or NewTcp step".to_string())
    }

    fn collect_logs(&mut self) {
        for vm in self.vms.iter_mut().flatten() {
            for line in vm.take_logs() {
                self.logs
                    .push(format!("{} {}", line.level.as_str(), line.message));
            }
        }
    }

    /// Records the state of the current stream after a step.
    fn observe(&mut self, step: &str) {
        self.collect_logs();
        let mut line = step.to_string();
        if let Some(last) = &self.last {
            line.push_str(&match last {
                Ok(d) => format!(" -> {d:?}"),
                Err(e) => format!(" -> error {:?} in {:?}", e.kind(), e.callback()),
            });
        }
        if let (Some(Ok(vm)), Some(id)) =
            (self.vms.get(self.current).map(|v| v.as_ref()), self.stream)
            && let Some(s) = vm.stream(id)
        {
            let headers: Vec<String> = s
                .request_headers
                .to_string_pairs()
                .into_iter()
                .map(|(k, v)| {
                    if self.volatile.contains(&k.as_str()) {
                        format!("{k}=<volatile>")
                    } else {
                        format!("{k}={v}")
                    }
                })
                .collect();
            line.push_str(&format!(
                " | req {headers:?} resp {:?} bodies {:?}/{:?} data {:?}/{:?}",
                s.response_headers.to_string_pairs(),
                String::from_utf8_lossy(&s.request_body),
                String::from_utf8_lossy(&s.response_body),
                String::from_utf8_lossy(&s.downstream_data),
                String::from_utf8_lossy(&s.upstream_data),
            ));
        }
        line.push_str(&format!(" | logs {}", self.logs.len()));
        self.transcript.push(line);
    }

    fn callback(&mut self, r: Result<Decision, PluginError>) {
        self.last = Some(r);
    }

    fn steps(&mut self, steps: &[Step]) -> Result<(), String> {
        for (i, step) in steps.iter().enumerate() {
            self.step(step)
                .map_err(|e| format!("step {} ({step:?}): {e}", i + 1))?;
        }
        self.collect_logs();
        self.transcript.push(format!("logs {:?}", self.logs));
        Ok(())
    }

    fn step(&mut self, step: &Step) -> Result<(), String> {
        let name = format!("{step:?}");
        match step {
            Step::Expect(e) => return self.expect(e),
            Step::UseVm(n) => {
                self.current = *n;
                self.set_stream(None);
                return Ok(());
            }
            Step::NewHttp => {
                let id = self.vm()?.create_http_stream().map_err(|e| e.to_string())?;
                self.set_stream(Some(id));
            }
            Step::NewTcp => {
                let r = self.vm()?.create_tcp_stream();
                match r {
                    Ok((id, d)) => {
                        self.set_stream(Some(id));
                        self.callback(Ok(d));
                    }
                    Err(e) => self.callback(Err(e)),
                }
            }
            Step::RequestHeaders(h, eos) => {
                let id = self.stream()?;
                let r = self.vm()?.on_request_headers(id, map(h), *eos);
                self.callback(r);
            }
            Step::RequestBody(b, eos) => {
                let id = self.stream()?;
                let r = self.vm()?.on_request_body(id, b.as_bytes(), *eos);
                self.callback(r);
            }
            Step::RequestTrailers(h) => {
                let id = self.stream()?;
                let r = self.vm()?.on_request_trailers(id, map(h));
                self.callback(r);
            }
            Step::ResponseHeaders(h, eos) => {
                let id = self.stream()?;
                let r = self.vm()?.on_response_headers(id, map(h), *eos);
                self.callback(r);
            }
            Step::ResponseBody(b, eos) => {
                let id = self.stream()?;
                let r = self.vm()?.on_response_body(id, b.as_bytes(), *eos);
                self.callback(r);
            }
            Step::ResponseTrailers(h) => {
                let id = self.stream()?;
                let r = self.vm()?.on_response_trailers(id, map(h));
                self.callback(r);
            }
            Step::Finish => {
                let id = self.stream()?;
                self.vm()?.finish_stream(id).map_err(|e| e.to_string())?;
                self.set_stream(None);
            }
            Step::Downstream(d, eos) => {
                let id = self.stream()?;
                let r = self.vm()?.on_downstream_data(id, d.as_bytes(), *eos);
                self.callback(r);
            }
            Step::Upstream(d, eos) => {
                let id = self.stream()?;
                let r = self.vm()?.on_upstream_data(id, d.as_bytes(), *eos);
                self.callback(r);
            }
            Step::DownstreamClose(p) | Step::UpstreamClose(p) => {
                let id = self.stream()?;
                let peer = match p {
                    1 => PeerType::Local,
                    2 => PeerType::Remote,
                    _ => PeerType::Unknown,
                };
                let down = matches!(step, Step::DownstreamClose(_));
                let vm = self.vm()?;
                let r = if down {
                    vm.on_downstream_close(id, peer)
                } else {
                    vm.on_upstream_close(id, peer)
                };
                r.map_err(|e| e.to_string())?;
            }
            Step::AnswerHttp(status, headers, body) => {
                let token = self.http_token()?;
                let mut h = map(headers);
                h.add(":status", status);
                let result = HttpCallResult::Response {
                    headers: h,
                    body: body.as_bytes().to_vec(),
                    trailers: HeaderMap::new(),
                };
                self.vm()?
                    .deliver_http_response(token, result)
                    .map_err(|e| e.to_string())?;
            }
            Step::TimeoutHttp => {
                let token = self.http_token()?;
                self.vm()?
                    .deliver_http_response(token, HttpCallResult::Timeout)
                    .map_err(|e| e.to_string())?;
            }
            Step::AnswerGrpc(message) => {
                let token = self.grpc_token()?;
                let r = GrpcResult::Ok(message.as_bytes().to_vec());
                self.vm()?
                    .deliver_grpc_response(token, r)
                    .map_err(|e| e.to_string())?;
            }
            Step::FailGrpc(status) => {
                let token = self.grpc_token()?;
                let r = GrpcResult::Err {
                    status: *status,
                    message: "failed by the conformance suite".into(),
                };
                self.vm()?
                    .deliver_grpc_response(token, r)
                    .map_err(|e| e.to_string())?;
            }
            Step::GrpcStreamReply {
                initial,
                messages,
                trailing,
                status,
            } => {
                let token = self.token(
                    |c| match c {
                        CalloutRequest::GrpcStream(s) => Some(s.token),
                        _ => None,
                    },
                    "no gRPC stream was opened",
                )?;
                let vm = self.vm()?;
                let err = |e: PluginError| e.to_string();
                vm.deliver_grpc_initial_metadata(token, map(initial))
                    .map_err(err)?;
                for m in messages {
                    vm.deliver_grpc_message(token, m.as_bytes().to_vec())
                        .map_err(err)?;
                }
                vm.deliver_grpc_trailing_metadata(token, map(trailing))
                    .map_err(err)?;
                vm.deliver_grpc_close(token, *status, "").map_err(err)?;
            }
            Step::DeliverQueues => {
                for vm in self.vms.iter_mut().flatten() {
                    vm.deliver_queue_ready().map_err(|e| e.to_string())?;
                }
            }
            Step::Ticks(n) => {
                for _ in 0..*n {
                    let vm = self.vm()?;
                    let due = vm.next_tick().ok_or("the plugin set no tick period")?;
                    self.clock = self.clock.max(due);
                    let now = self.clock;
                    self.vm()?.tick(now).map_err(|e| e.to_string())?;
                }
            }
            Step::Foreign(id, args) => {
                self.vm()?
                    .call_foreign_function(*id, args.as_bytes())
                    .map_err(|e| e.to_string())?;
            }
            Step::Restart => {
                let plugin = self.plugins[self.current]
                    .as_ref()
                    .ok_or("the plugin did not load")?;
                self.vms[self.current] = plugin.new_vm();
                self.set_stream(None);
            }
            Step::Shutdown => {
                let r = self.vm()?.shutdown().map_err(|e| e.to_string())?;
                self.transcript.push(format!("shutdown -> {r:?}"));
            }
        }
        self.observe(&name);
        Ok(())
    }

    /// Makes `id` the current stream; its events start afresh.
    fn set_stream(&mut self, id: Option<ContextId>) {
        self.stream = id;
        self.events.clear();
    }

    /// The events of the current stream so far.
    fn events(&mut self) -> Result<&[StreamEvent], String> {
        let id = self.stream()?;
        let new = self.vm()?.take_events(id);
        self.events.extend(new);
        Ok(&self.events)
    }

    /// Takes the queued callouts and answers the first one `pick` selects
    /// with its token; the others are dropped, as the embedder would time
    /// them out.
    fn token(
        &mut self,
        pick: fn(&CalloutRequest) -> Option<u32>,
        none: &str,
    ) -> Result<u32, String> {
        self.services
            .callouts
            .take()
            .iter()
            .find_map(pick)
            .ok_or_else(|| none.to_string())
    }

    fn http_token(&mut self) -> Result<u32, String> {
        self.token(
            |c| match c {
                CalloutRequest::Http(h) => Some(h.token),
                _ => None,
            },
            "no HTTP callout was made",
        )
    }

    fn grpc_token(&mut self) -> Result<u32, String> {
        self.token(
            |c| match c {
                CalloutRequest::Grpc(g) => Some(g.token),
                _ => None,
            },
            "no gRPC call was made",
        )
    }

    /// Whether a queued callout matches `check`; the queue is left as it
    /// was for the steps that answer them.
    fn callout_queued(&self, check: impl Fn(&CalloutRequest) -> bool) -> bool {
        let calls = self.services.callouts.take();
        let found = calls.iter().any(check);
        for c in calls {
            let _ = polyhost::services::CalloutDispatcher::dispatch(&*self.services.callouts, c);
        }
        found
    }

    fn last_decision(&self) -> Result<&Decision, String> {
        match &self.last {
            Some(Ok(d)) => Ok(d),
            Some(Err(e)) => Err(format!("the last callback failed: {e}")),
            None => Err("no callback ran yet".into()),
        }
    }

    fn local(&self) -> Result<&polyhost::LocalResponse, String> {
        match self.last_decision()? {
            Decision::LocalResponse(r) => Ok(r),
            other => Err(format!("expected a local response, got {other:?}")),
        }
    }

    fn state(&mut self) -> Result<polyhost::StreamState, String> {
        let id = self.stream()?;
        self.vm()?
            .stream(id)
            .cloned()
            .ok_or_else(|| "the stream is gone".to_string())
    }

    fn expect(&mut self, e: &Expect) -> Result<(), String> {
        let eq = |what: &str, got: Option<String>, want: Option<&str>| {
            if got.as_deref() == want {
                Ok(())
            } else {
                Err(format!("{what}: expected {want:?}, got {got:?}"))
            }
        };
        let text = |b: Option<&[u8]>| b.map(|v| String::from_utf8_lossy(v).into_owned());
        match e {
            Expect::Continue => match self.last_decision()? {
                Decision::Continue => Ok(()),
                d => Err(format!("expected Continue, got {d:?}")),
            },
            Expect::Pause => match self.last_decision()? {
                Decision::Pause => Ok(()),
                d => Err(format!("expected Pause, got {d:?}")),
            },
            Expect::LocalResponse(status, body) => {
                let r = self.local()?;
                eq(
                    "local response",
                    Some(format!("{} {}", r.status, String::from_utf8_lossy(&r.body))),
                    Some(&format!("{status} {body}")),
                )
            }
            Expect::LocalResponseHeader(k, v) => {
                let r = self.local()?;
                eq(k, text(r.headers.get(k)), Some(v))
            }
            Expect::LocalGrpcStatus(s) => {
                let r = self.local()?;
                eq(
                    "grpc status",
                    r.grpc_status.map(|g| g.to_string()),
                    Some(&s.to_string()),
                )
            }
            Expect::RequestHeader(k, v) => {
                let s = self.state()?;
                eq(k, text(s.request_headers.get(k)), *v)
            }
            Expect::RequestHeaderIsNow(k) => {
                let s = self.state()?;
                let got: u128 = s
                    .request_headers
                    .get_str(k)
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| format!("{k} is missing or not a number"))?;
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_err(|e| e.to_string())?
                    .as_nanos();
                if now.abs_diff(got) < 60_000_000_000 {
                    Ok(())
                } else {
                    Err(format!("{k} = {got}, not within a minute of {now}"))
                }
            }
            Expect::RequestHeaderBytes(k, v) => {
                let s = self.state()?;
                if s.request_headers.get(k) == Some(*v) {
                    Ok(())
                } else {
                    Err(format!(
                        "{k}: expected {v:?}, got {:?}",
                        s.request_headers.get(k)
                    ))
                }
            }
            Expect::RequestHeaderCount(n) => {
                let s = self.state()?;
                eq(
                    "header count",
                    Some(s.request_headers.len().to_string()),
                    Some(&n.to_string()),
                )
            }
            Expect::ResponseHeader(k, v) => {
                let s = self.state()?;
                eq(k, text(s.response_headers.get(k)), *v)
            }
            Expect::RequestTrailer(k, v) => {
                let s = self.state()?;
                eq(k, text(s.request_trailers.get(k)), *v)
            }
            Expect::ResponseTrailer(k, v) => {
                let s = self.state()?;
                eq(k, text(s.response_trailers.get(k)), *v)
            }
            Expect::RequestBody(b) => {
                let id = self.stream()?;
                let got = self.vm()?.take_request_body(id);
                eq("request body", text(Some(&got)), Some(b))
            }
            Expect::ResponseBody(b) => {
                let id = self.stream()?;
                let got = self.vm()?.take_response_body(id);
                eq("response body", text(Some(&got)), Some(b))
            }
            Expect::DownstreamData(b) => {
                let id = self.stream()?;
                let got = self.vm()?.take_downstream_data(id);
                eq("downstream data", text(Some(&got)), Some(b))
            }
            Expect::UpstreamData(b) => {
                let id = self.stream()?;
                let got = self.vm()?.take_upstream_data(id);
                eq("upstream data", text(Some(&got)), Some(b))
            }
            Expect::ResumedRequest => {
                let events = self.events()?;
                if events.contains(&StreamEvent::Resume(StreamType::HttpRequest)) {
                    Ok(())
                } else {
                    Err(format!(
                        "expected the request to be resumed, events: {events:?}"
                    ))
                }
            }
            Expect::Event(want) => {
                let events = self.events()?;
                if events.iter().any(|e| format!("{e:?}") == *want) {
                    Ok(())
                } else {
                    Err(format!("no event {want} in {events:?}"))
                }
            }
            Expect::Log(line) => {
                self.collect_logs();
                if self.logs.iter().any(|l| l == line) {
                    Ok(())
                } else {
                    Err(format!("no log line `{line}` in {:?}", self.logs))
                }
            }
            Expect::LogEndsWith(level, end) => {
                self.collect_logs();
                if self
                    .logs
                    .iter()
                    .any(|l| l.starts_with(&format!("{level} ")) && l.ends_with(end))
                {
                    Ok(())
                } else {
                    Err(format!(
                        "no {level} log line ending `{end}` in {:?}",
                        self.logs
                    ))
                }
            }
            Expect::NoLog(line) => {
                self.collect_logs();
                if self.logs.iter().any(|l| l == line) {
                    Err(format!("unexpected log line `{line}`"))
                } else {
                    Ok(())
                }
            }
            Expect::Counter(name, v) => match self.services.metrics.value(name) {
                Some(MetricValue::Counter(c)) if c == *v => Ok(()),
                other => Err(format!("counter {name}: expected {v}, got {other:?}")),
            },
            Expect::Gauge(name, v) => match self.services.metrics.value(name) {
                Some(MetricValue::Gauge(g)) if g == *v => Ok(()),
                other => Err(format!("gauge {name}: expected {v}, got {other:?}")),
            },
            Expect::Histogram(name, v) => match self.services.metrics.value(name) {
                Some(MetricValue::Histogram(h))
                    if h == HistogramSummary::from_samples(v.iter().copied()) =>
                {
                    Ok(())
                }
                other => Err(format!("histogram {name}: expected {v:?}, got {other:?}")),
            },
            Expect::SharedData(vm_id, key, value) => {
                let got = self
                    .services
                    .shared
                    .get(vm_id, key.as_bytes())
                    .map(|(v, _)| v);
                eq("shared data", text(got.as_deref()), Some(value))
            }
            Expect::HttpCallout(upstream, path, body, timeout_ms) => {
                let found = self.callout_queued(|c| {
                    matches!(c, CalloutRequest::Http(h) if h.upstream == *upstream
                        && h.headers.get_str(":path") == Some(path)
                        && h.body == body.as_bytes()
                        && h.timeout.as_millis() == u128::from(*timeout_ms))
                });
                if found {
                    Ok(())
                } else {
                    Err(format!(
                        "no HTTP callout to {upstream} {path} (body {body:?}, {timeout_ms} ms)"
                    ))
                }
            }
            Expect::GrpcCallout(service, method, message) => {
                let found = self.callout_queued(|c| {
                    matches!(c, CalloutRequest::Grpc(g) if g.service == *service
                        && g.method == *method && g.message == message.as_bytes())
                });
                if found {
                    Ok(())
                } else {
                    Err(format!("no gRPC call {service}/{method} with {message:?}"))
                }
            }
            Expect::NoCallout => {
                let calls = self.services.callouts.take();
                if calls.is_empty() {
                    Ok(())
                } else {
                    Err(format!("unexpected callouts: {calls:?}"))
                }
            }
            Expect::StartFailed => match &self.vms[self.current] {
                Err(e) if e.kind() == PluginErrorKind::StartFailed => Ok(()),
                Err(e) => Err(format!("start failed differently: {e}")),
                Ok(_) => Err("the plugin started".into()),
            },
            Expect::LoadFailed(kind, needle) => match &self.vms[self.current] {
                Err(e) if format!("{:?}", e.kind()) == *kind => {
                    let text = e.to_string();
                    if !text.contains(needle) {
                        Err(format!("`{needle}` is not in the error: {text}"))
                    } else if !text.contains(e.plugin()) || e.plugin().is_empty() {
                        Err(format!("the error does not name the plugin: {text}"))
                    } else {
                        Ok(())
                    }
                }
                Err(e) => Err(format!("expected a {kind} error, got {:?}: {e}", e.kind())),
                Ok(_) => Err("the plugin loaded".into()),
            },
            Expect::VmFailed => {
                let vm = self.vm()?;
                if !vm.is_failed() {
                    return Err("the VM has not failed".into());
                }
                match vm.create_http_stream() {
                    Err(e) if e.kind() == PluginErrorKind::VmFailed => Ok(()),
                    other => Err(format!("a failed VM took a new stream: {other:?}")),
                }
            }
            Expect::ShutDown(want) => {
                let got = self.vm()?.is_shut_down();
                if got == *want {
                    Ok(())
                } else {
                    Err(format!("shut down: expected {want}, got {got}"))
                }
            }
            Expect::Trapped(callback) => match &self.last {
                Some(Err(e))
                    if e.kind() == PluginErrorKind::Trap && e.callback() == Some(callback) =>
                {
                    Ok(())
                }
                other => Err(format!("expected a trap in {callback}, got {other:?}")),
            },
        }
    }
}

/// Counts outcomes: (passed, failed, not expressible, no fixture).
pub(crate) fn tally<'a>(
    results: impl IntoIterator<Item = &'a CaseResult>,
) -> BTreeMap<&'static str, usize> {
    let mut t = BTreeMap::new();
    for r in results {
        let k = match r.outcome {
            Outcome::Pass => "passed",
            Outcome::Fail(_) => "failed",
            Outcome::NotExpressible(_) => "not expressible",
            Outcome::NoFixture(_) => "no fixture",
        };
        *t.entry(k).or_insert(0) += 1;
    }
    t
}
