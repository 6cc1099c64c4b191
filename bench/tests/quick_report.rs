//! The report harness end to end in quick mode, on every engine compiled in:
//! every cell that has a fixture passes its correctness check and gets
//! measured, and the report and chart render. No timing is judged.

use polyhost::AnyEngine;
use polyhost_bench::measure::Settings;
use polyhost_bench::run::{self, Implementation, Meta, Options, Outcome};
use polyhost_bench::{Language, Workload, chart, default_fixtures, report};

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

    let markdown = report::markdown(&results);
    assert!(markdown.contains("in quick mode"), "{markdown}");
    assert!(markdown.contains("None: every cell passed its check."));
    for engine in &options.engines {
        assert!(markdown.contains(&format!("**{engine}**")), "{engine}");
    }
    let svg = chart::svg(&results).expect("the chart renders");
    assert!(svg.contains("<svg"), "{svg}");
}
