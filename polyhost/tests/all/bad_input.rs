//! Bad plugins get typed errors that name the plugin; the host never panics.

use crate::harness::{
    Services, engine_config_tests, engine_if_capable, fixture, request, wat_module, wat_plugin,
};
use polyhost::engine_core::{ErrorKind, HostContext, Instance, Result as EngineResult, Value};
use polyhost::{Engine, EngineConfig, HeaderMap, PeerType, Plugin, PluginConfig, PluginErrorKind};
use std::time::Duration;

engine_config_tests!(
    invalid_wasm_is_rejected,
    text_and_non_wasm_get_one_answer_on_every_engine,
    marker_that_is_not_a_function_is_rejected,
    module_without_memory_is_rejected,
    missing_marker_is_rejected,
    missing_allocator_is_rejected,
    unknown_import_is_named,
    wrong_callback_signature_is_named,
    trap_in_each_callback_names_it,
    trap_in_allocator_fails_the_call,
    out_of_bounds_pointers_return_invalid_memory_access,
    oversized_header_maps_are_refused,
    endless_loop_is_interrupted,
    memory_hog_hits_the_limit,
);

fn load<E: Engine>(
    engine: &E,
    wasm: &[u8],
    name: &str,
) -> Result<Plugin<E>, polyhost::PluginError> {
    Plugin::load(
        engine,
        wasm,
        PluginConfig::named(name),
        Services::new().host,
    )
}

fn expect_load_error<E: Engine>(engine: &E, wasm: &[u8], kind: PluginErrorKind, needle: &str) {
    let err = load(engine, wasm, "broken-plugin")
        .err()
        .expect("load must fail");
    assert_eq!(err.kind(), kind, "{err}");
    let text = err.to_string();
    assert!(text.contains("broken-plugin"), "{text}");
    assert!(text.contains(needle), "`{needle}` not in: {text}");
}

fn invalid_wasm_is_rejected<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    expect_load_error(
        &engine,
        b"\0asm\x01\0\0\0\x05garbage",
        PluginErrorKind::InvalidModule,
        "broken-plugin",
    );
    expect_load_error(
        &engine,
        b"not wasm at all",
        PluginErrorKind::InvalidModule,
        "invalid WebAssembly",
    );
}

/// Loads `wasm` as plugin `broken-plugin` and returns the whole error text,
/// which must be the same on every engine: the checks that produce these
/// errors run before (or instead of) any engine-specific compilation.
fn load_error_text<E: Engine>(engine: &E, wasm: &[u8], kind: PluginErrorKind) -> String {
    let err = load(engine, wasm, "broken-plugin")
        .err()
        .unwrap_or_else(|| panic!("{} loaded a module it must refuse", engine.name()));
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(err.plugin(), "broken-plugin");
    // No engine name in the text: nothing engine-specific went into it.
    assert!(err.engine_error().is_none(), "{err}");
    err.to_string()
}

fn text_and_non_wasm_get_one_answer_on_every_engine<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let engine = make(&EngineConfig::default()).unwrap();
    let text_answer = "plugin `broken-plugin` invalid WebAssembly module: this is WebAssembly text, not a binary module; compile it with `wat2wasm` or `wasm-tools parse`";
    // The committed source of a fixture, which starts with `;;` comments
    // (wasmer and wasmi used to compile text; wasmtime did not).
    let source = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/wat/no_callbacks.wat"
    ))
    .unwrap();
    assert_eq!(
        load_error_text(&engine, &source, PluginErrorKind::InvalidModule),
        text_answer
    );
    for text in [
        "(module)".as_bytes(),
        b"  \n\t(module (memory (export \"memory\") 1))",
        b"(; block comment ;) (module)",
    ] {
        assert_eq!(
            load_error_text(&engine, text, PluginErrorKind::InvalidModule),
            text_answer
        );
    }
    assert_eq!(
        load_error_text(&engine, b"", PluginErrorKind::InvalidModule),
        "plugin `broken-plugin` invalid WebAssembly module: the module is empty"
    );
    assert_eq!(
        load_error_text(&engine, b"\x7fELF\x02\x01", PluginErrorKind::InvalidModule),
        "plugin `broken-plugin` invalid WebAssembly module: not a WebAssembly binary: it starts with [7f, 45, 4c, 46], not the magic bytes `\\0asm`"
    );
    // The same module as a binary loads, so the refusal is about the format.
    assert!(load(&engine, &fixture("wat", "no_callbacks"), "good").is_ok());
}

