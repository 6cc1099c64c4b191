//! Counters, gauges and histograms.

use crate::types::{MetricType, Status};
use std::collections::HashMap;
use std::sync::Mutex;

/// Stores metrics defined by plugins.
///
/// Semantics follow Envoy: counters only grow (`increment` with a negative
/// delta is `BadArgument`), gauges go up and down and `record` sets them,
/// histograms take `record`ed samples and cannot be read back.
pub trait MetricsSink: Send + Sync {
    /// Defines a metric (or returns the id of the existing one with the same
    /// name and kind).
    ///
    /// # Errors
    /// [`Status::BadArgument`] when the name exists with another kind.
    fn define(&self, kind: MetricType, name: &str) -> Result<u32, Status>;
    /// Adds `delta` to a counter or gauge.
    ///
    /// # Errors
    /// [`Status::NotFound`] for an unknown id, [`Status::BadArgument`] for a
    /// histogram or a negative counter delta.
    fn increment(&self, id: u32, delta: i64) -> Result<(), Status>;
    /// Sets a gauge, adds to a counter, or records a histogram sample.
    ///
    /// # Errors
    /// [`Status::NotFound`] for an unknown id.
    fn record(&self, id: u32, value: u64) -> Result<(), Status>;
    /// Reads a counter or gauge.
    ///
    /// # Errors
    /// [`Status::NotFound`] for an unknown id, [`Status::BadArgument`] for a
    /// histogram.
    fn get(&self, id: u32) -> Result<u64, Status>;
    /// Whether a new metric called `name` would fit in a bounded store.
    /// The host asks when [`MetricsSink::define`] refuses a name, to report
    /// a full store as a limit (once per VM) rather than as a name taken
    /// by another kind. The default (an unbounded store) says yes.
    fn has_room_for(&self, name: &str) -> bool {
        let _ = name;
        true
    }
}

/// A metric's current value, as [`InMemoryMetrics::value`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricValue {
    /// Counter total.
    Counter(u64),
    /// Gauge value.
    Gauge(i64),
    /// The recorded samples' distribution.
    Histogram(HistogramSummary),
}

/// The samples recorded into a histogram metric, kept in bounded memory:
/// their number, their sum and their distribution to two significant
/// digits (the precision of Envoy's histograms). Every value up to 255 is
/// kept exactly; above that, a quantile is within 1% of the true sample.
///
/// A plugin typically records one sample per request for as long as it
/// runs, so keeping the samples themselves would grow the host with its
/// traffic. This takes a few KiB for the usual range of latencies and
/// sizes, and about 60 KiB at most, however many samples it holds.
#[derive(Clone)]
pub struct HistogramSummary {
    distribution: hdrhistogram::Histogram<u64>,
    sum: u64,
}

impl HistogramSummary {
    /// No samples yet.
    pub fn new() -> Self {
        HistogramSummary {
            // Two significant digits is a valid precision (0 to 5 are), so
            // this cannot fail; the histogram grows its range as values
            // come (see `record`).
            distribution: hdrhistogram::Histogram::new(2).expect("2 significant digits is valid"),
            sum: 0,
        }
    }

    /// A summary of `samples`.
    pub fn from_samples(samples: impl IntoIterator<Item = u64>) -> Self {
        let mut summary = HistogramSummary::new();
        for sample in samples {
            summary.record(sample);
        }
        summary
    }

    /// Adds one sample.
    pub fn record(&mut self, value: u64) {
        // `record` grows the range to fit the value (up to `u64::MAX / 2`
        // at this precision); only a value past that is clamped.
        if self.distribution.record(value).is_err() {
            self.distribution.saturating_record(value);
        }
        self.sum = self.sum.saturating_add(value);
    }

    /// Records `value` without growing the summary's range: a value past
    /// the largest it tracks now counts as that largest value (the sum
    /// still adds the true value). For a store out of room.
    fn record_in_range(&mut self, value: u64) {
        self.distribution.saturating_record(value);
        self.sum = self.sum.saturating_add(value);
    }

    /// Whether recording `value` would grow the summary's memory.
    fn would_grow(&self, value: u64) -> bool {
        value > self.distribution.high()
    }

    /// Bytes the summary's counts take now.
    pub fn footprint(&self) -> usize {
        self.distribution.distinct_values() * std::mem::size_of::<u64>()
    }

