//! Several root contexts in one VM, as Envoy runs plugins that share a
//! `vm_id`: ids from one counter, each root with its own configuration,
//! properties, streams, timer, queues and shutdown.

use crate::harness::{RUST_TARGETS, Services, engine_tests, fixture, request, start};
use polyhost::{ContextId, Engine, PluginConfig, PluginErrorKind, RootConfig, Shutdown, Vm};
use std::time::Duration;

engine_tests!(
    roots_get_ids_configuration_and_properties_of_their_own,
    streams_are_parented_to_their_root,
    ticks_are_per_root,
    queues_notify_the_root_that_registered_them,
    foreign_functions_reach_the_root_asked_for,
    shutdown_ends_every_root,
    one_root_shuts_down_while_the_other_serves,
    a_root_that_rejects_its_configuration_is_refused_alone,
    rust_sdk_roots_keep_their_own_configuration,
    callout_answers_name_the_callers_root,
    a_vm_can_start_as_another_plugin_of_its_group,
);

/// `plugins/wat/roots.wat`, which logs every call and what it sees.
fn roots_plugin() -> Vec<u8> {
    wat::parse_file(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/wat/roots.wat"
    ))
    .expect("plugins/wat/roots.wat")
}

/// The first plugin of the shared VM: `alpha`, root id `ra`.
fn alpha() -> PluginConfig {
    PluginConfig {
        root_id: "ra".into(),
        vm_id: "shared".into(),
        configuration: "cfg-a".into(),
        vm_configuration: "vmconf".into(),
        ..PluginConfig::named("alpha")
    }
}

/// A VM of the logging plugin with `alpha` as root 1 and `beta` (root id
/// `rb`) as root 2.
fn two_roots<E: Engine>(engine: &E, services: &Services) -> Vm<E> {
    let (_, mut vm) = start(engine, &roots_plugin(), alpha(), services);
    let beta = vm.add_root(RootConfig::new("beta", "rb", "cfg-b")).unwrap();
    assert_eq!(beta, ContextId(2), "the second root takes the next id");
    vm
}

/// The log lines taken since the last call, without their level.
fn take_lines<E: Engine>(vm: &mut Vm<E>) -> Vec<String> {
    vm.take_logs().into_iter().map(|l| l.message).collect()
}

fn roots_get_ids_configuration_and_properties_of_their_own<E: Engine>(engine: E) {
    let services = Services::new();
    let (_, mut vm) = start(&engine, &roots_plugin(), alpha(), &services);
    vm.add_root(RootConfig::new("beta", "rb", "cfg-b")).unwrap();
    let logs = vm.take_logs();
    let lines: Vec<_> = logs.iter().map(|l| l.message.as_str()).collect();
    // Every root starts as Envoy starts each plugin: create, vm_start (with
    // the VM's configuration, common to both), configure (with its own).
    assert_eq!(
        lines,
        [
            "create 1 0 root_id=ra",
            "vm_start 1 config=vmconf",
            "configure 1 config=cfg-a name=alpha root_id=ra",
            "create 2 0 root_id=rb",
            "vm_start 2 config=vmconf",
            "configure 2 config=cfg-b name=beta root_id=rb",
        ]
    );
    // Each line says whose it is.
    let roots: Vec<_> = logs.iter().map(|l| l.root.0).collect();
    assert_eq!(roots, [1, 1, 1, 2, 2, 2]);

    assert_eq!(vm.roots(), [ContextId(1), ContextId(2)]);
    let beta = vm.root_info(ContextId(2)).unwrap();
    assert_eq!((&*beta.name, beta.root_id.as_str()), ("beta", "rb"));
    assert_eq!(beta.plugin_configuration, b"cfg-b");
    assert_eq!(beta.vm_id, "shared", "the VM's own facts are common");
    assert_eq!(&*vm.info().name, "alpha");
    assert!(vm.root_info(ContextId(3)).is_none());

    // Ids come from one counter: a root added after streams comes after them.
    let stream = vm.create_http_stream().unwrap();
    assert_eq!(stream, ContextId(3));
    let gamma = vm
        .add_root(RootConfig::new("gamma", "rc", "cfg-c"))
        .unwrap();
    assert_eq!(gamma, ContextId(4));
    let next = vm.create_http_stream_for(gamma).unwrap();
    assert_eq!(next, ContextId(5));
    let lines = take_lines(&mut vm);
    assert!(
        lines.contains(&"configure 4 config=cfg-c name=gamma root_id=rc".to_string()),
        "{lines:?}"
    );
}

