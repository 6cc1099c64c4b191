//! `polyhost call`: one HTTP request through a plugin.

use anyhow::{Context, Result, bail};
use polyhost::services::{CalloutQueue, CalloutRequest, HostServices};
use polyhost::{
    AnyEngine, Decision, Engine, EngineConfig, EngineVisitor, HeaderMap, HttpCallResult, Plugin,
    PluginConfig, Vm,
};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Arguments of `polyhost call`.
#[derive(clap::Args)]
pub struct CallArgs {
    /// The plugin (.wasm).
    plugin: PathBuf,
    /// Plugin settings as JSON: {"name", "root_id", "vm_id", "configuration",
    /// "vm_configuration", "allowed_env", "env", "log_level"}.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The plugin configuration string (overrides the one in --config).
    #[arg(long, value_name = "STRING")]
    plugin_config: Option<String>,
    /// A request header, `name:value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Request method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request path.
    #[arg(long, default_value = "/")]
    path: String,
    /// Request body (sent in one chunk after the headers).
    #[arg(long)]
    body: Option<String>,
    /// Status of the simulated upstream response.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Body of the simulated upstream response.
    #[arg(long)]
    response_body: Option<String>,
    /// Engine to run on (see `polyhost engines`).
    #[arg(long, value_name = "NAME")]
    engine: Option<String>,
    /// Stop the plugin when one callback runs longer than this many
    /// milliseconds (every engine; default 100, 0 turns the deadline off).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
}

/// Runs the command.
pub fn run(args: CallArgs) -> Result<ExitCode> {
    let engine_name = match &args.engine {
        Some(n) => n.clone(),
        None => AnyEngine::default_name()
            .context("this build has no engine compiled in")?
            .to_string(),
    };
    let defaults = EngineConfig::default();
    let engine_config = EngineConfig {
        call_timeout: match args.timeout_ms {
            Some(ms) => EngineConfig::timeout_from_millis(ms),
            None => defaults.call_timeout,
        },
        ..defaults
    };
    let engine =
        AnyEngine::by_name(&engine_name, &engine_config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let wasm = std::fs::read(&args.plugin)
        .with_context(|| format!("cannot read plugin `{}`", args.plugin.display()))?;
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config `{}`", path.display()))?;
            serde_json::from_str::<PluginConfig>(&text)
                .with_context(|| format!("invalid plugin settings in `{}`", path.display()))?
        }
        None => PluginConfig::named(
            args.plugin
                .file_stem()
                .map_or("plugin".into(), |s| s.to_string_lossy().into_owned()),
        ),
    };
    if let Some(c) = &args.plugin_config {
        config.configuration = c.clone();
    }
    engine.visit(Call { args, wasm, config })
}

struct Call {
    args: CallArgs,
    wasm: Vec<u8>,
    config: PluginConfig,
}

impl EngineVisitor for Call {
    type Output = Result<ExitCode>;

    fn visit<E: Engine>(self, engine: E) -> Result<ExitCode> {
        let Call { args, wasm, config } = self;
        let callouts = Arc::new(CalloutQueue::default());
        let services = HostServices {
            callouts: callouts.clone(),
            ..HostServices::default()
        };
        let location = args.plugin.display().to_string();
        let plugin = Plugin::load(&engine, &wasm, config, services)
            .with_context(|| format!("cannot load `{location}`"))?;
        println!(
            "plugin `{}` (proxy-wasm ABI {}) on {}",
            plugin.info().name,
            plugin.info().abi.as_str(),
            engine.name()
        );
        let mut vm = plugin
            .new_vm()
            .with_context(|| format!("`{location}` failed to start"))?;
        print_logs(&mut vm);
        let outcome = exchange(&mut vm, &args, &callouts);
        print_logs(&mut vm);
        outcome.with_context(|| format!("`{location}` failed while handling the request"))
    }
}

fn request_headers(args: &CallArgs) -> Result<HeaderMap> {
    let mut h: HeaderMap = [
        (":method", args.method.as_str()),
        (":path", args.path.as_str()),
        (":authority", "localhost"),
        (":scheme", "http"),
    ]
    .into_iter()
    .collect();
    for raw in &args.headers {
        let Some((k, v)) = raw.split_once(':') else {
            bail!("header `{raw}` is not `name:value`");
        };
        h.add(k.trim(), v.trim());
    }
    Ok(h)
}

