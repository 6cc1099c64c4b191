//! `polyhost call` with several plugins (issue 15): a `--config` listing
//! `plugins` (a filter chain: request callbacks in order, response
//! callbacks in reverse) and `services`, sharing VMs by `vm_id`; queue
//! notifications delivered to the plugin that registered the queue; shared
//! data set by one plugin read by another; foreign functions answered from
//! `--foreign-function`; what each plugin did, in text and JSON; and the
//! errors of a bad list. Every test runs on every engine compiled in.

use super::bench::{PROPERTY_AND_TICK, assert_in_order, events};
use super::{assert_fails, engines, fixture, polyhost, root, stderr, stdout};
use std::path::Path;

/// A `plugins/wat` module built into `dir`.
fn wat(dir: &Path, name: &str) -> String {
    let wasm = wat::parse_file(root().join(format!("plugins/wat/{name}.wat"))).expect("valid wat");
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, wasm).unwrap();
    path.display().to_string()
}

/// Writes `config` as `dir/config.json` and returns its path.
fn config(dir: &Path, config: serde_json::Value) -> String {
    config_as(dir, "config.json", config)
}

/// Writes `config` as `dir/name` and returns its path.
fn config_as(dir: &Path, name: &str, config: serde_json::Value) -> String {
    let path = dir.join(name);
    std::fs::write(&path, config.to_string()).unwrap();
    path.display().to_string()
}

/// Runs `polyhost call --config CONFIG ARGS` on `engine`; stdout, failing
/// on a non-zero exit.
fn run(engine: &str, config: &str, args: &[&str]) -> String {
    let mut all = vec!["call", "--config", config, "--no-cache", "--engine", engine];
    all.extend(args);
    let o = polyhost(&all);
    assert!(
        o.status.success(),
        "{engine} {args:?}\n{}\n{}",
        stdout(&o),
        stderr(&o)
    );
    stdout(&o)
}

fn json(engine: &str, config: &str, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = run(engine, config, &all);
    serde_json::from_str(&out).expect(&out)
}

#[test]
fn a_queue_producer_and_a_consumer_service_meet_in_every_pairing() {
    let dir = tempfile::tempdir().unwrap();
    for (producer, consumer) in [
        ("rust-wasip1", "rust-wasip1"),
        ("go", "rust-wasip1"),
        ("rust-wasip1", "go"),
    ] {
        let path = config(
            dir.path(),
            serde_json::json!({
                "plugins": [{
                    "file": fixture(&format!("{producer}/queue_producer.wasm")),
                    "name": "producer",
                    "vm_id": "edge",
                }],
                "services": [{
                    "file": fixture(&format!("{consumer}/queue_consumer.wasm")),
                    "name": "consumer",
                    "vm_id": "queue-vm",
                }],
            }),
        );
        for engine in engines() {
            let out = run(&engine, &path, &["--path", "/orders/7"]);
            // The service starts first and registers the queue; the
            // producer's enqueue wakes it while the request is handled.
            assert_in_order(
                &out,
                &[
                    "service `consumer` (proxy-wasm ABI 0.2.",
                    &format!(") on {engine}, vm_id `queue-vm`\n"),
                    "plugin `producer` (proxy-wasm ABI 0.2.",
                    &format!(") on {engine}, vm_id `edge`\n"),
                    "[producer] request headers:\n[producer]   + x-enqueued: yes\n",
                    "[consumer] queue [queue-vm] events ready: proxy_on_queue_ready\n",
                    "[consumer] log [info] consumer: /orders/7\n",
                    "[producer] response headers: unchanged\n",
                    "decision: continue\n",
                    "metric consumer_items (counter) = 1 (defined by `consumer`)\n",
                    "queue [queue-vm] events: 0 message(s) left (registered by `consumer`)\n",
                ],
            );
        }
    }
}

