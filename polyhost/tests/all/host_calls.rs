//! Host calls that none of the SDK fixtures make with an observable result,
//! checked from hand-written modules: `proxy_get_header_map_size`,
//! `proxy_get_buffer_status`, `proxy_close_stream`, and `proxy_done` with the
//! root context's deferred shutdown.

use crate::harness::{Services, engine_tests, request, start, wat_plugin};
use polyhost::engine_core::{Instance, Value};
use polyhost::{Engine, PluginConfig, PluginErrorKind, Shutdown, StreamEvent, StreamType, Vm};

engine_tests!(
    header_map_size_is_the_serialized_size,
    buffer_status_reports_the_length,
    close_stream_records_each_direction,
    deferred_shutdown_waits_for_proxy_done,
    shutdown_without_on_done_deletes_at_once,
);

/// Status codes as the ABI numbers them.
const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;

/// Every module here records what host calls returned at fixed addresses
/// and exports `get(addr)` to read them back.
const GETTER: &str = r#"
    (func (export "get") (param $addr i32) (result i32) (i32.load (local.get $addr)))
"#;

fn get<E: Engine>(vm: &mut Vm<E>, addr: i32) -> i32 {
    match vm
        .instance()
        .call_dynamic("get", &[Value::I32(addr)])
        .unwrap()[..]
    {
        [Value::I32(v)] => v,
        ref other => panic!("get({addr}) returned {other:?}"),
    }
}

const STREAM_IMPORTS: &str = r#"
    (import "env" "proxy_get_header_map_size" (func $map_size (param i32 i32) (result i32)))
    (import "env" "proxy_get_buffer_status" (func $buffer_status (param i32 i32 i32) (result i32)))
    (import "env" "proxy_close_stream" (func $close (param i32) (result i32)))
"#;

/// Addresses written by [`STREAM_BODY`].
mod at {
    pub const REQUEST_MAP_STATUS: i32 = 200;
    pub const REQUEST_MAP_SIZE: i32 = 204;
    pub const BAD_MAP_STATUS: i32 = 208;
    pub const CLOSE_RESPONSE_STATUS: i32 = 216;
    pub const CLOSE_REQUEST_STATUS: i32 = 220;
    pub const CLOSE_BAD_STATUS: i32 = 224;
    pub const ROOT_MAP_STATUS: i32 = 240;
    pub const CONFIG_STATUS: i32 = 248;
    pub const CONFIG_LEN: i32 = 252;
    pub const CONFIG_FLAGS: i32 = 256;
    pub const BODY_STATUS: i32 = 260;
    pub const BODY_LEN: i32 = 264;
    pub const BODY_FLAGS: i32 = 268;
    pub const BAD_BUFFER_STATUS: i32 = 272;
}

const STREAM_BODY: &str = r#"
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
        ;; The root context has no request headers.
        (i32.store (i32.const 240) (call $map_size (i32.const 0) (i32.const 244)))
        ;; Plugin configuration (buffer type 7).
        (i32.store (i32.const 248)
            (call $buffer_status (i32.const 7) (i32.const 252) (i32.const 256)))
        (i32.const 1))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (i32.store (i32.const 200) (call $map_size (i32.const 0) (i32.const 204)))
        (i32.store (i32.const 208) (call $map_size (i32.const 8) (i32.const 212)))
        (i32.store (i32.const 216) (call $close (i32.const 1)))
        (i32.store (i32.const 220) (call $close (i32.const 0)))
        (i32.store (i32.const 224) (call $close (i32.const 4)))
        (i32.const 0))
    (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
        (i32.store (i32.const 260)
            (call $buffer_status (i32.const 0) (i32.const 264) (i32.const 268)))
        (i32.store (i32.const 272)
            (call $buffer_status (i32.const 9) (i32.const 276) (i32.const 280)))
        (i32.const 0))
"#;

fn stream_module() -> Vec<u8> {
    wat_plugin(STREAM_IMPORTS, &format!("{STREAM_BODY}{GETTER}"))
}

fn header_map_size_is_the_serialized_size<E: Engine>(engine: E) {
    let services = Services::new();
    let (_plugin, mut vm) = start(
        &engine,
        &stream_module(),
        PluginConfig::named("map-size"),
        &services,
    );
    assert_eq!(get(&mut vm, at::ROOT_MAP_STATUS), NOT_FOUND);
    let id = vm.create_http_stream().unwrap();
    vm.on_request_headers(id, request("/"), false).unwrap();
    assert_eq!(get(&mut vm, at::REQUEST_MAP_STATUS), OK);
    // 4 (pair count) + 4 pairs * 8 (two lengths) + each key and value with
    // its NUL: ":method" "GET" (12), ":path" "/" (8), ":authority"
    // "example.com" (23), ":scheme" "https" (14).
    assert_eq!(
        get(&mut vm, at::REQUEST_MAP_SIZE),
        4 + 32 + 12 + 8 + 23 + 14
    );
    assert_eq!(
        get(&mut vm, at::REQUEST_MAP_SIZE) as usize,
        request("/").serialize().len()
    );
    assert_eq!(get(&mut vm, at::BAD_MAP_STATUS), BAD_ARGUMENT);
}

