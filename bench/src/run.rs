//! Runs every measurement of the report and collects the results.

use crate::lua::LuaBench;
use crate::measure::{self, Settings, Stats};
use crate::micro::CallBench;
use crate::native::NativeBench;
use crate::raw_calls;
use crate::wasm::{self, PluginBench};
use crate::workload::{Fixture, Language, Workload};
use polyhost::cache::{self, CacheOutcome, ModuleCache};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor, Plugin, ReturnPolicy, VmPool};
use serde::Serialize;
use std::cell::RefCell;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

/// What to measure and how long.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `build/plugins` folder.
    pub fixtures: PathBuf,
    /// Measurement durations.
    pub settings: Settings,
    /// Engines to run, by name (normally [`AnyEngine::names`]).
    pub engines: Vec<String>,
    /// Plugin languages.
    pub languages: Vec<Language>,
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Print each result to stderr as it is measured.
    pub verbose: bool,
}

/// What served a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Implementation {
    /// Plain Rust on the host, no sandbox.
    Native,
    /// A LuaJIT filter.
    Lua,
    /// A Wasm plugin.
    Wasm {
        /// The plugin's language.
        language: Language,
        /// The engine it ran on.
        engine: String,
    },
}

/// How a cell went.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Outcome<T> {
    /// It passed its check and was measured.
    Measured(T),
    /// It failed its correctness check (or errored); the reason.
    Failed(String),
    /// Its fixture was not built, or the measurement does not exist in this
    /// build; the reason.
    Missing(String),
}

impl<T> Outcome<T> {
    /// The measurement, if there is one.
    pub fn measured(&self) -> Option<&T> {
        match self {
            Outcome::Measured(t) => Some(t),
            _ => None,
        }
    }
}

fn outcome<T>(r: Result<T, String>) -> Outcome<T> {
    match r {
        Ok(t) => Outcome::Measured(t),
        Err(e) => Outcome::Failed(e),
    }
}

/// One request measurement: an implementation serving one workload.
#[derive(Debug, Clone, Serialize)]
pub struct RequestCell {
    /// What served it.
    pub implementation: Implementation,
    /// The work done.
    pub workload: Workload,
    /// Time per request.
    pub outcome: Outcome<Stats>,
}

/// The cost of crossing between host and guest on one engine.
#[derive(Debug, Clone, Serialize)]
pub struct CallCell {
    /// Engine name.
    pub engine: String,
    /// One iteration of the loop that calls `proxy_get_log_level`
    /// (the call plus the loop).
    pub host_call_loop: Outcome<Stats>,
    /// One iteration of the same loop without the call.
    pub empty_loop: Outcome<Stats>,
    /// One call of a no-op export from the host.
    pub callback: Outcome<Stats>,
    /// One iteration of the same host-call loop on the runtime itself,
    /// without Polyhost: the host function is the runtime's own typed
    /// function ([`crate::raw_calls`]).
    pub raw_host_call_loop: Outcome<Stats>,
    /// One iteration of the loop without the call, on that raw instance.
    pub raw_empty_loop: Outcome<Stats>,
}

/// A host call's cost: the loop's median minus the empty loop's.
fn net_ns(gross: &Outcome<Stats>, empty: &Outcome<Stats>) -> Option<f64> {
    Some((gross.measured()?.median_ns - empty.measured()?.median_ns).max(0.0))
}

impl CallCell {
    /// A host call's cost with the loop's own cost subtracted (medians).
    pub fn host_call_ns(&self) -> Option<f64> {
        net_ns(&self.host_call_loop, &self.empty_loop)
    }

    /// The raw runtime's host call with its loop's cost subtracted.
    pub fn raw_host_call_ns(&self) -> Option<f64> {
        net_ns(&self.raw_host_call_loop, &self.raw_empty_loop)
    }

    /// Polyhost's host call over the raw one (issue 13's target: at most
    /// 1.3).
    pub fn host_call_ratio(&self) -> Option<f64> {
        let raw = self.raw_host_call_ns()?;
        (raw > 0.0).then(|| self.host_call_ns().map(|p| p / raw))?
    }
}

