//! Reloading the configuration while serving (SIGHUP, or
//! [`Reloader::reload`] for embedders).
//!
//! A reload builds everything the new configuration needs first (clusters
//! resolved, every new or changed plugin loaded and started once) and
//! installs nothing if any part fails: the old configuration keeps serving
//! and the error says why. When it succeeds, the clusters and each
//! listener's [`RouteTable`] are swapped at once; requests in flight finish
//! on the routes, filters and VMs they started with.
//!
//! A plugin whose configuration and code are unchanged keeps its VMs (and
//! their state), as Envoy keeps a VM whose code and VM configuration did not
//! change; a new or changed plugin whose VM is configured like a loaded
//! one's joins that VM. Once the last request using a replaced plugin is
//! done, each worker shuts its root context down (`proxy_on_done`,
//! `proxy_on_delete`) and frees the VM when no plugin uses it any more.
//!
//! Listeners are bound when the server starts, so a reload may change what
//! listeners do but not which listeners exist or where they listen; such a
//! configuration is refused with a message saying a restart is needed. The
//! same holds for the Wasm services (`envoy.bootstrap.wasm`), which start
//! with the process.

use crate::access_log::AccessLogger;
use crate::cluster::ClusterManager;
use crate::config::{AccessLog, Bootstrap, Codec, Listener, ListenerKind, WasmPlugin};
use crate::error::ProxyError;
use crate::http::RouteTable;
use crate::tcp::TcpTable;
use crate::wasm::{SharedServices, WasmFilter};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// A plugin loaded for the configuration, with what it was loaded from.
#[derive(Clone)]
struct LoadedFilter {
    config: WasmPlugin,
    filter: WasmFilter,
}

/// The plugins of one configuration.
#[derive(Clone, Default)]
pub(crate) struct FilterSet {
    loaded: Vec<LoadedFilter>,
}

impl FilterSet {
    /// The filter for `plugin`: the one `previous` loaded if its
    /// configuration and code are unchanged, else a newly loaded one.
    fn get_or_load(
        &mut self,
        previous: &FilterSet,
        plugin: &WasmPlugin,
        clusters: &Arc<ClusterManager>,
        shared: &SharedServices,
    ) -> Result<WasmFilter, ProxyError> {
        // Read once: to see whether the code changed, and to load it if so.
        let wasm = WasmFilter::read_code(plugin)?;
        let digest: [u8; 32] = Sha256::digest(&wasm).into();
        let reused = previous
            .loaded
            .iter()
            .find(|old| old.filter.code_digest() == digest && old.config == *plugin);
        let filter = match reused {
            Some(old) => old.filter.clone(),
            None => {
                // A new plugin joins the VM of a loaded one configured the
                // same, old or new, as Envoy keeps a VM whose key is
                // unchanged.
                let others: Vec<WasmFilter> = (self.loaded.iter())
                    .chain(&previous.loaded)
                    .map(|l| l.filter.clone())
                    .collect();
                WasmFilter::load_code_sharing(plugin, wasm, clusters.clone(), shared, &others)?
            }
        };
        self.loaded.push(LoadedFilter {
            config: plugin.clone(),
            filter: filter.clone(),
        });
        Ok(filter)
    }

    fn contains(&self, filter: &WasmFilter) -> bool {
        self.loaded.iter().any(|l| l.filter.same_as(filter))
    }
}

/// One listener's routes or TCP proxy, and its filters, built from a
/// configuration.
pub(crate) enum BuiltListener {
    /// An HTTP connection manager.
    Http {
        listener: Listener,
        stat_prefix: String,
        codec: Codec,
        table: RouteTable,
    },
    /// A `tcp_proxy` with its network filters.
    Tcp {
        listener: Listener,
        stat_prefix: String,
        table: TcpTable,
    },
}

