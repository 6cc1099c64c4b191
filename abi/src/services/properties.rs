//! Properties (Envoy attributes) the host does not derive itself.

use std::collections::HashMap;

/// Supplies property values such as `source.address`, `node.id` or
/// `cluster_name`. Paths arrive as segments (`["source", "address"]`).
///
/// The host answers `plugin_*`, `request.*`, `response.*` and values the
/// plugin set itself before asking the provider.
pub trait PropertyProvider: Send + Sync {
    /// The value at `path`, as raw bytes (strings as UTF-8, integers as
    /// 8-byte little-endian), or `None`.
    fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>>;
}

/// The default provider: a fixed map from dotted paths (`source.address`)
/// to values.
#[derive(Debug, Clone, Default)]
pub struct StaticProperties {
    values: HashMap<String, Vec<u8>>,
}

impl StaticProperties {
    /// Adds a string value.
    pub fn with(mut self, dotted_path: impl Into<String>, value: impl Into<Vec<u8>>) -> Self {
        self.values.insert(dotted_path.into(), value.into());
        self
    }

    /// Adds an integer value (encoded as 8-byte little-endian, as Envoy does).
    pub fn with_int(self, dotted_path: impl Into<String>, value: i64) -> Self {
        self.with(dotted_path, value.to_le_bytes().to_vec())
    }
}

impl PropertyProvider for StaticProperties {
    fn get(&self, path: &[&[u8]]) -> Option<Vec<u8>> {
        let key = path
            .iter()
            .map(|s| String::from_utf8_lossy(s))
            .collect::<Vec<_>>()
            .join(".");
        self.values.get(&key).cloned()
    }
}
