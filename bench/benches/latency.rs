//! Criterion benchmarks of everything the report measures, for studying one
//! cell closely:
//!
//! * `request/<workload>/{native, lua, <engine>/<language>}`: one request's
//!   full life;
//! * `crossing/{host_call, empty_loop, callback}/<engine>`: guest→host and
//!   host→guest call costs (the loops report per call through
//!   `Throughput::Elements`), and `crossing/{raw_host_call,
//!   raw_empty_loop}/<engine>`: the same loops on the runtime alone
//!   (`polyhost_bench::raw_calls`);
//! * `lifecycle/<language>/{compile, new_vm, pool_take, cached_load}/<engine>`:
//!   compiling the language's `noop` module, starting a VM from the
//!   pre-linked plugin, taking one from a pool (and giving it back), and
//!   loading the module from the on-disk cache (a hit);
//! * `lifecycle/<language>/new_vm_pooled/<engine>`: starting a VM on an
//!   engine with pre-allocated instance slots
//!   (`polyhost_bench::run::pooled_config`), where the engine has them;
//! * `isolation/<workload>/{reuse, replace}/<engine>[-pooled]`: a request
//!   of the Rust plugin on a VM taken from a one-VM `VmPool` and given back
//!   with that `ReturnPolicy`, on demand and on a pooled engine.
//!
//! Every engine compiled in runs (`polyhost::AnyEngine::names`). Filter as
//! usual, e.g. `cargo bench -p polyhost-bench --features all-engines --
//! 'request/headers/wasmtime/'`. A cell that fails its correctness check
//! or has no fixture is skipped with a message on stderr.

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use polyhost::cache::{self, CacheOutcome, ModuleCache};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor, Plugin, ReturnPolicy, VmPool};
use polyhost_bench::lua::LuaBench;
use polyhost_bench::micro::CallBench;
use polyhost_bench::native::NativeBench;
use polyhost_bench::raw_calls;
use polyhost_bench::run::{HOST_CALLS_PER_LOOP, ISOLATION_WORKLOADS, pooled_config};
use polyhost_bench::wasm::{self, PluginBench};
use polyhost_bench::{Fixture, Language, Workload, default_fixtures};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn baselines(c: &mut Criterion) {
    let fixture = Arc::new(Fixture::default());
    for workload in Workload::ALL {
        let mut group = c.benchmark_group(format!("request/{}", workload.id()));
        let mut native = NativeBench::new(workload, fixture.clone());
        match workload.check(&fixture, &native.serve()) {
            Ok(()) => {
                group.bench_function("native", |b| b.iter(|| black_box(native.serve())));
            }
            Err(e) => eprintln!("skipping native {}: {e}", workload.id()),
        }
        match LuaBench::new(workload, fixture.clone()).and_then(|mut l| l.check().map(|()| l)) {
            Ok(mut lua) => {
                group.bench_function("lua", |b| {
                    b.iter(|| black_box(lua.serve().expect("checked before timing")))
                });
            }
            Err(e) => eprintln!("skipping lua {}: {e}", workload.id()),
        }
        group.finish();
    }
}

/// Every engine compiled in.
fn engines() -> Vec<AnyEngine> {
    AnyEngine::names()
        .into_iter()
        .filter_map(
            |name| match AnyEngine::by_name(name, &EngineConfig::default()) {
                Ok(engine) => Some(engine),
                Err(e) => {
                    eprintln!("skipping engine {name}: {e}");
                    None
                }
            },
        )
        .collect()
}

fn read_fixture(language: Language, workload: Workload) -> Option<Vec<u8>> {
    let path = language.fixture(&default_fixtures(), workload.plugin());
    match std::fs::read(&path) {
        Ok(w) => Some(w),
        Err(e) => {
            eprintln!("skipping {}: {e} (run scripts/setup.sh)", path.display());
            None
        }
    }
}

/// Compiles and prepares a `noop` module with the benchmarks' services.
fn noop_plugin<E: Engine>(engine: &E, wasm: &[u8]) -> Result<Plugin<E>, String> {
    let module = engine.compile(wasm).map_err(|e| e.to_string())?;
    Plugin::from_module(
        engine,
        module,
        wasm::plugin_config("noop"),
        wasm::services().0,
    )
    .map_err(|e| e.to_string())
}

/// The request benchmarks of one engine.
struct Requests<'a> {
    c: &'a mut Criterion,
    fixture: Arc<Fixture>,
}

