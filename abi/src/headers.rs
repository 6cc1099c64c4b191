//! Header maps and their wire format.

use crate::types::Status;

/// Largest serialized header map accepted from or sent to a plugin (1 MiB),
/// as in the reference host.
pub const MAX_SERIALIZED_MAP_BYTES: usize = 1 << 20;
/// Largest number of pairs in one header map, as in the reference host.
pub const MAX_MAP_PAIRS: usize = 1024;

/// An ordered multimap of header names to values.
///
/// Names are stored lower-cased (as Envoy stores them) and compared
/// ASCII-case-insensitively; values are raw bytes. HTTP/2 pseudo-headers
/// (`:path`, `:method`, ...) are ordinary entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
}

fn lower(key: &[u8]) -> Vec<u8> {
    key.to_ascii_lowercase()
}

impl HeaderMap {
    /// An empty map.
    pub fn new() -> Self {
        HeaderMap::default()
    }

    /// Number of entries (a name that appears twice counts twice).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first value of `key`.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&[u8]> {
        let key = key.as_ref();
        self.entries
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `key` as UTF-8, if it is valid UTF-8.
    pub fn get_str(&self, key: impl AsRef<[u8]>) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Appends an entry, keeping existing entries of the same name.
    pub fn add(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.entries
            .push((lower(key.as_ref()), value.as_ref().to_vec()));
    }

    /// Sets `key` to `value`: the first entry of that name is replaced in
    /// place and any further ones are removed; a missing name is appended.
    pub fn replace(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let key = key.as_ref();
        let mut seen = false;
        self.entries.retain_mut(|(k, v)| {
            if !k.eq_ignore_ascii_case(key) {
                return true;
            }
            if seen {
                return false;
            }
            seen = true;
            *v = value.as_ref().to_vec();
            true
        });
        if !seen {
            self.add(key, value);
        }
    }

    /// Removes every entry named `key`.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        self.entries.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// The pairs as strings, replacing invalid UTF-8 (for display).
    pub fn to_string_pairs(&self) -> Vec<(String, String)> {
        self.iter()
            .map(|(k, v)| {
                (
                    String::from_utf8_lossy(k).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    /// Serializes in the proxy-wasm format: `u32 N`, `N x (u32 key_len,
    /// u32 value_len)`, then each key and value followed by a NUL byte.
    pub fn serialize(&self) -> Vec<u8> {
        let data: usize = self
            .entries
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum();
        let mut out = Vec::with_capacity(4 + self.entries.len() * 8 + data);
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for (k, v) in &self.entries {
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in &self.entries {
            out.extend_from_slice(k);
            out.push(0);
            out.extend_from_slice(v);
            out.push(0);
        }
        out
    }

    /// Parses the proxy-wasm format. An empty buffer is an empty map.
    ///
    /// # Errors
    /// [`Status::BadArgument`] when the buffer is over
    /// [`MAX_SERIALIZED_MAP_BYTES`] or declares more than [`MAX_MAP_PAIRS`]
    /// pairs; [`Status::ParseFailure`] when it is truncated, a terminator is
    /// not NUL, or bytes are left over.
    pub fn deserialize(bytes: &[u8]) -> Result<Self, Status> {
        if bytes.is_empty() {
            return Ok(HeaderMap::new());
        }
        if bytes.len() > MAX_SERIALIZED_MAP_BYTES {
            return Err(Status::BadArgument);
        }
        let word = |at: usize| -> Result<usize, Status> {
            bytes
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or(Status::ParseFailure)
        };
        let n = word(0)?;
        if n > MAX_MAP_PAIRS {
            return Err(Status::BadArgument);
        }
        let mut sizes_at = 4;
        let mut data_at = 4 + n * 8;
        let mut entries = Vec::with_capacity(n);
        for _ in 0..n {
            let klen = word(sizes_at)?;
            let vlen = word(sizes_at + 4)?;
            sizes_at += 8;
            let key = take_terminated(bytes, &mut data_at, klen)?;
            let value = take_terminated(bytes, &mut data_at, vlen)?;
            entries.push((lower(key), value.to_vec()));
        }
        if data_at != bytes.len() {
            return Err(Status::ParseFailure);
        }
        Ok(HeaderMap { entries })
    }
}

/// Takes `len` bytes at `*at` followed by a NUL byte.
fn take_terminated<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], Status> {
    let end = at.checked_add(len).ok_or(Status::ParseFailure)?;
    let s = bytes.get(*at..end).ok_or(Status::ParseFailure)?;
    if bytes.get(end) != Some(&0) {
        return Err(Status::ParseFailure);
    }
    *at = end + 1;
    Ok(s)
}

impl<K: AsRef<[u8]>, V: AsRef<[u8]>> FromIterator<(K, V)> for HeaderMap {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = HeaderMap::new();
        for (k, v) in iter {
            map.add(k, v);
        }
        map
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_keeps_order_and_duplicates() {
        let map: HeaderMap = [(":path", "/a"), ("X-A", "1"), ("x-a", "2"), ("empty", "")]
            .into_iter()
            .collect();
        let bytes = map.serialize();
        assert_eq!(&bytes[..4], &4u32.to_le_bytes());
        let back = HeaderMap::deserialize(&bytes).unwrap();
        assert_eq!(back, map);
        assert_eq!(back.get("x-a"), Some(&b"1"[..]));
        assert_eq!(back.get("EMPTY"), Some(&b""[..]));
    }

    #[test]
    fn replace_keeps_position_and_drops_duplicates() {
        let mut map: HeaderMap = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        map.replace("A", "9");
        assert_eq!(
            map.to_string_pairs(),
            vec![("a".into(), "9".into()), ("b".into(), "2".into())]
        );
        map.replace("c", "4");
        assert_eq!(map.get_str("c"), Some("4"));
        map.remove("a");
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn malformed_and_oversized_maps_are_rejected() {
        let good = HeaderMap::from_iter([("k", "v")]).serialize();
        assert_eq!(
            HeaderMap::deserialize(&good[..good.len() - 1]),
            Err(Status::ParseFailure)
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(HeaderMap::deserialize(&trailing), Err(Status::ParseFailure));
        let mut bad_nul = good.clone();
        let last = bad_nul.len() - 1;
        bad_nul[last] = b'x';
        assert_eq!(HeaderMap::deserialize(&bad_nul), Err(Status::ParseFailure));
        let too_many = (MAX_MAP_PAIRS as u32 + 1).to_le_bytes();
        assert_eq!(HeaderMap::deserialize(&too_many), Err(Status::BadArgument));
        let huge = vec![0u8; MAX_SERIALIZED_MAP_BYTES + 1];
        assert_eq!(HeaderMap::deserialize(&huge), Err(Status::BadArgument));
        assert_eq!(HeaderMap::deserialize(&[]), Ok(HeaderMap::new()));
    }
}
