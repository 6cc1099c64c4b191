//! `polyhost run` end to end: the real binary serving an Envoy bootstrap on
//! 127.0.0.1, a real upstream, real HTTP/1.1 and h2 clients. Every test
//! that involves a plugin runs on every engine compiled in.

mod grpc_stream;
mod harness;
mod shared_vm;
mod stream_info;
mod tcp;

use harness::*;
use std::time::{Duration, Instant};

/// A hand-written plugin for the failure policies: traps in
/// `proxy_on_request_headers` when the request has an `x-trap` header,
/// otherwise adds `x-wasm: ok`.
const TRAP_ON_HEADER: &str = r#"
(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "x-trap")
  (data (i32.const 96) "x-wasm")
  (data (i32.const 128) "ok")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 64) (i32.const 6) (i32.const 1024) (i32.const 1028)))
      (then unreachable))
    (drop (call $add (i32.const 0) (i32.const 96) (i32.const 6) (i32.const 128) (i32.const 2)))
    (i32.const 0)))
"#;

fn trap_plugin(dir: &std::path::Path) -> String {
    wat_plugin(dir, "trap_on_header", TRAP_ON_HEADER)
}

#[test]
fn hello_plugin_edits_requests_and_responses_in_every_language_on_every_engine() {
    let upstream = Upstream::start();
    for engine in engines() {
        for (language, file) in hello_plugins() {
            let (proxy, port) = serve(
                &upstream,
                &[WasmFilterSpec::new("hello", engine, &file)],
                &[],
            );
            let what = format!("{language} hello on {engine}");

            let reply = get(
                &format!("http://127.0.0.1:{port}/x?{language}-{engine}"),
                &[("user-agent", "curl/8"), ("x-remove-me", "1")],
            )
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", proxy.stderr()));
            assert_eq!(reply.status, 200, "{what}: {}", proxy.stderr());
            assert_eq!(reply.text(), "upstream ok\n", "{what}");
            assert_eq!(reply.header("x-powered-by"), Some("polyhost"), "{what}");
            assert_eq!(reply.header("x-upstream"), Some("yes"), "{what}");
            let seen = upstream
                .last(&format!("/x?{language}-{engine}"))
                .unwrap_or_else(|| panic!("{what}: the upstream saw nothing"));
            assert_eq!(seen.header("x-hello"), Some("polyhost"), "{what}: {seen:?}");
            assert_eq!(seen.header("user-agent"), Some("polyhost-hello"), "{what}");
            assert_eq!(seen.header("x-remove-me"), None, "{what}");
            // A request without a body gets no body callback (as in Envoy),
            // so nothing is written upstream after its end: Pingora warns on
            // every such write.
            assert!(
                !proxy.stderr().contains("Upstream body is already finished"),
                "{what}: an empty body was written after the request ended:\n{}",
                proxy.stderr()
            );

            // A local response: 403 with the plugin's body and header, and
            // nothing reaches the upstream.
            let before = upstream.seen().len();
            let denied = get(&format!("http://127.0.0.1:{port}/admin/{engine}"), &[]).unwrap();
            assert_eq!(denied.status, 403, "{what}");
            assert_eq!(denied.text(), "access denied\n", "{what}");
            assert_eq!(denied.header("x-denied-by"), Some("hello"), "{what}");
            // As in Envoy, a local reply goes through the encoder path: the
            // plugin's own response callback sees and edits its 403, and a
            // direct response too.
            assert_eq!(denied.header("x-powered-by"), Some("polyhost"), "{what}");
            let direct = get(&format!("http://127.0.0.1:{port}/direct"), &[]).unwrap();
            assert_eq!(direct.status, 201, "{what}");
            assert_eq!(direct.header("x-powered-by"), Some("polyhost"), "{what}");
            assert_eq!(direct.header("content-type"), Some("text/plain"), "{what}");
            assert_eq!(
                upstream.seen().len(),
                before,
                "{what}: a denied request went upstream"
            );

            // The body is buffered and rewritten before it goes upstream.
            let posted = request(
                "POST",
                &format!("http://127.0.0.1:{port}/post/{language}/{engine}"),
                &[("content-type", "text/plain")],
                b"say hello, hello",
                false,
            )
            .unwrap();
            assert_eq!(posted.status, 200, "{what}: {}", proxy.stderr());
            let seen = upstream
                .last(&format!("/post/{language}/{engine}"))
                .expect("posted request");
            assert_eq!(seen.body, b"say HELLO, HELLO", "{what}");
            assert_eq!(seen.method, "POST", "{what}");
            assert_eq!(seen.version, "HTTP/1.1", "{what}");

            // Plugin log lines come out in Envoy's shape.
            let log = proxy.stderr();
            assert!(
                log.lines().any(|l| l.ends_with(&format!(
                    "[info][wasm] wasm log hello: hello: GET /x?{language}-{engine}"
                ))),
                "{what}: no Envoy-shaped plugin log line in:\n{log}"
            );
            assert_eq!(proxy.quit(), Some(0), "{what}");
        }
    }
}

#[test]
fn routes_direct_responses_rewrites_and_h2() {
    let upstream = Upstream::start();
    let (proxy, port) = serve(
        &upstream,
        &[WasmFilterSpec::new(
            "hello",
            engines()[0],
            &fixture("rust-wasip1/hello.wasm"),
        )],
        &[],
    );

    let direct = get(&format!("http://127.0.0.1:{port}/direct"), &[]).unwrap();
    assert_eq!(direct.status, 201);
    assert_eq!(direct.text(), "direct answer\n");

    let rewritten = get(&format!("http://127.0.0.1:{port}/rewrite/a/b"), &[]).unwrap();
    assert_eq!(rewritten.status, 200);
    assert!(
        upstream.last("/rewritten/a/b").is_some(),
        "{:?}",
        upstream.seen()
    );

    // h2 with prior knowledge: the plugin's edits apply the same way.
    let h2 = request(
        "GET",
        &format!("http://127.0.0.1:{port}/over-h2"),
        &[],
        b"",
        true,
    )
    .unwrap();
    assert_eq!(h2.status, 200, "{}", proxy.stderr());
    assert_eq!(h2.version, "HTTP/2.0");
    assert_eq!(h2.header("x-powered-by"), Some("polyhost"));
    let seen = upstream.last("/over-h2").expect("h2 request upstream");
    assert_eq!(seen.header("x-hello"), Some("polyhost"));
    assert_eq!(proxy.quit(), Some(0));
}

#[test]
fn upstream_failures_answer_503_and_504() {
    let upstream = Upstream::start();
    let (proxy, port) = serve(&upstream, &[], &[]);

    let refused = get(&format!("http://127.0.0.1:{port}/dead"), &[]).unwrap();
    assert_eq!(refused.status, 503);
    assert!(
        refused.text().contains("connection failure"),
        "{}",
        refused.text()
    );

    let started = Instant::now();
    let slow = get(&format!("http://127.0.0.1:{port}/slow"), &[]).unwrap();
    assert_eq!(slow.status, 504);
    assert_eq!(slow.text(), "upstream request timeout");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the route timeout (0.5 s) was not applied"
    );

    let expected = [
        "cluster.dead.upstream_cx_connect_fail: 1",
        "cluster.upstream.upstream_rq_timeout: 1",
        "http.ingress.downstream_rq_5xx: 2",
    ];
    eventually(|| {
        let stats = proxy.admin("/stats").text();
        expected.iter().all(|e| stats.contains(e))
    });
    let stats = proxy.admin("/stats").text();
    assert!(
        stats.contains("cluster.dead.upstream_cx_connect_fail: 1"),
        "{stats}"
    );
    assert!(
        stats.contains("cluster.upstream.upstream_rq_timeout: 1"),
        "{stats}"
    );
    assert!(
        stats.contains("http.ingress.downstream_rq_5xx: 2"),
        "{stats}"
    );
    let log = proxy.stderr();
    assert!(log.contains("flags=UF"), "{log}");
    assert!(log.contains("flags=UT"), "{log}");
    assert_eq!(proxy.quit(), Some(0));
}

#[test]
fn callout_pauses_and_resumes_on_every_engine() {
    let upstream = Upstream::start();
    for engine in engines() {
        for (language, file) in language_plugins("bench_callout") {
            let (proxy, port) = serve(
                &upstream,
                &[WasmFilterSpec::new("callout", engine, &file)],
                &[],
            );
            let what = format!("{language} bench_callout on {engine}");
            let reply = get(
                &format!("http://127.0.0.1:{port}/paused/{language}/{engine}"),
                &[],
            )
            .unwrap_or_else(|e| panic!("{what}: {e}\n{}", proxy.stderr()));
            assert_eq!(reply.status, 200, "{what}: {}", proxy.stderr());
            let seen = upstream
                .last(&format!("/paused/{language}/{engine}"))
                .expect("resumed request upstream");
            assert_eq!(seen.header("x-callout-status"), Some("200"), "{what}");
            // The callout itself went to the cluster as a real request.
            assert!(
                upstream
                    .seen()
                    .iter()
                    .any(|s| s.path == "/" && s.header("host") == Some("bench")),
                "{what}: no callout reached the upstream"
            );
            assert_eq!(proxy.quit(), Some(0), "{what}");
        }
    }
}

