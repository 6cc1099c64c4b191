//! Polyhost's wasmtime backend.
//!
//! Three variants share this code and differ only in how wasmtime turns Wasm
//! into something it can run ([`Variant`]):
//!
//! * `wasmtime` — Cranelift, the optimising JIT (default);
//! * `wasmtime-winch` — Winch, a baseline compiler that compiles fast and
//!   produces slower code;
//! * `wasmtime-pulley` — Pulley, wasmtime's portable interpreter.
//!
//! Host functions are registered with `Linker::func_wrap`, so a call from the
//! guest into the host is wasmtime's typed host call. Modules are pre-linked
//! once into an `InstancePre` from which every instance is created.
//!
//! Limits: memory growth is capped through a `StoreLimits` resource limiter;
//! a call timeout (on by default, [`EngineConfig::call_timeout`]) uses epoch
//! interruption with one background ticker thread per engine, ticking every
//! 5 ms: a guest is stopped at most two ticks (10 ms) after its deadline,
//! wherever it loops, as the epoch check sits in every loop header and
//! function entry. Fuel uses wasmtime's fuel metering. Each is only
//! switched on when configured, because each adds checks to the generated
//! code.

mod caller;
mod instance;

pub use caller::WasmtimeCaller;
pub use instance::{WasmtimeFunc, WasmtimeInstance};

use polyhost_engine_core::{
    CallbackExport, Capabilities, Engine, EngineConfig, Error, ErrorKind, Export, FuncType,
    HostLinker, HostResult, Import, Result, ValType, WasmTypes, check_callbacks, import_mismatch,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{ModuleExport, StoreLimits};

/// How wasmtime executes code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Cranelift optimising compiler.
    Cranelift,
    /// Winch baseline compiler.
    Winch,
    /// Pulley portable interpreter.
    Pulley,
}

impl Variant {
    /// The variants compiled into this build, in preference order.
    pub fn available() -> &'static [Variant] {
        &[
            #[cfg(feature = "cranelift")]
            Variant::Cranelift,
            #[cfg(feature = "winch")]
            Variant::Winch,
            #[cfg(feature = "pulley")]
            Variant::Pulley,
        ]
    }

    /// The engine name users select this variant by.
    pub fn engine_name(self) -> &'static str {
        match self {
            Variant::Cranelift => "wasmtime",
            Variant::Winch => "wasmtime-winch",
            Variant::Pulley => "wasmtime-pulley",
        }
    }
}

/// Interval of the epoch ticker that enforces call timeouts.
const EPOCH_TICK: Duration = Duration::from_millis(5);

/// The wasmtime engine. Cheap to clone.
#[derive(Clone)]
pub struct WasmtimeEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmtime::Engine,
    variant: Variant,
    config: EngineConfig,
    /// Epoch ticks one call may run for, when a call timeout is set.
    deadline_ticks: Option<u64>,
    /// Epoch ticks one call may run for while an instance is starting.
    startup_ticks: Option<u64>,
    /// Stops the epoch ticker thread when the engine is dropped.
    ticker_stop: Arc<AtomicBool>,
    /// The ticker's clock, when there is a ticker (a call timeout is set).
    clock: Option<Arc<TickClock>>,
}

/// The epoch ticker's clock: the time of its latest tick. Arming a call
/// reads it instead of the system clock, which costs a vDSO call per
/// top-level guest call (15% of a `noop` request in
/// `scripts/profile.sh --operations noop`). It lags by about a tick, so a
/// call's [`Deadline`](polyhost_engine_core::Deadline) comes that much
/// early; the epoch deadline that stops the call is rounded up by more
/// (see [`WasmtimeEngine::new`]), and only a host function that waits
/// (WASI `poll_oneoff`) reads the instant.
pub(crate) struct TickClock {
    base: Instant,
    /// Nanoseconds from `base` to the latest tick.
    since_base: AtomicU64,
}

impl TickClock {
    fn new() -> Self {
        TickClock {
            base: Instant::now(),
            since_base: AtomicU64::new(0),
        }
    }

    fn tick(&self) {
        let nanos = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.since_base.store(nanos, Ordering::Relaxed);
    }

