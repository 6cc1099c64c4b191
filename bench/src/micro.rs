//! The two crossings every request pays for: a call from the guest into a
//! host function, and a call from the host into a guest export.
//!
//! Both use a hand-written module (below) loaded as a real plugin, so the
//! host function is the real `proxy_get_log_level` of the proxy-wasm linker
//! and the export is called through the same typed path [`polyhost::Vm`]
//! uses for callbacks.

use polyhost::engine_core::{CallbackSig, Instance};
use polyhost::{Engine, HostServices, HostState, Plugin, Vm};

/// A minimal proxy-wasm module with three extra exports:
///
/// * `bench_host_calls(n)` calls `proxy_get_log_level` `n` times in a loop;
/// * `bench_empty_loop(n)` runs the same loop with a memory load in place of
///   the call, so the loop's own cost can be subtracted;
/// * `bench_noop(x)` returns `x`: the cheapest possible callback.
pub const CALLS_WAT: &str = r#"
(module
  (import "env" "proxy_get_log_level" (func $get_log_level (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "bench_host_calls") (param $n i32) (result i32)
    (local $acc i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (call $get_log_level (i32.const 16))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $acc))
  (func (export "bench_empty_loop") (param $n i32) (result i32)
    (local $acc i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $acc (i32.add (local.get $acc) (i32.load (i32.const 16))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $acc))
  (func (export "bench_noop") (param i32) (result i32) (local.get 0)))
"#;

type Func<E> = <<E as Engine>::Instance<HostState> as Instance<HostState>>::Func;

/// A VM of [`CALLS_WAT`] with its benchmark exports resolved.
pub struct CallBench<E: Engine> {
    vm: Vm<E>,
    host_calls: Func<E>,
    empty_loop: Func<E>,
    noop: Func<E>,
}

impl<E: Engine> CallBench<E> {
    /// Loads [`CALLS_WAT`] on `engine` and resolves its exports.
    ///
    /// # Errors
    /// A loading or start-up error, as text.
    pub fn new(engine: &E) -> Result<Self, String> {
        let wasm = wat::parse_str(CALLS_WAT).map_err(|e| e.to_string())?;
        let plugin = Plugin::load(
            engine,
            &wasm,
            crate::wasm::plugin_config("calls"),
            HostServices::default(),
        )
        .map_err(|e| e.to_string())?;
        let mut vm = plugin.new_vm().map_err(|e| e.to_string())?;
        let sig = CallbackSig::i32(1);
        let mut func = |name: &str| {
            vm.instance()
                .func(name, sig)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{name} is not exported"))
        };
        let host_calls = func("bench_host_calls")?;
        let empty_loop = func("bench_empty_loop")?;
        let noop = func("bench_noop")?;
        let mut bench = CallBench {
            vm,
            host_calls,
            empty_loop,
            noop,
        };
        // `proxy_get_log_level` returns Ok (0) and the loop sums statuses.
        if bench.host_calls(10)? != 0 {
            return Err("proxy_get_log_level did not return Ok".into());
        }
        Ok(bench)
    }

    fn call(&mut self, which: Which, arg: i32) -> Result<i32, String> {
        let f = match which {
            Which::HostCalls => &self.host_calls,
            Which::EmptyLoop => &self.empty_loop,
            Which::Noop => &self.noop,
        };
        self.vm
            .instance()
            .call(f, &[arg])
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "no result".to_string())
    }

    /// Runs `n` host calls inside one guest call.
    ///
    /// # Errors
    /// A trap, as text.
    pub fn host_calls(&mut self, n: u32) -> Result<i32, String> {
        self.call(Which::HostCalls, n as i32)
    }

    /// Runs the same loop as [`CallBench::host_calls`] without the calls.
    ///
    /// # Errors
    /// A trap, as text.
    pub fn empty_loop(&mut self, n: u32) -> Result<i32, String> {
        self.call(Which::EmptyLoop, n as i32)
    }

    /// Calls the no-op export once.
    ///
    /// # Errors
    /// A trap, as text.
    pub fn callback(&mut self) -> Result<i32, String> {
        self.call(Which::Noop, 7)
    }
}

#[derive(Clone, Copy)]
enum Which {
    HostCalls,
    EmptyLoop,
    Noop,
}
