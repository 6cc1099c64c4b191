//! Plugins that share a VM, and each worker's VM of them.
//!
//! Envoy gives plugins whose VM is configured the same (`vm_id`, runtime,
//! code, VM configuration, environment) one VM per worker, and each plugin
//! a root context of its own in it. A [`VmGroup`] is such a set of plugins
//! with the compiled module they share; its VM on a worker lives in a
//! thread-local [`WorkerSlot`], started for whichever plugin needs it first
//! and holding every member's root context. Plugins that share a VM also
//! share its fate: a trap fails the VM, and with it every member on that
//! worker, as in Envoy.

use super::vm::{VmFactory, WorkerVm};
use super::{FilterInner, callouts};
use crate::cluster::ClusterManager;
use crate::config::FailurePolicy;
use polyhost::{ContextId, LogLevel, Shutdown};
use rustc_hash::FxHashMap;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use tokio::sync::{Notify, watch};

/// What makes two plugins share a VM: the same as Envoy's VM key, in
/// which the plugin's name, root id and configuration take no part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmKey {
    /// The engine the module runs on (resolved, never empty).
    pub engine: String,
    /// `vm_config.vm_id`.
    pub vm_id: String,
    /// `vm_config.configuration`.
    pub vm_configuration: Vec<u8>,
    /// SHA-256 of the module's bytes.
    pub code: [u8; 32],
    /// `vm_config.environment_variables`.
    pub env: Vec<(String, String)>,
    /// `vm_config.environment_variables.host_env_keys`.
    pub host_env_keys: Vec<String>,
    /// `vm_config.allow_precompiled`.
    pub allow_precompiled: bool,
}

/// Distinguishes every group, so a worker's slot of a group from an older
/// configuration is never confused with a new one.
static NEXT_GROUP: AtomicU64 = AtomicU64::new(1);

/// Plugins that share one VM per worker.
pub(crate) struct VmGroup {
    id: u64,
    pub(super) key: VmKey,
    /// Tells this group's callouts from other groups' (see
    /// [`callouts::abandon_worker_calls`]).
    dispatcher: u64,
    /// The compiled module and the host services of its VMs.
    pub(super) factory: Box<dyn VmFactory>,
    pub(super) clusters: Arc<ClusterManager>,
    /// The plugins using it, in the order they joined.
    members: Mutex<Vec<Weak<FilterInner>>>,
}

