//! What is particular to the wasmer backend: its names, fingerprint and
//! capabilities. The engine contract itself runs on every engine in
//! `polyhost/tests/all/engine_contract.rs` (including `wasmer-singlepass`
//! when that feature is on).

use polyhost_engine_core::{Engine, EngineConfig, ErrorKind};
use polyhost_engine_wasmer::{Variant, WasmerEngine};

fn wasmer() -> WasmerEngine {
    WasmerEngine::cranelift().unwrap()
}

#[test]
fn wasmer_capabilities() {
    let e = wasmer();
    assert_eq!(e.name(), "wasmer");
    let fp = e.fingerprint();
    assert!(fp.starts_with("wasmer-"), "{fp}");
    assert!(fp.contains("cranelift"), "{fp}");
    assert!(fp.contains(std::env::consts::ARCH), "{fp}");
    let caps = e.capabilities();
    // Interruption is metering points emptied by a watchdog thread.
    assert!(caps.precompile && caps.interruption && caps.backtraces);
    // A deadline meters the code, so it is part of the fingerprint.
    let unmetered = WasmerEngine::new(
        Variant::Cranelift,
        &EngineConfig {
            call_timeout: None,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    assert!(fp.contains("-fuel=off-deadline=true-"), "{fp}");
    assert_ne!(unmetered.fingerprint(), fp);
    let err = WasmerEngine::new(
        Variant::Cranelift,
        &EngineConfig {
            pooled_instances: Some(4),
            ..EngineConfig::default()
        },
    )
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    assert_eq!(err.engine(), "wasmer");
    assert_eq!(WasmerEngine::names()[0], "wasmer");
    assert_eq!(
        WasmerEngine::by_name("wasmer", &EngineConfig::default())
            .unwrap()
            .variant(),
        Variant::Cranelift
    );
    assert_eq!(
        WasmerEngine::by_name("wasmer-llvm", &EngineConfig::default())
            .err()
            .unwrap()
            .kind(),
        ErrorKind::NotSupported
    );
    if !cfg!(feature = "singlepass") {
        let err = WasmerEngine::new(Variant::Singlepass, &EngineConfig::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotSupported);
        assert_eq!(err.engine(), "wasmer-singlepass");
    }
}