    /// The time of the latest tick.
    pub(crate) fn now(&self) -> Instant {
        self.base + Duration::from_nanos(self.since_base.load(Ordering::Relaxed))
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl WasmtimeEngine {
    /// Creates an engine of the given variant.
    ///
    /// # Errors
    /// [`ErrorKind::NotSupported`] when the variant was not compiled in;
    /// [`ErrorKind::Other`] when wasmtime rejects the configuration.
    pub fn new(variant: Variant, config: &EngineConfig) -> Result<Self> {
        let name = variant.engine_name();
        if !Variant::available().contains(&variant) {
            return Err(Error::not_supported(
                name,
                "this variant (enable its Cargo feature)",
            ));
        }
        let mut wt = wasmtime::Config::new();
        match variant {
            Variant::Cranelift => {
                wt.strategy(wasmtime::Strategy::Cranelift);
            }
            Variant::Winch => {
                wt.strategy(wasmtime::Strategy::Winch);
            }
            Variant::Pulley => {
                let target = if cfg!(target_pointer_width = "64") {
                    "pulley64"
                } else {
                    "pulley32"
                };
                wt.target(target)
                    .map_err(|e| Error::new(ErrorKind::Other, name, e.to_string()))?;
            }
        }
        wt.wasm_backtrace_max_frames(std::num::NonZeroUsize::new(20));
        if config.call_timeout.is_some() {
            wt.epoch_interruption(true);
        }
        if config.fuel_per_call.is_some() {
            wt.consume_fuel(true);
        }
        if let Some(slots) = config.pooled_instances {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .max_memory_size(usize::try_from(config.max_memory_bytes).unwrap_or(usize::MAX));
            keep_slots_resident(&mut pool);
            wt.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
            // Copy-on-write initialisation is wasmtime's default; say so, as
            // it is what makes pooled instantiation cheap.
            wt.memory_init_cow(true);
        }
        let engine = wasmtime::Engine::new(&wt)
            .map_err(|e| Error::new(ErrorKind::Other, name, format!("{e:#}")))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        // Round up, plus one tick because the first tick may come at once.
        let ticks =
            |timeout: std::time::Duration| (timeout.as_nanos() / EPOCH_TICK.as_nanos()) as u64 + 2;
        let clock = config.call_timeout.map(|_| Arc::new(TickClock::new()));
        if let Some(clock) = &clock {
            spawn_epoch_ticker(engine.weak(), ticker_stop.clone(), Arc::clone(clock));
        }
        let deadline_ticks = config.call_timeout.map(ticks);
        let startup_ticks = config.startup_call_timeout().map(ticks);
        Ok(WasmtimeEngine {
            inner: Arc::new(Inner {
                engine,
                variant,
                config: config.clone(),
                deadline_ticks,
                startup_ticks,
                ticker_stop,
                clock,
            }),
        })
    }

    /// The default variant (Cranelift) with default settings.
    ///
    /// # Errors
    /// As [`WasmtimeEngine::new`].
    pub fn cranelift() -> Result<Self> {
        Self::new(Variant::Cranelift, &EngineConfig::default())
    }

    /// The variant this engine runs.
    pub fn variant(&self) -> Variant {
        self.inner.variant
    }

    /// The underlying wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner.engine
    }

    fn err(&self, kind: ErrorKind, e: wasmtime::Error) -> Error {
        Error::new(kind, self.name(), format!("{e:#}"))
    }
}

/// Bytes of a pooled slot's linear memory that are reset in place for the
/// next instance instead of being given back to the kernel (see
/// [`keep_slots_resident`]); what an instance wrote beyond this is given
/// back as before. Measured on the `noop` plugins of the four SDKs with
/// `polyhost-bench-profile --operation new-vm-pooled`: the Rust and C++
/// ones write under 256 KiB while starting, Go's runtime about 1 MiB
/// (its start-up got no faster above that).
const KEEP_RESIDENT_MEMORY: usize = 1 << 20;

/// Bytes of a pooled slot's tables reset in place likewise: 8 Ki
/// function references.
const KEEP_RESIDENT_TABLE: usize = 64 << 10;

/// Makes a freed slot keep the pages its instance wrote, reset to their
/// initial contents, when the kernel can say which pages those are
/// (Linux's `PAGEMAP_SCAN`, 6.7 and later). By default wasmtime resets a
/// slot with `madvise(MADV_DONTNEED)`, which unmaps the written pages:
/// that flushes the TLB of every core running the process, and the next
/// instance faults each page back in, which together were most of the cost
/// of a pooled instantiation. With the scan, only the pages actually
/// written are copied back (up to the limits above), and the slot's memory
/// stays mapped. Without the scan wasmtime would instead `memset` the first
/// bytes of every memory whether written or not, so the option is left off
/// there. The price is resident memory: each warm slot keeps at most the
/// limits above, pages its instance had resident anyway.
fn keep_slots_resident(pool: &mut wasmtime::PoolingAllocationConfig) {
    if wasmtime::PoolingAllocationConfig::is_pagemap_scan_available() {
        pool.pagemap_scan(wasmtime::Enabled::Yes)
            .linear_memory_keep_resident(KEEP_RESIDENT_MEMORY)
            .table_keep_resident(KEEP_RESIDENT_TABLE);
    }
}

fn spawn_epoch_ticker(engine: wasmtime::EngineWeak, stop: Arc<AtomicBool>, clock: Arc<TickClock>) {
    std::thread::Builder::new()
        .name("polyhost-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                // The clock first: a call armed after this epoch sees a
                // time at least as late as the tick's.
                clock.tick();
                match engine.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => break,
                }
            }
        })
        .expect("spawning a thread only fails when the OS is out of resources");
}

