//! The engine contract of `polyhost-engine-core` on every engine and
//! variant compiled in: typed host functions and calls, export and import
//! introspection, signature checks, checked guest memory, guest and host
//! traps, allocator re-entry from a host function, link errors, invalid
//! bytes, long-running loops, ahead-of-time compilation, moving an instance
//! between threads, fuel and memory limits. A capability an engine lacks
//! must be refused with `NotSupported`, which is checked instead.

use crate::harness::{engine_config_tests, engine_if_capable};
use polyhost::engine_core::{
    CallbackExport, CallbackSig, Engine, EngineConfig, ErrorKind, FuncType, HostContext,
    HostLinker, HostResult, HostTrap, Instance, Result as EngineResult, Value,
};

engine_config_tests!(
    registration_and_call,
    exports_and_imports,
    callback_signatures,
    prelinked_callbacks,
    prelink_checks_callbacks,
    memory_bounds,
    guest_traps,
    host_traps,
    allocator_reentry_from_host_functions,
    link_errors,
    invalid_bytes_are_rejected,
    long_loops_do_not_grow_the_stack,
    precompiled_modules_round_trip,
    instances_move_between_threads,
    fuel_interrupts_endless_loops,
    memory_limits_hold,
    pooled_slots_start_fresh,
);

struct Data {
    sum: i32,
}

fn add<C: HostContext<Data = Data>>(cx: &mut C, a: i32, b: i32, ptr: i32) -> HostResult<i32> {
    cx.data_mut().sum += a + b;
    let bytes = (a + b).to_le_bytes();
    match cx.write(ptr as u32, &bytes) {
        Ok(()) => Ok(0),
        Err(_) => Ok(6),
    }
}

fn register<L: HostLinker<Data>>(l: &mut L) {
    l.i32_3("env", "add", |cx, a, b, p| add(cx, a, b, p))
        .unwrap();
    l.i32_0("env", "fail", |_cx| Err(HostTrap("proc_exit(3)".into())))
        .unwrap();
    l.i32_1("env", "alloc16", |cx, _| match cx.allocate(16) {
        Ok(p) => Ok(p as i32),
        Err(e) => Err(HostTrap(e.to_string())),
    })
    .unwrap();
}

const GUEST: &str = r#"(module
    (import "env" "add" (func $add (param i32 i32 i32) (result i32)))
    (import "env" "fail" (func $fail (result i32)))
    (import "env" "alloc16" (func $alloc16 (param i32) (result i32)))
    (memory (export "memory") 1 4)
    (global $heap (mut i32) (i32.const 1024))
    (func (export "go") (param i32) (result i32)
        (call $add (local.get 0) (i32.const 2) (i32.const 8)))
    (func (export "boom") unreachable)
    (func (export "fail") (result i32) (call $fail))
    (func (export "get_two") (result i32) (call $alloc16 (i32.const 0)) (drop) (call $alloc16 (i32.const 0)))
    (func (export "malloc") (param i32) (result i32)
        (global.get $heap)
        (global.set $heap (i32.add (global.get $heap) (local.get 0))))
    (func (export "spin") (loop $l (br $l)))
    (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
    (func (export "wide") (param i64) (result i64) (local.get 0))
    (func $inc (param i32) (result i32) (i32.add (local.get 0) (i32.const 1)))
    (func (export "count") (param i32) (result i32) (local i32)
        (loop $l
            (local.set 1 (call $inc (local.get 1)))
            (drop (memory.grow (i32.const 0)))
            (br_if $l (i32.lt_u (local.get 1) (local.get 0))))
        (local.get 1)))"#;

fn instance<E: Engine>(e: &E) -> E::Instance<Data> {
    let wasm = wat::parse_str(GUEST).unwrap();
    let m = e.compile(&wasm).unwrap();
    let mut l = e.linker::<Data>();
    register(&mut l);
    let pre = e.prelink(&l, &m, &[]).unwrap();
    e.instantiate(&pre, Data { sum: 0 }).unwrap()
}

