//! TCP (network) filters.

use crate::harness::{RUST_TARGETS, Services, engine_tests, fixture, log_texts, start};
use polyhost::{Decision, Engine, PeerType, PluginConfig};

engine_tests!(tcp_filter_rewrites_both_directions);

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