/// Host data wrapper kept in every wasmtime `Store`: the embedder's data plus
/// what host functions need on every call, resolved once at instantiation.
pub struct StoreData<D> {
    pub(crate) user: D,
    pub(crate) memory: Option<wasmtime::Memory>,
    /// The guest allocator, known to be `(i32) -> i32`; `Copy`, so a host
    /// call takes it out of the store without a reference count.
    pub(crate) allocator: Option<instance::RawFunc>,
    pub(crate) limits: StoreLimits,
    pub(crate) engine_name: &'static str,
    /// [`EngineConfig::call_timeout`], to name it when a call is stopped.
    pub(crate) call_timeout: Option<std::time::Duration>,
    /// The deadline of the running top-level call (set when it is armed).
    pub(crate) deadline: Option<polyhost_engine_core::Deadline>,
    /// The engine's [`TickClock`], which arming reads.
    pub(crate) clock: Option<Arc<TickClock>>,
}

/// Collects host functions for [`WasmtimeEngine`].
pub struct WasmtimeLinker<D: 'static> {
    inner: wasmtime::Linker<StoreData<D>>,
    engine_name: &'static str,
    /// The signature of every registered function, so [`Engine::prelink`]
    /// reports a missing or mistyped import in the same words as the other
    /// backends (wasmtime's own message differs).
    types: HashMap<(String, String), FuncType>,
}

macro_rules! impl_host_linker {
    ($( $method:ident => ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        impl<D: Send + 'static> HostLinker<D> for WasmtimeLinker<D> {
            type Caller<'a> = WasmtimeCaller<'a, D>;
            $(
                fn $method<F>(&mut self, module: &str, name: &str, f: F) -> Result<()>
                where
                    F: for<'a> Fn(&mut Self::Caller<'a>, $($ty),*) -> HostResult<$ret>
                        + Send
                        + Sync
                        + 'static,
                {
                    self.inner
                        .func_wrap(
                            module,
                            name,
                            move |caller: wasmtime::Caller<'_, StoreData<D>>, $($arg: $ty),*|
                                  -> wasmtime::Result<$ret> {
                                let mut cx = WasmtimeCaller { caller };
                                f(&mut cx, $($arg),*).map_err(wasmtime::Error::new)
                            },
                        )
                        .map_err(|e| Error::new(ErrorKind::Link, self.engine_name, format!("{e:#}")))?;
                    self.types.insert(
                        (module.to_string(), name.to_string()),
                        FuncType::host(&[$(<$ty as WasmTypes>::TYPES),*], <$ret as WasmTypes>::TYPES),
                    );
                    Ok(())
                }
            )*
        }
    };
}

polyhost_engine_core::for_each_host_signature!(impl_host_linker);

/// A module with its imports resolved, and the exports every instance
/// needs resolved to their index in the module.
pub struct WasmtimePre<D: 'static> {
    pre: wasmtime::InstancePre<StoreData<D>>,
    pub(crate) exports: Arc<PreExports>,
}

/// What [`Engine::prelink`] resolved of a module's exports, shared by all
/// its instances.
pub(crate) struct PreExports {
    /// The callbacks listed at prelink, in order, each with its export
    /// index; their types were checked against the module's.
    pub(crate) callbacks: Box<[(CallbackExport, ModuleExport)]>,
    /// The export `memory`, if the module has one.
    pub(crate) memory: Option<ModuleExport>,
}

impl<D: 'static> Clone for WasmtimePre<D> {
    fn clone(&self) -> Self {
        WasmtimePre {
            pre: self.pre.clone(),
            exports: self.exports.clone(),
        }
    }
}

fn val_type(t: &wasmtime::ValType) -> ValType {
    match t {
        wasmtime::ValType::I32 => ValType::I32,
        wasmtime::ValType::I64 => ValType::I64,
        _ => ValType::Other,
    }
}