/// Per-request isolation on one engine: one request's full life on a VM
/// taken from a [`VmPool`] and given back, once with each
/// [`ReturnPolicy`].
#[derive(Debug, Clone, Serialize)]
pub struct IsolationCell {
    /// Engine name.
    pub engine: String,
    /// The workload served (by the Rust plugin).
    pub workload: Workload,
    /// Whether the engine had pre-allocated instance slots
    /// ([`pooled_config`]).
    pub pooled: bool,
    /// Take, serve, give back with `ReturnPolicy::Reuse`.
    pub reuse: Outcome<Stats>,
    /// Take, serve, give back with `ReturnPolicy::Replace`: giving back
    /// starts the replacement VM, inside the timed iteration.
    pub replace: Outcome<Stats>,
}

impl IsolationCell {
    /// What isolation adds to a request: `Replace` minus `Reuse` (medians).
    pub fn added_ns(&self) -> Option<f64> {
        Some(self.replace.measured()?.median_ns - self.reuse.measured()?.median_ns)
    }
}

/// The workloads the isolation table serves, with the Rust plugins: the
/// floor (`noop`) and a plugin that does some work (`headers`).
pub const ISOLATION_WORKLOADS: [Workload; 2] = [Workload::Noop, Workload::Headers];

/// Issue 13's target for what per-request isolation may add, in
/// nanoseconds.
pub const ISOLATION_TARGET_NS: f64 = 15_000.0;

/// Issue 13's target for a host call over the raw runtime's.
pub const HOST_CALL_TARGET_RATIO: f64 = 1.3;

/// Facts about one language's `noop` module on one engine.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleCell {
    /// Plugin language.
    pub language: Language,
    /// Engine name.
    pub engine: String,
    /// `Engine::compile` from bytes.
    pub compile: Outcome<Stats>,
    /// `ModuleCache::load` hitting the on-disk module cache.
    pub cached_load: Outcome<Stats>,
    /// `Plugin::new_vm`: instantiation and the plugin's start-up.
    pub new_vm: Outcome<Stats>,
    /// `VmPool::take` and giving the VM back (`ReturnPolicy::Reuse`).
    pub pool_take: Outcome<Stats>,
    /// `Plugin::new_vm` on an engine built with [`pooled_config`]: the
    /// instance comes from a pre-allocated slot (wasmtime's pooling
    /// allocator with copy-on-write memory images).
    pub new_vm_pooled: Outcome<Stats>,
    /// Resident memory one more started VM adds, in bytes.
    pub rss_per_vm: Outcome<u64>,
}

/// The size of one fixture module.
#[derive(Debug, Clone, Serialize)]
pub struct ModuleSize {
    /// Plugin language.
    pub language: Language,
    /// The workload whose plugin it is.
    pub workload: Workload,
    /// Bytes of the `.wasm` file.
    pub bytes: u64,
}

/// An engine and what identifies its build.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    /// Engine name.
    pub name: String,
    /// `Engine::fingerprint`: runtime version, variant, target, settings.
    pub fingerprint: String,
}

/// Where and when the results were taken.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Meta {
    /// Date (UTC) of the run.
    pub date: String,
    /// Source commit.
    pub commit: String,
    /// Whether the quick settings were used.
    pub quick: bool,
    /// CPU model name from `/proc/cpuinfo`.
    pub cpu: String,
    /// Available cores (as `nproc` counts them).
    pub cores: usize,
    /// Kernel release.
    pub kernel: String,
    /// LuaJIT version of the Lua baseline.
    pub luajit: String,
    /// VMs started per memory measurement.
    pub memory_vms: usize,
    /// The Cargo profile the harness was built with (`release`, or `dev`
    /// when only checking that the harness runs).
    pub profile: String,
}

/// Everything the report shows.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    /// Where and when.
    pub meta: Meta,
    /// The engines measured, in order.
    pub engines: Vec<EngineInfo>,
    /// Per-request times: baselines and every plugin on every engine.
    pub requests: Vec<RequestCell>,
    /// Host/guest crossing costs per engine.
    pub calls: Vec<CallCell>,
    /// Module and VM facts per language and engine.
    pub modules: Vec<ModuleCell>,
    /// Per-request isolation per engine, without and with pooling.
    pub isolation: Vec<IsolationCell>,
    /// Sizes of every fixture module measured.
    pub sizes: Vec<ModuleSize>,
}

impl Results {
    /// The measured time of `implementation` on `workload`.
    pub fn request(&self, implementation: &Implementation, workload: Workload) -> Option<&Stats> {
        self.request_cell(implementation, workload)
            .and_then(|c| c.outcome.measured())
    }

