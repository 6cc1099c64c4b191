//! A pool of ready VMs for per-request isolation.
//!
//! The reference host keeps one VM per worker thread and lets every request
//! of that thread share it ([`crate::Plugin::new_vm`] once per thread does
//! that). Callers who want each request to start from a pristine VM take
//! one from a [`VmPool`] instead; when the request is done the VM goes back
//! **replaced** by a fresh instance (or reused as is, with
//! [`ReturnPolicy::Reuse`]).
//!
//! Limits: the pool holds exactly `size` VMs, all created up front by
//! [`VmPool::new`]. When all of them are out, [`VmPool::take`] **refuses**
//! with [`PoolError::Exhausted`] rather than waiting or growing, so memory use
//! is bounded and a caller can shed load or fall back to a per-thread VM.
//! Replacing a returned VM costs one instantiation from the pre-linked
//! template (microseconds on wasmtime with its pooling allocator) and
//! happens on the returning thread, after the request is finished.

use crate::error::PluginError;
use crate::plugin::Plugin;
use crate::vm::Vm;
use object_pool::{Pool, Reusable};
use polyhost_engine_core::Engine;
use std::ops::{Deref, DerefMut};

/// What happens to a VM when it is returned to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReturnPolicy {
    /// Drop it and put a fresh VM in its place: no state leaks between
    /// requests (the default).
    #[default]
    Replace,
    /// Put it back as it is unless it failed; faster, but plugin state
    /// carries over to the next request, as with a per-thread VM.
    Reuse,
}

/// Why [`VmPool::take`] gave no VM.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// Every VM is in use.
    #[error("all {size} VMs of the pool for plugin `{plugin}` are in use")]
    Exhausted {
        /// The plugin.
        plugin: String,
        /// The pool's size.
        size: usize,
    },
}

/// A fixed-size pool of started VMs of one plugin.
pub struct VmPool<E: Engine> {
    plugin: Plugin<E>,
    pool: Pool<Vm<E>>,
    size: usize,
    policy: ReturnPolicy,
}

impl<E: Engine> VmPool<E> {
    /// Creates `size` VMs of `plugin` up front.
    ///
    /// # Errors
    /// The first VM that fails to start.
    pub fn new(plugin: Plugin<E>, size: usize, policy: ReturnPolicy) -> Result<Self, PluginError> {
        let vms = (0..size)
            .map(|_| plugin.new_vm())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(VmPool {
            plugin,
            pool: Pool::from_vec(vms),
            size,
            policy,
        })
    }

    /// Takes a ready VM.
    ///
    /// # Errors
    /// [`PoolError::Exhausted`] when all VMs are in use.
    pub fn take(&self) -> Result<PooledVm<'_, E>, PoolError> {
        match self.pool.try_pull() {
            Some(vm) => Ok(PooledVm {
                vm: Some(vm),
                pool: self,
            }),
            None => Err(PoolError::Exhausted {
                plugin: self.plugin.info().name.to_string(),
                size: self.size,
            }),
        }
    }

    /// How many VMs are ready to be taken.
    pub fn available(&self) -> usize {
        self.pool.len()
    }

    /// The pool's size.
    pub fn size(&self) -> usize {
        self.size
    }
}

/// A VM taken from a [`VmPool`]; returned (replaced or reused) on drop.
pub struct PooledVm<'a, E: Engine> {
    vm: Option<Reusable<'a, Vm<E>>>,
    pool: &'a VmPool<E>,
}

impl<E: Engine> Deref for PooledVm<'_, E> {
    type Target = Vm<E>;
    fn deref(&self) -> &Vm<E> {
        self.vm.as_ref().expect("present until drop")
    }
}

impl<E: Engine> DerefMut for PooledVm<'_, E> {
    fn deref_mut(&mut self) -> &mut Vm<E> {
        self.vm.as_mut().expect("present until drop")
    }
}

impl<E: Engine> Drop for PooledVm<'_, E> {
    fn drop(&mut self) {
        let Some(mut vm) = self.vm.take() else { return };
        if self.pool.policy == ReturnPolicy::Reuse && !vm.is_failed() {
            return; // `Reusable` puts it back.
        }
        match self.pool.plugin.new_vm() {
            Ok(fresh) => *vm = fresh,
            Err(e) => {
                // Keep the pool consistent: lose this slot rather than hand
                // out a used or failed VM.
                tracing::error!(error = %e, "cannot replace a pooled VM; the pool shrinks by one");
                let _ = vm.detach();
            }
        }
    }
}
