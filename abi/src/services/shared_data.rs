//! Process-wide key/value data with compare-and-swap.

use crate::types::Status;
use std::collections::HashMap;
use std::sync::Mutex;

/// Shared data, namespaced by VM id (plugins with the same `vm_id` see the
/// same keys).
pub trait SharedDataStore: Send + Sync {
    /// The value and its CAS version.
    fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)>;
    /// Stores a value. `cas == 0` writes unconditionally; otherwise the write
    /// only happens if `cas` is the key's current version.
    ///
    /// # Errors
    /// [`Status::CasMismatch`] when the version is stale;
    /// [`Status::BadArgument`] when the store is bounded and the value does
    /// not fit (the host reports it as a limit; see [`crate::limits`]).
    fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status>;
}

#[derive(Default)]
struct Table {
    entries: HashMap<(String, Vec<u8>), (Vec<u8>, u32)>,
    next_cas: u32,
    /// Key and value bytes of every entry (VM ids are the operator's).
    bytes: usize,
}

/// Default bound of [`InMemorySharedData`]: 64 MiB of keys and values.
pub const DEFAULT_SHARED_DATA_BYTES: usize = 64 << 20;

/// The default store: a mutex-protected map, one per process when shared.
///
/// Shared data is process-wide (every VM with the same VM id sees it), so it
/// is bounded as a whole rather than per VM: at most
/// [`DEFAULT_SHARED_DATA_BYTES`] of keys and values unless built with
/// [`InMemorySharedData::with_max_bytes`]. A write that would go past the
/// bound is refused with `BadArgument` and changes nothing.
pub struct InMemorySharedData {
    table: Mutex<Table>,
    max_bytes: usize,
}

impl Default for InMemorySharedData {
    fn default() -> Self {
        InMemorySharedData::with_max_bytes(DEFAULT_SHARED_DATA_BYTES)
    }
}

impl InMemorySharedData {
    /// A store holding at most `max_bytes` of keys and values.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        InMemorySharedData {
            table: Mutex::default(),
            max_bytes,
        }
    }

    /// Key and value bytes held now.
    pub fn bytes(&self) -> usize {
        self.table.lock().expect("poisoned").bytes
    }
}

impl SharedDataStore for InMemorySharedData {
    fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.table
            .lock()
            .expect("poisoned")
            .entries
            .get(&(vm_id.to_string(), key.to_vec()))
            .cloned()
    }

    fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
        let mut table = self.table.lock().expect("poisoned");
        let slot = (vm_id.to_string(), key.to_vec());
        let old = match table.entries.get(&slot) {
            Some((_, current)) if cas != 0 && cas != *current => {
                return Err(Status::CasMismatch);
            }
            Some((v, _)) => key.len() + v.len(),
            None => 0,
        };
        let held = table.bytes - old;
        if held.saturating_add(key.len() + value.len()) > self.max_bytes {
            return Err(Status::BadArgument);
        }
        // CAS versions are never 0, so 0 can mean "unconditional".
        table.next_cas = table.next_cas.wrapping_add(1).max(1);
        let version = table.next_cas;
        table.bytes = held + key.len() + value.len();
        table.entries.insert(slot, (value.to_vec(), version));
        Ok(())
    }
}
