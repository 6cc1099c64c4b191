//! Smoke tests of the wasmer backend against the engine contract.
//!
//! The cases are generic over `E: Engine` so they can move into the
//! cross-engine conformance harness unchanged; only the `#[test]` wrappers
//! name wasmer.
use polyhost_engine_core::{
    CallbackSig, Engine, EngineConfig, ErrorKind, FuncType, HostContext, HostLinker, HostResult,
    HostTrap, Instance, Value,
};
use polyhost_engine_wasmer::{Variant, WasmerEngine};

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
    let pre = e.prelink(&l, &m).unwrap();
    e.instantiate(&pre, Data { sum: 0 }).unwrap()
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
    let err = e.prelink(&l, &m).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Link);
    assert!(err.message().contains("env.nowhere"), "{err}");

    // Provided, but with another type.
    let wasm = wat::parse_str(r#"(module (import "env" "add" (func (param i32))))"#).unwrap();
    let m = e.compile(&wasm).unwrap();
    let err = e.prelink(&l, &m).err().unwrap();
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
    // Interpreters must not grow the native stack per executed instruction.
    let mut i = instance(e);
    let f = i.func("count", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[1_000_000]).unwrap(), Some(1_000_000));
}

fn precompile_roundtrip<E: Engine>(e: &E) {
    let wasm = wat::parse_str(GUEST).unwrap();
    let bytes = e.precompile(&wasm).unwrap();
    // SAFETY: the bytes were just produced by this engine.
    let m = unsafe { e.deserialize(&bytes) }.unwrap();
    let mut l = e.linker::<Data>();
    register(&mut l);
    let pre = e.prelink(&l, &m).unwrap();
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

fn wasmer() -> WasmerEngine {
    WasmerEngine::cranelift().unwrap()
}

#[test]
fn wasmer_generic_registration_and_call() {
    generic_registration_and_call(&wasmer());
}

#[test]
fn wasmer_introspection() {
    introspection(&wasmer());
}

#[test]
fn wasmer_signature_mismatch() {
    signature_mismatch(&wasmer());
}

#[test]
fn wasmer_out_of_bounds() {
    out_of_bounds(&wasmer());
}

#[test]
fn wasmer_guest_trap() {
    let e = wasmer();
    guest_trap(&e);
    // wasmer reports the guest stack.
    let mut i = instance(&e);
    let f = i.func("boom", CallbackSig::void(0)).unwrap().unwrap();
    let err = i.call(&f, &[]).unwrap_err();
    assert!(err.guest_backtrace().is_some(), "{err}");
}

#[test]
fn wasmer_host_trap() {
    host_trap(&wasmer());
}

#[test]
fn wasmer_allocator_reentry() {
    allocator_reentry(&wasmer());
}

#[test]
fn wasmer_missing_import() {
    missing_import(&wasmer());
}

#[test]
fn wasmer_invalid_bytes() {
    invalid_bytes(&wasmer());
}

#[test]
fn wasmer_long_loop() {
    long_loop(&wasmer());
}

#[test]
fn wasmer_precompile_roundtrip() {
    precompile_roundtrip(&wasmer());
}

#[test]
fn wasmer_instance_moves_between_threads() {
    instance_moves_between_threads(&wasmer());
}

#[test]
fn wasmer_fuel_exhaustion() {
    let e = WasmerEngine::new(
        Variant::Cranelift,
        &EngineConfig {
            fuel_per_call: Some(100_000),
            ..EngineConfig::default()
        },
    )
    .unwrap();
    assert!(e.capabilities().fuel);
    fuel_exhaustion(&e);
    // The metering globals stay hidden.
    introspection(&e);
    // A trap that is not fuel exhaustion stays a trap with metering on.
    guest_trap(&e);
    allocator_reentry(&e);
    // Several modules compile on one metered engine.
    missing_import(&e);
    precompile_roundtrip(&e);
}

#[test]
fn wasmer_memory_limit() {
    let e = WasmerEngine::new(
        Variant::Cranelift,
        &EngineConfig {
            max_memory_bytes: 2 * 65536,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    assert!(e.capabilities().memory_limit);
    memory_limit(&e);
    // A module whose initial memory exceeds the limit cannot instantiate.
    let wasm = wat::parse_str(r#"(module (memory 3))"#).unwrap();
    let m = e.compile(&wasm).unwrap();
    let pre = e.prelink(&e.linker::<Data>(), &m).unwrap();
    let err = e.instantiate(&pre, Data { sum: 0 }).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Instantiate);
}

#[test]
fn wasmer_capabilities() {
    let e = wasmer();
    assert_eq!(e.name(), "wasmer");
    let fp = e.fingerprint();
    assert!(fp.starts_with("wasmer-"), "{fp}");
    assert!(fp.contains("cranelift"), "{fp}");
    assert!(fp.contains(std::env::consts::ARCH), "{fp}");
    let caps = e.capabilities();
    assert!(caps.precompile && !caps.interruption && caps.backtraces);
    let err = WasmerEngine::new(
        Variant::Cranelift,
        &EngineConfig {
            call_timeout: Some(std::time::Duration::from_millis(10)),
            ..EngineConfig::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    assert_eq!(err.engine(), "wasmer");
    assert_eq!(WasmerEngine::names()[0], "wasmer");
    assert_eq!(
        WasmerEngine::by_name("wasmer", &EngineConfig::default())
            .unwrap()
            .variant(),
        Variant::Cranelift
    );
    assert_eq!(
        WasmerEngine::by_name("wasmer-llvm", &EngineConfig::default())
            .err()
            .unwrap()
            .kind(),
        ErrorKind::NotSupported
    );
    if !cfg!(feature = "singlepass") {
        let err = WasmerEngine::new(Variant::Singlepass, &EngineConfig::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotSupported);
        assert_eq!(err.engine(), "wasmer-singlepass");
    }
}

#[cfg(feature = "singlepass")]
#[test]
fn wasmer_singlepass() {
    let e = WasmerEngine::new(Variant::Singlepass, &EngineConfig::default()).unwrap();
    assert_eq!(e.name(), "wasmer-singlepass");
    assert!(e.fingerprint().contains("singlepass"));
    generic_registration_and_call(&e);
    guest_trap(&e);
    host_trap(&e);
    allocator_reentry(&e);
    precompile_roundtrip(&e);
    let e = WasmerEngine::new(
        Variant::Singlepass,
        &EngineConfig {
            fuel_per_call: Some(100_000),
            max_memory_bytes: 2 * 65536,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    fuel_exhaustion(&e);
    memory_limit(&e);
}
