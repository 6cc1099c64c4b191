//! Proxy-wasm plugins inside the data plane.
//!
//! A [`WasmFilter`] is one loaded plugin (Envoy's `envoy.filters.http.wasm`
//! or `envoy.filters.network.wasm` entry). As in Envoy, every worker thread
//! owns its own VM of it: the VM is created on the worker the first time a
//! request there needs it and lives in a thread-local slot, so a request's
//! plugin calls never cross threads and never take a lock. Pingora runs with
//! work stealing off (one single-threaded runtime per worker), so a request,
//! the callouts it makes and the ticks of the worker's VM all run on the
//! thread that owns the VM.
//!
//! A plugin that fails (trap, deadline) is handled by its
//! [`FailurePolicy`]: `FAIL_CLOSED` answers 503 for this request and every
//! later one on that worker, `FAIL_OPEN` lets them through unfiltered, and
//! `FAIL_RELOAD` answers 503 and builds a fresh VM for the next request.

mod callouts;
mod singleton;
mod vm;

pub use singleton::WasmServices;

pub(crate) use vm::WorkerVm;

use crate::cluster::ClusterManager;
use crate::config::{FailurePolicy, WasmCode, WasmPlugin};
use crate::error::ProxyError;
use crate::files::{BoundedReadError, read_at_most};
use callouts::WorkerCallouts;
use polyhost::services::{InMemoryMetrics, InMemoryQueues, InMemorySharedData, PropertyProvider};
use polyhost::{AnyEngine, Engine, EngineConfig, EngineVisitor, HostServices, Plugin};
use polyhost::{PluginConfig, PluginError};
use std::cell::Cell;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;
use vm::VmFactory;

/// Services every plugin of one proxy shares: shared data and queues are
/// process-wide (keyed by `vm_id` inside), metrics are one store that the
/// admin endpoint reads.
#[derive(Clone)]
pub struct SharedServices {
    /// Plugin-defined counters, gauges and histograms.
    pub metrics: Arc<InMemoryMetrics>,
    /// `proxy_set_shared_data` / `proxy_get_shared_data`.
    pub shared_data: Arc<InMemorySharedData>,
    /// Shared queues.
    pub queues: Arc<InMemoryQueues>,
    /// Properties of the node (`node.id`, `node.cluster`, ...).
    pub properties: Arc<dyn PropertyProvider>,
    /// The settings every plugin's engine is made with: the callback and
    /// start-up deadlines, the memory cap.
    pub engine: EngineConfig,
}

/// Largest plugin file read from disk; a bigger file is refused before it
/// is read, so a path to a device or a huge file cannot exhaust memory.
const MAX_WASM_FILE_BYTES: u64 = 256 << 20;

/// Distinguishes every loaded filter, so a worker's slot for a filter of an
/// older configuration is never confused with the new one.
static NEXT_FILTER_KEY: AtomicU64 = AtomicU64::new(1);

/// A loaded proxy-wasm plugin, ready to run on any worker. Cheap to clone.
#[derive(Clone)]
pub struct WasmFilter {
    inner: Arc<FilterInner>,
}

struct FilterInner {
    key: u64,
    /// "name (root_id)", for errors.
    label: String,
    /// Set when a reload replaced this filter: its tick loops end, and
    /// workers drop its VMs once the last request using it is done.
    retired: AtomicBool,
    name: String,
    root_id: String,
    policy: FailurePolicy,
    factory: Box<dyn VmFactory>,
    clusters: Arc<ClusterManager>,
}

impl std::fmt::Debug for WasmFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmFilter")
            .field("name", &self.inner.name)
            .field("root_id", &self.inner.root_id)
            .field("engine", &self.engine_name())
            .finish_non_exhaustive()
    }
}

impl WasmFilter {
    /// Loads the plugin `config` describes: reads its code, compiles it on
    /// the engine it asks for, and starts one VM to check that
    /// `proxy_on_vm_start` and `proxy_on_configure` accept the configuration
    /// (a refusal is an error naming the plugin, as Envoy fails startup).
    ///
    /// # Errors
    /// [`ProxyError::Plugin`] naming the plugin for an unreadable file, an
    /// unknown engine, an invalid module or a refused configuration.
    pub fn load(
        config: &WasmPlugin,
        clusters: Arc<ClusterManager>,
        shared: &SharedServices,
    ) -> Result<WasmFilter, ProxyError> {
        let filter = Self::load_unstarted(config, clusters, shared)?;
        // The reference host starts the plugin once on the main thread
        // before any worker does; a refusal fails the whole configuration.
        drop(
            filter
                .inner
                .factory
                .new_vm()
                .map_err(|e| filter.inner_error(e.to_string()))?,
        );
        Ok(filter)
    }

