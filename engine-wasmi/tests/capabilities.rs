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
    assert!(!caps.precompile && !caps.interruption);
    assert_eq!(
        e.precompile(b"").unwrap_err().kind(),
        ErrorKind::NotSupported
    );
    let err = WasmiEngine::new(&EngineConfig {
        call_timeout: Some(std::time::Duration::from_millis(10)),
        ..EngineConfig::default()
    })
    .err()
    .unwrap();
    assert_eq!(err.kind(), ErrorKind::NotSupported);
    assert_eq!(err.engine(), "wasmi");
}