fn marker_that_is_not_a_function_is_rejected<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let engine = make(&EngineConfig::default()).unwrap();
    assert_eq!(
        load_error_text(
            &engine,
            &fixture("wat", "global_marker"),
            PluginErrorKind::BadExport
        ),
        "plugin `broken-plugin` export has the wrong signature: export `proxy_abi_version_0_2_1` is not a function; the proxy-wasm ABI marker must be an exported function"
    );
    // A global marker next to a real one is refused too: the module is
    // malformed whichever marker a host would pick.
    let wasm = wat_module(
        "proxy_abi_version_0_2_0",
        "",
        r#"(global (export "proxy_abi_version_0_1_0") i32 (i32.const 0))"#,
    );
    assert!(
        load_error_text(&engine, &wasm, PluginErrorKind::BadExport)
            .contains("export `proxy_abi_version_0_1_0` is not a function")
    );
}

fn module_without_memory_is_rejected<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let answer = "plugin `broken-plugin` missing exported memory: the module exports no linear memory named `memory`";
    assert_eq!(
        load_error_text(
            &engine,
            &fixture("wat", "no_memory"),
            PluginErrorKind::MissingMemory
        ),
        answer
    );
    // Nor is a global exported as `memory` (engines list it as a
    // non-function export, like a memory).
    assert_eq!(
        load_error_text(
            &engine,
            &fixture("wat", "memory_global"),
            PluginErrorKind::MissingMemory
        ),
        answer
    );
    // A memory under another name is not the plugin's memory either.
    let wasm = wat::parse_str(
        r#"(module (memory (export "heap") 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "malloc") (param i32) (result i32) (i32.const 4096)))"#,
    )
    .unwrap();
    assert_eq!(
        load_error_text(&engine, &wasm, PluginErrorKind::MissingMemory),
        answer
    );
}

fn missing_marker_is_rejected<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let wasm = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "malloc") (param i32) (result i32) (i32.const 0)))"#).unwrap();
    expect_load_error(
        &engine,
        &wasm,
        PluginErrorKind::MissingAbiVersion,
        "proxy-wasm ABI version",
    );
    let wasm = wat_module("proxy_abi_version_9_9_9", "", "");
    expect_load_error(
        &engine,
        &wasm,
        PluginErrorKind::MissingAbiVersion,
        "proxy_abi_version_0_2_1",
    );
}

fn missing_allocator_is_rejected<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let wasm = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#,
    )
    .unwrap();
    expect_load_error(
        &engine,
        &wasm,
        PluginErrorKind::MissingAllocator,
        "proxy_on_memory_allocate",
    );
}

fn unknown_import_is_named<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let wasm = wat_plugin(
        r#"(import "env" "proxy_does_not_exist" (func (param i32) (result i32)))"#,
        "",
    );
    expect_load_error(
        &engine,
        &wasm,
        PluginErrorKind::UnknownImport,
        "proxy_does_not_exist",
    );
    // A known name with the wrong type is refused too.
    let wasm = wat_plugin(
        r#"(import "env" "proxy_log" (func (param i32) (result i32)))"#,
        "",
    );
    expect_load_error(&engine, &wasm, PluginErrorKind::UnknownImport, "proxy_log");
}