impl BuiltListener {
    pub(crate) fn name(&self) -> &str {
        match self {
            BuiltListener::Http { listener, .. } | BuiltListener::Tcp { listener, .. } => {
                &listener.name
            }
        }
    }

    /// The listener's Wasm filters, in chain order.
    pub(crate) fn filters(&self) -> &[WasmFilter] {
        match self {
            BuiltListener::Http { table, .. } => table.filters(),
            BuiltListener::Tcp { table, .. } => table.filters(),
        }
    }
}

/// Where a running listener's current table is kept, so a reload can
/// replace it.
#[derive(Clone)]
pub(crate) enum TableHandle {
    /// An HTTP listener's routes and filters.
    Http(Arc<ArcSwap<RouteTable>>),
    /// A TCP listener's filters and cluster.
    Tcp(Arc<ArcSwap<TcpTable>>),
}

/// Builds every listener's [`RouteTable`], loading the plugins `previous`
/// does not already have into `loaded`.
///
/// # Errors
/// A plugin that does not load.
pub(crate) fn build_listeners(
    bootstrap: &Bootstrap,
    clusters: &Arc<ClusterManager>,
    shared: &SharedServices,
    previous: &FilterSet,
    loaded: &mut FilterSet,
) -> Result<Vec<BuiltListener>, ProxyError> {
    let mut built = Vec::new();
    for listener in &bootstrap.listeners {
        match &listener.kind {
            ListenerKind::Http(manager) => {
                let mut filters = Vec::new();
                for plugin in &manager.wasm_filters {
                    filters.push(loaded.get_or_load(previous, plugin, clusters, shared)?);
                }
                let access_logs = open_access_logs(&manager.access_logs)?;
                let upstream_logs = open_access_logs(&manager.upstream_logs)?;
                built.push(BuiltListener::Http {
                    listener: listener.clone(),
                    stat_prefix: manager.stat_prefix.clone(),
                    codec: manager.codec,
                    table: RouteTable::new(manager, filters, access_logs, clusters.clone())
                        .with_upstream_logs(upstream_logs),
                });
            }
            ListenerKind::Tcp(proxy) => {
                let mut filters = Vec::new();
                for plugin in &proxy.wasm_filters {
                    filters.push(loaded.get_or_load(previous, plugin, clusters, shared)?);
                }
                let access_logs = open_access_logs(&proxy.access_logs)?;
                built.push(BuiltListener::Tcp {
                    listener: listener.clone(),
                    stat_prefix: proxy.stat_prefix.clone(),
                    table: TcpTable::new(
                        &listener.name,
                        proxy,
                        filters,
                        access_logs,
                        clusters.clone(),
                    ),
                });
            }
        }
    }
    Ok(built)
}

/// Opens a listener's access logs (a file log creates its file).
fn open_access_logs(logs: &[AccessLog]) -> Result<Vec<AccessLogger>, ProxyError> {
    logs.iter()
        .map(|log| {
            AccessLogger::open(&log.sink, log.format.clone(), log.filter.clone()).map_err(
                |message| ProxyError::Invalid {
                    path: log.at.clone(),
                    message,
                },
            )
        })
        .collect()
}

