//! TCP listeners: network Wasm filters in front of `tcp_proxy`, on real
//! sockets, for the `tcp_upper` plugin of every SDK language on every
//! engine.

use crate::harness::*;
use std::io::{Read, Write};

// Something outside the test may open and at once close a connection to a
// new listening port (the sandbox probes them), so the checks below allow
// extra connections that carry no bytes instead of counting exact totals.

#[test]
fn tcp_upper_filters_both_directions_in_every_language_on_every_engine() {
    let upstream = TcpUpstream::start();
    for engine in engines() {
        for (language, file) in tcp_upper_plugins() {
            let what = format!("{language} tcp_upper on {engine}");
            let admin = free_port();
            let port = free_port();
            let dead_port = free_port();
            let plugin = || [WasmFilterSpec::new("tcp_upper", engine, &file)];
            let listeners = [
                tcp_listener("tcp_in", port, "upstream", &plugin()),
                tcp_listener("tcp_dead", dead_port, "dead", &plugin()),
            ];
            let proxy = Proxy::start(&bootstrap(&listeners, upstream.addr, admin), admin, &[]);

            let sent = format!("hello World from {language} on {engine}");
            let answer = tcp_exchange(port, sent.as_bytes())
                .unwrap_or_else(|e| panic!("{what}: {e}\n{}", proxy.stderr()));
            // The upstream got the client's bytes upper-cased, and the
            // client got the upstream's answer behind the plugin's "> ".
            let upper = sent.to_ascii_uppercase().into_bytes();
            let received = upstream.received();
            assert_eq!(
                received.iter().filter(|r| **r == upper).count(),
                1,
                "{what}: {received:?}\n{}",
                proxy.stderr()
            );
            assert_eq!(
                String::from_utf8_lossy(&answer),
                format!("> got {} bytes", sent.len()),
                "{what}: {}",
                proxy.stderr()
            );
            // The client ended its stream first; the proxy then ended the
            // upstream's. Each accepted connection logs this once.
            assert!(
                eventually(|| {
                    let log = proxy.stderr();
                    let n = stat(&proxy, "tcp.tcp_in.downstream_cx_total").unwrap_or(0);
                    n >= 1
                        && log.matches("tcp: downstream closed by Remote").count() as u64 == n
                        && log.matches("tcp: upstream closed by Local").count() as u64 == n
                }),
                "{what}: {}",
                proxy.stderr()
            );
            // Every connection the listeners accepted went through the
            // plugin; only the test's carried bytes.
            let accepted = || {
                stat(&proxy, "tcp.tcp_in.downstream_cx_total").unwrap_or(0)
                    + stat(&proxy, "tcp.tcp_dead.downstream_cx_total").unwrap_or(0)
            };
            assert!(
                eventually(|| stat(&proxy, "wasmcustom.tcp_connections") == Some(accepted())),
                "{what}: {}",
                proxy.admin("/stats").text()
            );
            assert!(accepted() >= 1, "{what}");
            assert_eq!(
                stat(&proxy, "tcp.tcp_in.downstream_cx_rx_bytes_total"),
                Some(sent.len() as u64),
                "{what}"
            );
            assert!(
                stat(&proxy, "tcp.tcp_in.downstream_cx_tx_bytes_total")
                    .is_some_and(|n| n >= answer.len() as u64),
                "{what}"
            );

            // Nothing listens behind `dead`: the client's connection is
            // closed without an answer; each such connection counts a
            // connect failure, logs UF, and the plugin hears that the proxy
            // closed the client's connection.
            let dead_accepted = || stat(&proxy, "tcp.tcp_dead.downstream_cx_total").unwrap_or(0);
            let before = dead_accepted();
            match tcp_exchange(dead_port, b"") {
                Ok(answer) => assert!(answer.is_empty(), "{what}: {answer:?}"),
                Err(e) => assert!(e.closed_by_peer(), "{what}: {e}"),
            }
            assert!(
                eventually(|| {
                    let log = proxy.stderr();
                    let n = dead_accepted();
                    n > before
                        && log.matches("flags=UF").count() as u64 == n
                        && log.matches("tcp: downstream closed by Local").count() as u64 == n
                        && stat(&proxy, "cluster.dead.upstream_cx_connect_fail") == Some(n)
                }),
                "{what}: {}\n{}",
                proxy.admin("/stats").text(),
                proxy.stderr()
            );
            assert_eq!(
                stat(&proxy, "tcp.tcp_dead.downstream_cx_tx_bytes_total"),
                Some(0),
                "{what}"
            );
            assert_eq!(proxy.quit(), Some(0), "{what}");
        }
    }
}