fn wrong_callback_signature_is_named<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let wasm = wat_plugin(
        "",
        r#"(func (export "proxy_on_request_headers") (param i32 i32) (result i32) (i32.const 0))"#,
    );
    expect_load_error(
        &engine,
        &wasm,
        PluginErrorKind::BadExport,
        "proxy_on_request_headers",
    );
}

/// Every callback of a benign plugin, `(name, params, returns)`.
const CALLBACKS: &[(&str, usize, bool)] = &[
    ("_initialize", 0, false),
    ("proxy_on_context_create", 2, false),
    ("proxy_on_vm_start", 2, true),
    ("proxy_on_configure", 2, true),
    ("proxy_on_tick", 1, false),
    ("proxy_on_foreign_function", 3, false),
    ("proxy_on_request_headers", 3, true),
    ("proxy_on_request_body", 3, true),
    ("proxy_on_request_trailers", 2, true),
    ("proxy_on_response_headers", 3, true),
    ("proxy_on_response_body", 3, true),
    ("proxy_on_response_trailers", 2, true),
    ("proxy_on_log", 1, false),
    ("proxy_on_done", 1, true),
    ("proxy_on_delete", 1, false),
    ("proxy_on_new_connection", 1, true),
    ("proxy_on_downstream_data", 3, true),
    ("proxy_on_upstream_data", 3, true),
    ("proxy_on_downstream_connection_close", 2, false),
    ("proxy_on_upstream_connection_close", 2, false),
];

/// A plugin where `trapping` executes `unreachable` and every other callback
/// succeeds (start callbacks return true; vm_start sets a 1 ms tick).
fn plugin_trapping_in(trapping: &str) -> Vec<u8> {
    let mut body = String::new();
    for (name, params, returns) in CALLBACKS {
        let params = "(param i32)".repeat(*params);
        let result = if *returns { "(result i32)" } else { "" };
        let code = if *name == trapping {
            "unreachable".to_string()
        } else if *name == "proxy_on_vm_start" {
            "(drop (call $tick (i32.const 1))) (i32.const 1)".to_string()
        } else if *returns {
            // true for the start callbacks and on_done, Continue (0) for the rest.
            let v = matches!(*name, "proxy_on_configure" | "proxy_on_done");
            format!("(i32.const {})", i32::from(v))
        } else {
            String::new()
        };
        body.push_str(&format!(
            "(func (export \"{name}\") {params} {result} {code})\n"
        ));
    }
    wat_plugin(
        r#"(import "env" "proxy_set_tick_period_milliseconds" (func $tick (param i32) (result i32)))"#,
        &body,
    )
}

fn trap_in_each_callback_names_it<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    for (callback, _, _) in CALLBACKS {
        let plugin = load(&engine, &plugin_trapping_in(callback), "trappy").unwrap();
        let result = (|| {
            let mut vm = plugin.new_vm()?;
            vm.tick(vm.next_tick().unwrap())?;
            vm.call_foreign_function(1, b"")?;
            let id = vm.create_http_stream()?;
            vm.on_request_headers(id, request("/"), false)?;
            vm.on_request_body(id, b"b", false)?;
            vm.on_request_trailers(id, HeaderMap::new())?;
            vm.on_response_headers(id, HeaderMap::new(), false)?;
            vm.on_response_body(id, b"b", true)?;
            vm.on_response_trailers(id, HeaderMap::new())?;
            vm.finish_stream(id)?;
            let (conn, _) = vm.create_tcp_stream()?;
            vm.on_downstream_data(conn, b"d", false)?;
            vm.on_upstream_data(conn, b"u", false)?;
            vm.on_downstream_close(conn, PeerType::Remote)?;
            vm.on_upstream_close(conn, PeerType::Remote)?;
            Ok::<_, polyhost::PluginError>(vm)
        })();
        let err = result
            .err()
            .unwrap_or_else(|| panic!("a trap in {callback} went unnoticed"));
        assert_eq!(err.kind(), PluginErrorKind::Trap, "{callback}: {err}");
        assert_eq!(err.callback(), Some(*callback), "{err}");
        assert_eq!(err.plugin(), "trappy");
        let text = err.to_string();
        assert!(text.contains(callback) && text.contains("trappy"), "{text}");
    }
    // After a trap the VM refuses work; a new VM from the same plugin serves.
    let plugin = load(
        &engine,
        &plugin_trapping_in("proxy_on_request_body"),
        "once",
    )
    .unwrap();
    let mut vm = plugin.new_vm().unwrap();
    let id = vm.create_http_stream().unwrap();
    assert!(vm.on_request_body(id, b"x", true).is_err());
    assert!(vm.is_failed());
    assert_eq!(
        vm.create_http_stream().unwrap_err().kind(),
        PluginErrorKind::VmFailed
    );
    let mut fresh = plugin.new_vm().unwrap();
    let id = fresh.create_http_stream().unwrap();
    assert!(fresh.on_request_headers(id, request("/"), true).is_ok());
}

