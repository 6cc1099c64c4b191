//! `queue_producer`: the sending half of the shared-queue pair.
//!
//! For every request it resolves the queue "events" owned by vm_id
//! "queue-vm" (registered by `queue_consumer`), enqueues the request's
//! `:path`, and reports the outcome in the request header `x-enqueued`.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(Producer) });
}}

struct Producer;

impl Context for Producer {}

impl HttpContext for Producer {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        // Resolved per request, so the producer copes with the consumer
        // starting after it.
        let enqueued = match self.resolve_shared_queue("queue-vm", "events") {
            Some(queue_id) => self
                .enqueue_shared_queue(queue_id, Some(path.as_bytes()))
                .is_ok(),
            None => false,
        };
        self.add_http_request_header("x-enqueued", if enqueued { "yes" } else { "no" });
        Action::Continue
    }
}
