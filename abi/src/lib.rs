//! The host side of proxy-wasm, written once over Polyhost's [`Engine`] trait.
//!
//! * [`Plugin`] loads a module (any ABI from 0.1.0 to 0.2.1), checks its ABI
//!   marker and allocator, and pre-links every host function: the
//!   proxy-wasm calls under `env` and WASI preview1 under
//!   `wasi_snapshot_preview1` and `wasi_unstable`.
//! * [`Vm`] is one running instance with its root context; the embedder
//!   drives HTTP streams and TCP connections through it and reads back what
//!   the plugin did.
//! * [`services`] are the host's collaborators (callouts, properties,
//!   metrics, shared data, queues, foreign functions), each a trait with an
//!   in-memory default.
//!
//! Host functions live in `host/` (one file per group) and `wasi.rs`; each is
//! a generic function over the engine's caller, registered through the
//! engine's typed path, so the same code runs on every engine.
//!
//! [`Engine`]: polyhost_engine_core::Engine

mod error;
mod headers;
mod host;
pub mod limits;
mod plugin;
pub mod pool;
pub mod services;
mod state;
mod types;
mod vm;
mod wasi;

pub use error::{PluginError, PluginErrorKind};
pub use headers::{HeaderMap, MAX_MAP_PAIRS, MAX_SERIALIZED_MAP_BYTES};
pub use limits::{HostLimits, Limit};
pub use plugin::{Plugin, PluginConfig, check_binary};
pub use pool::{PoolError, PooledVm, ReturnPolicy, VmPool};
pub use services::HostServices;
pub use state::{
    HostState, LocalResponse, LogLine, PluginInfo, StreamEvent, StreamProperties, StreamState,
};
pub use types::{
    AbiVersion, Action, BufferType, LogLevel, MapType, MetricType, PeerType, Status, StreamType,
};
pub use vm::{Callback, ContextId, Decision, GrpcResult, HttpCallResult, RootConfig, Shutdown, Vm};
pub use wasi::MAX_RANDOM_BYTES;
