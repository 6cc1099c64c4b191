//! `polyhost call` as a plugin test bench (issue 15): explicit headers,
//! upstream response headers, bodies in chunks and from files, local
//! replies through the response callbacks, ticks on a virtual clock,
//! callout answers, what the plugin left behind, and JSON output. Every
//! test runs on every engine compiled in, with the plugin in each SDK
//! language that has it.

use super::{assert_fails, engines, fixture, polyhost, stderr, stdout};
use std::process::Output;

/// The SDK builds of a plugin that every language has.
pub(super) const LANGUAGES: [&str; 4] = ["rust-wasip1", "go", "assemblyscript", "cpp"];

/// The events of kind `kind`, in order.
pub(super) fn events<'a>(doc: &'a serde_json::Value, kind: &str) -> Vec<&'a serde_json::Value> {
    (doc["events"].as_array().unwrap().iter())
        .filter(|e| e["event"] == kind)
        .collect()
}

/// Runs `polyhost call PLUGIN ARGS` on `engine` without the module cache
/// and returns stdout, failing on a non-zero exit.
pub(super) fn call_ok(engine: &str, plugin: &str, args: &[&str]) -> String {
    let o = call(engine, plugin, args);
    assert!(
        o.status.success(),
        "{engine} {plugin} {args:?}\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

pub(super) fn call(engine: &str, plugin: &str, args: &[&str]) -> Output {
    let mut all = vec!["call", plugin, "--no-cache", "--engine", engine];
    all.extend(args);
    polyhost(&all)
}

/// Asserts every needle is in `out`, in the order given.
#[track_caller]
pub(super) fn assert_in_order(out: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match out[from..].find(needle) {
            Some(at) => from += at + needle.len(),
            None => panic!("`{needle}` not found (in order) in:\n{out}"),
        }
    }
}

#[test]
fn explicit_pseudo_headers_win_and_conflicts_are_named() {
    for lang in LANGUAGES {
        let hello = fixture(&format!("{lang}/hello.wasm"));
        for engine in engines() {
            let out = call_ok(
                &engine,
                &hello,
                &["-H", ":path: /from-header", "-H", ":method: PUT"],
            );
            assert!(
                out.contains("hello: PUT /from-header"),
                "{lang} {engine}\n{out}"
            );
            // `host` is the authority, as Envoy's HTTP/1 codec makes it.
            let out = call_ok(&engine, &hello, &["-H", "host: example.com"]);
            assert!(!out.contains(":authority"), "{out}");
        }
    }
    let hello = fixture("rust-wasip1/hello.wasm");
    let o = polyhost(&[
        "call",
        &hello,
        "--no-cache",
        "-H",
        ":path: /x",
        "--path",
        "/y",
    ]);
    assert_fails(&o, "`-H ':path: /x'` conflicts with `--path /y`");
    let o = polyhost(&["call", &hello, "--no-cache", "-H", ":bogus: 1"]);
    assert_fails(&o, "`:bogus` is not a request pseudo-header");
    let o = polyhost(&[
        "call",
        &hello,
        "--no-cache",
        "--status",
        "200",
        "--response-header",
        ":status: 404",
    ]);
    assert_fails(&o, "conflicts with `--status 200`");
}

#[test]
fn repeated_headers_and_upstream_response_headers_are_shown() {
    for lang in LANGUAGES {
        let hello = fixture(&format!("{lang}/hello.wasm"));
        for engine in engines() {
            let out = call_ok(
                &engine,
                &hello,
                &[
                    "-H",
                    "x-hello: mine",
                    "--response-header",
                    ":status: 404",
                    "--response-header",
                    "set-cookie: a=1",
                    "--response-header",
                    "set-cookie: b=2",
                ],
            );
            assert_in_order(
                &out,
                &[
                    "request headers:",
                    "  + x-hello: polyhost",
                    "  x-hello appears 2 times: \"mine\", \"polyhost\"",
                    "response headers:",
                    "  + x-powered-by: polyhost",
                    "  set-cookie appears 2 times: \"a=1\", \"b=2\"",
                    "decision: continue",
                    "hello: done 404",
                ],
            );
        }
    }
}

#[test]
fn bodies_go_in_chunks_and_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("body.txt");
    std::fs::write(&file, "say hello, hello").unwrap();
    let at_file = format!("@{}", file.display());
    for lang in LANGUAGES {
        let hello = fixture(&format!("{lang}/hello.wasm"));
        for engine in engines() {
            let out = call_ok(
                &engine,
                &hello,
                &[
                    "--body",
                    &at_file,
                    "--chunk-size",
                    "7",
                    "--response-body",
                    &at_file,
                ],
            );
            assert_in_order(
                &out,
                &[
                    "request body chunk 1/3 (7 bytes): pause",
                    "request body chunk 2/3 (7 bytes): pause",
                    "request body chunk 3/3 (2 bytes): continue",
                    "request body: \"say hello, hello\" -> \"say HELLO, HELLO\"",
                    "response body chunk 3/3 (2 bytes): continue",
                    "response body: unchanged (16 bytes)",
                ],
            );
        }
    }
    let hello = fixture("rust-wasip1/hello.wasm");
    let o = polyhost(&["call", &hello, "--no-cache", "--chunk-size", "0"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = polyhost(&["call", &hello, "--no-cache", "--body", "@/nonexistent/body"]);
    assert_fails(&o, "cannot read request body `/nonexistent/body`");
}

/// A local reply goes through the plugin's response callbacks (hello adds
/// `x-powered-by` there) and the simulated upstream is not run.
#[test]
fn local_replies_pass_through_the_response_callbacks() {
    for lang in LANGUAGES {
        let hello = fixture(&format!("{lang}/hello.wasm"));
        for engine in engines() {
            let out = call_ok(
                &engine,
                &hello,
                &["--path", "/admin", "--response-body", "x"],
            );
            assert_in_order(
                &out,
                &[
                    "local response: 403",
                    "  x-denied-by: hello",
                    "  x-powered-by: polyhost",
                    "  body: \"access denied\\n\"",
                ],
            );
            assert!(!out.contains("response headers"), "{lang} {engine}\n{out}");
            assert!(!out.contains("response body"), "{lang} {engine}\n{out}");
            assert!(!out.contains("decision:"), "{lang} {engine}\n{out}");
        }
    }
}

/// `ticker` ticks every 10 ms: on the virtual clock three ticks take no
/// time and land exactly on the period; the counter and shared data it
/// keeps are listed afterwards.
#[test]
fn ticks_run_on_a_virtual_clock_and_leave_metrics_and_shared_data() {
    for lang in LANGUAGES {
        let ticker = fixture(&format!("{lang}/ticker.wasm"));
        for engine in engines() {
            let out = call_ok(&engine, &ticker, &["--ticks", "3"]);
            assert_in_order(
                &out,
                &[
                    "decision: continue",
                    "tick at 10 ms",
                    "tick at 20 ms",
                    "tick at 30 ms",
                    "metric ticker_ticks (counter) = 3",
                    "shared data [] ticker/last = \"3\"",
                ],
            );
            assert!(!out.contains("tick at 40 ms"), "{out}");
            let out = call_ok(&engine, &ticker, &["--run-for", "25"]);
            assert!(out.contains("metric ticker_ticks (counter) = 2"), "{out}");
            // Real time waits for the period.
            let before = std::time::Instant::now();
            let out = call_ok(&engine, &ticker, &["--ticks", "2", "--real-time"]);
            assert!(out.contains("metric ticker_ticks (counter) = 2"), "{out}");
            assert!(before.elapsed() >= std::time::Duration::from_millis(20));
        }
    }
}

fn probe_config(dir: &std::path::Path) -> String {
    let path = dir.join("probe.json");
    std::fs::write(&path, r#"{"name": "abi_probe", "vm_id": "probe-vm"}"#).unwrap();
    path.display().to_string()
}

/// A callout answered from the command line resumes the request; an empty
/// answer body reads as empty, as in Envoy (`proxy_get_buffer_bytes` of a
/// zero-length body succeeds with no data).
#[test]
fn callouts_are_answered_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path());
    for lang in LANGUAGES {
        let probe = fixture(&format!("{lang}/abi_probe.wasm"));
        for engine in engines() {
            let out = call_ok(
                &engine,
                &probe,
                &[
                    "--config",
                    &config,
                    "-H",
                    "x-case: http-call",
                    "--callout-response",
                    "cluster=auth-cluster;status=201;header=x-auth: ok;body=hi",
                ],
            );
            assert_in_order(
                &out,
                &[
                    "http callout 1 to `auth-cluster` /check (timeout 500 ms)",
                    "callout 1 answered: cluster=auth-cluster;status=201",
                    "plugin resumed the request",
                    "request headers as resumed:",
                    "  + x-result-status: 201",
                    "  + x-result-body: hi",
                    "  + x-result-callout-header: ok",
                    "decision: continue",
                ],
            );
            let out = call_ok(
                &engine,
                &probe,
                &[
                    "--config",
                    &config,
                    "-H",
                    "x-case: http-call",
                    "--callout-response",
                    "status=200",
                ],
            );
            assert!(
                out.contains("  + x-result-body: \n"),
                "{lang} {engine}\n{out}"
            );
            let out = call_ok(
                &engine,
                &probe,
                &[
                    "--config",
                    &config,
                    "-H",
                    "x-case: grpc-call",
                    "--callout-response",
                    "grpc-status=0;body=resp",
                ],
            );
            assert_in_order(
                &out,
                &[
                    "grpc callout 1 to grpc-cluster pkg.Service/Method (timeout 500 ms)",
                    "  + x-result-grpc-status: 0",
                    "  + x-result-grpc-body: resp",
                ],
            );
            // A failed callout makes the plugin reply from the callout's
            // callback; the reply goes out through its response callbacks.
            let out = call_ok(
                &engine,
                &probe,
                &[
                    "--config",
                    &config,
                    "-H",
                    "x-case: http-call",
                    "--callout-response",
                    "fail=timeout",
                ],
            );
            assert_in_order(
                &out,
                &["callout 1 answered: fail=timeout", "local response: 503"],
            );
            assert!(out.contains("body: \"callout failed\""), "{out}");
        }
    }
}

#[test]
fn unanswered_callouts_are_listed_and_the_request_stays_paused() {
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path());
    for lang in LANGUAGES {
        let probe = fixture(&format!("{lang}/abi_probe.wasm"));
        for engine in engines() {
            let out = call_ok(
                &engine,
                &probe,
                &[
                    "--config",
                    &config,
                    "-H",
                    "x-case: http-call",
                    "--callout-response",
                    "cluster=elsewhere;status=200",
                ],
            );
            assert_in_order(
                &out,
                &[
                    "the request is still paused",
                    "decision: pause",
                    "unanswered http callout 1 to `auth-cluster` (timeout 500 ms): :method: GET, :path: /check, :authority: auth, x-from: probe",
                ],
            );
        }
    }
    let probe = fixture("rust-wasip1/abi_probe.wasm");
    let o = polyhost(&[
        "call",
        &probe,
        "--no-cache",
        "--callout-response",
        "status=200;oops",
    ]);
    assert_fails(
        &o,
        "--callout-response `status=200;oops`: `oops` is not key=value",
    );
}

