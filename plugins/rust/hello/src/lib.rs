//! `hello`: the plugin from Polyhost's README.
//!
//! A small HTTP filter that touches every common part of the ABI once: VM and
//! plugin configuration, request/response header rewriting, a local reply,
//! body buffering and rewriting, and access logging. The host's integration
//! tests assert its exact behaviour; see `plugins/rust/README.md`.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::rc::Rc;

proxy_wasm::main! {{
    // Installs the SDK's logger and a panic hook that reports panics at
    // critical level before the module traps.
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(HelloRoot { config: Rc::new(Config::default()) })
    });
}}

fn log(level: LogLevel, message: &str) {
    hostcalls::log(level, message).unwrap();
}

/// Plugin configuration; every field is optional.
struct Config {
    /// Name of the request header added to every allowed request.
    header: String,
    /// Value of that header.
    value: String,
    /// Requests whose `:path` starts with this prefix get a local 403.
    deny_path: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "x-hello".into(),
            value: "polyhost".into(),
            deny_path: "/admin".into(),
        }
    }
}

impl Config {
    /// Parses `{"header": .., "value": .., "deny_path": ..}`. An absent or
    /// empty configuration means "all defaults"; anything that is not a JSON
    /// object with string-valued known fields is rejected (unknown fields are
    /// ignored so configurations can grow).
    fn parse(bytes: &[u8]) -> Option<Config> {
        let mut config = Config::default();
        if bytes.is_empty() {
            return Some(config);
        }
        let json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        let object = json.as_object()?;
        for (key, slot) in [
            ("header", &mut config.header),
            ("value", &mut config.value),
            ("deny_path", &mut config.deny_path),
        ] {
            if let Some(field) = object.get(key) {
                *slot = field.as_str()?.to_string();
            }
        }
        Some(config)
    }
}

struct HelloRoot {
    /// Shared with the HTTP contexts; replaced wholesale on reconfiguration so
    /// in-flight requests keep the configuration they started with.
    config: Rc<Config>,
}

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let vm_config = self.get_vm_configuration().unwrap_or_default();
        log(
            LogLevel::Info,
            &format!(
                "hello: vm_start config={}",
                String::from_utf8_lossy(&vm_config)
            ),
        );
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match Config::parse(&raw) {
            Some(config) => {
                self.config = Rc::new(config);
                true
            }
            None => {
                log(LogLevel::Error, "hello: invalid configuration");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hello {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Hello {
    config: Rc<Config>,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let method = self
            .get_http_request_header(":method")
            .unwrap_or_else(|| "-".into());
        let path = self
            .get_http_request_header(":path")
            .unwrap_or_else(|| "-".into());
        log(LogLevel::Info, &format!("hello: {} {}", method, path));

        if path.starts_with(self.config.deny_path.as_str()) {
            self.send_http_response(
                403,
                vec![("x-denied-by", "hello")],
                Some(b"access denied\n"),
            );
            return Action::Pause;
        }

        self.add_http_request_header(&self.config.header, &self.config.value);
        self.remove_http_request_header("x-remove-me");
        // Replace only an existing user-agent: a replace on a missing key
        // would add it, which is not what this filter is about.
        if self.get_http_request_header("user-agent").is_some() {
            self.set_http_request_header("user-agent", Some("polyhost-hello"));
        }
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // Pausing before the end makes the host buffer the chunks, so the
        // replacement below also catches a "hello" split across chunks.
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size).unwrap_or_default();
        let rewritten = replace_all(&body, b"hello", b"HELLO");
        self.set_http_request_body(0, body_size, &rewritten);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-powered-by", "polyhost");
        Action::Continue
    }

    fn on_log(&mut self) {
        let status = self
            .get_http_response_header(":status")
            .unwrap_or_else(|| "-".into());
        log(LogLevel::Debug, &format!("hello: done {}", status));
    }
}

/// Byte-wise replace, so bodies that are not UTF-8 pass through unchanged
/// apart from the matches.
fn replace_all(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while !rest.is_empty() {
        if rest.starts_with(from) {
            out.extend_from_slice(to);
            rest = &rest[from.len()..];
        } else {
            out.push(rest[0]);
            rest = &rest[1..];
        }
    }
    out
}