#[test]
fn ticks_and_plugin_metrics_show_on_the_admin_endpoint() {
    let upstream = Upstream::start();
    for engine in engines() {
        for (language, file) in language_plugins("ticker") {
            let what = format!("{language} ticker on {engine}");
            let (proxy, port) = serve(
                &upstream,
                &[WasmFilterSpec::new("ticker", engine, &file)],
                &[],
            );
            // The first request starts the worker's VM, which then ticks
            // every 10 ms on its own.
            assert_eq!(
                get(&format!("http://127.0.0.1:{port}/"), &[])
                    .unwrap()
                    .status,
                200,
                "{what}"
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            let ticks = loop {
                let stats = proxy.admin("/stats?filter=ticker").text();
                let ticks: u64 = stats
                    .lines()
                    .find_map(|l| l.strip_prefix("wasmcustom.ticker_ticks: "))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if ticks >= 5 || Instant::now() > deadline {
                    break ticks;
                }
                std::thread::sleep(Duration::from_millis(50));
            };
            assert!(
                ticks >= 5,
                "{what}: ticker_ticks = {ticks}\n{}",
                proxy.stderr()
            );
            let prom = proxy.admin("/stats/prometheus").text();
            assert!(
                prom.contains("# TYPE ticker_ticks counter"),
                "{what}: {prom}"
            );
            assert!(
                prom.contains(
                    "envoy_http_downstream_rq_total{envoy_http_conn_manager_prefix=\"ingress\"} 1"
                ),
                "{what}: {prom}"
            );
            assert_eq!(proxy.quit(), Some(0), "{what}");
        }
    }
}

/// A histogram a plugin records on every request shows on `/stats` as
/// Envoy shows one: in the `wasmcustom` namespace, quantiles in the text
/// and JSON formats, cumulative buckets in the Prometheus one; and
/// `filter=` is percent-decoded.
#[test]
fn plugin_histograms_show_in_envoys_stats_formats_on_every_engine() {
    let upstream = Upstream::start();
    let probe = fixture("rust-wasip1/abi_probe.wasm");
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("probe", engine, &probe)],
            &[],
        );
        for _ in 0..3 {
            // The probe counts the request and records 7 into
            // `probe_latency`.
            let reply = get(
                &format!("http://127.0.0.1:{port}/metrics"),
                &[("x-case", "metrics")],
            )
            .unwrap();
            assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        }

        // `^wasmcustom\.probe_latency$`, percent-encoded: plugin metrics are
        // in Envoy's `wasmcustom` namespace on `/stats`.
        let text = proxy
            .admin("/stats?filter=%5Ewasmcustom%5C.probe_latency%24")
            .text();
        assert_eq!(
            text.trim_end(),
            "wasmcustom.probe_latency: P0(7,7) P25(7,7) P50(7,7) P75(7,7) P90(7,7) P95(7,7) \
             P99(7,7) P99.5(7,7) P99.9(7,7) P100(7,7)",
            "{engine}"
        );

        let json: serde_json::Value =
            serde_json::from_str(&proxy.admin("/stats?format=json&filter=probe_").text()).unwrap();
        let stats = json["stats"].as_array().expect("a stats array");
        assert!(
            stats.contains(&serde_json::json!({"name": "wasmcustom.probe_requests", "value": 3})),
            "{engine}: {json}"
        );
        let histograms = &stats.last().expect("the histograms element")["histograms"];
        assert_eq!(
            histograms["supported_quantiles"][2], 50.0,
            "{engine}: {json}"
        );
        let latency = &histograms["computed_quantiles"][0];
        assert_eq!(
            latency["name"], "wasmcustom.probe_latency",
            "{engine}: {json}"
        );
        assert_eq!(
            latency["values"][2],
            serde_json::json!({"interval": null, "cumulative": 7}),
            "{engine}: {json}"
        );

        // Without the namespace in Prometheus, as Envoy strips it.
        let prom = proxy.admin("/stats/prometheus").text();
        for line in [
            "# TYPE probe_latency histogram",
            "probe_latency_bucket{le=\"5\"} 0",
            "probe_latency_bucket{le=\"10\"} 3",
            "probe_latency_bucket{le=\"+Inf\"} 3",
            "probe_latency_sum 21",
            "probe_latency_count 3",
        ] {
            assert!(
                prom.lines().any(|l| l == line),
                "{engine}: no {line:?} in\n{prom}"
            );
        }
        // The same through `/stats`, filtered by the `/stats` name.
        let filtered = proxy
            .admin("/stats?format=prometheus&filter=wasmcustom%5C.probe_latency")
            .text();
        assert!(
            filtered.contains("probe_latency_count 3"),
            "{engine}: {filtered}"
        );
        assert!(!filtered.contains("envoy_http_"), "{engine}: {filtered}");
        assert_eq!(proxy.admin("/stats?format=html").status, 400, "{engine}");

        // The connection manager's own latency histogram, as Envoy names
        // it, counts the three requests once each has been logged.
        let rq_time =
            "envoy_http_downstream_rq_time_count{envoy_http_conn_manager_prefix=\"ingress\"} 3";
        assert!(
            eventually(|| proxy
                .admin("/stats/prometheus")
                .text()
                .lines()
                .any(|l| l == rq_time)),
            "{engine}: {}",
            proxy.admin("/stats/prometheus").text()
        );
        let text = proxy.admin("/stats?filter=downstream_rq_time").text();
        assert!(
            text.starts_with("http.ingress.downstream_rq_time: P0("),
            "{engine}: {text}"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// The connection manager's `access_log` entries: one line per request in
/// each file, in Envoy's default format and in a format of its operators,
/// for a direct response, a proxied request and an upstream that refuses.
#[test]
fn access_logs_write_a_line_per_request_in_envoys_formats() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let default_log = dir.path().join("default.log");
    let custom_log = dir.path().join("custom.log");
    let admin = free_port();
    let port = free_port();
    let access_log = format!(
        r#"          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format:
                text_format_source:
                  inline_string: "%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_SENT% %UPSTREAM_CLUSTER% %UPSTREAM_HOST% %RESPONSE_CODE_DETAILS%\n"
"#,
        default_log.display(),
        custom_log.display()
    );
    let listener = http_listener("ingress", port, &[]);
    assert!(listener.contains("          stat_prefix: ingress\n"));
    let listener = listener.replacen("          stat_prefix: ingress\n", &access_log, 1);
    let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);

    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert_eq!(get(&url("/direct"), &[]).unwrap().status, 201);
    assert_eq!(get(&url("/up"), &[]).unwrap().status, 200);
    assert_eq!(get(&url("/dead"), &[]).unwrap().status, 503);
    let lines = |path: &std::path::Path| -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    };
    // Lines are written when each request has ended, after its answer.
    assert!(
        eventually(|| lines(&default_log).len() == 3 && lines(&custom_log).len() == 3),
        "{:?} {:?}\n{}",
        lines(&default_log),
        lines(&custom_log),
        proxy.stderr()
    );

    let custom = lines(&custom_log);
    assert_eq!(custom[0], "GET /direct 201 - 14 - - direct_response");
    let upstream_host = upstream.addr.to_string();
    let fields: Vec<&str> = custom[1].split(' ').collect();
    assert_eq!(
        (fields[..4].join(" "), fields[5], fields[6], fields[7]),
        (
            "GET /up 200 -".to_string(),
            "upstream",
            upstream_host.as_str(),
            "via_upstream"
        ),
        "{}",
        custom[1]
    );
    assert!(fields[4].parse::<usize>().unwrap() > 0, "{}", custom[1]);
    assert!(
        custom[2].starts_with("GET /dead 503 UF ")
            && custom[2].contains(" dead ")
            && custom[2].ends_with(" upstream_reset_before_response_started{connection_failure}"),
        "{}",
        custom[2]
    );

    let default = lines(&default_log);
    let authority = format!("127.0.0.1:{port}");
    assert!(default[0].starts_with("[20"), "{}", default[0]);
    assert!(
        default[0].contains("] \"GET /direct HTTP/1.1\" 201 - 0 14 ")
            && default[0].ends_with(&format!("\"{authority}\" \"-\"")),
        "{}",
        default[0]
    );
    assert!(
        default[1].contains("\"GET /up HTTP/1.1\" 200 - 0 ")
            && default[1].ends_with(&format!("\"{authority}\" \"{upstream_host}\"")),
        "{}",
        default[1]
    );
    assert!(default[2].contains("\" 503 UF 0 "), "{}", default[2]);
    assert_eq!(proxy.quit(), Some(0));
}

