//! gRPC streams (`proxy_grpc_stream`) as real HTTP/2 streams to an h2
//! cluster: messages both ways while the stream is open, metadata, status,
//! cancel, and a refused method.

use crate::harness::*;
use std::time::{Duration, Instant};

/// Opens a stream to `echo.Echo/Chat` on the `grpc` cluster on request
/// headers, sends "one" and pauses. The first reply makes it send "two"
/// and half-close, so the second message only goes out once the first
/// answer came back. What arrives is added to the request:
/// `x-stream-initial` (the `x-chat` initial metadata), one `x-stream-reply`
/// per message, `x-stream-trailer` (the `x-chat-end` trailing metadata)
/// and `x-stream-status`, and the request resumes on close.
/// - `x-cancel`: cancels the stream after the first reply and resumes.
/// - `x-fail`: calls `echo.Echo/Nope` instead (sending "one" with the end
///   of stream), which the upstream refuses with status 7.
const GRPC_STREAM_PLUGIN: &str = r#"
(module
  (import "env" "proxy_grpc_stream" (func $stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_cancel" (func $cancel (param i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (global $received (mut i32) (i32.const 0))
  (global $cancelling (mut i32) (i32.const 0))
  (data (i32.const 64) "grpc")
  (data (i32.const 80) "echo.Echo")
  (data (i32.const 96) "Chat")
  (data (i32.const 100) "Nope")
  (data (i32.const 112) "one")
  (data (i32.const 116) "two")
  (data (i32.const 128) "x-cancel")
  (data (i32.const 144) "x-stream-reply")
  (data (i32.const 160) "x-stream-status")
  (data (i32.const 176) "x-chat")
  (data (i32.const 184) "x-stream-initial")
  (data (i32.const 208) "x-chat-end")
  (data (i32.const 224) "x-stream-trailer")
  (data (i32.const 240) "x-fail")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $method i32) (local $end i32)
    (local.set $method (i32.const 96))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 240) (i32.const 6) (i32.const 24) (i32.const 28)))
      (then (local.set $method (i32.const 100)) (local.set $end (i32.const 1))))
    (global.set $cancelling
      (i32.eqz (call $get (i32.const 0) (i32.const 128) (i32.const 8) (i32.const 24) (i32.const 28))))
    (global.set $received (i32.const 0))
    (if (call $stream (i32.const 64) (i32.const 4) (i32.const 80) (i32.const 9)
                      (local.get $method) (i32.const 4) (i32.const 0) (i32.const 0) (i32.const 16))
      (then (return (i32.const 0))))
    (if (call $send (i32.load (i32.const 16)) (i32.const 112) (i32.const 3) (local.get $end))
      (then (return (i32.const 0))))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive_initial_metadata") (param i32) (param i32) (param i32)
    (if (i32.eqz (call $get (i32.const 4) (i32.const 176) (i32.const 6) (i32.const 24) (i32.const 28)))
      (then (drop (call $add (i32.const 0) (i32.const 184) (i32.const 16)
                             (i32.load (i32.const 24)) (i32.load (i32.const 28)))))))
  (func (export "proxy_on_grpc_receive") (param i32) (param $token i32) (param $size i32)
    (drop (call $buffer (i32.const 5) (i32.const 0) (local.get $size) (i32.const 32) (i32.const 36)))
    (drop (call $add (i32.const 0) (i32.const 144) (i32.const 14)
                     (i32.load (i32.const 32)) (i32.load (i32.const 36))))
    (global.set $received (i32.add (global.get $received) (i32.const 1)))
    (if (i32.eq (global.get $received) (i32.const 1))
      (then
        (if (global.get $cancelling)
          (then
            (drop (call $cancel (local.get $token)))
            (drop (call $continue (i32.const 0))))
          (else
            (drop (call $send (local.get $token) (i32.const 116) (i32.const 3) (i32.const 1))))))))
  (func (export "proxy_on_grpc_receive_trailing_metadata") (param i32) (param i32) (param i32)
    (if (i32.eqz (call $get (i32.const 5) (i32.const 208) (i32.const 10) (i32.const 24) (i32.const 28)))
      (then (drop (call $add (i32.const 0) (i32.const 224) (i32.const 16)
                             (i32.load (i32.const 24)) (i32.load (i32.const 28)))))))
  (func (export "proxy_on_grpc_close") (param i32) (param i32) (param $status i32)
    (i32.store8 (i32.const 300) (i32.add (i32.const 48) (local.get $status)))
    (drop (call $add (i32.const 0) (i32.const 160) (i32.const 15) (i32.const 300) (i32.const 1)))
    (drop (call $continue (i32.const 0)))))
