//! An on-disk cache of precompiled modules, so a restart does not recompile.
//!
//! Entries are keyed by the SHA-256 of the module's bytes plus the SHA-256 of
//! the engine's [fingerprint](Engine::fingerprint) (runtime, version,
//! variant, target and code-affecting settings), so two engines or two
//! versions never share an entry.
//!
//! # Trust
//!
//! A precompiled entry is native code: loading one runs whatever it holds,
//! and an engine's deserializer trusts its input (a forged wasmer entry has
//! crashed the host). Checksums cannot stop someone who can write the
//! folder, since they can recompute them. So **the cache folder must be
//! trusted**, and the cache makes sure it is as private as it can:
//!
//! * the folder is created with mode `0700`, and an existing folder that is
//!   writable by its group or by others, or owned by another user (other
//!   than root), is refused with [`CacheError::InsecureDir`] naming it,
//!   before anything in it is read or written;
//! * only regular files are read, opened without following symbolic links
//!   and never more than the cache's byte bound; a symlink, device, FIFO,
//!   directory or oversized file at an entry's name is never read, and is
//!   replaced by a fresh entry where possible;
//! * each entry starts with a header (magic, format version, the SHA-256 of
//!   the module it was compiled from, the engine's full fingerprint, the
//!   payload length and the payload's SHA-256). All of it is checked before
//!   the payload reaches the engine's deserializer, so a corrupt, truncated
//!   or foreign entry, or one copied over another module's name, is
//!   discarded and rebuilt, never loaded as the wrong module;
//! * eviction only deletes files that are Polyhost's own entries (the
//!   entry file-name pattern, a regular file and the entry magic), never
//!   other files that happen to be in the folder.
//!
//! Other properties:
//!
//! * **Atomic writes.** An entry is written to a temporary file in the cache
//!   folder and renamed into place, so concurrent writers (threads or
//!   processes) never leave a torn entry; the last rename wins and both
//!   contents are valid.
//! * **Bounded size.** After each insert the cache deletes the least
//!   recently used entries (by modification time, refreshed on every hit)
//!   until it is under its byte limit. An entry larger than the whole bound
//!   is not stored at all ([`CacheOutcome::NotStored`]).
//! * **Location.** The platform cache directory (`$XDG_CACHE_HOME/polyhost`
//!   or `~/.cache/polyhost` on Linux, `~/Library/Caches/polyhost` on macOS,
//!   `%LOCALAPPDATA%\polyhost` on Windows), or any folder you choose.
//!
//! Engines without ahead-of-time compilation (wasmi) are compiled every time;
//! [`Loaded::outcome`] says [`CacheOutcome::Uncacheable`].

use polyhost_engine_core::{Engine, ErrorKind};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Default size bound: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// Every entry starts with this; the last byte is the format version.
const MAGIC: &[u8; 8] = b"PHCACHE\x02";
/// What every version of the entry format starts with: how eviction
/// recognises Polyhost's own files, old formats included.
const MAGIC_FAMILY: &[u8; 7] = b"PHCACHE";
const ENTRY_EXTENSION: &str = "cwasm";

/// What [`ModuleCache::load`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a precompiled entry; nothing was compiled.
    Hit,
    /// Compiled and stored a new entry.
    Miss,
    /// Found an invalid entry (corrupt, foreign, for another module, or not
    /// a regular file), discarded it, compiled and stored a new one.
    Rebuilt,
    /// Compiled, but the entry alone is larger than the cache's byte bound,
    /// so nothing was stored.
    NotStored,
    /// The engine cannot precompile; compiled in memory.
    Uncacheable,
}

/// A module and how it was obtained.
pub struct Loaded<M> {
    /// The module.
    pub module: M,
    /// Hit, miss, rebuilt, not stored or uncacheable.
    pub outcome: CacheOutcome,
}

/// Cache failures. A broken entry is not one of them: it is rebuilt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The module itself does not compile.
    #[error(transparent)]
    Engine(#[from] polyhost_engine_core::Error),
    /// The cache folder cannot be read or written.
    #[error("module cache at {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The cache folder could be written by someone else, so its entries
    /// (native code) cannot be trusted; nothing in it is read or written.
    #[error(
        "module cache at {path} is refused: {reason}; a cache others can write is code execution \
         (fix it with `chmod 700 {path}`, or choose another folder)"
    )]
    InsecureDir {
        /// The folder.
        path: PathBuf,
        /// What is wrong (its mode or owner).
        reason: String,
    },
    /// The platform has no cache directory and none was given.
    #[error("no platform cache directory; choose one with ModuleCache::new")]
    NoCacheDir,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CacheError + '_ {
    move |source| CacheError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An on-disk cache of precompiled modules.