/// `request_headers_to_add` / `_remove` and `response_headers_to_add` /
/// `_remove` at the route, virtual host and route configuration levels:
/// what the upstream received and what the client saw, on a proxied
/// request and a direct response.
#[test]
fn header_mutations_of_routes_reach_the_upstream_and_the_client() {
    let upstream = Upstream::start();
    let admin = free_port();
    let port = free_port();
    let edits = [
        (
            "            name: local_route\n",
            r#"            name: local_route
            request_headers_to_add:
            - header: { key: x-level, value: global }
              append_action: OVERWRITE_IF_EXISTS_OR_ADD
            response_headers_to_add:
            - header: { key: x-served-by, value: polyhost }
"#,
        ),
        (
            "              domains: [\"*\"]\n",
            r#"              domains: ["*"]
              request_headers_to_add:
              - header: { key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%" }
              - header: { key: x-unset, value: "%REQ(x-not-sent)%" }
              request_headers_to_remove: [x-secret]
              response_headers_to_remove: [x-upstream]
"#,
        ),
        (
            "              - match: { prefix: \"/\" }\n                route: { cluster: upstream }\n",
            r#"              - match: { prefix: "/" }
                route: { cluster: upstream }
                request_headers_to_add:
                - header: { key: x-level, value: route }
                - header: { key: x-tag, value: a }
                - header: { key: x-tag, value: b }
                - header: { key: x-secret, value: kept-out }
                  append_action: ADD_IF_ABSENT
"#,
        ),
    ];
    let mut listener = http_listener("ingress", port, &[]);
    for (from, to) in edits {
        assert!(listener.contains(from), "{from}");
        listener = listener.replacen(from, to, 1);
    }
    let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);

    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let reply = get(
        &url("/mutated"),
        &[("x-secret", "s"), ("x-level", "from-client")],
    )
    .unwrap();
    assert_eq!(reply.status, 200, "{}", proxy.stderr());
    let seen = upstream
        .last("/mutated")
        .expect("the upstream got the request");
    let values = |name: &str| seen.headers.get(name).cloned().unwrap_or_default();
    // The route appended to the client's value, then the route
    // configuration, applied last by default, overwrote both.
    assert_eq!(values("x-level"), ["global"]);
    assert_eq!(values("x-tag"), ["a", "b"]);
    assert_eq!(values("x-client"), ["127.0.0.1"]);
    // The route's ADD_IF_ABSENT ran before the virtual host removed it.
    assert!(values("x-secret").is_empty(), "{:?}", seen.headers);
    // A value that renders empty is not added.
    assert!(!seen.headers.contains_key("x-unset"), "{:?}", seen.headers);
    assert_eq!(
        reply.headers.get("x-served-by").map(Vec::as_slice),
        Some(&["polyhost".to_string()][..])
    );
    assert!(
        !reply.headers.contains_key("x-upstream"),
        "{:?}",
        reply.headers
    );

    // A direct response gets the response mutations of its levels.
    let reply = get(&url("/direct"), &[]).unwrap();
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.headers.get("x-served-by").map(Vec::as_slice),
        Some(&["polyhost".to_string()][..])
    );
    assert_eq!(proxy.quit(), Some(0));
}

/// Routes with a `redirect`: the status and `location` the client gets,
/// made from the request's URL; the upstream never sees the request.
#[test]
fn redirect_routes_answer_with_a_location() {
    let upstream = Upstream::start();
    let admin = free_port();
    let port = free_port();
    let catch_all = "              - match: { prefix: \"/\" }\n";
    let redirects = r#"              - match: { prefix: "/old/" }
                redirect: { prefix_rewrite: "/new/", response_code: FOUND }
              - match: { prefix: "/secure" }
                redirect: { https_redirect: true, strip_query: true }
"#;
    let listener = http_listener("ingress", port, &[]);
    assert!(listener.contains(catch_all));
    let listener = listener.replacen(catch_all, &format!("{redirects}{catch_all}"), 1);
    let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);

    let location = |reply: &Reply| reply.headers.get("location").cloned().unwrap_or_default();
    let reply = get(&format!("http://127.0.0.1:{port}/old/page?x=1"), &[]).unwrap();
    assert_eq!(reply.status, 302, "{}", proxy.stderr());
    assert_eq!(
        location(&reply),
        [format!("http://127.0.0.1:{port}/new/page?x=1")]
    );
    // The client's port was the old scheme's: it is dropped.
    let reply = get(&format!("http://127.0.0.1:{port}/secure/a?b=c"), &[]).unwrap();
    assert_eq!(reply.status, 301);
    assert_eq!(location(&reply), ["https://127.0.0.1/secure/a"]);
    assert!(upstream.last("/old/").is_none() && upstream.last("/secure").is_none());
    assert_eq!(proxy.quit(), Some(0));
}

/// `weighted_clusters`: requests split between clusters by weight, seen
/// in each cluster's `upstream_rq_total`.
#[test]
fn weighted_clusters_split_requests_by_weight() {
    let upstream = Upstream::start();
    let admin = free_port();
    let port = free_port();
    let catch_all = "              - match: { prefix: \"/\" }\n";
    let canary = r#"              - match: { prefix: "/canary" }
                route:
                  weighted_clusters:
                    clusters:
                    - { name: upstream, weight: 3 }
                    - { name: bench-cluster, weight: 1 }
"#;
    let listener = http_listener("ingress", port, &[]);
    assert!(listener.contains(catch_all));
    let listener = listener.replacen(catch_all, &format!("{canary}{catch_all}"), 1);
    let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);

    for i in 0..8 {
        let reply = get(&format!("http://127.0.0.1:{port}/canary/{i}"), &[]).unwrap();
        assert_eq!(reply.status, 200, "{}", proxy.stderr());
    }
    // Both clusters lead to the same test upstream, which got all eight.
    assert_eq!(
        upstream
            .seen()
            .iter()
            .filter(|s| s.path.starts_with("/canary/"))
            .count(),
        8
    );
    assert_eq!(stat(&proxy, "cluster.upstream.upstream_rq_total"), Some(6));
    assert_eq!(
        stat(&proxy, "cluster.bench-cluster.upstream_rq_total"),
        Some(2)
    );
    assert_eq!(proxy.quit(), Some(0));
}

