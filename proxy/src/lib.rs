//! Polyhost's data plane: proxy-wasm plugins on real traffic, on Pingora.
//!
//! The layout follows Envoy's vocabulary, so an Envoy user finds their way
//! by the words they know:
//!
//! * [`config`] reads the subset of Envoy's v3 bootstrap that proxy-wasm
//!   users write (listeners, HTTP connection manager, routes, clusters, Wasm
//!   filters, admin) into a typed model, naming the path of any field it
//!   cannot honour.
//! * [`wasm`] holds loaded plugins and the per-worker VMs that run them.
//! * [`http`] is the HTTP connection manager: a Pingora `ProxyHttp` that
//!   runs the Wasm filter chain and routes requests to clusters.
//! * [`cluster`] picks upstream endpoints and sends plugin callouts.
//! * [`admin`] and [`stats`] are Envoy's admin endpoint and its counters.
//! * [`server`] puts a configuration together and runs it; [`log`] prints
//!   in Envoy's shape.
//!
//! Any Pingora server can embed the data plane: build a [`Proxy`] from a
//! bootstrap and add its services to your own `Server`.
//!
//! ```no_run
//! use polyhost_proxy::{Proxy, RunOptions, config};
//!
//! let yaml = r#"
//! static_resources:
//!   listeners:
//!   - name: main
//!     address: { socket_address: { address: 127.0.0.1, port_value: 10000 } }
//!     filter_chains:
//!     - filters:
//!       - name: envoy.filters.network.http_connection_manager
//!         typed_config:
//!           "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
//!           stat_prefix: ingress_http
//!           route_config:
//!             virtual_hosts:
//!             - name: all
//!               domains: ["*"]
//!               routes:
//!               - match: { prefix: "/" }
//!                 direct_response: { status: 200, body: { inline_string: "hello\n" } }
//!           http_filters:
//!           - name: envoy.filters.http.wasm
//!             typed_config:
//!               "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
//!               config:
//!                 name: hello
//!                 vm_config:
//!                   runtime: envoy.wasm.runtime.v8
//!                   code: { local: { filename: build/plugins/rust-wasip1/hello.wasm } }
//!           - name: envoy.filters.http.router
//!             typed_config:
//!               "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
//! "#;
//! let bootstrap = config::parse(yaml, config::Format::Yaml)?;
//! let options = RunOptions::default();
//! let proxy = Proxy::new(&bootstrap, &options)?;
//!
//! // Your own Pingora server, with work stealing off so that every worker
//! // thread owns its plugin VMs.
//! let conf = pingora::server::configuration::ServerConf {
//!     work_stealing: false,
//!     ..Default::default()
//! };
//! let mut server = pingora::server::Server::new_with_opt_and_conf(None, conf);
//! server.bootstrap();
//! // Wasm services (envoy.bootstrap.wasm) run as long as this is kept.
//! let _services = proxy.add_to_server(&mut server);
//! server.run_forever();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod access_log;
pub mod admin;
pub mod cluster;
pub mod config;
mod connection;
pub mod error;
mod files;
mod grpc;
pub mod http;
pub mod log;
pub mod reload;
pub mod server;
pub mod stats;
pub mod tcp;
pub mod wasm;

pub use error::ProxyError;

/// Compiles the README's examples (the library's and this crate's) as
/// doctests. They live here rather than in `polyhost` because this crate
/// depends on both.
#[cfg(all(doctest, feature = "wasmtime"))]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
pub use server::{Proxy, RunOptions};
