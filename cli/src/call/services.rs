//! The host services of a `polyhost call` run: the library's in-memory
//! ones, wrapped to remember what the plugins touched (and which plugin
//! did) so the run can list what they left behind, with the foreign
//! functions given on the command line.

use super::report::{Leftovers, Metric, QueueRow, SharedRow, Tagged};
use crate::files::{MAX_BODY_BYTES, read_bounded};
use anyhow::{Result, bail};
use polyhost::MetricType;
use polyhost::Status;
use polyhost::services::{
    CalloutQueue, ForeignFunctions, HostServices, InMemoryMetrics, InMemoryQueues,
    InMemorySharedData, MetricValue, MetricsSink, QueueNotifier, SharedDataStore,
    SharedQueueRegistry, StaticProperties,
};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The name of the plugin the run is calling into now: the run sets it
/// before each callback, so what a host call does can be put down to the
/// plugin that made it.
#[derive(Clone, Default)]
pub struct Current(Arc<Mutex<String>>);

impl Current {
    /// From now on calls are `name`'s.
    pub fn set(&self, name: &str) {
        let mut current = self.0.lock().expect("poisoned");
        if *current != name {
            *current = name.to_string();
        }
    }

    /// The plugin being called.
    pub fn get(&self) -> String {
        self.0.lock().expect("poisoned").clone()
    }
}

/// Shared data that remembers which keys were written, and by whom.
#[derive(Default)]
struct RecordedSharedData {
    store: InMemorySharedData,
    current: Current,
    written: Mutex<BTreeMap<(String, Vec<u8>), String>>,
}

impl SharedDataStore for RecordedSharedData {
    fn get(&self, vm_id: &str, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        self.store.get(vm_id, key)
    }

    fn set(&self, vm_id: &str, key: &[u8], value: &[u8], cas: u32) -> Result<(), Status> {
        self.store.set(vm_id, key, value, cas)?;
        let entry = (vm_id.to_string(), key.to_vec());
        let by = self.current.get();
        self.written.lock().expect("poisoned").insert(entry, by);
        Ok(())
    }
}

/// Metrics that remember which plugins defined each.
#[derive(Default)]
struct RecordedMetrics {
    store: InMemoryMetrics,
    current: Current,
    defined_by: Mutex<HashMap<String, Vec<String>>>,
}

impl MetricsSink for RecordedMetrics {
    fn define(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        let id = self.store.define(kind, name)?;
        let by = self.current.get();
        let mut defined_by = self.defined_by.lock().expect("poisoned");
        let names = defined_by.entry(name.to_string()).or_default();
        if !names.contains(&by) {
            names.push(by);
        }
        Ok(id)
    }

    fn increment(&self, id: u32, delta: i64) -> Result<(), Status> {
        self.store.increment(id, delta)
    }

    fn record(&self, id: u32, value: u64) -> Result<(), Status> {
        self.store.record(id, value)
    }

    fn get(&self, id: u32) -> Result<u64, Status> {
        self.store.get(id)
    }

    fn has_room_for(&self, name: &str) -> bool {
        self.store.has_room_for(name)
    }
}

/// One registered queue and how many messages wait in it.
struct QueueRecord {
    vm_id: String,
    name: String,
    id: u32,
    waiting: usize,
    /// The plugin that registered it (last), which gets its notifications.
    owner: String,
}

