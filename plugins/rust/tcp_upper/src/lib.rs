//! `tcp_upper`: a TCP (stream) filter.
//!
//! Upper-cases ASCII letters flowing downstream -> upstream, prefixes every
//! upstream -> downstream chunk with "> ", logs connection lifecycle events
//! and counts connections. Exercises the StreamContext half of the ABI
//! (proxy_on_new_connection, *_data, *_connection_close, buffer types 2/3).

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(TcpRoot { connections: None })
    });
}}

fn log(level: LogLevel, message: &str) {
    hostcalls::log(level, message).unwrap();
}

fn define_counter() -> u32 {
    hostcalls::define_metric(MetricType::Counter, "tcp_connections").unwrap()
}

struct TcpRoot {
    /// Id of the "tcp_connections" counter.
    connections: Option<u32>,
}

impl Context for TcpRoot {}

impl RootContext for TcpRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        self.connections = Some(define_counter());
        true
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        // define_metric is idempotent per name; this only covers a host that
        // skipped on_vm_start.
        let connections = self.connections.unwrap_or_else(define_counter);
        Some(Box::new(TcpUpper { connections }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::StreamContext)
    }
}

struct TcpUpper {
    connections: u32,
}

impl Context for TcpUpper {}

impl StreamContext for TcpUpper {
    fn on_new_connection(&mut self) -> Action {
        log(LogLevel::Info, "tcp: new connection");
        hostcalls::increment_metric(self.connections, 1).unwrap();
        Action::Continue
    }

    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        if data_size > 0 {
            let data = self.get_downstream_data(0, data_size).unwrap_or_default();
            self.set_downstream_data(0, data_size, &data.to_ascii_uppercase());
        }
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        // An empty end-of-stream notification carries no data to mark.
        if data_size > 0 {
            self.set_upstream_data(0, 0, b"> ");
        }
        Action::Continue
    }

    fn on_downstream_close(&mut self, peer_type: PeerType) {
        log(
            LogLevel::Info,
            &format!("tcp: downstream closed by {}", peer_name(peer_type)),
        );
    }

    fn on_upstream_close(&mut self, peer_type: PeerType) {
        log(
            LogLevel::Info,
            &format!("tcp: upstream closed by {}", peer_name(peer_type)),
        );
    }
}

fn peer_name(peer_type: PeerType) -> &'static str {
    match peer_type {
        PeerType::Local => "Local",
        PeerType::Remote => "Remote",
        _ => "Unknown",
    }
}
