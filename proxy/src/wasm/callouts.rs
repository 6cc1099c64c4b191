//! `proxy_http_call`, `proxy_grpc_call` and `proxy_grpc_stream` as real
//! outbound requests to configured clusters.
//!
//! The host function runs inside a plugin call on a worker thread; it only
//! checks the cluster and records the callout in a thread-local list. Once
//! the plugin call returns, [`start_pending`] spawns one task per callout on
//! the worker's runtime (so it stays on this thread); the task sends the
//! request through the cluster's connection pool, waits at most the
//! callout's timeout, and delivers the answer to the same worker's VM.
//!
//! Every callout under way has a [`CallHandle`] in a thread-local table:
//! `proxy_grpc_send` and `proxy_grpc_close` reach a stream's task through
//! it, and dropping it stops the task without another callback. That is
//! what `proxy_grpc_cancel` does, what the end of the context that made
//! the callout does (as Envoy cancels a destroyed context's calls and
//! resets its streams), and what the end of the worker's VM does.

use super::group::VmGroup;
use crate::cluster::ClusterManager;
use crate::grpc::{Incoming, MAX_GRPC_SEND_BACKLOG, Outgoing, framed_len};
use polyhost::services::{
    CalloutDispatcher, CalloutRequest, GrpcCallout, GrpcStreamOpen, HttpCallout,
};
use polyhost::{GrpcResult, HttpCallResult, Status};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::mpsc;

thread_local! {
    /// Callouts made by the plugin call that is running on this thread.
    static PENDING: RefCell<Vec<Pending>> = const { RefCell::new(Vec::new()) };
    /// This worker's callouts under way.
    static CALLS: RefCell<HashMap<CallKey, CallHandle>> = RefCell::new(HashMap::new());
    /// Tells a handle from an older one under the same key.
    static NEXT_SERIAL: Cell<u64> = const { Cell::new(1) };
}

/// A callout of this worker: the dispatcher of the plugins' VM group and
/// the token the VM gave it (tokens are unique across kinds of callout).
/// Every worker has its own VM of a group, so the same token can be under
/// way on two workers.
type CallKey = (u64, u32);

/// The plugin's side of a callout under way.
struct CallHandle {
    /// Distinguishes it from a handle that later took the same key.
    serial: u64,
    /// To the task; dropping it cancels the callout. Only a gRPC stream's
    /// task reads what is sent on it.
    outgoing: mpsc::UnboundedSender<Outgoing>,
    /// A gRPC stream (messages can be sent on it), not a unary call.
    stream: bool,
    /// The plugin has closed its side.
    local_closed: bool,
    /// Framed bytes sent on a stream that have not gone out yet (shared
    /// with the stream's task, which takes away what it writes).
    backlog: Arc<AtomicUsize>,
}

/// A callout just registered: its key and serial, the task's end of the
/// channel, and a stream's send backlog.
struct Registered {
    key: CallKey,
    serial: u64,
    outgoing: mpsc::UnboundedReceiver<Outgoing>,
    backlog: Arc<AtomicUsize>,
}

impl Registered {
    /// Runs a unary callout to its answer, which is then no longer under
    /// way; `None` if its handle is dropped first (the callout was
    /// cancelled, and nobody wants the answer).
    async fn unless_cancelled<T>(mut self, answer: impl Future<Output = T>) -> Option<T> {
        let result = tokio::select! {
            result = answer => result,
            _ = self.outgoing.recv() => return None,
        };
        forget(self.key, self.serial);
        Some(result)
    }
}

/// Registers a callout under way.
fn register(dispatcher: u64, token: u32, stream: bool) -> Registered {
    let (outgoing, receiver) = mpsc::unbounded_channel();
    let serial = NEXT_SERIAL.with(|n| {
        let serial = n.get();
        n.set(serial + 1);
        serial
    });
    let key = (dispatcher, token);
    let backlog = Arc::new(AtomicUsize::new(0));
    let handle = CallHandle {
        serial,
        outgoing,
        stream,
        local_closed: false,
        backlog: backlog.clone(),
    };
    // A handle left under this key (a VM that failed and was rebuilt gives
    // out its tokens again) is dropped, which cancels its task.
    CALLS.with(|c| c.borrow_mut().insert(key, handle));
    Registered {
        key,
        serial,
        outgoing: receiver,
        backlog,
    }
}