fn streams_are_parented_to_their_root<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = two_roots(&engine, &services);
    take_lines(&mut vm);
    let b = vm.create_http_stream_for(ContextId(2)).unwrap();
    let a = vm.create_http_stream().unwrap();
    let (c, _) = vm.create_tcp_stream_for(ContextId(2)).unwrap();
    assert_eq!((b, a, c), (ContextId(3), ContextId(4), ContextId(5)));
    // A stream sees its own root's configuration and properties, whichever
    // root ran last.
    vm.on_request_headers(b, request("/b"), true).unwrap();
    vm.on_request_headers(a, request("/a"), true).unwrap();
    vm.on_request_headers(b, request("/b"), true).unwrap();
    assert_eq!(
        take_lines(&mut vm),
        [
            "create 3 2 root_id=rb",
            "create 4 1 root_id=ra",
            "create 5 2 root_id=rb",
            "request 3 config=cfg-b name=beta root_id=rb",
            "request 4 config=cfg-a name=alpha root_id=ra",
            "request 3 config=cfg-b name=beta root_id=rb",
        ]
    );
    vm.finish_stream(b).unwrap();
    vm.finish_stream(a).unwrap();
    assert_eq!(
        vm.logs().iter().map(|l| l.root.0).collect::<Vec<_>>(),
        [2, 2, 1, 1],
        "done and delete of each stream are its root's lines"
    );

    let err = vm.create_http_stream_for(ContextId(42)).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::UnknownContext);
    assert!(err.to_string().contains("42"), "{err}");
    // A stream is not a root.
    let err = vm.create_http_stream_for(ContextId(5)).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::UnknownContext);
}

fn ticks_are_per_root<E: Engine>(engine: E) {
    let services = Services::new();
    // Root 1 ticks every 10 ms, root 2 every 20 ms (set in their configure).
    let mut vm = two_roots(&engine, &services);
    take_lines(&mut vm);
    // The earliest tick is root 1's: root 2 set a longer period later.
    let first = vm.next_tick().expect("both roots set a tick period");
    assert!(vm.tick(first).unwrap());
    assert_eq!(take_lines(&mut vm), ["tick 1"]);
    // Root 2 alone.
    let later = first + Duration::from_secs(1);
    assert!(vm.tick_root(ContextId(2), later).unwrap());
    assert_eq!(take_lines(&mut vm), ["tick 2"]);
    assert!(!vm.tick_root(ContextId(2), later).unwrap(), "not due again");
    // Both due: each gets its own tick, with its own context id.
    let much_later = first + Duration::from_secs(60);
    assert!(vm.tick(much_later).unwrap());
    assert_eq!(take_lines(&mut vm), ["tick 1", "tick 2"]);
    // The next one is root 1's again (10 ms after, against root 2's 20).
    assert_eq!(vm.next_tick(), Some(much_later + Duration::from_millis(10)));
    assert!(vm.tick_root(ContextId(9), much_later).is_err());
}

fn queues_notify_the_root_that_registered_them<E: Engine>(engine: E) {
    let services = Services::new();
    // Each root registered a queue named after its configuration.
    let mut vm = two_roots(&engine, &services);
    take_lines(&mut vm);
    let queues = &services.host.queues;
    let qa = queues.resolve("shared", "cfg-a").expect("root 1's queue");
    let qb = queues.resolve("shared", "cfg-b").expect("root 2's queue");
    assert_ne!(qa, qb);
    queues.enqueue(qb, b"to-b").unwrap();
    assert_eq!(vm.deliver_queue_ready().unwrap(), 1);
    assert_eq!(take_lines(&mut vm), [format!("queue 2 {qb} to-b")]);
    queues.enqueue(qa, b"to-a").unwrap();
    queues.enqueue(qb, b"again-b").unwrap();
    assert_eq!(vm.deliver_queue_ready().unwrap(), 2);
    assert_eq!(
        take_lines(&mut vm),
        [
            format!("queue 1 {qa} to-a"),
            format!("queue 2 {qb} again-b")
        ]
    );
    assert_eq!(vm.deliver_queue_ready().unwrap(), 0);
}

fn foreign_functions_reach_the_root_asked_for<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = two_roots(&engine, &services);
    take_lines(&mut vm);
    vm.call_foreign_function_in(ContextId(2), 7, b"args")
        .unwrap();
    vm.call_foreign_function(8, b"").unwrap();
    assert_eq!(take_lines(&mut vm), ["foreign 2 7", "foreign 1 8"]);
    let err = vm
        .call_foreign_function_in(ContextId(3), 7, b"")
        .unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::UnknownContext);
}

fn shutdown_ends_every_root<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = two_roots(&engine, &services);
    take_lines(&mut vm);
    assert_eq!(vm.shutdown().unwrap(), Shutdown::Complete);
    assert_eq!(
        take_lines(&mut vm),
        ["done 1", "delete 1", "done 2", "delete 2"]
    );
    assert!(vm.is_shut_down());
    assert_eq!(vm.shutdown().unwrap(), Shutdown::Complete);
    assert!(take_lines(&mut vm).is_empty(), "nothing is called twice");

    let err = vm
        .add_root(RootConfig::new("late", "rl", "cfg-l"))
        .unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::ShutDown);
    assert!(err.to_string().contains("late"), "{err}");
    assert!(err.to_string().contains("rl"), "{err}");
    assert!(vm.create_http_stream_for(ContextId(2)).is_err());
}

