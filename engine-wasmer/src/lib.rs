//! Polyhost's wasmer backend.
//!
//! Two variants share this code and differ only in the compiler wasmer uses
//! ([`Variant`]):
//!
//! * `wasmer` — Cranelift, an optimising compiler (default, MIT licensed);
//! * `wasmer-singlepass` — Singlepass, a one-pass baseline compiler with
//!   fast, linear-time compilation and slower code. Behind the opt-in Cargo
//!   feature `singlepass`, because wasmer's Singlepass (and LLVM) compilers
//!   are licensed **BUSL-1.1** (Business Source License: production use needs
//!   a grant from Wasmer, Inc.), while wasmer itself and its Cranelift
//!   compiler are MIT. Enabling the feature is a licensing decision; make it
//!   knowingly.
//!
//! # Design choices
//!
//! * **Typed host functions, created per store.** A wasmer `Function` belongs
//!   to one `Store`, so the linker keeps, for each registered host function,
//!   a small factory that calls `Function::new_typed_with_env` with the
//!   instance's `FunctionEnv<StoreData<D>>`. Guest calls into the host go
//!   through wasmer's typed trampolines.
//! * **No `InstancePre`.** wasmer has no pre-linked instance template.
//!   [`Engine::prelink`] checks every import of the module against the
//!   signatures the linker recorded ([`ErrorKind::Link`] naming the first
//!   missing or mistyped `module.name`) and stores the factories in import
//!   order. [`Engine::instantiate`] then creates only the functions the module
//!   imports and passes them positionally to `Instance::new_by_index`: no
//!   `Imports` name map is built per instance.
//! * **Re-entering the guest.** Host functions receive a
//!   `FunctionEnvMut<StoreData<D>>`, which is itself a mutable store handle.
//!   The allocator's `TypedFunction` is kept in [`StoreData`], cloned out of
//!   the environment and called with the `FunctionEnvMut` as its store, so
//!   [`HostContext::allocate`](polyhost_engine_core::HostContext::allocate)
//!   works from inside a host call.
//! * **Checked memory access.** Guest memory is only touched through
//!   `MemoryView::read` / `MemoryView::write`, which check bounds; the crate
//!   never builds a slice over guest memory.
//!
//! # Capabilities
//!
//! | capability | supported | how |
//! | --- | --- | --- |
//! | precompile | yes | `Module::serialize` / `Module::deserialize` |
//! | fuel | yes | `wasmer-middlewares` metering, refilled before each top-level call |
//! | interruption | yes | a flag checked at function entries and loop headers, raised by a watchdog thread at the deadline (`deadline.rs`) |
//! | memory limit | yes | custom `Tunables` that cap every memory's maximum |
//! | backtraces | yes | wasmer's `RuntimeError::trace` |
//!
//! Fuel is wasmer's metering middleware, which counts one point per Wasm
//! operator. A call timeout (on by default) compiles a check of a deadline
//! flag into every function entry and loop header, like wasmtime's epochs;
//! a watchdog thread, looking every 5 ms, raises the flag of a call running
//! past its deadline, so a looping guest stops within about one tick (5 ms)
//! of its deadline. The checks cost a load and a branch per loop iteration;
//! an engine without a timeout compiles none (`deadline.rs`).
//!
//! Because metering rewrites the compiled code, an engine with
//! fuel compiles different code (the [`Engine::fingerprint`] says so), and
//! metered modules are compiled one at a time (see `metering.rs`).

mod caller;
mod deadline;
mod instance;
mod metering;
mod start;
mod tunables;

pub use caller::WasmerCaller;
pub use instance::{WasmerFunc, WasmerInstance};

use polyhost_engine_core::{
    CallbackExport, Capabilities, Engine, EngineConfig, Error, ErrorKind, Export, FuncType,
    HostLinker, HostResult, Import, Result, ValType, WasmTypes, check_callbacks, import_mismatch,
};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex};
use wasmer::sys::{EngineBuilder, NativeEngineExt};
use wasmer::{Function, FunctionEnv, FunctionEnvMut, Store, TypedFunction};