impl EngineVisitor for Requests<'_> {
    type Output = ();

    fn visit<E: Engine>(self, engine: E) {
        let c = self.c;
        for workload in Workload::ALL {
            let mut group = c.benchmark_group(format!("request/{}", workload.id()));
            for language in Language::ALL {
                let id = format!("{}/{}", engine.name(), language.id());
                let Some(wasm) = read_fixture(language, workload) else {
                    continue;
                };
                let bench = engine
                    .compile(&wasm)
                    .map_err(|e| e.to_string())
                    .and_then(|m| {
                        PluginBench::new(
                            &engine,
                            m,
                            workload.plugin(),
                            workload,
                            self.fixture.clone(),
                        )
                    })
                    .and_then(|mut b| b.check().map(|()| b));
                match bench {
                    Ok(mut bench) => {
                        group.bench_function(&id, |b| {
                            b.iter(|| black_box(bench.serve().expect("checked before timing")))
                        });
                    }
                    Err(e) => eprintln!("skipping request/{}/{id}: {e}", workload.id()),
                }
            }
            group.finish();
        }
    }
}

/// The crossing benchmarks of one engine.
struct Crossings<'a> {
    c: &'a mut Criterion,
}

impl EngineVisitor for Crossings<'_> {
    type Output = ();

    fn visit<E: Engine>(self, engine: E) {
        let c = self.c;
        let mut bench = match CallBench::new(&engine) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("skipping crossings on {}: {e}", engine.name());
                return;
            }
        };
        let n = HOST_CALLS_PER_LOOP;
        let mut group = c.benchmark_group("crossing");
        group.throughput(Throughput::Elements(n.into()));
        group.bench_function(BenchmarkId::new("host_call", engine.name()), |b| {
            b.iter(|| bench.host_calls(black_box(n)).expect("no trap"))
        });
        group.bench_function(BenchmarkId::new("empty_loop", engine.name()), |b| {
            b.iter(|| bench.empty_loop(black_box(n)).expect("no trap"))
        });
        match raw_calls::new(engine.name()) {
            Some(Ok(mut raw)) => {
                group.bench_function(BenchmarkId::new("raw_host_call", engine.name()), |b| {
                    b.iter(|| raw.host_calls(black_box(n)).expect("no trap"))
                });
                group.bench_function(BenchmarkId::new("raw_empty_loop", engine.name()), |b| {
                    b.iter(|| raw.empty_loop(black_box(n)).expect("no trap"))
                });
            }
            Some(Err(e)) => eprintln!("skipping the raw crossing on {}: {e}", engine.name()),
            None => eprintln!("no raw crossing for {} in this build", engine.name()),
        }
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("callback", engine.name()), |b| {
            b.iter(|| bench.callback().expect("no trap"))
        });
        group.finish();
    }
}

/// The lifecycle benchmarks of one engine.
struct Lifecycle<'a> {
    c: &'a mut Criterion,
}

impl EngineVisitor for Lifecycle<'_> {
    type Output = ();

    fn visit<E: Engine>(self, engine: E) {
        let c = self.c;
        for language in Language::ALL {
            let Some(wasm) = read_fixture(language, Workload::Noop) else {
                continue;
            };
            let mut group = c.benchmark_group(format!("lifecycle/{}", language.id()));
            // Compiling a Go module takes on the order of a second: few,
            // single-iteration samples.
            group.sampling_mode(SamplingMode::Flat).sample_size(10);
            group.bench_function(BenchmarkId::new("compile", engine.name()), |b| {
                b.iter(|| engine.compile(&wasm).expect("compiles"))
            });
            let plugin = noop_plugin(&engine, &wasm);
            match plugin {
                Ok(plugin) => {
                    group.bench_function(BenchmarkId::new("new_vm", engine.name()), |b| {
                        b.iter(|| plugin.new_vm().expect("starts"))
                    });
                    // `Reuse`: the pool's own cost; with `Replace`, giving a
                    // VM back also costs a `new_vm`.
                    match VmPool::new(plugin, 2, ReturnPolicy::Reuse) {
                        Ok(pool) => {
                            group.bench_function(
                                BenchmarkId::new("pool_take", engine.name()),
                                |b| b.iter(|| drop(black_box(pool.take().expect("a VM is free")))),
                            );
                        }
                        Err(e) => eprintln!("skipping lifecycle/{}/pool_take: {e}", language.id()),
                    }
                }
                Err(e) => eprintln!("skipping lifecycle/{}: {e}", language.id()),
            }
            let dir = std::env::temp_dir().join(format!(
                "polyhost-bench-criterion-cache-{}-{}",
                std::process::id(),
                engine.name()
            ));
            let cache = ModuleCache::new(&dir, cache::DEFAULT_MAX_BYTES);
            match cache.load(&engine, &wasm) {
                Ok(l) if l.outcome != CacheOutcome::Uncacheable => {
                    group.bench_function(BenchmarkId::new("cached_load", engine.name()), |b| {
                        b.iter(|| cache.load(&engine, &wasm).expect("a cache hit"))
                    });
                }
                Ok(_) => eprintln!(
                    "skipping lifecycle/{}/cached_load: {} cannot precompile",
                    language.id(),
                    engine.name()
                ),
                Err(e) => eprintln!("skipping lifecycle/{}/cached_load: {e}", language.id()),
            }
            let _ = std::fs::remove_dir_all(&dir);
            group.finish();
        }
    }
}

