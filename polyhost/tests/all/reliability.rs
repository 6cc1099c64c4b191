//! A plugin cannot hang or crash the host (issue 14, items 1, 2 and 4), on
//! every engine: a loop, a WASI sleep and a recursive allocator each fail
//! one callback with a typed error naming the plugin, the callback and the
//! limit; the host carries on and a new VM of the same plugin serves.

use crate::harness::{Services, engine_config_tests, fixture, request};
use polyhost::engine_core::DEFAULT_CALL_TIMEOUT;
use polyhost::{Decision, Engine, EngineConfig, Plugin, PluginConfig, PluginErrorKind, Vm};
use std::time::{Duration, Instant};

engine_config_tests!(
    endless_loop_stops_at_the_deadline,
    the_deadline_is_on_by_default,
    deadline_inside_the_allocator_is_interrupted,
    allocator_reentry_is_capped_and_reported_once,
    wasi_sleep_ends_at_the_deadline,
    start_up_has_its_own_longer_limit,
    a_looping_start_section_is_stopped,
);

/// Generous: the point is that the call returns at all; the per-engine
/// bound (a few ms past the deadline) is documented in each backend.
const RETURNS_WITHIN: Duration = Duration::from_secs(10);

fn load<E: Engine>(engine: &E, module: &str, name: &str) -> Plugin<E> {
    Plugin::load(
        engine,
        &fixture("wat", module),
        PluginConfig::named(name),
        Services::new().host,
    )
    .unwrap_or_else(|e| panic!("{module} on {}: {e}", engine.name()))
}

fn with_timeout<E: Engine>(
    make: &impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
    timeout: Duration,
) -> E {
    make(&EngineConfig {
        call_timeout: Some(timeout),
        ..EngineConfig::default()
    })
    .expect("every engine enforces a call timeout")
}

/// A new VM of `plugin` answers a response-headers callback with Continue
/// (every module here keeps that callback trivial).
fn next_vm_serves<E: Engine>(plugin: &Plugin<E>) {
    let mut vm: Vm<E> = plugin.new_vm().expect("a new VM starts");
    let id = vm.create_http_stream().unwrap();
    let decision = vm.on_response_headers(id, request("/"), true).unwrap();
    assert_eq!(decision, Decision::Continue);
    assert!(!vm.is_failed());
}

/// Runs the request-headers callback, which must fail, and returns the
/// error text after checking the VM is marked failed.
fn failing_request<E: Engine>(vm: &mut Vm<E>) -> (polyhost::PluginError, Duration) {
    let id = vm.create_http_stream().unwrap();
    let started = Instant::now();
    let err = vm
        .on_request_headers(id, request("/"), true)
        .expect_err("the callback must fail");
    let took = started.elapsed();
    assert!(vm.is_failed(), "a failed callback fails the VM");
    let again = vm.create_http_stream().unwrap_err();
    assert_eq!(again.kind(), PluginErrorKind::VmFailed, "{again}");
    (err, took)
}

fn endless_loop_stops_at_the_deadline<E: Engine>(
    make: impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
) {
    let engine = with_timeout(&make, Duration::from_millis(50));
    let plugin = load(&engine, "endless_loop", "looper");
    let mut vm = plugin.new_vm().unwrap();
    let (err, took) = failing_request(&mut vm);
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_request_headers"));
    let text = err.to_string();
    for part in [
        "`looper`",
        "`proxy_on_request_headers`",
        "deadline of 50 ms",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(took < RETURNS_WITHIN, "took {took:?}");
    eprintln!(
        "{}: a 50 ms deadline stopped the loop after {took:?}",
        engine.name()
    );
    next_vm_serves(&plugin);
}

fn the_deadline_is_on_by_default<E: Engine>(
    make: impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
) {
    assert_eq!(
        EngineConfig::default().call_timeout,
        Some(DEFAULT_CALL_TIMEOUT)
    );
    let engine = make(&EngineConfig::default()).unwrap();
    assert!(engine.capabilities().interruption);
    let plugin = load(&engine, "endless_loop", "looper");
    let mut vm = plugin.new_vm().unwrap();
    let (err, took) = failing_request(&mut vm);
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    assert!(err.to_string().contains("deadline of 100 ms"), "{err}");
    assert!(took < RETURNS_WITHIN, "took {took:?}");
    eprintln!(
        "{}: the default 100 ms deadline stopped the loop after {took:?}",
        engine.name()
    );
    next_vm_serves(&plugin);
}

fn deadline_inside_the_allocator_is_interrupted<E: Engine>(
    make: impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
) {
    // The loop runs in the allocator, called from inside a host call: the
    // deadline still stops it, and the error is still Interrupted.
    let wasm = wat::parse_str(
        r#"(module
            (import "env" "proxy_get_header_map_value"
                (func $get (param i32 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 16) ":path")
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "malloc") (param i32) (result i32)
                (loop $forever (br $forever))
                (i32.const 4096))
            (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                (drop (call $get (i32.const 0) (i32.const 16) (i32.const 5)
                                 (i32.const 32) (i32.const 36)))
                (i32.const 0))
            (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
                (i32.const 0)))"#,
    )
    .unwrap();
    let engine = with_timeout(&make, Duration::from_millis(50));
    let plugin = Plugin::load(
        &engine,
        &wasm,
        PluginConfig::named("slow-malloc"),
        Services::new().host,
    )
    .unwrap();
    let mut vm = plugin.new_vm().unwrap();
    let (err, took) = failing_request(&mut vm);
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    let text = err.to_string();
    for part in [
        "`slow-malloc`",
        "`proxy_on_request_headers`",
        "in the plugin's allocator",
        "deadline of 50 ms",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    assert!(took < RETURNS_WITHIN, "took {took:?}");
    next_vm_serves(&plugin);
}

