//! What the connection manager records about a request (Envoy's stream
//! info), as plugins read it from `proxy_on_log`: `request.time`,
//! `request.duration`, the total sizes, `response.flags` and
//! `response.code_details`.

use crate::harness::*;
use std::time::SystemTime;

/// Defines five gauges in `proxy_on_configure`; in `proxy_on_log` records
/// `request.time` in `time_ns`, `request.duration` in `duration_ns`,
/// `response.flags` in `flags`, `request.total_size` in `request_total` and
/// `response.total_size` in `response_total` (-1 for a missing one), and
/// logs `response.code_details`.
const STREAM_INFO_PLUGIN: &str = r#"
(module
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_define_metric" (func $define (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_record_metric" (func $record (param i32 i64) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "request\00time")
  (data (i32.const 80) "request\00duration")
  (data (i32.const 96) "response\00flags")
  (data (i32.const 112) "request\00total_size")
  (data (i32.const 144) "response\00total_size")
  (data (i32.const 176) "response\00code_details")
  (data (i32.const 208) "time_ns")
  (data (i32.const 224) "duration_ns")
  (data (i32.const 240) "flags")
  (data (i32.const 256) "request_total")
  (data (i32.const 272) "response_total")
  ;; 1: a gauge. The ids are kept at 320, 324, ... 336.
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $define (i32.const 1) (i32.const 208) (i32.const 7) (i32.const 320)))
    (drop (call $define (i32.const 1) (i32.const 224) (i32.const 11) (i32.const 324)))
    (drop (call $define (i32.const 1) (i32.const 240) (i32.const 5) (i32.const 328)))
    (drop (call $define (i32.const 1) (i32.const 256) (i32.const 13) (i32.const 332)))
    (drop (call $define (i32.const 1) (i32.const 272) (i32.const 14) (i32.const 336)))
    (i32.const 1))
  (func $record_property (param $path i32) (param $len i32) (param $id i32)
    (drop (call $record (i32.load (local.get $id))
      (if (result i64)
          (i32.eqz (call $prop (local.get $path) (local.get $len) (i32.const 16) (i32.const 20)))
        (then (i64.load (i32.load (i32.const 16))))
        (else (i64.const -1))))))
  (func (export "proxy_on_log") (param i32)
    (call $record_property (i32.const 64) (i32.const 12) (i32.const 320))
    (call $record_property (i32.const 80) (i32.const 16) (i32.const 324))
    (call $record_property (i32.const 96) (i32.const 14) (i32.const 328))
    (call $record_property (i32.const 112) (i32.const 18) (i32.const 332))
    (call $record_property (i32.const 144) (i32.const 19) (i32.const 336))
    (if (i32.eqz (call $prop (i32.const 176) (i32.const 21) (i32.const 16) (i32.const 20)))
      (then (drop (call $log (i32.const 2) (i32.load (i32.const 16)) (i32.load (i32.const 20))))))))
"#;

/// The plugin's gauges as `/stats` shows them, once `flags` reads `flags`
/// (each request overwrites them from its `proxy_on_log`).
fn gauges_after(proxy: &Proxy, flags: u64) -> std::collections::HashMap<String, u64> {
    let read = || -> std::collections::HashMap<String, u64> {
        (proxy.admin("/stats?filter=wasmcustom").text().lines())
            .filter_map(|l| l.strip_prefix("wasmcustom.")?.split_once(": "))
            .filter_map(|(name, value)| Some((name.to_string(), value.trim().parse().ok()?)))
            .collect()
    };
    eventually(|| read().get("flags") == Some(&flags) && read().len() == 5);
    read()
}

#[test]
fn the_request_s_life_reaches_proxy_on_log_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "stream_info", STREAM_INFO_PLUGIN);
    let nanos = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos() as u64;
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("stream_info", engine, &plugin)],
            &[],
        );
        let before = nanos(SystemTime::now());
        let reply = get(&format!("http://127.0.0.1:{port}/info"), &[]).unwrap();
        let after = nanos(SystemTime::now());
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let gauges = gauges_after(&proxy, 0);
        assert_eq!(gauges.get("flags"), Some(&0), "{engine}: {gauges:?}");
        let time = gauges["time_ns"];
        assert!(
            (before..=after).contains(&time),
            "{engine}: request.time {time} not in {before}..={after}"
        );
        let duration = gauges["duration_ns"];
        assert!(
            duration > 0 && duration <= after - before,
            "{engine}: request.duration {duration} ns, the client waited {} ns",
            after - before
        );
        // `:method GET :path /info`, a host, and the x-request-id and
        // x-forwarded-proto the proxy adds: more than the path alone.
        assert!(
            (40..4096).contains(&gauges["request_total"]),
            "{engine}: {gauges:?}"
        );
        // The upstream's 24-byte body and its headers.
        assert!(
            (24 + 20..4096).contains(&gauges["response_total"]),
            "{engine}: {gauges:?}"
        );

        // A cluster that refuses connections: 503, UF (0x20).
        let refused = get(&format!("http://127.0.0.1:{port}/dead"), &[]).unwrap();
        assert_eq!(refused.status, 503, "{engine}");
        let gauges = gauges_after(&proxy, 0x20);
        assert_eq!(gauges.get("flags"), Some(&0x20), "{engine}: {gauges:?}");

        let details = || -> Vec<String> {
            (proxy.stderr().lines())
                .filter_map(|l| {
                    l.split_once("wasm log stream_info: ")
                        .map(|(_, d)| d.to_string())
                })
                .collect()
        };
        let expected = [
            "via_upstream",
            "upstream_reset_before_response_started{connection_failure}",
        ];
        assert!(
            eventually(|| details() == expected),
            "{engine}: response.code_details {:?}, not {expected:?}\n{}",
            details(),
            proxy.stderr()
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}