"#;

/// Opens a stream to `echo.Echo/Stall` (an upstream that reads nothing)
/// on request headers and pauses. Once the upstream's metadata arrives it
/// sends 1 MiB messages until a send is refused, at most 40, and adds
/// `x-sent` (two digits: how many were taken) and `x-send-status` (the
/// refused send's status) to the request, then `x-stream-status` from
/// `proxy_on_grpc_close`, and resumes there.
const GRPC_FLOOD_PLUGIN: &str = r#"
(module
  (import "env" "proxy_grpc_stream" (func $stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_grpc_send" (func $send (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 20)
  (data (i32.const 64) "grpc")
  (data (i32.const 80) "echo.Echo")
  (data (i32.const 96) "Stall")
  (data (i32.const 128) "x-sent")
  (data (i32.const 144) "x-send-status")
  (data (i32.const 160) "x-stream-status")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (call $stream (i32.const 64) (i32.const 4) (i32.const 80) (i32.const 9)
                      (i32.const 96) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 16))
      (then (return (i32.const 0))))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive_initial_metadata") (param i32) (param $token i32) (param i32)
    (local $sent i32) (local $status i32)
    (block $refused
      (loop $more
        (local.set $status
          (call $send (local.get $token) (i32.const 65536) (i32.const 1048576) (i32.const 0)))
        (br_if $refused (local.get $status))
        (local.set $sent (i32.add (local.get $sent) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $sent) (i32.const 40)))))
    (i32.store8 (i32.const 300) (i32.add (i32.const 48) (i32.div_u (local.get $sent) (i32.const 10))))
    (i32.store8 (i32.const 301) (i32.add (i32.const 48) (i32.rem_u (local.get $sent) (i32.const 10))))
    (drop (call $add (i32.const 0) (i32.const 128) (i32.const 6) (i32.const 300) (i32.const 2)))
    (i32.store8 (i32.const 310) (i32.add (i32.const 48) (local.get $status)))
    (drop (call $add (i32.const 0) (i32.const 144) (i32.const 13) (i32.const 310) (i32.const 1))))
  (func (export "proxy_on_grpc_close") (param i32) (param i32) (param $status i32)
    (i32.store8 (i32.const 320) (i32.add (i32.const 48) (local.get $status)))
    (drop (call $add (i32.const 0) (i32.const 160) (i32.const 15) (i32.const 320) (i32.const 1)))
    (drop (call $continue (i32.const 0)))))
"#;

/// One gRPC message frame.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

/// Every value of header `name` the upstream saw.
fn values(seen: &Seen, name: &str) -> Vec<String> {
    seen.headers.get(name).cloned().unwrap_or_default()
}

