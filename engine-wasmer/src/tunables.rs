//! The memory limit: wasmer `Tunables` that cap every linear memory.

use std::ptr::NonNull;
use wasmer::sys::vm::{
    MemoryError, MemoryStyle, TableStyle, VMMemory, VMMemoryDefinition, VMTable, VMTableDefinition,
};
use wasmer::sys::{BaseTunables, Target, Tunables};
use wasmer::{MemoryType, Pages, TableType, WASM_MAX_PAGES, WASM_PAGE_SIZE};

/// wasmer's default tunables, with every memory's maximum lowered to the
/// configured limit, so `memory.grow` past it returns -1.
///
/// Memory *styles* (how much address space to reserve, which the compiled
/// code depends on) are still chosen from the module's declared type: a
/// style valid for the declared maximum is valid for any smaller one, so
/// the limit does not change compiled code and needs no place in the engine
/// fingerprint.
pub(crate) struct LimitingTunables {
    base: BaseTunables,
    max_pages: Pages,
}

impl LimitingTunables {
    pub(crate) fn new(target: &Target, max_memory_bytes: u64) -> Self {
        let pages = (max_memory_bytes / WASM_PAGE_SIZE as u64).min(u64::from(WASM_MAX_PAGES));
        LimitingTunables {
            base: BaseTunables::for_target(target),
            max_pages: Pages(pages as u32),
        }
    }

    fn limit(&self, ty: &MemoryType) -> Result<MemoryType, MemoryError> {
        if ty.minimum > self.max_pages {
            return Err(MemoryError::MinimumMemoryTooLarge {
                min_requested: ty.minimum,
                max_allowed: self.max_pages,
            });
        }
        let mut limited = *ty;
        limited.maximum = Some(ty.maximum.map_or(self.max_pages, |m| m.min(self.max_pages)));
        Ok(limited)
    }
}

impl Tunables for LimitingTunables {
    fn memory_style(&self, memory: &MemoryType) -> MemoryStyle {
        self.base.memory_style(memory)
    }

    fn table_style(&self, table: &TableType) -> TableStyle {
        self.base.table_style(table)
    }

    fn create_host_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
    ) -> Result<VMMemory, MemoryError> {
        self.base.create_host_memory(&self.limit(ty)?, style)
    }

    unsafe fn create_vm_memory(
        &self,
        ty: &MemoryType,
        style: &MemoryStyle,
        vm_definition_location: NonNull<VMMemoryDefinition>,
    ) -> Result<VMMemory, MemoryError> {
        let limited = self.limit(ty)?;
        // SAFETY: forwarded unchanged from wasmer, which upholds the
        // contract of `Tunables::create_vm_memory` for this location.
        unsafe {
            self.base
                .create_vm_memory(&limited, style, vm_definition_location)
        }
    }

    fn create_host_table(&self, ty: &TableType, style: &TableStyle) -> Result<VMTable, String> {
        self.base.create_host_table(ty, style)
    }

    unsafe fn create_vm_table(
        &self,
        ty: &TableType,
        style: &TableStyle,
        vm_definition_location: NonNull<VMTableDefinition>,
    ) -> Result<VMTable, String> {
        // SAFETY: as in `create_vm_memory`.
        unsafe { self.base.create_vm_table(ty, style, vm_definition_location) }
    }
}
