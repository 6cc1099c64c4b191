//! Instances and calls into the guest.

use crate::deadline::CallSlot;
use crate::metering::FuelGlobals;
use crate::{MakeFunc, PreCallback, StoreData, WasmerEngine, caller};
use polyhost_engine_core::{
    CallbackSig, Deadline, Engine, Error, ErrorKind, HostContext, HostTrap, Instance, Result, Value,
};
use std::fmt::Write as _;
use std::sync::Arc;
use wasmer::{Extern, FunctionEnv, InstantiationError, RuntimeError, Store, TypedFunction};

/// A live wasmer instance with its store.
pub struct WasmerInstance<D: 'static> {
    store: Store,
    env: FunctionEnv<StoreData<D>>,
    instance: wasmer::Instance,
    /// The callbacks listed at prelink.
    callbacks: Arc<[PreCallback]>,
    /// The metering globals and the points of each top-level call (the
    /// fuel budget, or unlimited when only a deadline meters).
    fuel: Option<(FuelGlobals, u64)>,
    /// The time limit of the next top-level call: the serving or the
    /// start-up one, as [`Instance::set_starting`] last chose.
    timeout: Option<std::time::Duration>,
    /// [`EngineConfig::call_timeout`](polyhost_engine_core::EngineConfig).
    serving_timeout: Option<std::time::Duration>,
    /// [`EngineConfig::startup_call_timeout`](polyhost_engine_core::EngineConfig).
    startup_timeout: Option<std::time::Duration>,
    engine_name: &'static str,
}

/// What stops a guest on this instance, kept in the store data so that
/// nested calls (the allocator from inside a host function) see it too.
#[derive(Clone, Default)]
pub(crate) struct Limits {
    /// The metering globals, when the module is metered.
    pub(crate) fuel: Option<FuelGlobals>,
    /// What the deadline watchdog sees of this instance.
    pub(crate) slot: Option<Arc<CallSlot>>,
    /// The running top-level call's deadline.
    pub(crate) deadline: Option<Deadline>,
}

impl Limits {
    /// The error to report when the host stopped the guest, which then
    /// traps with an ordinary `unreachable`: the watchdog's deadline, or
    /// fuel.
    pub(crate) fn stopped(
        &self,
        store: &mut impl wasmer::AsStoreMut,
        engine: &'static str,
    ) -> Option<Error> {
        if let (Some(slot), Some(deadline)) = (&self.slot, self.deadline)
            && slot.fired()
        {
            return Some(deadline.error(engine));
        }
        self.fuel
            .as_ref()
            .is_some_and(|f| f.is_exhausted(store))
            .then(|| Error::new(ErrorKind::Interrupted, engine, "all fuel consumed"))
    }
}

/// Ends a top-level call's deadline when the call returns (or unwinds).
struct CallGuard(Option<Arc<CallSlot>>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        if let Some(slot) = &self.0 {
            slot.end();
        }
    }
}

// SAFETY: wasmer's `Store` lost `Send` in 7.0 only because the type of its
// optional "on called" handler dropped a `Send` bound (wasmerio/wasmer#7001);
// this backend never installs such a handler. Everything else the store
// owns (instances, memories, tables, host-function environments) is heap
// data reached through the store's own pointers, with no affinity to the
// thread that created it: wasmer's per-thread store context is pushed when a
// call into the guest starts and popped when it returns. Host closures and
// the host data `D` are `Send` by the `HostLinker` and `Engine` bounds. So
// moving a whole instance to another thread between calls is sound, as it
// was with wasmer 6; `&mut self` on every call rules out concurrent use.
unsafe impl<D: Send + 'static> Send for WasmerInstance<D> {}

/// A typed export handle; one variant per callback shape so calls go
/// through wasmer's typed path.
#[derive(Clone)]
pub struct WasmerFunc {
    name: Arc<str>,
    sig: CallbackSig,
    typed: Typed,
}

#[derive(Clone)]
enum Typed {
    V0(TypedFunction<(), ()>),
    I0(TypedFunction<(), i32>),
    V1(TypedFunction<i32, ()>),
    I1(TypedFunction<i32, i32>),
    V2(TypedFunction<(i32, i32), ()>),
    I2(TypedFunction<(i32, i32), i32>),
    V3(TypedFunction<(i32, i32, i32), ()>),
    I3(TypedFunction<(i32, i32, i32), i32>),
    V4(TypedFunction<(i32, i32, i32, i32), ()>),
    I4(TypedFunction<(i32, i32, i32, i32), i32>),
    V5(TypedFunction<(i32, i32, i32, i32, i32), ()>),
    I5(TypedFunction<(i32, i32, i32, i32, i32), i32>),
}