fn allocator_reentry_is_capped_and_reported_once<E: Engine>(
    make: impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
) {
    let engine = make(&EngineConfig::default()).unwrap();
    let plugin = load(&engine, "allocator_reentry", "recursive");
    let mut vm = plugin.new_vm().unwrap();
    let (err, _) = failing_request(&mut vm);
    assert_eq!(err.kind(), PluginErrorKind::Trap, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_request_headers"));
    // The message, without the guest backtrace that follows it.
    let message = err.message().split("\nguest backtrace").next().unwrap();
    assert!(message.contains("8 levels deep"), "{message}");
    assert_eq!(
        message.matches("in the plugin's allocator").count(),
        1,
        "the nested failure is printed once: {message}"
    );
    assert!(err.to_string().contains("`recursive`"), "{err}");
    next_vm_serves(&plugin);
}

fn wasi_sleep_ends_at_the_deadline<E: Engine>(
    make: impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
) {
    let engine = with_timeout(&make, Duration::from_millis(50));
    let plugin = load(&engine, "wasi_sleep", "sleeper");
    let mut vm = plugin.new_vm().unwrap();
    let (err, took) = failing_request(&mut vm);
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    let text = err.to_string();
    for part in [
        "`sleeper`",
        "`proxy_on_request_headers`",
        "poll_oneoff",
        "deadline of 50 ms",
    ] {
        assert!(text.contains(part), "{part:?} missing from: {text}");
    }
    // The host does not sleep towards a deadline it knows will pass.
    assert!(took < RETURNS_WITHIN, "took {took:?}");
    // sched_yield and a 1 ms sleep within the deadline both succeed.
    next_vm_serves(&plugin);
}

fn start_up_has_its_own_longer_limit<E: Engine>(
    make: impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
) {
    // proxy_on_vm_start spins for 300 ms: over the 100 ms callback deadline,
    // within the 1 s start-up limit, so the VM starts.
    let engine = make(&EngineConfig::default()).unwrap();
    let plugin = load(&engine, "slow_start", "slow-start");
    let started = Instant::now();
    next_vm_serves(&plugin);
    assert!(started.elapsed() >= Duration::from_millis(300));

    // The start-up limit holds too: proxy_on_configure loops forever when
    // given a configuration, and is stopped at the start-up limit.
    let config = PluginConfig {
        configuration: "loop".into(),
        ..PluginConfig::named("slow-start")
    };
    let looping = Plugin::load(
        &engine,
        &fixture("wat", "slow_start"),
        config,
        Services::new().host,
    )
    .unwrap();
    let started = Instant::now();
    let err = looping.new_vm().err().expect("a looping start fails");
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_configure"));
    assert!(err.to_string().contains("deadline of 1"), "{err}");
    assert!(started.elapsed() < RETURNS_WITHIN);

    // A start-up limit below the time the plugin needs stops its start.
    let engine = make(&EngineConfig {
        startup_timeout: Duration::from_millis(150),
        ..EngineConfig::default()
    })
    .unwrap();
    let plugin = load(&engine, "slow_start", "slow-start");
    let err = plugin.new_vm().err().expect("a start over the limit fails");
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_vm_start"));
    assert!(err.to_string().contains("deadline of 150 ms"), "{err}");
}

fn a_looping_start_section_is_stopped<E: Engine>(
    make: impl Fn(&EngineConfig) -> polyhost::engine_core::Result<E>,
) {
    let engine = make(&EngineConfig {
        startup_timeout: Duration::from_millis(200),
        ..EngineConfig::default()
    })
    .unwrap();
    let plugin = load(&engine, "start_loop", "start-loop");
    let started = Instant::now();
    let err = plugin.new_vm().err().expect("a looping start fails");
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    assert!(err.to_string().contains("`start-loop`"), "{err}");
    assert!(
        started.elapsed() < RETURNS_WITHIN,
        "took {:?}",
        started.elapsed()
    );
    // The host is fine: the same engine starts another plugin.
    next_vm_serves(&load(&engine, "endless_loop", "looper"));
}