    /// The cell of `implementation` on `workload`.
    pub fn request_cell(
        &self,
        implementation: &Implementation,
        workload: Workload,
    ) -> Option<&RequestCell> {
        self.requests
            .iter()
            .find(|c| c.implementation == *implementation && c.workload == workload)
    }
}

/// Instance slots of the pooled engine the `new_vm_pooled` figures use.
pub const POOL_SLOTS: u32 = 16;

/// The engine settings of the pooled-instantiation measurement:
/// [`POOL_SLOTS`] pre-allocated instance slots, each with room for 256 MiB
/// of linear memory (enough for every SDK's `noop` plugin).
pub fn pooled_config() -> EngineConfig {
    EngineConfig {
        pooled_instances: Some(POOL_SLOTS),
        max_memory_bytes: 256 << 20,
        ..EngineConfig::default()
    }
}

/// Runs every measurement `options` asks for.
pub fn run(options: &Options, meta: Meta) -> Results {
    let fixture = Arc::new(Fixture::default());
    let mut results = Results {
        meta: Meta {
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
            luajit: crate::lua::luajit_version(),
            memory_vms: options.settings.memory_vms,
            profile: if cfg!(debug_assertions) {
                "dev".into()
            } else {
                "release".into()
            },
            ..meta
        },
        ..Results::default()
    };
    for &language in &options.languages {
        for &workload in &options.workloads {
            let path = language.fixture(&options.fixtures, workload.plugin());
            if let Ok(meta) = std::fs::metadata(&path) {
                results.sizes.push(ModuleSize {
                    language,
                    workload,
                    bytes: meta.len(),
                });
            }
        }
    }
    let report = |cell: &RequestCell| {
        if options.verbose {
            eprintln!("{}", describe(cell));
        }
    };
    for &workload in &options.workloads {
        let mut native = NativeBench::new(workload, fixture.clone());
        let cell = RequestCell {
            implementation: Implementation::Native,
            workload,
            outcome: outcome(workload.check(&fixture, &native.serve()).and_then(|()| {
                measure::measure(&options.settings, || {
                    black_box(native.serve());
                    Ok(())
                })
            })),
        };
        report(&cell);
        results.requests.push(cell);
        let lua = LuaBench::new(workload, fixture.clone()).and_then(|mut lua| {
            lua.check()?;
            measure::measure(&options.settings, || {
                lua.serve().map(|s| drop(black_box(s)))
            })
        });
        let cell = RequestCell {
            implementation: Implementation::Lua,
            workload,
            outcome: outcome(lua),
        };
        report(&cell);
        results.requests.push(cell);
    }
    for name in &options.engines {
        let engine = match AnyEngine::by_name(name, &EngineConfig::default()) {
            Ok(e) => e,
            Err(e) => {
                eprintln!("bench: skipping engine {name}: {e}");
                continue;
            }
        };
        let run = engine.visit(EngineRun {
            options,
            fixture: fixture.clone(),
        });
        let mut modules = run.modules;
        let mut isolation = run.isolation;
        match AnyEngine::by_name(name, &pooled_config()) {
            Ok(pooled) => {
                let pooled = pooled.visit(PooledRun {
                    options,
                    fixture: fixture.clone(),
                });
                for (cell, start) in modules.iter_mut().zip(pooled.starts) {
                    cell.new_vm_pooled = start;
                }
                isolation.extend(pooled.isolation);
            }
            Err(e) => {
                for cell in &mut modules {
                    cell.new_vm_pooled =
                        Outcome::Missing(format!("{name} has no pooling instance allocator ({e})"));
                }
            }
        }
        results.engines.push(run.info);
        results.requests.extend(run.requests);
        results.calls.push(run.calls);
        results.modules.extend(modules);
        results.isolation.extend(isolation);
    }
    results
}