fn one_root_shuts_down_while_the_other_serves<E: Engine>(engine: E) {
    let services = Services::new();
    let mut vm = two_roots(&engine, &services);
    take_lines(&mut vm);
    assert_eq!(vm.shutdown_root(ContextId(2)).unwrap(), Shutdown::Complete);
    assert_eq!(take_lines(&mut vm), ["done 2", "delete 2"]);
    assert!(!vm.is_shut_down());

    // Root 1 still serves and ticks; root 2 takes nothing more.
    let a = vm.create_http_stream().unwrap();
    vm.on_request_headers(a, request("/"), true).unwrap();
    let much_later = vm.next_tick().unwrap() + Duration::from_secs(60);
    assert!(vm.tick(much_later).unwrap());
    assert_eq!(
        take_lines(&mut vm),
        [
            "create 3 1 root_id=ra",
            "request 3 config=cfg-a name=alpha root_id=ra",
            "tick 1",
        ]
    );
    let err = vm.create_http_stream_for(ContextId(2)).unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::ShutDown);
    assert!(err.to_string().contains("beta"), "{err}");

    assert_eq!(vm.shutdown().unwrap(), Shutdown::Complete);
    assert_eq!(take_lines(&mut vm), ["done 1", "delete 1"]);
    assert!(vm.is_shut_down());
}

fn a_root_that_rejects_its_configuration_is_refused_alone<E: Engine>(engine: E) {
    let services = Services::new();
    let (_, mut vm) = start(&engine, &roots_plugin(), alpha(), &services);
    let err = vm
        .add_root(RootConfig::new("picky", "rp", "!no"))
        .unwrap_err();
    assert_eq!(err.kind(), PluginErrorKind::StartFailed);
    let text = err.to_string();
    assert!(
        text.contains("picky") && text.contains("rp") && text.contains("proxy_on_configure"),
        "{text}"
    );
    // The VM goes on with its first root only.
    assert_eq!(vm.roots(), [ContextId(1)]);
    assert!(!vm.is_failed());
    take_lines(&mut vm);
    let a = vm.create_http_stream().unwrap();
    vm.on_request_headers(a, request("/"), true).unwrap();
    assert_eq!(
        take_lines(&mut vm),
        [
            "create 3 1 root_id=ra",
            "request 3 config=cfg-a name=alpha root_id=ra",
        ]
    );
    // A later root is numbered after the refused one.
    let b = vm.add_root(RootConfig::new("beta", "rb", "cfg-b")).unwrap();
    assert_eq!(b, ContextId(4));
}

/// The Rust SDK creates a root context per `proxy_on_context_create(id, 0)`
/// and hands each its own configuration: two `hello` filters with
/// different headers in one VM.
fn rust_sdk_roots_keep_their_own_configuration<E: Engine>(engine: E) {
    for target in RUST_TARGETS {
        let services = Services::new();
        let config = PluginConfig {
            root_id: "first".into(),
            vm_id: "hello-vm".into(),
            configuration: r#"{"header": "x-first", "value": "1"}"#.into(),
            ..PluginConfig::named("hello-first")
        };
        let (_, mut vm) = start(&engine, &fixture(target, "hello"), config, &services);
        let second = vm
            .add_root(RootConfig::new(
                "hello-second",
                "second",
                r#"{"header": "x-second", "value": "2", "deny_path": "/private"}"#,
            ))
            .unwrap_or_else(|e| panic!("{target}: {e}"));
        let a = vm.create_http_stream().unwrap();
        let b = vm.create_http_stream_for(second).unwrap();
        vm.on_request_headers(a, request("/private"), true).unwrap();
        vm.on_request_headers(b, request("/"), true).unwrap();
        let ha = &vm.stream(a).unwrap().request_headers;
        assert_eq!(ha.get_str("x-first"), Some("1"), "{target}");
        assert_eq!(ha.get_str("x-second"), None, "{target}");
        let hb = &vm.stream(b).unwrap().request_headers;
        assert_eq!(hb.get_str("x-second"), Some("2"), "{target}");
        assert_eq!(hb.get_str("x-first"), None, "{target}");
        // Root 2's deny_path applies to its streams only.
        let c = vm.create_http_stream_for(second).unwrap();
        let decision = vm
            .on_request_headers(c, request("/private/x"), true)
            .unwrap();
        assert!(
            matches!(decision, polyhost::Decision::LocalResponse(ref r) if r.status == 403),
            "{target}: {decision:?}"
        );

        // proxy_on_vm_start runs on each root, as Envoy calls it.
        let starts: Vec<_> = vm
            .logs()
            .iter()
            .filter(|l| l.message.starts_with("hello: vm_start"))
            .map(|l| l.root.0)
            .collect();
        assert_eq!(starts, [1, 2], "{target}");
        assert_eq!(vm.shutdown().unwrap(), Shutdown::Complete, "{target}");
    }
}

