//! `polyhost call --tcp` (issue 15): one connection through a network
//! filter, events in command-line order, edits as each peer receives them,
//! pauses released by a callout answer or a tick, bytes still held at the
//! end, the plugin closing the connection, close callbacks with their
//! peers, JSON events, traps, and the options an HTTP run alone takes.
//! Every test runs on every engine compiled in.

use super::bench::{LANGUAGES, assert_in_order, call, call_ok, events};
use super::{assert_fails, engines, fixture, polyhost, root, stderr};

/// `plugins/wat/tcp_hold.wat` built into `dir` (see its header comment:
/// it holds the client's bytes until a callout answer or a tick).
fn tcp_hold(dir: &std::path::Path) -> String {
    let wasm = wat::parse_file(root().join("plugins/wat/tcp_hold.wat")).expect("valid wat");
    let path = dir.join("tcp_hold.wasm");
    std::fs::write(&path, wasm).unwrap();
    path.display().to_string()
}

fn json(engine: &str, plugin: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = call_ok(engine, plugin, &all);
    serde_json::from_str(&out).expect(&out)
}

#[test]
fn tcp_upper_edits_both_directions_in_every_language() {
    let mut plugins: Vec<String> = (LANGUAGES.iter())
        .map(|lang| fixture(&format!("{lang}/tcp_upper.wasm")))
        .collect();
    plugins.push(fixture("rust-unknown/tcp_upper.wasm"));
    for plugin in &plugins {
        for engine in engines() {
            let out = call_ok(
                &engine,
                plugin,
                &[
                    "--tcp",
                    "--downstream",
                    "hello ",
                    "--upstream",
                    "world",
                    "--downstream",
                    "again",
                ],
            );
            // Chunks in command-line order, then the client's end of
            // stream, the upstream's, and the close callbacks: the client
            // ended first, the proxy then ended the upstream's side.
            assert_in_order(
                &out,
                &[
                    "log [info] tcp: new connection",
                    "new connection from 127.0.0.1:50000 to 127.0.0.1:10000: continue",
                    "downstream data \"hello \": continue -> upstream gets \"HELLO \"",
                    "upstream data \"world\": continue -> downstream gets \"> world\"",
                    "downstream data \"again\": continue -> upstream gets \"AGAIN\"",
                    "downstream end of stream: continue\n",
                    "upstream end of stream: continue\n",
                    "log [info] tcp: downstream closed by Remote",
                    "downstream connection closed (peer: remote)",
                    "log [info] tcp: upstream closed by Local",
                    "upstream connection closed (peer: local)",
                    "upstream received in all: \"HELLO AGAIN\"",
                    "downstream received in all: \"> world\"",
                    "connection closed\n",
                    "metric tcp_connections (counter) = 1",
                ],
            );
        }
    }
}

#[test]
fn close_events_run_where_given_and_data_after_a_close_is_refused() {
    let plugin = fixture("rust-wasip1/tcp_upper.wasm");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("chunk.txt");
    std::fs::write(&file, b"from a file").unwrap();
    let from_file = format!("@{}", file.display());
    for engine in engines() {
        // The upstream ends first: the proxy then ends the client's side,
        // and the client may still send.
        let out = call_ok(
            &engine,
            &plugin,
            &[
                "--tcp",
                "--upstream",
                "bye",
                "--upstream-close",
                "--downstream",
                &from_file,
            ],
        );
        assert_in_order(
            &out,
            &[
                "upstream data \"bye\": continue -> downstream gets \"> bye\"",
                "upstream end of stream: continue",
                "downstream data \"from a file\": continue -> upstream gets \"FROM A FILE\"",
                "downstream end of stream: continue",
                "tcp: downstream closed by Local",
                "tcp: upstream closed by Remote",
                "connection closed",
            ],
        );
        assert!(
            !out.contains("upstream end of stream: continue\nupstream end of stream"),
            "{out}"
        );
    }
    let o = polyhost(&[
        "call",
        &plugin,
        "--no-cache",
        "--tcp",
        "--downstream-close",
        "--downstream",
        "late",
    ]);
    assert_fails(
        &o,
        "`--downstream late` comes after `--downstream-close`: the downstream already ended its stream",
    );
    let o = polyhost(&[
        "call",
        &plugin,
        "--no-cache",
        "--tcp",
        "--upstream",
        "@/dev/zero",
    ]);
    assert_fails(
        &o,
        "upstream data `/dev/zero` is larger than the 16 MiB limit",
    );
}

