//! `bench_callout`: the callout workload of the latency comparison.
//!
//! On request headers, calls cluster `bench-cluster` (`GET /`, authority
//! `bench`, 1 s timeout) and pauses; on the answer, adds
//! `x-callout-status: <status>` (or `none`) to the request and resumes it.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(BenchCallout) });
}}

struct BenchCallout;

impl Context for BenchCallout {
    fn on_http_call_response(&mut self, _token: u32, _headers: usize, _body: usize, _trailers: usize) {
        let status = self
            .get_http_call_response_header(":status")
            .unwrap_or_else(|| "none".to_string());
        self.add_http_request_header("x-callout-status", &status);
        self.resume_http_request();
    }
}

impl HttpContext for BenchCallout {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let headers = vec![(":method", "GET"), (":path", "/"), (":authority", "bench")];
        match self.dispatch_http_call("bench-cluster", headers, None, vec![], Duration::from_secs(1)) {
            Ok(_) => Action::Pause,
            // Nothing to wait for: let the request through unchanged.
            Err(_) => Action::Continue,
        }
    }
}
