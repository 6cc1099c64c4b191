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
//! Plugins whose VM is configured the same (engine, `vm_id`, code, VM
//! configuration, environment) share one VM per worker, each with a root
//! context of its own, as in Envoy; see [`group`].
//!
//! A plugin that fails (trap, deadline) is handled by its
//! [`FailurePolicy`]: `FAIL_CLOSED` answers 503 for this request and every
//! later one on that worker, `FAIL_OPEN` lets them through unfiltered, and
//! `FAIL_RELOAD` answers 503 and builds a fresh VM for the next request.

mod callouts;
mod group;
mod queues;
mod singleton;
mod vm;

pub use singleton::WasmServices;

pub(crate) use vm::WorkerVm;

use crate::cluster::ClusterManager;
use crate::config::{FailurePolicy, WasmCode, WasmPlugin};
use crate::error::ProxyError;
use crate::files::{BoundedReadError, read_at_most};
use callouts::WorkerCallouts;
use group::{VmGroup, VmKey};
use polyhost::services::{InMemoryMetrics, InMemorySharedData, PropertyProvider};
use polyhost::{AnyEngine, ContextId, Engine, EngineConfig, EngineVisitor, HostServices, Plugin};
use polyhost::{LogLevel, PluginConfig, PluginError, RootConfig};
pub use queues::WakingQueues;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
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
    /// Shared queues; enqueueing wakes the Wasm service that registered
    /// the queue.
    pub queues: Arc<WakingQueues>,
    /// Properties of the node (`node.id`, `node.cluster`, ...).
    pub properties: Arc<dyn PropertyProvider>,
    /// The settings every plugin's engine is made with: the callback and
    /// start-up deadlines, the memory cap.
    pub engine: EngineConfig,
}

/// Largest plugin file read from disk; a bigger file is refused before it
/// is read, so a path to a device or a huge file cannot exhaust memory.
const MAX_WASM_FILE_BYTES: u64 = 256 << 20;

/// Distinguishes every loaded filter, so a worker's root of a filter of an
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
    name: String,
    /// Its root context: name, root id, configuration.
    root: RootConfig,
    policy: FailurePolicy,
    /// The plugins it shares a VM with, and their module.
    group: Arc<VmGroup>,
}

impl Drop for FilterInner {
    fn drop(&mut self) {
        group::filter_dropped();
    }
}

