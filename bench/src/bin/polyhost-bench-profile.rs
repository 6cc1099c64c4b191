//! Repeats one measured operation for a fixed time, with nothing else in the
//! process, so a sampling profiler (`scripts/profile.sh` runs `perf`) sees
//! only that operation: one request's full life of a workload's plugin,
//! starting a new VM of the `noop` plugin, or the host-call loop of the
//! crossing table, through Polyhost or on the runtime alone.

use anyhow::{Context as _, anyhow};
use clap::{Parser, ValueEnum};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor, Plugin};
use polyhost_bench::micro::CallBench;
use polyhost_bench::raw_calls;
use polyhost_bench::run::{HOST_CALLS_PER_LOOP, pooled_config};
use polyhost_bench::wasm::{self, PluginBench};
use polyhost_bench::{Fixture, Language, Workload, default_fixtures};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What to repeat.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Operation {
    /// One request of the `bench_headers` plugin (60 header operations).
    Headers,
    /// One request of the `noop` plugin (the callbacks alone).
    Noop,
    /// A new, started VM of the `noop` plugin (`Plugin::new_vm`).
    NewVm,
    /// As `new-vm`, on an engine with pre-allocated instance slots.
    NewVmPooled,
    /// The crossing table's loop of `HOST_CALLS_PER_LOOP` calls of
    /// `proxy_get_log_level` through Polyhost (`micro::CallBench`); "each"
    /// is one loop. Needs no fixture.
    HostCalls,
    /// The same loop on the runtime alone, with its own typed host function
    /// (`raw_calls`), to compare profiles with `host-calls`.
    RawHostCalls,
}

/// Repeats one operation for `--seconds` and prints how many it did.
#[derive(Parser)]
#[command(name = "polyhost-bench-profile")]
struct Args {
    /// The operation to repeat.
    #[arg(long, value_enum, default_value = "headers")]
    operation: Operation,
    /// The engine, by Polyhost's name (`wasmtime`, `wasmi`, ...).
    #[arg(long, default_value = "wasmtime")]
    engine: String,
    /// The plugin's language: rust, go, assemblyscript or cpp.
    #[arg(long, default_value = "rust")]
    language: String,
    /// How long to repeat it.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// The plugin fixtures folder (default: build/plugins of this checkout).
    #[arg(long)]
    fixtures: Option<PathBuf>,
}

/// The repeated operation on one engine; returns how many ran.
struct Repeat {
    operation: Operation,
    wasm: Vec<u8>,
    duration: Duration,
}

impl EngineVisitor for Repeat {
    type Output = anyhow::Result<u64>;

    fn visit<E: Engine>(self, engine: E) -> anyhow::Result<u64> {
        let compile = || engine.compile(&self.wasm).map_err(|e| anyhow!("{e}"));
        let n = HOST_CALLS_PER_LOOP;
        let mut step: Box<dyn FnMut() -> anyhow::Result<()>> = match self.operation {
            Operation::HostCalls => {
                let mut bench = CallBench::new(&engine).map_err(|e| anyhow!(e))?;
                Box::new(move || {
                    black_box(bench.host_calls(black_box(n)).map_err(|e| anyhow!(e))?);
                    Ok(())
                })
            }
            Operation::RawHostCalls => {
                let mut raw = raw_calls::new(engine.name())
                    .ok_or_else(|| anyhow!("no raw baseline for {} in this build", engine.name()))?
                    .map_err(|e| anyhow!(e))?;
                Box::new(move || {
                    black_box(raw.host_calls(black_box(n)).map_err(|e| anyhow!(e))?);
                    Ok(())
                })
            }
            Operation::Headers | Operation::Noop => {
                let module = compile()?;
                let workload = workload(self.operation);
                let mut bench = PluginBench::new(
                    &engine,
                    module,
                    workload.plugin(),
                    workload,
                    Arc::new(Fixture::default()),
                )
                .map_err(|e| anyhow!(e))?;
                bench.check().map_err(|e| anyhow!(e))?;
                Box::new(move || {
                    black_box(bench.serve().map_err(|e| anyhow!(e))?);
                    Ok(())
                })
            }
            Operation::NewVm | Operation::NewVmPooled => {
                let plugin = Plugin::from_module(
                    &engine,
                    compile()?,
                    wasm::plugin_config("noop"),
                    wasm::services().0,
                )?;
                Box::new(move || {
                    black_box(plugin.new_vm()?);
                    Ok(())
                })
            }
        };
        let start = Instant::now();
        let mut done = 0u64;
        while start.elapsed() < self.duration {
            // Check the clock every few operations only: it is not free.
            for _ in 0..16 {
                step()?;
            }
            done += 16;
        }
        Ok(done)
    }
}

fn workload(operation: Operation) -> Workload {
    match operation {
        Operation::Headers => Workload::Headers,
        _ => Workload::Noop,
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let language = Language::ALL
        .into_iter()
        .find(|l| l.id() == args.language)
        .ok_or_else(|| anyhow!("unknown language {:?}", args.language))?;
    let fixtures = args.fixtures.unwrap_or_else(default_fixtures);
    let wasm = match args.operation {
        // The crossing loops bring their own module.
        Operation::HostCalls | Operation::RawHostCalls => Vec::new(),
        _ => {
            let path = language.fixture(&fixtures, workload(args.operation).plugin());
            std::fs::read(&path)
                .with_context(|| format!("reading {} (run scripts/setup.sh)", path.display()))?
        }
    };
    let config = match args.operation {
        Operation::NewVmPooled => pooled_config(),
        _ => EngineConfig::default(),
    };
    let engine = AnyEngine::by_name(&args.engine, &config).map_err(|e| anyhow!("{e}"))?;
    let duration = Duration::from_secs_f64(args.seconds);
    let done = engine.visit(Repeat {
        operation: args.operation,
        wasm,
        duration,
    })?;
    println!(
        "{:?} on {} ({}): {done} in {:.1} s, {:.2} us each",
        args.operation,
        args.engine,
        language.id(),
        args.seconds,
        args.seconds * 1e6 / done as f64
    );
    Ok(())
}
