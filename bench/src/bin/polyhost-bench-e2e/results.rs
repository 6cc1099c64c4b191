//! The measurements `scripts/bench-e2e.sh` collects: one tab-separated row
//! per load-generator run, plus `key=value` lines describing the run.

use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// What was in front of the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Setup {
    /// wrk straight to the upstream: the floor.
    Direct,
    /// nginx proxying, no Lua.
    Nginx,
    /// nginx proxying with the 60 header operations in `access_by_lua_block`.
    NginxLua,
    /// `polyhost run` proxying, no HTTP filter but the router.
    Polyhost,
    /// `polyhost run` with the `bench_headers` plugin.
    Plugin,
}

impl Setup {
    fn parse(s: &str) -> anyhow::Result<Setup> {
        Ok(match s {
            "direct" => Setup::Direct,
            "nginx" => Setup::Nginx,
            "nginx-lua" => Setup::NginxLua,
            "polyhost" => Setup::Polyhost,
            "polyhost-plugin" => Setup::Plugin,
            other => bail!("unknown setup {other:?}"),
        })
    }
}

/// One configuration measured: a setup, and for the plugin its language and
/// engine.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Config {
    /// What proxied.
    pub setup: Setup,
    /// Plugin language (`rust`, `go`, `assemblyscript`, `cpp`), for
    /// [`Setup::Plugin`].
    pub language: Option<String>,
    /// Polyhost engine name, for [`Setup::Plugin`].
    pub engine: Option<String>,
}

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.setup {
            Setup::Direct => f.write_str("direct to the upstream"),
            Setup::Nginx => f.write_str("nginx, proxy only"),
            Setup::NginxLua => f.write_str("nginx + Lua, 60 header ops"),
            Setup::Polyhost => f.write_str("polyhost, no filter"),
            Setup::Plugin => write!(
                f,
                "{} on {}",
                language_label(self.language.as_deref().unwrap_or("?")),
                self.engine.as_deref().unwrap_or("?")
            ),
        }
    }
}

/// How a language is named in tables.
pub fn language_label(id: &str) -> &str {
    match id {
        "rust" => "Rust",
        "go" => "Go",
        "assemblyscript" => "AssemblyScript",
        "cpp" => "C++",
        other => other,
    }
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct Row {
    /// `polyhost run --concurrency` (and nginx `worker_processes`).
    pub workers: u32,
    /// wrk's connections.
    pub connections: u32,
    /// What was measured.
    pub config: Config,
    /// Responses wrk counted.
    pub requests: u64,
    /// Responses asked for.
    pub expected: u64,
    /// Connect, read, write and timeout errors plus responses >= 400.
    pub errors: u64,
    /// Requests per second over the run.
    pub rps: f64,
    /// Latency percentiles, in microseconds.
    pub p50: f64,
    /// 99th percentile, µs.
    pub p99: f64,
    /// 99.9th percentile, µs.
    pub p999: f64,
    /// The proxy's resident set after the run, in KiB (none for direct).
    pub rss_kib: Option<u64>,
    /// The proxy's user + system CPU seconds during the run.
    pub cpu_s: Option<f64>,
}

impl Row {
    /// CPU seconds the proxy spent per 10 000 requests.
    pub fn cpu_per_10k(&self) -> Option<f64> {
        self.cpu_s
            .map(|s| s * 10_000.0 / self.requests.max(1) as f64)
    }
}

const COLUMNS: &str = "workers\tconnections\tsetup\tlanguage\tengine\trequests\texpected\terrors\trps\tp50_us\tp99_us\tp999_us\trss_kib\tcpu_s";

/// Reads the rows of `path` (a header line, then one row per run).
///
/// # Errors
/// The file cannot be read or a row does not parse.
pub fn read_rows(path: &Path) -> anyhow::Result<Vec<Row>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    anyhow::ensure!(
        header == COLUMNS,
        "{}: the header is {header:?}, expected {COLUMNS:?}",
        path.display()
    );
    lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_row(l).with_context(|| format!("{} line {}", path.display(), i + 2)))
        .collect()
}