impl std::fmt::Debug for WasmFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmFilter")
            .field("name", &self.inner.name)
            .field("root_id", &self.inner.root.root_id)
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
        Self::load_sharing(config, clusters, shared, &[])
    }

    /// Like [`WasmFilter::load`], sharing the VM of a filter in `others`
    /// whose VM is configured the same (same engine, `vm_id`, code, VM
    /// configuration and environment), as Envoy does: the module is not
    /// compiled again, and on each worker the plugin gets a root context of
    /// its own in that filter's VM.
    ///
    /// # Errors
    /// As [`WasmFilter::load`].
    pub fn load_sharing(
        config: &WasmPlugin,
        clusters: Arc<ClusterManager>,
        shared: &SharedServices,
        others: &[WasmFilter],
    ) -> Result<WasmFilter, ProxyError> {
        let wasm = Self::read_code(config)?;
        Self::load_code_sharing(config, wasm, clusters, shared, others)
    }

    /// The module bytes `config` names: inline, or read from its file
    /// (bounded in size); an error names the plugin.
    pub(crate) fn read_code(config: &WasmPlugin) -> Result<Vec<u8>, ProxyError> {
        match &config.code {
            WasmCode::Inline(bytes) => Ok(bytes.clone()),
            WasmCode::File(path) => read_bounded(path).map_err(|message| ProxyError::Plugin {
                plugin: plugin_label(config),
                message,
            }),
        }
    }

    /// SHA-256 of the module bytes this filter was loaded from.
    pub(crate) fn code_digest(&self) -> [u8; 32] {
        self.inner.group.key.code
    }

    /// [`WasmFilter::load_sharing`] with the module bytes already read
    /// ([`WasmFilter::read_code`]), so a reload that has read them to see
    /// whether the plugin changed does not read the file again.
    pub(crate) fn load_code_sharing(
        config: &WasmPlugin,
        wasm: Vec<u8>,
        clusters: Arc<ClusterManager>,
        shared: &SharedServices,
        others: &[WasmFilter],
    ) -> Result<WasmFilter, ProxyError> {
        let filter = Self::load_code(config, wasm, clusters, shared, others)?;
        // The reference host starts the plugin once on the main thread
        // before any worker does; a refusal fails the whole configuration.
        let inner = &filter.inner;
        drop(
            (inner.group.factory)
                .new_vm_as(inner.root.clone())
                .map_err(|e| filter.inner_error(e.to_string()))?,
        );
        Ok(filter)
    }

    /// Like [`WasmFilter::load_sharing`], without starting a VM: for a
    /// singleton service, whose one VM starts on its own thread
    /// ([`WasmFilter::start_vm_here`]).
    pub(crate) fn load_unstarted(
        config: &WasmPlugin,
        clusters: Arc<ClusterManager>,
        shared: &SharedServices,
        others: &[WasmFilter],
    ) -> Result<WasmFilter, ProxyError> {
        let wasm = Self::read_code(config)?;
        Self::load_code(config, wasm, clusters, shared, others)
    }

    /// Loads (or joins the VM group of) a filter from module bytes, without
    /// starting a VM.
    fn load_code(
        config: &WasmPlugin,
        wasm: Vec<u8>,
        clusters: Arc<ClusterManager>,
        shared: &SharedServices,
        others: &[WasmFilter],
    ) -> Result<WasmFilter, ProxyError> {
        let label = plugin_label(config);
        let fail = |message: String| ProxyError::Plugin {
            plugin: label.clone(),
            message,
        };
        let engine_name = match &config.engine {
            Some(name) => name.clone(),
            None => AnyEngine::default_name()
                .ok_or_else(|| fail("this build has no engine".into()))?
                .to_string(),
        };
        let key = VmKey {
            engine: engine_name,
            vm_id: config.vm_id.clone(),
            vm_configuration: config.vm_configuration.clone(),
            code: Sha256::digest(&wasm).into(),
            env: config.env.clone(),
            host_env_keys: config.host_env_keys.clone(),
            allow_precompiled: config.allow_precompiled,
        };
        let existing = others
            .iter()
            .map(|other| &other.inner.group)
            .find(|group| group.key == key);
        let group = match existing {
            Some(group) => group.clone(),
            None => Self::load_group(config, key, &wasm, clusters, shared).map_err(fail)?,
        };
        let inner = Arc::new(FilterInner {
            key: NEXT_FILTER_KEY.fetch_add(1, Ordering::Relaxed),
            label,
            name: config.name.clone(),
            root: RootConfig::new(
                config.name.clone(),
                config.root_id.clone(),
                config.configuration.clone(),
            ),
            policy: config.failure_policy,
            group: group.clone(),
        });
        group.join(&inner);
        Ok(WasmFilter { inner })
    }

    /// Compiles the module of a new VM group on its engine.
    fn load_group(
        config: &WasmPlugin,
        key: VmKey,
        wasm: &[u8],
        clusters: Arc<ClusterManager>,
        shared: &SharedServices,
    ) -> Result<Arc<VmGroup>, String> {
        let engine = AnyEngine::by_name(&key.engine, &shared.engine).map_err(|e| e.to_string())?;
        let callouts = Arc::new(WorkerCallouts::new(clusters.clone()));
        let dispatcher = callouts.id();
        let services = HostServices {
            callouts,
            properties: shared.properties.clone(),
            metrics: shared.metrics.clone(),
            shared_data: shared.shared_data.clone(),
            queues: shared.queues.clone(),
            foreign: HostServices::default().foreign,
        };
        // What the members have in common; each one's own name, root id
        // and configuration come with its root context.
        let plugin_config = PluginConfig {
            name: config.name.clone(),
            root_id: config.root_id.clone(),
            vm_id: config.vm_id.clone(),
            configuration: String::from_utf8_lossy(&config.configuration).into_owned(),
            vm_configuration: String::from_utf8_lossy(&config.vm_configuration).into_owned(),
            allowed_env: config.host_env_keys.clone(),
            env: config.env.clone(),
            log_level: refresh_plugin_log_level(),
            ..PluginConfig::default()
        };
        let factory = engine
            .visit(Loader {
                wasm,
                config: plugin_config,
                services,
                precompiled: config.allow_precompiled,
            })
            .map_err(|e| e.to_string())?;
        Ok(VmGroup::new(key, factory, clusters, dispatcher))
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
        group::start_vm_here(&self.inner.group, &self.inner)
            .map_err(|e| self.inner_error(e.to_string()))
    }

    /// Whether both are the same loaded filter (not just equal configs).
    pub fn same_as(&self, other: &WasmFilter) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether both run in the same VM on each worker.
    pub fn shares_vm_with(&self, other: &WasmFilter) -> bool {
        Arc::ptr_eq(&self.inner.group, &other.inner.group)
    }

    /// The plugin's `name`.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The plugin's `root_id`.
    pub fn root_id(&self) -> &str {
        &self.inner.root.root_id
    }

    /// What happens to traffic when the plugin fails.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }

    /// The engine the plugin runs on.
    pub fn engine_name(&self) -> &'static str {
        self.inner.group.factory.engine_name()
    }

    /// Runs `f` with this worker's VM of the plugin, creating the VM on
    /// first use (and again after a failure under `FAIL_RELOAD`). Callouts
    /// the plugin made during `f` are started afterwards.
    ///
    /// Returns [`VmUnavailable`] when this worker's VM has failed (or could
    /// not be created) and the policy does not rebuild it; `f` is not run.
    pub(crate) fn with_vm<R>(
        &self,
        f: impl FnOnce(&mut dyn WorkerVm) -> R,
    ) -> Result<R, VmUnavailable> {
        self.with_vm_as(|vm, _| f(vm))
    }

    /// Like [`WasmFilter::with_vm`], also passing the plugin's root context
    /// in the VM (which other plugins may share), under which its streams
    /// are created.
    pub(crate) fn with_vm_as<R>(
        &self,
        f: impl FnOnce(&mut dyn WorkerVm, ContextId) -> R,
    ) -> Result<R, VmUnavailable> {
        (self.inner.group)
            .with_vm_as(&self.inner, f)
            .ok_or(VmUnavailable)
    }

    /// What a paused request of this worker waits on: a callout answer or
    /// a tick in the plugin's VM.
    pub(crate) fn pause_notifier(&self) -> Arc<Notify> {
        self.inner.group.pause_notifier()
    }
}

