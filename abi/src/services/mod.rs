//! Host services: what a plugin reaches beyond its own stream.
//!
//! Each service is a trait so an embedding proxy can plug in its own (its
//! upstream connection pool, its stats system, ...), and each has an
//! in-memory default good enough for tests, tools and single-process hosts.
//! Services are shared (`Arc`) by every VM of a process, which is what makes
//! shared data, queues and metrics process-wide.

mod callouts;
mod clock;
mod foreign;
mod metrics;
mod properties;
mod queues;
mod shared_data;

pub use callouts::{
    CalloutDispatcher, CalloutQueue, CalloutRequest, GrpcCallout, GrpcStreamOpen, HttpCallout,
};
pub use clock::{Clock, SystemClock, VirtualClock};
pub use foreign::{ForeignFunction, ForeignFunctionRegistry, ForeignFunctions};
pub use metrics::{HistogramSummary, InMemoryMetrics, MetricValue, MetricsSink};
pub use properties::{PropertyProvider, StaticProperties};
pub use queues::{DEFAULT_QUEUED_BYTES, InMemoryQueues, QueueNotifier, SharedQueueRegistry};
pub use shared_data::{DEFAULT_SHARED_DATA_BYTES, InMemorySharedData, SharedDataStore};

use std::sync::Arc;

/// The services a plugin VM uses. Cloning shares them.
#[derive(Clone)]
pub struct HostServices {
    /// Where `proxy_http_call` and the gRPC calls go.
    pub callouts: Arc<dyn CalloutDispatcher>,
    /// Values for `proxy_get_property` beyond what the host derives itself.
    pub properties: Arc<dyn PropertyProvider>,
    /// Counters, gauges and histograms.
    pub metrics: Arc<dyn MetricsSink>,
    /// Process-wide key/value store with compare-and-swap.
    pub shared_data: Arc<dyn SharedDataStore>,
    /// Process-wide message queues.
    pub queues: Arc<dyn SharedQueueRegistry>,
    /// Functions the host offers through `proxy_call_foreign_function`.
    pub foreign: Arc<dyn ForeignFunctions>,
}

impl Default for HostServices {
    fn default() -> Self {
        HostServices {
            callouts: Arc::new(CalloutQueue::default()),
            properties: Arc::new(StaticProperties::default()),
            metrics: Arc::new(InMemoryMetrics::default()),
            shared_data: Arc::new(InMemorySharedData::default()),
            queues: Arc::new(InMemoryQueues::default()),
            foreign: Arc::new(ForeignFunctionRegistry::default()),
        }
    }
}

impl std::fmt::Debug for HostServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostServices").finish_non_exhaustive()
    }
}
