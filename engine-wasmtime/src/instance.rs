//! Instances and calls into the guest.

use crate::{PreExports, StoreData, WasmtimeEngine, caller};
use polyhost_engine_core::{
    CallbackSig, Deadline, Error, ErrorKind, HostContext, HostTrap, Instance, Result, Value,
};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::{
    AsContext, AsContextMut, Store, StoreLimitsBuilder, Trap, Val, ValRaw, WasmBacktrace,
};

/// A live wasmtime instance with its store.
pub struct WasmtimeInstance<D: 'static> {
    store: Store<StoreData<D>>,
    instance: wasmtime::Instance,
    /// The exports resolved at prelink.
    exports: Arc<PreExports>,
    /// Epoch ticks the next top-level call may run for (serving or
    /// starting, as [`Instance::set_starting`] last chose).
    deadline_ticks: Option<u64>,
    fuel_per_call: Option<u64>,
    /// The limits of a serving and of a starting instance.
    serving: CallLimit,
    starting: CallLimit,
}

/// One call's time limit, as epoch ticks and as the duration errors name.
#[derive(Clone, Copy)]
struct CallLimit {
    ticks: Option<u64>,
    timeout: Option<std::time::Duration>,
}

/// A resolved export handle: the function, the signature it is known to
/// have, and its name for errors.
#[derive(Clone)]
pub struct WasmtimeFunc {
    name: Arc<str>,
    raw: RawFunc,
}

/// A function export together with the callback signature it is known to
/// have. Only [`RawFunc::checked`] (which compares the types) and
/// [`RawFunc::prelinked`] (for the callbacks of [`Instance::callback`],
/// whose types were compared at prelink) make one, so [`RawFunc::call`]
/// may pass arguments and results through wasmtime's raw, unchecked calling
/// convention.
///
/// Holding the bare `Func` rather than a `TypedFunc` is what keeps a new
/// instance cheap: a `TypedFunc` carries the function's `FuncType`, a rooted
/// entry of the engine's type registry that takes a lock and reference
/// counts to create and to drop, once per callback per instance. A call
/// costs the same either way: both end in the same array call into the
/// guest.
#[derive(Clone, Copy)]
pub(crate) struct RawFunc {
    func: wasmtime::Func,
    sig: CallbackSig,
}

impl RawFunc {
    /// `func` if its type is exactly `sig`'s.
    fn checked(store: impl AsContext, func: wasmtime::Func, sig: CallbackSig) -> Option<Self> {
        let ok = sig.params <= CallbackSig::MAX_PARAMS
            && crate::func_type(&func.ty(store)) == sig.func_type();
        ok.then_some(RawFunc { func, sig })
    }

    /// `func`, whose type the caller knows to be `sig`.
    ///
    /// # Safety
    /// `func`'s type must be exactly `sig.func_type()`, with `sig.params` at
    /// most [`CallbackSig::MAX_PARAMS`]: [`RawFunc::call`] relies on it.
    unsafe fn prelinked(func: wasmtime::Func, sig: CallbackSig) -> Self {
        RawFunc { func, sig }
    }

    /// Calls the function with `args` (missing ones are zero, extra ones
    /// ignored: callers check the count first) and returns its result if
    /// its signature has one.
    pub(crate) fn call(
        self,
        mut store: impl AsContextMut,
        args: &[i32],
    ) -> wasmtime::Result<Option<i32>> {
        let mut slots = [ValRaw::i32(0); CallbackSig::MAX_PARAMS as usize];
        for (slot, &arg) in slots.iter_mut().zip(args) {
            *slot = ValRaw::i32(arg);
        }
        let len = usize::from(self.sig.params).max(usize::from(self.sig.returns));
        let slots = &mut slots[..len];
        // SAFETY: `call_unchecked` needs the slots to hold every parameter
        // with its type and to have room for every result, and no reference
        // values or async context. Every `RawFunc` is of type `sig` exactly
        // (see the type's documentation): `sig.params` `i32` parameters, at
        // most `MAX_PARAMS` (`checked` checks it, `prelinked`'s callers
        // guarantee it), and at most one `i32` result. The slice has `max(params, results)` slots, each an
        // `i32`, and no reference types are involved. The store has no async
        // support (this crate never enables wasmtime's `async` feature). A
        // `Func` of another store makes wasmtime panic, not misbehave.
        unsafe {
            self.func
                .call_unchecked(store.as_context_mut(), std::ptr::from_mut(slots))?;
        }
        Ok(self.sig.returns.then(|| slots[0].get_i32()))
    }
}

