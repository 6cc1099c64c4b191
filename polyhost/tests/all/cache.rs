//! The precompiled-module cache.

use crate::harness::{Services, engine_config_tests, fixture, request};
use polyhost::cache::{CacheError, CacheOutcome, ModuleCache};
use polyhost::engine_core::Result as EngineResult;
use polyhost::{Decision, Engine, EngineConfig, Plugin, PluginConfig};

engine_config_tests!(
    second_load_does_not_compile,
    corrupt_truncated_and_foreign_entries_are_rebuilt,
    least_recently_used_entries_are_evicted,
    concurrent_fills_never_tear,
    entry_copied_over_another_module_is_not_loaded_as_it,
    entries_that_are_not_regular_files_are_never_read,
    folders_others_can_write_are_refused,
    new_folders_are_private,
    eviction_removes_only_polyhost_entries,
    a_zero_bound_stores_nothing,
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
    foreign[8 + 32 + 4] ^= 0x01; // first byte of the recorded fingerprint
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

/// Whether `wasm` run through `cache` behaves as the `noop` plugin (no
/// `x-hello` header) rather than `hello`.
fn adds_hello_header<E: Engine>(
    engine: &E,
    cache: &ModuleCache,
    wasm: &[u8],
) -> (bool, CacheOutcome) {
    let loaded = cache.load(engine, wasm).unwrap();
    let plugin = Plugin::from_module(
        engine,
        loaded.module,
        PluginConfig::named("probe"),
        Services::new().host,
    )
    .unwrap();
    let mut vm = plugin.new_vm().unwrap();
    let id = vm.create_http_stream().unwrap();
    vm.on_request_headers(id, request("/"), true).unwrap();
    let hello = vm
        .stream(id)
        .unwrap()
        .request_headers
        .get_str("x-hello")
        .is_some();
    (hello, loaded.outcome)
}

/// A cache in a fresh private folder, or `None` on engines that do not
/// precompile (nothing of theirs is ever read from disk).
fn precompiling<E: Engine>(
    make: &impl Fn(&EngineConfig) -> EngineResult<E>,
) -> Option<(E, tempfile::TempDir)> {
    let engine = make(&EngineConfig::default()).unwrap();
    engine
        .capabilities()
        .precompile
        .then(|| (engine, tempfile::tempdir().unwrap()))
}

fn entry_copied_over_another_module_is_not_loaded_as_it<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let Some((engine, dir)) = precompiling(&make) else {
        return;
    };
    let cache = ModuleCache::new(dir.path(), 1 << 30);
    let hello = fixture("rust-wasip1", "hello");
    let noop = fixture("rust-wasip1", "noop");
    assert_eq!(
        adds_hello_header(&engine, &cache, &hello),
        (true, CacheOutcome::Miss)
    );
    assert_eq!(
        adds_hello_header(&engine, &cache, &noop),
        (false, CacheOutcome::Miss)
    );
    // hello's valid entry (right engine, right checksum) under noop's name.
    std::fs::copy(
        cache.entry_path(&engine, &hello),
        cache.entry_path(&engine, &noop),
    )
    .unwrap();
    assert_eq!(
        adds_hello_header(&engine, &cache, &noop),
        (false, CacheOutcome::Rebuilt),
        "an entry for another module must never be loaded"
    );
    assert_eq!(
        adds_hello_header(&engine, &cache, &noop),
        (false, CacheOutcome::Hit)
    );
    assert_eq!(
        adds_hello_header(&engine, &cache, &hello),
        (true, CacheOutcome::Hit)
    );
}

fn entries_that_are_not_regular_files_are_never_read<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let Some((engine, dir)) = precompiling(&make) else {
        return;
    };
    let cache = ModuleCache::new(dir.path().join("cache"), 1 << 30);
    let hello = fixture("rust-wasip1", "hello");
    let path = cache.entry_path(&engine, &hello);
    assert_eq!(load_and_run(&engine, &cache, &hello), CacheOutcome::Miss);
    // A valid entry, but reached through a symlink: not followed.
    let elsewhere = dir.path().join("elsewhere.cwasm");
    std::fs::rename(&path, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
    assert_eq!(load_and_run(&engine, &cache, &hello), CacheOutcome::Rebuilt);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.is_file(), "the link is replaced by a real entry");
    // The link's target is left alone.
    assert!(elsewhere.exists());
    assert_eq!(load_and_run(&engine, &cache, &hello), CacheOutcome::Hit);
    // A link to an endless device is never read (this would not end).
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
    assert_eq!(load_and_run(&engine, &cache, &hello), CacheOutcome::Rebuilt);
    assert!(std::fs::symlink_metadata(&path).unwrap().is_file());
    // A directory in the way cannot be replaced: a clear error naming it.
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
    let err = cache
        .load(&engine, &hello)
        .err()
        .expect("a directory entry");
    assert!(matches!(err, CacheError::Io { .. }), "{err}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
}

