//! The runtimes' own floor for the guest→host crossing: [`CALLS_WAT`] loaded
//! directly on each runtime, without Polyhost, with
//! `env.proxy_get_log_level` defined as that runtime's own typed host
//! function.
//!
//! Why: the Polyhost figure of the crossing table ([`crate::micro`])
//! includes the runtime's own trampolines, which no host can avoid. Issue 13
//! asks for a trivial host call within 1.3× of a raw typed host function of
//! the same runtime measured in the same run, so the report times this
//! baseline alongside Polyhost's figure, their batches taking turns
//! ([`crate::measure::alternating`]), with the same loop and the same
//! subtraction of the loop without the call ([`RawCalls::empty_loop`]).
//!
//! The raw host function does the least work with the same contract as
//! Polyhost's `proxy_get_log_level`: a bounds-checked write of the log level
//! (an `i32`, [`LOG_LEVEL`]) at the guest's pointer, then `0` (`Ok`), or
//! `InvalidMemoryAccess` when the pointer is out of bounds, through the
//! same memory accessor Polyhost's backend for that runtime uses. The
//! memory export is looked up once after instantiation and kept in the
//! store's data, as Polyhost keeps it. It returns a plain `i32`, so it has no trap
//! path: that is the cheapest typed signature each runtime offers, and
//! whatever Polyhost pays for being able to trap counts as its overhead.
//!
//! Each runtime is configured as Polyhost configures it for
//! [`EngineConfig::default`](polyhost::EngineConfig::default), as far as
//! the runtime's own settings go, so both sides run the same kind of
//! generated code: wasmtime with the variant's compiler or interpreter and
//! epoch interruption (the default call timeout), wasmi with fuel metering
//! at Polyhost's fuel costs. Polyhost's deadline checks on wasmer are its
//! own middleware, not a runtime setting, so raw wasmer compiles without
//! them; they sit at loop headers and function entries, which the empty
//! loop subtracts and a host call does not pass.

use crate::micro::CALLS_WAT;
use polyhost::LogLevel;

#[cfg(feature = "wasmer")]
mod on_wasmer;
#[cfg(feature = "wasmi")]
mod on_wasmi;
#[cfg(any(
    feature = "wasmtime",
    feature = "wasmtime-winch",
    feature = "wasmtime-pulley"
))]
mod on_wasmtime;

/// The level the raw host function writes: the one every benchmarked
/// plugin runs at ([`crate::wasm::plugin_config`]), so both loops sum the
/// same values.
pub const LOG_LEVEL: i32 = LogLevel::Info as i32;

/// The status a raw host function returns for a pointer out of bounds, as
/// Polyhost does.
#[allow(dead_code)] // unused in a build with no runtime compiled in
const INVALID_MEMORY_ACCESS: i32 = polyhost::Status::InvalidMemoryAccess as i32;

/// [`CALLS_WAT`] instantiated directly on one runtime.
pub trait RawCalls {
    /// Runs `bench_host_calls(n)`: `n` calls of the raw host function
    /// inside one guest call; returns the sum of their statuses.
    ///
    /// # Errors
    /// A trap, as text.
    fn host_calls(&mut self, n: u32) -> Result<i32, String>;

    /// Runs `bench_empty_loop(n)`: the same loop without the call.
    ///
    /// # Errors
    /// A trap, as text.
    fn empty_loop(&mut self, n: u32) -> Result<i32, String>;
}

/// The raw baseline of the engine Polyhost calls `engine`, or `None` when
/// this build has none for it (a runtime not compiled into the bench crate,
/// or a variant such as `wasmer-singlepass` the bench features do not
/// cover).
///
/// # Errors
/// Inside the option: a compile, link or instantiation error, as text.
pub fn new(engine: &str) -> Option<Result<Box<dyn RawCalls>, String>> {
    let wasm = match wat::parse_str(CALLS_WAT) {
        Ok(w) => w,
        Err(e) => return Some(Err(e.to_string())),
    };
    let raw = runtime(engine, &wasm)?;
    // The same check as `CallBench::new`: every call returned Ok.
    Some(raw.and_then(|mut raw| match raw.host_calls(10)? {
        0 => Ok(raw),
        sum => Err(format!(
            "the raw proxy_get_log_level returned {sum} over 10 calls, not Ok"
        )),
    }))
}

fn runtime(engine: &str, wasm: &[u8]) -> Option<Result<Box<dyn RawCalls>, String>> {
    #[cfg(any(
        feature = "wasmtime",
        feature = "wasmtime-winch",
        feature = "wasmtime-pulley"
    ))]
    if let Some(raw) = on_wasmtime::new(engine, wasm) {
        return Some(raw);
    }
    #[cfg(feature = "wasmer")]
    if engine == "wasmer" {
        return Some(on_wasmer::new(wasm));
    }
    #[cfg(feature = "wasmi")]
    if engine == "wasmi" {
        return Some(on_wasmi::new(wasm));
    }
    let _ = (engine, wasm);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine compiled in has a raw baseline that loads and sums the
    /// same values as Polyhost's loop (see `wasm.rs`'s tests).
    #[test]
    fn raw_baseline_runs_on_every_engine() {
        for name in polyhost::AnyEngine::names() {
            let Some(raw) = new(name) else {
                eprintln!("no raw baseline for {name} in this build");
                continue;
            };
            let mut raw = raw.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(raw.host_calls(3), Ok(0), "{name}");
            assert_eq!(raw.empty_loop(3), Ok(3 * LOG_LEVEL), "{name}");
        }
    }
}