/// One line describing a request cell, for progress output.
pub fn describe(cell: &RequestCell) -> String {
    let who = match &cell.implementation {
        Implementation::Native => "native".to_string(),
        Implementation::Lua => "luajit".to_string(),
        Implementation::Wasm { language, engine } => format!("{engine} {}", language.id()),
    };
    let what = match &cell.outcome {
        Outcome::Measured(s) => format!(
            "{:.2} µs ({:.2}-{:.2})",
            s.median_ns / 1e3,
            s.min_ns / 1e3,
            s.max_ns / 1e3
        ),
        Outcome::Failed(e) => format!("FAILED: {e}"),
        Outcome::Missing(e) => format!("missing: {e}"),
    };
    format!("bench: {who} {}: {what}", cell.workload.id())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// What is measured on a pooled engine: `Plugin::new_vm` of each
/// language's `noop` plugin, in the order of `options.languages`, and the
/// isolation cells.
struct PooledRun<'a> {
    options: &'a Options,
    fixture: Arc<Fixture>,
}

struct PooledResults {
    starts: Vec<Outcome<Stats>>,
    isolation: Vec<IsolationCell>,
}

impl EngineVisitor for PooledRun<'_> {
    type Output = PooledResults;

    fn visit<E: Engine>(self, engine: E) -> PooledResults {
        let fixtures = &self.options.fixtures;
        let starts = self
            .options
            .languages
            .iter()
            .map(|&language| {
                let path = language.fixture(fixtures, Workload::Noop.plugin());
                let Ok(wasm) = std::fs::read(&path) else {
                    return Outcome::Missing(format!("{} is not built", path.display()));
                };
                outcome(
                    engine
                        .compile(&wasm)
                        .map_err(|e| e.to_string())
                        .and_then(|module| {
                            let (services, _) = wasm::services();
                            Plugin::from_module(
                                &engine,
                                module,
                                wasm::plugin_config("noop"),
                                services,
                            )
                            .map_err(|e| e.to_string())
                        })
                        .and_then(|plugin| {
                            // Each VM is dropped at once, so its slot is
                            // free for the next.
                            measure::measure(&self.options.settings, || {
                                plugin.new_vm().map(drop).map_err(|e| e.to_string())
                            })
                        }),
                )
            })
            .collect();
        PooledResults {
            starts,
            isolation: isolation(&engine, self.options, &self.fixture, true),
        }
    }
}

struct EngineResults {
    info: EngineInfo,
    requests: Vec<RequestCell>,
    calls: CallCell,
    modules: Vec<ModuleCell>,
    isolation: Vec<IsolationCell>,
}

struct EngineRun<'a> {
    options: &'a Options,
    fixture: Arc<Fixture>,
}

impl EngineVisitor for EngineRun<'_> {
    type Output = EngineResults;

    fn visit<E: Engine>(self, engine: E) -> EngineResults {
        let name = engine.name().to_string();
        let settings = &self.options.settings;
        let calls = calls(&engine, settings);
        if self.options.verbose {
            eprintln!(
                "bench: {name} calls: host call {:?} ns (raw {:?} ns, ratio {:?}), callback {:?} ns",
                calls.host_call_ns(),
                calls.raw_host_call_ns(),
                calls.host_call_ratio(),
                calls.callback.measured().map(|s| s.median_ns)
            );
        }
        let mut requests = Vec::new();
        let mut modules = Vec::new();
        for &language in &self.options.languages {
            modules.push(self.module(&engine, language));
            for &workload in &self.options.workloads {
                let cell = RequestCell {
                    implementation: Implementation::Wasm {
                        language,
                        engine: name.clone(),
                    },
                    workload,
                    outcome: self.request(&engine, language, workload),
                };
                if self.options.verbose {
                    eprintln!("{}", describe(&cell));
                }
                requests.push(cell);
            }
        }
        let isolation = isolation(&engine, self.options, &self.fixture, false);
        EngineResults {
            info: EngineInfo {
                name,
                fingerprint: engine.fingerprint(),
            },
            requests,
            calls,
            modules,
            isolation,
        }
    }
}

/// The number of host calls per guest call in the host-call loop: enough
/// that the one host-to-guest call around them is negligible.
pub const HOST_CALLS_PER_LOOP: u32 = 1000;