impl VmGroup {
    pub(super) fn new(
        key: VmKey,
        factory: Box<dyn VmFactory>,
        clusters: Arc<ClusterManager>,
        dispatcher: u64,
    ) -> Arc<VmGroup> {
        Arc::new(VmGroup {
            id: NEXT_GROUP.fetch_add(1, Ordering::Relaxed),
            key,
            dispatcher,
            factory,
            clusters,
            members: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn join(&self, member: &Arc<FilterInner>) {
        let mut members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|m| m.strong_count() > 0);
        members.push(Arc::downgrade(member));
    }

    /// The members still in use, in the order they joined.
    fn live_members(&self) -> Vec<Arc<FilterInner>> {
        let members = self.members.lock().unwrap_or_else(|e| e.into_inner());
        members.iter().filter_map(Weak::upgrade).collect()
    }

    /// Runs `f` on this worker's VM of the group, if it has one that has
    /// not failed; never creates one. Plugins' callouts made during `f` are
    /// started afterwards.
    pub(super) fn with_existing_vm<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut dyn WorkerVm) -> R,
    ) -> Option<R> {
        let out = SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            sweep_dropped_filters(&mut slots);
            let slot = slots.get_mut(&self.id)?;
            slot.sync_log_level();
            let vm = slot.vm.as_mut()?;
            if vm.is_failed() {
                return None;
            }
            let out = f(vm.as_mut());
            slot.abandon_calls_if_failed();
            Some(out)
        });
        callouts::start_pending(self);
        out
    }

    /// Runs `f` with `filter`'s root context in this worker's VM of the
    /// group: creates the VM on first use (and again after a failure under
    /// `FAIL_RELOAD`), and adds the plugin's root to it if it is not there
    /// yet. Returns `None` when the VM or the plugin's root cannot serve.
    pub(super) fn with_vm_as<R>(
        self: &Arc<Self>,
        filter: &Arc<FilterInner>,
        f: impl FnOnce(&mut dyn WorkerVm, ContextId) -> R,
    ) -> Option<R> {
        let result = SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            sweep_dropped_filters(&mut slots);
            let slot = slots
                .entry(self.id)
                .or_insert_with(|| WorkerSlot::new(self));
            let root = slot.root_of(self, filter)?;
            slot.sync_log_level();
            let vm = slot.vm.as_mut()?;
            if vm.is_failed() {
                return None;
            }
            let out = f(vm.as_mut(), root);
            let start_ticker = !slot.ticking && vm.next_tick().is_some();
            slot.abandon_calls_if_failed();
            slot.ticking |= start_ticker;
            Some((out, start_ticker))
        });
        callouts::start_pending(self);
        let (out, start_ticker) = result?;
        if start_ticker {
            self.spawn_ticker();
        }
        Some(out)
    }

    /// Wakes the requests of this worker that wait for a plugin of the
    /// group to resume them (after a callout answer or a tick).
    pub(super) fn wake_paused(self: &Arc<Self>) {
        self.pause_notifier().notify_waiters();
    }

    /// What a paused request of this worker waits on.
    pub(super) fn pause_notifier(self: &Arc<Self>) -> Arc<Notify> {
        SLOTS.with(|slots| {
            slots
                .borrow_mut()
                .entry(self.id)
                .or_insert_with(|| WorkerSlot::new(self))
                .wake
                .clone()
        })
    }

    /// Drives `proxy_on_tick` for this worker's VM at the periods its
    /// plugins set, on the worker's own runtime, until the VM is gone.
    fn spawn_ticker(self: &Arc<Self>) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let group = self.clone();
        tokio::spawn(async move {
            while let Some(Some(due)) = group.with_existing_vm(|vm| vm.next_tick()) {
                tokio::time::sleep_until(due.into()).await;
                // Queue notifications are delivered with the ticks: the
                // consumer VM of a worker runs only on that worker.
                match group.with_existing_vm(|vm| {
                    vm.tick(std::time::Instant::now())
                        .and_then(|_| vm.deliver_queue_ready())
                }) {
                    Some(Ok(_)) => group.wake_paused(),
                    Some(Err(e)) => {
                        tracing::error!(target: "polyhost::wasm", vm_id = %group.key.vm_id, error = %e, "proxy_on_tick failed");
                        group.wake_paused();
                    }
                    None => break,
                }
            }
            SLOTS.with(|slots| {
                if let Some(slot) = slots.borrow_mut().get_mut(&group.id) {
                    slot.ticking = false;
                }
            });
        });
    }
}

/// A group's VM on one worker thread.
struct WorkerSlot {
    /// Once the group is gone, the slot is dropped.
    group: Weak<VmGroup>,
    /// The group's [`VmGroup::dispatcher`].
    dispatcher: u64,
    vm: Option<Box<dyn WorkerVm>>,
    /// The members' roots in `vm`.
    roots: Vec<WorkerRoot>,
    /// A tick loop runs for this VM.
    ticking: bool,
    /// Paused requests of this worker wait on it.
    wake: Arc<Notify>,
    /// Roots of removed plugins whose `proxy_on_done` answered false: as in
    /// Envoy, the VM lives (and ticks, and takes callout answers) until
    /// each calls `proxy_done` and gets its `proxy_on_delete`.
    draining: Vec<ContextId>,
    /// The plugin log level `vm` was last given (`None`: not yet, or a
    /// new VM); see [`WorkerSlot::sync_log_level`].
    log_level: Option<LogLevel>,
}

/// A member plugin's root context in a worker's VM.
struct WorkerRoot {
    filter: u64,
    owner: Weak<FilterInner>,
    /// `None`: the root refused to start and its policy does not retry.
    context: Option<ContextId>,
}

impl WorkerSlot {
    fn new(group: &Arc<VmGroup>) -> WorkerSlot {
        spawn_sweeper();
        WorkerSlot {
            group: Arc::downgrade(group),
            dispatcher: group.dispatcher,
            vm: None,
            roots: Vec::new(),
            ticking: false,
            wake: Arc::new(Notify::new()),
            draining: Vec::new(),
            log_level: None,
        }
    }