/// Turns a wasmer error from guest execution into a Polyhost error.
///
/// `stopped` is [`Limits::stopped`]: metering stops the guest with an
/// ordinary `unreachable` trap, so only the host's own records tell the
/// cases apart.
pub(crate) fn convert_error(
    engine: &'static str,
    e: RuntimeError,
    callback: &str,
    stopped: Option<Error>,
) -> Error {
    // A host function's trap comes first: it says what the host refused
    // (its caller reports a deadline inside it as such).
    let (kind, message) = if let Some(trap) = e.downcast_ref::<HostTrap>() {
        (ErrorKind::Trap, trap.0.clone())
    } else if let Some(stop) = stopped {
        (stop.kind(), stop.message().to_string())
    } else {
        (ErrorKind::Trap, e.message())
    };
    let mut backtrace = String::new();
    for (i, frame) in e.trace().iter().enumerate() {
        let _ = write!(backtrace, "{i:>4}: {}!", frame.module_name());
        let _ = match frame.function_name() {
            Some(name) => write!(backtrace, "{name}"),
            None => write!(backtrace, "<wasm function {}>", frame.func_index()),
        };
        let _ = writeln!(backtrace, " @ {:#x}", frame.module_offset());
    }
    Error::new(kind, engine, message)
        .with_callback(callback)
        .with_backtrace(backtrace)
}

impl<D: Send + 'static> WasmerInstance<D> {
    pub(crate) fn new(
        engine: &WasmerEngine,
        module: &wasmer::Module,
        imports: &[Arc<MakeFunc<D>>],
        callbacks: &Arc<[PreCallback]>,
        data: D,
    ) -> Result<Self> {
        let name = engine.name();
        let mut store = Store::new(engine.inner.engine.clone());
        let env = FunctionEnv::new(
            &mut store,
            StoreData {
                user: data,
                memory: None,
                allocator: None,
                limits: Limits::default(),
                engine_name: name,
            },
        );
        // Only the functions this module imports, in its import order.
        let externs: Vec<Extern> = imports
            .iter()
            .map(|make| Extern::Function(make(&mut store, &env)))
            .collect();
        let instance =
            wasmer::Instance::new_by_index(&mut store, module, &externs).map_err(|e| match e {
                // The start section's budget is the one compiled into the
                // metering globals; its exhaustion reads as a trap here.
                InstantiationError::Start(e) => convert_error(name, e, "start section", None),
                other => Error::new(ErrorKind::Instantiate, name, other.to_string()),
            })?;
        let config = &engine.inner.config;
        let fuel = match engine.inner.metered() {
            true => Some((
                FuelGlobals::of(&instance, name)?,
                config.fuel_per_call.unwrap_or(u64::MAX),
            )),
            false => None,
        };
        let slot = match &engine.inner.watchdog {
            Some(watchdog) => {
                let address =
                    crate::deadline::flag_address(&instance, &mut store).ok_or_else(|| {
                        Error::new(
                            ErrorKind::Instantiate,
                            name,
                            "the module lacks the deadline flag the engine compiles in",
                        )
                    })?;
                // SAFETY: the address is inside this instance, which the
                // store keeps alive as long as the instance (and the slot
                // only writes during a call on it).
                let slot = unsafe { CallSlot::new(address) };
                watchdog.watch(&slot);
                Some(slot)
            }
            None => None,
        };
        let memory = instance.exports.get_memory("memory").ok().cloned();
        let data = env.as_mut(&mut store);
        data.memory = memory;
        data.limits = Limits {
            fuel: fuel.as_ref().map(|(globals, _)| globals.clone()),
            slot,
            deadline: None,
        };
        let mut created = WasmerInstance {
            store,
            env,
            instance,
            callbacks: Arc::clone(callbacks),
            fuel,
            timeout: config.startup_call_timeout(),
            serving_timeout: config.call_timeout,
            startup_timeout: config.startup_call_timeout(),
            engine_name: name,
        };
        created.run_deferred_start()?;
        created.timeout = config.call_timeout;
        Ok(created)
    }

    /// Runs the start function the engine moved out of the start section
    /// (see `start.rs`), under the start-up limit.
    fn run_deferred_start(&mut self) -> Result<()> {
        let Some(start) = self.function(crate::start::START_EXPORT).cloned() else {
            return Ok(());
        };
        let _call = self.arm()?;
        start
            .call(&mut self.store, &[])
            .map(|_| ())
            .map_err(|e| self.convert(e, "start section"))
    }

    /// The wasmer store, for embedders who need wasmer-specific access.
    pub fn store(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Gives the next top-level call its points and deadline; the guard
    /// ends the deadline when the call is over.
    fn arm(&mut self) -> Result<CallGuard> {
        if let Some((globals, budget)) = &self.fuel {
            globals.refill(&mut self.store, *budget, self.engine_name)?;
        }
        let deadline = self.timeout.map(Deadline::after);
        let limits = &mut self.env.as_mut(&mut self.store).limits;
        limits.deadline = deadline;
        let slot = limits.slot.clone();
        if let (Some(slot), Some(deadline)) = (&slot, deadline) {
            slot.begin(deadline);
        }
        Ok(CallGuard(slot))
    }

    fn convert(&mut self, e: RuntimeError, callback: &str) -> Error {
        let limits = self.env.as_ref(&self.store).limits.clone();
        let stopped = limits.stopped(&mut self.store, self.engine_name);
        convert_error(self.engine_name, e, callback, stopped)
    }

    fn function(&self, name: &str) -> Option<&wasmer::Function> {
        self.instance.exports.get_function(name).ok()
    }
}

