//! The few durable file-system steps everything else is built from: fsync
//! a directory, replace a file atomically, append and sync.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Makes creations, renames and deletions in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `bytes`: write `tmp`, fsync it, rename over `path`,
/// fsync the directory. A crash leaves either the old or the new file (and
/// maybe a stale `tmp`, which the caller deletes on its next start).
pub(crate) fn replace_file(dir: &Path, path: &Path, tmp: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)?;
    sync_dir(dir)
}

/// Appends `bytes` to `path` (creating it) and fsyncs it. Returns whether
/// the file was created, in which case the directory still needs an fsync.
pub(crate) fn append_synced(path: &Path, bytes: &[u8]) -> io::Result<bool> {
    let created = !path.exists();
    let mut f = OpenOptions::new().append(true).create(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_data()?;
    Ok(created)
}

/// Removes `path`; a file that is already gone is fine.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// Reads `path`; a missing file reads as empty.
pub(crate) fn read_or_empty(path: &Path) -> io::Result<Vec<u8>> {
    match fs::read(path) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_file_swaps_contents_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().unwrap();
        let (path, tmp) = (dir.path().join("f"), dir.path().join("f.tmp"));
        fs::write(&path, b"old").unwrap();
        replace_file(dir.path(), &path, &tmp, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert!(!tmp.exists());
    }

    #[test]
    fn append_synced_reports_creation_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        assert!(append_synced(&path, b"a").unwrap());
        assert!(!append_synced(&path, b"b").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"ab");
        assert!(remove_if_exists(&path).unwrap());
        assert!(!remove_if_exists(&path).unwrap());
        assert!(read_or_empty(&path).unwrap().is_empty());
    }
}
