//! A plugin serving requests on one engine: the measured path for every
//! (language, engine, workload) cell.

use crate::workload::{Fixture, Served, Workload};
use polyhost::services::{CalloutQueue, CalloutRequest};
use polyhost::{
    Decision, Engine, HeaderMap, HostServices, HttpCallResult, LogLevel, Plugin, PluginConfig,
    PluginError, StreamEvent, StreamType, Vm,
};
use std::sync::Arc;

/// One plugin VM ready to serve [`Fixture`]'s request over and over.
pub struct PluginBench<E: Engine> {
    workload: Workload,
    fixture: Arc<Fixture>,
    callouts: Arc<CalloutQueue>,
    vm: Vm<E>,
}

fn err(e: PluginError) -> String {
    e.to_string()
}

fn expect(got: Decision, want: Decision, callback: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{callback} decided {got:?}, expected {want:?}"))
    }
}

/// The configuration every benchmarked plugin gets: its name, and log level
/// info, as a production proxy runs plugins. (The AssemblyScript SDK logs
/// debug lines for every context it creates; at the default level, trace,
/// the host would keep and emit them all, which no gateway does in
/// production. The SDK still formats and sends them, and that cost stays in
/// the measurement.)
pub fn plugin_config(name: &str) -> PluginConfig {
    PluginConfig {
        log_level: LogLevel::Info,
        ..PluginConfig::named(name)
    }
}

/// Host services whose callouts queue up for the embedder to answer.
pub fn services() -> (HostServices, Arc<CalloutQueue>) {
    let callouts = Arc::new(CalloutQueue::default());
    let services = HostServices {
        callouts: callouts.clone(),
        ..HostServices::default()
    };
    (services, callouts)
}

impl<E: Engine> PluginBench<E> {
    /// Loads `module` (already compiled by `engine`) for `workload` and
    /// starts one VM.
    ///
    /// # Errors
    /// The loading or start-up error, as text.
    pub fn new(
        engine: &E,
        module: E::Module,
        name: &str,
        workload: Workload,
        fixture: Arc<Fixture>,
    ) -> Result<Self, String> {
        let (services, callouts) = services();
        let plugin =
            Plugin::from_module(engine, module, plugin_config(name), services).map_err(err)?;
        Self::with_plugin(&plugin, callouts, workload, fixture)
    }

    /// Starts one more VM of `plugin`, whose services queue callouts on
    /// `callouts`.
    ///
    /// # Errors
    /// The start-up error, as text.
    pub fn with_plugin(
        plugin: &Plugin<E>,
        callouts: Arc<CalloutQueue>,
        workload: Workload,
        fixture: Arc<Fixture>,
    ) -> Result<Self, String> {
        let vm = plugin.new_vm().map_err(err)?;
        Ok(PluginBench {
            workload,
            fixture,
            callouts,
            vm,
        })
    }

    /// Serves one request's full life on this bench's VM ([`serve`]).
    ///
    /// # Errors
    /// A trap, or a decision the workload's contract rules out.
    pub fn serve(&mut self) -> Result<Served, String> {
        serve(&mut self.vm, self.workload, &self.fixture, &self.callouts)
    }

    /// Serves one request and checks the result against the workload's
    /// contract.
    ///
    /// # Errors
    /// What went wrong, as a sentence for the report.
    pub fn check(&mut self) -> Result<(), String> {
        // Twice: a plugin that only works on a VM's first request would
        // otherwise pass and then be timed on broken requests.
        for _ in 0..2 {
            let served = self.serve()?;
            self.workload.check(&self.fixture, &served)?;
        }
        Ok(())
    }
}