/// Waits up to 5 s for the upstream to record a request on `path` beyond
/// the first `before` ones, and returns it.
fn wait_for_record(upstream: &Upstream, path: &str, before: usize) -> Option<Seen> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let records: Vec<Seen> = upstream
            .seen()
            .into_iter()
            .filter(|s| s.path == path)
            .collect();
        if records.len() > before {
            return records.into_iter().nth(before);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How many requests on `path` the upstream has recorded.
fn records(upstream: &Upstream, path: &str) -> usize {
    upstream.seen().iter().filter(|s| s.path == path).count()
}

#[test]
fn grpc_stream_carries_messages_both_ways_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "grpc_stream", GRPC_STREAM_PLUGIN);
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("grpc-stream", engine, &plugin)],
            &[],
        );

        // Both messages, the second sent only after the first reply.
        let before = records(&upstream, "/echo.Echo/Chat");
        let path = format!("/stream/{engine}/chat");
        let reply = get(&format!("http://127.0.0.1:{port}{path}"), &[]).unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let seen = upstream.last(&path).expect("the request went on");
        assert_eq!(values(&seen, "x-stream-initial"), ["hello"], "{engine}");
        assert_eq!(
            values(&seen, "x-stream-reply"),
            ["pong:one", "pong:two"],
            "{engine}"
        );
        assert_eq!(values(&seen, "x-stream-trailer"), ["bye"], "{engine}");
        assert_eq!(values(&seen, "x-stream-status"), ["0"], "{engine}");
        let chat = wait_for_record(&upstream, "/echo.Echo/Chat", before)
            .unwrap_or_else(|| panic!("{engine}: no stream upstream\n{}", proxy.stderr()));
        assert_eq!(chat.version, "HTTP/2.0", "{engine}");
        assert_eq!(chat.header("content-type"), Some("application/grpc"));
        let mut both = framed(b"one");
        both.extend_from_slice(&framed(b"two"));
        assert_eq!(chat.body, both, "{engine}: two framed messages");

        // Cancel: no callback after it, and the upstream sees the stream
        // reset after the one message.
        let before = records(&upstream, "/echo.Echo/Chat");
        let path = format!("/stream/{engine}/cancel");
        let reply = get(
            &format!("http://127.0.0.1:{port}{path}"),
            &[("x-cancel", "1")],
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let seen = upstream.last(&path).expect("the request went on");
        assert_eq!(values(&seen, "x-stream-reply"), ["pong:one"], "{engine}");
        assert!(values(&seen, "x-stream-status").is_empty(), "{engine}");
        let chat = wait_for_record(&upstream, "/echo.Echo/Chat", before).unwrap_or_else(|| {
            panic!(
                "{engine}: the cancelled stream was not reset upstream\n{}",
                proxy.stderr()
            )
        });
        assert_eq!(chat.body, framed(b"one"), "{engine}");

        // A refused method: metadata, no message, the status.
        let path = format!("/stream/{engine}/refused");
        let reply = get(
            &format!("http://127.0.0.1:{port}{path}"),
            &[("x-fail", "1")],
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let seen = upstream.last(&path).expect("the request went on");
        assert_eq!(values(&seen, "x-stream-status"), ["7"], "{engine}");
        assert!(values(&seen, "x-stream-reply").is_empty(), "{engine}");
        assert!(values(&seen, "x-stream-initial").is_empty(), "{engine}");
        let stderr = proxy.stderr();
        assert!(
            !stderr.contains("delivering a"),
            "{engine}: every callback found its stream\n{stderr}"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// The abi_probe plugin of each SDK language opens a stream to
/// `grpc-cluster` (`pkg.Service/Stream`) and sends "m1"; the upstream
/// answers "r1", "r2" and ends with two trailing entries and status 0
/// without waiting for the plugin to half-close.
#[test]
fn sdk_plugins_stream_and_cancel_over_grpc() {
    let upstream = Upstream::start();
    let engine = engines()[0];
    for language in ["rust-wasip1", "go", "assemblyscript", "cpp"] {
        let plugin = fixture(&format!("{language}/abi_probe.wasm"));
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("probe", engine, &plugin)],
            &[],
        );
        let path = format!("/probe/{language}/grpc-stream");
        let reply = get(
            &format!("http://127.0.0.1:{port}{path}"),
            &[("x-case", "grpc-stream")],
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{language}: {}", proxy.stderr());
        let seen = upstream.last(&path).expect("the request went on");
        assert_eq!(seen.header("x-result-stream"), Some("r1r2"), "{language}");
        assert_eq!(
            seen.header("x-result-stream-status"),
            Some("0"),
            "{language}"
        );
        assert_eq!(
            seen.header("x-result-stream-trailing"),
            Some("3"),
            "{language}: grpc-status, b and c"
        );
        let initial = seen.header("x-result-stream-initial").unwrap_or("none");
        assert!(
            initial.parse::<u32>().is_ok_and(|n| n >= 3),
            "{language}: :status, content-type and x-chat at least, got {initial}"
        );
        let stream = upstream.last("/pkg.Service/Stream").expect("the stream");
        assert_eq!(stream.body, framed(b"m1"), "{language}");

        // Cancelled at once: the plugin sees no close, and a second cancel
        // finds nothing.
        let path = format!("/probe/{language}/grpc-cancel");
        let reply = get(
            &format!("http://127.0.0.1:{port}{path}"),
            &[("x-case", "grpc-cancel")],
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{language}: {}", proxy.stderr());
        let seen = upstream.last(&path).expect("the request went on");
        assert_eq!(seen.header("x-result-cancel"), Some("ok"), "{language}");
        assert_eq!(
            seen.header("x-result-cancel-again"),
            Some("NotFound"),
            "{language}"
        );
        // Give a close that should not come the time to arrive.
        std::thread::sleep(Duration::from_millis(300));
        let stderr = proxy.stderr();
        assert!(
            !stderr.contains("unexpected grpc close") && !stderr.contains("delivering a"),
            "{language}: no callback after the cancel\n{stderr}"
        );
        assert_eq!(proxy.quit(), Some(0), "{language}");
    }
}

/// A plugin that sends faster than the upstream takes cannot make the host
/// hold more than 16 MiB for it: the send that would is refused with
/// BadArgument, the stream ends with RESOURCE_EXHAUSTED (8), and the
/// upstream sees it reset. (The plugin floods an established stream: a
/// stream reset before the upstream's HTTP/2 server hands it to its
/// service is never seen there at all.)
#[test]
fn grpc_stream_sends_the_upstream_does_not_take_are_bounded_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "grpc_flood", GRPC_FLOOD_PLUGIN);
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("grpc-flood", engine, &plugin)],
            &[],
        );
        let before = records(&upstream, "/echo.Echo/Stall");
        let path = format!("/flood/{engine}");
        let reply = get(&format!("http://127.0.0.1:{port}{path}"), &[]).unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let seen = upstream.last(&path).expect("the request went on");
        // 15 framed MiB fit in the 16 MiB backlog, the 16th does not.
        assert_eq!(values(&seen, "x-sent"), ["15"], "{engine}");
        assert_eq!(values(&seen, "x-send-status"), ["2"], "{engine}");
        assert_eq!(values(&seen, "x-stream-status"), ["8"], "{engine}");
        assert!(
            wait_for_record(&upstream, "/echo.Echo/Stall", before).is_some(),
            "{engine}: the upstream did not see the stream reset\n{}",
            proxy.stderr()
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// Opens streams to `echo.Echo/Stall` (an upstream that answers with
/// metadata and nothing else): one from its root context on the first tick
/// of each VM, and one from a request that has `x-open`, which waits for
/// the stream's metadata before it goes on. A request with `x-trap` traps,
/// which fails the VM.
const GRPC_HOLD_PLUGIN: &str = r#"
(module
  (import "env" "proxy_grpc_stream" (func $stream (param i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_tick_period_milliseconds" (func $tick_every (param i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "grpc")
  (data (i32.const 80) "echo.Echo")
  (data (i32.const 96) "Stall")
  (data (i32.const 128) "x-trap")
  (data (i32.const 144) "x-open")
  (func $open
    (drop (call $stream (i32.const 64) (i32.const 4) (i32.const 80) (i32.const 9)
                        (i32.const 96) (i32.const 5) (i32.const 0) (i32.const 0) (i32.const 16))))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32)
    (drop (call $tick_every (i32.const 10)))
    (i32.const 1))
  (func (export "proxy_on_tick") (param i32)
    (call $open)
    (drop (call $tick_every (i32.const 0))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 128) (i32.const 6) (i32.const 24) (i32.const 28)))
      (then unreachable))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 144) (i32.const 6) (i32.const 24) (i32.const 28)))
      (then
        (call $open)
        (return (i32.const 1))))
    (i32.const 0))
  ;; Resumes the request that opened the stream (for the root's, there is
  ;; no request to resume, and the status is ignored).
  (func (export "proxy_on_grpc_receive_initial_metadata") (param i32 i32 i32)
    (drop (call $continue (i32.const 0))))
  (func (export "proxy_on_grpc_close") (param i32 i32 i32)))
