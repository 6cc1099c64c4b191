//! Wasm services (`bootstrap_extensions` of type `envoy.bootstrap.wasm`):
//! plugins that run outside any request, with a root context only.
//!
//! Envoy runs a singleton service's one VM on its main thread. Here each
//! service gets a thread of its own with a single-threaded runtime, so its
//! ticks, callouts and queue deliveries run exactly as a worker's do (and a
//! slow service never delays the signal handling of the main thread). The
//! VM starts before the listeners open; a service that does not start fails
//! the configuration, naming the plugin.
//!
//! Queue notifications (`proxy_on_queue_ready`) are delivered as soon as a
//! producer on any thread enqueues: the service's thread sleeps until one
//! of its queues has data ([`super::queues`]).

use super::WasmFilter;
use crate::cluster::ClusterManager;
use crate::config::WasmPlugin;
use crate::error::ProxyError;
use crate::wasm::SharedServices;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use tokio::sync::Notify;

/// The running Wasm services; dropping it stops them.
pub struct WasmServices {
    services: Vec<RunningService>,
}

struct RunningService {
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for WasmServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmServices")
            .field("running", &self.services.len())
            .finish()
    }
}

impl WasmServices {
    /// Loads every service and starts its VM on its own thread; returns
    /// once all have started (`proxy_on_vm_start`, `proxy_on_configure`).
    ///
    /// # Errors
    /// The first service that does not load or start, named.
    pub fn start(
        services: &[WasmPlugin],
        clusters: &Arc<ClusterManager>,
        shared: &SharedServices,
    ) -> Result<WasmServices, ProxyError> {
        let mut running = WasmServices {
            services: Vec::new(),
        };
        for config in services {
            let filter = WasmFilter::load_unstarted(config, clusters.clone(), shared, &[])?;
            running.services.push(run(filter)?);
        }
        Ok(running)
    }
}

/// Starts `filter`'s VM on a new thread and keeps it serving there.
fn run(filter: WasmFilter) -> Result<RunningService, ProxyError> {
    let stop = Arc::new(Notify::new());
    let (started_tx, started_rx) = mpsc::channel();
    let name = format!("wasm-service-{}", filter.name());
    let thread_filter = filter.clone();
    let thread_stop = stop.clone();
    let thread = std::thread::Builder::new()
        .name(name)
        .spawn(move || serve(thread_filter, thread_stop, started_tx))
        .map_err(|e| ProxyError::Server(format!("cannot start a Wasm service thread: {e}")))?;
    let service = RunningService {
        stop,
        thread: Some(thread),
    };
    match started_rx.recv() {
        Ok(Ok(())) => {
            tracing::info!(target: "polyhost::wasm", plugin = filter.name(), root_id = filter.root_id(), engine = filter.engine_name(), "wasm service started");
            Ok(service)
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ProxyError::Server(format!(
            "the thread of Wasm service {} ended before it started",
            filter.name()
        ))),
    }
}

/// The service thread: start the VM, then deliver queue notifications as
/// producers enqueue (ticks and callouts run as tasks on the same runtime)
/// until stopped.
fn serve(filter: WasmFilter, stop: Arc<Notify>, started: mpsc::Sender<Result<(), ProxyError>>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = started.send(Err(ProxyError::Server(format!(
                "cannot start the runtime of Wasm service {}: {e}",
                filter.name()
            ))));
            return;
        }
    };
    // Set before the VM starts: plugins register their queues in
    // `proxy_on_vm_start` / `proxy_on_configure`.
    let queue_ready = Arc::new(Notify::new());
    super::queues::wake_this_thread_on_enqueue(queue_ready.clone());
    runtime.block_on(async move {
        let outcome = filter.start_vm_here();
        let ok = outcome.is_ok();
        let _ = started.send(outcome);
        if !ok {
            return;
        }
        // Ticks and callouts made during start-up begin now.
        let _ = filter.with_vm(|_| ());
        loop {
            tokio::select! {
                () = stop.notified() => break,
                () = queue_ready.notified() => {
                    match filter.with_vm(|vm| vm.deliver_queue_ready()) {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => {
                            tracing::error!(target: "polyhost::wasm", plugin = %filter.name(), error = %e, "proxy_on_queue_ready failed");
                        }
                        // The VM failed; its policy decides whether it is
                        // rebuilt on the next poll.
                        Err(_) => {}
                    }
                }
            }
        }
    });
}

impl Drop for WasmServices {
    fn drop(&mut self) {
        for service in &mut self.services {
            service.stop.notify_one();
            if let Some(thread) = service.thread.take() {
                let _ = thread.join();
            }
        }
    }
}
