//! Instances and calls into the guest.

use crate::meter::{self, CallError, Meter, convert_error};
use crate::{ENGINE_NAME, HostTrapError, StoreData, WasmiEngine, caller};
use polyhost_engine_core::{
    CallbackExport, CallbackSig, Error, ErrorKind, HostContext, Instance, Result, Value,
};
use std::sync::Arc;
use wasmi::{Store, StoreLimitsBuilder, TypedFunc, Val};

/// A live wasmi instance with its store.
pub struct WasmiInstance<D: 'static> {
    store: Store<StoreData<D>>,
    instance: wasmi::Instance,
    /// The callbacks listed at prelink.
    callbacks: Arc<[CallbackExport]>,
}

/// A typed export handle; one variant per callback shape so calls go
/// through wasmi's typed path.
#[derive(Clone)]
pub struct WasmiFunc {
    name: Arc<str>,
    sig: CallbackSig,
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

impl<D: Send + 'static> WasmiInstance<D> {
    pub(crate) fn new(
        engine: &WasmiEngine,
        linker: &wasmi::Linker<StoreData<D>>,
        module: &wasmi::Module,
        callbacks: &Arc<[CallbackExport]>,
        data: D,
    ) -> Result<Self> {
        let cfg = &engine.inner.config;
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
                meter: Meter::new(cfg),
            },
        );
        store.limiter(|d| &mut d.limits);
        // The start section runs during instantiation and gets one budget.
        meter::arm(&mut store, true)?;
        let instance = linker
            .instantiate_and_start(&mut store, module)
            .map_err(|e| {
                if e.as_trap_code().is_some() || e.downcast_ref::<HostTrapError>().is_some() {
                    convert_error(&e, "start section")
                } else {
                    Error::new(ErrorKind::Instantiate, ENGINE_NAME, e.to_string())
                }
            })?;
        let memory = instance.get_memory(&store, "memory");
        store.data_mut().memory = memory;
        store.data_mut().meter.set_starting(false);
        Ok(WasmiInstance {
            store,
            instance,
            callbacks: Arc::clone(callbacks),
        })
    }

    /// The wasmi store, for embedders who need wasmi-specific access.
    pub fn store(&mut self) -> &mut Store<StoreData<D>> {
        &mut self.store
    }
}

macro_rules! typed {
    ($store:ident, $f:ident, $variant:ident, $p:ty, $r:ty) => {
        $f.typed::<$p, $r>($store).map(Typed::$variant)
    };
}

/// `f` as the typed handle of signature `sig`: wasmi compares the types
/// once, here. `None` when the types differ or `sig` has more parameters
/// than a callback may.
fn typed<D>(store: &Store<StoreData<D>>, f: wasmi::Func, sig: CallbackSig) -> Option<Typed> {
    polyhost_engine_core::match_callback_sig!(sig, typed!(store, f))?.ok()
}

impl<D: Send + 'static> HostContext for WasmiInstance<D> {
    type Data = D;

    fn engine_name(&self) -> &'static str {
        ENGINE_NAME
    }

    fn data(&self) -> &D {
        &self.store.data().user
    }

    fn data_mut(&mut self) -> &mut D {
        &mut self.store.data_mut().user
    }

    fn memory_size(&self) -> usize {
        caller::memory_size(&self.store, self.store.data().memory)
    }

    fn read(&self, ptr: u32, buf: &mut [u8]) -> Result<()> {
        caller::read(&self.store, self.store.data().memory, ptr, buf)
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<()> {
        let memory = self.store.data().memory;
        caller::write(&mut self.store, memory, ptr, bytes)
    }

    fn allocate(&mut self, size: u32) -> Result<u32> {
        meter::arm(&mut self.store, false)?;
        caller::allocate(&mut self.store, size)
    }

    fn call_deadline(&self) -> Option<polyhost_engine_core::Deadline> {
        self.store.data().meter.deadline
    }
}