    /// Gives the VM the plugins' log level when it has changed since it
    /// was last given (an operator's `/logging` while the proxy runs).
    fn sync_log_level(&mut self) {
        let wanted = super::plugin_log_level();
        if self.log_level != Some(wanted)
            && let Some(vm) = self.vm.as_mut()
        {
            vm.set_log_level(wanted);
            self.log_level = Some(wanted);
        }
    }

    /// `filter`'s root context in this worker's VM, starting the VM or the
    /// root as needed.
    fn root_of(&mut self, group: &VmGroup, filter: &Arc<FilterInner>) -> Option<ContextId> {
        if self.vm.as_ref().is_some_and(|vm| vm.is_failed())
            && filter.policy == FailurePolicy::FailReload
        {
            tracing::warn!(target: "polyhost::wasm", plugin = %filter.name, "rebuilding the failed VM (FAIL_RELOAD)");
            self.vm = None;
            self.log_level = None;
            callouts::abandon_worker_calls(self.dispatcher);
            self.roots.clear();
            self.ticking = false;
        }
        if let Some(root) = self.roots.iter().find(|r| r.filter == filter.key) {
            return root.context;
        }
        if self.vm.is_some() {
            return self.add_root(filter);
        }
        let first = match group.factory.new_vm_as(filter.root.clone()) {
            Ok(vm) => {
                let first = vm.first_root();
                self.vm = Some(vm);
                self.log_level = None;
                self.record(filter, Some(first));
                first
            }
            Err(e) => {
                tracing::error!(target: "polyhost::wasm", plugin = %filter.name, error = %e, "cannot start the plugin's VM on this worker");
                self.record_refusal(filter);
                return None;
            }
        };
        // As each Envoy worker starts the root of every plugin of a VM, the
        // other members start with it (a refusal is theirs alone).
        for member in group.live_members() {
            if member.key != filter.key {
                self.add_root(&member);
            }
        }
        Some(first)
    }

    /// After a plugin call: a call that failed the VM leaves its callouts
    /// unsent, and the VM's callouts under way are stopped, since no answer
    /// can be delivered to a failed VM.
    fn abandon_calls_if_failed(&mut self) {
        if self.vm.as_ref().is_some_and(|vm| vm.is_failed()) {
            callouts::discard_pending();
            callouts::abandon_worker_calls(self.dispatcher);
        }
    }

    fn add_root(&mut self, filter: &Arc<FilterInner>) -> Option<ContextId> {
        let vm = self.vm.as_mut()?;
        match vm.add_root(filter.root.clone()) {
            Ok(root) => {
                self.record(filter, Some(root));
                Some(root)
            }
            Err(e) => {
                tracing::error!(target: "polyhost::wasm", plugin = %filter.name, error = %e, "cannot start the plugin's root context on this worker");
                self.record_refusal(filter);
                None
            }
        }
    }

    fn record(&mut self, filter: &Arc<FilterInner>, context: Option<ContextId>) {
        self.roots.push(WorkerRoot {
            filter: filter.key,
            owner: Arc::downgrade(filter),
            context,
        });
    }

    /// A plugin whose start failed is not tried again on this worker,
    /// unless its policy is `FAIL_RELOAD`.
    fn record_refusal(&mut self, filter: &Arc<FilterInner>) {
        if filter.policy != FailurePolicy::FailReload {
            self.record(filter, None);
        }
    }

    /// Shuts down the roots of members that no longer exist, as Envoy runs
    /// `proxy_on_done` and `proxy_on_delete` for a removed plugin. Returns
    /// whether the slot still serves anyone.
    fn drop_dead_roots(&mut self) -> bool {
        let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.roots)
            .into_iter()
            .partition(|r| r.owner.strong_count() == 0);
        self.roots = live;
        if let Some(vm) = self.vm.as_mut().filter(|vm| !vm.is_failed()) {
            for root in dead.iter().filter_map(|r| r.context) {
                match vm.shutdown_root(root) {
                    Ok(Shutdown::Complete) => {}
                    Ok(Shutdown::Pending) => self.draining.push(root),
                    Err(e) => {
                        tracing::warn!(target: "polyhost::wasm", error = %e, "shutting down a removed plugin's root context failed");
                    }
                }
            }
            // Asking again runs no callback: it only says whether the root
            // has called `proxy_done` (and been deleted) since.
            self.draining
                .retain(|root| matches!(vm.shutdown_root(*root), Ok(Shutdown::Pending)));
        } else {
            self.draining.clear();
        }
        let had_roots = !dead.is_empty() || !self.roots.is_empty();
        let serving = self.group.strong_count() > 0 && !(had_roots && self.roots.is_empty());
        serving || !self.draining.is_empty()
    }
}

