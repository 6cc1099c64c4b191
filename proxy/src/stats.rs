//! Statistics: the proxy's own counters and the plugins' metrics, rendered
//! as Envoy's admin endpoint renders them (`/stats` text and JSON,
//! `/stats/prometheus`).
//!
//! Counters are atomics updated on the request path, and histograms are
//! sharded so each worker records into a shard of its own under a lock
//! nobody else takes; rendering reads and merges them when the admin
//! endpoint is asked, so nothing on the hot path formats or waits.

use crate::cluster::ClusterManager;
use polyhost::services::{HistogramSummary, InMemoryMetrics, MetricValue};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Counters of one HTTP connection manager (`http.<stat_prefix>.*`).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// The connection manager's `stat_prefix`.
    pub stat_prefix: String,
    /// `downstream_rq_total`.
    pub requests: AtomicU64,
    /// `downstream_rq_1xx` .. `downstream_rq_5xx`, by first digit.
    pub by_class: [AtomicU64; 5],
    /// `downstream_rq_time`: each request's duration in milliseconds, from
    /// its start to the end of its response.
    pub request_time: ShardedHistogram,
}

impl HttpStats {
    /// Counters for the manager with `stat_prefix`.
    pub fn new(stat_prefix: &str) -> HttpStats {
        HttpStats {
            stat_prefix: stat_prefix.to_string(),
            ..HttpStats::default()
        }
    }

