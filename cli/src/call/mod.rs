//! `polyhost call`: one HTTP request (or, with `--tcp`, one TCP
//! connection) through a plugin, with its callouts answered from the
//! command line and its ticks run on a virtual clock, printed step by step
//! (or as JSON) with what the plugin left behind.

mod callouts;
mod exchange;
mod input;
mod report;
mod services;
mod session;
mod tcp;

use crate::compile;
use crate::files::{MAX_CONFIG_BYTES, MAX_PLUGIN_BYTES, read_bounded};
use anyhow::{Context, Result};
use exchange::{Exchange, Traffic};
use polyhost::cache::{CacheError, DEFAULT_MAX_BYTES, ModuleCache};
use polyhost::engine_core::HostContext;
use polyhost::services::HostServices;
use polyhost::{
    AnyEngine, Engine, EngineConfig, EngineVisitor, HeaderMap, Plugin, PluginConfig, PluginError,
    check_binary,
};
use report::{Format, Leftovers, Report};
use session::{Session, Timeline};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

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
    /// A request header, `name: value` (repeatable; `:path: /x`,
    /// `:method: POST`, `:authority: example.com` and `host: ...` set the
    /// pseudo-headers, and conflict with --path / --method).
    #[arg(short = 'H', long = "header", value_name = "NAME:VALUE")]
    headers: Vec<String>,
    /// Request method (default GET).
    #[arg(long)]
    method: Option<String>,
    /// Request path (default /).
    #[arg(long)]
    path: Option<String>,
    /// Request body; `@FILE` reads it from a file (at most 16 MiB).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// Request body read from a file (as `--body @FILE`).
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Status of the simulated upstream response (default 200).
    #[arg(long)]
    status: Option<u16>,
    /// Body of the simulated upstream response; `@FILE` reads a file.
    #[arg(long, conflicts_with = "response_body_file")]
    response_body: Option<String>,
    /// Body of the simulated upstream response, read from a file (as
    /// `--response-body @FILE`).
    #[arg(long, value_name = "FILE")]
    response_body_file: Option<PathBuf>,
    /// `--tcp` and the connection's events.
    #[command(flatten)]
    tcp: tcp::TcpArgs,
    /// What the run answers, injects and prints (boxed: the arguments of
    /// every command share one enum).
    #[command(flatten)]
    bench: Box<BenchArgs>,
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

/// The test-bench options of `polyhost call`: the upstream response,
/// chunks, callout answers, ticks, properties and the output format.
#[derive(clap::Args)]
struct BenchArgs {
    /// A header of the simulated upstream response, `name: value`
    /// (repeatable; a name given twice is sent twice).
    #[arg(long = "response-header", value_name = "NAME:VALUE")]
    response_headers: Vec<String>,
    /// Send request and response bodies in chunks of at most N bytes.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    chunk_size: Option<u32>,
    /// Answer the plugin's next callout (or the next one to `cluster=NAME`)
    /// with `status=200;header=x-a: 1;body=@FILE`, `grpc-status=0;body=...`
    /// or `fail=timeout` (repeatable; see the README). Without any, HTTP
    /// callouts get an empty 200 and gRPC calls UNAVAILABLE; with some,
    /// callouts no answer matches stay unanswered and are listed.
    #[arg(long = "callout-response", value_name = "ANSWER")]
    callout_responses: Vec<String>,
    /// Run up to N ticks at the period the plugin set (while the request
    /// waits, then after it).
    #[arg(long, value_name = "N")]
    ticks: Option<u64>,
    /// Run ticks due in the first MS milliseconds.
    #[arg(long, value_name = "MS")]
    run_for: Option<u64>,
    /// Wait for ticks in real time instead of on a virtual clock.
    #[arg(long)]
    real_time: bool,
    /// A property the plugin can read, `PATH=VALUE` with a dotted path
    /// (`node.metadata.team=edge`; `int:N` for an integer). Repeatable.
    #[arg(long = "property", value_name = "PATH=VALUE")]
    properties: Vec<String>,
    /// Output format: text lines as the run goes, or one JSON document.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Everything the command line says, checked before the plugin loads.
struct Inputs {
    request_headers: HeaderMap,
    request_body: Option<Vec<u8>>,
    response_headers: HeaderMap,
    response_body: Option<Vec<u8>>,
    answers: callouts::Answers,
    services: services::RunServices,
    /// With `--tcp`: the connection to run instead of the request.
    connection: Option<tcp::Connection>,
}

impl Inputs {
    fn parse(args: &CallArgs) -> Result<Inputs> {
        let line = input::RequestLine {
            method: args.method.as_deref(),
            path: args.path.as_deref(),
            headers: &args.headers,
        };
        Ok(Inputs {
            request_headers: input::request_headers(&line)?,
            request_body: input::body(
                "request body",
                args.body.as_deref(),
                args.body_file.as_deref(),
            )?,
            response_headers: input::response_headers(args.status, &args.bench.response_headers)?,
            response_body: input::body(
                "response body",
                args.response_body.as_deref(),
                args.response_body_file.as_deref(),
            )?,
            answers: callouts::Answers::parse(&args.bench.callout_responses)?,
            services: services::RunServices::new(&args.bench.properties)?,
            connection: match args.tcp.tcp {
                true => Some(tcp::Connection::parse(
                    &args.tcp.steps,
                    &args.bench.properties,
                )?),
                false => None,
            },
        })
    }
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
    let inputs = Inputs::parse(&args)?;
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
        inputs,
        cache,
    })
}

struct Call {
    args: CallArgs,
    wasm: Vec<u8>,
    config: PluginConfig,
    inputs: Inputs,
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
            inputs,
            cache,
        } = self;
        let Inputs {
            request_headers,
            request_body,
            response_headers,
            response_body,
            answers,
            services,
            connection,
        } = inputs;
        let mut report = Report::new(args.bench.format);
        let location = args.plugin.display().to_string();
        let plugin = load_plugin(
            &engine,
            &wasm,
            config,
            services.host.clone(),
            cache.as_ref(),
        )
        .with_context(|| format!("cannot load `{location}`"))?;
        report.plugin(
            &plugin.info().name,
            plugin.info().abi.as_str(),
            engine.name(),
        );
        let timeline = Timeline::new(
            args.bench.ticks,
            args.bench.run_for.map(Duration::from_millis),
            args.bench.real_time,
        );
        let mut vm = plugin
            .new_vm()
            .with_context(|| format!("`{location}` failed to start"))?;
        // A timer the plugin set while starting restarts on the run's clock.
        vm.instance().data_mut().set_clock(timeline.clock());
        report.logs(vm.take_logs());
        let mut leftovers = Leftovers::default();
        let session = Session::new(&mut vm, &mut report, &services.callouts, answers, timeline);
        let (outcome, what) = match connection {
            Some(connection) => (
                tcp::Run::new(session, &connection)
                    .and_then(|run| run.run(connection, &mut leftovers)),
                "connection",
            ),
            None => {
                let traffic = Traffic {
                    request_headers,
                    request_body: request_body.as_deref(),
                    response_headers,
                    response_body: response_body.as_deref(),
                    chunk_size: args.bench.chunk_size.map(|n| n as usize),
                };
                (
                    Exchange::new(session)
                        .and_then(|exchange| exchange.run(&traffic, &mut leftovers)),
                    "request",
                )
            }
        };
        report.logs(vm.take_logs());
        services.leftovers(&mut leftovers);
        // What happened so far is printed even when the plugin failed.
        report.finish(&leftovers);
        outcome.with_context(|| format!("`{location}` failed while handling the {what}"))?;
        Ok(ExitCode::SUCCESS)
    }
}