macro_rules! typed {
    ($store:ident, $f:ident, $variant:ident, $p:ty, $r:ty) => {
        $f.typed::<$p, $r>($store).map(Typed::$variant)
    };
}

/// `f` as the typed handle of signature `sig`: wasmer compares the types
/// once, here. `None` when the types differ or `sig` has more parameters
/// than a callback may.
fn typed(store: &Store, f: &wasmer::Function, sig: CallbackSig) -> Option<Typed> {
    polyhost_engine_core::match_callback_sig!(sig, typed!(store, f))?.ok()
}

impl<D: Send + 'static> HostContext for WasmerInstance<D> {
    type Data = D;

    fn engine_name(&self) -> &'static str {
        self.engine_name
    }

    fn data(&self) -> &D {
        &self.env.as_ref(&self.store).user
    }

    fn data_mut(&mut self) -> &mut D {
        &mut self.env.as_mut(&mut self.store).user
    }

    fn memory_size(&self) -> usize {
        let data = self.env.as_ref(&self.store);
        caller::memory_size(&self.store, data.memory.as_ref())
    }

    fn read(&self, ptr: u32, buf: &mut [u8]) -> Result<()> {
        let data = self.env.as_ref(&self.store);
        caller::read(
            &self.store,
            data.memory.as_ref(),
            self.engine_name,
            ptr,
            buf,
        )
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        let data = self.env.as_ref(&self.store);
        caller::write(
            &self.store,
            data.memory.as_ref(),
            self.engine_name,
            ptr,
            bytes,
        )
    }

    fn allocate(&mut self, size: u32) -> Result<u32> {
        let _call = self.arm()?;
        let data = self.env.as_ref(&self.store);
        let (allocator, limits) = (data.allocator.clone(), data.limits.clone());
        caller::allocate(&mut self.store, allocator, &limits, self.engine_name, size)
    }

    fn call_deadline(&self) -> Option<Deadline> {
        self.env.as_ref(&self.store).limits.deadline
    }
}

