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
}

/// A metric's current value, as [`InMemoryMetrics::value`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricValue {
    /// Counter total.
    Counter(u64),
    /// Gauge value.
    Gauge(i64),
    /// Every recorded sample, in order.
    Histogram(Vec<u64>),
}

#[derive(Default)]
struct Registry {
    by_name: HashMap<String, u32>,
    metrics: Vec<(String, MetricValue)>,
}

/// The default metrics store, process-wide when shared.
#[derive(Default)]
pub struct InMemoryMetrics {
    inner: Mutex<Registry>,
}

impl InMemoryMetrics {
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
        let id = reg.metrics.len() as u32;
        let value = match kind {
            MetricType::Counter => MetricValue::Counter(0),
            MetricType::Gauge => MetricValue::Gauge(0),
            MetricType::Histogram => MetricValue::Histogram(Vec::new()),
        };
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
        match reg.metrics.get_mut(id as usize).map(|m| &mut m.1) {
            None => Err(Status::NotFound),
            Some(MetricValue::Counter(c)) => {
                *c = c.saturating_add(value);
                Ok(())
            }
            Some(MetricValue::Gauge(g)) => {
                *g = value as i64;
                Ok(())
            }
            Some(MetricValue::Histogram(h)) => {
                h.push(value);
                Ok(())
            }
        }
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
