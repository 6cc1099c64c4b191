//! `polyhost`: run proxy-wasm plugins from the command line.

mod call;
mod compile;
mod conformance;
mod files;
mod report;
mod run;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// A proxy-wasm host with a choice of WebAssembly runtime.
#[derive(Parser)]
#[command(name = "polyhost", version, about)]
struct Cli {
    /// Show host diagnostics (tracing) on stderr: error, warn, info, debug, trace.
    #[arg(long, global = true, value_name = "LEVEL")]
    trace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one HTTP request (or, with --tcp, one TCP connection) through a
    /// plugin, with its ticks and callouts, and show what it did.
    Call(call::CallArgs),
    /// Precompile plugins into the module cache, so loading them later does
    /// not compile.
    Compile(compile::CompileArgs),
    /// List the engines compiled into this build.
    Engines,
    /// Run the data plane: serve the listeners of an Envoy bootstrap
    /// (`-c envoy.yaml`) through their proxy-wasm plugins.
    Run(run::RunArgs),
    /// Run the conformance suite and print the matrix of cases x engines.
    Conformance(conformance::ConformanceArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(level) = &cli.trace {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(level))
            .with_writer(std::io::stderr)
            .init();
    }
    let result = match cli.command {
        Command::Call(args) => call::run(args),
        Command::Compile(args) => compile::run(args),
        Command::Run(args) => run::run(args),
        Command::Conformance(args) => conformance::run(args),
        Command::Engines => {
            for (i, name) in polyhost::AnyEngine::names().iter().enumerate() {
                let default = if i == 0 { " (default)" } else { "" };
                println!("{name}{default}");
            }
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            report::error(&e);
            ExitCode::from(2)
        }
    }
}