/// Which compiler wasmer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// Cranelift optimising compiler (MIT).
    Cranelift,
    /// Singlepass baseline compiler (BUSL-1.1; Cargo feature `singlepass`).
    Singlepass,
}

impl Variant {
    /// The variants compiled into this build, in preference order.
    pub fn available() -> &'static [Variant] {
        &[
            Variant::Cranelift,
            #[cfg(feature = "singlepass")]
            Variant::Singlepass,
        ]
    }

    /// The engine name users select this variant by.
    pub fn engine_name(self) -> &'static str {
        match self {
            Variant::Cranelift => "wasmer",
            Variant::Singlepass => "wasmer-singlepass",
        }
    }

    fn compiler_name(self) -> &'static str {
        match self {
            Variant::Cranelift => "cranelift",
            Variant::Singlepass => "singlepass",
        }
    }
}

/// The wasmer engine. Cheap to clone.
#[derive(Clone)]
pub struct WasmerEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmer::Engine,
    variant: Variant,
    config: EngineConfig,
    /// Held while compiling when a middleware is on: the metering and
    /// deadline middlewares keep per-module state between their module and
    /// function passes.
    compile_lock: Option<Mutex<()>>,
    /// Whether modules are compiled with fuel metering.
    metered: bool,
    /// Stops calls past their deadline, when a call timeout is set.
    watchdog: Option<Arc<deadline::Watchdog>>,
}

impl Inner {
    /// Whether modules are compiled with fuel metering.
    fn metered(&self) -> bool {
        self.metered
    }
}

impl WasmerEngine {
    /// Creates an engine of the given variant.
    ///
    /// # Errors
    /// [`ErrorKind::NotSupported`] when the variant was not compiled in or
    /// `config` asks for pre-allocated instance slots; [`ErrorKind::Other`]
    /// when the deadline watchdog thread cannot be started.
    pub fn new(variant: Variant, config: &EngineConfig) -> Result<Self> {
        let name = variant.engine_name();
        if !Variant::available().contains(&variant) {
            return Err(Error::not_supported(
                name,
                "this variant (enable its Cargo feature)",
            ));
        }
        if config.pooled_instances.is_some() {
            return Err(Error::not_supported(
                name,
                "pre-allocated instance slots (pooled_instances)",
            ));
        }
        let metering = config
            .fuel_per_call
            .map(|fuel| Arc::new(metering::PerModuleMetering::new(fuel)));
        let checks = config
            .call_timeout
            .map(|_| Arc::new(deadline::DeadlineMiddleware::default()));
        let watchdog = match config.call_timeout {
            Some(_) => Some(deadline::Watchdog::spawn().map_err(|e| {
                Error::new(
                    ErrorKind::Other,
                    name,
                    format!("cannot start the deadline watchdog thread: {e}"),
                )
            })?),
            None => None,
        };
        let mut engine: wasmer::Engine = match variant {
            Variant::Cranelift => {
                let mut c = wasmer::sys::Cranelift::new();
                if let Some(m) = &metering {
                    wasmer::sys::CompilerConfig::push_middleware(&mut c, m.clone());
                }
                if let Some(d) = &checks {
                    wasmer::sys::CompilerConfig::push_middleware(&mut c, d.clone());
                }
                EngineBuilder::new(c).into()
            }
            Variant::Singlepass => singlepass_engine(metering.clone(), checks.clone())?,
        };
        let target = engine.target().clone();
        engine.set_tunables(tunables::LimitingTunables::new(
            &target,
            config.max_memory_bytes,
        ));
        Ok(WasmerEngine {
            inner: Arc::new(Inner {
                engine,
                variant,
                config: config.clone(),
                compile_lock: (metering.is_some() || checks.is_some()).then(|| Mutex::new(())),
                metered: metering.is_some(),
                watchdog,
            }),
        })
    }

