//! ABI detection and the 0.1.0 legacy calls.

use crate::harness::{Services, engine_tests, log_texts, request, start, wat_module};
use polyhost::{AbiVersion, Decision, Engine, PluginConfig, StreamEvent, StreamType};

engine_tests!(
    legacy_plugin_uses_0_1_0_calls,
    markers_select_the_abi_version
);

/// A 0.1.0 plugin: two-parameter headers callback, configuration through
/// `proxy_get_configuration`, `proxy_continue_request` and
/// `proxy_clear_route_cache`, and an empty value for a missing header.
const LEGACY_IMPORTS: &str = r#"
    (import "env" "proxy_get_configuration" (func $get_config (param i32 i32) (result i32)))
    (import "env" "proxy_continue_request" (func $continue (result i32)))
    (import "env" "proxy_clear_route_cache" (func $clear (result i32)))
    (import "env" "proxy_get_header_map_value" (func $get_value (param i32 i32 i32 i32 i32) (result i32)))
    (import "env" "proxy_get_buffer_bytes" (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
    (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
"#;

const LEGACY_BODY: &str = r#"
    (data (i32.const 64) "x-missing")
    (global $missing_status (mut i32) (i32.const -1))
    (global $missing_len (mut i32) (i32.const -1))
    (global $buffer_status (mut i32) (i32.const -1))
    (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
    (func (export "proxy_on_configure") (param i32 i32) (result i32)
        (drop (call $get_config (i32.const 128) (i32.const 132)))
        (drop (call $log (i32.const 2) (i32.load (i32.const 128)) (i32.load (i32.const 132))))
        (global.set $buffer_status
            (call $get_buffer (i32.const 7) (i32.const 0) (i32.const 100) (i32.const 136) (i32.const 140)))
        (i32.const 1))
    (func (export "proxy_on_request_headers") (param i32 i32) (result i32)
        (global.set $missing_status
            (call $get_value (i32.const 0) (i32.const 64) (i32.const 9) (i32.const 144) (i32.const 148)))
        (global.set $missing_len (i32.load (i32.const 148)))
        (drop (call $continue))
        (drop (call $clear))
        (i32.const 1))
    (func (export "missing_status") (result i32) (global.get $missing_status))
    (func (export "missing_len") (result i32) (global.get $missing_len))
    (func (export "buffer_status") (result i32) (global.get $buffer_status))
"#;

fn legacy_plugin_uses_0_1_0_calls<E: Engine>(engine: E) {
    let services = Services::new();
    let wasm = wat_module("proxy_abi_version_0_1_0", LEGACY_IMPORTS, LEGACY_BODY);
    let config = PluginConfig {
        configuration: "legacy-config".into(),
        ..PluginConfig::named("legacy")
    };
    let (plugin, mut vm) = start(&engine, &wasm, config, &services);
    assert_eq!(plugin.info().abi, AbiVersion::V0_1_0);
    assert_eq!(log_texts(&vm), ["info legacy-config"]);
    let id = vm.create_http_stream().unwrap();
    assert_eq!(
        vm.on_request_headers(id, request("/"), true).unwrap(),
        Decision::Pause
    );
    assert_eq!(
        vm.take_events(id),
        [
            StreamEvent::Resume(StreamType::HttpRequest),
            StreamEvent::ClearRouteCache
        ]
    );
    let get = |vm: &mut polyhost::Vm<E>, f: &str| {
        use polyhost::engine_core::Instance;
        vm.instance().call_dynamic(f, &[]).unwrap()[0]
    };
    use polyhost::engine_core::Value;
    // 0.1.0: a missing header is an empty value, not NotFound.
    assert_eq!(get(&mut vm, "missing_status"), Value::I32(0));
    assert_eq!(get(&mut vm, "missing_len"), Value::I32(0));
    // 0.1.0 has no configuration buffers.
    assert_eq!(get(&mut vm, "buffer_status"), Value::I32(1));
}

fn markers_select_the_abi_version<E: Engine>(engine: E) {
    let services = Services::new();
    for (marker, abi) in [
        ("proxy_abi_version_0_2_0", AbiVersion::V0_2_0),
        ("proxy_abi_version_0_2_1", AbiVersion::V0_2_1),
        ("proxy_abi_version_0_2_100", AbiVersion::V0_2_1),
    ] {
        let wasm = wat_module(marker, "", "");
        let (plugin, mut vm) = start(&engine, &wasm, PluginConfig::named(marker), &services);
        assert_eq!(plugin.info().abi, abi);
        // A plugin without callbacks lets everything through.
        let id = vm.create_http_stream().unwrap();
        assert_eq!(
            vm.on_request_headers(id, request("/"), false).unwrap(),
            Decision::Continue
        );
        assert_eq!(
            vm.on_request_body(id, b"x", true).unwrap(),
            Decision::Continue
        );
        assert_eq!(vm.take_request_body(id), b"x");
        vm.finish_stream(id).unwrap();
    }
}