fn buffer_status_reports_the_length<E: Engine>(engine: E) {
    let services = Services::new();
    let config = PluginConfig {
        configuration: "twelve bytes".into(),
        ..PluginConfig::named("buffer-status")
    };
    let (_plugin, mut vm) = start(&engine, &stream_module(), config, &services);
    assert_eq!(get(&mut vm, at::CONFIG_STATUS), OK);
    assert_eq!(get(&mut vm, at::CONFIG_LEN), 12);
    // The reference host defines no flags yet and always writes 0.
    assert_eq!(get(&mut vm, at::CONFIG_FLAGS), 0);

    let id = vm.create_http_stream().unwrap();
    vm.on_request_headers(id, request("/"), false).unwrap();
    vm.on_request_body(id, b"seventeen bytes!!", true).unwrap();
    assert_eq!(get(&mut vm, at::BODY_STATUS), OK);
    assert_eq!(get(&mut vm, at::BODY_LEN), 17);
    assert_eq!(get(&mut vm, at::BODY_FLAGS), 0);
    assert_eq!(get(&mut vm, at::BAD_BUFFER_STATUS), BAD_ARGUMENT);
}

fn close_stream_records_each_direction<E: Engine>(engine: E) {
    let services = Services::new();
    let (_plugin, mut vm) = start(
        &engine,
        &stream_module(),
        PluginConfig::named("close-stream"),
        &services,
    );
    let id = vm.create_http_stream().unwrap();
    vm.on_request_headers(id, request("/"), false).unwrap();
    assert_eq!(get(&mut vm, at::CLOSE_RESPONSE_STATUS), OK);
    assert_eq!(get(&mut vm, at::CLOSE_REQUEST_STATUS), OK);
    assert_eq!(get(&mut vm, at::CLOSE_BAD_STATUS), BAD_ARGUMENT);
    assert_eq!(
        vm.take_events(id),
        [
            StreamEvent::Close(StreamType::HttpResponse),
            StreamEvent::Close(StreamType::HttpRequest),
        ]
    );
}

const SHUTDOWN_IMPORTS: &str = r#"
    (import "env" "proxy_done" (func $done (result i32)))
    (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
"#;

/// Addresses written by the shutdown modules.
mod shut {
    pub const TICK_DONE_STATUS: i32 = 300;
    pub const DELETED_CONTEXT: i32 = 308;
    pub const DELETES: i32 = 312;
    pub const DONES: i32 = 316;
}

/// A root context that defers its shutdown (`proxy_on_done` returns false)
/// and finishes it from the next tick, as a plugin waiting for a callout
/// would.
const DEFERRING_BODY: &str = r#"
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
        (drop (call $tick_period (i32.const 10)))
        (i32.const 1))
    (func (export "proxy_on_tick") (param i32)
        (i32.store (i32.const 300) (call $done)))
    (func (export "proxy_on_done") (param i32) (result i32)
        (i32.store (i32.const 316) (i32.add (i32.load (i32.const 316)) (i32.const 1)))
        (i32.const 0))
    (func (export "proxy_on_delete") (param $ctx i32)
        (i32.store (i32.const 308) (local.get $ctx))
        (i32.store (i32.const 312) (i32.add (i32.load (i32.const 312)) (i32.const 1))))
"#;

fn tick_now<E: Engine>(vm: &mut Vm<E>) -> Result<bool, polyhost::PluginError> {
    let due = vm.next_tick().expect("the module sets a tick period");
    vm.tick(due)
}

fn deferred_shutdown_waits_for_proxy_done<E: Engine>(engine: E) {
    let services = Services::new();
    let wasm = wat_plugin(SHUTDOWN_IMPORTS, &format!("{DEFERRING_BODY}{GETTER}"));
    let (_plugin, mut vm) = start(&engine, &wasm, PluginConfig::named("deferring"), &services);

    // Outside a shutdown there is nothing to finish.
    assert!(tick_now(&mut vm).unwrap());
    assert_eq!(get(&mut vm, shut::TICK_DONE_STATUS), NOT_FOUND);

    assert_eq!(vm.shutdown().unwrap(), Shutdown::Pending);
    assert_eq!(get(&mut vm, shut::DONES), 1);
    assert_eq!(get(&mut vm, shut::DELETES), 0);
    assert!(!vm.is_shut_down());
    // Asking again does not call proxy_on_done twice.
    assert_eq!(vm.shutdown().unwrap(), Shutdown::Pending);
    assert_eq!(get(&mut vm, shut::DONES), 1);

    // The tick calls proxy_done; proxy_on_delete follows the callback.
    assert!(tick_now(&mut vm).unwrap());
    assert_eq!(get(&mut vm, shut::TICK_DONE_STATUS), OK);
    assert_eq!(get(&mut vm, shut::DELETES), 1);
    assert_eq!(get(&mut vm, shut::DELETED_CONTEXT), 1, "the root context");
    assert!(vm.is_shut_down());
    assert_eq!(vm.shutdown().unwrap(), Shutdown::Complete);

    // A deleted root takes no more callbacks.
    let err = tick_now(&mut vm).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::ShutDown);
    assert!(err.to_string().contains("deferring"), "{err}");
    assert!(vm.create_http_stream().is_err());
}

fn shutdown_without_on_done_deletes_at_once<E: Engine>(engine: E) {
    let services = Services::new();
    let body = r#"
        (func (export "proxy_on_delete") (param $ctx i32)
            (i32.store (i32.const 308) (local.get $ctx))
            (i32.store (i32.const 312) (i32.add (i32.load (i32.const 312)) (i32.const 1))))
    "#;
    let wasm = wat_plugin("", &format!("{body}{GETTER}"));
    let (_plugin, mut vm) = start(&engine, &wasm, PluginConfig::named("plain"), &services);
    assert_eq!(vm.shutdown().unwrap(), Shutdown::Complete);
    assert_eq!(get(&mut vm, shut::DELETES), 1);
    assert_eq!(get(&mut vm, shut::DELETED_CONTEXT), 1);
    assert!(vm.is_shut_down());
}