/// A format dictionary and filters: a JSON line per request the filter
/// admits (a status of 500 or more, or a request with `x-debug`), with
/// numbers for the numeric operators and `null` for what is unknown. And
/// the router's `upstream_log`: a line per request that went upstream.
#[test]
fn access_log_filters_choose_requests_and_dictionaries_write_json() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("errors.json");
    let upstream_log = dir.path().join("upstream.log");
    let admin = free_port();
    let port = free_port();
    let access_log = format!(
        r#"          stat_prefix: ingress
          access_log:
          - name: envoy.access_loggers.file
            filter:
              or_filter:
                filters:
                - status_code_filter:
                    comparison: {{ op: GE, value: {{ default_value: 500, runtime_key: errors }} }}
                - header_filter: {{ header: {{ name: x-debug, present_match: true }} }}
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {}
              log_format:
                json_format:
                  status: "%RESPONSE_CODE%"
                  flags: "%RESPONSE_FLAGS%"
                  request: {{ method: "%REQ(:METHOD)%", path: "%REQ(:PATH)%", agent: "%REQ(USER-AGENT)%" }}
                  route: "%ROUTE_NAME%"
                  took: "%DURATION%ms"
"#,
        log.display()
    );
    let router = "              \"@type\": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router\n";
    let router_with_log = format!(
        r#"{router}              upstream_log:
              - name: envoy.access_loggers.file
                typed_config:
                  "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
                  path: {}
                  log_format: {{ text_format: "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER%\n" }}
"#,
        upstream_log.display()
    );
    let listener = http_listener("ingress", port, &[]);
    assert!(listener.contains(router));
    let listener = listener
        .replacen("          stat_prefix: ingress\n", &access_log, 1)
        .replacen(router, &router_with_log, 1);
    let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);

    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    assert_eq!(get(&url("/up"), &[]).unwrap().status, 200);
    assert_eq!(get(&url("/dead"), &[]).unwrap().status, 503);
    assert_eq!(
        get(&url("/direct"), &[("x-debug", "1")]).unwrap().status,
        201
    );
    assert_eq!(get(&url("/up/again"), &[]).unwrap().status, 200);
    let lines = || json_lines(&log);
    // Lines are written when each request ends: wait for the last one
    // admitted, then check nothing else was written.
    assert!(
        eventually(|| lines().len() >= 2),
        "{:?}\n{}",
        lines(),
        proxy.stderr()
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    let logged = lines();
    assert_eq!(logged.len(), 2, "{logged:?}");
    let by_path = |path: &str| {
        logged
            .iter()
            .find(|l| l["request"]["path"] == path)
            .unwrap_or_else(|| panic!("no line for {path}: {logged:?}"))
    };
    let dead = by_path("/dead");
    assert_eq!(dead["status"], 503);
    assert_eq!(dead["flags"], "UF");
    assert_eq!(dead["request"]["method"], "GET");
    assert_eq!(dead["request"]["agent"], serde_json::Value::Null);
    assert_eq!(dead["route"], serde_json::Value::Null);
    assert!(dead["took"].as_str().unwrap().ends_with("ms"), "{dead}");
    let direct = by_path("/direct");
    assert_eq!(direct["status"], 201);
    assert_eq!(direct["flags"], "-");

    // The upstream log has the three requests that went upstream (the one
    // refused with code 0: no upstream response), not the direct response.
    let upstream_lines = || {
        let mut lines: Vec<String> = std::fs::read_to_string(&upstream_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        lines.sort();
        lines
    };
    assert!(
        eventually(|| upstream_lines().len() >= 3),
        "{:?}",
        upstream_lines()
    );
    assert_eq!(
        upstream_lines(),
        [
            "/dead 0 UF dead",
            "/up 200 - upstream",
            "/up/again 200 - upstream"
        ]
    );
    assert_eq!(proxy.quit(), Some(0));
}

/// As Envoy's connection manager: a request without `x-request-id` gets a
/// random UUID before the plugins run (`request.id`), the upstream sees
/// it; one that has an id keeps it; `generate_request_id: false` adds none.
/// `x-forwarded-proto` is set to `http` unless the client sent one.
#[test]
fn requests_get_an_x_request_id_unless_they_have_one() {
    let upstream = Upstream::start();
    for generate in [true, false] {
        let admin = free_port();
        let port = free_port();
        let mut listener = http_listener("ingress", port, &[]);
        if !generate {
            listener = listener.replacen(
                "          stat_prefix: ingress\n",
                "          stat_prefix: ingress\n          generate_request_id: false\n",
                1,
            );
        }
        let proxy = Proxy::start(&bootstrap(&[listener], upstream.addr, admin), admin, &[]);
        let path = format!("/rid/{generate}/new");
        assert_eq!(
            get(&format!("http://127.0.0.1:{port}{path}"), &[])
                .unwrap()
                .status,
            200
        );
        let seen = upstream.last(&path).unwrap();
        // And, always, the scheme the client used.
        assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
        let id = seen.header("x-request-id").map(str::to_string);
        if generate {
            let id = id.expect("an x-request-id");
            let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
            assert_eq!(parsed.get_version_num(), 4, "{id}");
            assert_eq!(id, parsed.hyphenated().to_string(), "lowercase, hyphenated");
        } else {
            assert_eq!(id, None);
        }
        let path = format!("/rid/{generate}/given");
        let reply = get(
            &format!("http://127.0.0.1:{port}{path}"),
            &[
                ("x-request-id", "from-client"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .unwrap();
        assert_eq!(reply.status, 200);
        let seen = upstream.last(&path).unwrap();
        assert_eq!(seen.header("x-request-id"), Some("from-client"));
        assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
        assert_eq!(proxy.quit(), Some(0));
    }
}

#[test]
fn failure_policies_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = trap_plugin(dir.path());
    for engine in engines() {
        for policy in ["FAIL_CLOSED", "FAIL_OPEN", "FAIL_RELOAD"] {
            let mut spec = WasmFilterSpec::new("trapper", engine, &plugin);
            spec.failure_policy = Some(policy);
            let (proxy, port) = serve(&upstream, &[spec], &["--concurrency", "1"]);
            let what = format!("{policy} on {engine}");
            let url = format!("http://127.0.0.1:{port}/policy/{policy}/{engine}");
            let healthy = get(&url, &[]).unwrap();
            assert_eq!(healthy.status, 200, "{what}");
            assert_eq!(
                upstream
                    .last(&format!("/policy/{policy}/{engine}"))
                    .unwrap()
                    .header("x-wasm"),
                Some("ok")
            );

            let trapped = get(&format!("{url}/trap"), &[("x-trap", "1")]).unwrap();
            let after = get(&format!("{url}/after"), &[]).unwrap();
            match policy {
                "FAIL_CLOSED" => {
                    assert_eq!(trapped.status, 503, "{what}");
                    // The VM stays failed: Envoy keeps answering 503.
                    assert_eq!(after.status, 503, "{what}");
                }
                "FAIL_OPEN" => {
                    assert_eq!(trapped.status, 200, "{what}");
                    let seen = upstream
                        .last(&format!("/policy/{policy}/{engine}/trap"))
                        .unwrap();
                    assert_eq!(seen.header("x-wasm"), None, "{what}: unfiltered");
                    assert_eq!(after.status, 200, "{what}");
                }
                _ => {
                    assert_eq!(trapped.status, 503, "{what}");
                    // A fresh VM serves the next request, filtered.
                    assert_eq!(after.status, 200, "{what}: {}", proxy.stderr());
                    let seen = upstream
                        .last(&format!("/policy/{policy}/{engine}/after"))
                        .unwrap();
                    assert_eq!(seen.header("x-wasm"), Some("ok"), "{what}");
                }
            }
            let log = proxy.stderr();
            assert!(
                log.contains("trapper"),
                "{what}: the failure log names no plugin:\n{log}"
            );
            assert_eq!(proxy.quit(), Some(0), "{what}");
        }
    }
}

/// An SDK plugin that panics (`abi_probe`'s `trap` case: Rust `panic!`,
/// Go `panic`, AssemblyScript and C++ `abort`) fails its request with 503
/// under `FAIL_RELOAD`, and a fresh VM filters the next one.
#[test]
fn a_panicking_sdk_plugin_is_reloaded_in_every_language_on_every_engine() {
    let upstream = Upstream::start();
    for engine in engines() {
        for (language, file) in language_plugins("abi_probe") {
            let what = format!("{language} abi_probe on {engine}");
            let mut spec = WasmFilterSpec::new("probe", engine, &file);
            spec.failure_policy = Some("FAIL_RELOAD");
            let (proxy, port) = serve(&upstream, &[spec], &["--concurrency", "1"]);
            let url = format!("http://127.0.0.1:{port}/panic/{language}/{engine}");
            let trapped = get(&url, &[("x-case", "trap")]).unwrap();
            assert_eq!(trapped.status, 503, "{what}: {}", proxy.stderr());
            let after = get(&format!("{url}/after"), &[("x-case", "time")]).unwrap();
            assert_eq!(after.status, 200, "{what}: {}", proxy.stderr());
            let seen = upstream
                .last(&format!("/panic/{language}/{engine}/after"))
                .expect("the request after the panic reached the upstream");
            assert!(
                seen.header("x-result-time").is_some(),
                "{what}: the request after the panic was not filtered"
            );
            // The failure is logged naming the plugin and the callback.
            let log = proxy.stderr();
            assert!(
                log.lines().any(|l| l.contains("plugin failed plugin=probe")
                    && l.contains("trapped in `proxy_on_request_headers`")),
                "{what}: no failure line naming the plugin:\n{log}"
            );
            assert_eq!(proxy.quit(), Some(0), "{what}");
        }
    }
}

#[test]
fn admin_endpoints_answer_as_envoy_does() {
    let upstream = Upstream::start();
    let (proxy, port) = serve(&upstream, &[], &[]);
    assert_eq!(proxy.admin("/ready").text(), "LIVE\n");
    assert_eq!(
        proxy.admin("/listeners").text(),
        format!("ingress::127.0.0.1:{port}\n")
    );
    let clusters = proxy.admin("/clusters").text();
    assert!(
        clusters.contains(&format!(
            "upstream::{}::health_flags::healthy",
            upstream.addr
        )),
        "{clusters}"
    );
    let info: serde_json::Value =
        serde_json::from_slice(&proxy.admin("/server_info").body).unwrap();
    assert_eq!(info["state"], "LIVE");
    assert_eq!(info["command_line_options"]["concurrency"], 2);
    assert_eq!(
        proxy.admin("/quitquitquit").status,
        405,
        "GET must not stop the proxy"
    );
    assert_eq!(proxy.admin("/nope").status, 404);
    assert_eq!(
        get(&format!("http://127.0.0.1:{port}/"), &[])
            .unwrap()
            .status,
        200
    );
    assert_eq!(proxy.quit(), Some(0));
}

#[test]
fn configuration_errors_are_one_clear_line_and_a_failed_exit() {
    let upstream = Upstream::start();
    let admin = free_port();
    let port = free_port();
    let good = http_listener("ingress", port, &[]);

    let lua = good.replace(
        "          - name: envoy.filters.http.router",
        "          - name: envoy.filters.http.lua\n            typed_config:\n              \"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua\n          - name: envoy.filters.http.router",
    );
    let exit = run_expecting_exit(&bootstrap(&[lua], upstream.addr, admin), &[]);
    assert_ne!(exit.code, Some(0));
    assert!(
        exit.stderr.contains("envoy.filters.http.lua"),
        "{}",
        exit.stderr
    );
    assert!(exit.stderr.contains("http_filters[0]"), "{}", exit.stderr);

    for engine in engines() {
        let missing = http_listener(
            "ingress",
            port,
            &[WasmFilterSpec::new(
                "ghost",
                engine,
                "/nonexistent/ghost.wasm",
            )],
        );
        let exit = run_expecting_exit(&bootstrap(&[missing], upstream.addr, admin), &[]);
        assert_ne!(exit.code, Some(0), "{engine}");
        assert!(exit.stderr.contains("ghost"), "{engine}: {}", exit.stderr);
        assert!(
            exit.stderr.contains("/nonexistent/ghost.wasm"),
            "{engine}: {}",
            exit.stderr
        );

        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.wasm");
        std::fs::write(&junk, b"\0asm\x01\0\0\0garbage").unwrap();
        let bad = http_listener(
            "ingress",
            port,
            &[WasmFilterSpec::new(
                "junk",
                engine,
                &junk.display().to_string(),
            )],
        );
        let exit = run_expecting_exit(&bootstrap(&[bad], upstream.addr, admin), &[]);
        assert_ne!(exit.code, Some(0), "{engine}");
        assert!(
            exit.stderr.contains("wasm plugin junk"),
            "{engine}: {}",
            exit.stderr
        );
        assert!(
            !exit.stderr.contains("panicked"),
            "{engine}: {}",
            exit.stderr
        );

        // A plugin of each SDK language that refuses its configuration
        // stops the start, naming itself and the callback.
        for (language, file) in language_plugins("bad_config") {
            let refusing = http_listener(
                "ingress",
                port,
                &[WasmFilterSpec::new("picky", engine, &file)],
            );
            let exit = run_expecting_exit(&bootstrap(&[refusing], upstream.addr, admin), &[]);
            assert_ne!(exit.code, Some(0), "{language} on {engine}");
            assert!(
                exit.stderr.contains("wasm plugin picky"),
                "{language} on {engine}: {}",
                exit.stderr
            );
            assert!(
                exit.stderr.contains("proxy_on_configure"),
                "{language} on {engine}: {}",
                exit.stderr
            );
        }
    }

    let exit = run_expecting_exit(
        &bootstrap(std::slice::from_ref(&good), upstream.addr, admin),
        &["--log-level", "loud"],
    );
    assert_ne!(exit.code, Some(0));
    assert!(
        exit.stderr.contains("unknown log level `loud`"),
        "{}",
        exit.stderr
    );
    let exit = run_expecting_exit(
        &bootstrap(&[good], upstream.addr, admin),
        &["--hot-restart-version"],
    );
    assert_ne!(exit.code, Some(0));
}

#[test]
fn sighup_reloads_without_dropping_requests_on_every_engine() {
    let upstream = Upstream::start();
    let (_, hello) = hello_plugins()
        .into_iter()
        .find(|(language, _)| *language == "rust")
        .expect("the Rust hello plugin");
    for engine in engines() {
        let admin = free_port();
        let port = free_port();
        let with_plugin = bootstrap(
            &[http_listener(
                "ingress",
                port,
                &[WasmFilterSpec::new("hello", engine, &hello)],
            )],
            upstream.addr,
            admin,
        );
        let proxy = Proxy::start(&with_plugin, admin, &[]);
        let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
        let what = |step: &str| format!("{engine}: {step}\n{}", proxy.stderr());

        // 1. Only a route changes: the unchanged plugin is kept, not loaded
        // again, and the new direct response is served.
        let line = proxy.reload(&with_plugin.replace("direct answer", "reloaded answer"), 1);
        assert!(line.contains("configuration reloaded"), "{}", what(&line));
        assert!(line.contains("plugins_loaded=0"), "{}", what(&line));
        let direct = get(&url("/direct"), &[]).unwrap();
        assert_eq!(direct.text(), "reloaded answer\n", "{}", what("direct"));
        get(&url("/kept"), &[]).unwrap();
        let seen = upstream.last("/kept").expect("forwarded");
        assert_eq!(seen.header("x-hello"), Some("polyhost"), "{}", what("kept"));

        // 2. The plugin is removed while a request that went through it is
        // still waiting for the upstream: that request finishes on the old
        // chain (its response still passes the plugin), the next one runs
        // without the plugin.
        let in_flight = {
            let url = url(&format!("/linger/{engine}/"));
            std::thread::spawn(move || get(&url, &[]))
        };
        assert!(
            eventually(|| upstream.last(&format!("/linger/{engine}/")).is_some()),
            "{}",
            what("the lingering request never reached the upstream")
        );
        let without_plugin =
            bootstrap(&[http_listener("ingress", port, &[])], upstream.addr, admin);
        let line = proxy.reload(&without_plugin, 2);
        assert!(line.contains("configuration reloaded"), "{}", what(&line));
        let lingered = in_flight
            .join()
            .unwrap()
            .expect("the in-flight request is answered");
        assert_eq!(lingered.status, 200, "{}", what("in flight"));
        assert_eq!(
            lingered.header("x-powered-by"),
            Some("polyhost"),
            "{}",
            what("the in-flight request left the old plugin chain")
        );
        get(&url("/after"), &[]).unwrap();
        let seen = upstream.last("/after").expect("forwarded");
        assert_eq!(seen.header("x-hello"), None, "{}", what("plugin removed"));

        // 3. A configuration that cannot load changes nothing: the error is
        // logged and the previous configuration keeps serving.
        let broken = with_plugin.replace(&hello, "/nonexistent/plugin.wasm");
        let line = proxy.reload(&broken, 3);
        assert!(line.contains("not loaded"), "{}", what(&line));
        assert!(line.contains("/nonexistent/plugin.wasm"), "{}", what(&line));
        get(&url("/still"), &[]).unwrap();
        let seen = upstream.last("/still").expect("forwarded");
        assert_eq!(seen.header("x-hello"), None, "{}", what("old config kept"));

        // 4. Moving a listener needs a restart, and says so.
        let moved = without_plugin.replace(&format!("port_value: {port}"), "port_value: 1");
        let line = proxy.reload(&moved, 4);
        assert!(line.contains("needs a restart"), "{}", what(&line));
        assert_eq!(get(&url("/direct"), &[]).unwrap().status, 201);

        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// Adds `x-connection-id: <16 hex digits>` to each request: the
/// `connection.id` property as the plugin reads it.
const CONNECTION_ID_PLUGIN: &str = r#"
(module
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "connection.id")
  (data (i32.const 96) "x-connection-id")
  (data (i32.const 128) "0123456789abcdef")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $value i32) (local $i i32) (local $byte i32)
    (if (call $prop (i32.const 64) (i32.const 13) (i32.const 16) (i32.const 20))
      (then (return (i32.const 0))))
    (local.set $value (i32.load (i32.const 16)))
    ;; Hex, most significant byte first, into 256..272.
    (loop $digits
      (local.set $byte (i32.load8_u (i32.add (local.get $value) (i32.sub (i32.const 7) (local.get $i)))))
      (i32.store8 (i32.add (i32.const 256) (i32.mul (local.get $i) (i32.const 2)))
        (i32.load8_u (i32.add (i32.const 128) (i32.shr_u (local.get $byte) (i32.const 4)))))
      (i32.store8 (i32.add (i32.const 257) (i32.mul (local.get $i) (i32.const 2)))
        (i32.load8_u (i32.add (i32.const 128) (i32.and (local.get $byte) (i32.const 15)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $digits (i32.lt_u (local.get $i) (i32.const 8))))
    (drop (call $add (i32.const 0) (i32.const 96) (i32.const 15) (i32.const 256) (i32.const 16)))
    (i32.const 0)))
"#;

/// Sends `paths` one after the other on one HTTP/1.1 keep-alive connection.
fn keep_alive_requests(port: u16, paths: &[&str]) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    for path in paths {
        write!(stream, "GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("upstream ok\n") {
            let n = stream.read(&mut buf).unwrap();
            assert!(n > 0, "the proxy closed a keep-alive connection");
            seen.extend_from_slice(&buf[..n]);
        }
    }
}

#[test]
fn connection_id_is_one_per_connection_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "connection_id", CONNECTION_ID_PLUGIN);
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("connection-id", engine, &plugin)],
            &[],
        );
        let first = format!("/conn/{engine}/first");
        let second = format!("/conn/{engine}/second");
        let other = format!("/conn/{engine}/other");
        keep_alive_requests(port, &[&first, &second]);
        keep_alive_requests(port, &[&other]);
        let id = |path: &str| {
            upstream
                .last(path)
                .and_then(|seen| seen.header("x-connection-id").map(str::to_string))
                .unwrap_or_else(|| {
                    panic!("{engine}: no connection id for {path}\n{}", proxy.stderr())
                })
        };
        assert_eq!(
            id(&first),
            id(&second),
            "{engine}: same connection, same id"
        );
        assert_ne!(
            id(&first),
            id(&other),
            "{engine}: another connection, another id"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// Copies the string properties of the connection and the route into
/// request headers: `source.address` to `x-source`, `destination.address`
/// to `x-destination`, `request.protocol` to `x-protocol`,
/// `route_config_name` to `x-route-config`, `cluster_name` to `x-cluster`,
/// `xds.virtual_host_name` to `x-vhost`, and `upstream.address` (not known
/// yet) to `x-upstream-early`; then, on
/// the response, `upstream.address` to the response's `x-upstream-address`.
const PROPERTIES_PLUGIN: &str = r#"
(module
  (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "source.address")
  (data (i32.const 80) "x-source")
  (data (i32.const 96) "destination.address")
  (data (i32.const 128) "x-destination")
  (data (i32.const 144) "request.protocol")
  (data (i32.const 160) "x-protocol")
  (data (i32.const 176) "route_config_name")
  (data (i32.const 208) "x-route-config")
  (data (i32.const 224) "cluster_name")
  (data (i32.const 240) "x-cluster")
  (data (i32.const 256) "upstream.address")
  (data (i32.const 272) "x-upstream-early")
  (data (i32.const 288) "x-upstream-address")
  (data (i32.const 320) "xds.virtual_host_name")
  (data (i32.const 352) "x-vhost")
  (func $copy (param $map i32) (param $path i32) (param $path_len i32) (param $name i32) (param $name_len i32)
    (if (i32.eqz (call $prop (local.get $path) (local.get $path_len) (i32.const 16) (i32.const 20)))
      (then (drop (call $add (local.get $map) (local.get $name) (local.get $name_len)
        (i32.load (i32.const 16)) (i32.load (i32.const 20)))))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (call $copy (i32.const 0) (i32.const 64) (i32.const 14) (i32.const 80) (i32.const 8))
    (call $copy (i32.const 0) (i32.const 96) (i32.const 19) (i32.const 128) (i32.const 13))
    (call $copy (i32.const 0) (i32.const 144) (i32.const 16) (i32.const 160) (i32.const 10))
    (call $copy (i32.const 0) (i32.const 176) (i32.const 17) (i32.const 208) (i32.const 14))
    (call $copy (i32.const 0) (i32.const 224) (i32.const 12) (i32.const 240) (i32.const 9))
    (call $copy (i32.const 0) (i32.const 256) (i32.const 16) (i32.const 272) (i32.const 16))
    (call $copy (i32.const 0) (i32.const 320) (i32.const 21) (i32.const 352) (i32.const 7))
    (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    ;; 2: the response headers.
    (call $copy (i32.const 2) (i32.const 256) (i32.const 16) (i32.const 288) (i32.const 18))
    (i32.const 0)))
"#;

#[test]
fn connection_and_route_properties_reach_plugins_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "properties", PROPERTIES_PLUGIN);
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("properties", engine, &plugin)],
            &[],
        );
        let path = format!("/props/{engine}");
        let reply = get(&format!("http://127.0.0.1:{port}{path}"), &[]).unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let seen = upstream
            .last(&path)
            .expect("the request reached the upstream");
        let header = |name: &str| seen.header(name).unwrap_or_default().to_string();
        assert!(
            header("x-source").starts_with("127.0.0.1:"),
            "{engine}: source {:?}",
            header("x-source")
        );
        assert_eq!(
            header("x-destination"),
            format!("127.0.0.1:{port}"),
            "{engine}"
        );
        assert_eq!(header("x-protocol"), "HTTP/1.1", "{engine}");
        assert_eq!(header("x-route-config"), "local_route", "{engine}");
        assert_eq!(header("x-cluster"), "upstream", "{engine}");
        assert_eq!(header("x-vhost"), "all", "{engine}");
        // As in Envoy, the upstream host is known from the response on.
        assert_eq!(seen.header("x-upstream-early"), None, "{engine}");
        assert_eq!(
            reply.header("x-upstream-address"),
            Some(upstream.addr.to_string().as_str()),
            "{engine}"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// Adds `x-log-level: N` to each request, N being what
/// `proxy_get_log_level` answers (0 trace ... 5 critical).
const LOG_LEVEL_PLUGIN: &str = r#"
(module
  (import "env" "proxy_get_log_level" (func $level (param i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "x-log-level")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $level (i32.const 16)))
    (i32.store8 (i32.const 32) (i32.add (i32.const 48) (i32.load (i32.const 16))))
    (drop (call $add (i32.const 0) (i32.const 64) (i32.const 11) (i32.const 32) (i32.const 1)))
    (i32.const 0)))
"#;

/// `LOG_LEVEL_PLUGIN` that also logs `debug line` at debug level first.
const DEBUG_LOG_PLUGIN: &str = r#"
(module
  (import "env" "proxy_get_log_level" (func $level (param i32) (result i32)))
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "x-log-level")
  (data (i32.const 96) "debug line")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $log (i32.const 1) (i32.const 96) (i32.const 10)))
    (drop (call $level (i32.const 16)))
    (i32.store8 (i32.const 32) (i32.add (i32.const 48) (i32.load (i32.const 16))))
    (drop (call $add (i32.const 0) (i32.const 64) (i32.const 11) (i32.const 32) (i32.const 1)))
    (i32.const 0)))
