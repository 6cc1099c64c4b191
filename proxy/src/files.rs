//! Reading files named by a configuration without trusting their size.

use std::io::Read;
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug)]
pub(crate) enum BoundedReadError {
    /// The file could not be opened or read.
    Io(std::io::Error),
    /// The file holds more than the bound.
    TooLarge,
}

/// Reads at most `max` bytes of `path`; more is [`BoundedReadError::TooLarge`].
/// The metadata check refuses a large regular file before reading it, and
/// the read itself is bounded too, because the size of a pipe, a device or
/// a file still growing is not known in advance.
pub(crate) fn read_at_most(path: &Path, max: u64) -> Result<Vec<u8>, BoundedReadError> {
    let file = std::fs::File::open(path).map_err(BoundedReadError::Io)?;
    if file.metadata().map_err(BoundedReadError::Io)?.len() > max {
        return Err(BoundedReadError::TooLarge);
    }
    let mut bytes = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(BoundedReadError::Io)?;
    if bytes.len() as u64 > max {
        return Err(BoundedReadError::TooLarge);
    }
    Ok(bytes)
}
