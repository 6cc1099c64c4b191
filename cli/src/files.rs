//! Reading the files a command names without trusting their size.
//!
//! A path given on the command line may be a device (`/dev/zero`), a pipe or
//! a file still growing, whose size is unknown until it is read; every read
//! here stops one byte past its bound and fails with a message naming the
//! file and the bound, so no path can make the host allocate without limit.

use anyhow::{Result, bail};
use std::io::Read;
use std::path::Path;

/// The largest plugin module read (as the data plane's bound).
pub const MAX_PLUGIN_BYTES: u64 = 256 << 20;

/// The largest plugin settings file (`--config`) read.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The largest request or response body file read (as the data plane's
/// bound on a buffered body).
pub const MAX_BODY_BYTES: u64 = 16 << 20;

/// Reads `path` (described as `what`, e.g. "plugin") if it holds at most
/// `max` bytes.
///
/// # Errors
/// The file cannot be opened or read, or holds more than `max` bytes; the
/// message names `what`, the path and the bound.
pub fn read_bounded(what: &str, path: &Path, max: u64) -> Result<Vec<u8>> {
    let shown = path.display();
    let cannot = |e: std::io::Error| anyhow::anyhow!("cannot read {what} `{shown}`: {e}");
    let too_large = || {
        anyhow::anyhow!(
            "{what} `{shown}` is larger than the {} limit",
            human_bytes(max)
        )
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if meta.is_dir() {
        bail!("cannot read {what} `{shown}`: it is a directory");
    }
    // A regular file's size is known: refuse it before reading anything.
    if meta.len() > max {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > max {
        return Err(too_large());
    }
    Ok(bytes)
}

/// `16 MiB`, `512 KiB` or `100 bytes`.
fn human_bytes(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_over_the_bound_are_refused_naming_file_and_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.bin");
        std::fs::write(&path, vec![7u8; 2048]).unwrap();
        assert_eq!(read_bounded("body", &path, 2048).unwrap().len(), 2048);
        let err = read_bounded("body", &path, 1024).unwrap_err().to_string();
        assert!(
            err.contains("big.bin") && err.contains("1 KiB limit"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn devices_of_unknown_size_stop_at_the_bound() {
        let err = read_bounded("plugin", Path::new("/dev/zero"), 4096)
            .unwrap_err()
            .to_string();
        assert_eq!(err, "plugin `/dev/zero` is larger than the 4 KiB limit");
    }

    #[test]
    fn directories_and_missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = read_bounded("config", dir.path(), 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        let missing = dir.path().join("nope");
        let err = read_bounded("config", &missing, 10)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read config `") && err.contains("nope"),
            "{err}"
        );
    }
}
