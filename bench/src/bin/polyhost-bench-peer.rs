//! The Polyhost half of `scripts/bench-peer.sh`, the side-by-side benchmark
//! against `proxy-wasm-host` (whose half is `bench/peer`, a crate of its
//! own):
//!
//! - `measure`: times the Rust `noop` and `bench_headers` plugins on one
//!   engine through `PluginBench::serve` (the request life of the report)
//!   and prints one JSON object in the shape the peer's binary prints;
//! - `render`: reads the objects of every round of both hosts and writes the
//!   report section.

use anyhow::{Context as _, bail, ensure};
use clap::{Parser, Subcommand};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor};
use polyhost_bench::measure::{self, Settings};
use polyhost_bench::wasm::PluginBench;
use polyhost_bench::{Fixture, Language, Workload};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Side-by-side benchmark helper: Polyhost's measurement, and the report.
#[derive(Parser)]
#[command(name = "polyhost-bench-peer")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time the Rust `noop` and `bench_headers` plugins; JSON on stdout.
    Measure {
        /// Few, short batches (the report's quick settings).
        #[arg(long)]
        quick: bool,
        /// The engine to run.
        #[arg(long, default_value = "wasmtime")]
        engine: String,
        /// The plugin fixtures folder (default: build/plugins of this checkout).
        #[arg(long)]
        fixtures: Option<PathBuf>,
    },
    /// Write the report section from the rounds of both hosts.
    Render {
        /// JSON objects, one a line, as `measure` and the peer's binary
        /// print them, in the order they ran.
        #[arg(long)]
        runs: PathBuf,
        /// `key=value` lines describing the run.
        #[arg(long)]
        meta: PathBuf,
        /// Where to write the markdown section.
        #[arg(long)]
        markdown: PathBuf,
    },
}

/// The host name `measure` reports; the peer's binary says `proxy-wasm-host`.
const POLYHOST: &str = "polyhost";
const PEER: &str = "proxy-wasm-host";

/// The workloads compared: those the peer can run with the same plugins and
/// checks (no body or callout plumbing on its side).
const WORKLOADS: [Workload; 2] = [Workload::Noop, Workload::Headers];

/// One host's measurement of every plugin, one round.
#[derive(Debug, Serialize, Deserialize)]
struct Run {
    host: String,
    /// The peer's crate version, or Polyhost's engine fingerprint.
    version: String,
    quick: bool,
    plugins: Vec<Cell>,
}

/// One plugin's per-request time, in microseconds.
#[derive(Debug, Serialize, Deserialize)]
struct Cell {
    plugin: String,
    p50_us: f64,
    mean_us: f64,
    min_us: f64,
    max_us: f64,
    batches: usize,
    iterations: u64,
}

struct Measure {
    fixtures: PathBuf,
    quick: bool,
}

impl EngineVisitor for Measure {
    type Output = anyhow::Result<Run>;

    fn visit<E: Engine>(self, engine: E) -> anyhow::Result<Run> {
        let settings = if self.quick {
            Settings::quick()
        } else {
            Settings::full()
        };
        let fixture = Arc::new(Fixture::default());
        let mut plugins = Vec::new();
        for workload in WORKLOADS {
            let name = workload.plugin();
            let path = Language::Rust.fixture(&self.fixtures, name);
            let wasm = std::fs::read(&path).with_context(|| {
                format!("{} (run scripts/setup.sh to build it)", path.display())
            })?;
            let module = engine.compile(&wasm).context("compile")?;
            let mut bench = PluginBench::new(&engine, module, name, workload, fixture.clone())
                .map_err(anyhow::Error::msg)?;
            bench.check().map_err(anyhow::Error::msg)?;
            let stats = measure::measure(&settings, || {
                bench.serve().map(|s| drop(std::hint::black_box(s)))
            })
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{name} on {}", engine.name()))?;
            eprintln!(
                "polyhost-bench-peer: {name}: p50 {:.3} µs, mean {:.3} µs",
                stats.median_ns / 1e3,
                stats.mean_ns / 1e3
            );
            plugins.push(Cell {
                plugin: name.to_string(),
                p50_us: stats.median_ns / 1e3,
                mean_us: stats.mean_ns / 1e3,
                min_us: stats.min_ns / 1e3,
                max_us: stats.max_ns / 1e3,
                batches: stats.batches,
                iterations: stats.iterations,
            });
        }
        Ok(Run {
            host: POLYHOST.into(),
            version: engine.fingerprint(),
            quick: self.quick,
            plugins,
        })
    }
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Measure {
            quick,
            engine,
            fixtures,
        } => {
            // The report's engine settings (`run::run`).
            let engine = AnyEngine::by_name(&engine, &EngineConfig::default())
                .map_err(|e| anyhow::anyhow!("engine {engine}: {e}"))?;
            let run = engine.visit(Measure {
                fixtures: fixtures.unwrap_or_else(polyhost_bench::default_fixtures),
                quick,
            })?;
            println!("{}", serde_json::to_string(&run)?);
            Ok(())
        }
        Command::Render {
            runs,
            meta,
            markdown,
        } => {
            let runs = read_runs(&runs)?;
            let meta = read_meta(&meta)?;
            let md = render(&runs, &meta)?;
            std::fs::write(&markdown, md).with_context(|| format!("writing {}", markdown.display()))
        }
    }
}

