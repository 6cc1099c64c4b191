//! Polyhost's wasmi backend.
//!
//! [wasmi](https://github.com/wasmi-labs/wasmi) is a WebAssembly interpreter
//! written in Rust: no machine code is generated, so it runs wherever Rust
//! runs, starts instantly and is easy to audit, at the cost of executing
//! guest code several times slower than a JIT.
//!
//! # Design choices
//!
//! * **Lazy translation.** Modules are validated in full when compiled (so
//!   invalid bytes still fail in [`Engine::compile`] with
//!   [`ErrorKind::Compile`]), but each function is only translated to wasmi's
//!   internal bytecode the first time it runs
//!   ([`wasmi::CompilationMode::LazyTranslation`]). Proxy-wasm plugins export
//!   many callbacks and a given filter chain calls few of them, so this keeps
//!   plugin loading fast. [`WasmiEngine::with_compilation_mode`] chooses
//!   another mode.
//! * **Typed host functions.** Host functions are registered with
//!   [`wasmi::Linker::func_wrap`], so calls from the guest into the host use
//!   wasmi's typed trampolines, never a `&[Val]` slice.
//! * **No `InstancePre`.** wasmi 2 has no pre-instantiated template: a
//!   [`wasmi::Linker`] resolves imports by name on every
//!   `instantiate_and_start`. [`Engine::prelink`] therefore checks every
//!   import of the module against the signatures the linker recorded (so
//!   missing or mistyped imports fail early with [`ErrorKind::Link`]) and keeps
//!   the linker and module together in a [`WasmiPre`]; each
//!   [`Engine::instantiate`] links by name again, which is cheap next to
//!   wasmi's instance set-up.
//! * **Memory and allocator resolved once.** The exported `memory` and the
//!   allocator chosen with
//!   [`Instance::set_allocator`](polyhost_engine_core::Instance::set_allocator)
//!   are stored in the store's data ([`StoreData`]), so host functions do not
//!   look exports up by name on every call.
//! * **Safe instruction dispatch by default.** wasmi 2's fastest dispatch
//!   tail-calls from one instruction handler to the next and relies on LLVM
//!   compiling those calls to jumps, which it does only when wasmi is
//!   optimised *and* built without debug assertions
//!   (wasmi-labs/wasmi#2039). Otherwise every executed instruction keeps a
//!   native stack frame, and a guest loop that runs some tens of thousands
//!   of instructions overflows the host thread's stack, aborting the
//!   process. The default Cargo feature `portable-dispatch` selects wasmi's
//!   loop dispatch, which is slower but safe in every build profile; a final
//!   binary whose profiles all build `wasmi` with `debug-assertions = false`
//!   may disable it for speed.
//!
//! # Capabilities
//!
//! | capability | supported | how |
//! | --- | --- | --- |
//! | precompile | no | an interpreter has no machine code to save |
//! | fuel | yes | wasmi fuel metering, refilled before each top-level call |
//! | interruption | yes | fuel in slices of 100 000 units with resumable calls; the clock is read between slices (`meter.rs`) |
//! | memory limit | yes | a [`wasmi::StoreLimits`] resource limiter |
//! | backtraces | no | wasmi traps carry no guest stack |
//!
//! wasmi has no epoch or asynchronous interrupt, so a call timeout (on by
//! default) turns on fuel metering and runs every call resumably, pausing
//! after each slice of fuel to look at the clock: a looping guest stops
//! within one slice (well under a millisecond optimised, a few milliseconds
//! unoptimised) of its deadline. Metering costs some speed; an engine with
//! neither a timeout nor fuel runs unmetered.

mod caller;
mod instance;
mod meter;

pub use caller::WasmiCaller;
pub use instance::{WasmiFunc, WasmiInstance};

use polyhost_engine_core::{
    CallbackExport, Capabilities, Engine, EngineConfig, Error, ErrorKind, Export, FuncType,
    HostLinker, HostResult, HostTrap, Import, Result, ValType, WasmTypes, check_callbacks,
    import_mismatch,
};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use wasmi::{CompilationMode, StoreLimits, TypedFunc};

/// The name users select this engine by.
pub const ENGINE_NAME: &str = "wasmi";

/// The major version of the wasmi crate this backend is built against.
///
/// wasmi exposes no version constant; this is only used in
/// [`Engine::fingerprint`], which for an interpreter keys nothing persistent.
const WASMI_VERSION: &str = "2";

/// The wasmi engine. Cheap to clone.
#[derive(Clone)]
pub struct WasmiEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine: wasmi::Engine,
    config: EngineConfig,
    mode: CompilationMode,
}