#[derive(Debug, Clone)]
pub struct ModuleCache {
    dir: PathBuf,
    max_bytes: u64,
}

impl ModuleCache {
    /// A cache in `dir` (created, private, on first use) holding at most
    /// `max_bytes`; with 0 nothing is kept.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        ModuleCache {
            dir: dir.into(),
            max_bytes,
        }
    }

    /// A cache in the platform cache directory with the default bound.
    ///
    /// # Errors
    /// [`CacheError::NoCacheDir`] when the platform has none.
    pub fn at_default_location() -> Result<Self, CacheError> {
        Ok(Self::new(Self::default_dir()?, DEFAULT_MAX_BYTES))
    }

    /// The platform cache directory + `polyhost`.
    ///
    /// # Errors
    /// [`CacheError::NoCacheDir`] when the platform has none.
    pub fn default_dir() -> Result<PathBuf, CacheError> {
        Ok(dirs::cache_dir()
            .ok_or(CacheError::NoCacheDir)?
            .join("polyhost"))
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The byte bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where the entry for `wasm` on `engine` lives.
    pub fn entry_path<E: Engine>(&self, engine: &E, wasm: &[u8]) -> PathBuf {
        self.path_for(&Sha256::digest(wasm).into(), &engine.fingerprint())
    }

    fn path_for(&self, module: &[u8; 32], fingerprint: &str) -> PathBuf {
        let module = hex(module);
        let engine_hash = hex(&Sha256::digest(fingerprint.as_bytes()));
        self.dir.join(format!(
            "{}-{}.{ENTRY_EXTENSION}",
            &module[..32],
            &engine_hash[..16]
        ))
    }

    /// Loads `wasm` precompiled for `engine`, compiling and storing it on a
    /// miss.
    ///
    /// # Errors
    /// [`CacheError::Engine`] when the module does not compile,
    /// [`CacheError::InsecureDir`] when the folder is writable by others,
    /// [`CacheError::Io`] when the cache cannot be written.
    pub fn load<E: Engine>(
        &self,
        engine: &E,
        wasm: &[u8],
    ) -> Result<Loaded<E::Module>, CacheError> {
        if !engine.capabilities().precompile {
            return Ok(Loaded {
                module: engine.compile(wasm)?,
                outcome: CacheOutcome::Uncacheable,
            });
        }
        self.prepare_dir()?;
        let module_hash: [u8; 32] = Sha256::digest(wasm).into();
        let fingerprint = engine.fingerprint();
        let path = self.path_for(&module_hash, &fingerprint);
        let mut outcome = CacheOutcome::Miss;
        match read_entry(&path, self.max_bytes) {
            Entry::Missing => {}
            Entry::Refused(why) => {
                // Not read, and not deleted either: the atomic rename of the
                // new entry replaces a link or a special file by itself.
                tracing::warn!(path = %path.display(), why, "refusing cache entry");
                outcome = CacheOutcome::Rebuilt;
            }
            Entry::Bytes(bytes, file) => match verified_payload(&bytes, &module_hash, &fingerprint)
            {
                Some(payload) => {
                    // SAFETY: the entry is a regular file in a folder only
                    // this user can write, its header names this module and
                    // this engine's full fingerprint, and its payload
                    // matches the recorded SHA-256: it is what this cache
                    // wrote for this module on an identical engine.
                    match unsafe { engine.deserialize(payload) } {
                        Ok(module) => {
                            // Marks the entry as recently used.
                            let _ = file.set_modified(SystemTime::now());
                            return Ok(Loaded {
                                module,
                                outcome: CacheOutcome::Hit,
                            });
                        }
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %e, "discarding unloadable cache entry");
                            outcome = CacheOutcome::Rebuilt;
                        }
                    }
                }
                None => {
                    tracing::warn!(path = %path.display(), "discarding corrupt or foreign cache entry");
                    outcome = CacheOutcome::Rebuilt;
                }
            },
        }
        let payload = engine.precompile(wasm)?;
        let header = header(&module_hash, &fingerprint, &payload);
        if (header.len() + payload.len()) as u64 > self.max_bytes {
            tracing::debug!(path = %path.display(), max_bytes = self.max_bytes, "entry larger than the cache bound; not stored");
            outcome = CacheOutcome::NotStored;
        } else {
            self.store(&path, &header, &payload)?;
        }
        // SAFETY: `payload` was produced by this engine a moment ago.
        let module = match unsafe { engine.deserialize(&payload) } {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotSupported => engine.compile(wasm)?,
            Err(e) => return Err(e.into()),
        };
        self.evict()?;
        Ok(Loaded { module, outcome })
    }

    /// Creates the folder private, or checks that an existing one is.
    fn prepare_dir(&self) -> Result<(), CacheError> {
        match fs::metadata(&self.dir) {
            Ok(meta) => check_private(&self.dir, &meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut builder = fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder.create(&self.dir).map_err(io(&self.dir))?;
                // Another process may have created it first, with its own mode.
                let meta = fs::metadata(&self.dir).map_err(io(&self.dir))?;
                check_private(&self.dir, &meta)
            }
            Err(e) => Err(io(&self.dir)(e)),
        }
    }

    /// Writes an entry atomically (temporary file, then rename).
    fn store(&self, path: &Path, header: &[u8], payload: &[u8]) -> Result<(), CacheError> {
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io(&self.dir))?;
        tmp.write_all(header)
            .and_then(|()| tmp.write_all(payload))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io(tmp.path()))?;
        tmp.persist(path).map_err(|e| io(path)(e.error))?;
        Ok(())
    }

    /// Deletes least recently used entries until the cache fits its bound.
    /// Only Polyhost's own entries are counted and deleted: regular files
    /// named as entries are that start with the entry magic.
    ///
    /// # Errors
    /// [`CacheError::InsecureDir`] when the folder is writable by others,
    /// [`CacheError::Io`] when it cannot be listed.
    pub fn evict(&self) -> Result<(), CacheError> {
        let meta = fs::metadata(&self.dir).map_err(io(&self.dir))?;
        check_private(&self.dir, &meta)?;
        let mut entries = Vec::new();
        let mut total = 0u64;
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let Ok(entry) = entry else { continue };
            if !is_entry_name(&entry.file_name().to_string_lossy()) {
                continue;
            }
            let path = entry.path();
            // `DirEntry::metadata` does not follow symlinks.
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.is_file() || !starts_with_magic(&path) {
                continue;
            }
            total += meta.len();
            let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push((used, meta.len(), path));
        }
        entries.sort();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                tracing::debug!(path = %path.display(), "evicted cache entry");
                total -= len;
            }
        }
        Ok(())
    }
}

