//! Call deadlines and fuel on wasmi: fuel in slices, the clock between them.
//!
//! wasmi has no epoch or asynchronous interrupt, but a call made with
//! `call_resumable` on a fuel-metered store pauses when its fuel runs out
//! and can be resumed. So every call into the guest (callbacks, and the
//! allocator called from inside host functions) gets [`SLICE`] units of fuel
//! at a time; each time a slice is spent the host looks at the clock and
//! either refills or stops the guest with the deadline error. With
//! [`EngineConfig::fuel_per_call`](polyhost_engine_core::EngineConfig) the
//! slices also draw from that budget, so both limits hold at once.
//!
//! Bound: a guest stops within one slice of its deadline. A slice of
//! 100 000 units takes well under a millisecond in an optimised build and
//! some milliseconds in an unoptimised one, plus the longest single host
//! call (the clock is only read between slices). Bulk-memory instructions
//! are charged per byte by wasmi, so they too end within a slice or two.
//! The start section is the exception: wasmi runs it inside instantiation,
//! which cannot be resumed, so it gets one fixed budget ([`START_FUEL`], or
//! `fuel_per_call`) instead of a deadline.

use crate::{ENGINE_NAME, HostTrapError, StoreData};
use polyhost_engine_core::{Deadline, Error, ErrorKind, Result};
use std::time::Duration;
use wasmi::{
    AsContext, AsContextMut, ResumableCall, TypedFunc, TypedResumableCall, Val, WasmParams,
    WasmResults,
};

/// Fuel handed out between two looks at the clock. Small enough that a
/// slice runs in well under a millisecond when optimised (so the deadline is
/// met closely), large enough that pausing and resuming (a few
/// microseconds) costs under 1%.
pub(crate) const SLICE: u64 = 100_000;

/// Fuel for a start section when only a deadline is configured: about a
/// second of interpretation, far more than any initialiser needs.
pub(crate) const START_FUEL: u64 = 1_000_000_000;

/// The limits of the running top-level call, kept in the store.
#[derive(Debug, Default)]
pub(crate) struct Meter {
    /// Whether the engine meters fuel at all (a deadline or fuel is set).
    pub(crate) on: bool,
    /// The time limit of the next top-level call: one of the two below.
    pub(crate) timeout: Option<Duration>,
    /// [`EngineConfig::call_timeout`](polyhost_engine_core::EngineConfig).
    serving_timeout: Option<Duration>,
    /// [`EngineConfig::startup_call_timeout`](polyhost_engine_core::EngineConfig).
    startup_timeout: Option<Duration>,
    /// [`EngineConfig::fuel_per_call`](polyhost_engine_core::EngineConfig).
    pub(crate) fuel_per_call: Option<u64>,
    /// The running call's deadline.
    pub(crate) deadline: Option<Deadline>,
    /// What is left of `fuel_per_call` for the running call, not counting
    /// the fuel in the store.
    budget: Option<u64>,
}

impl Meter {
    /// A meter for a starting instance (its start section runs first).
    pub(crate) fn new(config: &polyhost_engine_core::EngineConfig) -> Self {
        Meter {
            on: config.call_timeout.is_some() || config.fuel_per_call.is_some(),
            timeout: config.startup_call_timeout(),
            serving_timeout: config.call_timeout,
            startup_timeout: config.startup_call_timeout(),
            fuel_per_call: config.fuel_per_call,
            deadline: None,
            budget: None,
        }
    }

    /// Chooses the start-up or the serving time limit for the next calls.
    pub(crate) fn set_starting(&mut self, starting: bool) {
        self.timeout = if starting {
            self.startup_timeout
        } else {
            self.serving_timeout
        };
    }
}

fn other(e: wasmi::Error) -> Error {
    Error::new(ErrorKind::Other, ENGINE_NAME, e.to_string())
}

/// Moves up to `want` fuel (at least `need`) from the budget into the store.
/// `Ok(false)` when the budget cannot cover `need`.
fn give<T: 'static>(
    store: &mut impl AsContextMut<Data = StoreData<T>>,
    want: u64,
    need: u64,
) -> Result<bool> {
    let mut ctx = store.as_context_mut();
    let left = ctx.get_fuel().map_err(other)?;
    let meter = &mut ctx.data_mut().meter;
    let amount = match &mut meter.budget {
        Some(budget) => {
            let available = budget.saturating_add(left);
            if available < need {
                return Ok(false);
            }
            let amount = want.max(need).min(available).saturating_sub(left);
            *budget -= amount;
            amount
        }
        None => want.max(need),
    };
    ctx.set_fuel(left.saturating_add(amount)).map_err(other)?;
    Ok(true)
}