/// A network plugin that traps on downstream data and lets everything
/// else through.
const TRAP_ON_DATA: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) unreachable)
  (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32) (i32.const 0)))
"#;

#[test]
fn failing_network_plugins_follow_their_failure_policy_on_every_engine() {
    let upstream = TcpUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let trap = wat_plugin(dir.path(), "trap_on_data", TRAP_ON_DATA);
    for engine in engines() {
        let admin = free_port();
        let open_port = free_port();
        let closed_port = free_port();
        let with_policy = |policy| {
            let mut spec = WasmFilterSpec::new("trap", engine, &trap);
            spec.failure_policy = Some(policy);
            [spec]
        };
        let listeners = [
            tcp_listener("open", open_port, "upstream", &with_policy("FAIL_OPEN")),
            tcp_listener(
                "closed",
                closed_port,
                "upstream",
                &with_policy("FAIL_CLOSED"),
            ),
        ];
        let proxy = Proxy::start(&bootstrap(&listeners, upstream.addr, admin), admin, &[]);

        // FAIL_OPEN: the bytes the plugin failed on go through unfiltered.
        let sent = format!("fail open on {engine}");
        let answer = tcp_exchange(open_port, sent.as_bytes())
            .unwrap_or_else(|e| panic!("{engine}: {e}\n{}", proxy.stderr()));
        assert_eq!(
            String::from_utf8_lossy(&answer),
            format!("got {} bytes", sent.len()),
            "{engine}: {}",
            proxy.stderr()
        );
        assert!(
            upstream.received().contains(&sent.clone().into_bytes()),
            "{engine}"
        );

        // FAIL_CLOSED: the connection is closed and nothing reaches the
        // upstream.
        let sent = format!("fail closed on {engine}");
        match tcp_exchange(closed_port, sent.as_bytes()) {
            Ok(answer) => assert!(answer.is_empty(), "{engine}: {answer:?}"),
            Err(e) => assert!(e.closed_by_peer(), "{engine}: {e}"),
        }
        assert!(
            eventually(|| proxy.stderr().contains("plugin trap failed")),
            "{engine}: {}",
            proxy.stderr()
        );
        assert!(
            !upstream
                .received()
                .iter()
                .any(|r| r.starts_with(b"fail closed")),
            "{engine}"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

#[test]
fn sighup_swaps_a_tcp_listeners_filters_on_every_engine() {
    let upstream = TcpUpstream::start();
    let (_, file) = tcp_upper_plugins()
        .into_iter()
        .find(|(language, _)| *language == "rust")
        .expect("the Rust tcp_upper");
    for engine in engines() {
        let admin = free_port();
        let port = free_port();
        let filtered = [tcp_listener(
            "tcp_in",
            port,
            "upstream",
            &[WasmFilterSpec::new("tcp_upper", engine, &file)],
        )];
        let proxy = Proxy::start(&bootstrap(&filtered, upstream.addr, admin), admin, &[]);
        let answer = tcp_exchange(port, b"before").unwrap();
        assert_eq!(answer, b"> got 6 bytes", "{engine}: {}", proxy.stderr());

        // Without the plugin, later connections pass unchanged.
        let plain = [tcp_listener("tcp_in", port, "upstream", &[])];
        let outcome = proxy.reload(&bootstrap(&plain, upstream.addr, admin), 1);
        assert!(outcome.contains("reloaded"), "{engine}: {outcome}");
        let answer = tcp_exchange(port, b"after").unwrap();
        assert_eq!(answer, b"got 5 bytes", "{engine}: {}", proxy.stderr());
        assert!(upstream.received().contains(&b"after".to_vec()), "{engine}");

        // A listener cannot turn into an HTTP one without a restart.
        let http = [http_listener("tcp_in", port, &[])];
        let outcome = proxy.reload(&bootstrap(&http, upstream.addr, admin), 2);
        assert!(outcome.contains("not loaded"), "{engine}: {outcome}");
        assert!(outcome.contains("restart"), "{engine}: {outcome}");
        let answer = tcp_exchange(port, b"still tcp").unwrap();
        assert_eq!(answer, b"got 9 bytes", "{engine}");
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

#[test]
fn idle_connections_close_after_the_idle_timeout() {
    let upstream = TcpUpstream::start();
    let admin = free_port();
    let port = free_port();
    let listener = tcp_listener("idle", port, "upstream", &[]).replace(
        "stat_prefix: idle\n",
        "stat_prefix: idle\n          idle_timeout: 0.3s\n",
    );
    let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);

    // A client that sends nothing is closed by the proxy once no byte has
    // moved for 0.3 s, and the close is counted.
    let started = std::time::Instant::now();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let read = std::io::Read::read_to_end(&mut client, &mut answer);
    assert!(
        read.is_ok()
            || read
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
        "{read:?}\n{}",
        proxy.stderr()
    );
    assert!(answer.is_empty(), "{answer:?}");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "closed before the idle timeout: {:?}",
        started.elapsed()
    );
    assert!(
        eventually(|| stat(&proxy, "tcp.idle.idle_timeout").is_some_and(|n| n >= 1)),
        "{}",
        proxy.admin("/stats").text()
    );

    // A connection that moves a byte every 0.2 s lives longer than the
    // timeout: each byte starts it again.
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    for _ in 0..5 {
        std::io::Write::write_all(&mut client, b"x").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut answer = Vec::new();
    std::io::Read::read_to_end(&mut client, &mut answer).unwrap();
    assert_eq!(String::from_utf8_lossy(&answer), "got 5 bytes");
    assert_eq!(proxy.quit(), Some(0));
}

/// `tcp_proxy`'s `access_log`: a line per connection when it closes, with
/// the bytes each way, the upstream and the `UF` flag of an upstream that
/// refuses.
#[test]
fn tcp_access_logs_write_a_line_per_connection() {
    let upstream = TcpUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tcp.json");
    let admin = free_port();
    let port = free_port();
    let dead_port = free_port();
    let access_log = format!(
        r#"          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format:
                json_format:
                  in: "%BYTES_RECEIVED%"
                  out: "%BYTES_SENT%"
                  code: "%RESPONSE_CODE%"
                  flags: "%RESPONSE_FLAGS%"
                  up: "%UPSTREAM_HOST%"
                  cluster: "%UPSTREAM_CLUSTER%"
                  client: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
                  listener: "%DOWNSTREAM_LOCAL_ADDRESS%"
"#,
        log.display()
    );
    let with_log = |listener: String| format!("{listener}{access_log}");
    let listeners = [
        with_log(tcp_listener("logged", port, "upstream", &[])),
        with_log(tcp_listener("logged_dead", dead_port, "dead", &[])),
    ];
    let proxy = Proxy::start(&bootstrap(&listeners, upstream.addr, admin), admin, &[]);

    assert_eq!(tcp_exchange(port, b"hello").unwrap(), b"got 5 bytes");
    // The dead cluster's connection is closed without an answer.
    let answer = tcp_exchange(dead_port, b"lost").unwrap_or_default();
    assert!(answer.is_empty(), "{answer:?}");
    let lines = || json_lines(&log);
    // Connections that carry nothing (see above) may log lines too: look
    // for the two this test made.
    let listener = format!("127.0.0.1:{port}");
    let found = || {
        let lines = lines();
        let served = lines
            .iter()
            .find(|l| l["in"] == 5 && l["listener"] == listener.as_str())
            .cloned();
        let failed = lines
            .iter()
            .find(|l| l["cluster"] == "dead" && l["flags"] == "UF")
            .cloned();
        served.zip(failed)
    };
    assert!(
        eventually(|| found().is_some()),
        "{:?}\n{}",
        lines(),
        proxy.stderr()
    );
    let (served, failed) = found().unwrap();
    assert_eq!(served["out"], 11, "{served}");
    assert_eq!(served["code"], serde_json::Value::Null, "{served}");
    assert_eq!(served["flags"], "-", "{served}");
    assert_eq!(served["up"], upstream.addr.to_string(), "{served}");
    assert_eq!(served["cluster"], "upstream", "{served}");
    assert_eq!(served["client"], "127.0.0.1", "{served}");
    assert_eq!(failed["out"], 0, "{failed}");
    assert!(
        failed["up"]
            .as_str()
            .is_some_and(|a| a.starts_with("127.0.0.1:")),
        "{failed}"
    );
    assert_eq!(proxy.quit(), Some(0));
}

/// A network plugin that logs `destination.address`, `source.address` and
/// `cluster_name` (in that order, an empty line for one it cannot read)
/// from `proxy_on_new_connection`, `upstream.address` from
/// `proxy_on_upstream_data`, and lets every byte through.
const LOG_PROPERTIES_ON_CONNECT: &str = r#"
(module
  (import "env" "proxy_get_property"
    (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "destination\00address")
  (data (i32.const 32) "source\00address")
  (data (i32.const 48) "cluster_name")
  (data (i32.const 96) "upstream\00address")
  (func $log_property (param $path i32) (param $len i32)
    (if (i32.eqz (call $get_property (local.get $path) (local.get $len) (i32.const 64) (i32.const 68)))
      (then (drop (call $log (i32.const 2) (i32.load (i32.const 64)) (i32.load (i32.const 68)))))
      (else (drop (call $log (i32.const 2) (i32.const 0) (i32.const 0))))))
  (func (export "proxy_on_new_connection") (param i32) (result i32)
    (call $log_property (i32.const 0) (i32.const 19))
    (call $log_property (i32.const 32) (i32.const 14))
    (call $log_property (i32.const 48) (i32.const 12))
    (i32.const 0))
  (func (export "proxy_on_downstream_data") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32)
    (call $log_property (i32.const 96) (i32.const 16))
    (i32.const 0)))
"#;

#[test]
fn connection_properties_are_readable_in_proxy_on_new_connection_on_every_engine() {
    let upstream = TcpUpstream::start();
    let dir = tempfile::tempdir().unwrap();
    let file = wat_plugin(dir.path(), "log_properties", LOG_PROPERTIES_ON_CONNECT);
    for engine in engines() {
        let admin = free_port();
        let port = free_port();
        let plugin = WasmFilterSpec::new("props", engine, &file);
        let listener = tcp_listener("props", port, "upstream", &[plugin]);
        let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let source = client.local_addr().unwrap().to_string();
        client.write_all(b"hi").unwrap();
        client.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"got 2 bytes", "{engine}: {}", proxy.stderr());
        // The plugin saw the listener's address, this client's own (so the
        // lines are this connection's, not a port probe's), the tcp_proxy
        // cluster, and then the upstream it connected to.
        let logged = || -> Vec<String> {
            (proxy.stderr().lines())
                .filter_map(|l| l.split_once("wasm log props: ").map(|(_, v)| v.to_string()))
                .collect()
        };
        let expected = [
            format!("127.0.0.1:{port}"),
            source,
            "upstream".to_string(),
            upstream.addr.to_string(),
        ];
        assert!(
            eventually(|| expected.iter().all(|line| logged().contains(line))),
            "{engine}: {:?}, not {expected:?}\n{}",
            logged(),
            proxy.stderr()
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// A network plugin that holds the first bytes of a connection and lets
/// them go from `proxy_on_tick` 100 ms later, with `proxy_continue_stream`.
const RESUME_FROM_TICK: &str = r#"
(module
  (import "env" "proxy_set_tick_period_milliseconds"
    (func $set_tick (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $set_context (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $held (mut i32) (i32.const 0))
  (func (export "proxy_on_new_connection") (param i32) (result i32) (i32.const 0))
  (func (export "proxy_on_downstream_data")
    (param $ctx i32) (param $size i32) (param $end i32) (result i32)
    (if (i32.eqz (global.get $held))
      (then
        (global.set $held (local.get $ctx))
        (drop (call $set_tick (i32.const 100)))
        (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_tick") (param $root i32)
    (drop (call $set_tick (i32.const 0)))
    (drop (call $set_context (global.get $held)))
    ;; 2: the downstream direction of a TCP stream.
    (drop (call $continue (i32.const 2))))
  (func (export "proxy_on_upstream_data") (param i32 i32 i32) (result i32) (i32.const 0)))
"#;

#[test]
fn a_tick_resumes_held_connection_data_on_every_engine() {
    // The upstream speaks HTTP, so it answers (and closes) as soon as the
    // request reaches it, while the client keeps its side open: without
    // the resume nothing would move until the client gave up.
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let file = wat_plugin(dir.path(), "resume_from_tick", RESUME_FROM_TICK);
    for engine in engines() {
        let admin = free_port();
        let port = free_port();
        let plugin = WasmFilterSpec::new("resume", engine, &file);
        let listener = tcp_listener("resume", port, "upstream", &[plugin]);
        let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);
        let path = format!("/tcp-resume/{engine}");
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        std::io::Write::write_all(&mut client, request.as_bytes()).unwrap();
        let mut answer = Vec::new();
        let read = std::io::Read::read_to_end(&mut client, &mut answer);
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            read.is_ok() && answer.starts_with("HTTP/1.1 200"),
            "{engine}: {read:?} {answer:?}\n{}",
            proxy.stderr()
        );
        assert!(upstream.last(&path).is_some(), "{engine}");
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}