impl WasmiEngine {
    /// Creates an engine that translates functions lazily (validating
    /// eagerly).
    ///
    /// # Errors
    /// [`ErrorKind::NotSupported`] when `config` asks for pre-allocated
    /// instance slots.
    pub fn new(config: &EngineConfig) -> Result<Self> {
        Self::with_compilation_mode(config, CompilationMode::LazyTranslation)
    }

    /// Creates an engine with an explicit wasmi compilation mode.
    ///
    /// Choose [`CompilationMode::Eager`] to pay all translation up front (for
    /// benchmarks that should not measure it inside the first call);
    /// [`CompilationMode::Lazy`] also defers validation, so invalid function
    /// bodies only fail when first called.
    ///
    /// # Errors
    /// As [`WasmiEngine::new`].
    pub fn with_compilation_mode(config: &EngineConfig, mode: CompilationMode) -> Result<Self> {
        if config.pooled_instances.is_some() {
            return Err(Error::not_supported(
                ENGINE_NAME,
                "pre-allocated instance slots (pooled_instances)",
            ));
        }
        let mut wc = wasmi::Config::default();
        wc.compilation_mode(mode);
        // Fuel metering adds a check to every basic block: only when a
        // deadline or a fuel budget needs it (see `meter.rs`).
        wc.consume_fuel(config.fuel_per_call.is_some() || config.call_timeout.is_some());
        // Lazy translation of a function on its first call is charged fuel
        // by default, and running out there cannot be resumed: a large
        // function translated at the end of a slice would fail the call.
        // Translation is host work bounded by the module's size, not guest
        // work, so it is free; copying bytes keeps wasmi's default price.
        wc.fuel_cost(wasmi::CustomFuelCosts {
            bytes_copied_per_fuel: 64,
            fuel_per_bytes_translated: 0,
            fuel_per_bytes_validated: 0,
        });
        Ok(WasmiEngine {
            inner: Arc::new(Inner {
                engine: wasmi::Engine::new(&wc),
                config: config.clone(),
                mode,
            }),
        })
    }

    /// The underlying wasmi engine.
    pub fn wasmi(&self) -> &wasmi::Engine {
        &self.inner.engine
    }

    fn err(&self, kind: ErrorKind, e: wasmi::Error) -> Error {
        Error::new(kind, ENGINE_NAME, e.to_string())
    }
}

impl Default for WasmiEngine {
    /// An engine with [`EngineConfig::default`], which wasmi fully supports.
    fn default() -> Self {
        Self::new(&EngineConfig::default())
            .expect("the default configuration asks for no instance pool")
    }
}

/// Host data wrapper kept in every wasmi `Store`: the embedder's data plus
/// what host functions need on every call, resolved once at instantiation.
pub struct StoreData<D> {
    pub(crate) user: D,
    pub(crate) memory: Option<wasmi::Memory>,
    pub(crate) allocator: Option<TypedFunc<i32, i32>>,
    pub(crate) limits: StoreLimits,
    /// The running call's deadline and fuel budget.
    pub(crate) meter: meter::Meter,
}

/// A [`HostTrap`] in the form wasmi carries through guest frames.
///
/// `HostTrap` lives in `polyhost-engine-core` and `wasmi::errors::HostError`
/// in wasmi, so the orphan rule needs this local wrapper.
#[derive(Debug)]
pub(crate) struct HostTrapError(pub(crate) HostTrap);

impl fmt::Display for HostTrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl wasmi::errors::HostError for HostTrapError {}

/// Collects host functions for [`WasmiEngine`].
pub struct WasmiLinker<D: 'static> {
    inner: wasmi::Linker<StoreData<D>>,
    /// The signature of every registered function, for the import check in
    /// [`Engine::prelink`]: wasmi's linker only reports type mismatches when
    /// instantiating.
    types: HashMap<(String, String), FuncType>,
}

impl<D: 'static> WasmiLinker<D> {
    fn record(&mut self, module: &str, name: &str, ty: FuncType) {
        self.types
            .insert((module.to_string(), name.to_string()), ty);
    }
}

