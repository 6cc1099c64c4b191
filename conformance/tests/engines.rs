//! Every compiled-in engine passes the whole suite for every plugin language
//! that was built, and all engines observe the same thing.

use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor};
use polyhost_conformance::{EngineRun, Language, Outcome, cases, differential, run_engine};
use std::path::PathBuf;

struct RunAll;

impl EngineVisitor for RunAll {
    type Output = EngineRun;
    fn visit<E: Engine>(self, engine: E) -> EngineRun {
        let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../build/plugins");
        run_engine(&engine, &cases::all(), &Language::ALL, &fixtures)
    }
}

#[test]
fn every_engine_passes_and_agrees() {
    let mut runs = Vec::new();
    for name in AnyEngine::names() {
        let engine = AnyEngine::by_name(name, &EngineConfig::default()).unwrap();
        runs.push(engine.visit(RunAll));
    }
    let mut failures = Vec::new();
    for run in &runs {
        for r in &run.results {
            match &r.outcome {
                Outcome::Fail(why) => failures.push(format!(
                    "{} / {:?} on {}: {why}",
                    r.case, r.language, run.engine
                )),
                // The Rust and WebAssembly text fixtures need no toolchain
                // beyond the setup step's own, so they are always built.
                Outcome::NoFixture(path)
                    if matches!(
                        r.language,
                        Language::RustWasip1 | Language::RustUnknown | Language::Wat
                    ) =>
                {
                    failures.push(format!("missing fixture {path}; run scripts/setup.sh"))
                }
                _ => {}
            }
        }
    }
    for m in differential(&runs) {
        failures.push(format!(
            "{} / {:?}: {} saw {} but {} saw {}",
            m.case, m.language, m.a.0, m.a.1, m.b.0, m.b.1
        ));
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