/// The crossings through Polyhost and the raw runtime's host call with
/// the same loop, in the same process, their batches taking turns
/// ([`measure::alternating`]) so the ratio compares the same machine.
fn calls<E: Engine>(engine: &E, settings: &Settings) -> CallCell {
    let name = engine.name().to_string();
    let n = HOST_CALLS_PER_LOOP;
    let raw = match raw_calls::new(&name) {
        None => Err(Outcome::Missing(format!(
            "no raw baseline for {name} in this build"
        ))),
        Some(Err(e)) => Err(Outcome::Failed(e)),
        Some(Ok(raw)) => Ok(RefCell::new(raw)),
    };
    let bench = CallBench::new(engine).map(RefCell::new);
    // Each loop borrows its instance for one iteration at a time, so the
    // loop with the calls and the one without can share it. Without an
    // instance, a loop fails at once and is not timed.
    let raw_loop = |calls: bool| match &raw {
        Ok(raw) if calls => raw.borrow_mut().host_calls(n).map(drop),
        Ok(raw) => raw.borrow_mut().empty_loop(n).map(drop),
        Err(_) => Err("no raw instance".to_string()),
    };
    let polyhost_loop = |calls: bool| match &bench {
        Ok(bench) if calls => bench.borrow_mut().host_calls(n).map(drop),
        Ok(bench) => bench.borrow_mut().empty_loop(n).map(drop),
        Err(e) => Err(e.clone()),
    };
    let per_call = |r: Result<Stats, String>| outcome(r.map(|s| s.per(n.into())));
    let [
        raw_host_call_loop,
        raw_empty_loop,
        host_call_loop,
        empty_loop,
    ] = measure::alternating(
        settings,
        [
            &mut || raw_loop(true),
            &mut || raw_loop(false),
            &mut || polyhost_loop(true),
            &mut || polyhost_loop(false),
        ],
    )
    .map(per_call);
    // Without a raw instance, the raw cells say why.
    let (raw_host_call_loop, raw_empty_loop) = match &raw {
        Ok(_) => (raw_host_call_loop, raw_empty_loop),
        Err(why) => (why.clone(), why.clone()),
    };
    let callback = match &bench {
        Ok(bench) => outcome(measure::measure(settings, || {
            bench.borrow_mut().callback().map(drop)
        })),
        Err(e) => Outcome::Failed(e.clone()),
    };
    CallCell {
        engine: name,
        host_call_loop,
        empty_loop,
        callback,
        raw_host_call_loop,
        raw_empty_loop,
    }
}

/// Per-request isolation on `engine` ([`IsolationCell`]) for each of
/// [`ISOLATION_WORKLOADS`] that `options` asks for, with the Rust plugins.
fn isolation<E: Engine>(
    engine: &E,
    options: &Options,
    fixture: &Arc<Fixture>,
    pooled: bool,
) -> Vec<IsolationCell> {
    if !options.languages.contains(&Language::Rust) {
        return Vec::new();
    }
    ISOLATION_WORKLOADS
        .into_iter()
        .filter(|w| options.workloads.contains(w))
        .map(|workload| {
            let cell = |reuse, replace| IsolationCell {
                engine: engine.name().to_string(),
                workload,
                pooled,
                reuse,
                replace,
            };
            let path = Language::Rust.fixture(&options.fixtures, workload.plugin());
            let Ok(wasm) = std::fs::read(&path) else {
                let why = format!("{} is not built", path.display());
                return cell(Outcome::Missing(why.clone()), Outcome::Missing(why));
            };
            let (services, callouts) = wasm::services();
            let plugin = engine
                .compile(&wasm)
                .map_err(|e| e.to_string())
                .and_then(|module| {
                    Plugin::from_module(
                        engine,
                        module,
                        wasm::plugin_config(workload.plugin()),
                        services,
                    )
                    .map_err(|e| e.to_string())
                });
            let plugin = match plugin {
                Ok(p) => p,
                Err(e) => return cell(Outcome::Failed(e.clone()), Outcome::Failed(e)),
            };
            let pool = |policy| {
                checked_pool(&plugin, policy, workload, fixture, &callouts)
            };
            let started = std::time::Instant::now();
            let (reuse, replace) = (pool(ReturnPolicy::Reuse), pool(ReturnPolicy::Replace));
            let serve = |pool: &Result<VmPool<E>, String>| match pool {
                Ok(pool) => serve_from(pool, workload, fixture, &callouts).map(drop),
                Err(e) => Err(e.clone()),
            };
            let [reuse, replace] = measure::alternating(
                &options.settings,
                [&mut || serve(&reuse), &mut || serve(&replace)],
            )
            .map(outcome);
            let cell = cell(reuse, replace);
            if options.verbose {
                let median = |o: &Outcome<Stats>| o.measured().map(|s| s.median_ns);
                eprintln!(
                    "bench: {} isolation {} ({}): reuse {:?} ns, replace {:?} ns, added {:?} ns (took {:.2} s)",
                    cell.engine,
                    workload.id(),
                    if pooled { "pooled" } else { "on demand" },
                    median(&cell.reuse),
                    median(&cell.replace),
                    cell.added_ns(),
                    started.elapsed().as_secs_f64()
                );
            }
            cell
        })
        .collect()
}