#[test]
fn json_names_the_plugin_of_each_event_and_leftover() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        serde_json::json!({
            "plugins": [{"file": fixture("rust-wasip1/queue_producer.wasm"), "name": "producer"}],
            "services": [{
                "file": fixture("rust-wasip1/queue_consumer.wasm"),
                "name": "consumer",
                "vm_id": "queue-vm",
            }],
        }),
    );
    for engine in engines() {
        let doc = json(&engine, &path, &["--path", "/a"]);
        assert_eq!(doc["plugin"], "producer", "{doc:#}");
        let plugins = doc["plugins"].as_array().unwrap();
        assert_eq!(plugins.len(), 2, "{doc:#}");
        assert_eq!(plugins[0]["name"], "consumer");
        assert_eq!(plugins[0]["kind"], "service");
        assert_eq!(plugins[0]["vm_id"], "queue-vm");
        assert_eq!(plugins[1]["name"], "producer");
        assert_eq!(plugins[1]["kind"], "filter");
        assert_ne!(plugins[0]["vm"], plugins[1]["vm"]);
        let ready = events(&doc, "queue_ready");
        assert_eq!(ready.len(), 1, "{doc:#}");
        assert_eq!(ready[0]["plugin"], "consumer");
        assert_eq!(ready[0]["vm_id"], "queue-vm");
        assert_eq!(ready[0]["queue"], "events");
        let logs = events(&doc, "log");
        assert!(
            logs.iter()
                .any(|l| l["plugin"] == "consumer" && l["message"] == "consumer: /a"),
            "{doc:#}"
        );
        let headers = events(&doc, "headers");
        assert!(headers.iter().all(|h| h["plugin"] == "producer"), "{doc:#}");
        // The run's own events name no plugin.
        assert!(events(&doc, "done")[0].get("plugin").is_none(), "{doc:#}");
        assert_eq!(doc["metrics"][0]["name"], "consumer_items");
        assert_eq!(doc["metrics"][0]["plugin"], "consumer");
        assert_eq!(
            doc["queues"],
            serde_json::json!([["queue-vm", "events", 0, "consumer"]])
        );
    }
}

