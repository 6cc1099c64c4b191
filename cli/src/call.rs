//! `polyhost call`: one HTTP request through a plugin.

use crate::compile;
use crate::files::{MAX_BODY_BYTES, MAX_CONFIG_BYTES, MAX_PLUGIN_BYTES, read_bounded};
use anyhow::{Context, Result, bail};
use polyhost::cache::{CacheError, DEFAULT_MAX_BYTES, ModuleCache};
use polyhost::services::{CalloutQueue, CalloutRequest, HostServices};
use polyhost::{
    AnyEngine, Decision, Engine, EngineConfig, EngineVisitor, HeaderMap, HttpCallResult, Plugin,
    PluginConfig, PluginError, Vm, check_binary,
};
use std::path::{Path, PathBuf};
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
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body read from a file (at most 16 MiB).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Status of the simulated upstream response.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Body of the simulated upstream response.
    #[arg(long, conflicts_with = "response_body_file")]
    response_body: Option<String>,
    /// Body of the simulated upstream response, read from a file (at most
    /// 16 MiB).
    #[arg(long, value_name = "FILE")]
    response_body_file: Option<PathBuf>,
    /// Engine to run on (see `polyhost engines`).
    #[arg(long, value_name = "NAME")]
    engine: Option<String>,
    /// Stop the plugin when one callback runs longer than this many
    /// milliseconds (every engine; default 100, 0 turns the deadline off).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Module cache folder: the plugin is loaded precompiled from it when
    /// `polyhost compile` (or an earlier call) stored it there, and stored
    /// otherwise. Default: the folder `polyhost compile` fills by default
    /// (the platform cache directory + `polyhost`, e.g. `~/.cache/polyhost`).
    /// A folder others can write is refused.
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Compile in memory; do not read or write the module cache.
    #[arg(long, conflicts_with = "cache_dir")]
    no_cache: bool,
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
    let wasm = read_bounded("plugin", &args.plugin, MAX_PLUGIN_BYTES)?;
    let mut config = match &args.config {
        Some(path) => {
            let text = read_bounded("config", path, MAX_CONFIG_BYTES)?;
            serde_json::from_slice::<PluginConfig>(&text)
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
    let bodies = Bodies {
        request: body_arg(
            "request body",
            args.body.as_deref(),
            args.body_file.as_deref(),
        )?,
        response: body_arg(
            "response body",
            args.response_body.as_deref(),
            args.response_body_file.as_deref(),
        )?,
    };
    let cache = if args.no_cache {
        None
    } else {
        Some(compile::cache_at(
            args.cache_dir.as_deref(),
            DEFAULT_MAX_BYTES,
        )?)
    };
    engine.visit(Call {
        args,
        wasm,
        config,
        bodies,
        cache,
    })
}

/// The body given inline or in a file (read with a bound).
fn body_arg(what: &str, inline: Option<&str>, file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    Ok(match (inline, file) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(path)) => Some(read_bounded(what, path, MAX_BODY_BYTES)?),
        (None, None) => None,
    })
}

/// The request and response bodies to send, if any.
struct Bodies {
    request: Option<Vec<u8>>,
    response: Option<Vec<u8>>,
}

struct Call {
    args: CallArgs,
    wasm: Vec<u8>,
    config: PluginConfig,
    bodies: Bodies,
    cache: Option<ModuleCache>,
}

/// Loads the plugin through `cache` when there is one, with the same checks
/// and errors as [`Plugin::load`].
fn load_plugin<E: Engine>(
    engine: &E,
    wasm: &[u8],
    config: PluginConfig,
    services: HostServices,
    cache: Option<&ModuleCache>,
) -> Result<Plugin<E>> {
    let Some(cache) = cache else {
        return Ok(Plugin::load(engine, wasm, config, services)?);
    };
    check_binary(&config.name, wasm)?;
    let loaded = match cache.load(engine, wasm) {
        Ok(loaded) => loaded,
        Err(CacheError::Engine(e)) => return Err(PluginError::from_engine(&config.name, e).into()),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(
                "cannot use the module cache (choose a folder with --cache-dir, or --no-cache)",
            ));
        }
    };
    tracing::debug!(outcome = ?loaded.outcome, dir = %cache.dir().display(), "module cache");
    Ok(Plugin::from_module(
        engine,
        loaded.module,
        config,
        services,
    )?)
}

