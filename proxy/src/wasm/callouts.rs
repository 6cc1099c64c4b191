//! `proxy_http_call` and unary `proxy_grpc_call` as real outbound requests to
//! configured clusters.
//!
//! The host function runs inside a plugin call on a worker thread; it only
//! checks the cluster and records the callout in a thread-local list. Once
//! the plugin call returns, [`start_pending`] spawns one task per callout on
//! the worker's runtime (so it stays on this thread); the task sends the
//! request through the cluster's connection pool, waits at most the
//! callout's timeout, and delivers the answer to the same worker's VM.

use super::group::VmGroup;
use crate::cluster::ClusterManager;
use polyhost::services::{CalloutDispatcher, CalloutRequest, GrpcCallout, HttpCallout};
use polyhost::{GrpcResult, HttpCallResult, Status};
use std::cell::RefCell;
use std::sync::Arc;

thread_local! {
    /// Callouts made by the plugin call that is running on this thread.
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
}

/// A callout accepted during a plugin call, sent once the call returns.
enum Pending {
    Http(HttpCallout),
    /// A unary gRPC call and the cluster its upstream names.
    Grpc(GrpcCallout, String),
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
                PENDING.with(|p| p.borrow_mut().push(Pending::Http(call)));
                Ok(())
            }
            CalloutRequest::Grpc(call) => {
                let cluster = crate::grpc::cluster_name(&call.upstream);
                if self.clusters.get(&cluster).is_none() {
                    tracing::warn!(target: "polyhost::wasm", plugin = %call.plugin, %cluster, "grpc call to an unknown cluster");
                    return Err(Status::BadArgument);
                }
                PENDING.with(|p| p.borrow_mut().push(Pending::Grpc(call, cluster)));
                Ok(())
            }
            // Bidirectional streams need a long-lived h2 stream per plugin
            // context; not in the data plane yet, and the plugin is told so.
            CalloutRequest::GrpcStream(_) => Err(Status::Unimplemented),
            CalloutRequest::GrpcSend { .. }
            | CalloutRequest::GrpcCancel { .. }
            | CalloutRequest::GrpcClose { .. } => Err(Status::NotFound),
        }
    }
}

/// Starts the callouts the last plugin call in `group`'s VM made.
pub(super) fn start_pending(group: &Arc<VmGroup>) {
    let calls = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    if calls.is_empty() {
        return;
    }
    if tokio::runtime::Handle::try_current().is_err() {
        // Only the start-up check VM runs outside a worker; Envoy's main
        // thread VM would answer these, but that VM is dropped at once.
        tracing::debug!(target: "polyhost::wasm", vm_id = %group.key.vm_id, "callouts made outside a worker are dropped");
        return;
    }
    for call in calls {
        let group = group.clone();
        tokio::spawn(async move {
            let (plugin, delivered) = match call {
                Pending::Http(call) => {
                    let token = call.token;
                    let cluster = call.upstream.clone();
                    let plugin = call.plugin.clone();
                    let result = group.clusters.http_call(call).await;
                    if let HttpCallResult::Failure | HttpCallResult::Timeout = &result {
                        tracing::debug!(target: "polyhost::wasm", %plugin, %cluster, ?result, "http call did not complete");
                    }
                    let delivered =
                        group.with_existing_vm(|vm| vm.deliver_http_response(token, result));
                    (plugin, delivered)
                }
                Pending::Grpc(call, cluster) => {
                    let token = call.token;
                    let plugin = call.plugin.clone();
                    let result = group.clusters.grpc_call(&cluster, call).await;
                    if let GrpcResult::Err { status, message } = &result {
                        tracing::debug!(target: "polyhost::wasm", %plugin, %cluster, status, %message, "grpc call failed");
                    }
                    let delivered =
                        group.with_existing_vm(|vm| vm.deliver_grpc_response(token, result));
                    (plugin, delivered)
                }
            };
            if let Some(Err(e)) = delivered {
                tracing::error!(target: "polyhost::wasm", %plugin, error = %e, "delivering a callout answer failed");
            }
            group.wake_paused();
        });
    }
}