#[test]
fn the_request_goes_through_the_plugins_in_order_and_the_response_back() {
    let dir = tempfile::tempdir().unwrap();
    let hello = fixture("rust-wasip1/hello.wasm");
    let path = config(
        dir.path(),
        serde_json::json!({"plugins": [
            {"file": hello, "name": "a", "configuration": r#"{"header": "x-a", "value": "1"}"#},
            {"file": hello, "name": "b", "vm_id": "other",
             "configuration": r#"{"header": "x-b", "value": "2", "deny_path": "/deny"}"#},
        ]}),
    );
    for engine in engines() {
        let out = run(
            &engine,
            &path,
            &["--path", "/x", "--body", "say hello", "--chunk-size", "4"],
        );
        assert_in_order(
            &out,
            &[
                "[a] log [info] hello: GET /x\n",
                "[a] request headers:\n[a]   + x-a: 1\n",
                // b sees a's edits, and adds its own.
                "[b] log [info] hello: GET /x\n",
                "[b] request headers:\n[b]   + x-b: 2\n",
                // a buffers the body until its end; b then gets it whole.
                "[a] request body chunk 1/3 (4 bytes): pause\n",
                "[a] request body chunk 3/3 (1 bytes): continue\n",
                "[b] request body chunk 3/3 (9 bytes): continue\n",
                "request body: \"say hello\" -> \"say HELLO\"\n",
                // The response goes back through b first.
                "[b] response headers:\n[b]   + x-powered-by: polyhost\n",
                "[a] response headers:\n[a]   + x-powered-by: polyhost\n",
                "[a]   x-powered-by appears 2 times",
                "decision: continue\n",
            ],
        );
        // A local reply from b goes through the response callbacks of both.
        let out = run(&engine, &path, &["--path", "/deny"]);
        assert_in_order(
            &out,
            &[
                "[a] request headers:\n[a]   + x-a: 1\n",
                "[b] log [info] hello: GET /deny\n",
                "[b] local response: 403\n",
                "[b]   x-denied-by: hello\n",
                "[b]   x-powered-by: polyhost\n",
                "[b]   x-powered-by: polyhost\n",
            ],
        );
        assert!(!out.contains("decision:"), "{out}");
    }
}

#[test]
fn a_paused_filter_holds_the_next_until_a_tick_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let waits = dir.path().join("waits.wasm");
    std::fs::write(
        &waits,
        wat::parse_str(PROPERTY_AND_TICK).expect("valid wat"),
    )
    .unwrap();
    let path = config(
        dir.path(),
        serde_json::json!({"plugins": [
            {"file": waits, "name": "waits"},
            {"file": fixture("rust-wasip1/hello.wasm"), "name": "hello"},
        ]}),
    );
    for engine in engines() {
        let out = run(&engine, &path, &["--ticks", "1"]);
        assert_in_order(
            &out,
            &[
                "[waits] request headers: unchanged\n",
                "tick at 50 ms\n",
                "[waits] plugin resumed the request\n",
                "[waits] request headers as resumed:\n[waits]   + x-virtual: exact\n",
                // Only now does the next filter get the request.
                "[hello] log [info] hello: GET /\n",
                "[hello] request headers:\n[hello]   + x-hello: polyhost\n",
                "[waits] response headers: unchanged\n",
                "decision: continue\n",
            ],
        );
        let out = run(&engine, &path, &[]);
        assert_in_order(
            &out,
            &[
                "[waits] the request is still paused: nothing left to resume it",
                "decision: pause\n",
            ],
        );
        assert!(!out.contains("hello: GET"), "{out}");
    }
}

#[test]
fn plugins_with_the_same_vm_id_and_code_share_a_vm() {
    let dir = tempfile::tempdir().unwrap();
    let roots = wat(dir.path(), "roots");
    let plugins = |second_vm_id: &str| {
        serde_json::json!({"plugins": [
            {"file": roots, "name": "first", "root_id": "r1", "vm_id": "shared", "configuration": "qa"},
            {"file": roots, "name": "second", "root_id": "r2", "vm_id": second_vm_id,
             "configuration": "qb"},
        ]})
    };
    let shared = config_as(dir.path(), "shared.json", plugins("shared"));
    let apart = config_as(dir.path(), "apart.json", plugins("apart"));
    for engine in engines() {
        let out = run(&engine, &shared, &["--ticks", "2"]);
        assert_in_order(
            &out,
            &[
                "plugin `first` (proxy-wasm ABI 0.2.1) on",
                ", sharing its VM with `second`\n",
                // One VM: the second plugin's root context is the VM's
                // second, and each stream is a context of that VM.
                "[first] log [info] create 1 0 root_id=r1\n",
                "[second] log [info] create 2 0 root_id=r2\n",
                "[second] log [info] configure 2 config=qb name=second root_id=r2\n",
                "[first] log [info] request 3 config=qa name=first root_id=r1\n",
                "[second] log [info] request 4 config=qb name=second root_id=r2\n",
                "decision: continue\n",
                // Each root ticks on its own timer (10 ms times its id).
                "tick at 10 ms\n[first] log [info] tick 1\n",
                "tick at 20 ms\n[first] log [info] tick 1\n[second] log [info] tick 2\n",
                "queue [shared] qa: 0 message(s) left (registered by `first`)\n",
                "queue [shared] qb: 0 message(s) left (registered by `second`)\n",
            ],
        );
        // Another vm_id: a VM of its own, whose first root is 1 too.
        let out = run(&engine, &apart, &[]);
        assert!(!out.contains("sharing its VM"), "{out}");
        assert_in_order(
            &out,
            &[
                "[first] log [info] create 1 0 root_id=r1\n",
                "[second] log [info] create 1 0 root_id=r2\n",
                "[first] log [info] request 2 config=qa",
                "[second] log [info] request 2 config=qb",
            ],
        );
    }
}

#[test]
fn shared_data_meets_across_vms_and_foreign_functions_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat(dir.path(), "foreign_shared");
    let answer = dir.path().join("answer.bin");
    std::fs::write(&answer, b"from a file").unwrap();
    // Two VMs (their VM configurations differ) with one vm_id.
    let path = config(
        dir.path(),
        serde_json::json!({"plugins": [
            {"file": plugin, "name": "first", "vm_id": "greet", "vm_configuration": "1",
             "configuration": "hash"},
            {"file": plugin, "name": "second", "vm_id": "greet", "vm_configuration": "2",
             "configuration": "missing"},
            {"file": plugin, "name": "third", "vm_id": "greet", "vm_configuration": "3",
             "configuration": "fails"},
            {"file": plugin, "name": "fourth", "vm_id": "greet", "vm_configuration": "4",
             "configuration": "read"},
        ]}),
    );
    let read = format!("read=@{}", answer.display());
    let args = [
        "--foreign-function",
        "hash=abc123",
        "--foreign-function",
        "fails=!InternalFailure",
        "--foreign-function",
        &read,
    ];
    for engine in engines() {
        let out = run(&engine, &path, &args);
        assert_in_order(
            &out,
            &[
                "[first] log [info] shared greeting=?\n",
                "[first] log [info] foreign hash status 0 answer abc123\n",
                "[first] foreign function `hash`(\"ping\") -> \"abc123\"\n",
                "[second] log [info] shared greeting=hi from first\n",
                "[second] log [info] foreign missing status 1 answer \n",
                "[second] foreign function `missing`(\"ping\") -> NotFound (no --foreign-function names it)\n",
                "[third] log [info] shared greeting=hi from second\n",
                "[third] log [info] foreign fails status 10 answer \n",
                "[third] foreign function `fails`(\"ping\") -> InternalFailure\n",
                "[fourth] log [info] foreign read status 0 answer from a file\n",
                "shared data [greet] greeting = \"hi from fourth\" (set by `fourth`)\n",
            ],
        );
        let doc = json(&engine, &path, &args);
        let calls = events(&doc, "foreign_call");
        assert_eq!(calls.len(), 4, "{doc:#}");
        assert_eq!(
            *calls[0],
            serde_json::json!({"event": "foreign_call", "plugin": "first", "name": "hash",
                "argument": "ping", "answer": "abc123", "status": "Ok", "named": true})
        );
        assert_eq!(calls[1]["status"], "NotFound");
        assert_eq!(calls[1]["named"], false);
        assert!(calls[1]["answer"].is_null());
        assert_eq!(calls[2]["status"], "InternalFailure");
        assert_eq!(
            doc["shared_data"],
            serde_json::json!([["greet", "greeting", "hi from fourth", "fourth"]])
        );
    }
}