"#;

/// A gRPC stream lives no longer than the context that opened it, and no
/// longer than the worker's VM, as in Envoy. Its upstream here never sends
/// anything after the metadata, so only the host can end it:
/// - a request's stream is reset when the request ends;
/// - a root context's stream outlives requests, and is reset when the VM
///   fails (here under `FAIL_RELOAD`, which rebuilds it for the next
///   request) or when a reload removes the plugin, though no request of
///   the new configuration runs a plugin on that worker.
#[test]
fn grpc_streams_end_with_the_context_and_vm_that_opened_them_on_every_engine() {
    const STALL: &str = "/echo.Echo/Stall";
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "grpc_hold", GRPC_HOLD_PLUGIN);
    for engine in engines() {
        let admin = free_port();
        let port = free_port();
        let mut spec = WasmFilterSpec::new("grpc-hold", engine, &plugin);
        spec.failure_policy = Some("FAIL_RELOAD");
        let with_plugin = bootstrap(
            &[http_listener("ingress", port, &[spec])],
            upstream.addr,
            admin,
        );
        // One worker, so every request runs on the root stream's VM.
        let proxy = Proxy::start(&with_plugin, admin, &["--concurrency", "1"]);
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let what = |step: &str| format!("{engine}: {step}\n{}", proxy.stderr());
        let opened = |at_least: usize| eventually(|| records(&upstream, STALL_OPENED) >= at_least);

        // The request's stream ends with the request.
        let opened_before = records(&upstream, STALL_OPENED);
        let before = records(&upstream, STALL);
        let reply = get(&url(&format!("/hold/{engine}/1")), &[("x-open", "1")]).unwrap();
        assert_eq!(reply.status, 200, "{}", what("request stream"));
        assert!(
            wait_for_record(&upstream, STALL, before).is_some(),
            "{}",
            what("the finished request's stream was not reset")
        );

        // The root's stream outlives requests, and ends with the failed VM.
        assert!(opened(opened_before + 2), "{}", what("the root's stream"));
        let before = records(&upstream, STALL);
        get(&url(&format!("/hold/{engine}/2")), &[]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            records(&upstream, STALL),
            before,
            "{}",
            what("the root's stream ended while its VM was fine")
        );
        let reply = get(&url(&format!("/hold/{engine}/trap")), &[("x-trap", "1")]).unwrap();
        assert_eq!(reply.status, 503, "{}", what("trap"));
        assert!(
            wait_for_record(&upstream, STALL, before).is_some(),
            "{}",
            what("the failed VM's stream was not reset")
        );

        // The rebuilt VM's root opens another; removing the plugin ends it.
        let opened_before = records(&upstream, STALL_OPENED);
        let reply = get(&url(&format!("/hold/{engine}/3")), &[]).unwrap();
        assert_eq!(reply.status, 200, "{}", what("the rebuilt VM"));
        assert!(
            opened(opened_before + 1),
            "{}",
            what("the rebuilt root's stream")
        );
        let before = records(&upstream, STALL);
        let without_plugin =
            bootstrap(&[http_listener("ingress", port, &[])], upstream.addr, admin);
        let line = proxy.reload(&without_plugin, 1);
        assert!(line.contains("configuration reloaded"), "{}", what(&line));
        assert!(
            wait_for_record(&upstream, STALL, before).is_some(),
            "{}",
            what("the removed plugin's stream was not reset")
        );
        let stderr = proxy.stderr();
        assert!(
            !stderr.contains("delivering a"),
            "{engine}: nothing was delivered to a context or VM that was gone\n{stderr}"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}
