//! Rendering results as text, markdown or JSON.

use crate::case::Language;
use crate::runner::{EngineRun, Mismatch, Outcome, tally};
use serde::Serialize;
use std::fmt::Write as _;

/// Everything one conformance run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Per-engine results.
    pub runs: Vec<EngineRun>,
    /// Engine fingerprints (name, runtime version and settings).
    pub engines: Vec<(String, String)>,
    /// Differences between engines (each also counts as a failure).
    pub mismatches: Vec<Mismatch>,
    /// Extra lines for the header (date, commit).
    pub context: Vec<String>,
}

impl Report {
    /// Cells that passed and cells that failed (including engine mismatches).
    pub fn counts(&self) -> (usize, usize) {
        let t = tally(self.runs.iter().flat_map(|r| &r.results));
        let passed = t.get("passed").copied().unwrap_or(0);
        let failed = t.get("failed").copied().unwrap_or(0) + self.mismatches.len();
        (passed, failed)
    }

    /// The closing line: `N passed, N failed`.
    pub fn summary(&self) -> String {
        let (passed, failed) = self.counts();
        let t = tally(self.runs.iter().flat_map(|r| &r.results));
        let ne = t.get("not expressible").copied().unwrap_or(0);
        let nf = t.get("no fixture").copied().unwrap_or(0);
        let mut s = format!("{passed} passed, {failed} failed");
        if ne + nf > 0 {
            let _ = write!(s, ", {} skipped", ne + nf);
        }
        s
    }

    fn rows(&self) -> Vec<(&'static str, Language)> {
        let mut rows = Vec::new();
        if let Some(first) = self.runs.first() {
            for r in &first.results {
                rows.push((r.case, r.language));
            }
        }
        rows
    }