    /// Like [`WasmFilter::load`], without starting a VM: for a singleton
    /// service, whose one VM starts on its own thread
    /// ([`WasmFilter::start_vm_here`]).
    pub(crate) fn load_unstarted(
        config: &WasmPlugin,
        clusters: Arc<ClusterManager>,
        shared: &SharedServices,
    ) -> Result<WasmFilter, ProxyError> {
        let label = plugin_label(config);
        let fail = |message: String| ProxyError::Plugin {
            plugin: label.clone(),
            message,
        };
        let wasm = match &config.code {
            WasmCode::Inline(bytes) => bytes.clone(),
            WasmCode::File(path) => read_bounded(path).map_err(fail)?,
        };
        let engine_name = match &config.engine {
            Some(name) => name.clone(),
            None => AnyEngine::default_name()
                .ok_or_else(|| fail("this build has no engine".into()))?
                .to_string(),
        };
        let engine =
            AnyEngine::by_name(&engine_name, &shared.engine).map_err(|e| fail(e.to_string()))?;
        let services = HostServices {
            callouts: Arc::new(WorkerCallouts::new(clusters.clone())),
            properties: shared.properties.clone(),
            metrics: shared.metrics.clone(),
            shared_data: shared.shared_data.clone(),
            queues: shared.queues.clone(),
            foreign: HostServices::default().foreign,
        };
        let plugin_config = PluginConfig {
            name: config.name.clone(),
            root_id: config.root_id.clone(),
            vm_id: config.vm_id.clone(),
            configuration: String::from_utf8_lossy(&config.configuration).into_owned(),
            vm_configuration: String::from_utf8_lossy(&config.vm_configuration).into_owned(),
            allowed_env: config.host_env_keys.clone(),
            env: config.env.clone(),
            ..PluginConfig::default()
        };
        let factory = engine
            .visit(Loader {
                wasm: &wasm,
                config: plugin_config,
                services,
                precompiled: config.allow_precompiled,
            })
            .map_err(|e| fail(e.to_string()))?;
        Ok(WasmFilter {
            inner: Arc::new(FilterInner {
                key: NEXT_FILTER_KEY.fetch_add(1, Ordering::Relaxed),
                retired: AtomicBool::new(false),
                label,
                name: config.name.clone(),
                root_id: config.root_id.clone(),
                policy: config.failure_policy,
                factory,
                clusters,
            }),
        })
    }

    /// A [`ProxyError::Plugin`] naming this plugin.
    fn inner_error(&self, message: String) -> ProxyError {
        ProxyError::Plugin {
            plugin: self.inner.label.clone(),
            message,
        }
    }

