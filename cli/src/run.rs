//! `polyhost run -c envoy.yaml`: the data plane, with Envoy's flags.

use anyhow::{Context, Result};
use polyhost_proxy::log::{EnvoyFormat, LogFormat, filter_directives};
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
    /// Seconds in-flight requests get to finish on a graceful shutdown
    /// (SIGQUIT).
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    drain_time_s: u64,
}

/// Runs the proxy until it is told to stop.
pub fn run(args: RunArgs) -> Result<ExitCode> {
    let directives = filter_directives(&args.log_level, args.component_log_level.as_deref())?;
    let format = LogFormat::parse(&args.log_format)?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(directives))
        .with_writer(std::io::stderr)
        .event_format(EnvoyFormat::new(format))
        .try_init()
        .ok();
    let options = RunOptions {
        concurrency: args
            .concurrency
            .unwrap_or_else(|| RunOptions::default().concurrency),
        base_id: args.base_id,
        drain_time: Duration::from_secs(args.drain_time_s),
        config_path: args.config_path.display().to_string(),
    };
    let bootstrap = config::load(&args.config_path)?;
    let proxy = Proxy::new(&bootstrap, &options)
        .with_context(|| format!("cannot start with {}", args.config_path.display()))?;
    proxy.run(&options)?;
    Ok(ExitCode::SUCCESS)
}
