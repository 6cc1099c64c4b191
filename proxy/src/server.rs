//! Putting a configuration together: clusters, plugins, one Pingora service
//! per listener, the admin endpoint, and the server that runs them.

use crate::admin::Admin;
use crate::cluster::ClusterManager;
use crate::config::{Bootstrap, Codec};
use crate::error::ProxyError;
use crate::http::WasmHttpProxy;
use crate::log::LogControl;
use crate::reload::{BuiltListener, FilterSet, Reloader, TableHandle, build_listeners};
use crate::stats::{HttpStats, StatsStore, TcpStats};
use crate::tcp::WasmTcpProxy;
use crate::wasm::{SharedServices, WasmServices};
use async_trait::async_trait;
use pingora::apps::HttpServerOptions;
use pingora::proxy::ProxyServiceBuilder;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;
use polyhost::EngineConfig;
use polyhost::services::{InMemoryMetrics, InMemorySharedData, StaticProperties};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// How the process runs, from `polyhost run`'s flags (Envoy's names).
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Worker threads per listener (`--concurrency`); Envoy's default is
    /// the number of cores.
    pub concurrency: usize,
    /// Separates the files of proxies running side by side (`--base-id`).
    pub base_id: u32,
    /// How long in-flight requests may take to finish when shutting down
    /// gracefully (`--drain-time-s`).
    pub drain_time: Duration,
    /// The configuration file, for `/server_info` and SIGHUP reloads.
    pub config_path: String,
    /// The settings of every plugin's engine: the callback deadline
    /// (`--wasm-call-timeout-ms`), the start-up limit
    /// (`--wasm-startup-timeout-ms`), the memory cap.
    pub engine: EngineConfig,
    /// Lets the admin endpoint's `/logging` change log levels while the
    /// proxy runs; without it `/logging` answers 501.
    pub log_control: Option<Arc<LogControl>>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            concurrency: std::thread::available_parallelism().map_or(1, |n| n.get()),
            base_id: 0,
            drain_time: Duration::from_secs(600),
            config_path: String::new(),
            engine: EngineConfig::default(),
            log_control: None,
        }
    }
}

