//! Instances and calls into the guest.

use crate::{StoreData, WasmtimeEngine, caller};
use polyhost_engine_core::{
    CallbackSig, Deadline, Error, ErrorKind, HostContext, HostTrap, Instance, Result, Value,
};
use std::sync::Arc;
use wasmtime::{Store, StoreLimitsBuilder, Trap, TypedFunc, Val, WasmBacktrace};

/// A live wasmtime instance with its store.
pub struct WasmtimeInstance<D: 'static> {
    store: Store<StoreData<D>>,
    instance: wasmtime::Instance,
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

/// A typed export handle; one variant per callback shape so calls go
/// through wasmtime's typed (unchecked-at-call) path.
#[derive(Clone)]
pub struct WasmtimeFunc {
    name: Arc<str>,
    typed: Typed,
}

#[derive(Clone)]
enum Typed {
    V0(TypedFunc<(), ()>),
    I0(TypedFunc<(), i32>),
    V1(TypedFunc<i32, ()>),
    I1(TypedFunc<i32, i32>),
    V2(TypedFunc<(i32, i32), ()>),
    I2(TypedFunc<(i32, i32), i32>),
    V3(TypedFunc<(i32, i32, i32), ()>),
    I3(TypedFunc<(i32, i32, i32), i32>),
    V4(TypedFunc<(i32, i32, i32, i32), ()>),
    I4(TypedFunc<(i32, i32, i32, i32), i32>),
    V5(TypedFunc<(i32, i32, i32, i32, i32), ()>),
    I5(TypedFunc<(i32, i32, i32, i32, i32), i32>),
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
        let memory = instance.get_memory(&mut store, "memory");
        store.data_mut().memory = memory;
        store.data_mut().call_timeout = serving.timeout;
        Ok(WasmtimeInstance {
            store,
            instance,
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
        let timeout = store.data().call_timeout;
        store.data_mut().deadline = timeout.map(Deadline::after);
    }
    if let Some(fuel) = fuel {
        store
            .set_fuel(fuel)
            .map_err(|e| Error::new(ErrorKind::Other, name, format!("{e:#}")))?;
    }
    Ok(())
}

macro_rules! typed {
    ($self:ident, $name:ident, $variant:ident, $p:ty, $r:ty) => {
        $self
            .instance
            .get_typed_func::<$p, $r>(&mut $self.store, $name)
            .map(Typed::$variant)
    };
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
        let actual = crate::func_type(&func.ty(&self.store));
        let expected = sig.func_type();
        if actual != expected {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                engine,
                format!("export `{name}` has type {actual}, expected {expected}"),
            ));
        }
        let typed = match (sig.params, sig.returns) {
            (0, false) => typed!(self, name, V0, (), ()),
            (0, true) => typed!(self, name, I0, (), i32),
            (1, false) => typed!(self, name, V1, i32, ()),
            (1, true) => typed!(self, name, I1, i32, i32),
            (2, false) => typed!(self, name, V2, (i32, i32), ()),
            (2, true) => typed!(self, name, I2, (i32, i32), i32),
            (3, false) => typed!(self, name, V3, (i32, i32, i32), ()),
            (3, true) => typed!(self, name, I3, (i32, i32, i32), i32),
            (4, false) => typed!(self, name, V4, (i32, i32, i32, i32), ()),
            (4, true) => typed!(self, name, I4, (i32, i32, i32, i32), i32),
            (5, false) => typed!(self, name, V5, (i32, i32, i32, i32, i32), ()),
            (5, true) => typed!(self, name, I5, (i32, i32, i32, i32, i32), i32),
            _ => {
                return Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    engine,
                    format!(
                        "callbacks take at most {} parameters",
                        CallbackSig::MAX_PARAMS
                    ),
                ));
            }
        }
        .map_err(|e| Error::new(ErrorKind::SignatureMismatch, engine, format!("{e:#}")))?;
        Ok(Some(WasmtimeFunc {
            name: name.into(),
            typed,
        }))
    }

    fn call(&mut self, func: &WasmtimeFunc, args: &[i32]) -> Result<Option<i32>> {
        let engine = self.store.data().engine_name;
        arm(
            &mut self.store,
            self.deadline_ticks,
            self.fuel_per_call,
            engine,
        )?;
        let s = &mut self.store;
        let result = match (&func.typed, args) {
            (Typed::V0(f), []) => f.call(s, ()).map(|()| None),
            (Typed::I0(f), []) => f.call(s, ()).map(Some),
            (Typed::V1(f), &[a]) => f.call(s, a).map(|()| None),
            (Typed::I1(f), &[a]) => f.call(s, a).map(Some),
            (Typed::V2(f), &[a, b]) => f.call(s, (a, b)).map(|()| None),
            (Typed::I2(f), &[a, b]) => f.call(s, (a, b)).map(Some),
            (Typed::V3(f), &[a, b, c]) => f.call(s, (a, b, c)).map(|()| None),
            (Typed::I3(f), &[a, b, c]) => f.call(s, (a, b, c)).map(Some),
            (Typed::V4(f), &[a, b, c, d]) => f.call(s, (a, b, c, d)).map(|()| None),
            (Typed::I4(f), &[a, b, c, d]) => f.call(s, (a, b, c, d)).map(Some),
            (Typed::V5(f), &[a, b, c, d, e]) => f.call(s, (a, b, c, d, e)).map(|()| None),
            (Typed::I5(f), &[a, b, c, d, e]) => f.call(s, (a, b, c, d, e)).map(Some),
            _ => {
                return Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    engine,
                    format!("`{}` called with {} arguments", func.name, args.len()),
                ));
            }
        };
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
        let f = match self.instance.get_func(&mut self.store, name) {
            Some(f) => f,
            None => {
                return Err(Error::new(
                    ErrorKind::MissingExport,
                    engine,
                    format!("no allocator export named `{name}`"),
                ));
            }
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
        self.store.data_mut().allocator = Some(Arc::new(typed));
        Ok(())
    }
}