"#;

/// Envoy's admin `/logging` lists the components' levels and, on POST,
/// changes them while the proxy runs; plugins follow the `wasm` level at
/// once (what `proxy_get_log_level` answers, and which lines are kept).
#[test]
fn admin_logging_changes_levels_while_plugins_run_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "debug_log", DEBUG_LOG_PLUGIN);
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("loglevel", engine, &plugin)],
            &[],
        );
        let level_seen = |step: &str| {
            let path = format!("/logging/{engine}/{step}");
            let reply = get(&format!("http://127.0.0.1:{port}{path}"), &[]).unwrap();
            assert_eq!(reply.status, 200, "{engine} {step}: {}", proxy.stderr());
            let seen = upstream
                .last(&path)
                .expect("the request reached the upstream");
            seen.header("x-log-level").unwrap_or_default().to_string()
        };
        let post = |query: &str| {
            let url = format!("http://127.0.0.1:{}/logging{query}", proxy.admin);
            request("POST", &url, &[], b"", false).unwrap()
        };
        let debug_lines = || {
            (proxy.stderr().lines())
                .filter(|l| l.contains("[debug][wasm] wasm log loglevel: debug line"))
                .count()
        };

        assert_eq!(level_seen("before"), "2", "{engine}");
        let listing = proxy.admin("/logging");
        assert_eq!(listing.status, 200, "{engine}");
        assert!(
            listing.text().starts_with("active loggers:\n")
                && listing.text().contains("\n  wasm: info\n"),
            "{engine}: {}",
            listing.text()
        );
        // Changes need POST, as Envoy's do.
        assert_eq!(proxy.admin("/logging?wasm=debug").status, 405, "{engine}");

        let changed = post("?wasm=debug");
        assert_eq!(changed.status, 200, "{engine}: {}", changed.text());
        assert!(
            changed.text().contains("\n  wasm: debug\n"),
            "{engine}: {}",
            changed.text()
        );
        assert_eq!(level_seen("debug"), "1", "{engine}");
        assert!(
            eventually(|| debug_lines() == 1),
            "{engine}: the debug line after /logging?wasm=debug, once:\n{}",
            proxy.stderr()
        );

        let refused = post("?level=loud");
        assert_eq!(refused.status, 400, "{engine}");
        assert!(
            refused.text().contains("unknown log level `loud`"),
            "{engine}: {}",
            refused.text()
        );
        let refused = post("?nope=debug");
        assert!(
            refused.text().contains("unknown logger `nope`"),
            "{engine}: {}",
            refused.text()
        );

        assert_eq!(post("?paths=wasm:error,http:info").status, 200, "{engine}");
        assert_eq!(level_seen("error"), "4", "{engine}");
        // The line before the change stays the only one.
        assert_eq!(debug_lines(), 1, "{engine}");
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// As in Envoy, plugins read the `wasm` component's log level: `-l` and
/// `--component-log-level wasm:LEVEL` decide it.
#[test]
fn plugins_read_the_wasm_log_level_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "log_level", LOG_LEVEL_PLUGIN);
    for engine in engines() {
        let cases: [(&[&str], &str); 3] = [
            (&[], "2"),
            (&["--component-log-level", "wasm:debug"], "1"),
            (&["-l", "error"], "4"),
        ];
        for (args, expected) in cases {
            let (proxy, port) = serve(
                &upstream,
                &[WasmFilterSpec::new("log_level", engine, &plugin)],
                args,
            );
            let path = format!("/log-level/{engine}/{}", args.join("-"));
            let reply = get(&format!("http://127.0.0.1:{port}{path}"), &[]).unwrap();
            assert_eq!(reply.status, 200, "{engine} {args:?}: {}", proxy.stderr());
            let seen = upstream
                .last(&path)
                .expect("the request reached the upstream");
            assert_eq!(
                seen.header("x-log-level"),
                Some(expected),
                "{engine} {args:?}"
            );
            assert_eq!(proxy.quit(), Some(0), "{engine} {args:?}");
        }
    }
}

