//! The host services of a `polyhost call` run: the library's in-memory
//! ones, wrapped to remember what the plugin touched so the run can list
//! what it left behind.

use super::report::{Leftovers, Metric};
use anyhow::{Result, bail};
use polyhost::Status;
use polyhost::services::{
    CalloutQueue, HostServices, InMemoryMetrics, InMemoryQueues, InMemorySharedData, MetricValue,
    QueueNotifier, SharedDataStore, SharedQueueRegistry, StaticProperties,
};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

/// Shared data that remembers which keys were written.
#[derive(Default)]
struct RecordedSharedData {
    store: InMemorySharedData,
    written: Mutex<BTreeSet<(String, Vec<u8>)>>,
}

impl SharedDataStore for RecordedSharedData {
    fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.store.get(vm_id, key)
    }

    fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
        self.store.set(vm_id, key, value, cas)?;
        let entry = (vm_id.to_string(), key.to_vec());
        self.written.lock().expect("poisoned").insert(entry);
        Ok(())
    }
}

/// One registered queue and how many messages wait in it.
struct QueueRecord {
    vm_id: String,
    name: String,
    id: u32,
    waiting: usize,
}

/// Queues that remember which were registered and what is left in them.
#[derive(Default)]
struct RecordedQueues {
    queues: InMemoryQueues,
    registered: Mutex<Vec<QueueRecord>>,
}

impl RecordedQueues {
    fn count(&self, id: u32, change: impl Fn(usize) -> usize) {
        let mut registered = self.registered.lock().expect("poisoned");
        if let Some(q) = registered.iter_mut().find(|q| q.id == id) {
            q.waiting = change(q.waiting);
        }
    }
}

impl SharedQueueRegistry for RecordedQueues {
    fn register(&self, vm_id: &str, name: &str, notify: QueueNotifier) -> u32 {
        let id = self.queues.register(vm_id, name, notify);
        let mut registered = self.registered.lock().expect("poisoned");
        if !registered.iter().any(|q| q.id == id) {
            registered.push(QueueRecord {
                vm_id: vm_id.to_string(),
                name: name.to_string(),
                id,
                waiting: 0,
            });
        }
        id
    }

    fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        self.queues.resolve(vm_id, name)
    }

    fn enqueue(&self, id: u32, data: &[u8]) -> Result<(), Status> {
        self.queues.enqueue(id, data)?;
        self.count(id, |n| n + 1);
        Ok(())
    }

    fn dequeue(&self, id: u32) -> Result<Vec<u8>, Status> {
        let message = self.queues.dequeue(id)?;
        self.count(id, |n| n.saturating_sub(1));
        Ok(message)
    }
}

/// The services of one run, with handles on what the run reports.
pub struct RunServices {
    /// What the plugin gets.
    pub host: HostServices,
    /// Callouts the plugin made, for the run to answer.
    pub callouts: Arc<CalloutQueue>,
    metrics: Arc<InMemoryMetrics>,
    shared_data: Arc<RecordedSharedData>,
    queues: Arc<RecordedQueues>,
}

/// Parses `--property PATH=VALUE` (`PATH` dotted, e.g. `node.metadata.team`;
/// a value `int:N` is an integer, as Envoy encodes them).
///
/// # Errors
/// No `=`, an empty path, or `int:` with something that is not an integer.
fn properties(given: &[String]) -> Result<StaticProperties> {
    let mut properties = StaticProperties::default();
    for raw in given {
        let Some((path, value)) = raw.split_once('=') else {
            bail!("--property `{raw}` is not PATH=VALUE");
        };
        let path = path.trim();
        if path.is_empty() || path.split('.').any(str::is_empty) {
            bail!("--property `{raw}`: the path `{path}` has an empty segment");
        }
        properties = match value.strip_prefix("int:") {
            Some(n) => match n.trim().parse::<i64>() {
                Ok(n) => properties.with_int(path, n),
                Err(_) => bail!("--property `{raw}`: `{n}` is not an integer"),
            },
            None => properties.with(path, value.as_bytes().to_vec()),
        };
    }
    Ok(properties)
}

impl RunServices {
    /// In-memory services with the `--property` values.
    ///
    /// # Errors
    /// A malformed `--property`.
    pub fn new(property_args: &[String]) -> Result<Self> {
        let callouts = Arc::new(CalloutQueue::default());
        let metrics = Arc::new(InMemoryMetrics::default());
        let shared_data = Arc::new(RecordedSharedData::default());
        let queues = Arc::new(RecordedQueues::default());
        let host = HostServices {
            callouts: callouts.clone(),
            properties: Arc::new(properties(property_args)?),
            metrics: metrics.clone(),
            shared_data: shared_data.clone(),
            queues: queues.clone(),
            ..HostServices::default()
        };
        Ok(RunServices {
            host,
            callouts,
            metrics,
            shared_data,
            queues,
        })
    }

    /// Fills in the metrics, shared data and queues the plugin left.
    pub fn leftovers(&self, into: &mut Leftovers) {
        into.metrics = (self.metrics.snapshot().into_iter())
            .map(|(name, value)| {
                let (kind, value) = match value {
                    MetricValue::Counter(n) => ("counter", serde_json::json!(n)),
                    MetricValue::Gauge(n) => ("gauge", serde_json::json!(n)),
                    MetricValue::Histogram(samples) => ("histogram", serde_json::json!(samples)),
                };
                Metric { name, kind, value }
            })
            .collect();
        let written = self.shared_data.written.lock().expect("poisoned").clone();
        into.shared_data = (written.into_iter())
            .filter_map(|(vm_id, key)| {
                let (value, _) = self.shared_data.get(&vm_id, &key)?;
                Some((
                    vm_id,
                    String::from_utf8_lossy(&key).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                ))
            })
            .collect();
        into.queues = (self.queues.registered.lock().expect("poisoned").iter())
            .map(|q| (q.vm_id.clone(), q.name.clone(), q.waiting))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyhost::services::PropertyProvider;

    #[test]
    fn properties_are_dotted_strings_or_integers() {
        let p = properties(&[
            "node.metadata.team=edge".into(),
            "source.port=int:8080".into(),
        ])
        .unwrap();
        assert_eq!(
            p.get(&[b"node", b"metadata", b"team"]),
            Some(b"edge".to_vec())
        );
        assert_eq!(
            p.get(&[b"source", b"port"]),
            Some(8080i64.to_le_bytes().to_vec())
        );
        let err = properties(&["a.b".into()]).unwrap_err().to_string();
        assert!(err.contains("not PATH=VALUE"), "{err}");
        let err = properties(&["a..b=1".into()]).unwrap_err().to_string();
        assert!(err.contains("empty segment"), "{err}");
        let err = properties(&["a=int:x".into()]).unwrap_err().to_string();
        assert!(err.contains("`x` is not an integer"), "{err}");
    }
}