/// A callout made by a stream of root 2 is answered with root 2 as the
/// root context argument and the stream as the effective context.
fn callout_answers_name_the_callers_root<E: Engine>(engine: E) {
    let imports = r#"
        (import "env" "proxy_http_call" (func $http_call
            (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
        (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
        (import "env" "proxy_get_property"
            (func $get_property (param i32 i32 i32 i32) (result i32)))
    "#;
    // Logs "<root argument><plugin_root_id>" from the answer.
    let body = r#"
        (data (i32.const 16) "up")
        (data (i32.const 32) "plugin_root_id")
        ;; :method GET, :path /, :authority a, serialized.
        (data (i32.const 128) "\03\00\00\00\07\00\00\00\03\00\00\00\05\00\00\00\01\00\00\00\0a\00\00\00\01\00\00\00\3a\6d\65\74\68\6f\64\00\47\45\54\00\3a\70\61\74\68\00\2f\00\3a\61\75\74\68\6f\72\69\74\79\00\61\00")
        (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
            (drop (call $http_call (i32.const 16) (i32.const 2) (i32.const 128) (i32.const 61)
                (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 1000)
                (i32.const 64)))
            (i32.const 1))
        (func (export "proxy_on_http_call_response") (param $root i32) (param i32 i32 i32 i32)
            (i32.store8 (i32.const 600) (i32.add (i32.const 48) (local.get $root)))
            (drop (call $get_property (i32.const 32) (i32.const 14) (i32.const 80) (i32.const 84)))
            (memory.copy (i32.const 601) (i32.load (i32.const 80)) (i32.load (i32.const 84)))
            (drop (call $log (i32.const 2) (i32.const 600)
                (i32.add (i32.const 1) (i32.load (i32.const 84))))))
    "#;
    let services = Services::new();
    let wasm = crate::harness::wat_plugin(imports, body);
    let (_, mut vm) = start(&engine, &wasm, alpha(), &services);
    let beta = vm.add_root(RootConfig::new("beta", "rb", "")).unwrap();
    let b = vm.create_http_stream_for(beta).unwrap();
    let a = vm.create_http_stream().unwrap();
    vm.on_request_headers(b, request("/"), true).unwrap();
    vm.on_request_headers(a, request("/"), true).unwrap();
    let calls = services.callouts.take();
    let mut callers = Vec::new();
    for call in calls {
        let polyhost::services::CalloutRequest::Http(call) = call else {
            panic!("{call:?}")
        };
        callers.push(call.plugin.to_string());
        vm.deliver_http_response(call.token, polyhost::HttpCallResult::Timeout)
            .unwrap();
    }
    assert_eq!(callers, ["beta", "alpha"], "each call names its plugin");
    assert_eq!(take_lines(&mut vm), ["2rb", "1ra"]);
}

fn a_vm_can_start_as_another_plugin_of_its_group<E: Engine>(engine: E) {
    let services = Services::new();
    let (plugin, _) = start(&engine, &roots_plugin(), alpha(), &services);
    // A worker whose first request is for `beta` starts the shared VM as
    // beta, then adds alpha: root 1 is beta's, with the VM's own facts.
    let mut vm = plugin
        .new_vm_as(RootConfig::new("beta", "rb", "cfg-b"))
        .unwrap();
    let alpha = vm.add_root(RootConfig::from(&alpha())).unwrap();
    assert_eq!(
        take_lines(&mut vm),
        [
            "create 1 0 root_id=rb",
            "vm_start 1 config=vmconf",
            "configure 1 config=cfg-b name=beta root_id=rb",
            "create 2 0 root_id=ra",
            "vm_start 2 config=vmconf",
            "configure 2 config=cfg-a name=alpha root_id=ra",
        ]
    );
    let first = vm.root_info(ContextId(1)).unwrap();
    assert_eq!((&*first.name, first.vm_id.as_str()), ("beta", "shared"));
    let stream = vm.create_http_stream_for(alpha).unwrap();
    assert_eq!(stream, ContextId(3));

    // A root that refuses its configuration fails the start, naming it.
    let refused = plugin
        .new_vm_as(RootConfig::new("gamma", "rc", "!reject"))
        .err()
        .expect("refused");
    assert_eq!(refused.kind(), PluginErrorKind::StartFailed, "{refused}");
    assert!(refused.to_string().contains("gamma"), "{refused}");
}