/// Refuses a folder that someone other than this user (or root) could
/// write into.
fn check_private(dir: &Path, meta: &fs::Metadata) -> Result<(), CacheError> {
    let refuse = |reason: String| {
        Err(CacheError::InsecureDir {
            path: dir.to_path_buf(),
            reason,
        })
    };
    if !meta.is_dir() {
        return refuse("it is not a directory".into());
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            let who = if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            };
            return refuse(format!("it is writable by {who} (mode {mode:04o})"));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        let me = unsafe { libc::geteuid() };
        if meta.uid() != me && meta.uid() != 0 {
            return refuse(format!(
                "it is owned by user {}, not by this user ({me})",
                meta.uid()
            ));
        }
    }
    Ok(())
}

/// What is at an entry's path.
enum Entry {
    Missing,
    /// Not read: not a regular file, or larger than the bound.
    Refused(&'static str),
    /// The bytes, and the open file (to mark it used).
    Bytes(Vec<u8>, fs::File),
}

/// Reads an entry if it is a regular file of at most `max` bytes, without
/// following a symlink and without blocking on a FIFO.
fn read_entry(path: &Path, max: u64) -> Entry {
    let file = match open_no_follow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Entry::Missing,
        // ELOOP: the entry is a symbolic link.
        Err(_) => return Entry::Refused("cannot be opened as a regular file (a symlink?)"),
    };
    let Ok(meta) = file.metadata() else {
        return Entry::Refused("cannot be inspected");
    };
    if !meta.is_file() {
        return Entry::Refused("not a regular file");
    }
    if meta.len() > max {
        return Entry::Refused("larger than the cache bound");
    }
    let mut bytes = Vec::new();
    // Bounded even if the file grows after the check.
    if (&file).take(max + 1).read_to_end(&mut bytes).is_err() || bytes.len() as u64 > max {
        return Entry::Refused("unreadable, or larger than the cache bound");
    }
    Entry::Bytes(bytes, file)
}