/// A one-VM [`VmPool`] of `plugin` that gives VMs back by `policy`, as an
/// embedder that isolates requests uses it: every request gets the VM the
/// previous one gave back (with `Replace`, a new one). Two requests are
/// served and checked against the workload's contract before it is timed.
fn checked_pool<E: Engine>(
    plugin: &Plugin<E>,
    policy: ReturnPolicy,
    workload: Workload,
    fixture: &Fixture,
    callouts: &polyhost::services::CalloutQueue,
) -> Result<VmPool<E>, String> {
    let pool = VmPool::new(plugin.clone(), 1, policy).map_err(|e| e.to_string())?;
    for _ in 0..2 {
        workload.check(fixture, &serve_from(&pool, workload, fixture, callouts)?)?;
    }
    Ok(pool)
}

/// Serves one request's full life on a VM taken from `pool`, then gives it
/// back (with `Replace`, that starts its replacement).
fn serve_from<E: Engine>(
    pool: &VmPool<E>,
    workload: Workload,
    fixture: &Fixture,
    callouts: &polyhost::services::CalloutQueue,
) -> Result<crate::Served, String> {
    let mut vm = pool.take().map_err(|e| e.to_string())?;
    wasm::serve(&mut vm, workload, fixture, callouts).map(black_box)
    // `vm` goes back here, replaced or as it is.
}

impl EngineRun<'_> {
    fn wasm(&self, language: Language, workload: Workload) -> Result<Vec<u8>, Outcome<Stats>> {
        let path = language.fixture(&self.options.fixtures, workload.plugin());
        std::fs::read(&path).map_err(|e| {
            Outcome::Missing(format!(
                "{}: {e} (run scripts/setup.sh to build it)",
                path.display()
            ))
        })
    }

    fn request<E: Engine>(
        &self,
        engine: &E,
        language: Language,
        workload: Workload,
    ) -> Outcome<Stats> {
        let wasm = match self.wasm(language, workload) {
            Ok(w) => w,
            Err(o) => return o,
        };
        let result = engine
            .compile(&wasm)
            .map_err(|e| format!("compile: {e}"))
            .and_then(|module| {
                PluginBench::new(
                    engine,
                    module,
                    workload.plugin(),
                    workload,
                    self.fixture.clone(),
                )
            })
            .and_then(|mut bench| {
                bench.check()?;
                measure::measure(&self.options.settings, || {
                    bench.serve().map(|s| drop(black_box(s)))
                })
            });
        outcome(result)
    }

    /// Compile time, cache load, VM start, pool take and memory of the language's
    /// `noop` module: what the SDK alone costs.
    fn module<E: Engine>(&self, engine: &E, language: Language) -> ModuleCell {
        let settings = &self.options.settings;
        let mut cell = ModuleCell {
            language,
            engine: engine.name().to_string(),
            compile: Outcome::Missing(String::new()),
            cached_load: Outcome::Missing(String::new()),
            new_vm: Outcome::Missing(String::new()),
            pool_take: Outcome::Missing(String::new()),
            new_vm_pooled: Outcome::Missing("not measured".into()),
            rss_per_vm: Outcome::Missing(String::new()),
        };
        let wasm = match self.wasm(language, Workload::Noop) {
            Ok(w) => w,
            Err(Outcome::Missing(why)) => {
                cell.compile = Outcome::Missing(why.clone());
                cell.cached_load = Outcome::Missing(why.clone());
                cell.new_vm = Outcome::Missing(why.clone());
                cell.pool_take = Outcome::Missing(why.clone());
                cell.rss_per_vm = Outcome::Missing(why);
                return cell;
            }
            Err(_) => unreachable!("reading a fixture only reports it missing"),
        };
        let mut module = None;
        cell.compile = outcome(measure::measure_runs(settings.slow_runs, || {
            module = Some(engine.compile(&wasm).map_err(|e| e.to_string())?);
            Ok(())
        }));
        let Some(module) = module else {
            let why = "the module did not compile".to_string();
            cell.cached_load = Outcome::Failed(why.clone());
            cell.new_vm = Outcome::Failed(why.clone());
            cell.pool_take = Outcome::Failed(why.clone());
            cell.rss_per_vm = Outcome::Failed(why);
            return cell;
        };
        cell.cached_load = cached_load(engine, &wasm, settings);
        let (services, callouts) = wasm::services();
        let plugin =
            match Plugin::from_module(engine, module, wasm::plugin_config("noop"), services) {
                Ok(p) => p,
                Err(e) => {
                    cell.new_vm = Outcome::Failed(e.to_string());
                    cell.pool_take = Outcome::Failed(e.to_string());
                    cell.rss_per_vm = Outcome::Failed(e.to_string());
                    return cell;
                }
            };
        cell.new_vm = outcome(measure::measure(settings, || {
            plugin.new_vm().map(drop).map_err(|e| e.to_string())
        }));
        cell.pool_take = outcome(pool_take(&plugin, settings));
        cell.rss_per_vm = match rss_per_vm(&plugin, &callouts, &self.fixture, settings) {
            Ok(Some(b)) => Outcome::Measured(b),
            Ok(None) => Outcome::Missing("no /proc/self/status on this system".into()),
            Err(e) => Outcome::Failed(e),
        };
        cell
    }
}

