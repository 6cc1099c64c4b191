//! An on-disk cache of precompiled modules, so a restart does not recompile.
//!
//! Entries are keyed by the SHA-256 of the module's bytes plus the SHA-256 of
//! the engine's [fingerprint](Engine::fingerprint) (runtime, version,
//! variant, target and code-affecting settings), so two engines or two
//! versions never share an entry.
//!
//! * **Atomic writes.** An entry is written to a temporary file in the cache
//!   folder and renamed into place, so concurrent writers (threads or
//!   processes) never leave a torn entry; the last rename wins and both
//!   contents are valid.
//! * **Verified reads.** Each entry starts with a header (magic, format
//!   version, the full fingerprint, payload length and SHA-256). A corrupt,
//!   truncated or foreign entry fails the check, is deleted and rebuilt; it
//!   is never handed to the engine's deserializer.
//! * **Bounded size.** After each insert the cache deletes the least
//!   recently used entries (by modification time, refreshed on every hit)
//!   until it is under its byte limit.
//! * **Location.** The platform cache directory (`$XDG_CACHE_HOME/polyhost`
//!   or `~/.cache/polyhost` on Linux, `~/Library/Caches/polyhost` on macOS,
//!   `%LOCALAPPDATA%\polyhost` on Windows), or any folder you choose.
//!
//! Engines without ahead-of-time compilation (wasmi) are compiled every time;
//! [`Loaded::outcome`] says [`CacheOutcome::Uncacheable`].

use polyhost_engine_core::{Engine, ErrorKind};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Default size bound: 1 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

const MAGIC: &[u8; 8] = b"PHCACHE\x01";
const ENTRY_EXTENSION: &str = "cwasm";

/// What [`ModuleCache::load`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded a precompiled entry; nothing was compiled.
    Hit,
    /// Compiled and stored a new entry.
    Miss,
    /// Found an invalid entry, discarded it, compiled and stored a new one.
    Rebuilt,
    /// The engine cannot precompile; compiled in memory.
    Uncacheable,
}

/// A module and how it was obtained.
pub struct Loaded<M> {
    /// The module.
    pub module: M,
    /// Hit, miss, rebuilt or uncacheable.
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
    /// A cache in `dir` (created on first write) holding at most `max_bytes`.
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
        let base = dirs::cache_dir().ok_or(CacheError::NoCacheDir)?;
        Ok(Self::new(base.join("polyhost"), DEFAULT_MAX_BYTES))
    }

    /// The cache folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the entry for `wasm` on `engine` lives.
    pub fn entry_path<E: Engine>(&self, engine: &E, wasm: &[u8]) -> PathBuf {
        let module = hex(&Sha256::digest(wasm));
        let engine_hash = hex(&Sha256::digest(engine.fingerprint().as_bytes()));
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
        let path = self.entry_path(engine, wasm);
        let fingerprint = engine.fingerprint();
        let mut outcome = CacheOutcome::Miss;
        match fs::read(&path) {
            Ok(bytes) => match verified_payload(&bytes, &fingerprint) {
                Some(payload) => {
                    // SAFETY: the payload is exactly what this cache wrote for
                    // an engine with the same fingerprint (checked by SHA-256).
                    match unsafe { engine.deserialize(payload) } {
                        Ok(module) => {
                            touch(&path);
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
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&path)(e)),
        }
        if outcome == CacheOutcome::Rebuilt {
            let _ = fs::remove_file(&path);
        }
        let payload = engine.precompile(wasm)?;
        self.store(&path, &fingerprint, &payload)?;
        // SAFETY: `payload` was produced by this engine a moment ago.
        let module = match unsafe { engine.deserialize(&payload) } {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotSupported => engine.compile(wasm)?,
            Err(e) => return Err(e.into()),
        };
        self.evict()?;
        Ok(Loaded { module, outcome })
    }

    /// Writes an entry atomically (temporary file, then rename).
    fn store(&self, path: &Path, fingerprint: &str, payload: &[u8]) -> Result<(), CacheError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&self.dir)
            .map_err(io(&self.dir))?;
        let digest = Sha256::digest(payload);
        let fp = fingerprint.as_bytes();
        let mut header = Vec::with_capacity(8 + 4 + fp.len() + 8 + 32);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&(fp.len() as u32).to_le_bytes());
        header.extend_from_slice(fp);
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        header.extend_from_slice(&digest);
        tmp.write_all(&header)
            .and_then(|()| tmp.write_all(payload))
            .and_then(|()| tmp.as_file().sync_all())
            .map_err(io(tmp.path()))?;
        tmp.persist(path).map_err(|e| io(path)(e.error))?;
        Ok(())
    }

    /// Deletes least recently used entries until the cache fits its bound.
    ///
    /// # Errors
    /// [`CacheError::Io`] when the folder cannot be listed.
    pub fn evict(&self) -> Result<(), CacheError> {
        let mut entries = Vec::new();
        let mut total = 0u64;
        for entry in fs::read_dir(&self.dir).map_err(io(&self.dir))? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some(ENTRY_EXTENSION) {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
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

/// Returns the payload if the header is intact, belongs to `fingerprint`
/// and the checksum matches.
fn verified_payload<'a>(bytes: &'a [u8], fingerprint: &str) -> Option<&'a [u8]> {
    let rest = bytes.strip_prefix(MAGIC)?;
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

/// Marks an entry as recently used.
fn touch(path: &Path) {
    if let Ok(file) = fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
