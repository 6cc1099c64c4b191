//! The raw baseline on wasmer (Cranelift).

use super::{INVALID_MEMORY_ACCESS, LOG_LEVEL, RawCalls};
use wasmer::sys::{Cranelift, EngineBuilder};
use wasmer::{
    Function, FunctionEnv, FunctionEnvMut, Instance, Memory, Module, Store, TypedFunction, imports,
};

/// The function environment: the guest memory, resolved once.
struct Data {
    memory: Option<Memory>,
}

struct RawWasmer {
    store: Store,
    host_calls: TypedFunction<i32, i32>,
    empty_loop: TypedFunction<i32, i32>,
}

/// The baseline on wasmer.
pub(super) fn new(wasm: &[u8]) -> Result<Box<dyn RawCalls>, String> {
    RawWasmer::new(wasm).map(|r| Box::new(r) as Box<dyn RawCalls>)
}

impl RawWasmer {
    /// wasmer with Cranelift, as engine-wasmer builds it, without
    /// Polyhost's own middleware (see the module docs of `raw_calls`) and
    /// memory-limiting tunables (which only lower memories' maximum).
    fn new(wasm: &[u8]) -> Result<Self, String> {
        let engine: wasmer::Engine = EngineBuilder::new(Cranelift::new()).into();
        let mut store = Store::new(engine);
        let module = Module::new(&store, wasm).map_err(|e| e.to_string())?;
        let env = FunctionEnv::new(&mut store, Data { memory: None });
        let get_log_level = Function::new_typed_with_env(
            &mut store,
            &env,
            |env: FunctionEnvMut<'_, Data>, ptr: i32| -> i32 {
                let Some(memory) = &env.data().memory else {
                    return INVALID_MEMORY_ACCESS;
                };
                // `MemoryView::write` checks the range, as engine-wasmer's
                // `caller::write` relies on.
                let view = memory.view(&env);
                match view.write(u64::from(ptr as u32), &LOG_LEVEL.to_le_bytes()) {
                    Ok(()) => 0,
                    Err(_) => INVALID_MEMORY_ACCESS,
                }
            },
        );
        let imports = imports! {
            "env" => { "proxy_get_log_level" => get_log_level },
        };
        let instance = Instance::new(&mut store, &module, &imports).map_err(|e| e.to_string())?;
        let memory = instance
            .exports
            .get_memory("memory")
            .map_err(|e| e.to_string())?
            .clone();
        env.as_mut(&mut store).memory = Some(memory);
        let typed = |name: &str| {
            instance
                .exports
                .get_typed_function::<i32, i32>(&store, name)
                .map_err(|e| e.to_string())
        };
        let host_calls = typed("bench_host_calls")?;
        let empty_loop = typed("bench_empty_loop")?;
        Ok(RawWasmer {
            store,
            host_calls,
            empty_loop,
        })
    }
}

impl RawCalls for RawWasmer {
    fn host_calls(&mut self, n: u32) -> Result<i32, String> {
        self.host_calls
            .call(&mut self.store, n as i32)
            .map_err(|e| e.to_string())
    }

    fn empty_loop(&mut self, n: u32) -> Result<i32, String> {
        self.empty_loop
            .call(&mut self.store, n as i32)
            .map_err(|e| e.to_string())
    }
}
