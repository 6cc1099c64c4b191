//! The precompiled-module cache.

use crate::harness::{Services, engine_config_tests, fixture, request};
use polyhost::cache::{CacheOutcome, ModuleCache};
use polyhost::engine_core::Result as EngineResult;
use polyhost::{Decision, Engine, EngineConfig, Plugin, PluginConfig};

engine_config_tests!(
    second_load_does_not_compile,
    corrupt_truncated_and_foreign_entries_are_rebuilt,
    least_recently_used_entries_are_evicted,
    concurrent_fills_never_tear,
);

/// Loads through the cache and proves the module works.
fn load_and_run<E: Engine>(engine: &E, cache: &ModuleCache, wasm: &[u8]) -> CacheOutcome {
    let loaded = cache.load(engine, wasm).unwrap();
    let plugin = Plugin::from_module(
        engine,
        loaded.module,
        PluginConfig::named("hello"),
        Services::new().host,
    )
    .unwrap();
    let mut vm = plugin.new_vm().unwrap();
    let id = vm.create_http_stream().unwrap();
    assert_eq!(
        vm.on_request_headers(id, request("/"), true).unwrap(),
        Decision::Continue
    );
    assert_eq!(
        vm.stream(id).unwrap().request_headers.get_str("x-hello"),
        Some("polyhost")
    );
    loaded.outcome
}

fn second_load_does_not_compile<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path(), 1 << 30);
    let wasm = fixture("rust-wasip1", "hello");
    if !engine.capabilities().precompile {
        assert_eq!(
            load_and_run(&engine, &cache, &wasm),
            CacheOutcome::Uncacheable
        );
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(0),
            0
        );
        return;
    }
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Miss);
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Hit);
    // A new engine of the same kind (a restart) hits too.
    let restarted = make(&EngineConfig::default()).unwrap();
    assert_eq!(load_and_run(&restarted, &cache, &wasm), CacheOutcome::Hit);
    // Settings that change code give a different entry.
    let fuel = EngineConfig {
        fuel_per_call: Some(1_000_000_000),
        ..EngineConfig::default()
    };
    if let Ok(fueled) = make(&fuel)
        && fueled.fingerprint() != engine.fingerprint()
    {
        assert_ne!(
            cache.entry_path(&fueled, &wasm),
            cache.entry_path(&engine, &wasm)
        );
    }
}

fn corrupt_truncated_and_foreign_entries_are_rebuilt<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let engine = make(&EngineConfig::default()).unwrap();
    if !engine.capabilities().precompile {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = ModuleCache::new(dir.path(), 1 << 30);
    let wasm = fixture("rust-unknown", "hello");
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Miss);
    let path = cache.entry_path(&engine, &wasm);
    let good = std::fs::read(&path).unwrap();

    let mut flipped = good.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0xff;
    std::fs::write(&path, &flipped).unwrap();
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Rebuilt);

    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Rebuilt);

    // An entry written for another engine version (same file name forced).
    let mut foreign = good.clone();
    foreign[12] ^= 0x01; // first byte of the recorded fingerprint
    std::fs::write(&path, &foreign).unwrap();
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Rebuilt);

    std::fs::write(&path, b"").unwrap();
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Rebuilt);
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Hit);
    assert_eq!(std::fs::read(&path).unwrap(), good);
}

fn least_recently_used_entries_are_evicted<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let engine = make(&EngineConfig::default()).unwrap();
    if !engine.capabilities().precompile {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let plugins: Vec<Vec<u8>> = ["hello", "noop", "tcp_upper"]
        .iter()
        .map(|p| fixture("rust-wasip1", p))
        .collect();
    // Measure one entry, then bound the cache to about two of them.
    let probe = ModuleCache::new(dir.path().join("probe"), u64::MAX);
    let sizes: Vec<u64> = plugins
        .iter()
        .map(|w| {
            probe.load(&engine, w).unwrap();
            std::fs::metadata(probe.entry_path(&engine, w))
                .unwrap()
                .len()
        })
        .collect();
    let cache = ModuleCache::new(dir.path().join("lru"), sizes[0] + sizes[1] + sizes[2] / 2);
    cache.load(&engine, &plugins[0]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    cache.load(&engine, &plugins[1]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    // Using the first makes the second the least recently used.
    assert_eq!(
        cache.load(&engine, &plugins[0]).unwrap().outcome,
        CacheOutcome::Hit
    );
    std::thread::sleep(std::time::Duration::from_millis(20));
    cache.load(&engine, &plugins[2]).unwrap();
    assert!(cache.entry_path(&engine, &plugins[0]).exists());
    assert!(
        !cache.entry_path(&engine, &plugins[1]).exists(),
        "LRU entry evicted"
    );
    assert!(cache.entry_path(&engine, &plugins[2]).exists());
}

fn concurrent_fills_never_tear<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let engine = make(&EngineConfig::default()).unwrap();
    if !engine.capabilities().precompile {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let wasm = fixture("rust-wasip1", "hello");
    std::thread::scope(|s| {
        for _ in 0..4 {
            let cache = ModuleCache::new(dir.path(), 1 << 30);
            let (engine, wasm) = (&engine, &wasm);
            s.spawn(move || {
                let outcome = cache.load(engine, wasm).unwrap().outcome;
                assert!(
                    matches!(outcome, CacheOutcome::Miss | CacheOutcome::Hit),
                    "{outcome:?}"
                );
            });
        }
    });
    let cache = ModuleCache::new(dir.path(), 1 << 30);
    assert_eq!(load_and_run(&engine, &cache, &wasm), CacheOutcome::Hit);
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}