    /// Adds every sample of `other`, as if recorded here (a histogram kept
    /// in shards is merged this way to be shown).
    pub fn merge(&mut self, other: &HistogramSummary) {
        // `add` widens the range as `record` does; only samples past the
        // largest trackable value could fail, and those are clamped.
        if self.distribution.add(&other.distribution).is_err() {
            for value in other.distribution.iter_recorded() {
                self.distribution
                    .saturating_record_n(value.value_iterated_to(), value.count_at_value());
            }
        }
        self.sum = self.sum.saturating_add(other.sum);
    }

    /// How many samples were recorded.
    pub fn count(&self) -> u64 {
        self.distribution.len()
    }

    /// Their sum (saturating at `u64::MAX`).
    pub fn sum(&self) -> u64 {
        self.sum
    }

    /// The smallest sample, if any (to the summary's precision).
    pub fn min(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.distribution.min())
    }

    /// The largest sample, if any (to the summary's precision).
    pub fn max(&self) -> Option<u64> {
        (self.count() > 0).then(|| self.distribution.max())
    }

    /// The sample at quantile `q` (0.0 to 1.0), if any.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        (self.count() > 0).then(|| self.distribution.value_at_quantile(q.clamp(0.0, 1.0)))
    }

    /// How many samples are at most `bound`, as a Prometheus bucket counts
    /// them.
    pub fn count_at_most(&self, bound: u64) -> u64 {
        if self.count() == 0 {
            return 0;
        }
        self.distribution.count_between(0, bound)
    }
}

impl Default for HistogramSummary {
    fn default() -> Self {
        HistogramSummary::new()
    }
}

/// Two summaries are equal when they hold the same distribution and sum.
impl PartialEq for HistogramSummary {
    fn eq(&self, other: &Self) -> bool {
        self.sum == other.sum && self.distribution == other.distribution
    }
}

impl Eq for HistogramSummary {}

impl std::fmt::Debug for HistogramSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistogramSummary")
            .field("count", &self.count())
            .field("sum", &self.sum)
            .field("min", &self.min())
            .field("max", &self.max())
            .finish()
    }
}

#[derive(Default)]
struct Registry {
    by_name: HashMap<String, u32>,
    metrics: Vec<(String, MetricValue)>,
    /// What the metrics take, as [`metric_bytes`] and
    /// [`HistogramSummary::footprint`] count it.
    bytes: usize,
}

/// Default bound of [`InMemoryMetrics`]: 64 MiB of names and values.
pub const DEFAULT_METRICS_BYTES: usize = 64 << 20;

/// What one metric costs the store besides its histogram's counts: its
/// name twice (the list and the index) and the entries themselves.
fn metric_bytes(name: &str) -> usize {
    2 * name.len() + 64
}

/// The default metrics store, process-wide when shared.
///
/// Metrics are process-wide and live as long as the process, so the store
/// is bounded as a whole: at most [`DEFAULT_METRICS_BYTES`] of names and
/// values unless built with [`InMemoryMetrics::with_max_bytes`]. Past the
/// bound, defining a new metric is refused with `BadArgument` (a plugin
/// that puts a request's path in a metric name would otherwise grow the
/// host with its traffic), and a histogram sample that would widen its
/// histogram's range is recorded as the largest value it tracks.
pub struct InMemoryMetrics {
    inner: Mutex<Registry>,
    max_bytes: usize,
}

impl Default for InMemoryMetrics {
    fn default() -> Self {
        InMemoryMetrics::with_max_bytes(DEFAULT_METRICS_BYTES)
    }
}

impl InMemoryMetrics {
    /// A store holding at most `max_bytes` of metric names and values.
    pub fn with_max_bytes(max_bytes: usize) -> Self {
        InMemoryMetrics {
            inner: Mutex::default(),
            max_bytes,
        }
    }

    /// Bytes the metrics take now, as the bound counts them.
    pub fn bytes(&self) -> usize {
        self.inner.lock().expect("poisoned").bytes
    }

    /// The current value of the metric called `name`.
    pub fn value(&self, name: &str) -> Option<MetricValue> {
        let reg = self.inner.lock().expect("poisoned");
        let id = *reg.by_name.get(name)?;
        Some(reg.metrics[id as usize].1.clone())
    }

    /// Every metric, by name.
    pub fn snapshot(&self) -> Vec<(String, MetricValue)> {
        self.inner.lock().expect("poisoned").metrics.clone()
    }
}