/// Whether the callout registered as `serial` is still wanted.
fn is_current(key: CallKey, serial: u64) -> bool {
    CALLS.with(|c| c.borrow().get(&key).is_some_and(|h| h.serial == serial))
}

/// Forgets the callout registered as `serial` once it is over.
fn forget(key: CallKey, serial: u64) {
    CALLS.with(|c| {
        let mut table = c.borrow_mut();
        if table.get(&key).is_some_and(|h| h.serial == serial) {
            table.remove(&key);
        }
    });
}

/// Stops this worker's callouts of the dispatcher `id`: the worker's VM
/// they answer to is gone (failed, rebuilt or no longer used). A gRPC
/// stream is reset at once instead of lasting until its upstream next
/// sends something, which a silent upstream never does.
pub(super) fn abandon_worker_calls(id: u64) {
    // At thread exit the table may be gone already; so are the tasks.
    let _ = CALLS.try_with(|c| {
        c.borrow_mut()
            .retain(|(dispatcher, _), _| *dispatcher != id)
    });
}

/// Drops the callouts of the plugin call that just ran, which failed its
/// VM: nobody is left to take their answers.
pub(super) fn discard_pending() {
    PENDING.with(|p| p.borrow_mut().clear());
}

/// A callout accepted during a plugin call, sent once the call returns.
/// Each has the task's end of its registration.
enum Pending {
    Http {
        call: HttpCallout,
        task: Registered,
    },
    /// A unary gRPC call and the cluster its upstream names.
    Grpc {
        call: GrpcCallout,
        cluster: String,
        task: Registered,
    },
    /// A gRPC stream and the cluster its upstream names.
    GrpcStream {
        open: GrpcStreamOpen,
        cluster: String,
        task: Registered,
    },
}

/// Queues a callout to start once the plugin call returns.
fn queue(pending: Pending) {
    PENDING.with(|p| p.borrow_mut().push(pending));
}

/// Numbers the dispatchers, for [`CallKey`].
static NEXT_DISPATCHER: AtomicU64 = AtomicU64::new(1);

/// The callout service of one VM group in the data plane (shared by the
/// group's VMs on every worker).
pub(super) struct WorkerCallouts {
    id: u64,
    clusters: Arc<ClusterManager>,
}

impl WorkerCallouts {
    pub(super) fn new(clusters: Arc<ClusterManager>) -> Self {
        WorkerCallouts {
            id: NEXT_DISPATCHER.fetch_add(1, Ordering::Relaxed),
            clusters,
        }
    }

    /// What tells this group's calls from other groups' on a worker, for
    /// [`abandon_worker_calls`].
    pub(super) fn id(&self) -> u64 {
        self.id
    }