    /// Counts a response by its status class.
    pub fn record_status(&self, status: u16) {
        let class = usize::from(status / 100);
        if (1..=5).contains(&class) {
            self.by_class[class - 1].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A histogram recorded from every worker: each thread records into its
/// own shard (by a per-thread index), so the shard's lock is uncontended
/// on the request path; `/stats` merges the shards.
#[derive(Debug)]
pub struct ShardedHistogram {
    shards: Box<[Mutex<HistogramSummary>]>,
}

/// Shards per histogram: more than the workers of any machine this runs
/// on share one only when threads outnumber them.
const HISTOGRAM_SHARDS: usize = 16;

/// Hands each thread its shard index.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % HISTOGRAM_SHARDS;
}

impl Default for ShardedHistogram {
    fn default() -> Self {
        ShardedHistogram {
            shards: (0..HISTOGRAM_SHARDS)
                .map(|_| Mutex::new(HistogramSummary::new()))
                .collect(),
        }
    }
}

impl ShardedHistogram {
    /// Records `value` into this thread's shard.
    pub fn record(&self, value: u64) {
        let shard = &self.shards[SHARD.with(|i| *i)];
        shard
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .record(value);
    }

    /// Every shard's samples in one summary.
    pub fn merged(&self) -> HistogramSummary {
        let mut all = HistogramSummary::new();
        for shard in &self.shards {
            all.merge(
                &shard
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
        }
        all
    }
}

/// Counters of one TCP proxy (`tcp.<stat_prefix>.*`).
#[derive(Debug, Default)]
pub struct TcpStats {
    /// The `tcp_proxy`'s `stat_prefix`.
    pub stat_prefix: String,
    /// `downstream_cx_total`: connections accepted.
    pub connections: AtomicU64,
    /// `downstream_cx_rx_bytes_total`: bytes read from clients.
    pub rx_bytes: AtomicU64,
    /// `downstream_cx_tx_bytes_total`: bytes written to clients.
    pub tx_bytes: AtomicU64,
    /// `idle_timeout`: connections closed because no byte moved either way
    /// for the `idle_timeout`.
    pub idle_timeouts: AtomicU64,
}

impl TcpStats {
    /// Counters for the TCP proxy with `stat_prefix`.
    pub fn new(stat_prefix: &str) -> TcpStats {
        TcpStats {
            stat_prefix: stat_prefix.to_string(),
            ..TcpStats::default()
        }
    }
}

/// A metric's value for rendering.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(i64),
    Histogram(HistogramSummary),
}

/// One stat: name, Prometheus name and labels, value.
struct Stat {
    name: String,
    prom_name: String,
    labels: Vec<(&'static str, String)>,
    value: Value,
}

/// Everything `/stats` shows.
pub struct StatsStore {
    http: Vec<Arc<HttpStats>>,
    tcp: Vec<Arc<TcpStats>>,
    clusters: Arc<ClusterManager>,
    metrics: Arc<InMemoryMetrics>,
}

impl StatsStore {
    /// A store over the connection managers' counters, the clusters and the
    /// plugins' metrics.
    pub fn new(
        http: Vec<Arc<HttpStats>>,
        clusters: Arc<ClusterManager>,
        metrics: Arc<InMemoryMetrics>,
    ) -> StatsStore {
        StatsStore {
            http,
            tcp: Vec::new(),
            clusters,
            metrics,
        }
    }

    /// Adds the TCP proxies' counters.
    pub fn with_tcp(mut self, tcp: Vec<Arc<TcpStats>>) -> StatsStore {
        self.tcp = tcp;
        self
    }

    fn collect(&self) -> Vec<Stat> {
        let mut stats = Vec::new();
        for http in &self.http {
            let label = || vec![("envoy_http_conn_manager_prefix", http.stat_prefix.clone())];
            let mut push = |suffix: &str, v: u64| {
                stats.push(Stat {
                    name: format!("http.{}.{suffix}", http.stat_prefix),
                    prom_name: format!("envoy_http_{suffix}"),
                    labels: label(),
                    value: Value::Counter(v),
                });
            };
            push("downstream_rq_total", http.requests.load(Ordering::Relaxed));
            for (i, count) in http.by_class.iter().enumerate() {
                push(
                    &format!("downstream_rq_{}xx", i + 1),
                    count.load(Ordering::Relaxed),
                );
            }
            stats.push(Stat {
                name: format!("http.{}.downstream_rq_time", http.stat_prefix),
                prom_name: "envoy_http_downstream_rq_time".to_string(),
                labels: label(),
                value: Value::Histogram(http.request_time.merged()),
            });
        }
        for tcp in &self.tcp {
            for (suffix, count) in [
                ("downstream_cx_total", &tcp.connections),
                ("downstream_cx_rx_bytes_total", &tcp.rx_bytes),
                ("downstream_cx_tx_bytes_total", &tcp.tx_bytes),
                ("idle_timeout", &tcp.idle_timeouts),
            ] {
                stats.push(Stat {
                    name: format!("tcp.{}.{suffix}", tcp.stat_prefix),
                    prom_name: format!("envoy_tcp_{suffix}"),
                    labels: vec![("envoy_tcp_prefix", tcp.stat_prefix.clone())],
                    value: Value::Counter(count.load(Ordering::Relaxed)),
                });
            }
        }
        for cluster in self.clusters.all() {
            let mut push = |suffix: &str, v: &AtomicU64| {
                stats.push(Stat {
                    name: format!("cluster.{}.{suffix}", cluster.name),
                    prom_name: format!("envoy_cluster_{suffix}"),
                    labels: vec![("envoy_cluster_name", cluster.name.clone())],
                    value: Value::Counter(v.load(Ordering::Relaxed)),
                });
            };
            push("upstream_cx_connect_fail", &cluster.connect_failures);
            push("upstream_rq_timeout", &cluster.timeouts);
            push("upstream_rq_total", &cluster.requests);
        }
        // Plugin metrics sit in Envoy's `wasmcustom` stat namespace: named
        // `wasmcustom.<name>` on `/stats`, and `<name>` in Prometheus, whose
        // formatter strips a registered custom namespace (and adds no
        // `envoy_` prefix).
        for (name, value) in self.metrics.snapshot() {
            stats.push(Stat {
                prom_name: prometheus_name(&name),
                name: format!("{WASM_CUSTOM_NAMESPACE}.{name}"),
                labels: Vec::new(),
                value: match value {
                    MetricValue::Counter(v) => Value::Counter(v),
                    MetricValue::Gauge(v) => Value::Gauge(v),
                    MetricValue::Histogram(v) => Value::Histogram(v),
                },
            });
        }
        stats.sort_by(|a, b| a.name.cmp(&b.name));
        stats
    }

    /// Envoy's `/stats` text: `name: value`, one per line, sorted by name;
    /// histograms as quantiles.
    pub fn render_text(&self, filter: Option<&regex::Regex>) -> String {
        let mut out = String::new();
        for stat in self.collect() {
            if filter.is_some_and(|f| !f.is_match(&stat.name)) {
                continue;
            }
            match &stat.value {
                Value::Counter(v) => writeln!(out, "{}: {v}", stat.name),
                Value::Gauge(v) => writeln!(out, "{}: {v}", stat.name),
                Value::Histogram(h) => writeln!(out, "{}: {}", stat.name, quantile_summary(h)),
            }
            .expect("writing to a String cannot fail");
        }
        out
    }

    /// `/stats?format=json`: `{"stats": [{"name": .., "value": ..}, ...]}`,
    /// then, as Envoy ends it, one element with every histogram's
    /// quantiles: `{"histograms": {"supported_quantiles": [0, 25, ...],
    /// "computed_quantiles": [{"name": .., "values": [{"interval": null,
    /// "cumulative": ..}, ...]}]}}` (no interval values: Polyhost keeps
    /// cumulative histograms only).
    pub fn render_json(&self, filter: Option<&regex::Regex>) -> String {
        let mut stats = Vec::new();
        let mut histograms = Vec::new();
        for stat in self.collect() {
            if filter.is_some_and(|f| !f.is_match(&stat.name)) {
                continue;
            }
            match stat.value {
                Value::Counter(v) => stats.push(serde_json::json!({"name": stat.name, "value": v})),
                Value::Gauge(v) => stats.push(serde_json::json!({"name": stat.name, "value": v})),
                Value::Histogram(h) => {
                    let values: Vec<serde_json::Value> = QUANTILES
                        .iter()
                        .map(|&(_, q)| serde_json::json!({"interval": null, "cumulative": h.quantile(q)}))
                        .collect();
                    histograms.push(serde_json::json!({"name": stat.name, "values": values}));
                }
            }
        }
        if !histograms.is_empty() {
            let supported: Vec<f64> = QUANTILES.iter().map(|&(_, q)| q * 100.0).collect();
            stats.push(serde_json::json!({"histograms": {
                "supported_quantiles": supported,
                "computed_quantiles": histograms,
            }}));
        }
        serde_json::json!({ "stats": stats }).to_string()
    }

    /// `/stats/prometheus`: Prometheus text exposition, with Envoy's names
    /// and labels for the proxy's own stats; `filter` keeps the stats whose
    /// `/stats` name matches, as Envoy filters.
    pub fn render_prometheus(&self, filter: Option<&regex::Regex>) -> String {
        let mut out = String::new();
        let mut typed = std::collections::HashSet::new();
        let mut stats = self.collect();
        stats.retain(|s| filter.is_none_or(|f| f.is_match(&s.name)));
        stats.sort_by(|a, b| a.prom_name.cmp(&b.prom_name));
        for stat in stats {
            let kind = match stat.value {
                Value::Counter(_) => "counter",
                Value::Gauge(_) => "gauge",
                Value::Histogram(_) => "histogram",
            };
            if typed.insert(stat.prom_name.clone()) {
                writeln!(out, "# TYPE {} {kind}", stat.prom_name).expect("infallible");
            }
            let labels = stat
                .labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
                .collect::<Vec<_>>()
                .join(",");
            let labels = if labels.is_empty() {
                String::new()
            } else {
                format!("{{{labels}}}")
            };
            match &stat.value {
                Value::Counter(v) => writeln!(out, "{}{labels} {v}", stat.prom_name),
                Value::Gauge(v) => writeln!(out, "{}{labels} {v}", stat.prom_name),
                Value::Histogram(h) => prometheus_histogram(&mut out, &stat.prom_name, &labels, h),
            }
            .expect("infallible");
        }
        out
    }
}

/// A plugin metric's name as a Prometheus name: characters outside
/// `[a-zA-Z0-9_]` become `_`.
fn prometheus_name(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Envoy's text form of a histogram: `P0(v,v) P25(v,v) ...`, or
/// `No recorded values`.
fn quantile_summary(h: &HistogramSummary) -> String {
    if h.count() == 0 {
        return "No recorded values".to_string();
    }
    QUANTILES
        .iter()
        .map(|&(label, q)| {
            let v = h.quantile(q).unwrap_or(0);
            format!("{label}({v},{v})")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Envoy's stat namespace for the metrics Wasm plugins define.
const WASM_CUSTOM_NAMESPACE: &str = "wasmcustom";

/// The quantiles Envoy's admin endpoint shows for each histogram.
const QUANTILES: [(&str, f64); 10] = [
    ("P0", 0.0),
    ("P25", 0.25),
    ("P50", 0.5),
    ("P75", 0.75),
    ("P90", 0.9),
    ("P95", 0.95),
    ("P99", 0.99),
    ("P99.5", 0.995),
    ("P99.9", 0.999),
    ("P100", 1.0),
];

/// Envoy's default histogram bucket bounds (its `stats_config`
/// `histogram_bucket_settings` default), used for `/stats/prometheus`.
const PROMETHEUS_BUCKETS: [f64; 19] = [
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// One histogram in the Prometheus text format, as Envoy writes it:
/// cumulative `_bucket` lines with `le` added to the labels, up to
/// `+Inf`, then `_sum` and `_count`.
fn prometheus_histogram(
    out: &mut String,
    name: &str,
    labels: &str,
    h: &HistogramSummary,
) -> std::fmt::Result {
    let with_le = |le: &str| match labels.strip_suffix('}') {
        Some(open) => format!("{open},le=\"{le}\"}}"),
        None => format!("{{le=\"{le}\"}}"),
    };
    for bound in PROMETHEUS_BUCKETS {
        // Samples are integers, so `le="0.5"` counts the zeros.
        let count = h.count_at_most(bound.floor() as u64);
        writeln!(out, "{name}_bucket{} {count}", with_le(&bound.to_string()))?;
    }
    writeln!(out, "{name}_bucket{} {}", with_le("+Inf"), h.count())?;
    writeln!(out, "{name}_sum{labels} {}", h.sum())?;
    writeln!(out, "{name}_count{labels} {}", h.count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_recorded_samples() {
        assert_eq!(
            quantile_summary(&HistogramSummary::new()),
            "No recorded values"
        );
        let s = quantile_summary(&HistogramSummary::from_samples([5, 1, 3]));
        assert!(s.starts_with("P0(1,1) P25(1,1) P50(3,3) P75(5,5)"), "{s}");
        assert!(s.ends_with("P100(5,5)"), "{s}");
    }

    #[test]
    fn prometheus_histograms_have_envoys_cumulative_buckets() {
        let h = HistogramSummary::from_samples([0, 3, 7, 7000]);
        let mut out = String::new();
        prometheus_histogram(&mut out, "envoy_x", "{a=\"b\"}", &h).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "envoy_x_bucket{a=\"b\",le=\"0.5\"} 1");
        assert_eq!(lines[1], "envoy_x_bucket{a=\"b\",le=\"1\"} 1");
        assert_eq!(lines[2], "envoy_x_bucket{a=\"b\",le=\"5\"} 2");
        assert_eq!(lines[3], "envoy_x_bucket{a=\"b\",le=\"10\"} 3");
        assert_eq!(lines[12], "envoy_x_bucket{a=\"b\",le=\"10000\"} 4");
        assert_eq!(lines[19], "envoy_x_bucket{a=\"b\",le=\"+Inf\"} 4");
        assert_eq!(lines[20], "envoy_x_sum{a=\"b\"} 7010");
        assert_eq!(lines[21], "envoy_x_count{a=\"b\"} 4");
        let mut bare = String::new();
        prometheus_histogram(&mut bare, "m", "", &h).unwrap();
        assert!(bare.starts_with("m_bucket{le=\"0.5\"} 1\n"), "{bare}");
        assert!(bare.ends_with("m_sum 7010\nm_count 4\n"), "{bare}");
    }

    #[test]
    fn sharded_histograms_merge_every_threads_samples() {
        let h = Arc::new(ShardedHistogram::default());
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let h = h.clone();
                std::thread::spawn(move || (0..100).for_each(|i| h.record(t * 100 + i)))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        h.record(7);
        let all = h.merged();
        assert_eq!(all.count(), 301);
        assert_eq!(all.sum(), (0..300).sum::<u64>() + 7);
        assert_eq!((all.min(), all.max()), (Some(0), Some(299)));
    }

    #[test]
    fn prometheus_names_are_sanitised() {
        assert_eq!(prometheus_name("my.plugin-count"), "my_plugin_count");
    }
}
