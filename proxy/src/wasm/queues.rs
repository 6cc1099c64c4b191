//! Shared queues that wake the thread whose VM is waiting on them.
//!
//! In Envoy, enqueueing to a shared queue posts `proxy_on_queue_ready` to
//! the dispatcher of the thread that registered the queue. The library's
//! queue service calls a notifier the VM gave at registration; this
//! wrapper adds to it a wake-up of the registering thread, when that thread
//! said how to wake it ([`wake_this_thread_on_enqueue`]). Wasm services do:
//! their thread sleeps until a queue of theirs has data, with no polling.

use polyhost::Status;
use polyhost::services::{InMemoryQueues, QueueNotifier, SharedQueueRegistry};
use std::cell::RefCell;
use std::sync::Arc;
use tokio::sync::Notify;

thread_local! {
    /// What wakes this thread when a queue one of its VMs registered gets
    /// a message; `None` on threads that find out otherwise.
    static QUEUE_WAKER: RefCell<Option<Arc<Notify>>> = const { RefCell::new(None) };
}

/// Queues registered by VMs on this thread from now on notify `waker` on
/// every enqueue (a permit is kept if nobody waits yet, so none is lost).
pub(crate) fn wake_this_thread_on_enqueue(waker: Arc<Notify>) {
    QUEUE_WAKER.with(|w| *w.borrow_mut() = Some(waker));
}

/// [`InMemoryQueues`] whose notifications also wake the registering
/// thread (see the module documentation).
#[derive(Default)]
pub struct WakingQueues {
    inner: InMemoryQueues,
}

impl SharedQueueRegistry for WakingQueues {
    fn register(&self, vm_id: &str, name: &str, notify: QueueNotifier) -> u32 {
        let notify = match QUEUE_WAKER.with(|w| w.borrow().clone()) {
            Some(waker) => Arc::new(move |id| {
                notify(id);
                waker.notify_one();
            }) as QueueNotifier,
            None => notify,
        };
        self.inner.register(vm_id, name, notify)
    }

    fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.inner.resolve(vm_id, name)
    }

    fn enqueue(&self, id: u32, data: &[u8]) -> Result<(), Status> {
        self.inner.enqueue(id, data)
    }

    fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        self.inner.dequeue(id)
    }
}