/// This worker's VM of a plugin has failed or could not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VmUnavailable;

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

/// The plugins' log level (a [`LogLevel`] as a number), process-wide as
/// the `tracing` subscriber is; see [`refresh_plugin_log_level`].
static PLUGIN_LOG_LEVEL: AtomicU8 = AtomicU8::new(LogLevel::Info as u8);

/// The plugins' log level as last read from the `tracing` subscriber.
pub(crate) fn plugin_log_level() -> LogLevel {
    LogLevel::from_raw(i32::from(PLUGIN_LOG_LEVEL.load(Ordering::Relaxed)))
        .unwrap_or(LogLevel::Info)
}

/// Reads the plugins' log level from the `tracing` subscriber again (at a
/// plugin's load, and after the admin's `/logging` changed the filter);
/// every worker gives it to its VMs when it next uses them.
pub(crate) fn refresh_plugin_log_level() -> LogLevel {
    let level = wasm_log_level();
    PLUGIN_LOG_LEVEL.store(level as u8, Ordering::Relaxed);
    level
}

/// The plugins' log level as Envoy gives it to `proxy_get_log_level`: the
/// lowest level the `wasm` component logs at (`-l`, or
/// `--component-log-level wasm:LEVEL`), read from the installed `tracing`
/// subscriber. SDKs that ask skip formatting lines nobody will see, and
/// lines below it are dropped before they cross into the host's log.
/// With no subscriber nothing is logged, and the level is `critical`.
fn wasm_log_level() -> LogLevel {
    use tracing::Level;
    const TARGET: &str = "polyhost::plugin";
    if tracing::enabled!(target: TARGET, Level::TRACE) {
        LogLevel::Trace
    } else if tracing::enabled!(target: TARGET, Level::DEBUG) {
        LogLevel::Debug
    } else if tracing::enabled!(target: TARGET, Level::INFO) {
        LogLevel::Info
    } else if tracing::enabled!(target: TARGET, Level::WARN) {
        LogLevel::Warn
    } else if tracing::enabled!(target: TARGET, Level::ERROR) {
        LogLevel::Error
    } else {
        LogLevel::Critical
    }
}