/// Queues that remember which were registered, by whom, what is left in
/// them and which were notified.
#[derive(Default)]
struct RecordedQueues {
    queues: InMemoryQueues,
    current: Current,
    registered: Mutex<Vec<QueueRecord>>,
    /// Queue ids notified since the run last looked, in order.
    notified: Arc<Mutex<Vec<u32>>>,
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
        let notified = Arc::clone(&self.notified);
        let recording: QueueNotifier = Arc::new(move |id| {
            notified.lock().expect("poisoned").push(id);
            notify(id);
        });
        let id = self.queues.register(vm_id, name, recording);
        let owner = self.current.get();
        let mut registered = self.registered.lock().expect("poisoned");
        match registered.iter_mut().find(|q| q.id == id) {
            Some(q) => q.owner = owner,
            None => registered.push(QueueRecord {
                vm_id: vm_id.to_string(),
                name: name.to_string(),
                id,
                waiting: 0,
                owner,
            }),
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

/// A queue that received data, for the plugin that registered it.
pub struct Notification {
    /// The queue's id.
    pub id: u32,
    /// Its VM id.
    pub vm_id: String,
    /// Its name.
    pub name: String,
    /// The plugin that registered it.
    pub owner: String,
}

/// One `proxy_call_foreign_function` a plugin made.
pub struct ForeignCall {
    /// The plugin that made it.
    pub plugin: String,
    /// The function's name.
    pub name: String,
    /// The argument bytes.
    pub argument: Vec<u8>,
    /// What it got.
    pub result: Result<Vec<u8>, Status>,
    /// Whether a `--foreign-function` named it.
    pub named: bool,
}

/// The foreign functions `--foreign-function` names, answering each call
/// as given and remembering the calls; any other name is `NotFound`, as in
/// Envoy.
#[derive(Default)]
struct RecordedForeign {
    answers: HashMap<String, Result<Vec<u8>, Status>>,
    current: Current,
    calls: Mutex<Vec<ForeignCall>>,
}

impl ForeignFunctions for RecordedForeign {
    fn call(&self, name: &str, args: &[u8]) -> Result<Vec<u8>, Status> {
        let answer = self.answers.get(name);
        let result = answer.cloned().unwrap_or(Err(Status::NotFound));
        self.calls.lock().expect("poisoned").push(ForeignCall {
            plugin: self.current.get(),
            name: name.to_string(),
            argument: args.to_vec(),
            result: result.clone(),
            named: answer.is_some(),
        });
        result
    }
}

/// The statuses a foreign function can fail with, by name.
const STATUSES: [Status; 9] = [
    Status::NotFound,
    Status::BadArgument,
    Status::SerializationFailure,
    Status::ParseFailure,
    Status::InvalidMemoryAccess,
    Status::Empty,
    Status::CasMismatch,
    Status::InternalFailure,
    Status::Unimplemented,
];

/// Parses `--foreign-function NAME=ANSWER`: text, `@FILE` for the bytes of
/// a file, or `!STATUS` for a call that fails with that status (a name
/// such as `InternalFailure`, or its number).
///
/// # Errors
/// No `=`, an empty or repeated name, an unreadable file, an unknown
/// status.
fn foreign_answers(given: &[String]) -> Result<HashMap<String, Result<Vec<u8>, Status>>> {
    let mut answers = HashMap::new();
    for raw in given {
        let Some((name, value)) = raw.split_once('=') else {
            bail!("--foreign-function `{raw}` is not NAME=ANSWER");
        };
        if name.is_empty() {
            bail!("--foreign-function `{raw}` has no name");
        }
        let answer = if let Some(path) = value.strip_prefix('@') {
            Ok(read_bounded(
                &format!("foreign function `{name}` answer"),
                Path::new(path),
                MAX_BODY_BYTES,
            )?)
        } else if let Some(status) = value.strip_prefix('!') {
            let wanted = status.trim().replace(['_', '-'], "").to_ascii_lowercase();
            let found = STATUSES.iter().find(|s| {
                format!("{s:?}").to_ascii_lowercase() == wanted || s.raw().to_string() == wanted
            });
            match found {
                Some(s) => Err(*s),
                None => bail!(
                    "--foreign-function `{raw}`: `{status}` is not a failing status (one of {})",
                    STATUSES.map(|s| format!("{s:?}")).join(", ")
                ),
            }
        } else {
            Ok(value.as_bytes().to_vec())
        };
        if answers.insert(name.to_string(), answer).is_some() {
            bail!("--foreign-function `{name}` is given twice");
        }
    }
    Ok(answers)
}

/// The services of one run, with handles on what the run reports.
pub struct RunServices {
    /// What the plugins get (each VM with its own callout queue).
    host: HostServices,
    /// The plugin being called now.
    pub current: Current,
    metrics: Arc<RecordedMetrics>,
    shared_data: Arc<RecordedSharedData>,
    queues: Arc<RecordedQueues>,
    foreign: Arc<RecordedForeign>,
}

/// Parses `--property PATH=VALUE`. `PATH` is dotted (`node.metadata.team`)
/// or, for segments that themselves contain dots, Envoy's path segments as
/// a JSON array (`["metadata","filter_metadata","envoy.lb","canary"]`); a
/// value `int:N` is an integer, as Envoy encodes them.
///
/// # Errors
/// No `=`, an empty path or segment, a bad JSON array, or `int:` with
/// something that is not an integer.
fn properties(given: &[String]) -> Result<StaticProperties> {
    let mut properties = StaticProperties::default();
    for raw in given {
        let (path, value) = if raw.trim_start().starts_with('[') {
            let Some((segments, value)) = raw.split_once("]=") else {
                bail!("--property `{raw}` is not [\"SEGMENT\", ...]=VALUE");
            };
            let segments: Vec<String> =
                serde_json::from_str(&format!("{segments}]")).map_err(|e| {
                    anyhow::anyhow!(
                        "--property `{raw}`: the path is not a JSON array of strings ({e})"
                    )
                })?;
            if segments.is_empty() || segments.iter().any(String::is_empty) {
                bail!("--property `{raw}`: the path has an empty segment");
            }
            // The provider keys paths by their segments joined with dots,
            // which is also how a plugin's segments are looked up.
            (segments.join("."), value)
        } else {
            let Some((path, value)) = raw.split_once('=') else {
                bail!("--property `{raw}` is not PATH=VALUE");
            };
            let path = path.trim();
            if path.is_empty() || path.split('.').any(str::is_empty) {
                bail!("--property `{raw}`: the path `{path}` has an empty segment");
            }
            (path.to_string(), value)
        };
        let path = path.as_str();
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
    /// In-memory services with the `--property` values and the
    /// `--foreign-function` answers.
    ///
    /// # Errors
    /// A malformed `--property` or `--foreign-function`.
    pub fn new(property_args: &[String], foreign_args: &[String]) -> Result<Self> {
        let current = Current::default();
        let metrics = Arc::new(RecordedMetrics {
            current: current.clone(),
            ..RecordedMetrics::default()
        });
        let shared_data = Arc::new(RecordedSharedData {
            current: current.clone(),
            ..RecordedSharedData::default()
        });
        let queues = Arc::new(RecordedQueues {
            current: current.clone(),
            ..RecordedQueues::default()
        });
        let foreign = Arc::new(RecordedForeign {
            answers: foreign_answers(foreign_args)?,
            current: current.clone(),
            calls: Mutex::default(),
        });
        let host = HostServices {
            callouts: Arc::new(CalloutQueue::default()),
            properties: Arc::new(properties(property_args)?),
            metrics: metrics.clone(),
            shared_data: shared_data.clone(),
            queues: queues.clone(),
            foreign: foreign.clone(),
        };
        Ok(RunServices {
            host,
            current,
            metrics,
            shared_data,
            queues,
            foreign,
        })
    }

    /// The services for one VM: all shared but the callouts, which each
    /// VM answers itself (their tokens are the VM's own).
    pub fn for_vm(&self) -> (HostServices, Arc<CalloutQueue>) {
        let callouts = Arc::new(CalloutQueue::default());
        let host = HostServices {
            callouts: callouts.clone(),
            ..self.host.clone()
        };
        (host, callouts)
    }

    /// The queues notified since the last call, in order, each with the
    /// plugin that registered it.
    pub fn take_notified(&self) -> Vec<Notification> {
        let ids = std::mem::take(&mut *self.queues.notified.lock().expect("poisoned"));
        let registered = self.queues.registered.lock().expect("poisoned");
        (ids.into_iter())
            .filter_map(|id| {
                let q = registered.iter().find(|q| q.id == id)?;
                Some(Notification {
                    id,
                    vm_id: q.vm_id.clone(),
                    name: q.name.clone(),
                    owner: q.owner.clone(),
                })
            })
            .collect()
    }

    /// The foreign function calls made since the last call, in order.
    pub fn take_foreign_calls(&self) -> Vec<ForeignCall> {
        std::mem::take(&mut *self.foreign.calls.lock().expect("poisoned"))
    }

    /// Fills in the metrics, shared data and queues the plugins left,
    /// naming the plugin of each when `several`.
    pub fn leftovers(&self, into: &mut Leftovers, several: bool) {
        let tag = |by: &str| several.then(|| by.to_string());
        let defined_by = self.metrics.defined_by.lock().expect("poisoned");
        into.metrics = (self.metrics.store.snapshot().into_iter())
            .map(|(name, value)| {
                let (kind, value) = match value {
                    MetricValue::Counter(n) => ("counter", serde_json::json!(n)),
                    MetricValue::Gauge(n) => ("gauge", serde_json::json!(n)),
                    MetricValue::Histogram(h) => (
                        "histogram",
                        serde_json::json!({
                            "count": h.count(),
                            "sum": h.sum(),
                            "min": h.min(),
                            "max": h.max(),
                        }),
                    ),
                };
                let by = defined_by.get(&name).map(|names| names.join(", "));
                Tagged {
                    item: Metric { name, kind, value },
                    plugin: by.and_then(|b| tag(&b)),
                }
            })
            .collect();
        let written = self.shared_data.written.lock().expect("poisoned").clone();
        into.shared_data = (written.into_iter())
            .filter_map(|((vm_id, key), by)| {
                let (value, _) = self.shared_data.get(&vm_id, &key)?;
                Some(SharedRow {
                    vm_id,
                    key: String::from_utf8_lossy(&key).into_owned(),
                    value: String::from_utf8_lossy(&value).into_owned(),
                    by: tag(&by),
                })
            })
            .collect();
        into.queues = (self.queues.registered.lock().expect("poisoned").iter())
            .map(|q| QueueRow {
                vm_id: q.vm_id.clone(),
                name: q.name.clone(),
                left: q.waiting,
                by: tag(&q.owner),
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polyhost::services::PropertyProvider;

    #[test]
    fn foreign_answers_are_text_files_or_statuses() {
        let a = foreign_answers(&[
            "hash=abc".into(),
            "empty=".into(),
            "broken=!internal_failure".into(),
            "gone=!1".into(),
        ])
        .unwrap();
        assert_eq!(a["hash"], Ok(b"abc".to_vec()));
        assert_eq!(a["empty"], Ok(Vec::new()));
        assert_eq!(a["broken"], Err(Status::InternalFailure));
        assert_eq!(a["gone"], Err(Status::NotFound));
        let err = foreign_answers(&["x".into()]).unwrap_err().to_string();
        assert!(err.contains("not NAME=ANSWER"), "{err}");
        let err = foreign_answers(&["x=!Ok".into()]).unwrap_err().to_string();
        assert!(err.contains("not a failing status"), "{err}");
        let err = foreign_answers(&["x=1".into(), "x=2".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("given twice"), "{err}");
    }

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

    #[test]
    fn properties_take_envoy_path_segments_with_dots() {
        let p = properties(&[r#"["metadata","filter_metadata","envoy.lb","canary"]=a=b"#.into()])
            .unwrap();
        assert_eq!(
            p.get(&[b"metadata", b"filter_metadata", b"envoy.lb", b"canary"]),
            Some(b"a=b".to_vec())
        );
        let err = properties(&[r#"["a",""]=1"#.into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("empty segment"), "{err}");
        let err = properties(&[r#"["a",1]=1"#.into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a JSON array of strings"), "{err}");
        let err = properties(&[r#"["a"]"#.into()]).unwrap_err().to_string();
        assert!(err.contains("SEGMENT"), "{err}");
    }
}