impl EngineVisitor for Call {
    type Output = Result<ExitCode>;

    fn visit<E: Engine>(self, engine: E) -> Result<ExitCode> {
        let Call {
            args,
            wasm,
            config,
            bodies,
            cache,
        } = self;
        let callouts = Arc::new(CalloutQueue::default());
        let services = HostServices {
            callouts: callouts.clone(),
            ..HostServices::default()
        };
        let location = args.plugin.display().to_string();
        let plugin = load_plugin(&engine, &wasm, config, services, cache.as_ref())
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
        let outcome = exchange(&mut vm, &args, &bodies, &callouts);
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
    bodies: &Bodies,
    callouts: &CalloutQueue,
) -> Result<ExitCode> {
    let id = vm.create_http_stream()?;
    let before = request_headers(args)?;
    let body = bodies.request.as_deref();
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
    let resp_body = bodies.response.as_deref();
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
    print!("{}", diff_text(what, before, after));
}

/// The headers removed (`-`) and added (`+`) between two maps, in their
/// order, as multisets: a header sent twice and kept once is one removal.
/// Linear in the number of headers (one count per distinct pair), so a
/// request with 100k headers prints at once.
fn diff_text(what: &str, before: &HeaderMap, after: &HeaderMap) -> String {
    use std::collections::HashMap;
    use std::fmt::Write;
    let b = before.to_string_pairs();
    let a = after.to_string_pairs();
    /// The pairs of `from` that `other` does not match one for one.
    fn missing<'a>(
        from: &'a [(String, String)],
        other: &[(String, String)],
    ) -> Vec<&'a (String, String)> {
        let mut left: HashMap<&(String, String), usize> = HashMap::with_capacity(other.len());
        for pair in other {
            *left.entry(pair).or_default() += 1;
        }
        from.iter()
            .filter(|pair| match left.get_mut(pair) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            })
            .collect()
    }
    let removed = missing(&b, &a);
    let added = missing(&a, &b);
    if removed.is_empty() && added.is_empty() {
        return format!("{what}: unchanged\n");
    }
    let mut out = format!("{what}:\n");
    for (k, v) in removed {
        let _ = writeln!(out, "  - {k}: {v}");
    }
    for (k, v) in added {
        let _ = writeln!(out, "  + {k}: {v}");
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().copied().collect()
    }

    #[test]
    fn diff_lists_removed_then_added_in_order() {
        let before = map(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let after = map(&[("a", "1"), ("c", "30"), ("d", "4")]);
        assert_eq!(
            diff_text("request headers", &before, &after),
            "request headers:\n  - b: 2\n  - c: 3\n  + c: 30\n  + d: 4\n"
        );
        assert_eq!(
            diff_text("response headers", &before, &before),
            "response headers: unchanged\n"
        );
    }

    #[test]
    fn diff_counts_repeated_headers() {
        let before = map(&[("x", "1"), ("x", "1"), ("x", "1")]);
        let after = map(&[("x", "1"), ("y", "1")]);
        assert_eq!(
            diff_text("h", &before, &after),
            "h:\n  - x: 1\n  - x: 1\n  + y: 1\n"
        );
    }

    /// 20 000 headers (the quadratic version compared 4e8 pairs here): the
    /// plugin-side edit, one removed and one added header, is all that is
    /// printed, and so is a whole map replaced.
    #[test]
    fn diff_of_many_headers_is_exact() {
        let names: Vec<String> = (0..20_000).map(|i| format!("h{i}")).collect();
        let mut before = HeaderMap::new();
        for n in &names {
            before.add(n, "v");
        }
        let mut after = HeaderMap::new();
        for n in names.iter().filter(|n| *n != "h777") {
            after.add(n, "v");
        }
        after.add("x-new", "1");
        assert_eq!(
            diff_text("request headers", &before, &after),
            "request headers:\n  - h777: v\n  + x-new: 1\n"
        );
        let replaced = map(&[("only", "one")]);
        let text = diff_text("request headers", &before, &replaced);
        assert_eq!(text.lines().count(), 1 + 20_000 + 1);
        assert!(
            text.ends_with("  - h19999: v\n  + only: one\n"),
            "{}",
            &text[text.len() - 60..]
        );
    }
}