/// Turns a wasmtime error from guest execution into a Polyhost error;
/// `deadline` is the running call's, so an epoch interrupt says which
/// deadline it enforced.
pub(crate) fn convert_error(
    engine: &'static str,
    e: wasmtime::Error,
    callback: &str,
    deadline: Option<Deadline>,
) -> Error {
    let backtrace = e.downcast_ref::<WasmBacktrace>().map(|bt| bt.to_string());
    let kind = if let Some(trap) = e.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt | Trap::OutOfFuel => ErrorKind::Interrupted,
            _ => ErrorKind::Trap,
        }
    } else if e.downcast_ref::<HostTrap>().is_some() {
        ErrorKind::Trap
    } else if e.downcast_ref::<Error>().is_some() {
        // A host function's own engine error, passed through.
        let inner = e.downcast::<Error>().expect("checked above");
        return inner;
    } else {
        ErrorKind::Trap
    };
    let message =
        if let (Some(Trap::Interrupt), Some(deadline)) = (e.downcast_ref::<Trap>(), deadline) {
            deadline.error(engine).message().to_string()
        } else if let Some(trap) = e.downcast_ref::<Trap>() {
            trap.to_string()
        } else if let Some(host) = e.downcast_ref::<HostTrap>() {
            host.to_string()
        } else {
            format!("{:#}", e.root_cause())
        };
    let mut err = Error::new(kind, engine, message).with_callback(callback);
    if let Some(bt) = backtrace {
        err = err.with_backtrace(bt);
    }
    err
}

impl<D: Send + 'static> WasmtimeInstance<D> {
    pub(crate) fn new(
        engine: &WasmtimeEngine,
        pre: &wasmtime::InstancePre<StoreData<D>>,
        exports: &Arc<PreExports>,
        data: D,
    ) -> Result<Self> {
        let cfg = &engine.inner.config;
        let name = engine.inner.variant.engine_name();
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(cfg.max_memory_bytes).unwrap_or(usize::MAX))
            .build();
        let mut store = Store::new(
            &engine.inner.engine,
            StoreData {
                user: data,
                memory: None,
                allocator: None,
                limits,
                engine_name: name,
                call_timeout: cfg.startup_call_timeout(),
                deadline: None,
                clock: engine.inner.clock.clone(),
            },
        );
        store.limiter(|d| &mut d.limits);
        let serving = CallLimit {
            ticks: engine.inner.deadline_ticks,
            timeout: cfg.call_timeout,
        };
        let starting = CallLimit {
            ticks: engine.inner.startup_ticks,
            timeout: cfg.startup_call_timeout(),
        };
        let fuel_per_call = cfg.fuel_per_call;
        // The start section runs under the start-up limit.
        arm(&mut store, starting.ticks, fuel_per_call, name)?;
        let instance = pre.instantiate(&mut store).map_err(|e| {
            // Only a trap in the start section is the guest's doing; anything
            // else (no free pooled slot, a resource limit) is instantiation.
            if e.downcast_ref::<Trap>().is_some() || e.downcast_ref::<HostTrap>().is_some() {
                convert_error(name, e, "start section", None)
            } else {
                Error::new(ErrorKind::Instantiate, name, format!("{e:#}"))
            }
        })?;
        let memory = exports
            .memory
            .as_ref()
            .and_then(|m| instance.get_module_export(&mut store, m))
            .and_then(wasmtime::Extern::into_memory);
        store.data_mut().memory = memory;
        store.data_mut().call_timeout = serving.timeout;
        Ok(WasmtimeInstance {
            store,
            instance,
            exports: Arc::clone(exports),
            deadline_ticks: serving.ticks,
            fuel_per_call,
            serving,
            starting,
        })
    }

    /// The wasmtime store, for embedders who need wasmtime-specific access.
    pub fn store(&mut self) -> &mut Store<StoreData<D>> {
        &mut self.store
    }
}

/// Gives the next top-level call its time and fuel budget.
fn arm<D: 'static>(
    store: &mut Store<StoreData<D>>,
    deadline_ticks: Option<u64>,
    fuel: Option<u64>,
    name: &'static str,
) -> Result<()> {
    if let Some(ticks) = deadline_ticks {
        store.set_epoch_deadline(ticks);
        let data = store.data_mut();
        data.deadline = data.call_timeout.map(|timeout| {
            let start = data.clock.as_ref().map_or_else(Instant::now, |c| c.now());
            Deadline::starting_at(start, timeout)
        });
    }
    if let Some(fuel) = fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| Error::new(ErrorKind::Other, name, format!("{e:#}")))?;
    }
    Ok(())
}

impl<D: Send + 'static> HostContext for WasmtimeInstance<D> {
    type Data = D;

    fn engine_name(&self) -> &'static str {
        self.store.data().engine_name
    }

    fn data(&self) -> &D {
        &self.store.data().user
    }

    fn data_mut(&mut self) -> &mut D {
        &mut self.store.data_mut().user
    }

    fn memory_size(&self) -> usize {
        self.store
            .data()
            .memory
            .map_or(0, |m| m.data_size(&self.store))
    }

    fn read(&self, ptr: u32, buf: &mut [u8]) -> Result<()> {
        caller::read(&self.store, self.store.data().memory, ptr, buf)
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        let memory = self.store.data().memory;
        caller::write(&mut self.store, memory, ptr, bytes)
    }

    fn allocate(&mut self, size: u32) -> Result<u32> {
        let engine = self.store.data().engine_name;
        arm(
            &mut self.store,
            self.deadline_ticks,
            self.fuel_per_call,
            engine,
        )?;
        caller::allocate(&mut self.store, size)
    }
}