    /// The engine names of the variants compiled in, default first.
    pub fn names() -> Vec<&'static str> {
        Variant::available()
            .iter()
            .map(|v| v.engine_name())
            .collect()
    }

    /// Creates the variant whose engine name is `name` (`wasmer` or
    /// `wasmer-singlepass`).
    ///
    /// # Errors
    /// [`ErrorKind::NotSupported`] when no variant has that name or it was
    /// not compiled in; otherwise as [`WasmerEngine::new`].
    pub fn by_name(name: &str, config: &EngineConfig) -> Result<Self> {
        match [Variant::Cranelift, Variant::Singlepass]
            .into_iter()
            .find(|v| v.engine_name() == name)
        {
            Some(variant) => Self::new(variant, config),
            None => Err(Error::new(
                ErrorKind::NotSupported,
                Variant::Cranelift.engine_name(),
                format!("there is no wasmer variant named `{name}`"),
            )),
        }
    }

    /// The default variant (Cranelift) with default settings.
    ///
    /// # Errors
    /// As [`WasmerEngine::new`].
    pub fn cranelift() -> Result<Self> {
        Self::new(Variant::Cranelift, &EngineConfig::default())
    }

    /// The variant this engine runs.
    pub fn variant(&self) -> Variant {
        self.inner.variant
    }

    /// The underlying wasmer engine.
    ///
    /// When fuel is on, compile modules through [`Engine::compile`] rather
    /// than directly with this engine: only the former holds the lock the
    /// metering middleware needs.
    pub fn wasmer(&self) -> &wasmer::Engine {
        &self.inner.engine
    }

    /// Compiles with the metering lock held when fuel is on.
    fn compile_module(&self, wasm: &[u8]) -> Result<wasmer::Module> {
        let _guard = self
            .inner
            .compile_lock
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        // With deadlines on, the start function runs after instantiation,
        // where the deadline can stop it (see `start.rs`).
        let deferred = self
            .inner
            .watchdog
            .as_ref()
            .and_then(|_| start::defer_start(wasm));
        wasmer::Module::new(&self.inner.engine, deferred.as_deref().unwrap_or(wasm))
            .map_err(|e| Error::new(ErrorKind::Compile, self.name(), e.to_string()))
    }
}

#[cfg(feature = "singlepass")]
fn singlepass_engine(
    metering: Option<Arc<metering::PerModuleMetering>>,
    checks: Option<Arc<deadline::DeadlineMiddleware>>,
) -> Result<wasmer::Engine> {
    let mut c = wasmer::sys::Singlepass::new();
    if let Some(m) = metering {
        wasmer::sys::CompilerConfig::push_middleware(&mut c, m);
    }
    if let Some(d) = checks {
        wasmer::sys::CompilerConfig::push_middleware(&mut c, d);
    }
    Ok(EngineBuilder::new(c).into())
}

#[cfg(not(feature = "singlepass"))]
fn singlepass_engine(
    _metering: Option<Arc<metering::PerModuleMetering>>,
    _checks: Option<Arc<deadline::DeadlineMiddleware>>,
) -> Result<wasmer::Engine> {
    Err(Error::not_supported(
        Variant::Singlepass.engine_name(),
        "this variant (enable its Cargo feature)",
    ))
}

/// Host data wrapper kept in every instance's `FunctionEnv`: the embedder's
/// data plus what host functions need on every call, resolved once at
/// instantiation.
pub struct StoreData<D> {
    pub(crate) user: D,
    pub(crate) memory: Option<wasmer::Memory>,
    pub(crate) allocator: Option<TypedFunction<i32, i32>>,
    /// Fuel, deadline and watchdog state, shared with nested calls.
    pub(crate) limits: instance::Limits,
    pub(crate) engine_name: &'static str,
}

/// Creates one host function in an instance's store.
type MakeFunc<D> = dyn Fn(&mut Store, &FunctionEnv<StoreData<D>>) -> Function + Send + Sync;

struct HostFunc<D: 'static> {
    ty: FuncType,
    make: Arc<MakeFunc<D>>,
}

/// Collects host functions for [`WasmerEngine`].
pub struct WasmerLinker<D: 'static> {
    funcs: HashMap<(String, String), HostFunc<D>>,
    engine_name: &'static str,
}

