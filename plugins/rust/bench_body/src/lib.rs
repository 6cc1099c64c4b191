//! `bench_body`: the body workload of the latency comparison.
//!
//! Buffers the request body until end of stream, then reads it whole,
//! replaces every `needle` with `NEEDLE` and writes it back. Headers pass
//! through untouched.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(BenchBody) });
}}

struct BenchBody;

impl Context for BenchBody {}

const NEEDLE: &[u8] = b"needle";

impl HttpContext for BenchBody {
    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            // Let the host buffer until the whole body is there.
            return Action::Pause;
        }
        let Some(mut body) = self.get_http_request_body(0, body_size) else {
            return Action::Continue;
        };
        let mut i = 0;
        while i + NEEDLE.len() <= body.len() {
            if &body[i..i + NEEDLE.len()] == NEEDLE {
                body[i..i + NEEDLE.len()].copy_from_slice(b"NEEDLE");
                i += NEEDLE.len();
            } else {
                i += 1;
            }
        }
        self.set_http_request_body(0, body_size, &body);
        Action::Continue
    }
}