impl<D: Send + 'static> Instance<D> for WasmtimeInstance<D> {
    type Func = WasmtimeFunc;

    fn func(&mut self, name: &str, sig: CallbackSig) -> Result<Option<WasmtimeFunc>> {
        let engine = self.store.data().engine_name;
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let Some(raw) = RawFunc::checked(&self.store, func, sig) else {
            let actual = crate::func_type(&func.ty(&self.store)).to_string();
            return Err(Error::callback_mismatch(engine, name, &actual, sig));
        };
        Ok(Some(WasmtimeFunc {
            name: name.into(),
            raw,
        }))
    }

    fn callback(&mut self, index: usize) -> Result<WasmtimeFunc> {
        let engine = self.store.data().engine_name;
        let callbacks = &self.exports.callbacks;
        let Some((cb, export)) = callbacks.get(index) else {
            return Err(Error::unlisted_callback(engine, index, callbacks.len()));
        };
        // `None` only for an instance of another module, which a
        // `WasmtimePre` never makes.
        let Some(func) = self
            .instance
            .get_module_export(&mut self.store, export)
            .and_then(wasmtime::Extern::into_func)
        else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                engine,
                format!("export `{}` is not in this instance", cb.name),
            ));
        };
        // SAFETY: `export` is the index of the export `cb.name` in the
        // module this instance was made from (wasmtime's `get_module_export`
        // checks the module and returns `None` for any other), and prelink
        // checked that export's type in that module against `cb.sig` with
        // `check_callbacks`, which also refuses more than `MAX_PARAMS`
        // parameters: `func` has type `cb.sig` exactly.
        let raw = unsafe { RawFunc::prelinked(func, cb.sig) };
        Ok(WasmtimeFunc {
            name: Arc::clone(&cb.name),
            raw,
        })
    }

    fn call(&mut self, func: &WasmtimeFunc, args: &[i32]) -> Result<Option<i32>> {
        let engine = self.store.data().engine_name;
        if args.len() != usize::from(func.raw.sig.params) {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                engine,
                format!("`{}` called with {} arguments", func.name, args.len()),
            ));
        }
        arm(
            &mut self.store,
            self.deadline_ticks,
            self.fuel_per_call,
            engine,
        )?;
        let result = func.raw.call(&mut self.store, args);
        let deadline = self.store.data().deadline;
        result.map_err(|e| convert_error(engine, e, &func.name, deadline))
    }

    fn call_dynamic(&mut self, name: &str, args: &[Value]) -> Result<Vec<Value>> {
        let engine = self.store.data().engine_name;
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                engine,
                format!("no function export named `{name}`"),
            ));
        };
        let ty = func.ty(&self.store);
        let params: Vec<Val> = args
            .iter()
            .map(|a| match a {
                Value::I32(v) => Val::I32(*v),
                Value::I64(v) => Val::I64(*v),
            })
            .collect();
        let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
        arm(
            &mut self.store,
            self.deadline_ticks,
            self.fuel_per_call,
            engine,
        )?;
        let result = func.call(&mut self.store, &params, &mut results);
        let deadline = self.store.data().deadline;
        result.map_err(|e| {
            if e.downcast_ref::<Trap>().is_none()
                && e.downcast_ref::<WasmBacktrace>().is_none()
                && e.downcast_ref::<HostTrap>().is_none()
            {
                Error::new(ErrorKind::SignatureMismatch, engine, format!("{e:#}"))
                    .with_callback(name)
            } else {
                convert_error(engine, e, name, deadline)
            }
        })?;
        results
            .into_iter()
            .map(|v| match v {
                Val::I32(v) => Ok(Value::I32(v)),
                Val::I64(v) => Ok(Value::I64(v)),
                other => Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    engine,
                    format!("`{name}` returned unsupported value {other:?}"),
                )),
            })
            .collect()
    }

    fn set_starting(&mut self, starting: bool) {
        let limit = if starting {
            self.starting
        } else {
            self.serving
        };
        self.deadline_ticks = limit.ticks;
        self.store.data_mut().call_timeout = limit.timeout;
    }

    fn set_allocator(&mut self, name: &str) -> Result<()> {
        let engine = self.store.data().engine_name;
        let Some(f) = self.instance.get_func(&mut self.store, name) else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                engine,
                format!("no allocator export named `{name}`"),
            ));
        };
        let Some(raw) = RawFunc::checked(&self.store, f, ALLOCATOR) else {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                engine,
                format!(
                    "allocator `{name}` has type {}, expected (i32) -> (i32)",
                    crate::func_type(&f.ty(&self.store))
                ),
            ));
        };
        self.store.data_mut().allocator = Some(raw);
        Ok(())
    }

    fn set_allocator_func(&mut self, func: &WasmtimeFunc) -> Result<()> {
        if func.raw.sig != ALLOCATOR {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                self.store.data().engine_name,
                format!(
                    "allocator `{}` has type {}, expected (i32) -> (i32)",
                    func.name,
                    func.raw.sig.func_type()
                ),
            ));
        }
        self.store.data_mut().allocator = Some(func.raw);
        Ok(())
    }
}

/// The signature of the guest allocator.
const ALLOCATOR: CallbackSig = CallbackSig::i32(1);
