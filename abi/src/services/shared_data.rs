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
    /// [`Status::CasMismatch`] when the version is stale.
    fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status>;
}

#[derive(Default)]
struct Table {
    entries: HashMap<(String, Vec<u8>), (Vec<u8>, u32)>,
    next_cas: u32,
}

/// The default store: a mutex-protected map, one per process when shared.
#[derive(Default)]
pub struct InMemorySharedData {
    table: Mutex<Table>,
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
        // CAS versions are never 0, so 0 can mean "unconditional".
        table.next_cas = table.next_cas.wrapping_add(1).max(1);
        let version = table.next_cas;
        let slot = (vm_id.to_string(), key.to_vec());
        if let Some((_, current)) = table.entries.get(&slot)
            && cas != 0
            && cas != *current
        {
            return Err(Status::CasMismatch);
        }
        table.entries.insert(slot, (value.to_vec(), version));
        Ok(())
    }
}
