//! The raw baseline on wasmi.

use super::{INVALID_MEMORY_ACCESS, LOG_LEVEL, RawCalls};
use polyhost::EngineConfig;
use wasmi::{
    Caller, CompilationMode, Config, CustomFuelCosts, Engine, Linker, Memory, Module, Store,
    TypedFunc,
};

/// The store's data: the guest memory, resolved once.
struct Data {
    memory: Option<Memory>,
}

struct RawWasmi {
    store: Store<Data>,
    metered: bool,
    host_calls: TypedFunc<i32, i32>,
    empty_loop: TypedFunc<i32, i32>,
}

/// Fuel given before each call when metering is on: far more than a loop
/// of the report spends, so it never runs out.
const FUEL: u64 = 1 << 40;

/// The baseline on wasmi.
pub(super) fn new(wasm: &[u8]) -> Result<Box<dyn RawCalls>, String> {
    RawWasmi::new(wasm).map(|r| Box::new(r) as Box<dyn RawCalls>)
}

/// The `Config` engine-wasmi's `WasmiEngine::new` builds for
/// [`EngineConfig::default`]: lazy translation, and fuel metering because
/// the default call timeout is enforced with fuel, at the same fuel costs.
/// (Polyhost then calls resumably, a slice of fuel at a time; a loop of the
/// report never reaches the end of a slice, so a plain call here is the
/// same work.)
fn config() -> (Config, bool) {
    let defaults = EngineConfig::default();
    let metered = defaults.fuel_per_call.is_some() || defaults.call_timeout.is_some();
    let mut wc = Config::default();
    wc.compilation_mode(CompilationMode::LazyTranslation);
    wc.consume_fuel(metered);
    wc.fuel_cost(CustomFuelCosts {
        bytes_copied_per_fuel: 64,
        fuel_per_bytes_translated: 0,
        fuel_per_bytes_validated: 0,
    });
    (wc, metered)
}

impl RawWasmi {
    fn new(wasm: &[u8]) -> Result<Self, String> {
        fn err(e: impl std::fmt::Display) -> String {
            e.to_string()
        }
        let (config, metered) = config();
        let engine = Engine::new(&config);
        let module = Module::new(&engine, wasm).map_err(err)?;
        let mut linker = Linker::new(&engine);
        linker
            .func_wrap(
                "env",
                "proxy_get_log_level",
                |mut caller: Caller<'_, Data>, ptr: i32| -> i32 {
                    let Some(memory) = caller.data().memory else {
                        return INVALID_MEMORY_ACCESS;
                    };
                    // `Memory::write` checks the range, as engine-wasmi's
                    // `caller::write` relies on.
                    match memory.write(&mut caller, ptr as u32 as usize, &LOG_LEVEL.to_le_bytes()) {
                        Ok(()) => 0,
                        Err(_) => INVALID_MEMORY_ACCESS,
                    }
                },
            )
            .map_err(err)?;
        let mut store = Store::new(&engine, Data { memory: None });
        if metered {
            store.set_fuel(FUEL).map_err(err)?;
        }
        let instance = linker
            .instantiate_and_start(&mut store, &module)
            .map_err(err)?;
        let memory = instance.get_memory(&store, "memory");
        store.data_mut().memory = memory;
        let host_calls = instance
            .get_typed_func(&store, "bench_host_calls")
            .map_err(err)?;
        let empty_loop = instance
            .get_typed_func(&store, "bench_empty_loop")
            .map_err(err)?;
        Ok(RawWasmi {
            store,
            metered,
            host_calls,
            empty_loop,
        })
    }

    fn call(&mut self, which: fn(&Self) -> TypedFunc<i32, i32>, n: u32) -> Result<i32, String> {
        if self.metered {
            // As Polyhost refills before every top-level call.
            self.store.set_fuel(FUEL).map_err(|e| e.to_string())?;
        }
        which(self)
            .call(&mut self.store, n as i32)
            .map_err(|e| e.to_string())
    }
}

impl RawCalls for RawWasmi {
    fn host_calls(&mut self, n: u32) -> Result<i32, String> {
        self.call(|s| s.host_calls, n)
    }

    fn empty_loop(&mut self, n: u32) -> Result<i32, String> {
        self.call(|s| s.empty_loop, n)
    }
}