fn read_runs(path: &Path) -> anyhow::Result<Vec<Run>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| format!("{} line {}", path.display(), i + 1))
        })
        .collect()
}

fn read_meta(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// One host's rounds of one plugin, summed up.
struct Summary {
    /// Median of the rounds' p50s, and the fastest and slowest of them.
    p50: (f64, f64, f64),
    /// The mean over every timed request of every round.
    mean: f64,
    rounds: usize,
}

fn summarize(runs: &[Run], host: &str, plugin: &str) -> anyhow::Result<Summary> {
    let cells: Vec<&Cell> = runs
        .iter()
        .filter(|r| r.host == host)
        .map(|r| {
            r.plugins
                .iter()
                .find(|c| c.plugin == plugin)
                .with_context(|| format!("a {host} round has no {plugin}"))
        })
        .collect::<anyhow::Result<_>>()?;
    ensure!(!cells.is_empty(), "no {host} round");
    let mut p50s: Vec<f64> = cells.iter().map(|c| c.p50_us).collect();
    p50s.sort_by(f64::total_cmp);
    let n = p50s.len();
    let median = if n % 2 == 1 {
        p50s[n / 2]
    } else {
        (p50s[n / 2 - 1] + p50s[n / 2]) / 2.0
    };
    let requests = |c: &Cell| c.batches as f64 * c.iterations as f64;
    let total: f64 = cells.iter().map(|c| requests(c)).sum();
    let mean = cells.iter().map(|c| c.mean_us * requests(c)).sum::<f64>() / total;
    Ok(Summary {
        p50: (median, p50s[0], p50s[n - 1]),
        mean,
        rounds: n,
    })
}

/// Microseconds with three significant digits.
fn us(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} µs")
    } else if v >= 10.0 {
        format!("{v:.1} µs")
    } else {
        format!("{v:.2} µs")
    }
}

