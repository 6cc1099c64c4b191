//! HTTP and gRPC callouts leaving the plugin.

use crate::headers::HeaderMap;
use crate::types::Status;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// An HTTP request a plugin sent with `proxy_http_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCallout {
    /// The plugin that sent it.
    pub plugin: Arc<str>,
    /// The token the plugin got back; answer with this token.
    pub token: u32,
    /// The upstream cluster name (not a URL).
    pub upstream: String,
    /// Request headers, including `:method`, `:path` and `:authority`.
    pub headers: HeaderMap,
    /// Request body.
    pub body: Vec<u8>,
    /// Request trailers.
    pub trailers: HeaderMap,
    /// How long the plugin is willing to wait; after that, answer with a timeout.
    pub timeout: Duration,
}

/// A unary gRPC call a plugin sent with `proxy_grpc_call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcCallout {
    /// The plugin that sent it.
    pub plugin: Arc<str>,
    /// The token the plugin got back.
    pub token: u32,
    /// The upstream: a cluster name, or a serialized `GrpcService` in Envoy.
    pub upstream: Vec<u8>,
    /// Fully qualified service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Initial metadata.
    pub initial_metadata: HeaderMap,
    /// The serialized request message.
    pub message: Vec<u8>,
    /// Deadline.
    pub timeout: Duration,
}

/// A gRPC stream a plugin opened with `proxy_grpc_stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStreamOpen {
    /// The plugin that opened it.
    pub plugin: Arc<str>,
    /// The stream's token.
    pub token: u32,
    /// The upstream.
    pub upstream: Vec<u8>,
    /// Fully qualified service name.
    pub service: String,
    /// Method name.
    pub method: String,
    /// Initial metadata.
    pub initial_metadata: HeaderMap,
}

/// Everything a plugin can ask of upstreams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalloutRequest {
    /// `proxy_http_call`.
    Http(HttpCallout),
    /// `proxy_grpc_call`.
    Grpc(GrpcCallout),
    /// `proxy_grpc_stream`.
    GrpcStream(GrpcStreamOpen),
    /// `proxy_grpc_send` on a stream.
    GrpcSend {
        /// The plugin.
        plugin: Arc<str>,
        /// Stream token.
        token: u32,
        /// Message bytes.
        message: Vec<u8>,
        /// Whether the plugin half-closed the stream.
        end_stream: bool,
    },
    /// The context that made HTTP call `token` is gone (its stream ended,
    /// or its root was deleted): as Envoy does, the call is cancelled and
    /// no answer is delivered.
    HttpCancel {
        /// The plugin.
        plugin: Arc<str>,
        /// Call token.
        token: u32,
    },
    /// `proxy_grpc_cancel`: the plugin no longer wants any callback. Also
    /// sent for each gRPC call and stream of a context that is gone, as
    /// Envoy cancels them (and resets the streams) when the context ends.
    GrpcCancel {
        /// The plugin.
        plugin: Arc<str>,
        /// Call or stream token.
        token: u32,
    },
    /// `proxy_grpc_close`: the plugin closed its side of a stream.
    GrpcClose {
        /// The plugin.
        plugin: Arc<str>,
        /// Stream token.
        token: u32,
    },
}

/// Receives callouts. The embedder answers later through the VM
/// (`Vm::deliver_http_response`, `Vm::deliver_grpc_*`).
pub trait CalloutDispatcher: Send + Sync {
    /// Accepts or refuses a callout. Refusing returns a status to the plugin
    /// (Envoy returns `BadArgument` for an unknown cluster).
    ///
    /// # Errors
    /// The status the plugin's host call returns.
    fn dispatch(&self, request: CalloutRequest) -> Result<(), Status>;
}

/// The default dispatcher: accepts every callout and queues it for the
/// embedder to take with [`CalloutQueue::take`].
#[derive(Debug, Default)]
pub struct CalloutQueue {
    queue: Mutex<VecDeque<CalloutRequest>>,
    unknown_upstreams: Mutex<Vec<String>>,
}

impl CalloutQueue {
    /// Takes every queued callout, oldest first.
    pub fn take(&self) -> Vec<CalloutRequest> {
        self.queue.lock().expect("poisoned").drain(..).collect()
    }

    /// Makes HTTP calls to `upstream` fail with `BadArgument`, as Envoy does
    /// for a cluster it does not know.
    pub fn refuse_upstream(&self, upstream: impl Into<String>) {
        self.unknown_upstreams
            .lock()
            .expect("poisoned")
            .push(upstream.into());
    }
}

impl CalloutDispatcher for CalloutQueue {
    fn dispatch(&self, request: CalloutRequest) -> Result<(), Status> {
        if let CalloutRequest::Http(h) = &request
            && self
                .unknown_upstreams
                .lock()
                .expect("poisoned")
                .contains(&h.upstream)
        {
            return Err(Status::BadArgument);
        }
        self.queue.lock().expect("poisoned").push_back(request);
        Ok(())
    }
}