/// Swaps a new configuration into a running proxy. Get it from
/// [`crate::Proxy::reloader`].
pub struct Reloader {
    clusters: Arc<ClusterManager>,
    shared: SharedServices,
    /// Each listener's name, address and the handle of its table.
    tables: Vec<(String, std::net::SocketAddr, TableHandle)>,
    admin: Option<std::net::SocketAddr>,
    /// The plugins serving now; a reload serializes on it.
    current: Mutex<FilterSet>,
    /// The `envoy.bootstrap.wasm` services running since start-up.
    services: Vec<WasmPlugin>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader")
            .field(
                "listeners",
                &self
                    .tables
                    .iter()
                    .map(|(n, a, _)| (n, a))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Reloader {
    pub(crate) fn new(
        clusters: Arc<ClusterManager>,
        shared: SharedServices,
        tables: Vec<(String, std::net::SocketAddr, TableHandle)>,
        admin: Option<std::net::SocketAddr>,
        current: FilterSet,
        services: Vec<WasmPlugin>,
    ) -> Reloader {
        Reloader {
            clusters,
            shared,
            tables,
            admin,
            current: Mutex::new(current),
            services,
        }
    }

    /// Serves `bootstrap` from now on: new requests use its routes,
    /// clusters and plugins; requests in flight finish on the old ones.
    /// Returns how many plugins were loaded anew (unchanged ones keep their
    /// VMs).
    ///
    /// # Errors
    /// Anything that would stop the proxy starting with `bootstrap`, or a
    /// change to the set of listeners or their addresses (those need a
    /// restart). Nothing is changed then.
    pub fn reload(&self, bootstrap: &Bootstrap) -> Result<usize, ProxyError> {
        self.check_same_sockets(bootstrap)?;
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let prepared = self.clusters.prepare(&bootstrap.clusters)?;
        let mut loaded = FilterSet::default();
        let built = build_listeners(
            bootstrap,
            &self.clusters,
            &self.shared,
            &current,
            &mut loaded,
        )?;
        // Everything is ready: install it all at once.
        self.clusters.replace(prepared);
        for listener in built {
            let Some((.., handle)) = self
                .tables
                .iter()
                .find(|(name, ..)| name == listener.name())
            else {
                continue;
            };
            match (handle, listener) {
                (TableHandle::Http(handle), BuiltListener::Http { table, .. }) => {
                    handle.store(Arc::new(table));
                }
                (TableHandle::Tcp(handle), BuiltListener::Tcp { table, .. }) => {
                    handle.store(Arc::new(table));
                }
                // Checked before anything was built: a listener keeps its kind.
                _ => {}
            }
        }
        let fresh = loaded
            .loaded
            .iter()
            .filter(|l| !current.contains(&l.filter))
            .count();
        // Replaced filters are dropped with the old tables once no request
        // uses them; each worker then shuts their root contexts down.
        *current = loaded;
        Ok(fresh)
    }

    fn check_same_sockets(&self, bootstrap: &Bootstrap) -> Result<(), ProxyError> {
        if bootstrap.wasm_services != self.services {
            return Err(ProxyError::Invalid {
                path: "bootstrap_extensions".into(),
                message: "the Wasm services changed; they start with the process, so this needs a restart".into(),
            });
        }
        let restart = |what: String| ProxyError::Invalid {
            path: "static_resources.listeners".into(),
            message: format!("{what}; listeners are bound at start-up, so this needs a restart"),
        };
        for listener in &bootstrap.listeners {
            match self.tables.iter().find(|(name, ..)| *name == listener.name) {
                None => return Err(restart(format!("listener {} is new", listener.name))),
                Some((_, address, _)) if *address != listener.address => {
                    return Err(restart(format!(
                        "listener {} moved from {address} to {}",
                        listener.name, listener.address
                    )));
                }
                Some((.., handle))
                    if matches!(handle, TableHandle::Http(_))
                        != matches!(listener.kind, ListenerKind::Http(_)) =>
                {
                    return Err(restart(format!(
                        "listener {} changed between HTTP and TCP proxying",
                        listener.name
                    )));
                }
                Some(_) => {}
            }
        }
        if let Some((name, ..)) = self
            .tables
            .iter()
            .find(|(name, ..)| !bootstrap.listeners.iter().any(|l| l.name == *name))
        {
            return Err(restart(format!("listener {name} was removed")));
        }
        let admin = bootstrap.admin.as_ref().map(|a| a.address);
        if admin != self.admin {
            return Err(ProxyError::Invalid {
                path: "admin.address".into(),
                message:
                    "the admin address changed; it is bound at start-up, so this needs a restart"
                        .into(),
            });
        }
        Ok(())
    }
}