impl<D: Send + 'static> WasmerLinker<D> {
    fn define(
        &mut self,
        module: &str,
        name: &str,
        ty: FuncType,
        make: Arc<MakeFunc<D>>,
    ) -> Result<()> {
        match self.funcs.entry((module.to_string(), name.to_string())) {
            Entry::Occupied(_) => Err(Error::new(
                ErrorKind::Link,
                self.engine_name,
                format!("`{module}.{name}` is already defined"),
            )),
            Entry::Vacant(slot) => {
                slot.insert(HostFunc { ty, make });
                Ok(())
            }
        }
    }
}

macro_rules! impl_host_linker {
    ($( $method:ident => ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        impl<D: Send + 'static> HostLinker<D> for WasmerLinker<D> {
            type Caller<'a> = WasmerCaller<'a, D>;
            $(
                fn $method<F>(&mut self, module: &str, name: &str, f: F) -> Result<()>
                where
                    F: for<'a> Fn(&mut Self::Caller<'a>, $($ty),*) -> HostResult<$ret>
                        + Send
                        + Sync
                        + 'static,
                {
                    let f = Arc::new(f);
                    let make = move |store: &mut Store, env: &FunctionEnv<StoreData<D>>| {
                        let f = f.clone();
                        Function::new_typed_with_env(
                            store,
                            env,
                            move |env: FunctionEnvMut<'_, StoreData<D>>, $($arg: $ty),*|
                                  -> HostResult<$ret> {
                                // A `HostTrap` error unwinds the guest as a user
                                // trap; `convert_error` downcasts it back.
                                let mut cx = WasmerCaller { env };
                                f(&mut cx, $($arg),*)
                            },
                        )
                    };
                    let ty = FuncType::host(
                        &[$(<$ty as WasmTypes>::TYPES),*],
                        <$ret as WasmTypes>::TYPES,
                    );
                    self.define(module, name, ty, Arc::new(make))
                }
            )*
        }
    };
}

polyhost_engine_core::for_each_host_signature!(impl_host_linker);

/// A module whose imports were resolved against a linker: the host-function
/// factories in the module's import order.
pub struct WasmerPre<D: 'static> {
    inner: Arc<PreInner<D>>,
}

struct PreInner<D: 'static> {
    module: wasmer::Module,
    imports: Vec<Arc<MakeFunc<D>>>,
    callbacks: Arc<[PreCallback]>,
}

/// A callback listed at prelink: checked against the module's export
/// types, and found by position among the instance's exports.
pub(crate) struct PreCallback {
    pub(crate) export: CallbackExport,
    /// Where the export is in the module's export list, which is also the
    /// order of every instance's `Exports` map.
    pub(crate) position: usize,
}

impl<D: 'static> Clone for WasmerPre<D> {
    fn clone(&self) -> Self {
        WasmerPre {
            inner: self.inner.clone(),
        }
    }
}

fn val_type(t: &wasmer::Type) -> ValType {
    match t {
        wasmer::Type::I32 => ValType::I32,
        wasmer::Type::I64 => ValType::I64,
        _ => ValType::Other,
    }
}

pub(crate) fn func_type(t: &wasmer::FunctionType) -> FuncType {
    FuncType {
        params: t.params().iter().map(val_type).collect(),
        results: t.results().iter().map(val_type).collect(),
    }
}

fn extern_kind(t: &wasmer::ExternType) -> &'static str {
    match t {
        wasmer::ExternType::Function(_) => "function",
        wasmer::ExternType::Memory(_) => "memory",
        wasmer::ExternType::Table(_) => "table",
        wasmer::ExternType::Global(_) => "global",
        wasmer::ExternType::Tag(_) => "tag",
    }
}

impl Engine for WasmerEngine {
    type Module = wasmer::Module;
    type Linker<D: Send + 'static> = WasmerLinker<D>;
    type InstancePre<D: Send + 'static> = WasmerPre<D>;
    type Instance<D: Send + 'static> = WasmerInstance<D>;

