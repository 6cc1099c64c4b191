//! `polyhost call`: one HTTP request (or, with `--tcp`, one TCP
//! connection) through a plugin, or through several listed in `--config`
//! (with services beside them), with callouts answered from the command
//! line, queue notifications delivered, foreign functions answered and
//! ticks run on a virtual clock, printed step by step (or as JSON) with
//! what the plugins left behind.

mod callouts;
mod exchange;
mod input;
mod plugins;
mod report;
mod services;
mod session;
mod tcp;

use crate::compile;
use anyhow::{Context, Result, bail};
use exchange::{Exchange, Traffic};
use polyhost::cache::{CacheError, DEFAULT_MAX_BYTES, ModuleCache};
use polyhost::services::HostServices;
use polyhost::{
    AnyEngine, Engine, EngineConfig, EngineVisitor, HeaderMap, Plugin, PluginConfig, PluginError,
    RootConfig, check_binary,
};
use report::{Format, Leftovers, PluginRow, Report};
use session::{Session, Timeline};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `polyhost call`.
#[derive(clap::Args)]
pub struct CallArgs {
    /// The plugin (.wasm); not given when --config lists the plugins.
    plugin: Option<PathBuf>,
    /// Plugin settings as JSON: {"name", "root_id", "vm_id", "configuration",
    /// "vm_configuration", "allowed_env", "env", "log_level"}; or several
    /// plugins: {"plugins": [{"file": "a.wasm", ...settings}, ...],
    /// "services": [...]} (the request goes through the plugins in order;
    /// services get their root context only).
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
    /// (`node.metadata.team=edge`) or Envoy's path segments as a JSON array
    /// (`["metadata","filter_metadata","envoy.lb","canary"]=1`); `int:N`
    /// for an integer. Repeatable.
    #[arg(long = "property", value_name = "PATH=VALUE")]
    properties: Vec<String>,
    /// Answer the plugins' `proxy_call_foreign_function` of NAME with
    /// TEXT, the bytes of a file (`@FILE`) or a failure (`!STATUS`, e.g.
    /// `!InternalFailure`). Repeatable; other names get NotFound.
    #[arg(long = "foreign-function", value_name = "NAME=ANSWER")]
    foreign_functions: Vec<String>,
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
            services: services::RunServices::new(
                &args.bench.properties,
                &args.bench.foreign_functions,
            )?,
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
    let entries = plugins::entries(
        args.plugin.as_deref(),
        args.config.as_deref(),
        args.plugin_config.as_deref(),
    )?;
    if args.tcp.tcp {
        let filters = entries.iter().filter(|e| !e.service).count();
        if filters != 1 {
            bail!(
                "--tcp runs one network filter (with services beside it, if any); the config lists {filters} plugins"
            );
        }
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
        entries,
        inputs,
        cache,
    })
}

struct Call {
    args: CallArgs,
    entries: Vec<plugins::Entry>,
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
            entries,
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
        // Services start first, as the data plane starts them before its
        // listeners; then the filters in chain order.
        let mut order: Vec<&plugins::Entry> = (entries.iter()).filter(|e| e.service).collect();
        order.extend(entries.iter().filter(|e| !e.service));
        // Each VM's code, loaded once: (entry that made it, plugin, callouts).
        let mut loaded = Vec::new();
        for entry in &order {
            if loaded
                .iter()
                .any(|(first, _, _): &(&plugins::Entry, _, _)| first.shares_vm_with(entry))
            {
                continue;
            }
            let (host, callouts) = services.for_vm();
            let plugin = load_plugin(
                &engine,
                &entry.wasm,
                entry.config.clone(),
                host,
                cache.as_ref(),
            )
            .with_context(|| format!("cannot load `{}`", entry.location))?;
            loaded.push((*entry, plugin, callouts));
        }
        let several = entries.len() > 1;
        if several {
            let mut rows = Vec::new();
            for entry in &order {
                let vm = (loaded.iter()).position(|(first, _, _)| first.shares_vm_with(entry));
                let (_, plugin, _) = &loaded[vm.expect("loaded above")];
                rows.push(PluginRow {
                    name: entry.config.name.clone(),
                    kind: if entry.service { "service" } else { "filter" },
                    file: entry.location.clone(),
                    root_id: entry.config.root_id.clone(),
                    vm_id: entry.config.vm_id.clone(),
                    abi: plugin.info().abi.as_str().to_string(),
                    vm: vm.map_or(0, |v| v + 1),
                });
            }
            report.plugins(rows, engine.name());
        } else {
            let plugin = &loaded[0].1;
            report.plugin(
                &plugin.info().name,
                plugin.info().abi.as_str(),
                engine.name(),
            );
        }
        let timeline = Timeline::new(
            args.bench.ticks,
            args.bench.run_for.map(Duration::from_millis),
            args.bench.real_time,
        );
        let mut vms = Vec::new();
        let mut leftovers = Leftovers::default();
        let (outcome, what) = {
            let mut session = Session::new(&mut vms, &mut report, &services, answers, timeline);
            let mut started: Vec<(usize, usize)> = Vec::new();
            for entry in &order {
                let group = (loaded.iter()).position(|(first, _, _)| first.shares_vm_with(entry));
                let group = group.expect("loaded above");
                let vm = started.iter().find(|(g, _)| *g == group).map(|(_, vm)| *vm);
                let (_, plugin, callouts) = &loaded[group];
                let index = session
                    .start(
                        plugin,
                        callouts,
                        vm,
                        RootConfig::from(&entry.config),
                        !entry.service,
                    )
                    .with_context(|| format!("`{}` failed to start", entry.location))?;
                started.push((group, index));
            }
            match connection {
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
            }
        };
        services.leftovers(&mut leftovers, report.several());
        // What happened so far is printed even when the plugin failed.
        report.finish(&leftovers);
        let failed = if several {
            "a plugin".to_string()
        } else {
            format!("`{}`", entries[0].location)
        };
        outcome.with_context(|| format!("{failed} failed while handling the {what}"))?;
        Ok(ExitCode::SUCCESS)
    }
}