impl MetricsSink for InMemoryMetrics {
    fn define(&self, kind: MetricType, name: &str) -> Result<u32, Status> {
        let mut reg = self.inner.lock().expect("poisoned");
        if let Some(&id) = reg.by_name.get(name) {
            let same = matches!(
                (&reg.metrics[id as usize].1, kind),
                (MetricValue::Counter(_), MetricType::Counter)
                    | (MetricValue::Gauge(_), MetricType::Gauge)
                    | (MetricValue::Histogram(_), MetricType::Histogram)
            );
            return if same {
                Ok(id)
            } else {
                Err(Status::BadArgument)
            };
        }
        let value = match kind {
            MetricType::Counter => MetricValue::Counter(0),
            MetricType::Gauge => MetricValue::Gauge(0),
            MetricType::Histogram => MetricValue::Histogram(HistogramSummary::new()),
        };
        let cost = metric_bytes(name)
            + match &value {
                MetricValue::Histogram(h) => h.footprint(),
                _ => 0,
            };
        let (Ok(id), true) = (
            u32::try_from(reg.metrics.len()),
            reg.bytes + cost <= self.max_bytes,
        ) else {
            return Err(Status::BadArgument);
        };
        reg.bytes += cost;
        reg.metrics.push((name.to_string(), value));
        reg.by_name.insert(name.to_string(), id);
        Ok(id)
    }

    fn increment(&self, id: u32, delta: i64) -> Result<(), Status> {
        let mut reg = self.inner.lock().expect("poisoned");
        match reg.metrics.get_mut(id as usize).map(|m| &mut m.1) {
            None => Err(Status::NotFound),
            Some(MetricValue::Counter(c)) if delta >= 0 => {
                *c = c.saturating_add(delta as u64);
                Ok(())
            }
            Some(MetricValue::Gauge(g)) => {
                *g = g.saturating_add(delta);
                Ok(())
            }
            Some(_) => Err(Status::BadArgument),
        }
    }

    fn record(&self, id: u32, value: u64) -> Result<(), Status> {
        let mut reg = self.inner.lock().expect("poisoned");
        let Registry { metrics, bytes, .. } = &mut *reg;
        match metrics.get_mut(id as usize).map(|m| &mut m.1) {
            None => Err(Status::NotFound),
            Some(MetricValue::Counter(c)) => {
                *c = c.saturating_add(value);
                Ok(())
            }
            Some(MetricValue::Gauge(g)) => {
                *g = value as i64;
                Ok(())
            }
            Some(MetricValue::Histogram(h)) if h.would_grow(value) => {
                let before = h.footprint();
                if *bytes >= self.max_bytes {
                    h.record_in_range(value);
                } else {
                    // One histogram may take the store past its bound by
                    // one widening (at most its 60 KiB); the next is not.
                    h.record(value);
                    *bytes += h.footprint() - before;
                }
                Ok(())
            }
            Some(MetricValue::Histogram(h)) => {
                h.record(value);
                Ok(())
            }
        }
    }

    fn has_room_for(&self, name: &str) -> bool {
        let reg = self.inner.lock().expect("poisoned");
        // A name it has takes no more room (a refusal of it is a kind
        // mismatch); a new one is costed as the largest kind.
        reg.by_name.contains_key(name)
            || reg.bytes + metric_bytes(name) + HistogramSummary::new().footprint()
                <= self.max_bytes
    }

