//! Latency benchmarks of Polyhost: what a proxy-wasm plugin adds to a
//! request, per plugin language and engine, next to the same work done in
//! native Rust and in LuaJIT.
//!
//! The pieces are shared by the criterion benchmarks (`benches/latency.rs`)
//! and the report generator (`polyhost-bench-report`, run by
//! `scripts/bench-report.sh`):
//!
//! * [`workload`]: the languages, the four workloads, the request every
//!   implementation serves and the check it must pass before it is timed;
//! * [`wasm`], [`native`], [`lua`]: the three kinds of implementation;
//! * [`micro`]: host-call and callback crossing costs, and [`raw_calls`]:
//!   the same host call on each runtime without Polyhost, as the baseline;
//! * [`measure`], [`run`]: the report's timing loop and the full run over
//!   every engine compiled in (chosen at run time through
//!   [`polyhost::AnyEngine`], so every engine's code path is monomorphised);
//! * [`report`], [`chart`]: markdown and SVG output.

pub mod chart;
pub mod fixture_headers;
pub mod lua;
pub mod measure;
pub mod micro;
pub mod native;
pub mod raw_calls;
pub mod report;
pub mod run;
pub mod wasm;
pub mod workload;

pub use workload::{Fixture, Language, Served, Workload};

/// The `build/plugins` folder of this checkout, where `scripts/setup.sh`
/// puts the fixtures.
pub fn default_fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/plugins")
}