impl Drop for WorkerSlot {
    /// The VM is going: its callouts under way stop with it.
    fn drop(&mut self) {
        callouts::abandon_worker_calls(self.dispatcher);
    }
}

thread_local! {
    /// This worker's VMs, by group.
    static SLOTS: RefCell<FxHashMap<u64, WorkerSlot>> = RefCell::new(FxHashMap::default());
    /// [`DROPPED_FILTERS`] when this worker last swept its slots.
    static SWEPT_AT: Cell<u64> = const { Cell::new(0) };
    /// Roots of removed plugins this worker's VMs still wait on.
    static DRAINING: Cell<usize> = const { Cell::new(0) };
    /// A task on this worker sweeps its slots after each reload.
    static SWEEPER: Cell<bool> = const { Cell::new(false) };
}

/// Tells the workers' sweepers that filters were dropped.
static FILTERS_DROPPED: LazyLock<watch::Sender<()>> = LazyLock::new(|| watch::Sender::new(()));

/// Counts filters dropped after a reload, so each worker knows when it has
/// roots of dropped filters to shut down (a thread's VMs can only be
/// touched from that thread).
static DROPPED_FILTERS: AtomicU64 = AtomicU64::new(0);

/// Called when a filter is dropped.
pub(super) fn filter_dropped() {
    DROPPED_FILTERS.fetch_add(1, Ordering::Relaxed);
    FILTERS_DROPPED.send_replace(());
}

/// Starts this worker's sweeper, once: after a reload that removed
/// plugins it shuts down their roots and frees their VMs (stopping their
/// callouts), even when no request of the new configuration runs a
/// plugin on this worker. It ends with the worker's last VM.
fn spawn_sweeper() {
    if SWEEPER.get() || tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    SWEEPER.set(true);
    let mut dropped = FILTERS_DROPPED.subscribe();
    tokio::spawn(async move {
        while dropped.changed().await.is_ok() {
            let empty = SLOTS.with(|slots| {
                let mut slots = slots.borrow_mut();
                sweep_dropped_filters(&mut slots);
                slots.is_empty()
            });
            if empty {
                break;
            }
        }
        SWEEPER.set(false);
    });
}

/// Shuts down this worker's roots of filters that no longer exist, and
/// frees VMs no plugin uses any more.
///
/// While a removed plugin's root waits to call `proxy_done`, every use of
/// this worker's VMs looks again, so the VM is freed soon after it does.
fn sweep_dropped_filters(slots: &mut FxHashMap<u64, WorkerSlot>) {
    let dropped = DROPPED_FILTERS.load(Ordering::Relaxed);
    if SWEPT_AT.get() != dropped || DRAINING.get() > 0 {
        SWEPT_AT.set(dropped);
        slots.retain(|_, slot| slot.drop_dead_roots());
        DRAINING.set(slots.values().map(|slot| slot.draining.len()).sum());
    }
}

/// Starts this thread's VM of `filter`'s group now, reporting why it could
/// not start (a singleton service's VM, which no request creates).
pub(super) fn start_vm_here(
    group: &Arc<VmGroup>,
    filter: &Arc<FilterInner>,
) -> Result<(), polyhost::PluginError> {
    let vm = group.factory.new_vm_as(filter.root.clone())?;
    SLOTS.with(|slots| {
        let mut slots = slots.borrow_mut();
        let slot = slots
            .entry(group.id)
            .or_insert_with(|| WorkerSlot::new(group));
        let first = vm.first_root();
        slot.vm = Some(vm);
        slot.log_level = None;
        slot.roots.clear();
        slot.record(filter, Some(first));
    });
    Ok(())
}