/// Runs the request and response through the plugin, printing each step.
fn exchange<E: Engine>(
    vm: &mut Vm<E>,
    args: &CallArgs,
    callouts: &CalloutQueue,
) -> Result<ExitCode> {
    let id = vm.create_http_stream()?;
    let before = request_headers(args)?;
    let body = args.body.as_deref().map(str::as_bytes);
    let mut decision = vm.on_request_headers(id, before.clone(), body.is_none())?;
    print_logs(vm);
    answer_callouts(vm, callouts)?;
    let after = vm
        .stream(id)
        .expect("stream exists")
        .request_headers
        .clone();
    print_diff("request headers", &before, &after);
    if let (Some(body), Decision::Continue | Decision::Pause) = (body, &decision) {
        decision = vm.on_request_body(id, body, true)?;
        print_logs(vm);
        answer_callouts(vm, callouts)?;
        let now = vm.stream(id).expect("stream exists").request_body.clone();
        print_body("request body", body, &now);
    }
    if let Some(done) = local_response(&decision) {
        vm.finish_stream(id)?;
        return Ok(done);
    }
    for event in vm.take_events(id) {
        println!("plugin event: {event:?}");
    }
    let response: HeaderMap = [(":status", args.status.to_string())].into_iter().collect();
    let resp_body = args.response_body.as_deref().map(str::as_bytes);
    let mut decision = vm.on_response_headers(id, response.clone(), resp_body.is_none())?;
    print_logs(vm);
    let after = vm
        .stream(id)
        .expect("stream exists")
        .response_headers
        .clone();
    print_diff("response headers", &response, &after);
    if let Some(body) = resp_body {
        decision = vm.on_response_body(id, body, true)?;
        print_logs(vm);
        let now = vm.stream(id).expect("stream exists").response_body.clone();
        print_body("response body", body, &now);
    }
    if let Some(done) = local_response(&decision) {
        vm.finish_stream(id)?;
        return Ok(done);
    }
    println!(
        "decision: {}",
        if decision == Decision::Pause {
            "pause"
        } else {
            "continue"
        }
    );
    vm.finish_stream(id)?;
    Ok(ExitCode::SUCCESS)
}

/// Answers every HTTP callout with an empty 200 and every gRPC call with
/// UNAVAILABLE, so plugins that call out can be tried offline.
fn answer_callouts<E: Engine>(vm: &mut Vm<E>, callouts: &CalloutQueue) -> Result<()> {
    for call in callouts.take() {
        match call {
            CalloutRequest::Http(c) => {
                println!(
                    "http callout to `{}` {} (answered 200, empty body)",
                    c.upstream,
                    c.headers.get_str(":path").unwrap_or("")
                );
                let result = HttpCallResult::Response {
                    headers: [(":status", "200")].into_iter().collect(),
                    body: Vec::new(),
                    trailers: HeaderMap::new(),
                };
                vm.deliver_http_response(c.token, result)?;
            }
            CalloutRequest::Grpc(c) => {
                println!(
                    "grpc callout {}/{} (answered UNAVAILABLE)",
                    c.service, c.method
                );
                vm.deliver_grpc_response(
                    c.token,
                    polyhost::GrpcResult::Err {
                        status: 14,
                        message: "no upstream in `polyhost call`".into(),
                    },
                )?;
            }
            other => println!("callout: {other:?} (not answered)"),
        }
    }
    Ok(())
}

fn local_response(decision: &Decision) -> Option<ExitCode> {
    let Decision::LocalResponse(r) = decision else {
        return None;
    };
    println!("local response: {}", r.status);
    for (k, v) in r.headers.to_string_pairs() {
        println!("  {k}: {v}");
    }
    if let Some(g) = r.grpc_status {
        println!("  grpc-status: {g}");
    }
    if !r.body.is_empty() {
        println!("  body: {:?}", String::from_utf8_lossy(&r.body));
    }
    Some(ExitCode::SUCCESS)
}

fn print_logs<E: Engine>(vm: &mut Vm<E>) {
    for line in vm.take_logs() {
        println!("log {line}");
    }
}

fn print_diff(what: &str, before: &HeaderMap, after: &HeaderMap) {
    let b = before.to_string_pairs();
    let a = after.to_string_pairs();
    let removed: Vec<_> = b.iter().filter(|p| !a.contains(p)).collect();
    let added: Vec<_> = a.iter().filter(|p| !b.contains(p)).collect();
    if removed.is_empty() && added.is_empty() {
        println!("{what}: unchanged");
        return;
    }
    println!("{what}:");
    for (k, v) in removed {
        println!("  - {k}: {v}");
    }
    for (k, v) in added {
        println!("  + {k}: {v}");
    }
}

fn print_body(what: &str, before: &[u8], after: &[u8]) {
    if before == after {
        println!("{what}: unchanged ({} bytes)", after.len());
    } else {
        println!(
            "{what}: {:?} -> {:?}",
            String::from_utf8_lossy(before),
            String::from_utf8_lossy(after)
        );
    }
}
