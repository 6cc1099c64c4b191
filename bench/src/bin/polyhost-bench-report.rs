//! Runs every benchmark of the report and writes `REPORT.md`, `chart.svg`
//! and `results.json` (what `scripts/bench-report.sh` calls).

use anyhow::Context as _;
use clap::Parser;
use polyhost_bench::measure::Settings;
use polyhost_bench::run::{self, Meta, Options};
use polyhost_bench::{Language, Workload, chart, report};
use std::path::PathBuf;

/// Measures per-request latency for every plugin language on every engine
/// compiled in, with native and LuaJIT baselines, and writes the report.
#[derive(Parser)]
#[command(name = "polyhost-bench-report")]
struct Args {
    /// Few, short samples: checks the harness runs; the numbers are rough.
    #[arg(long)]
    quick: bool,
    /// Where to write REPORT.md and chart.svg.
    #[arg(long)]
    out: PathBuf,
    /// Where to write every number as JSON (not written by default).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The plugin fixtures folder (default: build/plugins of this checkout).
    #[arg(long)]
    fixtures: Option<PathBuf>,
    /// Engines to run (default: every engine compiled in).
    #[arg(long = "engine")]
    engines: Vec<String>,
    /// Commit to record in the report.
    #[arg(long, default_value = "unknown")]
    commit: String,
    /// Date to record in the report.
    #[arg(long, default_value = "unknown")]
    date: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let engines = if args.engines.is_empty() {
        polyhost::AnyEngine::names()
            .into_iter()
            .map(String::from)
            .collect()
    } else {
        args.engines
    };
    anyhow::ensure!(
        !engines.is_empty(),
        "this build has no engine; enable one with --features"
    );
    let options = Options {
        fixtures: args
            .fixtures
            .unwrap_or_else(polyhost_bench::default_fixtures),
        settings: if args.quick {
            Settings::quick()
        } else {
            Settings::full()
        },
        engines,
        languages: Language::ALL.to_vec(),
        workloads: Workload::ALL.to_vec(),
        verbose: true,
    };
    let meta = Meta {
        date: args.date,
        commit: args.commit,
        quick: args.quick,
        ..Meta::default()
    };
    let started = std::time::Instant::now();
    let results = run::run(&options, meta);
    let write = |path: PathBuf, text: &str| {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    if let Some(json) = args.json {
        write(json, &serde_json::to_string_pretty(&results)?)?;
    }
    write(args.out.join("REPORT.md"), &report::markdown(&results))?;
    let svg = chart::svg(&results).map_err(anyhow::Error::msg)?;
    write(args.out.join("chart.svg"), &svg)?;
    eprintln!(
        "bench: wrote {} in {:.0} s",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    for line in report::headlines(&results) {
        eprintln!("bench: {line}");
    }
    Ok(())
}
