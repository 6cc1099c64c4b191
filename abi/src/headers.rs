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
/// Every name and value lives in one byte buffer, back to back, with a
/// small index of where each entry sits: a map of N headers is two
/// allocations instead of 2N + 1, adding an entry usually allocates
/// nothing, and removing one frees nothing. The index keeps a tag of each
/// name, so a lookup reads the index alone and compares names only where
/// a tag matches. Removed or outgrown bytes stay
/// in the buffer until they outweigh the live ones, when it is compacted,
/// so the buffer never holds more than twice the live bytes (plus 1 KiB).
///
/// The map keeps its serialized size as it changes, so the size and the
/// limits are integer reads, not a walk over the entries.
pub struct HeaderMap {
    /// Each entry's lowercased name followed by its value.
    bytes: Vec<u8>,
    /// Where each entry sits in `bytes`, in order.
    entries: Vec<Entry>,
    /// `serialize().len()`, kept up to date by every change. It also
    /// tells how many bytes of `bytes` are live (see [`HeaderMap::live`]).
    serialized_len: usize,
}

/// Where one entry's name and value sit in [`HeaderMap::bytes`].
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Offset of the name; the value follows it.
    at: usize,
    value_len: usize,
    key_len: u32,
    /// The name's [`Name::tag`].
    tag: u32,
}

impl Entry {
    #[inline]
    fn key<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.at..self.at + self.key_len()]
    }

    #[inline]
    fn key_len(&self) -> usize {
        self.key_len as usize
    }

    /// Whether this entry is named `name`.
    #[inline]
    fn is(&self, bytes: &[u8], name: Name<'_>) -> bool {
        self.tag == name.tag && same_name(self.key(bytes), name.bytes)
    }

    #[inline]
    fn value<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        let start = self.at + self.key_len();
        &bytes[start..start + self.value_len]
    }

    /// Bytes it takes in [`HeaderMap::bytes`].
    #[inline]
    fn stored(&self) -> usize {
        self.key_len() + self.value_len
    }

    /// Bytes it takes in the serialized map.
    #[inline]
    fn serialized(&self) -> usize {
        entry_bytes(self.key_len(), self.value_len)
    }
}

/// A lowercase name with its tag, computed once per lookup.
#[derive(Clone, Copy)]
struct Name<'a> {
    bytes: &'a [u8],
    /// A digest of the length and the first and last eight bytes. Names of
    /// one map often share a length and a prefix (`x-forwarded-for`,
    /// `x-request-id`, `fake_key_1` ... `fake_key_19`) and differ at the
    /// end, which the tag covers, so unequal names rarely reach a byte
    /// compare.
    tag: u32,
}

impl<'a> Name<'a> {
    #[inline]
    fn new(bytes: &'a [u8]) -> Self {
        let n = bytes.len();
        let (head, tail) = if n >= 8 {
            (word_at(bytes, 0), word_at(bytes, n - 8))
        } else {
            let mut short = [0u8; 8];
            short[..n].copy_from_slice(bytes);
            (u64::from_le_bytes(short), 0)
        };
        // Fibonacci hashing: the multiply spreads every input bit into the
        // high half, which is kept.
        let mixed = (head ^ tail.rotate_left(29) ^ n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        Name {
            bytes,
            tag: (mixed >> 32) as u32,
        }
    }
}

/// A copy is usually made to be changed (an embedder's request headers
/// handed to a plugin, which adds a few), so it gets room to grow by half
/// again without reallocating, where a derived clone would be full.
impl Clone for HeaderMap {
    fn clone(&self) -> Self {
        let room = |len: usize, first: usize| len.saturating_add(len / 2).max(first);
        let mut entries = Vec::with_capacity(room(self.entries.len(), FIRST_CAPACITY));
        entries.extend_from_slice(&self.entries);
        let mut bytes = Vec::with_capacity(room(self.bytes.len(), FIRST_BYTES));
        bytes.extend_from_slice(&self.bytes);
        HeaderMap {
            bytes,
            entries,
            serialized_len: self.serialized_len,
        }
    }
}

impl Default for HeaderMap {
    fn default() -> Self {
        HeaderMap {
            bytes: Vec::new(),
            entries: Vec::new(),
            serialized_len: EMPTY_MAP_BYTES,
        }
    }
}

impl PartialEq for HeaderMap {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for HeaderMap {}

impl std::fmt::Debug for HeaderMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.to_string_pairs()).finish()
    }
}