/// [`GUEST`] pre-linked with `callbacks`.
fn prelinked<E: Engine>(e: &E, callbacks: &[CallbackExport]) -> EngineResult<E::InstancePre<Data>> {
    let m = e.compile(&wat::parse_str(GUEST).unwrap()).unwrap();
    let mut l = e.linker::<Data>();
    register(&mut l);
    e.prelink(&l, &m, callbacks)
}

fn callbacks_by_position<E: Engine>(e: &E) {
    let listed = [
        CallbackExport::new("go", CallbackSig::i32(1)),
        CallbackExport::new("boom", CallbackSig::void(0)),
        CallbackExport::new("malloc", CallbackSig::i32(1)),
        CallbackExport::new("get_two", CallbackSig::i32(0)),
    ];
    let pre = prelinked(e, &listed).unwrap();
    // Every instance hands out its own functions, by position.
    for sum in [0, 100] {
        let mut i = e.instantiate(&pre, Data { sum }).unwrap();
        let go = i.callback(0).unwrap();
        assert_eq!(i.call(&go, &[5]).unwrap(), Some(0));
        assert_eq!(i.data().sum, sum + 7);
        assert_eq!(i.read_u32(8).unwrap(), 7);
        let err = i.call(&go, &[5, 6]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SignatureMismatch);

        let boom = i.callback(1).unwrap();
        let err = i.call(&boom, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Trap);
        assert_eq!(err.callback(), Some("boom"));

        // A listed export chosen as the allocator, without a name lookup.
        let err = i.set_allocator_func(&boom).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
        assert!(err.message().contains("`boom`"), "{err}");
        let malloc = i.callback(2).unwrap();
        i.set_allocator_func(&malloc).unwrap();
        let get_two = i.callback(3).unwrap();
        assert_eq!(i.call(&get_two, &[]).unwrap(), Some(1024 + 16));
        assert_eq!(i.call(&malloc, &[8]).unwrap(), Some(1024 + 32));

        let err = i.callback(4).err().unwrap();
        assert_eq!(err.kind(), ErrorKind::MissingExport);
        assert_eq!(err.engine(), e.name());
    }
    // Nothing listed: nothing to hand out, and `func` still works.
    let pre = prelinked(e, &[]).unwrap();
    let mut i = e.instantiate(&pre, Data { sum: 0 }).unwrap();
    assert_eq!(
        i.callback(0).err().unwrap().kind(),
        ErrorKind::MissingExport
    );
    let go = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&go, &[1]).unwrap(), Some(0));
}

fn callback_checks_at_prelink<E: Engine>(e: &E) {
    let refuse = |listed: &[CallbackExport]| prelinked(e, listed).err().unwrap();
    let ok = CallbackExport::new("go", CallbackSig::i32(1));

    // The wrong type, in the same words on every engine.
    let err = refuse(&[ok.clone(), CallbackExport::new("go", CallbackSig::i32(2))]);
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch, "{err}");
    assert_eq!(err.engine(), e.name());
    assert_eq!(
        err.message(),
        "export `go` has type (i32) -> (i32), expected (i32, i32) -> (i32)"
    );
    let err = refuse(&[CallbackExport::new("wide", CallbackSig::i32(1))]);
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch, "{err}");
    assert_eq!(
        err.message(),
        "export `wide` has type (i64) -> (i64), expected (i32) -> (i32)"
    );
    // Not a function at all.
    let err = refuse(&[CallbackExport::new("memory", CallbackSig::void(0))]);
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch, "{err}");
    assert_eq!(
        err.message(),
        "export `memory` is not a function, expected () -> ()"
    );
    // More parameters than a callback may have.
    let err = refuse(&[CallbackExport::new("go", CallbackSig::i32(6))]);
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch, "{err}");
    assert!(err.message().contains("`go`"), "{err}");

    // Missing.
    let err = refuse(&[ok, CallbackExport::new("nowhere", CallbackSig::void(1))]);
    assert_eq!(err.kind(), ErrorKind::MissingExport, "{err}");
    assert_eq!(err.engine(), e.name());
    assert_eq!(err.message(), "the module has no export `nowhere`");

    // Import errors still come first.
    let m = e.compile(&wat::parse_str(GUEST).unwrap()).unwrap();
    let err = e
        .prelink(
            &e.linker::<Data>(),
            &m,
            &[CallbackExport::new("nowhere", CallbackSig::void(1))],
        )
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::Link, "{err}");
}