    fn get(&self, id: u32) -> Result<u64, Status> {
        let reg = self.inner.lock().expect("poisoned");
        match reg.metrics.get(id as usize).map(|m| &m.1) {
            None => Err(Status::NotFound),
            Some(MetricValue::Counter(c)) => Ok(*c),
            Some(MetricValue::Gauge(g)) => Ok(*g as u64),
            Some(MetricValue::Histogram(_)) => Err(Status::BadArgument),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_samples_are_kept_exactly() {
        let h = HistogramSummary::from_samples([7, 0, 255, 7]);
        assert_eq!((h.count(), h.sum()), (4, 269));
        assert_eq!((h.min(), h.max()), (Some(0), Some(255)));
        assert_eq!(h.quantile(0.5), Some(7));
        assert_eq!(h.count_at_most(6), 1);
        assert_eq!(h.count_at_most(7), 3);
        assert_eq!(h.count_at_most(3_600_000), 4);
        assert_eq!(h, HistogramSummary::from_samples([7, 7, 0, 255]));
        assert_ne!(h, HistogramSummary::from_samples([7, 0, 255]));
    }

    #[test]
    fn merged_summaries_hold_both_sets_of_samples() {
        let mut a = HistogramSummary::from_samples([1, 2]);
        a.merge(&HistogramSummary::from_samples([3, 1 << 40]));
        a.merge(&HistogramSummary::new());
        assert_eq!(a, HistogramSummary::from_samples([1, 2, 3, 1 << 40]));
    }

    #[test]
    fn an_empty_summary_has_no_quantiles() {
        let h = HistogramSummary::new();
        assert_eq!((h.count(), h.sum(), h.min(), h.max()), (0, 0, None, None));
        assert_eq!((h.quantile(0.5), h.count_at_most(u64::MAX)), (None, 0));
    }

    #[test]
    fn a_million_samples_take_bounded_memory_and_keep_quantiles_within_one_percent() {
        let mut h = HistogramSummary::new();
        for v in 1..=1_000_000u64 {
            h.record(v);
        }
        assert_eq!(h.count(), 1_000_000);
        assert_eq!(h.sum(), 500_000_500_000);
        let p50 = h.quantile(0.5).unwrap() as f64;
        assert!((p50 - 500_000.0).abs() / 500_000.0 < 0.01, "p50 {p50}");
        // The counts array, not the samples: a few thousand slots.
        assert!(h.distribution.distinct_values() < 4096);
        h.record(u64::MAX);
        assert_eq!(h.sum(), u64::MAX);
        assert!(h.distribution.distinct_values() < 8192);
    }

    #[test]
    fn a_full_store_refuses_new_metrics_and_keeps_histograms_in_their_range() {
        // Room for two metrics with 8-byte names and one histogram's
        // initial counts, not for a third metric.
        let initial = HistogramSummary::new().footprint();
        let m = InMemoryMetrics::with_max_bytes(2 * metric_bytes("metric-1") + initial);
        let latency = m.define(MetricType::Histogram, "metric-1").unwrap();
        let count = m.define(MetricType::Counter, "metric-2").unwrap();
        assert_eq!(m.bytes(), 2 * metric_bytes("metric-1") + initial);
        assert!(!m.has_room_for("metric-3"));
        assert_eq!(
            m.define(MetricType::Counter, "metric-3"),
            Err(Status::BadArgument)
        );
        // Names it has cost nothing more; a kind mismatch is no lack of room.
        assert_eq!(m.define(MetricType::Counter, "metric-2"), Ok(count));
        assert!(m.has_room_for("metric-1"));
        // The full store widens no histogram: a huge sample is counted at
        // the largest value the histogram tracks, its sum stays true.
        m.record(latency, 7).unwrap();
        m.record(latency, 1 << 40).unwrap();
        let Some(MetricValue::Histogram(h)) = m.value("metric-1") else {
            panic!("a histogram");
        };
        assert_eq!((h.count(), h.sum()), (2, 7 + (1 << 40)));
        assert!(h.max().unwrap() < 1 << 40, "{h:?}");
        assert_eq!(h.footprint(), initial);
        assert_eq!(m.bytes(), 2 * metric_bytes("metric-1") + initial);
    }

    #[test]
    fn a_store_with_room_widens_histograms_and_counts_their_growth() {
        let m = InMemoryMetrics::default();
        let latency = m.define(MetricType::Histogram, "latency").unwrap();
        let before = m.bytes();
        m.record(latency, 1 << 40).unwrap();
        let Some(MetricValue::Histogram(h)) = m.value("latency") else {
            panic!("a histogram");
        };
        assert!(h.max().unwrap() >= 1 << 40, "{h:?}");
        assert!(m.bytes() > before);
        assert_eq!(
            m.bytes() - before,
            h.footprint() - HistogramSummary::new().footprint()
        );
    }

    #[test]
    fn histograms_record_samples_and_refuse_reads() {
        let m = InMemoryMetrics::default();
        let id = m.define(MetricType::Histogram, "latency").unwrap();
        m.record(id, 7).unwrap();
        m.record(id, 9).unwrap();
        assert_eq!(m.get(id), Err(Status::BadArgument));
        assert_eq!(
            m.value("latency"),
            Some(MetricValue::Histogram(HistogramSummary::from_samples([
                7, 9
            ])))
        );
    }
}