fn extern_kind(t: &wasmtime::ExternType) -> &'static str {
    match t {
        wasmtime::ExternType::Func(_) => "function",
        wasmtime::ExternType::Memory(_) => "memory",
        wasmtime::ExternType::Table(_) => "table",
        wasmtime::ExternType::Global(_) => "global",
        wasmtime::ExternType::Tag(_) => "tag",
    }
}

pub(crate) fn func_type(t: &wasmtime::FuncType) -> FuncType {
    FuncType {
        params: t.params().map(|p| val_type(&p)).collect(),
        results: t.results().map(|r| val_type(&r)).collect(),
    }
}

impl Engine for WasmtimeEngine {
    type Module = wasmtime::Module;
    type Linker<D: Send + 'static> = WasmtimeLinker<D>;
    type InstancePre<D: Send + 'static> = WasmtimePre<D>;
    type Instance<D: Send + 'static> = WasmtimeInstance<D>;

    fn name(&self) -> &'static str {
        self.inner.variant.engine_name()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.precompile = true;
        caps.interruption = true;
        caps.fuel = true;
        caps.memory_limit = true;
        caps.backtraces = true;
        caps.instance_pooling = true;
        caps
    }

    fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut h);
        format!(
            "wasmtime-{}-{}-{:?}-{:016x}",
            wasmtime_version(),
            std::env::consts::ARCH,
            self.inner.variant,
            h.finish()
        )
        // precompile_compatibility_hash covers the version, target and every
        // code-affecting setting (fuel, epochs, pooling limits).
    }

    fn compile(&self, wasm: &[u8]) -> Result<Self::Module> {
        wasmtime::Module::new(&self.inner.engine, wasm).map_err(|e| self.err(ErrorKind::Compile, e))
    }

    fn exports(&self, module: &Self::Module) -> Vec<Export> {
        module
            .exports()
            .map(|e| Export {
                name: e.name().to_string(),
                func: e.ty().func().map(func_type),
            })
            .collect()
    }

    fn imports(&self, module: &Self::Module) -> Vec<Import> {
        module
            .imports()
            .map(|i| Import {
                module: i.module().to_string(),
                name: i.name().to_string(),
                func: i.ty().func().map(func_type),
            })
            .collect()
    }

    fn precompile(&self, wasm: &[u8]) -> Result<Vec<u8>> {
        self.inner
            .engine
            .precompile_module(wasm)
            .map_err(|e| self.err(ErrorKind::Compile, e))
    }

    unsafe fn deserialize(&self, bytes: &[u8]) -> Result<Self::Module> {
        // SAFETY: the caller guarantees the bytes came from `precompile` of an
        // engine with the same fingerprint; wasmtime checks the header.
        unsafe { wasmtime::Module::deserialize(&self.inner.engine, bytes) }
            .map_err(|e| self.err(ErrorKind::Deserialize, e))
    }

    fn linker<D: Send + 'static>(&self) -> Self::Linker<D> {
        WasmtimeLinker {
            inner: wasmtime::Linker::new(&self.inner.engine),
            engine_name: self.name(),
            types: HashMap::new(),
        }
    }

    fn prelink<D: Send + 'static>(
        &self,
        linker: &Self::Linker<D>,
        module: &Self::Module,
        callbacks: &[CallbackExport],
    ) -> Result<Self::InstancePre<D>> {
        for import in module.imports() {
            let ty = import.ty();
            let wanted = ty.func().map(func_type);
            let key = (import.module().to_string(), import.name().to_string());
            if let Some(msg) = import_mismatch(
                import.module(),
                import.name(),
                wanted.as_ref().ok_or(extern_kind(&ty)),
                linker.types.get(&key),
            ) {
                return Err(Error::new(ErrorKind::Link, self.name(), msg));
            }
        }
        check_callbacks(self.name(), &self.exports(module), callbacks)?;
        let callbacks = callbacks
            .iter()
            .map(|cb| {
                let index = module
                    .get_export_index(&cb.name)
                    .expect("check_callbacks found the export");
                (cb.clone(), index)
            })
            .collect();
        let memory = module.get_export_index("memory");
        let pre = linker
            .inner
            .instantiate_pre(module)
            .map_err(|e| self.err(ErrorKind::Link, e))?;
        Ok(WasmtimePre {
            pre,
            exports: Arc::new(PreExports { callbacks, memory }),
        })
    }

    fn instantiate<D: Send + 'static>(
        &self,
        pre: &Self::InstancePre<D>,
        data: D,
    ) -> Result<Self::Instance<D>> {
        WasmtimeInstance::new(self, &pre.pre, &pre.exports, data)
    }
}

/// The version of the wasmtime crate this backend was built with.
pub fn wasmtime_version() -> &'static str {
    "48"
}