/// `<32 hex>-<16 hex>.cwasm`, as [`ModuleCache::entry_path`] names entries.
fn is_entry_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".cwasm") else {
        return false;
    };
    let hexes = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    matches!(stem.split_once('-'), Some((m, e)) if hexes(m, 32) && hexes(e, 16))
}

/// Opens for reading without following a final symlink (`ELOOP` instead)
/// and without blocking if the path is a FIFO.
fn open_no_follow(path: &Path) -> std::io::Result<fs::File> {
    let mut options = fs::File::options();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(
        &mut options,
        libc::O_NOFOLLOW | libc::O_NONBLOCK,
    );
    options.open(path)
}

/// Whether `path` is a regular file starting with the entry magic of any
/// format version.
fn starts_with_magic(path: &Path) -> bool {
    let Ok(file) = open_no_follow(path) else {
        return false;
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut prefix = Vec::new();
    (&file)
        .take(MAGIC_FAMILY.len() as u64)
        .read_to_end(&mut prefix)
        .is_ok()
        && prefix == MAGIC_FAMILY
}

/// The entry header: magic, module SHA-256, fingerprint (length-prefixed),
/// payload length and payload SHA-256.
fn header(module: &[u8; 32], fingerprint: &str, payload: &[u8]) -> Vec<u8> {
    let fp = fingerprint.as_bytes();
    let mut header = Vec::with_capacity(8 + 32 + 4 + fp.len() + 8 + 32);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(module);
    header.extend_from_slice(&(fp.len() as u32).to_le_bytes());
    header.extend_from_slice(fp);
    header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    header.extend_from_slice(&Sha256::digest(payload));
    header
}

/// Returns the payload if the header is intact, was written for `module`
/// on an engine with `fingerprint`, and the checksum matches.
fn verified_payload<'a>(bytes: &'a [u8], module: &[u8; 32], fingerprint: &str) -> Option<&'a [u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
    let (recorded_module, rest) = rest.split_first_chunk::<32>()?;
    if recorded_module != module {
        return None;
    }
    let (fp_len, rest) = rest.split_first_chunk::<4>()?;
    let fp_len = u32::from_le_bytes(*fp_len) as usize;
    let (fp, rest) = rest.split_at_checked(fp_len)?;
    if fp != fingerprint.as_bytes() {
        return None;
    }
    let (len, rest) = rest.split_first_chunk::<8>()?;
    let (digest, payload) = rest.split_first_chunk::<32>()?;
    if payload.len() as u64 != u64::from_le_bytes(*len) {
        return None;
    }
    (Sha256::digest(payload).as_slice() == digest).then_some(payload)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_recognised_exactly() {
        let dir = Path::new("/c");
        let cache = ModuleCache::new(dir, 1);
        let path = cache.path_for(&[0xab; 32], "fp");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(is_entry_name(&name), "{name}");
        for other in [
            "notes.cwasm",
            "module.wasm",
            &name.replace(".cwasm", ".wasm"),
            &name.to_uppercase(),
            &format!("x{name}"),
        ] {
            assert!(!is_entry_name(other), "{other}");
        }
    }

    #[test]
    fn header_binds_module_and_fingerprint() {
        let (m, other) = ([1u8; 32], [2u8; 32]);
        let mut entry = header(&m, "engine-a", b"code");
        entry.extend_from_slice(b"code");
        assert_eq!(verified_payload(&entry, &m, "engine-a"), Some(&b"code"[..]));
        assert_eq!(verified_payload(&entry, &other, "engine-a"), None);
        assert_eq!(verified_payload(&entry, &m, "engine-b"), None);
        assert_eq!(
            verified_payload(&entry[..entry.len() - 1], &m, "engine-a"),
            None
        );
    }
}