/// Makes a unary gRPC call to the `grpc` cluster on request headers and
/// pauses; the answer is added to the request as `x-grpc-reply` (the
/// message) or `x-grpc-status` (the status of a failed call), and the
/// request resumes. `x-fail` on the request calls a method the upstream
/// refuses.
const GRPC_CALL_PLUGIN: &str = r#"
(module
  (import "env" "proxy_grpc_call" (func $grpc (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes" (func $buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_continue_stream" (func $continue (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "grpc")
  (data (i32.const 80) "echo.Echo")
  (data (i32.const 96) "Say")
  (data (i32.const 100) "Fail")
  (data (i32.const 112) "ping")
  (data (i32.const 128) "x-fail")
  (data (i32.const 144) "x-grpc-reply")
  (data (i32.const 160) "x-grpc-status")
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $method i32) (local $len i32)
    (local.set $method (i32.const 96))
    (local.set $len (i32.const 3))
    (if (i32.eqz (call $get (i32.const 0) (i32.const 128) (i32.const 6) (i32.const 24) (i32.const 28)))
      (then (local.set $method (i32.const 100)) (local.set $len (i32.const 4))))
    (if (call $grpc (i32.const 64) (i32.const 4) (i32.const 80) (i32.const 9)
                    (local.get $method) (local.get $len) (i32.const 0) (i32.const 0)
                    (i32.const 112) (i32.const 4) (i32.const 2000) (i32.const 16))
      (then (return (i32.const 0))))
    (i32.const 1))
  (func (export "proxy_on_grpc_receive") (param i32) (param i32) (param $size i32)
    (drop (call $buffer (i32.const 5) (i32.const 0) (local.get $size) (i32.const 32) (i32.const 36)))
    (drop (call $add (i32.const 0) (i32.const 144) (i32.const 12)
                     (i32.load (i32.const 32)) (i32.load (i32.const 36))))
    (drop (call $continue (i32.const 0))))
  (func (export "proxy_on_grpc_close") (param i32) (param i32) (param $status i32)
    (i32.store8 (i32.const 300) (i32.add (i32.const 48) (local.get $status)))
    (drop (call $add (i32.const 0) (i32.const 160) (i32.const 13) (i32.const 300) (i32.const 1)))
    (drop (call $continue (i32.const 0)))))
"#;

#[test]
fn grpc_callout_to_an_h2_cluster_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "grpc_call", GRPC_CALL_PLUGIN);
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("grpc-call", engine, &plugin)],
            &[],
        );
        let ok = format!("/grpc/{engine}/ok");
        let reply = get(&format!("http://127.0.0.1:{port}{ok}"), &[]).unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let grpc = upstream
            .last("/echo.Echo/Say")
            .unwrap_or_else(|| panic!("{engine}: no gRPC request upstream\n{}", proxy.stderr()));
        assert_eq!(grpc.method, "POST");
        assert_eq!(grpc.version, "HTTP/2.0", "{engine}");
        assert_eq!(grpc.header("content-type"), Some("application/grpc"));
        assert_eq!(
            grpc.body, b"\0\0\0\0\x04ping",
            "{engine}: one framed message"
        );
        let seen = upstream.last(&ok).expect("the request went on");
        assert_eq!(seen.header("x-grpc-reply"), Some("pong:ping"), "{engine}");

        // A call the upstream refuses reaches the plugin as its status.
        let failed = format!("/grpc/{engine}/failed");
        let reply = get(
            &format!("http://127.0.0.1:{port}{failed}"),
            &[("x-fail", "1")],
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        let seen = upstream.last(&failed).expect("the request went on");
        assert_eq!(seen.header("x-grpc-status"), Some("7"), "{engine}");
        assert_eq!(seen.header("x-grpc-reply"), None, "{engine}");
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

#[test]
fn a_looping_plugin_is_stopped_at_the_configured_deadline_on_every_engine() {
    let upstream = Upstream::start();
    let looper = fixture("wat/endless_loop.wasm");
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("looper", engine, &looper)],
            &["--wasm-call-timeout-ms", "300"],
        );
        let started = Instant::now();
        let reply = get(&format!("http://127.0.0.1:{port}/loop/{engine}"), &[]).unwrap();
        assert_eq!(reply.status, 503, "{engine}: {}", proxy.stderr());
        assert!(started.elapsed() >= Duration::from_millis(300), "{engine}");
        assert!(upstream.last(&format!("/loop/{engine}")).is_none());
        let log = proxy.stderr();
        assert!(
            log.contains("deadline of 300 ms") && log.contains("looper"),
            "{engine}: the log names the plugin and the deadline:\n{log}"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// `bootstrap_extensions` running `file` as a singleton Wasm service with
/// vm_id `queue-vm`.
fn wasm_service(name: &str, engine: &str, file: &str) -> String {
    format!(
        r#"bootstrap_extensions:
- name: envoy.bootstrap.wasm
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.wasm.v3.WasmService
    singleton: true
    config:
      name: {name}
      vm_config:
        vm_id: queue-vm
        runtime: {engine}
        code: {{ local: {{ filename: {file} }} }}
"#
    )
}

#[test]
fn a_singleton_service_consumes_what_filters_enqueue_on_every_engine_and_language() {
    let upstream = Upstream::start();
    let pairs = [
        ("rust", "rust-wasip1"),
        ("go", "go"),
        ("assemblyscript", "assemblyscript"),
        ("cpp", "cpp"),
    ];
    // Every engine with the Rust pair, every language on the first engine:
    // the start-ups of all combinations would take a minute.
    let mut runs: Vec<(&str, &str, &str)> = engines()
        .into_iter()
        .map(|engine| (engine, "rust", "rust-wasip1"))
        .collect();
    let first = engines()[0];
    runs.extend(
        pairs[1..]
            .iter()
            .map(|(language, dir)| (first, *language, *dir)),
    );
    for (engine, language, dir) in runs {
        let what = format!("{language} on {engine}");
        let consumer = fixture(&format!("{dir}/queue_consumer.wasm"));
        let producer = fixture(&format!("{dir}/queue_producer.wasm"));
        let admin = free_port();
        let port = free_port();
        let config = format!(
            "{}{}",
            wasm_service("consumer", engine, &consumer),
            bootstrap(
                &[http_listener(
                    "ingress",
                    port,
                    &[WasmFilterSpec::new("producer", engine, &producer)],
                )],
                upstream.addr,
                admin,
            )
        );
        let proxy = Proxy::start(&config, admin, &[]);
        let paths: Vec<String> = (0..3)
            .map(|i| format!("/q/{language}/{engine}/{i}"))
            .collect();
        for path in &paths {
            let reply = get(&format!("http://127.0.0.1:{port}{path}"), &[]).unwrap();
            assert_eq!(reply.status, 200, "{what}: {}", proxy.stderr());
            let seen = upstream.last(path).expect("forwarded");
            assert_eq!(seen.header("x-enqueued"), Some("yes"), "{what}");
        }
        // The service, on its own thread, is told the queue is ready
        // and drains it: one log line and one count per request.
        let consumed = |log: &str| {
            paths
                .iter()
                .all(|p| log.lines().any(|l| l.contains(&format!("consumer: {p}"))))
        };
        assert!(
            eventually(|| consumed(&proxy.stderr())),
            "{what}: the service did not consume every item:\n{}",
            proxy.stderr()
        );
        let stats = proxy.admin("/stats?filter=consumer_items").text();
        assert!(
            stats
                .lines()
                .any(|l| l.trim() == "wasmcustom.consumer_items: 3"),
            "{what}: {stats}"
        );
        assert_eq!(proxy.quit(), Some(0), "{what}");
    }
}

/// Edits response trailers: copies the upstream's `x-upstream-trailer` into
/// `x-wasm-saw` and adds `x-wasm-trailer: yes`.
const TRAILERS_PLUGIN: &str = r#"
(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "x-upstream-trailer")
  (data (i32.const 96) "x-wasm-saw")
  (data (i32.const 112) "x-wasm-trailer")
  (data (i32.const 128) "yes")
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 3) (i32.const 64) (i32.const 18) (i32.const 16) (i32.const 20)))
      (then (drop (call $add (i32.const 3) (i32.const 96) (i32.const 10)
                             (i32.load (i32.const 16)) (i32.load (i32.const 20))))))
    (drop (call $add (i32.const 3) (i32.const 112) (i32.const 14) (i32.const 128) (i32.const 3)))
    (i32.const 0)))
