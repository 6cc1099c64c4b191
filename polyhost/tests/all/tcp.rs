//! TCP (network) filters.

use crate::harness::{RUST_TARGETS, Services, engine_tests, fixture, log_texts, start};
use polyhost::{Decision, Engine, PeerType, PluginConfig};

engine_tests!(
    tcp_filter_rewrites_both_directions,
    a_connections_provider_answers_in_proxy_on_new_connection,
);

fn tcp_filter_rewrites_both_directions<E: Engine>(engine: E) {
    for target in RUST_TARGETS {
        let services = Services::new();
        let (_, mut vm) = start(
            &engine,
            &fixture(target, "tcp_upper"),
            PluginConfig::named("tcp"),
            &services,
        );
        let (conn, decision) = vm.create_tcp_stream().unwrap();
        assert_eq!(decision, Decision::Continue);
        assert_eq!(services.counter("tcp_connections"), Some(1));
        assert_eq!(
            vm.on_downstream_data(conn, b"hello World 1", false)
                .unwrap(),
            Decision::Continue
        );
        assert_eq!(vm.take_downstream_data(conn), b"HELLO WORLD 1");
        assert_eq!(
            vm.on_upstream_data(conn, b"reply", false).unwrap(),
            Decision::Continue
        );
        assert_eq!(vm.take_upstream_data(conn), b"> reply");
        vm.on_downstream_close(conn, PeerType::Remote).unwrap();
        vm.on_upstream_close(conn, PeerType::Local).unwrap();
        let logs = log_texts(&vm);
        assert!(
            logs.contains(&"info tcp: new connection".to_string()),
            "{target}: {logs:?}"
        );
        assert!(logs.contains(&"info tcp: downstream closed by Remote".to_string()));
        assert!(logs.contains(&"info tcp: upstream closed by Local".to_string()));
        vm.finish_stream(conn).unwrap();
    }
}

/// A connection's properties as an embedder provides them.
struct ConnectionFacts;

impl polyhost::services::PropertyProvider for ConnectionFacts {
    fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>> {
        match path {
            [b"source", b"address"] => Some(b"10.9.8.7:6543".to_vec()),
            _ => None,
        }
    }
}

fn a_connections_provider_answers_in_proxy_on_new_connection<E: Engine>(engine: E) {
    // Logs `source.address` (provided) and `upstream.address` (no one has
    // it: nothing is logged) as the connection starts.
    let imports = r#"
        (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (import "env" "proxy_get_property"
            (func $get (param i32 i32 i32 i32) (result i32)))
    "#;
    let body = r#"
        (data (i32.const 32) "source\00address")
        (data (i32.const 48) "upstream\00address")
        (func $log_property (param $path i32) (param $len i32)
            (if (i32.eqz (call $get (local.get $path) (local.get $len)
                    (i32.const 80) (i32.const 84)))
                (then (drop (call $log (i32.const 2)
                    (i32.load (i32.const 80)) (i32.load (i32.const 84)))))))
        (func (export "proxy_on_new_connection") (param i32) (result i32)
            (call $log_property (i32.const 32) (i32.const 14))
            (call $log_property (i32.const 48) (i32.const 16))
            (i32.const 0))
    "#;
    let services = Services::new();
    let wasm = crate::harness::wat_plugin(imports, body);
    let (_, mut vm) = start(&engine, &wasm, PluginConfig::named("facts"), &services);
    let provided = polyhost::StreamProperties(std::sync::Arc::new(ConnectionFacts));
    let root = vm.roots()[0];
    let (conn, decision) = vm.create_tcp_stream_provided(root, provided).unwrap();
    assert_eq!(decision, Decision::Continue);
    assert_eq!(
        log_texts(&vm),
        ["info 10.9.8.7:6543"],
        "on {}",
        engine.name()
    );
    vm.finish_stream(conn).unwrap();
}
