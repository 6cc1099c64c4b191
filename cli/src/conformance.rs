//! `polyhost conformance`: the suite on one engine or all of them.

use anyhow::{Result, anyhow};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor};
use polyhost_conformance::report::Report;
use polyhost_conformance::{EngineRun, Language, cases, differential, run_engine};
use std::path::PathBuf;
use std::process::ExitCode;

/// Output formats.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Format {
    Text,
    Markdown,
    Json,
}

/// Arguments of `polyhost conformance`.
#[derive(clap::Args)]
pub struct ConformanceArgs {
    /// An engine name, or `all` for every engine compiled in.
    #[arg(long, default_value = "all")]
    engine: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Folder with the built plugins (`build/plugins` from scripts/setup.sh).
    #[arg(long, default_value = "build/plugins")]
    fixtures: PathBuf,
    /// A line to add to the report's header (repeatable), e.g. the date.
    #[arg(long)]
    note: Vec<String>,
}

struct RunSuite {
    fixtures: PathBuf,
}

impl EngineVisitor for RunSuite {
    type Output = (EngineRun, String);
    fn visit<E: Engine>(self, engine: E) -> (EngineRun, String) {
        let run = run_engine(&engine, &cases::all(), &Language::ALL, &self.fixtures);
        (run, engine.fingerprint())
    }
}

/// Runs the command; exits 1 when a case fails or engines disagree.
pub fn run(args: ConformanceArgs) -> Result<ExitCode> {
    if !args.fixtures.is_dir() {
        return Err(anyhow!(
            "no plugin fixtures at `{}`; build them with scripts/setup.sh",
            args.fixtures.display()
        ));
    }
    let names: Vec<&str> = if args.engine == "all" {
        AnyEngine::names()
    } else {
        vec![args.engine.as_str()]
    };
    let mut runs = Vec::new();
    let mut engines = Vec::new();
    for name in names {
        let engine =
            AnyEngine::by_name(name, &EngineConfig::default()).map_err(|e| anyhow!("{e}"))?;
        let (run, fingerprint) = engine.visit(RunSuite {
            fixtures: args.fixtures.clone(),
        });
        engines.push((run.engine.to_string(), fingerprint));
        runs.push(run);
    }
    let report = Report {
        mismatches: differential(&runs),
        runs,
        engines,
        context: args.note,
    };
    match args.format {
        Format::Text => print!("{}", report.text()),
        Format::Markdown => print!("{}", report.markdown()),
        Format::Json => println!("{}", report.json()),
    }
    let (_, failed) = report.counts();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
