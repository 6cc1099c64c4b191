//! `bench_headers`: the 60-header-operation workload used in gateway latency
//! comparisons.
//!
//! In on_request_headers: add `fake_key_{i}: fake_value_{i}` for i in 0..20,
//! read each of them back, then remove each of them. The request leaves with
//! its headers as they came in.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

const N: usize = 20;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(BenchHeaders) });
}}

struct BenchHeaders;

impl Context for BenchHeaders {}

impl HttpContext for BenchHeaders {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // Names are formatted per request on purpose: the workload is meant
        // to include the guest-side string work of a typical plugin.
        for i in 0..N {
            self.add_http_request_header(&format!("fake_key_{}", i), &format!("fake_value_{}", i));
        }
        for i in 0..N {
            let _value = self.get_http_request_header(&format!("fake_key_{}", i));
        }
        for i in 0..N {
            self.remove_http_request_header(&format!("fake_key_{}", i));
        }
        Action::Continue
    }
}