#[test]
fn json_lists_the_connection_events() {
    let plugin = fixture("rust-wasip1/tcp_upper.wasm");
    for engine in engines() {
        let doc = json(
            &engine,
            &plugin,
            &["--tcp", "--downstream", "ab", "--upstream", "cd"],
        );
        assert_eq!(doc["plugin"], "tcp_upper");
        assert_eq!(doc["engine"], engine.as_str());
        let connection = events(&doc, "new_connection");
        assert_eq!(connection.len(), 1);
        assert_eq!(connection[0]["source"], "127.0.0.1:50000");
        assert_eq!(connection[0]["destination"], "127.0.0.1:10000");
        assert_eq!(connection[0]["decision"], "continue");
        let data = events(&doc, "data");
        let summary: Vec<(String, String, bool, String, String, u64)> = (data.iter())
            .map(|e| {
                (
                    e["side"].as_str().unwrap().to_string(),
                    e["sent"].as_str().unwrap().to_string(),
                    e["end_of_stream"].as_bool().unwrap(),
                    e["decision"].as_str().unwrap().to_string(),
                    e["forwarded"].as_str().unwrap().to_string(),
                    e["held"].as_u64().unwrap(),
                )
            })
            .collect();
        let row = |side: &str, sent: &str, end, forwarded: &str| {
            (
                side.to_string(),
                sent.to_string(),
                end,
                "continue".to_string(),
                forwarded.to_string(),
                0,
            )
        };
        assert_eq!(
            summary,
            [
                row("downstream", "ab", false, "AB"),
                row("upstream", "cd", false, "> cd"),
                row("downstream", "", true, ""),
                row("upstream", "", true, ""),
            ]
        );
        let closes: Vec<(&str, &str)> = (events(&doc, "connection_close").iter())
            .map(|e| (e["side"].as_str().unwrap(), e["peer"].as_str().unwrap()))
            .collect();
        assert_eq!(closes, [("downstream", "remote"), ("upstream", "local")]);
        let received: Vec<(&str, &str)> = (events(&doc, "received").iter())
            .map(|e| (e["by"].as_str().unwrap(), e["data"].as_str().unwrap()))
            .collect();
        assert_eq!(received, [("upstream", "AB"), ("downstream", "> cd")]);
        assert_eq!(events(&doc, "done")[0]["outcome"], "closed");
        assert_eq!(doc["metrics"][0]["name"], "tcp_connections");
        assert_eq!(doc["metrics"][0]["value"], 1);
        // The connection's own properties are not listed as set by it.
        assert_eq!(doc["properties"], serde_json::json!([]));
    }
}