/// The serialized size of a map with no entries (its `u32` count).
const EMPTY_MAP_BYTES: usize = 4;

/// Dead bytes a map may hold before it is compacted, however few its live
/// ones: compacting a small map often would cost more than it saves.
const MIN_DEAD_TO_COMPACT: usize = 1024;

/// Serialized bytes of one entry: two `u32` lengths, then the name and the
/// value, each followed by a NUL byte.
#[inline]
pub(crate) fn entry_bytes(key_len: usize, value_len: usize) -> usize {
    key_len.saturating_add(value_len).saturating_add(10)
}

/// Whether two names are the same bytes. Most names are 8 to 16 bytes,
/// which two overlapping word compares settle without a call to `memcmp`.
#[inline]
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if (8..=16).contains(&n) {
        return word_at(a, 0) == word_at(b, 0) && word_at(a, n - 8) == word_at(b, n - 8);
    }
    a == b
}

/// The eight bytes of `bytes` at `at`, as a little-endian word; callers
/// check the length first (out of range reads as 0).
#[inline]
fn word_at(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..at.saturating_add(8))
        .and_then(|w| w.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// Entries a map makes room for when its first is added.
const FIRST_CAPACITY: usize = 32;

/// Bytes of names and values a map makes room for when its first entry is
/// added: a typical request's header block fits, where growing from the
/// first entry's size would take half a dozen reallocations.
const FIRST_BYTES: usize = 1024;

/// Runs `f` with `key` lowercased, as names are stored: as it is when it
/// has no uppercase letter (plugins mostly send lowercase names), else a
/// lowercased copy, on the stack when short.
#[inline]
fn with_lowered<R>(key: &[u8], f: impl FnOnce(Name<'_>) -> R) -> R {
    if !key.iter().any(u8::is_ascii_uppercase) {
        return f(Name::new(key));
    }
    let mut lowered = smallvec::SmallVec::<[u8; 64]>::from_slice(key);
    lowered.make_ascii_lowercase();
    f(Name::new(&lowered))
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

    /// Index of the first entry at or after `from` named `name`.
    #[inline]
    fn position(&self, from: usize, name: Name<'_>) -> Option<usize> {
        let bytes = &self.bytes;
        self.entries[from..]
            .iter()
            .position(|e| e.is(bytes, name))
            .map(|i| from + i)
    }

    /// The first value of `key` (any case).
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<&[u8]> {
        let at = with_lowered(key.as_ref(), |name| self.position(0, name))?;
        Some(self.entries[at].value(&self.bytes))
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
    ///
    /// # Panics
    /// If the name is 4 GiB or longer (the wire format's lengths are
    /// `u32`s, and plugins' names are limited to 1 MiB).
    pub fn add(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        let key_len = u32::try_from(key.len()).expect("a header name under 4 GiB");
        if self.entries.capacity() == 0 {
            // Most maps grow to a few dozen entries: one allocation for
            // the index rather than four or five.
            self.entries.reserve_exact(FIRST_CAPACITY);
        }
        if self.bytes.capacity() == 0 {
            self.bytes.reserve_exact(FIRST_BYTES);
        }
        let at = self.bytes.len();
        self.bytes.reserve(key.len() + value.len());
        self.bytes.extend_from_slice(key);
        self.bytes[at..].make_ascii_lowercase();
        let tag = Name::new(&self.bytes[at..]).tag;
        self.bytes.extend_from_slice(value);
        let entry = Entry {
            at,
            value_len: value.len(),
            key_len,
            tag,
        };
        self.serialized_len += entry.serialized();
        self.entries.push(entry);
    }

    /// How many entries are named `key`, and their serialized bytes (what
    /// [`HeaderMap::replace`] or [`HeaderMap::remove`] would drop).
    pub(crate) fn named(&self, key: &[u8]) -> (usize, usize) {
        with_lowered(key, |name| {
            self.entries
                .iter()
                .filter(|e| e.is(&self.bytes, name))
                .fold((0, 0), |(n, bytes), e| (n + 1, bytes + e.serialized()))
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
        self.entries.iter().map(|e| e.value_len).max().unwrap_or(0)
    }

    /// Sets `key` to `value`: the first entry of that name (any case) gets
    /// the value in place and any further ones are removed; a missing name
    /// is appended.
    pub fn replace(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        with_lowered(key.as_ref(), |name| {
            self.replace_lowered(name, value.as_ref())
        });
    }

    fn replace_lowered(&mut self, name: Name<'_>, value: &[u8]) {
        let Some(first) = self.position(0, name) else {
            self.add(name.bytes, value);
            return;
        };
        let old = self.entries[first];
        let new = if value.len() <= old.value_len {
            // The usual case: the value fits where the old one was.
            let start = old.at + old.key_len();
            self.bytes[start..start + value.len()].copy_from_slice(value);
            Entry {
                value_len: value.len(),
                ..old
            }
        } else {
            let at = self.bytes.len();
            self.bytes.reserve(old.key_len() + value.len());
            self.bytes
                .extend_from_within(old.at..old.at + old.key_len());
            self.bytes.extend_from_slice(value);
            Entry {
                at,
                value_len: value.len(),
                ..old
            }
        };
        self.serialized_len = self.serialized_len - old.serialized() + new.serialized();
        self.entries[first] = new;
        self.remove_from(first + 1, name);
        self.compact_if_wasteful();
    }

    /// Removes every entry named `key` (any case). A name that is not
    /// there costs one scan and moves nothing.
    pub fn remove(&mut self, key: impl AsRef<[u8]>) {
        with_lowered(key.as_ref(), |name| self.remove_from(0, name));
        self.compact_if_wasteful();
    }

    /// Removes the entries named `name` at or after index `from`.
    fn remove_from(&mut self, from: usize, name: Name<'_>) {
        let Some(first) = self.position(from, name) else {
            return;
        };
        // Entries before the first match stay where they are; later ones
        // move down over the removed ones.
        let mut kept = first;
        for read in first..self.entries.len() {
            let entry = self.entries[read];
            if entry.is(&self.bytes, name) {
                self.serialized_len -= entry.serialized();
            } else {
                self.entries[kept] = entry;
                kept += 1;
            }
        }
        self.entries.truncate(kept);
    }

    /// Bytes of `bytes` the entries refer to: their names and values, i.e.
    /// the serialized size without the count, lengths and NULs. Derived
    /// rather than kept, so the map stays small enough to move cheaply.
    fn live(&self) -> usize {
        self.serialized_len - EMPTY_MAP_BYTES - self.entries.len() * entry_bytes(0, 0)
    }

    /// Drops the dead bytes once they outweigh the live ones, which keeps
    /// the cost of compacting amortized over the changes that caused it.
    fn compact_if_wasteful(&mut self) {
        let live = self.live();
        if self.bytes.len() - live <= live.max(MIN_DEAD_TO_COMPACT) {
            return;
        }
        let mut bytes = Vec::with_capacity(live);
        for e in &mut self.entries {
            let at = bytes.len();
            bytes.extend_from_slice(&self.bytes[e.at..e.at + e.stored()]);
            e.at = at;
        }
        self.bytes = bytes;
    }

    /// Iterates over `(name, value)` pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.entries
            .iter()
            .map(|e| (e.key(&self.bytes), e.value(&self.bytes)))
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
        for e in &self.entries {
            out.extend_from_slice(&e.key_len.to_le_bytes());
            out.extend_from_slice(&(e.value_len as u32).to_le_bytes());
        }
        for (k, v) in self.iter() {
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
        let mut map = HeaderMap {
            bytes: Vec::with_capacity(bytes.len().saturating_sub(data_at)),
            entries: Vec::with_capacity(n),
            ..HeaderMap::default()
        };
        for _ in 0..n {
            let klen = word(sizes_at)?;
            let vlen = word(sizes_at + 4)?;
            sizes_at += 8;
            let key = take_terminated(bytes, &mut data_at, klen)?;
            let value = take_terminated(bytes, &mut data_at, vlen)?;
            map.add(key, value);
        }
        if data_at != bytes.len() {
            return Err(Status::ParseFailure);
        }
        // Every byte was consumed, so the input is exactly the serialized form.
        debug_assert_eq!(map.serialized_len, bytes.len().max(EMPTY_MAP_BYTES));
        Ok(map)
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
        let mut mixed = HeaderMap::new();
        mixed.add("X-Mixed", "v");
        assert_eq!(mixed.get("x-mixed"), Some(&b"v"[..]));
        assert_eq!(mixed.iter().next(), Some((&b"x-mixed"[..], &b"v"[..])));
        assert_eq!(mixed.serialized_len(), mixed.serialize().len());
    }

    #[test]
    fn names_that_share_a_tag_are_still_told_apart() {
        // Same length, same first and last eight bytes: the same tag, so
        // only the byte compare separates them.
        let (a, b) = ("x-prefix-1x-suffix", "x-prefix-2x-suffix");
        assert_eq!(Name::new(a.as_bytes()).tag, Name::new(b.as_bytes()).tag);
        let mut map: HeaderMap = [(a, "1"), (b, "2"), ("short", "3")].into_iter().collect();
        assert_eq!(map.get(b), Some(&b"2"[..]));
        assert_eq!(map.named(a.as_bytes()), (1, entry_bytes(a.len(), 1)));
        map.replace(a, "9");
        map.remove(b);
        assert_eq!(map.get(a), Some(&b"9"[..]));
        assert_eq!(map.get(b), None);
        assert_eq!(map.get("SHORT"), Some(&b"3"[..]));
        // Short names and their tags: every byte counts.
        assert_ne!(Name::new(b"ab").tag, Name::new(b"ba").tag);
        assert_ne!(Name::new(b"a").tag, Name::new(b"a\0").tag);
        for (a, b, same) in [
            (&b"x-request-id"[..], &b"x-request-id"[..], true),
            (b"x-request-id", b"x-request-ix", false),
            (b"y-request-id", b"x-request-id", false),
            (b"x-request-i", b"x-request-id", false),
            (b"12345678", b"12345678", true),
            (b"short", b"shore", false),
            (b"a-name-of-more-than-16", b"a-name-of-more-than-17", false),
        ] {
            assert_eq!(same_name(a, b), same, "{a:?} {b:?}");
        }
    }

    #[test]
    fn removing_a_repeated_name_keeps_the_others_in_order() {
        // Matches at the start, in runs, apart, and at the end.
        let marked = [0, 7, 8, 9, 16, 17, 19];
        let pairs: Vec<(String, String)> = (0..20)
            .map(|i| {
                let name = if marked.contains(&i) {
                    "dup".to_string()
                } else {
                    format!("h{i}")
                };
                (name, i.to_string())
            })
            .collect();
        let mut map: HeaderMap = pairs.iter().cloned().collect();
        assert_eq!(map.get("DUP"), Some(&b"0"[..]));
        assert_eq!(map.named(b"dup").0, marked.len());
        map.remove("dup");
        let left: Vec<(String, String)> = pairs
            .into_iter()
            .filter(|(name, _)| name != "dup")
            .collect();
        assert_eq!(map.to_string_pairs(), left);
        assert_eq!(map.serialized_len(), map.serialize().len());
        assert_eq!(map.get("h18"), Some(&b"18"[..]));
        for (name, value) in &left {
            assert_eq!(map.get(name), Some(value.as_bytes()));
        }
    }

    #[test]
    fn values_that_grow_shrink_or_go_leave_the_map_intact_and_compact() {
        let mut map: HeaderMap = [("a", "1"), ("b", "2")].into_iter().collect();
        map.replace("a", "a much longer value than before");
        map.replace("b", "");
        assert_eq!(
            map.to_string_pairs(),
            vec![
                ("a".into(), "a much longer value than before".into()),
                ("b".into(), "".into())
            ]
        );
        // Churn far past the compaction threshold: the buffer stays within
        // twice the live bytes plus the slack, and every entry reads back.
        for round in 0..2000 {
            let value = format!("value-{round}");
            map.add(format!("x-{}", round % 7), &value);
            map.replace("a", &value);
            map.remove(format!("X-{}", (round + 3) % 7));
            assert_eq!(map.get("A"), Some(value.as_bytes()));
            let live = map.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
            assert_eq!(map.live(), live);
            assert!(map.bytes.len() - live <= live.max(MIN_DEAD_TO_COMPACT));
        }
        assert_eq!(map.serialized_len(), map.serialize().len());
        let back = HeaderMap::deserialize(&map.serialize()).unwrap();
        assert_eq!(back, map);
        assert_eq!(format!("{back:?}"), format!("{map:?}"));
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