    /// The cluster a gRPC upstream names, or BadArgument when there is no
    /// such cluster, as Envoy answers before anything is sent.
    fn grpc_cluster(&self, plugin: &str, upstream: &[u8]) -> Result<String, Status> {
        let cluster = crate::grpc::cluster_name(upstream);
        if self.clusters.get(&cluster).is_none() {
            tracing::warn!(target: "polyhost::wasm", %plugin, %cluster, "grpc call to an unknown cluster");
            return Err(Status::BadArgument);
        }
        Ok(cluster)
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
                let task = register(self.id, call.token, false);
                queue(Pending::Http { call, task });
                Ok(())
            }
            CalloutRequest::Grpc(call) => {
                let cluster = self.grpc_cluster(&call.plugin, &call.upstream)?;
                let task = register(self.id, call.token, false);
                queue(Pending::Grpc {
                    call,
                    cluster,
                    task,
                });
                Ok(())
            }
            CalloutRequest::GrpcStream(open) => {
                let cluster = self.grpc_cluster(&open.plugin, &open.upstream)?;
                let task = register(self.id, open.token, true);
                queue(Pending::GrpcStream {
                    open,
                    cluster,
                    task,
                });
                Ok(())
            }
            CalloutRequest::GrpcSend {
                token,
                message,
                end_stream,
                ..
            } => CALLS.with(|c| {
                let mut table = c.borrow_mut();
                let handle = table
                    .get_mut(&(self.id, token))
                    .filter(|h| h.stream)
                    .ok_or(Status::NotFound)?;
                if handle.local_closed {
                    // The plugin's side is closed; nothing more can go out.
                    return Err(Status::BadArgument);
                }
                // The task is gone only once the stream is over, when the
                // message has nowhere to go anyway.
                let size = framed_len(&message);
                let held = handle.backlog.fetch_add(size, Ordering::Relaxed) + size;
                if held > MAX_GRPC_SEND_BACKLOG {
                    // The upstream does not keep up: the stream ends with
                    // RESOURCE_EXHAUSTED and takes no more messages.
                    handle.backlog.fetch_sub(size, Ordering::Relaxed);
                    handle.local_closed = true;
                    let _ = handle.outgoing.send(Outgoing::Overflow(held));
                    return Err(Status::BadArgument);
                }
                handle.local_closed = end_stream;
                let _ = handle.outgoing.send(Outgoing::Message(message, end_stream));
                Ok(())
            }),
            CalloutRequest::GrpcClose { token, .. } => CALLS.with(|c| {
                let mut table = c.borrow_mut();
                let key = (self.id, token);
                let handle = table.get_mut(&key).ok_or(Status::NotFound)?;
                if handle.stream {
                    if !handle.local_closed {
                        handle.local_closed = true;
                        let _ = handle.outgoing.send(Outgoing::Close);
                    }
                } else {
                    // Closing a unary call cancels it, as in Envoy.
                    table.remove(&key);
                }
                Ok(())
            }),
            CalloutRequest::GrpcCancel { token, .. } | CalloutRequest::HttpCancel { token, .. } => {
                // The host has forgotten the token already; dropping the
                // handle stops the task before it calls back.
                CALLS.with(|c| c.borrow_mut().remove(&(self.id, token)));
                Ok(())
            }
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
                Pending::Http { call, task } => {
                    let token = call.token;
                    let cluster = call.upstream.clone();
                    let plugin = call.plugin.clone();
                    let Some(result) = task.unless_cancelled(group.clusters.http_call(call)).await
                    else {
                        return;
                    };
                    if let HttpCallResult::Failure | HttpCallResult::Timeout = &result {
                        tracing::debug!(target: "polyhost::wasm", %plugin, %cluster, ?result, "http call did not complete");
                    }
                    let delivered =
                        group.with_existing_vm(|vm| vm.deliver_http_response(token, result));
                    (plugin, delivered)
                }
                Pending::Grpc {
                    call,
                    cluster,
                    task,
                } => {
                    let token = call.token;
                    let plugin = call.plugin.clone();
                    let answer = group.clusters.grpc_call(&cluster, call);
                    let Some(result) = task.unless_cancelled(answer).await else {
                        return;
                    };
                    if let GrpcResult::Err { status, message } = &result {
                        tracing::debug!(target: "polyhost::wasm", %plugin, %cluster, status, %message, "grpc call failed");
                    }
                    let delivered =
                        group.with_existing_vm(|vm| vm.deliver_grpc_response(token, result));
                    (plugin, delivered)
                }
                Pending::GrpcStream {
                    open,
                    cluster,
                    task:
                        Registered {
                            key,
                            serial,
                            outgoing,
                            backlog,
                        },
                } => {
                    let token = open.token;
                    let plugin = open.plugin.clone();
                    let clusters = group.clusters.clone();
                    let deliver = |incoming: Incoming| {
                        if !is_current(key, serial) {
                            return false;
                        }
                        if let Incoming::Close { status, message } = &incoming {
                            if *status != 0 {
                                tracing::debug!(target: "polyhost::wasm", %plugin, %cluster, status, %message, "grpc stream closed");
                            }
                            forget(key, serial);
                        }
                        let delivered =
                            group.with_existing_vm(|vm| vm.deliver_grpc_stream(token, incoming));
                        group.wake_paused();
                        match delivered {
                            Some(Ok(())) => true,
                            Some(Err(e)) => {
                                tracing::error!(target: "polyhost::wasm", %plugin, error = %e, "delivering a grpc stream event failed");
                                false
                            }
                            None => false,
                        }
                    };
                    clusters
                        .grpc_stream(&cluster, open, outgoing, backlog, deliver)
                        .await;
                    forget(key, serial);
                    return;
                }
            };
            if let Some(Err(e)) = delivered {
                tracing::error!(target: "polyhost::wasm", %plugin, error = %e, "delivering a callout answer failed");
            }
            group.wake_paused();
        });
    }
}
