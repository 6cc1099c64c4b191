//! `queue_consumer`: the receiving half of the shared-queue pair.
//!
//! Meant to run with vm_id "queue-vm" next to `queue_producer`. Its root
//! context registers the queue "events" at VM start; whenever the host
//! signals the queue is ready it drains it, logging and counting each item.
//! HTTP traffic passes through untouched.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Consumer { items: 0 })
    });
}}

struct Consumer {
    /// Id of the "consumer_items" counter.
    items: u32,
}

impl Context for Consumer {}

impl RootContext for Consumer {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.items = hostcalls::define_metric(MetricType::Counter, "consumer_items").unwrap();
        self.register_shared_queue("events");
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        // Drain everything: readiness signals may be coalesced by the host.
        while let Ok(Some(item)) = self.dequeue_shared_queue(queue_id) {
            let message = format!("consumer: {}", String::from_utf8_lossy(&item));
            hostcalls::log(LogLevel::Info, &message).unwrap();
            hostcalls::increment_metric(self.items, 1).unwrap();
        }
    }

    // A pass-through HTTP context, so attaching the plugin to a listener is
    // harmless (without one the SDK panics when the host creates a context).
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(PassThrough))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct PassThrough;

impl Context for PassThrough {}
impl HttpContext for PassThrough {}