    /// Starts this thread's VM of the plugin now, reporting why it could
    /// not start (a singleton service's VM, which no request creates).
    ///
    /// # Errors
    /// [`ProxyError::Plugin`] with the plugin's error.
    pub(crate) fn start_vm_here(&self) -> Result<(), ProxyError> {
        let vm = self
            .inner
            .factory
            .new_vm()
            .map_err(|e| self.inner_error(e.to_string()))?;
        SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            let slot = slots
                .entry(self.inner.key)
                .or_insert_with(|| Slot::empty(&self.inner));
            slot.vm = Some(vm);
        });
        Ok(())
    }

    /// Marks the filter as replaced by a reload: its tick loops stop, and
    /// each worker drops its VM of it once no request uses it any more.
    pub fn retire(&self) {
        self.inner.retired.store(true, Ordering::Relaxed);
    }

    /// Whether both are the same loaded filter (not just equal configs).
    pub fn same_as(&self, other: &WasmFilter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The plugin's `name`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The plugin's `root_id`.
    pub fn root_id(&self) -> &str {
        &self.inner.root_id
    }

    /// What happens to traffic when the plugin fails.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }

    /// The engine the plugin runs on.
    pub fn engine_name(&self) -> &'static str {
        self.inner.factory.engine_name()
    }

    /// Runs `f` with this worker's VM of the plugin, creating the VM on
    /// first use (and again after a failure under `FAIL_RELOAD`). Callouts
    /// the plugin made during `f` are started afterwards, and paused
    /// requests are woken if `f` may have resumed them.
    ///
    /// Returns [`VmUnavailable`] when this worker's VM has failed (or could
    /// not be created) and the policy does not rebuild it; `f` is not run.
    pub(crate) fn with_vm<R>(
        &self,
        f: impl FnOnce(&mut dyn WorkerVm) -> R,
    ) -> Result<R, VmUnavailable> {
        let result = SLOTS.with(|slots| {
            let mut slots = slots.borrow_mut();
            sweep_dropped_filters(&mut slots);
            let slot = slots
                .entry(self.inner.key)
                .or_insert_with(|| Slot::empty(&self.inner));
            if slot.vm.as_ref().is_some_and(|vm| vm.is_failed())
                && self.inner.policy == FailurePolicy::FailReload
            {
                tracing::warn!(target: "polyhost::wasm", plugin = %self.inner.name, "rebuilding the failed VM (FAIL_RELOAD)");
                slot.vm = None;
                slot.ticking = false;
            }
            if slot.vm.is_none() && !slot.create_failed {
                match self.inner.factory.new_vm() {
                    Ok(vm) => slot.vm = Some(vm),
                    Err(e) => {
                        tracing::error!(target: "polyhost::wasm", plugin = %self.inner.name, error = %e, "cannot start the plugin's VM on this worker");
                        slot.create_failed = self.inner.policy != FailurePolicy::FailReload;
                        return Err(VmUnavailable);
                    }
                }
            }
            let vm = slot.vm.as_mut().ok_or(VmUnavailable)?;
            if vm.is_failed() {
                return Err(VmUnavailable);
            }
            let out = f(vm.as_mut());
            let start_ticker = !slot.ticking && vm.next_tick().is_some();
            slot.ticking |= start_ticker;
            Ok((out, start_ticker))
        });
        let (out, start_ticker) = result?;
        callouts::start_pending(self);
        if start_ticker {
            self.spawn_ticker();
        }
        Ok(out)
    }

    /// Wakes the requests of this worker that wait for the plugin to resume
    /// them (after a callout answer or a tick).
    pub(crate) fn wake_paused(&self) {
        let notify = self.pause_notifier();
        notify.notify_waiters();
    }

    /// What a paused request of this worker waits on.
    pub(crate) fn pause_notifier(&self) -> Arc<Notify> {
        SLOTS.with(|slots| {
            slots
                .borrow_mut()
                .entry(self.inner.key)
                .or_insert_with(|| Slot::empty(&self.inner))
                .wake
                .clone()
        })
    }

    pub(crate) fn clusters(&self) -> &Arc<ClusterManager> {
        &self.inner.clusters
    }

    /// Drives `proxy_on_tick` for this worker's VM at the period the plugin
    /// set, on the worker's own runtime.
    fn spawn_ticker(&self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let filter = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(due)) = filter.with_vm_quiet(|vm| vm.next_tick()) {
                tokio::time::sleep_until(due.into()).await;
                if filter.inner.retired.load(Ordering::Relaxed) {
                    break;
                }
                // Queue notifications are delivered with the ticks: the
                // consumer VM of a worker runs only on that worker.
                match filter.with_vm(|vm| {
                    vm.tick(std::time::Instant::now())
                        .and_then(|_| vm.deliver_queue_ready())
                }) {
                    Ok(Ok(_)) => filter.wake_paused(),
                    Ok(Err(e)) => {
                        tracing::error!(target: "polyhost::wasm", plugin = %filter.inner.name, error = %e, "proxy_on_tick failed");
                        filter.wake_paused();
                    }
                    Err(VmUnavailable) => break,
                }
            }
            SLOTS.with(|slots| {
                if let Some(slot) = slots.borrow_mut().get_mut(&filter.inner.key) {
                    slot.ticking = false;
                }
            });
        });
    }

    /// Like [`WasmFilter::with_vm`] but never creates or rebuilds a VM.
    fn with_vm_quiet<R>(&self, f: impl FnOnce(&dyn WorkerVm) -> R) -> Result<R, VmUnavailable> {
        SLOTS.with(|slots| {
            let slots = slots.borrow();
            let vm = slots
                .get(&self.inner.key)
                .and_then(|s| s.vm.as_ref())
                .ok_or(VmUnavailable)?;
            if vm.is_failed() {
                return Err(VmUnavailable);
            }
            Ok(f(vm.as_ref()))
        })
    }
}

/// This worker's VM of a plugin has failed or could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VmUnavailable;