/// Starts the limits of a top-level call: a fresh deadline, a fresh fuel
/// budget and the first slice. `start` arms the start section, which cannot
/// be resumed and so gets all its fuel at once.
pub(crate) fn arm<T: 'static>(
    store: &mut impl AsContextMut<Data = StoreData<T>>,
    start: bool,
) -> Result<()> {
    let mut ctx = store.as_context_mut();
    let meter = &mut ctx.data_mut().meter;
    if !meter.on {
        return Ok(());
    }
    meter.deadline = meter.timeout.map(Deadline::after);
    meter.budget = meter.fuel_per_call;
    let first = match (start, meter.fuel_per_call) {
        (true, Some(fuel)) => fuel,
        (true, None) => START_FUEL,
        (false, _) if meter.timeout.is_some() => SLICE,
        (false, fuel) => fuel.unwrap_or(u64::MAX),
    };
    ctx.set_fuel(0).map_err(other)?;
    give(&mut ctx, first, 0).map(|_| ())
}

/// Decides what happens when a resumable call ran out of fuel: stop it
/// (deadline passed, or the fuel budget is spent) or give it another slice.
fn out_of_fuel<T: 'static>(
    store: &mut impl AsContextMut<Data = StoreData<T>>,
    required: u64,
) -> Result<()> {
    let deadline = store.as_context().data().meter.deadline;
    if let Some(deadline) = deadline
        && deadline.passed()
    {
        return Err(deadline.error(ENGINE_NAME));
    }
    if give(store, SLICE, required)? {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::Interrupted,
            ENGINE_NAME,
            "all fuel consumed",
        ))
    }
}

/// Calls a typed function under the store's limits.
pub(crate) fn call_typed<T: 'static, P: WasmParams, R: WasmResults>(
    mut store: impl AsContextMut<Data = StoreData<T>>,
    func: &TypedFunc<P, R>,
    params: P,
    callback: &str,
) -> Result<R> {
    if !store.as_context().data().meter.on {
        return func
            .call(&mut store, params)
            .map_err(|e| convert_error(&e, callback));
    }
    let mut state = func.call_resumable(&mut store, params);
    loop {
        match state {
            Ok(TypedResumableCall::Finished(results)) => return Ok(results),
            Ok(TypedResumableCall::HostTrap(trap)) => {
                return Err(convert_error(trap.host_error(), callback));
            }
            Ok(TypedResumableCall::OutOfFuel(paused)) => {
                out_of_fuel(&mut store, paused.required_fuel())
                    .map_err(|e| e.with_callback(callback))?;
                state = paused.resume(&mut store);
            }
            Err(e) => return Err(convert_error(&e, callback)),
        }
    }
}

/// Calls a function with dynamically typed values under the store's
/// limits. Errors are wasmi's, so the caller can tell argument mismatches
/// (reported before running) from traps.
pub(crate) fn call_dynamic<T: 'static>(
    mut store: impl AsContextMut<Data = StoreData<T>>,
    func: &wasmi::Func,
    params: &[Val],
    results: &mut [Val],
    callback: &str,
) -> std::result::Result<(), CallError> {
    if !store.as_context().data().meter.on {
        return func
            .call(&mut store, params, results)
            .map_err(CallError::Wasmi);
    }
    let mut state = func
        .call_resumable(&mut store, params, results)
        .map_err(CallError::Wasmi)?;
    loop {
        match state {
            ResumableCall::Finished => return Ok(()),
            ResumableCall::HostTrap(trap) => {
                return Err(CallError::Polyhost(convert_error(
                    trap.host_error(),
                    callback,
                )));
            }
            ResumableCall::OutOfFuel(paused) => {
                out_of_fuel(&mut store, paused.required_fuel())
                    .map_err(|e| CallError::Polyhost(e.with_callback(callback)))?;
                state = paused
                    .resume(&mut store, results)
                    .map_err(CallError::Wasmi)?;
            }
        }
    }
}

/// What [`call_dynamic`] fails with.
pub(crate) enum CallError {
    /// wasmi refused or trapped.
    Wasmi(wasmi::Error),
    /// Already converted (a host trap, a deadline, fuel).
    Polyhost(Error),
}

/// Turns a wasmi error from guest execution into a Polyhost error.
pub(crate) fn convert_error(e: &wasmi::Error, callback: &str) -> Error {
    let (kind, message) = if let Some(HostTrapError(trap)) = e.downcast_ref::<HostTrapError>() {
        (ErrorKind::Trap, trap.0.clone())
    } else {
        match e.as_trap_code() {
            Some(wasmi::TrapCode::OutOfFuel) => {
                (ErrorKind::Interrupted, "all fuel consumed".to_string())
            }
            Some(code) => (ErrorKind::Trap, code.to_string()),
            None => (ErrorKind::Trap, e.to_string()),
        }
    };
    Error::new(kind, ENGINE_NAME, message).with_callback(callback)
}
