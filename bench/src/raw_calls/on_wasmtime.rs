//! The raw baseline on wasmtime (each variant Polyhost compiles in).

use super::{INVALID_MEMORY_ACCESS, LOG_LEVEL, RawCalls};
use polyhost::EngineConfig;
use polyhost::engines::WasmtimeVariant as Variant;
use std::num::NonZeroUsize;
use wasmtime::{Caller, Config, Engine, Linker, Memory, Module, Store, Strategy, TypedFunc};

/// The store's data: the guest memory, resolved once.
struct Data {
    memory: Option<Memory>,
}

struct RawWasmtime {
    store: Store<Data>,
    host_calls: TypedFunc<i32, i32>,
    empty_loop: TypedFunc<i32, i32>,
}

/// The baseline of the wasmtime variant Polyhost calls `engine`, if it is
/// one compiled into this build.
pub(super) fn new(engine: &str, wasm: &[u8]) -> Option<Result<Box<dyn RawCalls>, String>> {
    let variant = *Variant::available()
        .iter()
        .find(|v| v.engine_name() == engine)?;
    Some(RawWasmtime::new(variant, wasm).map(|r| Box::new(r) as Box<dyn RawCalls>))
}

/// The `Config` engine-wasmtime's `WasmtimeEngine::new` builds for
/// `variant` and [`EngineConfig::default`]: the variant's compiler or the
/// Pulley target, at most 20 backtrace frames, epoch interruption when
/// there is a call timeout (there is by default), fuel when there is a
/// budget (there is not). Its pooling allocator is only used with
/// `pooled_instances`, which the crossings do not set.
fn config(variant: Variant) -> Result<Config, String> {
    let defaults = EngineConfig::default();
    let mut wt = Config::new();
    match variant {
        Variant::Cranelift => {
            wt.strategy(Strategy::Cranelift);
        }
        Variant::Winch => {
            wt.strategy(Strategy::Winch);
        }
        Variant::Pulley => {
            let target = if cfg!(target_pointer_width = "64") {
                "pulley64"
            } else {
                "pulley32"
            };
            wt.target(target).map_err(|e| format!("{e:#}"))?;
        }
    }
    wt.wasm_backtrace_max_frames(NonZeroUsize::new(20));
    wt.epoch_interruption(defaults.call_timeout.is_some());
    wt.consume_fuel(defaults.fuel_per_call.is_some());
    Ok(wt)
}

/// Writes [`LOG_LEVEL`] into `memory` at `ptr` if it fits, with the same
/// checked slice access as engine-wasmtime's `caller::write`; the status
/// the guest gets.
#[inline]
fn put_log_level(memory: &mut [u8], ptr: i32) -> i32 {
    let start = ptr as u32 as usize;
    match start
        .checked_add(4)
        .and_then(|end| memory.get_mut(start..end))
    {
        Some(dst) => {
            dst.copy_from_slice(&LOG_LEVEL.to_le_bytes());
            0
        }
        None => INVALID_MEMORY_ACCESS,
    }
}

impl RawWasmtime {
    fn new(variant: Variant, wasm: &[u8]) -> Result<Self, String> {
        let err = |e: wasmtime::Error| format!("{e:#}");
        let engine = Engine::new(&config(variant)?).map_err(err)?;
        let module = Module::new(&engine, wasm).map_err(err)?;
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(
                "env",
                "proxy_get_log_level",
                |mut caller: Caller<'_, Data>, ptr: i32| -> i32 {
                    match caller.data().memory {
                        Some(memory) => put_log_level(memory.data_mut(&mut caller), ptr),
                        None => INVALID_MEMORY_ACCESS,
                    }
                },
            )
            .map_err(err)?;
        let mut store = Store::new(&engine, Data { memory: None });
        // No ticker thread increments the epoch, so this deadline is never
        // reached; the checks still run, as in Polyhost's code.
        store.set_epoch_deadline(1 << 40);
        let instance = linker.instantiate(&mut store, &module).map_err(err)?;
        let memory = instance.get_memory(&mut store, "memory");
        store.data_mut().memory = memory;
        let host_calls = instance
            .get_typed_func(&mut store, "bench_host_calls")
            .map_err(err)?;
        let empty_loop = instance
            .get_typed_func(&mut store, "bench_empty_loop")
            .map_err(err)?;
        Ok(RawWasmtime {
            store,
            host_calls,
            empty_loop,
        })
    }
}

impl RawCalls for RawWasmtime {
    fn host_calls(&mut self, n: u32) -> Result<i32, String> {
        self.host_calls
            .call(&mut self.store, n as i32)
            .map_err(|e| format!("{e:#}"))
    }

    fn empty_loop(&mut self, n: u32) -> Result<i32, String> {
        self.empty_loop
            .call(&mut self.store, n as i32)
            .map_err(|e| format!("{e:#}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_bounds_pointers_are_refused() {
        let mut memory = [0u8; 8];
        assert_eq!(put_log_level(&mut memory, 4), 0);
        assert_eq!(&memory[4..], &LOG_LEVEL.to_le_bytes());
        assert_eq!(put_log_level(&mut memory, 5), INVALID_MEMORY_ACCESS);
        assert_eq!(put_log_level(&mut memory, -1), INVALID_MEMORY_ACCESS);
    }
}
