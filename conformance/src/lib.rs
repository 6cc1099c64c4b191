//! The proxy-wasm conformance suite.
//!
//! * [`cases`] lists the cases as data: which plugin to load with which
//!   settings, the traffic to send, and the observable results to expect
//!   (headers after the call, local responses, bodies, log lines, metrics,
//!   callouts).
//! * [`run_engine`] runs every case for every plugin language on one engine;
//!   each engine's test target calls it, so a new case runs on every engine.
//! * [`differential`] compares engines: every engine must observe exactly
//!   the same transcript for the same case and language.
//! * [`report`] renders the matrix of cases x languages x engines as text,
//!   markdown or JSON.
//!
//! Plugins are the fixtures built by `scripts/setup.sh` under
//! `build/plugins/<language>/`; each language's README says which cases its
//! SDK cannot express, and the report shows those cells as "not expressible"
//! rather than hiding them.

pub mod case;
pub mod cases;
pub mod report;
mod runner;

pub use case::{Case, Expect, Language, PluginSpec, Step};
pub use runner::{CaseResult, EngineRun, Mismatch, Outcome, differential, run_engine};