fn trap_in_allocator_fails_the_call<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let wasm = wat::parse_str(
        r#"(module
            (import "env" "proxy_get_header_map_pairs" (func $pairs (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_memory_allocate") (param i32) (result i32) unreachable)
            (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                (call $pairs (i32.const 0) (i32.const 16) (i32.const 20))))"#,
    )
    .unwrap();
    let mut vm = load(&engine, &wasm, "bad-alloc").unwrap().new_vm().unwrap();
    let id = vm.create_http_stream().unwrap();
    let err = vm.on_request_headers(id, request("/"), true).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::Trap, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_request_headers"));
    assert!(err.to_string().contains("allocator"), "{err}");
}

fn out_of_bounds_pointers_return_invalid_memory_access<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let engine = make(&EngineConfig::default()).unwrap();
    let wasm = wat_plugin(
        r#"(import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
           (import "env" "proxy_get_current_time_nanoseconds" (func $time (param i32) (result i32)))
           (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))"#,
        r#"(data (i32.const 32) "plugin_name")
           (func (export "message_past_end") (result i32) (call $log (i32.const 2) (i32.const 65530) (i32.const 100)))
           (func (export "huge_length") (result i32) (call $log (i32.const 2) (i32.const 0) (i32.const -1)))
           (func (export "out_pointer_past_end") (result i32) (call $time (i32.const 65535)))
           (func (export "result_pointer_past_end") (result i32)
               (call $prop (i32.const 32) (i32.const 11) (i32.const 70000) (i32.const 8)))
           (func (export "in_bounds") (result i32) (call $time (i32.const 8)))"#,
    );
    let mut vm = load(&engine, &wasm, "oob").unwrap().new_vm().unwrap();
    for (f, status) in [
        ("message_past_end", 6),
        ("huge_length", 6),
        ("out_pointer_past_end", 6),
        ("result_pointer_past_end", 6),
        ("in_bounds", 0),
    ] {
        assert_eq!(
            vm.instance().call_dynamic(f, &[]).unwrap(),
            [Value::I32(status)],
            "{f}"
        );
    }
    assert!(vm.logs().is_empty());
    assert!(!vm.is_failed());
    // The embedder's own accessors are checked too.
    let err = vm.instance().read_vec(65530, 100).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MemoryOutOfBounds);
}

