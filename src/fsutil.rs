//! Small file-system helpers shared by the store and the downloader: durable
//! writes, and errors that say what to do when the disk is full.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

/// Writes `bytes` to `path` and flushes them to disk.
pub fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| explain_io(e, path))?;
    f.write_all(bytes).map_err(|e| explain_io(e, path))?;
    f.sync_all().map_err(|e| explain_io(e, path))?;
    Ok(())
}

/// Turns an I/O error on `path` into one that says what to do about it.
pub fn explain_io(e: std::io::Error, path: &Path) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::StorageFull || e.raw_os_error() == Some(28) {
        anyhow::anyhow!(
            "the disk is full while writing {}: free some space, or set BASIS_HOME to a directory \
             on a larger disk, and run the command again (nothing half-written was kept)",
            path.display()
        )
    } else {
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Removes a file if it exists, ignoring "not found".
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_gets_an_actionable_message() {
        // /dev/full answers every write with ENOSPC, as a full disk does.
        let err = write_synced(Path::new("/dev/full"), b"x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("disk is full"), "{err}");
        assert!(err.contains("BASIS_HOME"), "{err}");
    }
}