#[test]
fn held_bytes_go_on_from_a_callout_answer_or_a_tick() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = tcp_hold(dir.path());
    for engine in engines() {
        // The default answer to the callout resumes the downstream.
        let out = call_ok(
            &engine,
            &plugin,
            &["--tcp", "--downstream", "hello", "--upstream", "fine"],
        );
        assert_in_order(
            &out,
            &[
                "log [info] from 127.0.0.1:50000 to 127.0.0.1:10000",
                "downstream data \"hello\": pause (holds 5 bytes)\n",
                "http callout 1 to `auth` /auth (timeout 1000 ms)",
                "callout 1 answered: 200, empty body (default answer)",
                "plugin resumed the downstream",
                "held downstream data released -> upstream gets \"[auth] hello\"",
                "upstream data \"fine\": continue -> downstream gets \"fine\"",
                "log [info] downstream closed by 2",
                "log [info] upstream closed by 1",
                "upstream received in all: \"[auth] hello\"",
                "connection closed\n",
            ],
        );
        // With the callout left unanswered, a tick lets the bytes go before
        // the next chunk arrives; the ticks left run after the connection.
        let out = call_ok(
            &engine,
            &plugin,
            &[
                "--tcp",
                "--downstream",
                "one",
                "--downstream",
                "two",
                "--callout-response",
                "cluster=other;status=200",
                "--ticks",
                "3",
            ],
        );
        assert_in_order(
            &out,
            &[
                "downstream data \"one\": pause (holds 3 bytes)",
                "http callout 1 to `auth`",
                "tick at 10 ms",
                "plugin resumed the downstream",
                "held downstream data released -> upstream gets \"[tick] one\"",
                "downstream data \"two\": pause (holds 3 bytes)",
                "http callout 2 to `auth`",
                "tick at 20 ms",
                "held downstream data released -> upstream gets \"[tick] two\"",
                "downstream end of stream: continue",
                "upstream received in all: \"[tick] one[tick] two\"",
                "connection closed\n",
                "tick at 30 ms",
                "unanswered http callout 1 to `auth`",
                "unanswered http callout 2 to `auth`",
            ],
        );
        // `--property` gives the connection's addresses.
        let out = call_ok(
            &engine,
            &plugin,
            &[
                "--tcp",
                "--property",
                "source.address=10.1.2.3:4444",
                "--property",
                "destination.address=10.9.9.9:80",
            ],
        );
        assert_in_order(
            &out,
            &[
                "log [info] from 10.1.2.3:4444 to 10.9.9.9:80",
                "new connection from 10.1.2.3:4444 to 10.9.9.9:80: continue",
            ],
        );
    }
}

#[test]
fn bytes_never_released_are_reported_held() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = tcp_hold(dir.path());
    for engine in engines() {
        let args = [
            "--tcp",
            "--downstream",
            "hello",
            "--downstream",
            " world",
            "--callout-response",
            "cluster=other",
        ];
        let out = call_ok(&engine, &plugin, &args);
        assert_in_order(
            &out,
            &[
                "downstream data \"hello\": pause (holds 5 bytes)",
                "downstream data \" world\": pause (holds 11 bytes)",
                "downstream end of stream: pause (holds 11 bytes)",
                "the downstream data is still held: \"hello world\" (11 bytes) never reached the upstream",
                "downstream connection closed (peer: remote)",
                "upstream received in all: \"\"",
                "connection closed with data still held",
                "unanswered http callout 1 to `auth`",
            ],
        );
        let doc = json(&engine, &plugin, &args);
        let held = events(&doc, "still_held");
        assert_eq!(held.len(), 1, "{doc:#}");
        assert_eq!(held[0]["side"], "downstream");
        assert_eq!(held[0]["data"], "hello world");
        assert_eq!(held[0]["bytes"], 11);
        let data = events(&doc, "data");
        assert_eq!(data[1]["decision"], "pause");
        assert_eq!(data[1]["held"], 11);
        assert_eq!(data[1]["forwarded"], "");
        assert_eq!(events(&doc, "done")[0]["outcome"], "held");
        assert_eq!(doc["unanswered_callouts"][0]["cluster"], "auth");
    }
}

/// A connection paused at its start has no upstream until the plugin
/// resumes it: the upstream's events are not delivered, and its close
/// callback does not run.
#[test]
fn a_connection_paused_at_its_start_waits_for_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = tcp_hold(dir.path());
    for engine in engines() {
        let base = [
            "--tcp",
            "--property",
            "source.address=0.0.0.0:1",
            "--upstream",
            "early",
            "--downstream",
            "x",
            "--callout-response",
            "cluster=other",
        ];
        let out = call_ok(&engine, &plugin, &base);
        assert_in_order(
            &out,
            &[
                "new connection from 0.0.0.0:1 to 127.0.0.1:10000: pause",
                "upstream data not delivered: the upstream is not connected (the plugin paused the new connection)",
                "downstream data \"x\": pause (holds 1 byte)",
                "upstream end of stream not delivered",
                "the connection is still paused: nothing left to resume it",
                "the downstream data is still held: \"x\"",
                "downstream connection closed (peer: remote)",
                "connection closed with data still held",
            ],
        );
        assert!(!out.contains("upstream connection closed"), "{out}");
        // A tick resumes it before the first event: the upstream connects.
        let mut ticking = base.to_vec();
        ticking.extend(["--ticks", "1"]);
        let out = call_ok(&engine, &plugin, &ticking);
        assert_in_order(
            &out,
            &[
                "new connection from 0.0.0.0:1 to 127.0.0.1:10000: pause",
                "tick at 10 ms",
                "plugin resumed the downstream",
                "held downstream data released -> upstream gets \"[tick] \"",
                "upstream data \"early\": continue -> downstream gets \"early\"",
                "upstream connection closed (peer: local)",
            ],
        );
    }
}