/// Metrics, queues and properties the plugin set are listed after the run.
#[test]
fn what_the_plugin_left_behind_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let config = probe_config(dir.path());
    for lang in LANGUAGES {
        let probe = fixture(&format!("{lang}/abi_probe.wasm"));
        for engine in engines() {
            let out = call_ok(
                &engine,
                &probe,
                &["--config", &config, "-H", "x-case: metrics"],
            );
            assert_in_order(
                &out,
                &[
                    "metric probe_requests (counter) = 1",
                    "metric probe_gauge (gauge) = 42",
                    r#"metric probe_latency (histogram) = {"count":1,"max":7,"min":7,"sum":7}"#,
                    "metric probe_ticks (counter) = 0",
                    "queue [probe-vm] probe-queue: 0 message(s) left",
                ],
            );
            let out = call_ok(
                &engine,
                &probe,
                &["--config", &config, "-H", "x-case: property"],
            );
            assert!(
                out.contains("property probe.prop = \"v1\""),
                "{lang} {engine}\n{out}"
            );
        }
    }
}

/// `--format json` prints one document with the events in order and what
/// the plugin left behind.
#[test]
fn json_output_has_the_whole_run() {
    for engine in engines() {
        let hello = fixture("rust-wasip1/hello.wasm");
        let out = call_ok(
            &engine,
            &hello,
            &["--format", "json", "-H", "x-hello: mine", "--body", "hello"],
        );
        let doc: serde_json::Value = serde_json::from_str(&out).expect(&out);
        assert_eq!(doc["plugin"], "hello");
        assert_eq!(doc["engine"], engine.as_str());
        let events = doc["events"].as_array().unwrap();
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "headers").count(),
            2,
            "{kinds:?}"
        );
        let request = &events[kinds.iter().position(|k| *k == "headers").unwrap()];
        assert_eq!(request["side"], "request");
        assert_eq!(
            request["added"],
            serde_json::json!([["x-hello", "polyhost"]])
        );
        let repeated: Vec<&serde_json::Value> = (request["headers"].as_array().unwrap().iter())
            .filter(|pair| pair[0] == "x-hello")
            .collect();
        assert_eq!(repeated.len(), 2);
        let body = events.iter().find(|e| e["event"] == "body").unwrap();
        assert_eq!(body["forwarded"], "HELLO");
        assert_eq!(events.last().unwrap()["event"], "log");
        let done = events.iter().find(|e| e["event"] == "done").unwrap();
        assert_eq!(done["outcome"], "continue");
        assert!(events.iter().any(|e| e["event"] == "log"
            && e["level"] == "info"
            && e["message"] == "hello: GET /"));
        assert_eq!(doc["unanswered_callouts"], serde_json::json!([]));
    }
}