impl<D: Send + 'static> Instance<D> for WasmerInstance<D> {
    type Func = WasmerFunc;

    fn func(&mut self, name: &str, sig: CallbackSig) -> Result<Option<WasmerFunc>> {
        let engine = self.engine_name;
        let Some(export) = self.instance.exports.get_extern(name) else {
            return Ok(None);
        };
        let Extern::Function(func) = export else {
            return Err(Error::callback_mismatch(
                engine,
                name,
                "not a function",
                sig,
            ));
        };
        let Some(typed) = typed(&self.store, func, sig) else {
            let actual = crate::func_type(&func.ty(&self.store)).to_string();
            return Err(Error::callback_mismatch(engine, name, &actual, sig));
        };
        Ok(Some(WasmerFunc {
            name: name.into(),
            sig,
            typed,
        }))
    }

    fn callback(&mut self, index: usize) -> Result<WasmerFunc> {
        let engine = self.engine_name;
        let Some(cb) = self.callbacks.get(index) else {
            return Err(Error::unlisted_callback(
                engine,
                index,
                self.callbacks.len(),
            ));
        };
        let name = &*cb.export.name;
        // The instance's exports are the module's, in the module's order;
        // the name check keeps a different order from picking another
        // function, by falling back to the lookup by name.
        let func = match self.instance.exports.iter().nth(cb.position) {
            Some((export, Extern::Function(func))) if export.as_str() == name => Some(func),
            _ => self.function(name),
        };
        let Some(func) = func else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                engine,
                format!("export `{name}` is not in this instance"),
            ));
        };
        // Prelink checked the type; this is wasmer's own (only) check.
        let Some(typed) = typed(&self.store, func, cb.export.sig) else {
            let actual = crate::func_type(&func.ty(&self.store)).to_string();
            return Err(Error::callback_mismatch(
                engine,
                name,
                &actual,
                cb.export.sig,
            ));
        };
        Ok(WasmerFunc {
            name: Arc::clone(&cb.export.name),
            sig: cb.export.sig,
            typed,
        })
    }

    fn call(&mut self, func: &WasmerFunc, args: &[i32]) -> Result<Option<i32>> {
        let _call = self.arm()?;
        let s = &mut self.store;
        let result = match (&func.typed, args) {
            (Typed::V0(f), []) => f.call(s).map(|()| None),
            (Typed::I0(f), []) => f.call(s).map(Some),
            (Typed::V1(f), &[a]) => f.call(s, a).map(|()| None),
            (Typed::I1(f), &[a]) => f.call(s, a).map(Some),
            (Typed::V2(f), &[a, b]) => f.call(s, a, b).map(|()| None),
            (Typed::I2(f), &[a, b]) => f.call(s, a, b).map(Some),
            (Typed::V3(f), &[a, b, c]) => f.call(s, a, b, c).map(|()| None),
            (Typed::I3(f), &[a, b, c]) => f.call(s, a, b, c).map(Some),
            (Typed::V4(f), &[a, b, c, d]) => f.call(s, a, b, c, d).map(|()| None),
            (Typed::I4(f), &[a, b, c, d]) => f.call(s, a, b, c, d).map(Some),
            (Typed::V5(f), &[a, b, c, d, e]) => f.call(s, a, b, c, d, e).map(|()| None),
            (Typed::I5(f), &[a, b, c, d, e]) => f.call(s, a, b, c, d, e).map(Some),
            _ => {
                return Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    self.engine_name,
                    format!("`{}` called with {} arguments", func.name, args.len()),
                ));
            }
        };
        result.map_err(|e| self.convert(e, &func.name))
    }

    fn call_dynamic(&mut self, name: &str, args: &[Value]) -> Result<Vec<Value>> {
        let engine = self.engine_name;
        let Some(func) = self.function(name).cloned() else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                engine,
                format!("no function export named `{name}`"),
            ));
        };
        let ty = func.ty(&self.store);
        let params: Vec<wasmer::Value> = args
            .iter()
            .map(|a| match a {
                Value::I32(v) => wasmer::Value::I32(*v),
                Value::I64(v) => wasmer::Value::I64(*v),
            })
            .collect();
        // Checked here so a wrong argument list is a signature error, not a
        // trap.
        let given: Vec<_> = params.iter().map(wasmer::Value::ty).collect();
        if given != ty.params() {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                engine,
                format!(
                    "`{name}` has type {}, called with {} arguments",
                    crate::func_type(&ty),
                    args.len()
                ),
            )
            .with_callback(name));
        }
        let _call = self.arm()?;
        let results = func
            .call(&mut self.store, &params)
            .map_err(|e| self.convert(e, name))?;
        results
            .iter()
            .map(|v| match v {
                wasmer::Value::I32(v) => Ok(Value::I32(*v)),
                wasmer::Value::I64(v) => Ok(Value::I64(*v)),
                other => Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    engine,
                    format!("`{name}` returned unsupported value {other:?}"),
                )),
            })
            .collect()
    }

    fn set_starting(&mut self, starting: bool) {
        self.timeout = if starting {
            self.startup_timeout
        } else {
            self.serving_timeout
        };
    }

    fn set_allocator(&mut self, name: &str) -> Result<()> {
        let engine = self.engine_name;
        let Some(f) = self.function(name) else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                engine,
                format!("no allocator export named `{name}`"),
            ));
        };
        let typed = f.typed::<i32, i32>(&self.store).map_err(|_| {
            Error::new(
                ErrorKind::SignatureMismatch,
                engine,
                format!(
                    "allocator `{name}` has type {}, expected (i32) -> (i32)",
                    crate::func_type(&f.ty(&self.store))
                ),
            )
        })?;
        self.env.as_mut(&mut self.store).allocator = Some(typed);
        Ok(())
    }

    fn set_allocator_func(&mut self, func: &WasmerFunc) -> Result<()> {
        let Typed::I1(typed) = &func.typed else {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                self.engine_name,
                format!(
                    "allocator `{}` has type {}, expected (i32) -> (i32)",
                    func.name,
                    func.sig.func_type()
                ),
            ));
        };
        self.env.as_mut(&mut self.store).allocator = Some(typed.clone());
        Ok(())
    }
}