fn parse_row(line: &str) -> anyhow::Result<Row> {
    let f: Vec<&str> = line.split('\t').collect();
    anyhow::ensure!(f.len() == 14, "{} fields, expected 14", f.len());
    let opt = |s: &str| (s != "-").then(|| s.to_string());
    let num = |i: usize| -> anyhow::Result<f64> {
        f[i].parse::<f64>()
            .with_context(|| format!("field {} ({:?}) is not a number", i + 1, f[i]))
    };
    let count = |i: usize| -> anyhow::Result<u64> {
        f[i].parse::<u64>()
            .with_context(|| format!("field {} ({:?}) is not a count", i + 1, f[i]))
    };
    Ok(Row {
        workers: count(0)? as u32,
        connections: count(1)? as u32,
        config: Config {
            setup: Setup::parse(f[2])?,
            language: opt(f[3]),
            engine: opt(f[4]),
        },
        requests: count(5)?,
        expected: count(6)?,
        errors: count(7)?,
        rps: num(8)?,
        p50: num(9)?,
        p99: num(10)?,
        p999: num(11)?,
        rss_kib: if f[12] == "-" { None } else { Some(count(12)?) },
        cpu_s: if f[13] == "-" { None } else { Some(num(13)?) },
    })
}

/// Reads `key=value` lines (the run's description).
///
/// # Errors
/// The file cannot be read.
pub fn read_meta(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect())
}

/// Checks every row for errors and a plausible shape, and that each
/// (workers, connections) pair has the baselines the report divides by.
/// Timings are never judged.
///
/// # Errors
/// Every problem found, one per line.
pub fn validate(rows: &[Row]) -> anyhow::Result<()> {
    let mut problems = Vec::new();
    if rows.is_empty() {
        problems.push("no results at all".to_string());
    }
    for r in rows {
        let at = format!(
            "{} ({} workers, {} connections)",
            r.config, r.workers, r.connections
        );
        if r.errors > 0 {
            problems.push(format!("{at}: {} requests failed", r.errors));
        }
        if r.requests < r.expected {
            problems.push(format!(
                "{at}: {} of {} requests done",
                r.requests, r.expected
            ));
        }
        let ordered = 0.0 < r.p50 && r.p50 <= r.p99 && r.p99 <= r.p999 && r.p999.is_finite();
        if !ordered {
            problems.push(format!(
                "{at}: percentiles out of shape (p50 {}, p99 {}, p99.9 {})",
                r.p50, r.p99, r.p999
            ));
        }
        if !(r.rps > 0.0 && r.rps.is_finite()) {
            problems.push(format!("{at}: {} requests/s", r.rps));
        }
        let proxied = r.config.setup != Setup::Direct;
        if proxied && (r.rss_kib.unwrap_or(0) == 0 || r.cpu_s.is_none()) {
            problems.push(format!("{at}: the proxy's RSS or CPU time is missing"));
        }
        if r.config.setup == Setup::Plugin
            && (r.config.language.is_none() || r.config.engine.is_none())
        {
            problems.push(format!("{at}: a plugin row without language or engine"));
        }
    }
    for (workers, connections) in pairs(rows) {
        for setup in [Setup::Direct, Setup::Polyhost, Setup::NginxLua] {
            if !rows.iter().any(|r| {
                r.workers == workers && r.connections == connections && r.config.setup == setup
            }) {
                problems.push(format!(
                    "{workers} workers, {connections} connections: no {:?} row",
                    setup
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("{}", problems.join("\n"))
    }
}

/// The (workers, connections) pairs measured, in order.
pub fn pairs(rows: &[Row]) -> Vec<(u32, u32)> {
    let mut p: Vec<(u32, u32)> = rows.iter().map(|r| (r.workers, r.connections)).collect();
    p.sort_unstable();
    p.dedup();
    p
}

/// The row of `setup` (language, engine) measured at `workers` and
/// `connections`.
pub fn find<'a>(
    rows: &'a [Row],
    workers: u32,
    connections: u32,
    setup: Setup,
    language: Option<&str>,
    engine: Option<&str>,
) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.workers == workers
            && r.connections == connections
            && r.config.setup == setup
            && r.config.language.as_deref() == language
            && r.config.engine.as_deref() == engine
    })
}
