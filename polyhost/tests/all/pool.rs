//! VM pools and VMs on several threads.

use crate::harness::{Services, engine_tests, fixture, log_texts, request, start, with};
use polyhost::{Engine, Plugin, PluginConfig, PoolError, ReturnPolicy, VmPool};

engine_tests!(
    pool_refuses_when_exhausted_and_replaces_on_return,
    queues_deliver_across_threads
);

fn pool_refuses_when_exhausted_and_replaces_on_return<E: Engine>(engine: E) {
    let services = Services::new();
    let config = PluginConfig {
        vm_id: "probe-vm".into(),
        ..PluginConfig::named("abi_probe")
    };
    let plugin = Plugin::load(
        &engine,
        &fixture("rust-wasip1", "abi_probe"),
        config,
        services.host.clone(),
    )
    .unwrap();
    let pool = VmPool::new(plugin.clone(), 2, ReturnPolicy::Replace).unwrap();
    assert_eq!(pool.available(), 2);
    {
        let mut a = pool.take().unwrap();
        let _b = pool.take().unwrap();
        assert!(matches!(
            pool.take(),
            Err(PoolError::Exhausted { size: 2, .. })
        ));
        let id = a.create_http_stream().unwrap();
        a.on_request_headers(id, with(request("/"), &[("x-case", "log")]), true)
            .unwrap();
        assert!(!a.logs().is_empty());
    }
    assert_eq!(pool.available(), 2);
    // Replaced: the VM handed out next has no state from the last request.
    let fresh = pool.take().unwrap();
    let other = pool.take().unwrap();
    assert!(
        fresh
            .logs()
            .iter()
            .chain(other.logs())
            .all(|l| !l.message.starts_with("probe "))
    );
    drop((fresh, other));

    // Reuse keeps state, but a failed VM is replaced.
    let pool = VmPool::new(plugin, 1, ReturnPolicy::Reuse).unwrap();
    {
        let mut vm = pool.take().unwrap();
        let id = vm.create_http_stream().unwrap();
        vm.on_request_headers(id, with(request("/"), &[("x-case", "log")]), true)
            .unwrap();
    }
    assert!(
        pool.take()
            .unwrap()
            .logs()
            .iter()
            .any(|l| l.message == "probe info")
    );
    {
        let mut vm = pool.take().unwrap();
        let id = vm.create_http_stream().unwrap();
        assert!(
            vm.on_request_headers(id, with(request("/"), &[("x-case", "trap")]), true)
                .is_err()
        );
    }
    assert!(!pool.take().unwrap().is_failed());
}

fn queues_deliver_across_threads<E: Engine>(engine: E) {
    let services = Services::new();
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
    let producer = Plugin::load(
        &engine,
        &fixture("rust-wasip1", "queue_producer"),
        PluginConfig::named("producer"),
        services.host.clone(),
    )
    .unwrap();
    // Two worker threads, each with its own producer VM.
    std::thread::scope(|s| {
        for t in 0..2 {
            let producer = producer.clone();
            s.spawn(move || {
                let mut vm = producer.new_vm().unwrap();
                for i in 0..3 {
                    let id = vm.create_http_stream().unwrap();
                    vm.on_request_headers(id, request(&format!("/t{t}/{i}")), true)
                        .unwrap();
                    assert_eq!(
                        vm.stream(id).unwrap().request_headers.get_str("x-enqueued"),
                        Some("yes")
                    );
                }
            });
        }
    });
    // Delivered on the consumer's own thread, each item once.
    assert_eq!(consumer.deliver_queue_ready().unwrap(), 6);
    let logs = log_texts(&consumer);
    for t in 0..2 {
        for i in 0..3 {
            assert!(
                logs.contains(&format!("info consumer: /t{t}/{i}")),
                "{logs:?}"
            );
        }
    }
    assert_eq!(services.counter("consumer_items"), Some(6));
}

/// Engine-level instance slots (wasmtime's pooling allocator).
mod slots {
    use super::*;

    crate::harness::engine_config_tests!(pooled_instance_slots_are_bounded);

    fn pooled_instance_slots_are_bounded<E: Engine>(
        make: impl Fn(&polyhost::EngineConfig) -> polyhost::engine_core::Result<E>,
    ) {
        let config = polyhost::EngineConfig {
            pooled_instances: Some(2),
            max_memory_bytes: 64 << 20,
            ..Default::default()
        };
        let Some(engine) = crate::harness::engine_if_capable(make, &config, |c| c.instance_pooling)
        else {
            return;
        };
        let services = Services::new();
        let plugin = Plugin::load(
            &engine,
            &fixture("rust-unknown", "noop"),
            PluginConfig::named("noop"),
            services.host.clone(),
        )
        .unwrap();
        let a = plugin.new_vm().unwrap();
        let _b = plugin.new_vm().unwrap();
        let err = plugin
            .new_vm()
            .err()
            .expect("a third live instance exceeds two slots");
        assert_eq!(err.kind(), polyhost::PluginErrorKind::Instantiate, "{err}");
        drop(a);
        let mut c = plugin.new_vm().unwrap();
        let id = c.create_http_stream().unwrap();
        assert_eq!(
            c.on_request_headers(id, request("/"), true).unwrap(),
            polyhost::Decision::Continue
        );
    }
}
