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
///
/// The map keeps its serialized size as it changes, so the size and the
/// limits are integer reads, not a walk over the entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMap {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// `serialize().len()`, kept up to date by every change.
    serialized_len: usize,
}

impl Default for HeaderMap {
    fn default() -> Self {
        HeaderMap {
            entries: Vec::new(),
            serialized_len: EMPTY_MAP_BYTES,
        }
    }
}

/// The serialized size of a map with no entries (its `u32` count).
const EMPTY_MAP_BYTES: usize = 4;

/// Serialized bytes of one entry: two `u32` lengths, then the name and the
/// value, each followed by a NUL byte.
#[inline]
pub(crate) fn entry_bytes(key_len: usize, value_len: usize) -> usize {
    key_len.saturating_add(value_len).saturating_add(10)
}

fn lower(key: &[u8]) -> Vec<u8> {
    key.to_ascii_lowercase()
}

/// A header name lowercased for lookup: on the stack when it is as short as
/// header names usually are, so a lookup allocates nothing.
pub(crate) type LowerKey = smallvec::SmallVec<[u8; 64]>;

/// `key` lowercased, as every key in a [`HeaderMap`] is kept.
pub(crate) fn lower_key(key: &[u8]) -> LowerKey {
    let mut lowered = LowerKey::from_slice(key);
    lowered.make_ascii_lowercase();
    lowered
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
        self.get_lowered(&lower_key(key.as_ref()))
    }

    /// [`HeaderMap::get`] for a key already lowercased: keys are kept
    /// lowercase, so this compares bytes exactly.
    pub(crate) fn get_lowered(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k.as_slice() == key)
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of `key` as UTF-8, if it is valid UTF-8.
    pub fn get_str(&self, key: impl AsRef<[u8]>) -> Option<&str> {
        self.get(key).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Size of [`HeaderMap::serialize`]'s output, without serializing.
    #[inline]
    pub fn serialized_len(&self) -> usize {
        self.serialized_len
    }

    /// Appends an entry, keeping existing entries of the same name.
    ///
    /// This is the embedder's call and is not limited; plugins' changes go
    /// through the checked paths of the host functions.
    pub fn add(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.serialized_len += entry_bytes(key.len(), value.len());
        self.entries.push((lower(key), value.to_vec()));
    }

    /// [`HeaderMap::add`] taking the key and value it keeps, so a host call
    /// that has just read them from the guest copies nothing more.
    pub(crate) fn add_owned(&mut self, mut key: Vec<u8>, value: Vec<u8>) {
        key.make_ascii_lowercase();
        self.serialized_len += entry_bytes(key.len(), value.len());
        self.entries.push((key, value));
    }

    /// How many entries are named `key`, and their serialized bytes (what
    /// [`HeaderMap::replace`] or [`HeaderMap::remove`] would drop).
    pub(crate) fn named(&self, key: &[u8]) -> (usize, usize) {
        self.entries
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .fold((0, 0), |(n, bytes), (k, v)| {
                (n + 1, bytes + entry_bytes(k.len(), v.len()))
            })
    }

    /// Whether the map would stay within the reference host's limits
    /// ([`MAX_MAP_PAIRS`], [`MAX_SERIALIZED_MAP_BYTES`]) after dropping
    /// `dropped` bytes in `dropped_pairs` entries and adding one entry of
    /// `key_len` and `value_len` bytes. Checked before the guest's bytes are
    /// copied, so an oversized value is never allocated.
    pub(crate) fn fits(
        &self,
        dropped_pairs: usize,
        dropped: usize,
        key_len: usize,
        value_len: usize,
    ) -> bool {
        let pairs = self.entries.len() - dropped_pairs + 1;
        let bytes = (self.serialized_len - dropped).saturating_add(entry_bytes(key_len, value_len));
        pairs <= MAX_MAP_PAIRS && bytes <= MAX_SERIALIZED_MAP_BYTES
    }

    /// The longest value in the map.
    pub(crate) fn longest_value(&self) -> usize {
        self.entries.iter().map(|(_, v)| v.len()).max().unwrap_or(0)
    }

    /// Sets `key` to `value`: the first entry of that name is replaced in
    /// place and any further ones are removed; a missing name is appended.
    pub fn replace(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.replace_lowered(&lower_key(key.as_ref()), value.as_ref().to_vec());
    }

    /// [`HeaderMap::replace`] for a key already lowercased, taking the
    /// value it keeps. Only a map that holds the name more than once is
    /// rewritten; the usual single entry is changed in place.
    pub(crate) fn replace_lowered(&mut self, key: &[u8], value: Vec<u8>) {
        let Some(first) = self.entries.iter().position(|(k, _)| k.as_slice() == key) else {
            self.serialized_len += entry_bytes(key.len(), value.len());
            self.entries.push((key.to_vec(), value));
            return;
        };
        let (k, v) = &mut self.entries[first];
        self.serialized_len =
            self.serialized_len - entry_bytes(k.len(), v.len()) + entry_bytes(k.len(), value.len());
        *v = value;
        let rest = first + 1;
        if self.entries[rest..]
            .iter()
            .any(|(k, _)| k.as_slice() == key)
        {
            let mut size = self.serialized_len;
            let mut index = 0;
            self.entries.retain(|(k, v)| {
                let keep = index < rest || k.as_slice() != key;
                if !keep {
                    size -= entry_bytes(k.len(), v.len());
                }
                index += 1;
                keep
            });
            self.serialized_len = size;
        }
    }

    /// Removes every entry named `key`.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.remove_lowered(&lower_key(key.as_ref()));
    }

    /// [`HeaderMap::remove`] for a key already lowercased. A name that is
    /// not there costs one scan and moves nothing.
    pub(crate) fn remove_lowered(&mut self, key: &[u8]) {
        let Some(first) = self.entries.iter().position(|(k, _)| k.as_slice() == key) else {
            return;
        };
        let mut size = self.serialized_len;
        let mut index = 0;
        self.entries.retain(|(k, v)| {
            let keep = index < first || k.as_slice() != key;
            if !keep {
                size -= entry_bytes(k.len(), v.len());
            }
            index += 1;
            keep
        });
        self.serialized_len = size;
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
        let mut out = Vec::with_capacity(self.serialized_len);
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
        // Every byte was consumed, so the input is exactly the serialized form.
        Ok(HeaderMap {
            entries,
            serialized_len: bytes.len().max(EMPTY_MAP_BYTES),
        })
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
    fn lookups_ignore_case_and_leave_other_entries_in_place() {
        let mut map: HeaderMap = [("A", "1"), ("b", "2"), ("a", "3"), ("c", "4")]
            .into_iter()
            .collect();
        assert_eq!(map.get("a"), Some(&b"1"[..]));
        assert_eq!(map.get("B"), Some(&b"2"[..]));
        map.remove("missing");
        assert_eq!(map.len(), 4);
        map.replace("B", "22");
        map.remove("A");
        assert_eq!(
            map.to_string_pairs(),
            vec![("b".into(), "22".into()), ("c".into(), "4".into())]
        );
        assert_eq!(map.serialized_len(), map.serialize().len());
        let mut owned = HeaderMap::new();
        owned.add_owned(b"X-Mixed".to_vec(), b"v".to_vec());
        assert_eq!(owned.get("x-mixed"), Some(&b"v"[..]));
        assert_eq!(owned.serialized_len(), owned.serialize().len());
    }

    #[test]
    fn the_kept_size_is_the_serialized_size() {
        let mut map = HeaderMap::new();
        let check = |map: &HeaderMap| assert_eq!(map.serialized_len(), map.serialize().len());
        check(&map);
        map.add("A", "1");
        map.add("a", "22");
        map.add("b", "333");
        check(&map);
        assert_eq!(map.named(b"A"), (2, entry_bytes(1, 1) + entry_bytes(1, 2)));
        map.replace("a", "4444");
        check(&map);
        map.replace("new", "");
        check(&map);
        map.remove("b");
        check(&map);
        let back = HeaderMap::deserialize(&map.serialize()).unwrap();
        check(&back);
        assert_eq!(back, map);
        assert_eq!(HeaderMap::deserialize(&[]).unwrap(), HeaderMap::new());
        assert!(map.fits(0, 0, 10, 10));
        assert!(!map.fits(0, 0, 1, MAX_SERIALIZED_MAP_BYTES));
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
