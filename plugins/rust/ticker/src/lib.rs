//! `ticker`: exercises the timer.
//!
//! Sets a 10 ms tick period at VM start; every tick increments the counter
//! metric "ticker_ticks" and stores the number of ticks seen so far by this
//! root context, as a decimal string, in shared data under "ticker/last".
//! HTTP traffic passes through untouched.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel, MetricType};
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Ticker { counter: 0, ticks: 0 })
    });
}}

struct Ticker {
    /// Id of the "ticker_ticks" counter.
    counter: u32,
    /// Ticks seen by this root context.
    ticks: u64,
}

impl Context for Ticker {}

impl RootContext for Ticker {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.counter = hostcalls::define_metric(MetricType::Counter, "ticker_ticks").unwrap();
        self.set_tick_period(Duration::from_millis(10));
        true
    }

    fn on_tick(&mut self) {
        self.ticks += 1;
        hostcalls::increment_metric(self.counter, 1).unwrap();
        // cas None: unconditional write, the ticker is the only writer.
        self.set_shared_data("ticker/last", Some(self.ticks.to_string().as_bytes()), None)
            .unwrap();
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
