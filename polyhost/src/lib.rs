//! Polyhost: a proxy-wasm host in Rust with a choice of WebAssembly runtime.
//!
//! This facade re-exports the embedder API of [`polyhost_abi`] and the
//! engine contract of [`polyhost_engine_core`], and selects engines with
//! Cargo features (`wasmtime` by default; `wasmtime-winch`,
//! `wasmtime-pulley`, `wasmi`, `wasmer`). Code that knows its engine at
//! compile time uses the engine type directly; code that takes the engine's
//! name at run time (a CLI, a config file) calls [`AnyEngine::by_name`] once
//! and then [`AnyEngine::visit`], so everything below the choice is
//! monomorphised for one engine.
//!
//! ```no_run
//! use polyhost::{Decision, Engine, HeaderMap, HostServices, Plugin, PluginConfig};
//!
//! /// Generic over the engine: compiled once per engine the caller picks.
//! fn serve<E: Engine>(engine: &E) -> Result<(), Box<dyn std::error::Error>> {
//!     let wasm = std::fs::read("build/plugins/rust-wasip1/hello.wasm")?;
//!     let plugin = Plugin::load(engine, &wasm, PluginConfig::named("hello"), HostServices::default())?;
//!     let mut vm = plugin.new_vm()?;
//!     let stream = vm.create_http_stream()?;
//!     let headers: HeaderMap = [(":method", "GET"), (":path", "/")].into_iter().collect();
//!     assert_eq!(vm.on_request_headers(stream, headers, true)?, Decision::Continue);
//!     assert_eq!(vm.stream(stream).unwrap().request_headers.get_str("x-hello"), Some("polyhost"));
//!     vm.finish_stream(stream)?;
//!     Ok(())
//! }
//! ```

mod any;

pub use any::{AnyEngine, EngineVisitor, UnknownEngine};
pub use polyhost_abi::*;
pub use polyhost_cache as cache;
pub use polyhost_engine_core as engine_core;
pub use polyhost_engine_core::{Capabilities, Engine, EngineConfig};

/// The engine backends compiled into this build.
pub mod engines {
    #[cfg(feature = "wasmer")]
    pub use polyhost_engine_wasmer::WasmerEngine;
    #[cfg(feature = "wasmi")]
    pub use polyhost_engine_wasmi::WasmiEngine;
    #[cfg(any(
        feature = "wasmtime",
        feature = "wasmtime-winch",
        feature = "wasmtime-pulley"
    ))]
    pub use polyhost_engine_wasmtime::{Variant as WasmtimeVariant, WasmtimeEngine};
}
