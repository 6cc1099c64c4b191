//! The report harness end to end in quick mode, on every engine compiled in:
//! every cell that has a fixture passes its correctness check and gets
//! measured, and the report and chart render. No timing is judged.

use polyhost::AnyEngine;
use polyhost_bench::measure::Settings;
use polyhost_bench::run::{self, ISOLATION_WORKLOADS, Implementation, Meta, Options, Outcome};
use polyhost_bench::{Language, Workload, chart, default_fixtures, raw_calls, report};

#[test]
fn quick_report_runs_every_cell() {
    let options = Options {
        fixtures: default_fixtures(),
        settings: Settings::quick(),
        engines: AnyEngine::names().into_iter().map(String::from).collect(),
        languages: Language::ALL.to_vec(),
        workloads: Workload::ALL.to_vec(),
        verbose: false,
    };
    let results = run::run(
        &options,
        Meta {
            quick: true,
            ..Meta::default()
        },
    );
    assert_eq!(results.engines.len(), options.engines.len());

    let failed: Vec<String> = results
        .requests
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(why) => Some(format!("{}: {why}", run::describe(c))),
            _ => None,
        })
        .collect();
    assert!(failed.is_empty(), "cells failed:\n{}", failed.join("\n"));

    // The baselines and the Rust plugins (always built by the setup step)
    // are measured for every workload on every engine.
    for workload in Workload::ALL {
        assert!(results.request(&Implementation::Native, workload).is_some());
        assert!(results.request(&Implementation::Lua, workload).is_some());
        for engine in &options.engines {
            let rust = Implementation::Wasm {
                language: Language::Rust,
                engine: engine.clone(),
            };
            assert!(
                results.request(&rust, workload).is_some(),
                "Rust {} on {engine} was not measured",
                workload.id()
            );
        }
    }
    for cell in &results.modules {
        for (what, outcome) in [
            ("new VM", &cell.new_vm),
            ("pooled new VM", &cell.new_vm_pooled),
        ] {
            assert!(
                !matches!(outcome, Outcome::Failed(_)),
                "{what} of {:?} on {}: {outcome:?}",
                cell.language,
                cell.engine
            );
        }
    }

    // The raw baseline of the host call ran wherever this build has one
    // (its runtime's bench feature is on).
    for c in &results.calls {
        let compiled = raw_calls::new(&c.engine).is_some();
        for (what, o) in [
            ("raw host-call loop", &c.raw_host_call_loop),
            ("raw empty loop", &c.raw_empty_loop),
        ] {
            assert_eq!(
                o.measured().is_some(),
                compiled,
                "{what} on {}: {o:?}",
                c.engine
            );
        }
        assert_eq!(c.host_call_ratio().is_some(), compiled, "{}", c.engine);
    }
    // Per-request isolation: the Rust plugins with both return policies on
    // every engine, and pooled where the engine has a pooling allocator.
    for engine in &options.engines {
        for workload in ISOLATION_WORKLOADS {
            for cell in results
                .isolation
                .iter()
                .filter(|c| c.engine == *engine && c.workload == workload)
            {
                assert!(
                    cell.added_ns().is_some(),
                    "isolation of {} on {engine} (pooled: {}): {cell:?}",
                    workload.id(),
                    cell.pooled
                );
            }
            let pooled = engine.starts_with("wasmtime");
            for with_pool in [false, true] {
                assert_eq!(
                    results.isolation.iter().any(|c| c.engine == *engine
                        && c.workload == workload
                        && c.pooled == with_pool),
                    !with_pool || pooled,
                    "isolation rows of {} on {engine} (pooled: {with_pool})",
                    workload.id()
                );
            }
        }
    }

    let markdown = report::markdown(&results);
    assert!(markdown.contains("| raw typed host function | ratio (Polyhost / raw) |"));
    assert!(markdown.contains("## Per-request isolation"));
    assert!(markdown.contains("in quick mode"), "{markdown}");
    assert!(markdown.contains("None: every cell passed its check."));
    for engine in &options.engines {
        assert!(markdown.contains(&format!("**{engine}**")), "{engine}");
    }
    let svg = chart::svg(&results).expect("the chart renders");
    assert!(svg.contains("<svg"), "{svg}");
}