"#;

#[test]
fn response_trailers_pass_through_the_plugin_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "trailers", TRAILERS_PLUGIN);
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("trailers", engine, &plugin)],
            &[],
        );
        let reply = request(
            "GET",
            &format!("http://127.0.0.1:{port}/h2/trailers/{engine}"),
            &[],
            b"",
            true,
        )
        .unwrap();
        assert_eq!(reply.status, 200, "{engine}: {}", proxy.stderr());
        assert_eq!(reply.body, b"upstream ok\n", "{engine}");
        let trailer = |name: &str| reply.trailers.get(name).and_then(|v| v.first()).cloned();
        assert_eq!(
            trailer("x-upstream-trailer").as_deref(),
            Some("from-upstream"),
            "{engine}: {:?}\n{}",
            reply.trailers,
            proxy.stderr()
        );
        assert_eq!(
            trailer("x-wasm-saw").as_deref(),
            Some("from-upstream"),
            "{engine}"
        );
        assert_eq!(
            trailer("x-wasm-trailer").as_deref(),
            Some("yes"),
            "{engine}"
        );
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

#[test]
fn sequential_load_ends_without_errors() {
    // A short form of scripts/load-test.sh: bounded, loopback only.
    let upstream = Upstream::start();
    let (proxy, port) = serve(
        &upstream,
        &[WasmFilterSpec::new(
            "hello",
            engines()[0],
            &fixture("rust-wasip1/hello.wasm"),
        )],
        &[],
    );
    let threads: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                let mut errors = 0;
                for i in 0..100 {
                    match get(&format!("http://127.0.0.1:{port}/load/{t}/{i}"), &[]) {
                        Ok(r)
                            if r.status == 200 && r.header("x-powered-by") == Some("polyhost") => {}
                        _ => errors += 1,
                    }
                }
                errors
            })
        })
        .collect();
    let errors: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(errors, 0, "{}", proxy.stderr());
    eventually(|| {
        proxy
            .admin("/stats")
            .text()
            .contains("http.ingress.downstream_rq_2xx: 400")
    });
    let stats = proxy.admin("/stats").text();
    assert!(
        stats.contains("http.ingress.downstream_rq_2xx: 400"),
        "{stats}"
    );
    assert_eq!(proxy.quit(), Some(0));
}

