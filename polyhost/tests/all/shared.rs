//! Shared data, shared queues and ticks.

use crate::harness::{Services, engine_tests, fixture, log_texts, request, start, with};
use polyhost::{Engine, PluginConfig};
use std::time::{Duration, Instant};

engine_tests!(
    shared_data_counts_and_detects_cas_mismatch,
    queue_delivers_between_two_plugins,
    queue_resolves_its_own_vm,
    ticks_fire_when_due,
);

fn shared_data_counts_and_detects_cas_mismatch<E: Engine>(engine: E) {
    let services = Services::new();
    let config = || PluginConfig {
        vm_id: "probe-vm".into(),
        ..PluginConfig::named("abi_probe")
    };
    // Two VMs of the same vm_id share the data.
    let (_, mut a) = start(
        &engine,
        &fixture("rust-wasip1", "abi_probe"),
        config(),
        &services,
    );
    let (_, mut b) = start(
        &engine,
        &fixture("rust-unknown", "abi_probe"),
        config(),
        &services,
    );
    for i in 0..3 {
        let vm = if i == 1 { &mut b } else { &mut a };
        let id = vm.create_http_stream().unwrap();
        vm.on_request_headers(id, with(request("/"), &[("x-case", "shared")]), true)
            .unwrap();
        let h = &vm.stream(id).unwrap().request_headers;
        assert_eq!(
            h.get_str("x-result-shared"),
            Some((i + 1).to_string().as_str())
        );
        assert_eq!(h.get_str("x-result-cas"), Some("mismatch"));
    }
    use polyhost::services::SharedDataStore;
    let (value, cas) = services.shared.get("probe-vm", b"probe/counter").unwrap();
    assert_eq!(value, b"3");
    assert!(cas > 0);
    assert!(services.shared.get("other-vm", b"probe/counter").is_none());
}

fn queue_delivers_between_two_plugins<E: Engine>(engine: E) {
    let services = Services::new();
    let (_, mut producer) = start(
        &engine,
        &fixture("rust-unknown", "queue_producer"),
        PluginConfig::named("producer"),
        &services,
    );
    // Before the consumer registers the queue, nothing to resolve.
    let early = producer.create_http_stream().unwrap();
    producer
        .on_request_headers(early, request("/early"), true)
        .unwrap();
    assert_eq!(
        producer
            .stream(early)
            .unwrap()
            .request_headers
            .get_str("x-enqueued"),
        Some("no")
    );

    let consumer_config = PluginConfig {
        vm_id: "queue-vm".into(),
        ..PluginConfig::named("consumer")
    };
    let (_, mut consumer) = start(
        &engine,
        &fixture("rust-wasip1", "queue_consumer"),
        consumer_config,
        &services,
    );
    for path in ["/a", "/b"] {
        let id = producer.create_http_stream().unwrap();
        producer
            .on_request_headers(id, request(path), true)
            .unwrap();
        assert_eq!(
            producer
                .stream(id)
                .unwrap()
                .request_headers
                .get_str("x-enqueued"),
            Some("yes")
        );
    }
    assert_eq!(consumer.deliver_queue_ready().unwrap(), 2);
    let logs = log_texts(&consumer);
    assert!(
        logs.ends_with(&[
            "info consumer: /a".to_string(),
            "info consumer: /b".to_string()
        ]),
        "{logs:?}"
    );
    assert_eq!(services.counter("consumer_items"), Some(2));
    assert_eq!(consumer.deliver_queue_ready().unwrap(), 0);
}

fn queue_resolves_its_own_vm<E: Engine>(engine: E) {
    let services = Services::new();
    let config = PluginConfig {
        vm_id: "probe-vm".into(),
        ..PluginConfig::named("abi_probe")
    };
    let (_, mut vm) = start(
        &engine,
        &fixture("rust-wasip1", "abi_probe"),
        config,
        &services,
    );
    let id = vm.create_http_stream().unwrap();
    vm.on_request_headers(id, with(request("/q1"), &[("x-case", "queue")]), true)
        .unwrap();
    assert_eq!(
        vm.stream(id)
            .unwrap()
            .request_headers
            .get_str("x-result-queue"),
        Some("enqueued")
    );
    assert_eq!(vm.deliver_queue_ready().unwrap(), 1);
    assert_eq!(log_texts(&vm).last().unwrap(), "info probe queue: /q1");
}

fn ticks_fire_when_due<E: Engine>(engine: E) {
    let services = Services::new();
    let (_, mut vm) = start(
        &engine,
        &fixture("rust-wasip1", "ticker"),
        PluginConfig::named("ticker"),
        &services,
    );
    let first = vm.next_tick().expect("ticker sets a 10 ms period");
    assert!(
        !vm.tick(first - Duration::from_millis(1)).unwrap(),
        "not due yet"
    );
    let mut now = first;
    for _ in 0..3 {
        assert!(vm.tick(now).unwrap());
        let next = vm.next_tick().unwrap();
        assert_eq!(next - now, Duration::from_millis(10));
        now = next;
    }
    assert_eq!(services.counter("ticker_ticks"), Some(3));
    use polyhost::services::SharedDataStore;
    assert_eq!(services.shared.get("", b"ticker/last").unwrap().0, b"3");
    // A late embedder does not get a burst of missed ticks.
    let late = now + Duration::from_secs(1);
    assert!(vm.tick(late).unwrap());
    assert!(!vm.tick(late).unwrap());
    assert!(vm.next_tick().unwrap() > Instant::now());

    // The probe sets its period from the VM configuration.
    let config = PluginConfig {
        vm_id: "probe-vm".into(),
        vm_configuration: "25".into(),
        ..PluginConfig::named("abi_probe")
    };
    let (_, mut probe) = start(
        &engine,
        &fixture("rust-unknown", "abi_probe"),
        config,
        &services,
    );
    let due = probe.next_tick().unwrap();
    probe.tick(due).unwrap();
    assert_eq!(probe.next_tick().unwrap() - due, Duration::from_millis(25));
    assert_eq!(services.counter("probe_ticks"), Some(1));
}