fn folders_others_can_write_are_refused<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    use std::os::unix::fs::PermissionsExt;
    let engine = make(&EngineConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hello = fixture("rust-wasip1", "hello");
    for (mode, who) in [
        (0o770, "its group"),
        (0o777, "everyone"),
        (0o1777, "everyone"),
    ] {
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        let cache = ModuleCache::new(dir.path(), 1 << 30);
        match cache.load(&engine, &hello) {
            Err(err @ CacheError::InsecureDir { .. }) => {
                let text = err.to_string();
                assert!(text.contains(&*dir.path().to_string_lossy()), "{text}");
                assert!(text.contains(&format!("writable by {who}")), "{text}");
            }
            Ok(loaded) => {
                // Nothing is read or written for an engine that cannot
                // precompile, so there is nothing to refuse.
                assert!(!engine.capabilities().precompile, "{mode:o} accepted");
                assert_eq!(loaded.outcome, CacheOutcome::Uncacheable);
            }
            Err(other) => panic!("{mode:o}: {other}"),
        }
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "nothing written"
        );
    }
    // Made private again, the same folder works.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let cache = ModuleCache::new(dir.path(), 1 << 30);
    assert!(cache.load(&engine, &hello).is_ok());
}

fn new_folders_are_private<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    use std::os::unix::fs::PermissionsExt;
    let Some((engine, dir)) = precompiling(&make) else {
        return;
    };
    let cache = ModuleCache::new(dir.path().join("a").join("polyhost"), 1 << 30);
    assert_eq!(
        load_and_run(&engine, &cache, &fixture("rust-wasip1", "hello")),
        CacheOutcome::Miss
    );
    let mode = std::fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "{mode:o}");
}

fn eviction_removes_only_polyhost_entries<E: Engine>(
    make: impl Fn(&EngineConfig) -> EngineResult<E>,
) {
    let Some((engine, dir)) = precompiling(&make) else {
        return;
    };
    let hello = fixture("rust-wasip1", "hello");
    let noop = fixture("rust-wasip1", "noop");
    let big = ModuleCache::new(dir.path(), 1 << 30);
    big.load(&engine, &hello).unwrap();
    let own = big.entry_path(&engine, &hello);
    // Files Polyhost did not write, some named like entries, all old and
    // large enough to be evicted first if they were counted.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("precious.cwasm");
    std::fs::write(&target, b"PHCACHE\x02 but not ours to delete").unwrap();
    let foreign = [
        ("notes.cwasm", b"the user's own file".to_vec()),
        ("module.wasm", vec![0; 4096]),
        // Named like an entry but not one (no magic).
        (
            "0123456789abcdef0123456789abcdef-0123456789abcdef.cwasm",
            vec![1; 4096],
        ),
    ];
    for (name, bytes) in &foreign {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    let link = dir
        .path()
        .join("fedcba9876543210fedcba9876543210-fedcba9876543210.cwasm");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // Bound to less than both entries: adding noop evicts hello, and only
    // hello.
    let probe = ModuleCache::new(outside.path().join("probe"), 1 << 30);
    probe.load(&engine, &noop).unwrap();
    let noop_size = std::fs::metadata(probe.entry_path(&engine, &noop))
        .unwrap()
        .len();
    let hello_size = std::fs::metadata(&own).unwrap().len();
    let small = ModuleCache::new(dir.path(), noop_size + hello_size - 1);
    std::thread::sleep(std::time::Duration::from_millis(20));
    small.load(&engine, &noop).unwrap();
    assert!(
        !own.exists(),
        "polyhost's least recently used entry is evicted"
    );
    assert!(small.entry_path(&engine, &noop).exists());
    for (name, bytes) in &foreign {
        assert_eq!(
            &std::fs::read(dir.path().join(name)).unwrap(),
            bytes,
            "{name}"
        );
    }
    assert!(
        std::fs::symlink_metadata(&link).is_ok(),
        "a link is not ours"
    );
    assert!(target.exists());
}

fn a_zero_bound_stores_nothing<E: Engine>(make: impl Fn(&EngineConfig) -> EngineResult<E>) {
    let Some((engine, dir)) = precompiling(&make) else {
        return;
    };
    let hello = fixture("rust-wasip1", "hello");
    let cache = ModuleCache::new(dir.path(), 0);
    assert_eq!(
        load_and_run(&engine, &cache, &hello),
        CacheOutcome::NotStored
    );
    assert!(!cache.entry_path(&engine, &hello).exists());
    assert_eq!(
        load_and_run(&engine, &cache, &hello),
        CacheOutcome::NotStored
    );
}
