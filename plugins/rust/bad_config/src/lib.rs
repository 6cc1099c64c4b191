//! `bad_config`: a plugin that always rejects its configuration.
//!
//! on_vm_start succeeds, on_configure logs an error and returns false, so a
//! host must refuse to serve with it (and, like the reference host's canary,
//! keep any previously working configuration).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BadConfig) });
}}

struct BadConfig;

impl Context for BadConfig {}

impl RootContext for BadConfig {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        hostcalls::log(LogLevel::Error, "bad_config: rejecting configuration").unwrap();
        false
    }

    // Only reachable if a host ignores the false above; pass everything.
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
