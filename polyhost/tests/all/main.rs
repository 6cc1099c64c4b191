//! Integration tests of the embedder API against real SDK-built plugins and
//! hand-written modules, run on every engine compiled in (one binary, a
//! module per area).

mod harness;

mod bad_input;
mod budgets;
mod cache;
mod callouts;
mod engine_contract;
mod fuzz;
mod host_calls;
mod http;
mod legacy;
mod pool;
mod reliability;
mod roots;
mod shared;
mod tcp;
mod wasi;