fn oversized_header_maps_are_refused<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let wasm = wat_plugin(
        r#"(import "env" "proxy_set_header_map_pairs" (func $set (param i32 i32 i32) (result i32)))
           (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))"#,
        r#"(data (i32.const 16) "k")
           (global $too_many (mut i32) (i32.const -1))
           (global $truncated (mut i32) (i32.const -1))
           (global $add_over (mut i32) (i32.const -1))
           (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
               (local $i i32)
               ;; A map that claims 1025 pairs.
               (i32.store (i32.const 256) (i32.const 1025))
               (global.set $too_many (call $set (i32.const 0) (i32.const 256) (i32.const 4)))
               ;; A map that claims one pair but stops short.
               (i32.store (i32.const 256) (i32.const 1))
               (global.set $truncated (call $set (i32.const 0) (i32.const 256) (i32.const 6)))
               ;; Adding past 1024 pairs.
               (block $done (loop $next
                   (global.set $add_over (call $add (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 16) (i32.const 1)))
                   (br_if $done (i32.ne (global.get $add_over) (i32.const 0)))
                   (local.set $i (i32.add (local.get $i) (i32.const 1)))
                   (br_if $next (i32.lt_u (local.get $i) (i32.const 2000)))))
               (i32.const 0))
           (func (export "too_many") (result i32) (global.get $too_many))
           (func (export "truncated") (result i32) (global.get $truncated))
           (func (export "add_over") (result i32) (global.get $add_over))"#,
    );
    let mut vm = load(&engine, &wasm, "big-maps").unwrap().new_vm().unwrap();
    let id = vm.create_http_stream().unwrap();
    vm.on_request_headers(id, request("/"), true).unwrap();
    assert_eq!(
        vm.instance().call_dynamic("too_many", &[]).unwrap(),
        [Value::I32(2)]
    );
    assert_eq!(
        vm.instance().call_dynamic("truncated", &[]).unwrap(),
        [Value::I32(4)]
    );
    assert_eq!(
        vm.instance().call_dynamic("add_over", &[]).unwrap(),
        [Value::I32(2)]
    );
    assert_eq!(
        vm.stream(id).unwrap().request_headers.len(),
        polyhost::MAX_MAP_PAIRS
    );
}

const ENDLESS: &str = r#"(func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (loop $forever (br $forever)) (i32.const 0))"#;

fn endless_loop_is_interrupted<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let caps = make(&EngineConfig::default()).unwrap().capabilities();
    let mut config = EngineConfig::default();
    if caps.interruption {
        config.call_timeout = Some(Duration::from_millis(50));
    } else if caps.fuel {
        config.fuel_per_call = Some(10_000_000);
    } else {
        let asked = EngineConfig {
            call_timeout: Some(Duration::from_millis(50)),
            ..EngineConfig::default()
        };
        let err = make(&asked)
            .err()
            .expect("an engine without interruption must refuse a timeout");
        assert_eq!(err.kind(), ErrorKind::NotSupported);
        return;
    }
    let engine = make(&config).unwrap();
    let mut vm = load(&engine, &wat_plugin("", ENDLESS), "spinner")
        .unwrap()
        .new_vm()
        .unwrap();
    let id = vm.create_http_stream().unwrap();
    let err = vm.on_request_headers(id, request("/"), true).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::Interrupted, "{err}");
    assert_eq!(err.callback(), Some("proxy_on_request_headers"));
}

fn memory_hog_hits_the_limit<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let config = EngineConfig {
        max_memory_bytes: 4 << 20,
        ..EngineConfig::default()
    };
    let Some(engine) = engine_if_capable(make, &config, |c| c.memory_limit) else {
        return;
    };
    let wasm = wat_plugin(
        "",
        r#"(global $pages (mut i32) (i32.const 0))
           (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
               ;; Grow one page at a time until refused, then trap.
               (block $refused (loop $more
                   (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
                   (global.set $pages (i32.add (global.get $pages) (i32.const 1)))
                   (br $more)))
               unreachable)
           (func (export "pages") (result i32) (global.get $pages))"#,
    );
    let mut vm = load(&engine, &wasm, "hog").unwrap().new_vm().unwrap();
    let id = vm.create_http_stream().unwrap();
    let err = vm.on_request_headers(id, request("/"), true).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::Trap, "{err}");
    // 4 MiB = 64 pages; the module started with one.
    assert_eq!(vm.instance().memory_size(), 4 << 20);
}