/// One plugin's VM on one worker thread.
struct Slot {
    /// The filter the VM belongs to; once it is gone (replaced by a reload
    /// and no request uses it), the slot is dropped.
    owner: Weak<FilterInner>,
    vm: Option<Box<dyn WorkerVm>>,
    /// Starting a VM failed and the policy does not retry.
    create_failed: bool,
    /// A tick loop runs for this VM.
    ticking: bool,
    /// Paused requests of this worker wait on it.
    wake: Arc<Notify>,
}

impl Slot {
    fn empty(owner: &Arc<FilterInner>) -> Slot {
        Slot {
            owner: Arc::downgrade(owner),
            vm: None,
            create_failed: false,
            ticking: false,
            wake: Arc::new(Notify::new()),
        }
    }
}

thread_local! {
    /// This worker's VMs, by filter key.
    static SLOTS: RefCell<HashMap<u64, Slot>> = RefCell::new(HashMap::new());
    /// [`DROPPED_FILTERS`] when this worker last swept its slots.
    static SWEPT_AT: Cell<u64> = const { Cell::new(0) };
}

/// Counts filters dropped after a reload, so each worker knows when it has
/// VMs of dropped filters to free (a thread's slots can only be touched from
/// that thread).
static DROPPED_FILTERS: AtomicU64 = AtomicU64::new(0);

impl Drop for FilterInner {
    fn drop(&mut self) {
        DROPPED_FILTERS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Frees this worker's VMs of filters that no longer exist.
fn sweep_dropped_filters(slots: &mut HashMap<u64, Slot>) {
    let dropped = DROPPED_FILTERS.load(Ordering::Relaxed);
    if SWEPT_AT.get() != dropped {
        SWEPT_AT.set(dropped);
        slots.retain(|_, slot| slot.owner.strong_count() > 0);
    }
}

/// "name (root_id)" or just the name, for errors.
fn plugin_label(config: &WasmPlugin) -> String {
    match (config.name.is_empty(), config.root_id.is_empty()) {
        (true, true) => "<unnamed plugin>".to_string(),
        (false, true) => config.name.clone(),
        (true, false) => format!("root_id {}", config.root_id),
        (false, false) => format!("{} (root_id {})", config.name, config.root_id),
    }
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    read_at_most(path, MAX_WASM_FILE_BYTES).map_err(|e| match e {
        BoundedReadError::Io(e) => format!("cannot read {}: {e}", path.display()),
        BoundedReadError::TooLarge => format!(
            "{} is larger than {} MiB",
            path.display(),
            MAX_WASM_FILE_BYTES >> 20
        ),
    })
}

/// Loads a plugin on the engine chosen at run time.
struct Loader<'a> {
    wasm: &'a [u8],
    config: PluginConfig,
    services: HostServices,
    /// `vm_config.allow_precompiled`: load through the module cache in the
    /// platform cache directory (`~/.cache/polyhost` on Linux), the one
    /// `polyhost compile` fills.
    precompiled: bool,
}

impl EngineVisitor for Loader<'_> {
    type Output = Result<Box<dyn VmFactory>, PluginError>;
    fn visit<E: Engine>(self, engine: E) -> Self::Output {
        let module = if self.precompiled {
            polyhost::check_binary(&self.config.name, self.wasm)?;
            cached_module(&engine, self.wasm, &self.config.name)?
        } else {
            None
        };
        let plugin = match module {
            Some(module) => Plugin::from_module(&engine, module, self.config, self.services)?,
            None => Plugin::load(&engine, self.wasm, self.config, self.services)?,
        };
        Ok(Box::new(plugin))
    }
}

/// The module from the cache, compiling and storing it on a miss. The cache
/// only saves start-up time, so when it cannot be used (no cache directory,
/// a folder others can write, a full disk) the plugin is compiled in memory
/// and a warning names the reason; `None` says so.
fn cached_module<E: Engine>(
    engine: &E,
    wasm: &[u8],
    plugin: &str,
) -> Result<Option<E::Module>, PluginError> {
    use polyhost::cache::{CacheError, ModuleCache};
    let loaded = ModuleCache::at_default_location().and_then(|cache| cache.load(engine, wasm));
    match loaded {
        Ok(loaded) => {
            tracing::debug!(target: "polyhost::wasm", plugin, outcome = ?loaded.outcome, "module cache");
            Ok(Some(loaded.module))
        }
        Err(CacheError::Engine(e)) => Err(PluginError::from_engine(plugin, e)),
        Err(e) => {
            tracing::warn!(target: "polyhost::wasm", plugin, "not using the module cache: {e}");
            Ok(None)
        }
    }
}