macro_rules! impl_host_linker {
    ($( $method:ident => ( $($arg:ident : $ty:ty),* ) -> $ret:ty ; )*) => {
        impl<D: Send + 'static> HostLinker<D> for WasmiLinker<D> {
            type Caller<'a> = WasmiCaller<'a, D>;
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
                            move |caller: wasmi::Caller<'_, StoreData<D>>, $($arg: $ty),*|
                                  -> std::result::Result<$ret, wasmi::Error> {
                                let mut cx = WasmiCaller { caller };
                                f(&mut cx, $($arg),*)
                                    .map_err(|trap| wasmi::Error::host(HostTrapError(trap)))
                            },
                        )
                        .map_err(|e| Error::new(ErrorKind::Link, ENGINE_NAME, e.to_string()))?;
                    self.record(
                        module,
                        name,
                        FuncType::host(&[$(<$ty as WasmTypes>::TYPES),*], <$ret as WasmTypes>::TYPES),
                    );
                    Ok(())
                }
            )*
        }
    };
}

polyhost_engine_core::for_each_host_signature!(impl_host_linker);

/// A module whose imports were checked against a linker.
///
/// wasmi has no `InstancePre` (see the crate docs), so this holds the linker
/// and the module; cloning it is a reference-count increment.
pub struct WasmiPre<D: 'static> {
    inner: Arc<PreInner<D>>,
}

struct PreInner<D: 'static> {
    linker: wasmi::Linker<StoreData<D>>,
    module: wasmi::Module,
    /// The callbacks listed at prelink, checked against the module's
    /// export types.
    callbacks: Arc<[CallbackExport]>,
}

impl<D: 'static> Clone for WasmiPre<D> {
    fn clone(&self) -> Self {
        WasmiPre {
            inner: self.inner.clone(),
        }
    }
}

fn val_type(t: &wasmi::ValType) -> ValType {
    match t {
        wasmi::ValType::I32 => ValType::I32,
        wasmi::ValType::I64 => ValType::I64,
        _ => ValType::Other,
    }
}

pub(crate) fn func_type(t: &wasmi::FuncType) -> FuncType {
    FuncType {
        params: t.params().iter().map(val_type).collect(),
        results: t.results().iter().map(val_type).collect(),
    }
}

fn extern_kind(t: &wasmi::ExternType) -> &'static str {
    match t {
        wasmi::ExternType::Func(_) => "function",
        wasmi::ExternType::Memory(_) => "memory",
        wasmi::ExternType::Table(_) => "table",
        wasmi::ExternType::Global(_) => "global",
    }
}

impl Engine for WasmiEngine {
    type Module = wasmi::Module;
    type Linker<D: Send + 'static> = WasmiLinker<D>;
    type InstancePre<D: Send + 'static> = WasmiPre<D>;
    type Instance<D: Send + 'static> = WasmiInstance<D>;

    fn name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.fuel = true;
        caps.interruption = true;
        caps.memory_limit = true;
        caps
    }

    fn fingerprint(&self) -> String {
        // wasmi produces no persistent code; the fingerprint still names
        // everything that changes how a module is prepared.
        let dispatch = if cfg!(feature = "portable-dispatch") {
            "loop"
        } else {
            "tail"
        };
        format!(
            "wasmi-{WASMI_VERSION}-{}-{:?}-{dispatch}-fuel={}",
            std::env::consts::ARCH,
            self.inner.mode,
            self.inner.config.fuel_per_call.is_some() || self.inner.config.call_timeout.is_some()
        )
    }

    fn compile(&self, wasm: &[u8]) -> Result<Self::Module> {
        wasmi::Module::new(&self.inner.engine, wasm).map_err(|e| self.err(ErrorKind::Compile, e))
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

    fn linker<D: Send + 'static>(&self) -> Self::Linker<D> {
        WasmiLinker {
            inner: wasmi::Linker::new(&self.inner.engine),
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
            let wanted = import.ty().func().map(func_type);
            let key = (import.module().to_string(), import.name().to_string());
            if let Some(msg) = import_mismatch(
                import.module(),
                import.name(),
                wanted.as_ref().ok_or(extern_kind(import.ty())),
                linker.types.get(&key),
            ) {
                return Err(Error::new(ErrorKind::Link, ENGINE_NAME, msg));
            }
        }
        check_callbacks(ENGINE_NAME, &self.exports(module), callbacks)?;
        Ok(WasmiPre {
            inner: Arc::new(PreInner {
                linker: linker.inner.clone(),
                module: module.clone(),
                callbacks: callbacks.into(),
            }),
        })
    }

    fn instantiate<D: Send + 'static>(
        &self,
        pre: &Self::InstancePre<D>,
        data: D,
    ) -> Result<Self::Instance<D>> {
        let inner = &pre.inner;
        WasmiInstance::new(self, &inner.linker, &inner.module, &inner.callbacks, data)
    }
}
