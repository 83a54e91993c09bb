//! The directory lock: an exclusive advisory lock (`File::try_lock`) on
//! `LOCK` in the state directory, holding the owner's pid so a second
//! opener can say who has it. Released when the file is closed, so also
//! when the owner dies.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Name of the lock file inside the state directory.
pub const LOCK_FILE: &str = "LOCK";

#[derive(Debug)]
pub(crate) struct DirLock {
    _file: File,
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        // No truncate before the lock is ours: the holder's pid is in there.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Error::io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    pid: read_pid(&mut file),
                    lock_file: path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io(path)(e)),
        }
        write_pid(&mut file).map_err(Error::io(&path))?;
        Ok(DirLock { _file: file })
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_file_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DirLock::acquire(dir.path()).unwrap();
        match DirLock::acquire(dir.path()) {
            Err(Error::Locked { lock_file, pid }) => {
                assert_eq!(lock_file, dir.path().join(LOCK_FILE));
                assert_eq!(pid, Some(std::process::id()));
                let msg = Error::Locked { lock_file, pid }.to_string();
                assert!(
                    msg.contains("LOCK") && msg.contains(&std::process::id().to_string()),
                    "{msg}"
                );
            }
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        DirLock::acquire(dir.path()).unwrap();
    }
}
