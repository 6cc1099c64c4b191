//! The helper of `scripts/bench-e2e.sh`, the end-to-end benchmark of
//! `polyhost run` against direct and nginx + Lua:
//!
//! - `upstream`: the fixed-200 upstream every setup proxies to;
//! - `report`: checks the collected results (no errors, every run complete,
//!   a plausible shape; never a timing threshold) and renders the report
//!   section and chart.

mod chart;
mod report;
mod results;
mod upstream;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// End-to-end benchmark helper: the upstream, and the report.
#[derive(Parser)]
#[command(name = "polyhost-bench-e2e")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a fixed `200` on a loopback address until killed.
    Upstream {
        /// Where to listen (loopback only).
        #[arg(long, default_value = "127.0.0.1:18480")]
        listen: SocketAddr,
    },
    /// Check the results and write the report section and chart.
    Report {
        /// The rows the script collected (tab-separated, with a header).
        #[arg(long)]
        results: PathBuf,
        /// `key=value` lines describing the run.
        #[arg(long)]
        meta: PathBuf,
        /// Where to write the markdown section.
        #[arg(long)]
        markdown: PathBuf,
        /// Where to write the SVG chart.
        #[arg(long)]
        chart: PathBuf,
        /// The chart's path as the markdown links it.
        #[arg(long, default_value = "chart-e2e.svg")]
        chart_link: String,
    },
}

fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Upstream { listen } => upstream::serve(listen),
        Command::Report {
            results,
            meta,
            markdown,
            chart,
            chart_link,
        } => {
            let rows = results::read_rows(&results)?;
            let meta = results::read_meta(&meta)?;
            // Rendered even when a check fails, so the failing run can be
            // looked at; the exit status still says it failed.
            let md = report::markdown(&rows, &meta, &chart_link);
            std::fs::write(&markdown, md)
                .with_context(|| format!("writing {}", markdown.display()))?;
            let svg = chart::svg(&rows, &meta).map_err(anyhow::Error::msg)?;
            std::fs::write(&chart, svg).with_context(|| format!("writing {}", chart.display()))?;
            results::validate(&rows).context("the end-to-end results failed their checks")?;
            println!(
                "bench-e2e: {} runs, no errors; wrote {} and {}",
                rows.len(),
                markdown.display(),
                chart.display()
            );
            Ok(())
        }
    }
}