/// Starting VMs on an engine with a pooling instance allocator.
struct PooledLifecycle<'a> {
    c: &'a mut Criterion,
}

impl EngineVisitor for PooledLifecycle<'_> {
    type Output = ();

    fn visit<E: Engine>(self, engine: E) {
        for language in Language::ALL {
            let Some(wasm) = read_fixture(language, Workload::Noop) else {
                continue;
            };
            let plugin = noop_plugin(&engine, &wasm);
            let plugin = match plugin {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("skipping lifecycle/{}/new_vm_pooled: {e}", language.id());
                    continue;
                }
            };
            let mut group = self
                .c
                .benchmark_group(format!("lifecycle/{}", language.id()));
            // Each VM is dropped inside the iteration, freeing its slot.
            group.bench_function(BenchmarkId::new("new_vm_pooled", engine.name()), |b| {
                b.iter(|| drop(black_box(plugin.new_vm().expect("a slot is free"))))
            });
            group.finish();
        }
    }
}

/// Requests served on VMs taken from a one-VM pool, per return policy.
struct Isolation<'a> {
    c: &'a mut Criterion,
    fixture: Arc<Fixture>,
    /// Appended to the engine name: `-pooled` on a pooled engine.
    suffix: &'static str,
}

impl EngineVisitor for Isolation<'_> {
    type Output = ();

    fn visit<E: Engine>(self, engine: E) {
        let id = format!("{}{}", engine.name(), self.suffix);
        for workload in ISOLATION_WORKLOADS {
            let Some(wasm) = read_fixture(Language::Rust, workload) else {
                continue;
            };
            let (services, callouts) = wasm::services();
            let plugin = engine
                .compile(&wasm)
                .map_err(|e| e.to_string())
                .and_then(|m| {
                    Plugin::from_module(
                        &engine,
                        m,
                        wasm::plugin_config(workload.plugin()),
                        services,
                    )
                    .map_err(|e| e.to_string())
                });
            let plugin = match plugin {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("skipping isolation/{}/{id}: {e}", workload.id());
                    continue;
                }
            };
            let mut group = self
                .c
                .benchmark_group(format!("isolation/{}", workload.id()));
            for (name, policy) in [
                ("reuse", ReturnPolicy::Reuse),
                ("replace", ReturnPolicy::Replace),
            ] {
                let pool = match VmPool::new(plugin.clone(), 1, policy) {
                    Ok(p) => p,
                    Err(e) => {
                        eprintln!("skipping isolation/{}/{name}/{id}: {e}", workload.id());
                        continue;
                    }
                };
                group.bench_function(BenchmarkId::new(name, &id), |b| {
                    b.iter(|| {
                        let mut vm = pool.take().expect("the VM is back");
                        wasm::serve(&mut vm, workload, &self.fixture, &callouts).expect("served")
                    })
                });
            }
            group.finish();
        }
    }
}

fn isolation(c: &mut Criterion) {
    let fixture = Arc::new(Fixture::default());
    for engine in engines() {
        engine.visit(Isolation {
            c: &mut *c,
            fixture: fixture.clone(),
            suffix: "",
        });
    }
    for name in AnyEngine::names() {
        if let Ok(engine) = AnyEngine::by_name(name, &pooled_config()) {
            engine.visit(Isolation {
                c: &mut *c,
                fixture: fixture.clone(),
                suffix: "-pooled",
            });
        }
    }
}

fn requests(c: &mut Criterion) {
    let fixture = Arc::new(Fixture::default());
    for engine in engines() {
        engine.visit(Requests {
            c: &mut *c,
            fixture: fixture.clone(),
        });
    }
}

fn crossings(c: &mut Criterion) {
    for engine in engines() {
        engine.visit(Crossings { c: &mut *c });
    }
}

fn lifecycle(c: &mut Criterion) {
    for engine in engines() {
        engine.visit(Lifecycle { c: &mut *c });
    }
    for name in AnyEngine::names() {
        match AnyEngine::by_name(name, &pooled_config()) {
            Ok(engine) => engine.visit(PooledLifecycle { c: &mut *c }),
            Err(e) => eprintln!("skipping new_vm_pooled on {name}: {e}"),
        }
    }
}

criterion_group! {
    name = benches;
    // Short defaults: there are about a hundred cells; pass
    // `--measurement-time` to look at one more closely.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = baselines, requests, crossings, lifecycle, isolation
}
criterion_main!(benches);
