//! `noop`: a root and HTTP context that do nothing and continue everywhere.
//!
//! The latency floor for benchmarks: whatever a request costs with this
//! plugin is the host's per-request overhead of running a Rust SDK plugin.

use proxy_wasm::traits::{Context, HttpContext};

proxy_wasm::main! {{
    // The SDK's default root context accepts vm_start and configure; every
    // HttpContext callback defaults to Action::Continue.
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Noop) });
}}

struct Noop;

impl Context for Noop {}
impl HttpContext for Noop {}