fn introspection<E: Engine>(e: &E) {
    let m = e.compile(&wat::parse_str(GUEST).unwrap()).unwrap();
    let exports = e.exports(&m);
    let go = exports.iter().find(|x| x.name == "go").unwrap();
    assert_eq!(go.func, Some(FuncType::i32s(1, 1)));
    let memory = exports.iter().find(|x| x.name == "memory").unwrap();
    assert_eq!(memory.func, None);
    assert_eq!(exports.len(), 10, "{exports:?}");
    let imports = e.imports(&m);
    assert_eq!(imports.len(), 3);
    assert_eq!(
        (imports[0].module.as_str(), imports[0].name.as_str()),
        ("env", "add")
    );
    assert_eq!(imports[0].func, Some(FuncType::i32s(3, 1)));
}

fn generic_registration_and_call<E: Engine>(e: &E) {
    let mut i = instance(e);
    let f = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[5]).unwrap(), Some(0));
    assert_eq!(i.data().sum, 7);
    assert_eq!(i.read_u32(8).unwrap(), 7);
    assert!(i.func("missing", CallbackSig::void(0)).unwrap().is_none());
    assert_eq!(
        i.call_dynamic("wide", &[Value::I64(1 << 40)]).unwrap(),
        vec![Value::I64(1 << 40)]
    );
}

fn signature_mismatch<E: Engine>(e: &E) {
    let mut i = instance(e);
    let err = i.func("go", CallbackSig::i32(2)).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
    let f = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    let err = i.call(&f, &[1, 2]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
    let err = i.set_allocator("boom").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SignatureMismatch);
}

fn out_of_bounds<E: Engine>(e: &E) {
    let mut i = instance(e);
    assert_eq!(i.memory_size(), 65536);
    let mut buf = [0; 8];
    let err = i.read(65532, &mut buf).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryOutOfBounds);
    let err = i.write(u32::MAX, &[1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryOutOfBounds);
    assert_eq!(
        i.read_vec(65000, 1000).unwrap_err().kind(),
        ErrorKind::MemoryOutOfBounds
    );
    // The edge of memory is still inside.
    i.write(65532, &[1, 2, 3, 4]).unwrap();
    assert_eq!(i.read_u32(65532).unwrap(), 0x0403_0201);
}

fn guest_trap<E: Engine>(e: &E) {
    let mut i = instance(e);
    let f = i.func("boom", CallbackSig::void(0)).unwrap().unwrap();
    let err = i.call(&f, &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap);
    assert_eq!(err.callback(), Some("boom"));
    assert!(err.message().contains("unreachable"), "{err}");
}

fn host_trap<E: Engine>(e: &E) {
    let mut i = instance(e);
    let f = i.func("fail", CallbackSig::i32(0)).unwrap().unwrap();
    let err = i.call(&f, &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Trap);
    assert_eq!(err.callback(), Some("fail"));
    assert!(err.message().contains("proc_exit(3)"), "{err}");
}

fn allocator_reentry<E: Engine>(e: &E) {
    let mut i = instance(e);
    let f = i.func("get_two", CallbackSig::i32(0)).unwrap().unwrap();
    // No allocator chosen yet: the host function's error becomes a trap.
    assert_eq!(i.call(&f, &[]).unwrap_err().kind(), ErrorKind::Trap);
    i.set_allocator("malloc").unwrap();
    assert_eq!(i.call(&f, &[]).unwrap(), Some(1024 + 16));
    // Outside any guest call too.
    assert_eq!(i.allocate(16).unwrap(), 1024 + 32);
    assert_eq!(
        i.set_allocator("nope").unwrap_err().kind(),
        ErrorKind::MissingExport
    );
}

