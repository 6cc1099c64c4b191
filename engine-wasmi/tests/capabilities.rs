//! What is particular to the wasmi backend: its name, fingerprint and the
//! capabilities an interpreter lacks. The engine contract itself runs on
//! every engine in `polyhost/tests/all/engine_contract.rs`.

use polyhost_engine_core::{Engine, EngineConfig, ErrorKind};
use polyhost_engine_wasmi::WasmiEngine;

fn wasmi() -> WasmiEngine {
    WasmiEngine::new(&EngineConfig::default()).unwrap()
}

#[test]
fn wasmi_capabilities() {
    let e = wasmi();
    assert_eq!(e.name(), "wasmi");
    assert!(e.fingerprint().starts_with("wasmi-"));
    let caps = e.capabilities();
    // Interruption is fuel in slices with the clock read between them.
    assert!(!caps.precompile && caps.interruption && caps.fuel);
    assert_eq!(
        e.precompile(b"").unwrap_err().kind(),
        ErrorKind::NotSupported
    );
    let err = WasmiEngine::new(&EngineConfig {
        pooled_instances: Some(4),
        ..EngineConfig::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    assert_eq!(err.engine(), "wasmi");
}

/// The deadline is on by default, so the default engine meters fuel; an
/// engine with neither deadline nor fuel does not, and says so.
#[test]
fn wasmi_meters_only_when_limited() {
    let unlimited = WasmiEngine::new(&EngineConfig {
        call_timeout: None,
        ..EngineConfig::default()
    })
    .unwrap();
    assert!(wasmi().fingerprint().ends_with("fuel=true"));
    assert!(unlimited.fingerprint().ends_with("fuel=false"));
}