fn render(runs: &[Run], meta: &[(String, String)]) -> anyhow::Result<String> {
    let get = |key: &str| {
        meta.iter()
            .find(|(k, _)| k == key)
            .map_or("?", |(_, v)| v.as_str())
    };
    let Some(polyhost) = runs.iter().find(|r| r.host == POLYHOST) else {
        bail!("no Polyhost round in the results");
    };
    if !runs.iter().any(|r| r.host == PEER) {
        bail!("no {PEER} round in the results");
    }
    let quick = runs.iter().any(|r| r.quick);
    let mut md = String::new();
    md.push_str("<!-- bench-peer:begin -->\n");
    md.push_str("## Side by side with proxy-wasm-host 0.2.0\n\n");
    md.push_str(
        "The same Rust SDK plugins (the same `.wasm` files) through the same request life, \
         in process, on Polyhost (engine `wasmtime`, Cranelift) and on \
         [`proxy-wasm-host`](https://crates.io/crates/proxy-wasm-host) 0.2.0, the other \
         proxy-wasm host for Rust on crates.io (also wasmtime with Cranelift), measured in \
         one run, the two hosts taking turns. Generated by `scripts/bench-peer.sh`; do not \
         edit by hand.\n\n",
    );
    if quick {
        md.push_str("**Quick run: rough numbers from a few short batches.**\n\n");
    }
    md.push_str("| | |\n|---|---|\n");
    for (label, key) in [
        ("date", "date"),
        ("commit", "commit"),
        ("machine", "machine"),
        ("load before the run", "loadavg"),
        ("command", "command"),
        ("Polyhost", "polyhost"),
        ("proxy-wasm-host", "peer"),
        ("rounds", "rounds"),
    ] {
        let _ = writeln!(md, "| {label} | {} |", get(key));
    }
    let _ = writeln!(md, "| Polyhost engine | `{}` |", polyhost.version);
    md.push('\n');
    md.push_str(
        "| plugin (Rust SDK) | Polyhost p50 | proxy-wasm-host p50 | ratio (p50) | \
         Polyhost mean | proxy-wasm-host mean | ratio (mean) |\n",
    );
    md.push_str("|---|---|---|---|---|---|---|\n");
    for workload in WORKLOADS {
        let plugin = workload.plugin();
        let ours = summarize(runs, POLYHOST, plugin)?;
        let peer = summarize(runs, PEER, plugin)?;
        let spread = |s: &Summary| {
            if s.rounds > 1 {
                format!("{} ({}–{})", us(s.p50.0), us(s.p50.1), us(s.p50.2))
            } else {
                us(s.p50.0)
            }
        };
        let _ = writeln!(
            md,
            "| `{plugin}` | {} | {} | {:.2}× | {} | {} | {:.2}× |",
            spread(&ours),
            spread(&peer),
            peer.p50.0 / ours.p50.0,
            us(ours.mean),
            us(peer.mean),
            peer.mean / ours.mean,
        );
    }
    md.push('\n');
    md.push_str(
        "Ratio: proxy-wasm-host's time divided by Polyhost's; above 1 means Polyhost is \
         faster. p50 cells: the median of the rounds' p50s (fastest–slowest round).\n\n",
    );
    md.push_str(
        "- **Workloads.** `noop`: no work, a request's callbacks alone. `bench_headers`: 20 \
         header adds, 20 gets and 20 removes on the request headers in \
         `proxy_on_request_headers` (60 host calls). Both leave the request and response \
         headers as they came; each host checks that on two requests before it is timed.\n",
    );
    md.push_str(
        "- **One request's life, on both hosts.** A stream context created under the \
         plugin's started root context, `proxy_on_request_headers` (the 11 request headers \
         of the report's fixture, end of stream), `proxy_on_response_headers` (its 5 \
         response headers, end of stream), then `proxy_on_done`, `proxy_on_log` and \
         `proxy_on_delete`; the headers are copied in per request and taken back out. \
         Polyhost: `PluginBench::serve` of the report (`create_http_stream`, \
         `on_request_headers`, `on_response_headers`, `finish_stream`, which calls log, done, \
         delete). proxy-wasm-host: `bench/peer`, one `Guest::with` scope per request over a \
         stream state holding a `VecHeaderMap` for each direction, with no access rules of \
         its own (the cheapest the crate allows); `on_context_create`, \
         `on_request_headers`, `on_response_headers`, `on_done`, `on_log`, `on_delete` (the \
         crate calls `proxy_on_log` only on a done context, hence done before log). Both \
         run the plugins at log level info.\n",
    );
    md.push_str(
        "- **Timing.** The loop of the report (`bench/src/measure.rs`, compiled into the \
         peer's binary from the same file): a warm-up, then batches sized to a fixed duration; a round's \
         p50 is the median of its batch means and its mean the mean over every timed \
         request. Rounds alternate, proxy-wasm-host then Polyhost, each a fresh process \
         that compiles and starts the plugins, so machine noise falls on both.\n",
    );
    md.push_str(
        "- **Limits, each host's defaults.** proxy-wasm-host: `Engine::new()` and \
         `Limits::default()`, i.e. a 1 s CPU-time limit per guest call (counted in epochs \
         of a 10 ms ticker thread; epoch interruption is always on), a 128 MiB memory cap \
         per instance, 10,000 table elements, no fuel. Polyhost: `EngineConfig::default()`, \
         i.e. a 100 ms call timeout (wasmtime epoch interruption, 5 ms ticker), a 1 GiB \
         memory cap, no fuel, instances allocated on demand. Both generate epoch checks in \
         the plugins' code.\n",
    );
    md.push_str(
        "- **Not the same.** The wasmtime versions and the compilers that built the two \
         hosts differ (see the table above): proxy-wasm-host 0.2.0 needs rustc 1.96, newer \
         than the workspace's toolchain, and its own wasmtime. Only `noop` and \
         `bench_headers` are compared; the report's body and callout workloads would need \
         a body buffer and a callout service written against the peer's API.\n",
    );
    md.push_str("<!-- bench-peer:end -->\n");
    Ok(md)
}