    fn cell(&self, engine: usize, row: usize) -> &'static str {
        match &self.runs[engine].results[row].outcome {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "FAIL",
            Outcome::NotExpressible(_) => "not expressible",
            Outcome::NoFixture(_) => "no fixture",
        }
    }

    fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for run in &self.runs {
            for r in &run.results {
                if let Outcome::Fail(why) = &r.outcome {
                    out.push(format!(
                        "{} / {} on {}: {why}",
                        r.case,
                        r.language.label(),
                        run.engine
                    ));
                }
            }
        }
        for m in &self.mismatches {
            out.push(format!(
                "{} / {}: {} saw `{}` but {} saw `{}`",
                m.case,
                m.language.label(),
                m.a.0,
                m.a.1,
                m.b.0,
                m.b.1
            ));
        }
        out
    }

    /// A plain-text matrix.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let engines: Vec<&str> = self.runs.iter().map(|r| r.engine).collect();
        let _ = writeln!(
            s,
            "{:<34} {:<17} {}",
            "case",
            "language",
            engines.join("  ")
        );
        for (i, (case, lang)) in self.rows().iter().enumerate() {
            let cells: Vec<String> = (0..self.runs.len())
                .map(|e| format!("{:<w$}", self.cell(e, i), w = engines[e].len()))
                .collect();
            let _ = writeln!(s, "{case:<34} {:<17} {}", lang.label(), cells.join("  "));
        }
        for f in self.failures() {
            let _ = writeln!(s, "failure: {f}");
        }
        let _ = writeln!(s, "{}", self.summary());
        s
    }

    /// The case names in report order.
    fn case_names(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = Vec::new();
        for (case, _) in self.rows() {
            if !names.contains(&case) {
                names.push(case);
            }
        }
        names
    }

    /// One language's cell of the summary: the outcome on every engine
    /// folded into one word, failing engines named.
    fn summary_cell(&self, case: &str, language: Language) -> String {
        let outcomes: Vec<(&str, &Outcome)> = self
            .runs
            .iter()
            .filter_map(|run| {
                run.results
                    .iter()
                    .find(|r| r.case == case && r.language == language)
                    .map(|r| (run.engine, &r.outcome))
            })
            .collect();
        if outcomes.is_empty() {
            return "·".into();
        }
        let failing: Vec<&str> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, Outcome::Fail(_)))
            .map(|(e, _)| *e)
            .collect();
        if !failing.is_empty() {
            return format!("FAIL ({})", failing.join(", "));
        }
        match outcomes[0].1 {
            Outcome::NotExpressible(_) => "not expressible".into(),
            Outcome::NoFixture(_) => "no fixture".into(),
            _ if self
                .mismatches
                .iter()
                .any(|m| m.case == case && m.language == language) =>
            {
                "engines differ".into()
            }
            _ => "pass".into(),
        }
    }

    /// A markdown document (what `conformance/REPORT.md` holds).
    pub fn markdown(&self) -> String {
        let mut s = String::from("# Polyhost conformance report\n\n");
        for line in &self.context {
            let _ = writeln!(s, "- {line}");
        }
        for (name, fp) in &self.engines {
            let _ = writeln!(s, "- engine `{name}`: `{fp}`");
        }
        s.push_str("\nRegenerate with `scripts/conformance-report.sh`. Cells: pass, FAIL, ");
        s.push_str(
            "not expressible (the language's SDK cannot express the case; see its README), ",
        );
        s.push_str("no fixture (the plugin was not built).\n\n");
        let engines: Vec<&str> = self.runs.iter().map(|r| r.engine).collect();

        s.push_str("## Cases x languages\n\n");
        let _ = writeln!(
            s,
            "One cell per case and plugin language, over all {} engines: `pass` when every \
             engine passed and all observed the same transcript, `FAIL (engines)` naming \
             the engines that failed, `engines differ` when they passed but saw different \
             things. `·`: no plugin of this language is written for the case: Higress's \
             framework is used for the `hello` plugin only, and the WebAssembly-text \
             modules (`plugins/wat/`) cover what no SDK produces.\n",
            engines.len()
        );
        let languages = Language::ALL;
        let labels: Vec<&str> = languages.iter().map(|l| l.label()).collect();
        let _ = writeln!(s, "| case | {} |", labels.join(" | "));
        let _ = writeln!(s, "|---|{}", "---|".repeat(labels.len()));
        for case in self.case_names() {
            let cells: Vec<String> = languages
                .iter()
                .map(|&l| self.summary_cell(case, l))
                .collect();
            let _ = writeln!(s, "| `{case}` | {} |", cells.join(" | "));
        }

        // Grouped by language and reason: one SDK limit often covers many cases.
        let mut not_expressible: Vec<(Language, &str, Vec<&str>)> = Vec::new();
        if let Some(first) = self.runs.first() {
            for r in &first.results {
                if let Outcome::NotExpressible(why) = &r.outcome {
                    match not_expressible
                        .iter_mut()
                        .find(|(l, w, _)| *l == r.language && w == why)
                    {
                        Some((_, _, cases)) => cases.push(r.case),
                        None => not_expressible.push((r.language, why, vec![r.case])),
                    }
                }
            }
        }
        if !not_expressible.is_empty() {
            s.push_str("\n## Not expressible\n\n| language | why | cases |\n|---|---|---|\n");
            for (language, why, cases) in not_expressible {
                let cases: Vec<String> = cases.iter().map(|c| format!("`{c}`")).collect();
                let _ = writeln!(s, "| {} | {why} | {} |", language.label(), cases.join(", "));
            }
        }

        s.push_str("\n## Every cell\n\n");
        let _ = writeln!(s, "| case | language | {} |", engines.join(" | "));
        let _ = writeln!(s, "|---|---|{}", "---|".repeat(engines.len()));
        for (i, (case, lang)) in self.rows().iter().enumerate() {
            let cells: Vec<&str> = (0..self.runs.len()).map(|e| self.cell(e, i)).collect();
            let _ = writeln!(s, "| `{case}` | {} | {} |", lang.label(), cells.join(" | "));
        }
        let failures = self.failures();
        if !failures.is_empty() {
            s.push_str("\n## Failures\n\n");
            for f in failures {
                let _ = writeln!(s, "- {}", f.replace('\n', " "));
            }
        }
        let _ = writeln!(s, "\n{}", self.summary());
        s
    }

    /// JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }
}