/// Reads the property `node.metadata.team` into request header `x-team`
/// and pauses the request; its 50 ms tick reads the time again, adds
/// `x-virtual: exact` when exactly 50 ms passed (`off` otherwise) and
/// resumes the request.
pub(super) const PROPERTY_AND_TICK: &str = r#"
(module
  (import "env" "proxy_get_property" (func $get_property (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_period (param i32) (result i32)))
  (import "env" "proxy_get_current_time_nanoseconds" (func $now (param i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $effective (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (global $stream (mut i32) (i32.const 0))
  (global $t0 (mut i64) (i64.const 0))
  (data (i32.const 16) "node.metadata.team")
  (data (i32.const 48) "x-team")
  (data (i32.const 64) "x-virtual")
  (data (i32.const 80) "exact")
  (data (i32.const 88) "off")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32)
    (drop (call $tick_period (i32.const 50)))
    (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (global.set $stream (local.get $ctx))
    (if (i32.eqz (call $get_property (i32.const 16) (i32.const 18) (i32.const 100) (i32.const 104)))
      (then (drop (call $add (i32.const 0) (i32.const 48) (i32.const 6)
        (i32.load (i32.const 100)) (i32.load (i32.const 104))))))
    (drop (call $now (i32.const 112)))
    (global.set $t0 (i64.load (i32.const 112)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (if (i32.eqz (global.get $stream)) (then (return)))
    (drop (call $now (i32.const 112)))
    (drop (call $effective (global.get $stream)))
    (if (i64.eq (i64.sub (i64.load (i32.const 112)) (global.get $t0)) (i64.const 50000000))
      (then (drop (call $add (i32.const 0) (i32.const 64) (i32.const 9) (i32.const 80) (i32.const 5))))
      (else (drop (call $add (i32.const 0) (i32.const 64) (i32.const 9) (i32.const 88) (i32.const 3)))))
    (drop (call $continue (i32.const 0)))
    (global.set $stream (i32.const 0))))
"#;

/// `--property` answers `proxy_get_property`; a tick resumes the paused
/// request, and the plugin's clock moved exactly one period with it.
#[test]
fn properties_are_injected_and_a_tick_resumes_the_request_on_virtual_time() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = dir.path().join("property_and_tick.wasm");
    std::fs::write(
        &plugin,
        wat::parse_str(PROPERTY_AND_TICK).expect("valid wat"),
    )
    .unwrap();
    let plugin = plugin.display().to_string();
    for engine in engines() {
        let out = call_ok(
            &engine,
            &plugin,
            &["--property", "node.metadata.team=edge", "--ticks", "1"],
        );
        assert_in_order(
            &out,
            &[
                "request headers:",
                "  + x-team: edge",
                "tick at 50 ms",
                "plugin resumed the request",
                "request headers as resumed:",
                "  + x-virtual: exact",
                "response headers: unchanged",
                "decision: continue",
            ],
        );
        let out = call_ok(&engine, &plugin, &[]);
        assert_in_order(
            &out,
            &[
                "request headers: unchanged",
                "the request is still paused",
                "decision: pause",
            ],
        );
        let o = call(&engine, &plugin, &["--property", "node.metadata.team"]);
        assert_fails(&o, "--property `node.metadata.team` is not PATH=VALUE");
    }
}
