//! `proxy_http_call` as real outbound requests to configured clusters.
//!
//! The host function runs inside a plugin call on a worker thread; it only
//! checks the cluster and records the callout in a thread-local list. Once
//! the plugin call returns, [`start_pending`] spawns one task per callout on
//! the worker's runtime (so it stays on this thread); the task sends the
//! request through the cluster's connection pool, waits at most the
//! callout's timeout, and delivers the answer to the same worker's VM.

use super::WasmFilter;
use crate::cluster::ClusterManager;
use polyhost::services::{CalloutDispatcher, CalloutRequest, HttpCallout};
use polyhost::{HttpCallResult, Status};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// Callouts made by the plugin call that is running on this thread.
    static PENDING: RefCell<Vec<HttpCallout>> = const { RefCell::new(Vec::new()) };
}

/// The callout service of one plugin in the data plane.
pub(super) struct WorkerCallouts {
    clusters: Arc<ClusterManager>,
}

impl WorkerCallouts {
    pub(super) fn new(clusters: Arc<ClusterManager>) -> Self {
        WorkerCallouts { clusters }
    }
}

impl CalloutDispatcher for WorkerCallouts {
    fn dispatch(&self, request: CalloutRequest) -> Result<(), Status> {
        match request {
            CalloutRequest::Http(call) => {
                // Envoy refuses a call to a cluster it does not know with
                // BadArgument, before anything is sent.
                if self.clusters.get(&call.upstream).is_none() {
                    tracing::warn!(target: "polyhost::wasm", plugin = %call.plugin, cluster = %call.upstream, "http call to an unknown cluster");
                    return Err(Status::BadArgument);
                }
                PENDING.with(|p| p.borrow_mut().push(call));
                Ok(())
            }
            // gRPC needs an h2 client that speaks the gRPC framing; not in
            // the data plane yet, and the plugin is told so.
            CalloutRequest::Grpc(_) | CalloutRequest::GrpcStream(_) => Err(Status::Unimplemented),
            CalloutRequest::GrpcSend { .. }
            | CalloutRequest::GrpcCancel { .. }
            | CalloutRequest::GrpcClose { .. } => Err(Status::NotFound),
        }
    }
}

/// Starts the callouts the last plugin call of `filter` made.
pub(super) fn start_pending(filter: &WasmFilter) {
    let calls = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if calls.is_empty() {
        return;
    }
    if tokio::runtime::Handle::try_current().is_err() {
        // Only the start-up check VM runs outside a worker; Envoy's main
        // thread VM would answer these, but that VM is dropped at once.
        tracing::debug!(target: "polyhost::wasm", plugin = %filter.name(), "callouts made outside a worker are dropped");
        return;
    }
    for call in calls {
        let filter = filter.clone();
        tokio::spawn(async move {
            let token = call.token;
            let cluster = call.upstream.clone();
            let result = filter.clusters().http_call(call).await;
            if let HttpCallResult::Failure | HttpCallResult::Timeout = &result {
                tracing::debug!(target: "polyhost::wasm", plugin = %filter.name(), %cluster, ?result, "http call did not complete");
            }
            if let Ok(Err(e)) = filter.with_vm(|vm| vm.deliver_http_response(token, result)) {
                tracing::error!(target: "polyhost::wasm", plugin = %filter.name(), error = %e, "proxy_on_http_call_response failed");
            }
            filter.wake_paused();
        });
    }
}