/// A module-cache hit: `ModuleCache::load` of a module stored by an earlier
/// load, in a cache folder of its own that is removed afterwards.
fn cached_load<E: Engine>(engine: &E, wasm: &[u8], settings: &Settings) -> Outcome<Stats> {
    let dir = std::env::temp_dir().join(format!(
        "polyhost-bench-cache-{}-{}",
        std::process::id(),
        engine.name()
    ));
    let cache = ModuleCache::new(&dir, cache::DEFAULT_MAX_BYTES);
    let result = match cache.load(engine, wasm) {
        Err(e) => Outcome::Failed(format!("filling the cache: {e}")),
        Ok(l) if l.outcome == CacheOutcome::Uncacheable => Outcome::Missing(format!(
            "{} has no ahead-of-time compilation, so the cache compiles in memory",
            engine.name()
        )),
        Ok(_) => outcome(measure::measure(settings, || {
            let loaded = cache.load(engine, wasm).map_err(|e| e.to_string())?;
            if loaded.outcome == CacheOutcome::Hit {
                Ok(())
            } else {
                Err(format!("expected a cache hit, got {:?}", loaded.outcome))
            }
        })),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Taking a VM from a pool and giving it back with `ReturnPolicy::Reuse`
/// (with the default `Replace`, giving it back also starts a new VM, which
/// `Plugin::new_vm` measures).
fn pool_take<E: Engine>(plugin: &Plugin<E>, settings: &Settings) -> Result<Stats, String> {
    let pool = VmPool::new(plugin.clone(), 2, ReturnPolicy::Reuse).map_err(|e| e.to_string())?;
    measure::measure(settings, || {
        let vm = pool.take().map_err(|e| e.to_string())?;
        drop(black_box(vm));
        Ok(())
    })
}

/// Resident memory added per VM: start `settings.memory_vms` VMs of
/// `plugin`, each serving one request, and divide the growth.
fn rss_per_vm<E: Engine>(
    plugin: &Plugin<E>,
    callouts: &Arc<polyhost::services::CalloutQueue>,
    fixture: &Arc<Fixture>,
    settings: &Settings,
) -> Result<Option<u64>, String> {
    let start = |vms: &mut Vec<PluginBench<E>>| -> Result<(), String> {
        let mut vm =
            PluginBench::with_plugin(plugin, callouts.clone(), Workload::Noop, fixture.clone())?;
        vm.serve()?;
        vms.push(vm);
        Ok(())
    };
    // One VM first, so one-off costs (code published to executable memory,
    // lazily built tables, the allocator's first arena) are not counted.
    let mut vms = Vec::new();
    start(&mut vms)?;
    measure::release_free_memory();
    let Some(before) = measure::resident_bytes() else {
        return Ok(None);
    };
    let n = settings.memory_vms.max(1);
    for _ in 0..n {
        start(&mut vms)?;
    }
    let after = measure::resident_bytes().unwrap_or(before);
    Ok(Some(after.saturating_sub(before) / n as u64))
}