fn missing_import<E: Engine>(e: &E) {
    let wasm = wat::parse_str(
        r#"(module (import "env" "add" (func (param i32 i32 i32) (result i32)))
                   (import "env" "nowhere" (func (param i32))))"#,
    )
    .unwrap();
    let m = e.compile(&wasm).unwrap();
    let mut l = e.linker::<Data>();
    register(&mut l);
    let err = e.prelink(&l, &m, &[]).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Link);
    assert!(err.message().contains("env.nowhere"), "{err}");

    // Provided, but with another type.
    let wasm = wat::parse_str(r#"(module (import "env" "add" (func (param i32))))"#).unwrap();
    let m = e.compile(&wasm).unwrap();
    let err = e.prelink(&l, &m, &[]).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Link);
    assert!(err.message().contains("env.add"), "{err}");

    // Registering the same name twice is a link error too.
    let err = l.void_1("env", "add", |_, _| Ok(())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Link);
}

fn invalid_bytes<E: Engine>(e: &E) {
    let err = e.compile(b"\0asm\x01\0\0\0garbage").err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Compile);
    let err = e.compile(&[1, 2, 3]).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Compile);
}

fn fuel_exhaustion<E: Engine>(e: &E) {
    let mut i = instance(e);
    let f = i.func("spin", CallbackSig::void(0)).unwrap().unwrap();
    let err = i.call(&f, &[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{err}");
    assert_eq!(err.callback(), Some("spin"));
    // Each top-level call gets a fresh budget.
    let f = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[1]).unwrap(), Some(0));
}

fn memory_limit<E: Engine>(e: &E) {
    let mut i = instance(e);
    let f = i.func("grow", CallbackSig::i32(1)).unwrap().unwrap();
    // Limit is two pages: one more fits, a third does not.
    assert_eq!(i.call(&f, &[1]).unwrap(), Some(1));
    assert_eq!(i.call(&f, &[1]).unwrap(), Some(-1));
    assert_eq!(i.memory_size(), 2 * 65536);
}

fn long_loop<E: Engine>(e: &E) {
    // Interpreters must not grow the native stack per executed instruction
    // (tens of thousands of instructions overflowed it), and must run a
    // loop across many fuel slices; small enough to end well within the
    // default 100 ms deadline even on Pulley on a loaded machine.
    let mut i = instance(e);
    let f = i.func("count", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[50_000]).unwrap(), Some(50_000));
}

fn precompile_roundtrip<E: Engine>(e: &E) {
    let wasm = wat::parse_str(GUEST).unwrap();
    let bytes = e.precompile(&wasm).unwrap();
    // SAFETY: the bytes were just produced by this engine.
    let m = unsafe { e.deserialize(&bytes) }.unwrap();
    let mut l = e.linker::<Data>();
    register(&mut l);
    let pre = e.prelink(&l, &m, &[]).unwrap();
    let mut i = e.instantiate(&pre, Data { sum: 0 }).unwrap();
    let f = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[5]).unwrap(), Some(0));
    // SAFETY: invalid bytes are rejected by the header check.
    let err = unsafe { e.deserialize(b"not a module") }.err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Deserialize);
}

fn instance_moves_between_threads<E: Engine>(e: &E) {
    let mut i = instance(e);
    let f = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[1]).unwrap(), Some(0));
    let mut i = std::thread::spawn(move || {
        assert_eq!(i.call(&f, &[2]).unwrap(), Some(0));
        i
    })
    .join()
    .unwrap();
    let f = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[3]).unwrap(), Some(0));
    assert_eq!(i.data().sum, 3 + 4 + 5);
}

fn plain<E: Engine>(make: &impl Fn(&EngineConfig) -> EngineResult<E>) -> E {
    make(&EngineConfig::default()).expect("engine with default settings")
}

fn registration_and_call<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    generic_registration_and_call(&plain(&make));
}

fn prelinked_callbacks<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    callbacks_by_position(&plain(&make));
}

fn prelink_checks_callbacks<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    callback_checks_at_prelink(&plain(&make));
}

fn exports_and_imports<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    introspection(&plain(&make));
}

fn callback_signatures<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    signature_mismatch(&plain(&make));
}

fn memory_bounds<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    out_of_bounds(&plain(&make));
}

fn guest_traps<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let e = plain(&make);
    guest_trap(&e);
    if e.capabilities().backtraces {
        let mut i = instance(&e);
        let f = i.func("boom", CallbackSig::void(0)).unwrap().unwrap();
        let err = i.call(&f, &[]).unwrap_err();
        assert!(err.guest_backtrace().is_some(), "{err}");
    }
}

