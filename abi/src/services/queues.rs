//! Process-wide shared queues.

use crate::types::Status;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

/// Tells the VM that registered a queue that it has data. Called with the
/// queue id; the VM delivers `proxy_on_queue_ready` on its own thread the
/// next time its embedder polls it.
pub type QueueNotifier = Arc<dyn Fn(u32) + Send + Sync>;

/// Shared queues, named per VM id.
pub trait SharedQueueRegistry: Send + Sync {
    /// Registers (or re-registers) queue `name` of `vm_id`, owned by the
    /// caller whose `notify` is called on every enqueue. Returns its id.
    fn register(&self, vm_id: &str, name: &str, notify: QueueNotifier) -> u32;
    /// Finds a queue by VM id and name.
    fn resolve(&self, vm_id: &str, name: &str) -> Option<u32>;
    /// Appends a message and notifies the owner.
    ///
    /// # Errors
    /// [`Status::NotFound`] for an unknown id; [`Status::BadArgument`] when
    /// the registry is bounded and the message does not fit (the host
    /// reports it as a limit; see [`crate::limits`]).
    fn enqueue(&self, id: u32, data: &[u8]) -> Result<(), Status>;
    /// Takes the oldest message.
    ///
    /// # Errors
    /// [`Status::NotFound`] for an unknown id, [`Status::Empty`] when nothing
    /// is queued.
    fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status>;
}

struct Queue {
    items: VecDeque<Vec<u8>>,
    notify: QueueNotifier,
}

#[derive(Default)]
struct Queues {
    by_name: HashMap<(String, String), u32>,
    queues: Vec<Queue>,
    /// Bytes of every message queued and not yet taken.
    bytes: usize,
}

/// Default bound of [`InMemoryQueues`]: 64 MiB of queued messages.
pub const DEFAULT_QUEUED_BYTES: usize = 64 << 20;

/// The default registry.
///
/// Queues are process-wide (any VM may enqueue to a queue it resolved), so
/// they are bounded as a whole rather than per VM: at most
/// [`DEFAULT_QUEUED_BYTES`] of messages waiting across all queues unless
/// built with [`InMemoryQueues::with_max_bytes`]. A message that would go
/// past the bound is refused with `BadArgument`; dequeuing makes room.
pub struct InMemoryQueues {
    inner: Mutex<Queues>,
    max_bytes: usize,
}

impl Default for InMemoryQueues {
    fn default() -> Self {
        InMemoryQueues::with_max_bytes(DEFAULT_QUEUED_BYTES)
    }
}

impl InMemoryQueues {
    /// A registry holding at most `max_bytes` of queued messages.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        InMemoryQueues {
            inner: Mutex::default(),
            max_bytes,
        }
    }

    /// Bytes of messages waiting now.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("poisoned").bytes
    }
}

impl SharedQueueRegistry for InMemoryQueues {
    fn register(&self, vm_id: &str, name: &str, notify: QueueNotifier) -> u32 {
        let mut q = self.inner.lock().expect("poisoned");
        let key = (vm_id.to_string(), name.to_string());
        if let Some(&id) = q.by_name.get(&key) {
            q.queues[id as usize - 1].notify = notify;
            return id;
        }
        q.queues.push(Queue {
            items: VecDeque::new(),
            notify,
        });
        // Ids start at 1 so that 0 never names a queue.
        let id = q.queues.len() as u32;
        q.by_name.insert(key, id);
        id
    }

    fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.inner
            .lock()
            .expect("poisoned")
            .by_name
            .get(&(vm_id.to_string(), name.to_string()))
            .copied()
    }

    fn enqueue(&self, id: u32, data: &[u8]) -> Result<(), Status> {
        let notify = {
            let mut q = self.inner.lock().expect("poisoned");
            let bytes = q.bytes;
            let queue = id
                .checked_sub(1)
                .and_then(|i| q.queues.get_mut(i as usize))
                .ok_or(Status::NotFound)?;
            if bytes.saturating_add(data.len()) > self.max_bytes {
                return Err(Status::BadArgument);
            }
            queue.items.push_back(data.to_vec());
            let notify = queue.notify.clone();
            q.bytes += data.len();
            notify
        };
        // Notify outside the lock: the notifier may be arbitrary embedder code.
        notify(id);
        Ok(())
    }

    fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let mut q = self.inner.lock().expect("poisoned");
        let queue = id
            .checked_sub(1)
            .and_then(|i| q.queues.get_mut(i as usize))
            .ok_or(Status::NotFound)?;
        let item = queue.items.pop_front().ok_or(Status::Empty)?;
        q.bytes -= item.len();
        Ok(item)
    }
}