/// Serves one request's full life on `vm`: stream creation, request
/// headers (then the body, or the callout's answer, taken from `callouts`,
/// the queue of the plugin's services), response headers, and
/// `proxy_on_log` / `proxy_on_done` / `proxy_on_delete`. Any VM of the
/// plugin will do: a [`PluginBench`]'s own, or one taken from a
/// [`polyhost::VmPool`].
///
/// # Errors
/// A trap, or a decision the workload's contract rules out.
pub fn serve<E: Engine>(
    vm: &mut Vm<E>,
    workload: Workload,
    fixture: &Fixture,
    callouts: &CalloutQueue,
) -> Result<Served, String> {
    let has_body = workload.has_body();
    let id = vm.create_http_stream().map_err(err)?;
    let decision = vm
        .on_request_headers(id, fixture.request_headers.clone(), !has_body)
        .map_err(err)?;
    let mut served = Served::default();
    match workload {
        Workload::Noop | Workload::Headers => {
            expect(decision, Decision::Continue, "on_request_headers")?;
        }
        Workload::Body => {
            expect(decision, Decision::Continue, "on_request_headers")?;
            // The whole body in one chunk with end of stream: the plugin
            // sees it buffered, as a gateway that buffers bodies delivers it.
            let decision = vm.on_request_body(id, &fixture.body, true).map_err(err)?;
            expect(decision, Decision::Continue, "on_request_body")?;
            served.request_body = vm.take_request_body(id);
        }
        Workload::Callout => {
            expect(decision, Decision::Pause, "on_request_headers")?;
            for call in callouts.take() {
                let CalloutRequest::Http(call) = call else {
                    continue;
                };
                served.callouts += 1;
                let answer = HttpCallResult::Response {
                    headers: fixture.callout_response.clone(),
                    body: Vec::new(),
                    trailers: HeaderMap::new(),
                };
                vm.deliver_http_response(call.token, answer).map_err(err)?;
            }
            served.resumed = vm
                .take_events(id)
                .contains(&StreamEvent::Resume(StreamType::HttpRequest));
        }
    }
    let decision = vm
        .on_response_headers(id, fixture.response_headers.clone(), true)
        .map_err(err)?;
    expect(decision, Decision::Continue, "on_response_headers")?;
    let state = vm.finish_stream(id).map_err(err)?;
    served.request_headers = state.request_headers;
    served.response_headers = state.response_headers;
    Ok(served)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::micro::CallBench;
    use polyhost::{AnyEngine, EngineConfig, EngineVisitor};

    /// Every workload of the small fixtures (Rust, C++) passes its check on
    /// every engine compiled in; Go and AssemblyScript are left to the report,
    /// which compiles them anyway. Missing fixtures are skipped: the report
    /// lists them.
    struct CheckAll;

    impl EngineVisitor for CheckAll {
        type Output = ();
        fn visit<E: Engine>(self, engine: E) {
            let fixture = Arc::new(Fixture::default());
            for language in [crate::Language::Rust, crate::Language::Cpp] {
                for workload in Workload::ALL {
                    let path = language.fixture(&crate::default_fixtures(), workload.plugin());
                    let Ok(wasm) = std::fs::read(&path) else {
                        eprintln!("skipping {}: not built", path.display());
                        continue;
                    };
                    let module = engine.compile(&wasm).expect("fixture compiles");
                    let mut bench = PluginBench::new(
                        &engine,
                        module,
                        workload.plugin(),
                        workload,
                        fixture.clone(),
                    )
                    .expect("fixture starts");
                    let what = format!("{} {} on {}", language.id(), workload.id(), engine.name());
                    assert_eq!(bench.check(), Ok(()), "{what}");
                }
            }
            let mut calls = CallBench::new(&engine).expect("the crossing module loads");
            assert_eq!(calls.host_calls(3), Ok(0));
            // The loop sums the word the host calls wrote: the log level.
            assert_eq!(calls.empty_loop(3), Ok(3 * LogLevel::Info as i32));
            assert_eq!(calls.callback(), Ok(7));
        }
    }

    #[test]
    fn workloads_pass_their_checks_on_every_engine() {
        for name in AnyEngine::names() {
            AnyEngine::by_name(name, &EngineConfig::default())
                .expect("compiled in")
                .visit(CheckAll);
        }
    }
}