#[test]
fn one_plugin_gets_foreign_function_answers_too() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = wat(dir.path(), "foreign_shared");
    for engine in engines() {
        let o = polyhost(&[
            "call",
            &plugin,
            "--no-cache",
            "--engine",
            &engine,
            "--plugin-config",
            "hash",
            "--foreign-function",
            "hash=xyz",
        ]);
        let out = stdout(&o);
        assert!(o.status.success(), "{out}{}", stderr(&o));
        // One plugin: nothing is prefixed.
        assert_in_order(
            &out,
            &[
                "log [info] shared greeting=?\n",
                "log [info] foreign hash status 0 answer xyz\n",
                "foreign function `hash`(\"ping\") -> \"xyz\"\n",
                "shared data [] greeting = \"hi from foreign_shared\"\n",
            ],
        );
        assert!(!out.contains("[foreign_shared]"), "{out}");
    }
}

#[test]
fn relative_files_resolve_against_the_config_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture("rust-wasip1/noop.wasm"),
        dir.path().join("noop.wasm"),
    )
    .unwrap();
    let path = config(
        dir.path(),
        serde_json::json!({"plugins": [{"file": "noop.wasm"}], "services": [{"file": "noop.wasm", "name": "svc"}]}),
    );
    for engine in engines() {
        // Run from elsewhere: the files are found next to the config.
        let out = run(&engine, &path, &[]);
        assert_in_order(
            &out,
            &[
                "service `svc` (proxy-wasm ABI 0.2.1)",
                "plugin `noop` (proxy-wasm ABI 0.2.1)",
                "[noop] request headers: unchanged\n",
                "decision: continue\n",
            ],
        );
    }
}

#[test]
fn a_bad_list_is_refused_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let noop = fixture("rust-wasip1/noop.wasm");
    let fails = |config: serde_json::Value, extra: &[&str], needle: &str| {
        let path = self::config(dir.path(), config);
        let mut args = vec!["call"];
        args.extend(extra);
        args.extend(["--config", &path, "--no-cache"]);
        assert_fails(&polyhost(&args), needle);
    };
    fails(
        serde_json::json!({"plugins": [{"file": noop}, {"file": "missing.wasm", "name": "m"}]}),
        &[],
        "`plugins[1].file`",
    );
    fails(
        serde_json::json!({"plugins": [{"file": noop}], "services": [{"file": noop}]}),
        &[],
        "`services[0].name`: `noop` is already the name of `plugins[0]` (taken from its file's name: give each a `name`)",
    );
    fails(
        serde_json::json!({"plugins": [{"file": noop, "name": "a"}, {"file": noop, "name": "a"}]}),
        &[],
        "`plugins[1].name`: `a` is already the name of `plugins[0]`; every plugin needs its own",
    );
    fails(
        serde_json::json!({"plugins": [{"file": noop, "log_level": "loud"}]}),
        &[],
        "`plugins[0].log_level`: unknown variant `loud`",
    );
    fails(
        serde_json::json!({"plugins": [{"file": noop, "vm": "x"}]}),
        &[],
        "`plugins[0].vm`: unknown field `vm`",
    );
    fails(
        serde_json::json!({"plugins": [{"name": "x"}]}),
        &[],
        "`plugins[0].file` is missing",
    );
    fails(
        serde_json::json!({"plugins": {"file": noop}}),
        &[],
        "`plugins`: expected a list of plugins",
    );
    fails(
        serde_json::json!({"plugins": [{"file": noop}]}),
        &[&noop],
        "lists the plugins to run, and",
    );
    fails(
        serde_json::json!({"plugins": [{"file": noop}]}),
        &["--plugin-config", "x"],
        "--plugin-config cannot say which plugin",
    );
    fails(
        serde_json::json!({"plugins": [{"file": noop, "name": "a"}, {"file": noop, "name": "b"}]}),
        &["--tcp"],
        "--tcp runs one network filter (with services beside it, if any); the config lists 2 plugins",
    );
    assert_fails(
        &polyhost(&["call", "--no-cache"]),
        "give the plugin (PLUGIN.wasm), or a --config that lists `plugins`",
    );
    assert_fails(
        &polyhost(&["call", &noop, "--no-cache", "--foreign-function", "x=!Ok"]),
        "--foreign-function `x=!Ok`: `Ok` is not a failing status",
    );
}