    fn name(&self) -> &'static str {
        self.inner.variant.engine_name()
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.precompile = true;
        caps.fuel = true;
        caps.interruption = true;
        caps.memory_limit = true;
        caps.backtraces = true;
        caps
    }

    fn fingerprint(&self) -> String {
        use std::hash::{Hash, Hasher};
        let target = self.inner.engine.target();
        // CPU features select instructions in the generated code.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{:?}", target.cpu_features()).hash(&mut h);
        self.inner.engine.deterministic_id().hash(&mut h);
        format!(
            "wasmer-{}-{}-{}-{:016x}-fuel={}-deadline={}-start=deferred",
            wasmer_version(),
            self.inner.variant.compiler_name(),
            target.triple(),
            h.finish(),
            // The budget is the metering globals' initial value in the code.
            self.inner
                .config
                .fuel_per_call
                .map_or("off".to_string(), |f| f.to_string()),
            // The deadline checks are compiled in.
            self.inner.config.call_timeout.is_some(),
        )
    }

    fn compile(&self, wasm: &[u8]) -> Result<Self::Module> {
        self.compile_module(wasm)
    }

    fn exports(&self, module: &Self::Module) -> Vec<Export> {
        module
            .exports()
            // Metering and the deadline checks add and export globals;
            // they are not the plugin's.
            .filter(|e| {
                !e.name().starts_with(metering::EXPORT_PREFIX)
                    && e.name() != deadline::FLAG_EXPORT
                    && e.name() != start::START_EXPORT
            })
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
        let module = self.compile_module(wasm)?;
        module
            .serialize()
            .map(|bytes| bytes.to_vec())
            .map_err(|e| Error::new(ErrorKind::Compile, self.name(), e.to_string()))
    }

    unsafe fn deserialize(&self, bytes: &[u8]) -> Result<Self::Module> {
        // SAFETY: the caller guarantees the bytes came from `precompile` of an
        // engine with the same fingerprint; wasmer checks the header, version
        // and target.
        unsafe { wasmer::Module::deserialize(&self.inner.engine, bytes) }
            .map_err(|e| Error::new(ErrorKind::Deserialize, self.name(), e.to_string()))
    }

    fn linker<D: Send + 'static>(&self) -> Self::Linker<D> {
        WasmerLinker {
            funcs: HashMap::new(),
            engine_name: self.name(),
        }
    }

    fn prelink<D: Send + 'static>(
        &self,
        linker: &Self::Linker<D>,
        module: &Self::Module,
        callbacks: &[CallbackExport],
    ) -> Result<Self::InstancePre<D>> {
        let link_err = |msg: String| Error::new(ErrorKind::Link, self.name(), msg);
        let mut imports = Vec::new();
        for import in module.imports() {
            let wanted = import.ty().func().map(func_type);
            let key = (import.module().to_string(), import.name().to_string());
            let have = linker.funcs.get(&key);
            if let Some(msg) = import_mismatch(
                import.module(),
                import.name(),
                wanted.as_ref().ok_or(extern_kind(import.ty())),
                have.map(|h| &h.ty),
            ) {
                return Err(link_err(msg));
            }
            if let Some(have) = have {
                imports.push(have.make.clone());
            }
        }
        check_callbacks(self.name(), &self.exports(module), callbacks)?;
        let callbacks = callbacks
            .iter()
            .map(|cb| PreCallback {
                export: cb.clone(),
                position: module
                    .exports()
                    .position(|e| e.name() == &*cb.name)
                    .expect("check_callbacks found the export"),
            })
            .collect();
        Ok(WasmerPre {
            inner: Arc::new(PreInner {
                module: module.clone(),
                imports,
                callbacks,
            }),
        })
    }

    fn instantiate<D: Send + 'static>(
        &self,
        pre: &Self::InstancePre<D>,
        data: D,
    ) -> Result<Self::Instance<D>> {
        let inner = &pre.inner;
        WasmerInstance::new(self, &inner.module, &inner.imports, &inner.callbacks, data)
    }
}

/// The version of the wasmer crates this backend was built with.
pub fn wasmer_version() -> &'static str {
    wasmer::sys::vm::VERSION
}
