//! What is particular to the wasmtime backend: variant names, fingerprints
//! and capabilities. The engine contract itself runs on every engine and
//! variant in `polyhost/tests/all/engine_contract.rs`.

use polyhost_engine_core::{Engine, EngineConfig, ErrorKind};
use polyhost_engine_wasmtime::{Variant, WasmtimeEngine};

#[test]
fn variants_have_their_own_names_and_fingerprints() {
    let mut fingerprints = Vec::new();
    for &variant in Variant::available() {
        let e = WasmtimeEngine::new(variant, &EngineConfig::default()).unwrap();
        assert_eq!(e.name(), variant.engine_name());
        let fp = e.fingerprint();
        assert!(fp.starts_with("wasmtime-"), "{fp}");
        assert!(fp.contains(&format!("{variant:?}")), "{fp}");
        assert!(!fingerprints.contains(&fp), "{fp} repeats");
        fingerprints.push(fp);
        let caps = e.capabilities();
        assert!(caps.precompile && caps.interruption && caps.fuel && caps.memory_limit);
        assert!(caps.instance_pooling);
    }
}

#[test]
fn code_affecting_settings_change_the_fingerprint() {
    let Some(&variant) = Variant::available().first() else {
        return;
    };
    let plain = WasmtimeEngine::new(variant, &EngineConfig::default()).unwrap();
    let fueled = WasmtimeEngine::new(
        variant,
        &EngineConfig {
            fuel_per_call: Some(1000),
            ..EngineConfig::default()
        },
    )
    .unwrap();
    // Code compiled with fuel checks must never be loaded by an engine
    // without them, and the reverse: the module cache keys on this.
    assert_ne!(plain.fingerprint(), fueled.fingerprint());
}

#[test]
fn variants_not_compiled_in_are_refused() {
    for variant in [Variant::Cranelift, Variant::Winch, Variant::Pulley] {
        if Variant::available().contains(&variant) {
            continue;
        }
        let err = WasmtimeEngine::new(variant, &EngineConfig::default())
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotSupported);
        assert_eq!(err.engine(), variant.engine_name());
    }
}
