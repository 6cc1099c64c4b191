//! `polyhost run -c envoy.yaml`: the data plane, with Envoy's flags.

use anyhow::{Context, Result};
use polyhost::EngineConfig;
use polyhost_proxy::log::{EnvoyFormat, LogControl, LogFormat, filter_directives};
use polyhost_proxy::{Proxy, RunOptions, config};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `polyhost run`, named as Envoy names them so scripts
/// written for `envoy` work unchanged.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The Envoy v3 bootstrap (YAML or JSON).
    #[arg(short = 'c', long = "config-path", value_name = "FILE")]
    config_path: PathBuf,
    /// Worker threads (default: the number of cores).
    #[arg(long, value_name = "N")]
    concurrency: Option<usize>,
    /// Keeps the files of proxies running side by side apart.
    #[arg(long, value_name = "N", default_value_t = 0)]
    base_id: u32,
    /// Log level of every component: trace, debug, info, warning, error,
    /// critical, off.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    log_level: String,
    /// Levels per component, e.g. `wasm:trace,upstream:debug`.
    #[arg(long, value_name = "COMPONENT:LEVEL,...")]
    component_log_level: Option<String>,
    /// Envoy's log line format (%Y %m %d %T %e %t %l %L %n %v).
    #[arg(long, default_value = polyhost_proxy::log::DEFAULT_LOG_FORMAT)]
    log_format: String,
    /// `serve` runs the proxy; `validate` loads the configuration and every
    /// plugin (each VM started and configured, as at startup), says
    /// whether that worked, and exits without serving, as Envoy's
    /// `--mode validate` does.
    #[arg(long, value_enum, default_value_t = Mode::Serve)]
    mode: Mode,
    /// Seconds in-flight requests get to finish on a graceful shutdown
    /// (SIGQUIT).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    drain_time_s: u64,
    /// Wall-clock limit on each plugin callback, in milliseconds (0: none).
    /// A plugin over it fails that request under its failure policy.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    wasm_call_timeout_ms: u64,
    /// Limit on each start-up callback of a plugin VM (runtime
    /// initialisation, `proxy_on_vm_start`, `proxy_on_configure`), in
    /// milliseconds; never less than the callback limit.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    wasm_startup_timeout_ms: u64,
    /// Largest linear memory a plugin may grow to, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    wasm_max_memory_mib: u64,
}

/// What `polyhost run` does with the configuration (Envoy's `--mode`).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Serve traffic until told to stop.
    Serve,
    /// Check the configuration and its plugins, then exit.
    Validate,
}

/// Runs the proxy until it is told to stop.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let directives = filter_directives(&args.log_level, args.component_log_level.as_deref())?;
    let format = LogFormat::parse(&args.log_format)?;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
        .with_writer(std::io::stderr)
        .event_format(EnvoyFormat::new(format))
        .with_filter_reloading();
    // The admin's /logging swaps the filter through this handle.
    let handle = subscriber.reload_handle();
    subscriber.try_init().ok();
    let log_control = LogControl::new(
        &args.log_level,
        args.component_log_level.as_deref(),
        move |directives: &str| {
            let filter =
                tracing_subscriber::EnvFilter::try_new(directives).map_err(|e| e.to_string())?;
            handle.reload(filter).map_err(|e| e.to_string())
        },
    )?;
    let options = RunOptions {
        concurrency: args
            .concurrency
            .unwrap_or_else(|| RunOptions::default().concurrency),
        base_id: args.base_id,
        drain_time: Duration::from_secs(args.drain_time_s),
        config_path: args.config_path.display().to_string(),
        engine: EngineConfig {
            call_timeout: EngineConfig::timeout_from_millis(args.wasm_call_timeout_ms),
            startup_timeout: Duration::from_millis(args.wasm_startup_timeout_ms),
            max_memory_bytes: args.wasm_max_memory_mib.saturating_mul(1 << 20),
            ..EngineConfig::default()
        },
        log_control: Some(std::sync::Arc::new(log_control)),
    };
    let bootstrap = config::load(&args.config_path)?;
    let proxy = Proxy::new(&bootstrap, &options)
        .with_context(|| format!("cannot start with {}", args.config_path.display()))?;
    if args.mode == Mode::Validate {
        tracing::info!(target: "polyhost::main", "configuration '{}' OK", args.config_path.display());
        return Ok(ExitCode::SUCCESS);
    }
    proxy.run(&options)?;
    Ok(ExitCode::SUCCESS)
}
