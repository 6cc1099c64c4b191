//! Fuel: wasmer-middlewares' metering, usable by an engine that compiles
//! many modules.

use polyhost_engine_core::{Error, ErrorKind, Result};
use std::sync::{Arc, Mutex};
use wasmer::sys::{FunctionMiddleware, MiddlewareError, ModuleMiddleware};
use wasmer::wasmparser::Operator;
use wasmer::{AsStoreMut, Global, LocalFunctionIndex, ModuleInfo, Value};
use wasmer_middlewares::Metering;

/// The prefix of the names under which `Metering` exports its globals.
pub(crate) const EXPORT_PREFIX: &str = "wasmer_metering_";

/// Every Wasm operator costs one point, like wasmtime's and wasmi's fuel.
fn cost(_: &Operator) -> u64 {
    1
}

type CostFn = fn(&Operator) -> u64;

/// Applies a fresh [`Metering`] to each module.
///
/// `Metering` remembers the indexes of the globals it adds to the module it
/// was first applied to and panics when reused for another module, while a
/// compiler configuration (and so an engine) holds one middleware for every
/// module it compiles. This wrapper creates a new `Metering` in the module
/// pass and hands its function passes out until the next module. That is only
/// sound if modules are compiled one at a time, which the engine guarantees
/// by holding its compile lock whenever metering is on.
#[derive(Debug)]
pub(crate) struct PerModuleMetering {
    initial_limit: u64,
    current: Mutex<Option<Arc<Metering<CostFn>>>>,
}

impl PerModuleMetering {
    /// `initial_limit` is the budget of the start section, which runs before
    /// the host can set one.
    pub(crate) fn new(initial_limit: u64) -> Self {
        PerModuleMetering {
            initial_limit,
            current: Mutex::new(None),
        }
    }
}

impl ModuleMiddleware for PerModuleMetering {
    fn generate_function_middleware<'a>(
        &self,
        index: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .as_ref()
            .expect("wasmer runs the module pass before any function pass")
            .generate_function_middleware(index)
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        let metering = Arc::new(Metering::new(self.initial_limit, cost as CostFn));
        metering.transform_module_info(info)?;
        *self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(metering);
        Ok(())
    }
}

/// The two globals `Metering` adds to (and exports from) every module.
#[derive(Clone)]
pub(crate) struct FuelGlobals {
    remaining: Global,
    exhausted: Global,
}

impl FuelGlobals {
    /// Finds the metering globals of an instance.
    pub(crate) fn of(instance: &wasmer::Instance, engine: &'static str) -> Result<Self> {
        let global = |name: &str| {
            instance.exports.get_global(name).cloned().map_err(|e| {
                Error::new(
                    ErrorKind::Instantiate,
                    engine,
                    format!("metered module lacks `{name}`: {e}"),
                )
            })
        };
        Ok(FuelGlobals {
            remaining: global("wasmer_metering_remaining_points")?,
            exhausted: global("wasmer_metering_points_exhausted")?,
        })
    }

    /// Gives the guest `fuel` points and clears the exhausted flag.
    pub(crate) fn refill(
        &self,
        store: &mut impl AsStoreMut,
        fuel: u64,
        engine: &'static str,
    ) -> Result<()> {
        // The global is an i64 holding a u64 point count.
        self.remaining
            .set(store, Value::I64(fuel as i64))
            .and_then(|()| self.exhausted.set(store, Value::I32(0)))
            .map_err(|e| Error::new(ErrorKind::Other, engine, e.message()))
    }

    /// Whether the guest ran out of points (it then traps with `unreachable`).
    pub(crate) fn is_exhausted(&self, store: &mut impl AsStoreMut) -> bool {
        matches!(self.exhausted.get(store), Value::I32(flag) if flag != 0)
    }
}