#[test]
fn a_removed_plugin_that_defers_its_done_keeps_its_vm_until_proxy_done_on_every_engine() {
    let upstream = Upstream::start();
    // proxy_on_done answers false; the next tick calls proxy_done, which
    // lets the host run proxy_on_delete (logged as "on_delete 1").
    let deferred = fixture("wat/deferred_done.wasm");
    for engine in engines() {
        let admin = free_port();
        let port = free_port();
        let with_plugin = bootstrap(
            &[http_listener(
                "ingress",
                port,
                &[WasmFilterSpec::new("deferred", engine, &deferred)],
            )],
            upstream.addr,
            admin,
        );
        let proxy = Proxy::start(&with_plugin, admin, &["--concurrency", "1"]);
        let what = |step: &str| format!("{engine}: {step}\n{}", proxy.stderr());
        // The worker's VM exists once a request has gone through it.
        get(&format!("http://127.0.0.1:{port}/kept"), &[]).unwrap();
        let before = proxy.stderr().len();
        let without_plugin =
            bootstrap(&[http_listener("ingress", port, &[])], upstream.addr, admin);
        let line = proxy.reload(&without_plugin, 1);
        assert!(line.contains("configuration reloaded"), "{}", what(&line));
        let after = || proxy.stderr().get(before..).unwrap_or("").to_string();
        assert!(
            eventually(|| after().contains("on_delete 1")),
            "{}",
            what("the removed root never got proxy_on_delete")
        );
        let log = after();
        let deferring = log.find("on_done: deferring").expect("on_done ran");
        let done = log.find("proxy_done: Ok").expect("proxy_done called");
        let deleted = log.find("on_delete 1").expect("on_delete ran");
        assert!(deferring < done && done < deleted, "{}", what("order"));
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// Counts requests in shared data, and numbers its own VM on first use:
/// adds `x-count` (the shared count after this request) and `x-vm` (this
/// VM's number), each as 8 hex digits.
const SHARED_COUNTER_PLUGIN: &str = r#"
(module
  (import "env" "proxy_get_shared_data" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_shared_data" (func $set (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $vm (mut i32) (i32.const 0))
  (data (i32.const 64) "count")
  (data (i32.const 80) "vms")
  (data (i32.const 96) "x-count")
  (data (i32.const 112) "x-vm")
  (data (i32.const 128) "0123456789abcdef")
  ;; Adds one to the shared value under the key, with compare-and-swap;
  ;; returns the new value.
  (func $increment (param $key i32) (param $len i32) (result i32)
    (local $value i32) (local $cas i32) (local $tries i32)
    (loop $again
      (local.set $tries (i32.add (local.get $tries) (i32.const 1)))
      (if (i32.gt_u (local.get $tries) (i32.const 1000)) (then unreachable))
      (if (i32.eqz (call $get (local.get $key) (local.get $len) (i32.const 16) (i32.const 20) (i32.const 24)))
        (then
          (local.set $value (i32.load (i32.load (i32.const 16))))
          (local.set $cas (i32.load (i32.const 24))))
        (else
          (local.set $value (i32.const 0))
          (local.set $cas (i32.const 0))))
      (i32.store (i32.const 32) (i32.add (local.get $value) (i32.const 1)))
      (br_if $again (call $set (local.get $key) (local.get $len) (i32.const 32) (i32.const 4) (local.get $cas))))
    (i32.add (local.get $value) (i32.const 1)))
  ;; Writes the value as 8 hex digits at $out.
  (func $hex (param $value i32) (param $out i32)
    (local $i i32)
    (loop $digits
      (i32.store8 (i32.add (local.get $out) (local.get $i))
        (i32.load8_u (i32.add (i32.const 128)
          (i32.and (i32.shr_u (local.get $value) (i32.sub (i32.const 28) (i32.mul (local.get $i) (i32.const 4)))) (i32.const 15)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $digits (i32.lt_u (local.get $i) (i32.const 8)))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (global.get $vm))
      (then (global.set $vm (call $increment (i32.const 80) (i32.const 3)))))
    (call $hex (call $increment (i32.const 64) (i32.const 5)) (i32.const 256))
    (drop (call $add (i32.const 0) (i32.const 96) (i32.const 7) (i32.const 256) (i32.const 8)))
    (call $hex (global.get $vm) (i32.const 272))
    (drop (call $add (i32.const 0) (i32.const 112) (i32.const 4) (i32.const 272) (i32.const 8)))
    (i32.const 0)))
"#;

#[test]
fn shared_data_is_shared_by_the_vms_of_two_workers_on_every_engine() {
    let upstream = Upstream::start();
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat_plugin(dir.path(), "shared_counter", SHARED_COUNTER_PLUGIN);
    const REQUESTS: u32 = 24;
    for engine in engines() {
        let (proxy, port) = serve(
            &upstream,
            &[WasmFilterSpec::new("shared-counter", engine, &plugin)],
            &["--concurrency", "2"],
        );
        // Each request on a new connection: Pingora hands every connection
        // to a worker at random, so both workers' VMs serve some.
        for i in 0..REQUESTS {
            get(&format!("http://127.0.0.1:{port}/shared/{engine}/{i}"), &[]).unwrap();
        }
        let seen: Vec<_> = upstream
            .seen()
            .into_iter()
            .filter(|s| s.path.starts_with(&format!("/shared/{engine}/")))
            .collect();
        let number = |s: &Seen, name: &str| {
            u32::from_str_radix(s.header(name).expect("header added"), 16).expect("hex")
        };
        let mut counts: Vec<u32> = seen.iter().map(|s| number(s, "x-count")).collect();
        counts.sort_unstable();
        assert_eq!(
            counts,
            (1..=REQUESTS).collect::<Vec<_>>(),
            "{engine}: one count across the workers\n{}",
            proxy.stderr()
        );
        let mut vms: Vec<u32> = seen.iter().map(|s| number(s, "x-vm")).collect();
        vms.sort_unstable();
        vms.dedup();
        assert_eq!(vms, vec![1, 2], "{engine}: both workers' VMs counted");
        assert_eq!(proxy.quit(), Some(0), "{engine}");
    }
}

/// The SDKs' own shared-data calls (`abi_probe`'s `shared` case: get,
/// then set with the cas) count once across the VMs of two workers, in
/// every language.
#[test]
fn sdk_plugins_share_data_across_two_workers_in_every_language_on_every_engine() {
    let upstream = Upstream::start();
    const REQUESTS: u64 = 12;
    for engine in engines() {
        for (language, file) in language_plugins("abi_probe") {
            let what = format!("{language} abi_probe on {engine}");
            let (proxy, port) = serve(
                &upstream,
                &[WasmFilterSpec::new("probe", engine, &file)],
                &["--concurrency", "2"],
            );
            // A new connection each: both workers' VMs serve some.
            let prefix = format!("/sdk-shared/{language}/{engine}/");
            for i in 0..REQUESTS {
                let reply = get(
                    &format!("http://127.0.0.1:{port}{prefix}{i}"),
                    &[("x-case", "shared")],
                )
                .unwrap();
                assert_eq!(reply.status, 200, "{what}: {}", proxy.stderr());
            }
            let mut counts: Vec<u64> = (upstream.seen().into_iter())
                .filter(|s| s.path.starts_with(&prefix))
                .map(|s| {
                    let count = s.header("x-result-shared").unwrap_or_default();
                    count
                        .parse()
                        .unwrap_or_else(|_| panic!("{what}: {count:?}"))
                })
                .collect();
            counts.sort_unstable();
            assert_eq!(
                counts,
                (1..=REQUESTS).collect::<Vec<_>>(),
                "{what}: one count across the workers"
            );
            assert_eq!(proxy.quit(), Some(0), "{what}");
        }
    }
}

/// `--mode validate` loads the configuration and its plugins and exits
/// without serving: 0 and Envoy's `configuration '...' OK` line for a good
/// one, the usual one-line error for a plugin that refuses its
/// configuration.
#[test]
fn validate_mode_checks_plugins_and_exits_without_serving() {
    let upstream = Upstream::start();
    let admin = free_port();
    let port = free_port();
    let (_, hello) = hello_plugins().into_iter().next().unwrap();
    let good = http_listener(
        "ingress",
        port,
        &[WasmFilterSpec::new("hello", engines()[0], &hello)],
    );
    let exit = run_expecting_exit(
        &bootstrap(&[good], upstream.addr, admin),
        &["--mode", "validate"],
    );
    assert_eq!(exit.code, Some(0), "{}", exit.stderr);
    assert!(
        exit.stderr.contains("configuration '") && exit.stderr.contains("envoy.yaml' OK"),
        "{}",
        exit.stderr
    );
    // The plugin was started and configured, as at a real start.
    assert!(exit.stderr.contains("hello: vm_start"), "{}", exit.stderr);

    for engine in engines() {
        let refusing = http_listener(
            "ingress",
            port,
            &[WasmFilterSpec::new(
                "picky",
                engine,
                &fixture("rust-wasip1/bad_config.wasm"),
            )],
        );
        let exit = run_expecting_exit(
            &bootstrap(&[refusing], upstream.addr, admin),
            &["--mode", "validate"],
        );
        assert_ne!(exit.code, Some(0), "{engine}");
        assert!(
            exit.stderr.contains("wasm plugin picky") && exit.stderr.contains("proxy_on_configure"),
            "{engine}: {}",
            exit.stderr
        );
        assert!(!exit.stderr.contains("' OK"), "{engine}: {}", exit.stderr);
    }
}