impl<D: Send + 'static> Instance<D> for WasmiInstance<D> {
    type Func = WasmiFunc;

    fn func(&mut self, name: &str, sig: CallbackSig) -> Result<Option<WasmiFunc>> {
        let Some(func) = self.instance.get_func(&self.store, name) else {
            return Ok(None);
        };
        let Some(typed) = typed(&self.store, func, sig) else {
            let actual = crate::func_type(&func.ty(&self.store)).to_string();
            return Err(Error::callback_mismatch(ENGINE_NAME, name, &actual, sig));
        };
        Ok(Some(WasmiFunc {
            name: name.into(),
            sig,
            typed,
        }))
    }

    fn callback(&mut self, index: usize) -> Result<WasmiFunc> {
        let Some(cb) = self.callbacks.get(index) else {
            return Err(Error::unlisted_callback(
                ENGINE_NAME,
                index,
                self.callbacks.len(),
            ));
        };
        let Some(func) = self.instance.get_func(&self.store, &cb.name) else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                ENGINE_NAME,
                format!("export `{}` is not in this instance", cb.name),
            ));
        };
        // Prelink checked the type; this is wasmi's own (only) check.
        let Some(typed) = typed(&self.store, func, cb.sig) else {
            let actual = crate::func_type(&func.ty(&self.store)).to_string();
            return Err(Error::callback_mismatch(
                ENGINE_NAME,
                &cb.name,
                &actual,
                cb.sig,
            ));
        };
        Ok(WasmiFunc {
            name: Arc::clone(&cb.name),
            sig: cb.sig,
            typed,
        })
    }

    fn call(&mut self, func: &WasmiFunc, args: &[i32]) -> Result<Option<i32>> {
        meter::arm(&mut self.store, false)?;
        let s = &mut self.store;
        let n = &*func.name;
        match (&func.typed, args) {
            (Typed::V0(f), []) => meter::call_typed(s, f, (), n).map(|()| None),
            (Typed::I0(f), []) => meter::call_typed(s, f, (), n).map(Some),
            (Typed::V1(f), &[a]) => meter::call_typed(s, f, a, n).map(|()| None),
            (Typed::I1(f), &[a]) => meter::call_typed(s, f, a, n).map(Some),
            (Typed::V2(f), &[a, b]) => meter::call_typed(s, f, (a, b), n).map(|()| None),
            (Typed::I2(f), &[a, b]) => meter::call_typed(s, f, (a, b), n).map(Some),
            (Typed::V3(f), &[a, b, c]) => meter::call_typed(s, f, (a, b, c), n).map(|()| None),
            (Typed::I3(f), &[a, b, c]) => meter::call_typed(s, f, (a, b, c), n).map(Some),
            (Typed::V4(f), &[a, b, c, d]) => {
                meter::call_typed(s, f, (a, b, c, d), n).map(|()| None)
            }
            (Typed::I4(f), &[a, b, c, d]) => meter::call_typed(s, f, (a, b, c, d), n).map(Some),
            (Typed::V5(f), &[a, b, c, d, e]) => {
                meter::call_typed(s, f, (a, b, c, d, e), n).map(|()| None)
            }
            (Typed::I5(f), &[a, b, c, d, e]) => {
                meter::call_typed(s, f, (a, b, c, d, e), n).map(Some)
            }
            _ => Err(Error::new(
                ErrorKind::SignatureMismatch,
                ENGINE_NAME,
                format!("`{}` called with {} arguments", func.name, args.len()),
            )),
        }
    }

    fn call_dynamic(&mut self, name: &str, args: &[Value]) -> Result<Vec<Value>> {
        let Some(func) = self.instance.get_func(&self.store, name) else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                ENGINE_NAME,
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
        let mut results: Vec<Val> = ty
            .results()
            .iter()
            .map(|t| Val::default_for_ty(*t))
            .collect();
        meter::arm(&mut self.store, false)?;
        meter::call_dynamic(&mut self.store, &func, &params, &mut results, name).map_err(|e| {
            match e {
                CallError::Polyhost(e) => e,
                CallError::Wasmi(e)
                    if e.as_trap_code().is_none()
                        && e.downcast_ref::<HostTrapError>().is_none() =>
                {
                    // wasmi checks argument count and types before running.
                    Error::new(ErrorKind::SignatureMismatch, ENGINE_NAME, e.to_string())
                        .with_callback(name)
                }
                CallError::Wasmi(e) => convert_error(&e, name),
            }
        })?;
        results
            .into_iter()
            .map(|v| match v {
                Val::I32(v) => Ok(Value::I32(v)),
                Val::I64(v) => Ok(Value::I64(v)),
                other => Err(Error::new(
                    ErrorKind::SignatureMismatch,
                    ENGINE_NAME,
                    format!("`{name}` returned unsupported value {other:?}"),
                )),
            })
            .collect()
    }

    fn set_starting(&mut self, starting: bool) {
        self.store.data_mut().meter.set_starting(starting);
    }

    fn set_allocator(&mut self, name: &str) -> Result<()> {
        let Some(f) = self.instance.get_func(&self.store, name) else {
            return Err(Error::new(
                ErrorKind::MissingExport,
                ENGINE_NAME,
                format!("no allocator export named `{name}`"),
            ));
        };
        let typed = f.typed::<i32, i32>(&self.store).map_err(|_| {
            Error::new(
                ErrorKind::SignatureMismatch,
                ENGINE_NAME,
                format!(
                    "allocator `{name}` has type {}, expected (i32) -> (i32)",
                    crate::func_type(&f.ty(&self.store))
                ),
            )
        })?;
        self.store.data_mut().allocator = Some(typed);
        Ok(())
    }

    fn set_allocator_func(&mut self, func: &WasmiFunc) -> Result<()> {
        let Typed::I1(typed) = &func.typed else {
            return Err(Error::new(
                ErrorKind::SignatureMismatch,
                ENGINE_NAME,
                format!(
                    "allocator `{}` has type {}, expected (i32) -> (i32)",
                    func.name,
                    func.sig.func_type()
                ),
            ));
        };
        self.store.data_mut().allocator = Some(*typed);
        Ok(())
    }
}