#[test]
fn the_plugin_closing_the_connection_ends_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = tcp_hold(dir.path());
    for engine in engines() {
        let args = ["--tcp", "--upstream", "close now", "--downstream", "late"];
        let out = call_ok(&engine, &plugin, &args);
        assert_in_order(
            &out,
            &[
                "upstream data \"close now\": continue (holds 9 bytes)\n",
                "plugin closed the upstream",
                "downstream data not delivered: the plugin closed the connection",
                "downstream end of stream not delivered: the plugin closed the connection",
                "the upstream data is still held: \"close now\" (9 bytes) never reached the downstream",
                "log [info] downstream closed by 1",
                "log [info] upstream closed by 1",
                "connection closed by the plugin",
            ],
        );
        let doc = json(&engine, &plugin, &args);
        let skipped = events(&doc, "not_delivered");
        assert_eq!(skipped.len(), 3, "{doc:#}");
        assert_eq!(skipped[0]["side"], "downstream");
        assert_eq!(skipped[0]["what"], "data");
        assert_eq!(events(&doc, "close")[0]["side"], "upstream");
        assert_eq!(events(&doc, "done")[0]["outcome"], "closed_by_plugin");
    }
}

#[test]
fn traps_in_connection_callbacks_name_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = tcp_hold(dir.path());
    for engine in engines() {
        for chunk in ["trap", "out of bounds"] {
            let o = call(&engine, &plugin, &["--tcp", "--upstream", chunk]);
            assert_fails(
                &o,
                &format!("`{plugin}` failed while handling the connection"),
            );
            assert_fails(&o, "proxy_on_upstream_data");
            assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
            // What happened before the trap was printed.
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(out.contains("new connection from"), "{engine}: {out}");
        }
    }
}

#[test]
fn http_options_conflict_with_tcp() {
    let plugin = fixture("rust-wasip1/tcp_upper.wasm");
    for (flag, value, shown) in [
        ("-H", Some("a: b"), "--header <NAME:VALUE>"),
        ("--method", Some("POST"), "--method <METHOD>"),
        ("--path", Some("/x"), "--path <PATH>"),
        ("--body", Some("x"), "--body <BODY>"),
        ("--body-file", Some("/dev/null"), "--body-file <FILE>"),
        ("--status", Some("404"), "--status <STATUS>"),
        (
            "--response-header",
            Some("a: b"),
            "--response-header <NAME:VALUE>",
        ),
        (
            "--response-body",
            Some("x"),
            "--response-body <RESPONSE_BODY>",
        ),
        ("--chunk-size", Some("2"), "--chunk-size <N>"),
    ] {
        let mut args = vec!["call", &plugin, "--no-cache", "--tcp", flag];
        args.extend(value);
        let o = polyhost(&args);
        assert_fails(
            &o,
            &format!("the argument '--tcp' cannot be used with '{shown}'"),
        );
    }
    for args in [
        &["--downstream", "x"][..],
        &["--upstream", "x"],
        &["--downstream-close"],
        &["--upstream-close"],
    ] {
        let mut all = vec!["call", &plugin, "--no-cache"];
        all.extend(args);
        let o = polyhost(&all);
        assert_fails(&o, "the following required arguments were not provided");
        assert_fails(&o, "--tcp");
    }
}
