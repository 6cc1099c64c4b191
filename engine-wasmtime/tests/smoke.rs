//! Smoke test of the generic host-function registration path.
use polyhost_engine_core::{CallbackSig, Engine, HostContext, HostLinker, HostResult, Instance};
use polyhost_engine_wasmtime::WasmtimeEngine;

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
}

#[test]
fn generic_registration_and_call() {
    let e = WasmtimeEngine::cranelift().unwrap();
    let wasm = wat::parse_str(
        r#"(module (import "env" "add" (func $add (param i32 i32 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "go") (param i32) (result i32) (call $add (local.get 0) (i32.const 2) (i32.const 8))))"#,
    )
    .unwrap();
    let m = e.compile(&wasm).unwrap();
    let mut l = e.linker::<Data>();
    register(&mut l);
    let pre = e.prelink(&l, &m).unwrap();
    let mut i = e.instantiate(&pre, Data { sum: 0 }).unwrap();
    let f = i.func("go", CallbackSig::i32(1)).unwrap().unwrap();
    assert_eq!(i.call(&f, &[5]).unwrap(), Some(0));
    assert_eq!(i.data().sum, 7);
    assert_eq!(i.read_u32(8).unwrap(), 7);
    assert!(i.func("go", CallbackSig::i32(2)).is_err());
}