fn host_traps<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    host_trap(&plain(&make));
}

fn allocator_reentry_from_host_functions<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    allocator_reentry(&plain(&make));
}

fn link_errors<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    missing_import(&plain(&make));
}

fn invalid_bytes_are_rejected<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    invalid_bytes(&plain(&make));
}

fn long_loops_do_not_grow_the_stack<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    // Once with the default deadline (interpreters meter and pause in
    // slices) and once without, which runs unmetered code.
    long_loop(&plain(&make));
    long_loop(
        &make(&EngineConfig {
            call_timeout: None,
            ..EngineConfig::default()
        })
        .unwrap(),
    );
}

fn precompiled_modules_round_trip<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let e = plain(&make);
    if e.capabilities().precompile {
        precompile_roundtrip(&e);
    } else {
        let err = e.precompile(b"\0asm\x01\0\0\0").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotSupported, "{err}");
        assert_eq!(err.engine(), e.name());
    }
}

fn instances_move_between_threads<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    instance_moves_between_threads(&plain(&make));
}

fn fuel_interrupts_endless_loops<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let config = EngineConfig {
        fuel_per_call: Some(100_000),
        ..EngineConfig::default()
    };
    let Some(e) = engine_if_capable(make, &config, |c| c.fuel) else {
        return;
    };
    fuel_exhaustion(&e);
    // Metering adds no visible exports, leaves other traps as traps, and
    // works for several modules on one engine.
    introspection(&e);
    callbacks_by_position(&e);
    guest_trap(&e);
    allocator_reentry(&e);
    missing_import(&e);
    if e.capabilities().precompile {
        precompile_roundtrip(&e);
    }
}

fn memory_limits_hold<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let config = EngineConfig {
        max_memory_bytes: 2 * 65536,
        ..EngineConfig::default()
    };
    let Some(e) = engine_if_capable(make, &config, |c| c.memory_limit) else {
        return;
    };
    memory_limit(&e);
    // A module whose initial memory exceeds the limit cannot instantiate.
    let wasm = wat::parse_str(r#"(module (memory 3))"#).unwrap();
    let m = e.compile(&wasm).unwrap();
    let pre = e.prelink(&e.linker::<Data>(), &m, &[]).unwrap();
    let err = e.instantiate(&pre, Data { sum: 0 }).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Instantiate);
}

fn pooled_slots_start_fresh<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    // One slot, so every instance reuses the memory of the one before.
    let config = EngineConfig {
        pooled_instances: Some(1),
        max_memory_bytes: 64 << 20,
        ..EngineConfig::default()
    };
    let Some(e) = engine_if_capable(make, &config, |c| c.instance_pooling) else {
        return;
    };
    let wasm = wat::parse_str(
        r#"(module
            (memory (export "memory") 2)
            (data (i32.const 16) "seed")
            (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0))))"#,
    )
    .unwrap();
    let m = e.compile(&wasm).unwrap();
    let listed = [CallbackExport::new("grow", CallbackSig::i32(1))];
    let pre = e.prelink(&e.linker::<Data>(), &m, &listed).unwrap();
    let seed = u32::from_le_bytes(*b"seed");
    for round in 0..3u32 {
        let mut i = e.instantiate(&pre, Data { sum: 0 }).unwrap();
        // What the last instance wrote is gone; the data segment is back.
        assert_eq!(i.memory_size(), 2 * 65536, "round {round}");
        assert_eq!(i.read_u32(16).unwrap(), seed, "round {round}");
        for page in 0..2 {
            assert_eq!(i.read_u32(page * 65536 + 4096).unwrap(), 0, "round {round}");
        }
        // Dirty pages in the data segment, the initial memory and grown
        // memory, for the next round to check.
        i.write_u32(16, round + 1).unwrap();
        i.write_u32(4096, round + 1).unwrap();
        i.write_u32(65536 + 4096, round + 1).unwrap();
        let grow = i.callback(0).unwrap();
        assert_eq!(i.call(&grow, &[3]).unwrap(), Some(2));
        i.write_u32(4 * 65536, round + 1).unwrap();
    }
}