/// A configuration made ready to serve: clusters resolved, every plugin
/// loaded and started once.
pub struct Proxy {
    listeners: Vec<(String, String, WasmHttpProxy, Codec)>,
    /// TCP listeners: name, address, the proxy.
    tcp_listeners: Vec<(String, String, WasmTcpProxy)>,
    admin: Option<(String, Admin)>,
    quit: Arc<Notify>,
    reloader: Arc<Reloader>,
    /// `envoy.bootstrap.wasm` services, running from start-up on.
    services: WasmServices,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field(
                "listeners",
                &self
                    .listeners
                    .iter()
                    .map(|(n, a, ..)| (n, a))
                    .chain(self.tcp_listeners.iter().map(|(n, a, _)| (n, a)))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Builds the proxy for `bootstrap`.
    ///
    /// # Errors
    /// A plugin that does not load or refuses its configuration, a cluster
    /// name that does not resolve, or a part of the configuration the data
    /// plane does not run yet, each named.
    pub fn new(bootstrap: &Bootstrap, options: &RunOptions) -> Result<Proxy, ProxyError> {
        let clusters = Arc::new(ClusterManager::new(&bootstrap.clusters)?);
        clusters
            .start_dns_refresh()
            .map_err(|e| ProxyError::Server(format!("cannot start the DNS refresh thread: {e}")))?;
        let mut properties = StaticProperties::default()
            .with("node.id", bootstrap.node.id.as_bytes().to_vec())
            .with("node.cluster", bootstrap.node.cluster.as_bytes().to_vec());
        if let Ok(metadata) = serde_json::to_vec(&bootstrap.node.metadata) {
            properties = properties.with("node.metadata", metadata);
        }
        let shared = SharedServices {
            metrics: Arc::new(InMemoryMetrics::default()),
            shared_data: Arc::new(InMemorySharedData::default()),
            queues: Arc::new(crate::wasm::WakingQueues::default()),
            properties: Arc::new(properties),
            engine: options.engine.clone(),
        };
        // Envoy starts its bootstrap extensions before any listener.
        let services = WasmServices::start(&bootstrap.wasm_services, &clusters, &shared)?;
        let mut filters = FilterSet::default();
        let built = build_listeners(
            bootstrap,
            &clusters,
            &shared,
            &FilterSet::default(),
            &mut filters,
        )?;
        let mut listeners = Vec::new();
        let mut tcp_listeners = Vec::new();
        let mut http_stats = Vec::new();
        let mut tcp_stats = Vec::new();
        let mut tables = Vec::new();
        for built in built {
            for filter in built.filters() {
                tracing::info!(target: "polyhost::wasm", plugin = filter.name(), root_id = filter.root_id(), engine = filter.engine_name(), listener = %built.name(), "plugin loaded");
            }
            match built {
                BuiltListener::Http {
                    listener,
                    stat_prefix,
                    codec,
                    table,
                } => {
                    let stats = Arc::new(HttpStats::new(&stat_prefix));
                    http_stats.push(stats.clone());
                    let proxy = WasmHttpProxy::new(&stat_prefix, table, stats);
                    tables.push((
                        listener.name.clone(),
                        listener.address,
                        TableHandle::Http(proxy.table_handle()),
                    ));
                    listeners.push((
                        listener.name.clone(),
                        listener.address.to_string(),
                        proxy,
                        codec,
                    ));
                }
                BuiltListener::Tcp {
                    listener,
                    stat_prefix,
                    table,
                } => {
                    let stats = Arc::new(TcpStats::new(&stat_prefix));
                    tcp_stats.push(stats.clone());
                    let proxy = WasmTcpProxy::new(table, stats);
                    tables.push((
                        listener.name.clone(),
                        listener.address,
                        TableHandle::Tcp(proxy.table_handle()),
                    ));
                    tcp_listeners.push((
                        listener.name.clone(),
                        listener.address.to_string(),
                        proxy,
                    ));
                }
            }
        }
        let reloader = Arc::new(Reloader::new(
            clusters.clone(),
            shared.clone(),
            tables,
            bootstrap.admin.as_ref().map(|a| a.address),
            filters,
            bootstrap.wasm_services.clone(),
        ));
        let quit = Arc::new(Notify::new());
        let stats = Arc::new(
            StatsStore::new(http_stats, clusters.clone(), shared.metrics.clone())
                .with_tcp(tcp_stats),
        );
        let admin = bootstrap.admin.as_ref().map(|admin| {
            (
                admin.address.to_string(),
                Admin {
                    stats,
                    clusters: clusters.clone(),
                    listeners: listeners
                        .iter()
                        .map(|(name, addr, ..)| (name.clone(), addr.clone()))
                        .chain(
                            tcp_listeners
                                .iter()
                                .map(|(name, addr, _)| (name.clone(), addr.clone())),
                        )
                        .collect(),
                    started: Instant::now(),
                    concurrency: options.concurrency,
                    config_path: options.config_path.clone(),
                    log_control: options.log_control.clone(),
                    quit: quit.clone(),
                },
            )
        });
        Ok(Proxy {
            listeners,
            tcp_listeners,
            admin,
            quit,
            reloader,
            services,
        })
    }

    /// Swaps a new configuration in while serving (what SIGHUP does).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Adds the listeners (and the admin endpoint) to a Pingora server as
    /// services. Set `work_stealing = false` in the server's configuration
    /// so each worker owns its plugin VMs. Keep the returned Wasm services
    /// (`envoy.bootstrap.wasm`) alive as long as the server runs: dropping
    /// them stops them.
    #[must_use = "dropping the Wasm services stops them"]
    pub fn add_to_server(self, server: &mut Server) -> WasmServices {
        let conf = server.configuration.clone();
        for (name, address, proxy, codec) in self.listeners {
            let mut options = HttpServerOptions::default();
            // Plaintext HTTP/2 (prior knowledge) unless the listener is
            // HTTP/1 only, as Envoy's AUTO codec sniffs the preface.
            options.h2c = codec != Codec::Http1;
            let mut service = ProxyServiceBuilder::new(&conf, proxy)
                .name(format!("listener {name}"))
                .server_options(options)
                .build();
            service.add_tcp(&address);
            server.add_service(service);
        }
        for (name, address, proxy) in self.tcp_listeners {
            let mut service = Service::new(format!("listener {name}"), proxy);
            service.add_tcp(&address);
            server.add_service(service);
        }
        if let Some((address, admin)) = self.admin {
            let mut service = Service::new("admin".to_string(), admin);
            service.add_tcp(&address);
            server.add_service(service);
        }
        self.services
    }

    /// Signalled when the admin endpoint's `/quitquitquit` is called.
    pub fn quit_signal(&self) -> Arc<Notify> {
        self.quit.clone()
    }

    /// Serves until SIGTERM, SIGINT or `/quitquitquit` (fast shutdown, as
    /// Envoy exits on them), or SIGQUIT (graceful: in-flight requests get
    /// the drain time).
    ///
    /// # Errors
    /// The server cannot be set up.
    pub fn run(self, options: &RunOptions) -> Result<(), ProxyError> {
        let conf = ServerConf {
            threads: options.concurrency.max(1),
            work_stealing: false,
            grace_period_seconds: Some(0),
            graceful_shutdown_timeout_seconds: Some(options.drain_time.as_secs()),
            pid_file: format!("/tmp/polyhost-{}.pid", options.base_id),
            upgrade_sock: format!("/tmp/polyhost-{}-upgrade.sock", options.base_id),
            ..ServerConf::default()
        };
        let mut server = Server::new_with_opt_and_conf(None, conf);
        server.bootstrap();
        let quit = self.quit_signal();
        let reload = (!options.config_path.is_empty())
            .then(|| (PathBuf::from(&options.config_path), self.reloader()));
        let services = self.add_to_server(&mut server);
        tracing::info!(target: "polyhost::main", "starting workers");
        server.run(RunArgs {
            shutdown_signal: Box::new(QuitOrSignal { quit, reload }),
        });
        drop(services);
        Ok(())
    }
}

/// Waits for a signal or `/quitquitquit`, reloading the configuration on
/// SIGHUP meanwhile.
struct QuitOrSignal {
    quit: Arc<Notify>,
    /// The configuration file and where to install it again.
    reload: Option<(PathBuf, Arc<Reloader>)>,
}

impl QuitOrSignal {
    /// Re-reads the configuration file and swaps it in; on any error the
    /// running configuration stays and the log says why.
    async fn reload(&self) {
        let Some((path, reloader)) = self.reload.clone() else {
            tracing::warn!(target: "polyhost::main", "SIGHUP: no configuration file to reload");
            return;
        };
        // Loading plugins compiles them: keep it off the signal task.
        let outcome = tokio::task::spawn_blocking(move || {
            let bootstrap = crate::config::load(&path)?;
            reloader.reload(&bootstrap)
        })
        .await;
        match outcome {
            Ok(Ok(fresh)) => {
                tracing::info!(target: "polyhost::main", plugins_loaded = fresh, "SIGHUP: configuration reloaded")
            }
            Ok(Err(e)) => {
                tracing::error!(target: "polyhost::main", error = %e, "SIGHUP: the new configuration was not loaded; the previous one keeps serving")
            }
            Err(e) => {
                tracing::error!(target: "polyhost::main", error = %e, "SIGHUP: reloading failed; the previous configuration keeps serving")
            }
        }
    }
}

#[async_trait]
impl ShutdownSignalWatch for QuitOrSignal {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut quit_signal), Ok(mut hangup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
            signal(SignalKind::hangup()),
        ) else {
            tracing::error!(target: "polyhost::main", "cannot watch signals; stopping");
            return ShutdownSignal::FastShutdown;
        };
        let signal = loop {
            tokio::select! {
                _ = term.recv() => break ShutdownSignal::FastShutdown,
                _ = int.recv() => break ShutdownSignal::FastShutdown,
                _ = quit_signal.recv() => break ShutdownSignal::GracefulTerminate,
                () = self.quit.notified() => break ShutdownSignal::FastShutdown,
                _ = hangup.recv() => self.reload().await,
            }
        };
        if let ShutdownSignal::FastShutdown = signal {
            // A fast shutdown drains nothing; if a worker runtime does not
            // wind down promptly, end the process as Envoy does.
            std::thread::spawn(|| {
                std::thread::sleep(Duration::from_secs(2));
                tracing::info!(target: "polyhost::main", "exiting");
                std::process::exit(0);
            });
        }
        signal
    }
}
