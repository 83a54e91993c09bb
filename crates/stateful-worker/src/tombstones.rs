//! The tombstone log (`tombstones.log`): one `key,<crc>\n` line per
//! completed key, appended and fsynced by `complete`. Tombstones are kept
//! for good (a few dozen bytes each) so a late duplicate can never start a
//! key again. On open the log is compacted (rewritten to a temp file,
//! fsynced, renamed) when it holds a torn tail, corrupt lines or repeats;
//! corrupt lines are quarantined in `tombstones.log.corrupt`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::format::push_crc_line;
use crate::fsutil::{append_synced, read_or_empty, remove_if_exists, replace_file};
use crate::key::validate_key;
use crate::scan::scan;

/// Name of the tombstone log inside the state directory.
pub const TOMBSTONE_LOG: &str = "tombstones.log";
const TOMBSTONE_TMP: &str = "tombstones.log.tmp";
/// Quarantine for tombstone lines whose CRC failed.
pub const TOMBSTONE_CORRUPT: &str = "tombstones.log.corrupt";

/// What loading the log found and repaired.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub keys: HashSet<String>,
    /// Keys in log order, for a compaction that keeps the order.
    pub order: Vec<String>,
    pub torn: bool,
    /// Line numbers quarantined.
    pub corrupt: Vec<u64>,
    pub repeats: u64,
    pub compacted: bool,
}

#[derive(Debug)]
pub(crate) struct TombstoneLog {
    path: PathBuf,
}

impl TombstoneLog {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Reads, repairs and compacts the log. Read errors are plain I/O
    /// errors; a failed repair is a failed durable write.
    pub(crate) fn load(dir: &Path) -> Result<(TombstoneLog, Loaded)> {
        let log = TombstoneLog {
            path: dir.join(TOMBSTONE_LOG),
        };
        let tmp = dir.join(TOMBSTONE_TMP);
        remove_if_exists(&tmp).map_err(Error::io(&tmp))?;
        let bytes = read_or_empty(&log.path).map_err(Error::io(&log.path))?;
        let scanned = scan(&bytes);
        let mut loaded = Loaded {
            torn: scanned.torn.is_some(),
            ..Loaded::default()
        };
        let mut quarantine = Vec::new();
        for line in &scanned.lines {
            let key = line
                .body
                .and_then(|b| std::str::from_utf8(b).ok())
                .filter(|k| validate_key(k).is_ok());
            match key {
                Some(k) if loaded.keys.insert(k.to_owned()) => loaded.order.push(k.to_owned()),
                Some(_) => loaded.repeats += 1,
                None => {
                    loaded.corrupt.push(line.number);
                    quarantine.extend_from_slice(format!("{},", line.number).as_bytes());
                    quarantine.extend_from_slice(line.raw);
                    quarantine.push(b'\n');
                }
            }
        }
        if loaded.torn || !loaded.corrupt.is_empty() || loaded.repeats > 0 {
            let fail = |path: &Path| {
                let path = path.to_owned();
                move |source| Error::WriteFailed { path, source }
            };
            if !quarantine.is_empty() {
                let corrupt = dir.join(TOMBSTONE_CORRUPT);
                append_synced(&corrupt, &quarantine).map_err(fail(&corrupt))?;
            }
            let mut compact = Vec::with_capacity(bytes.len());
            for key in &loaded.order {
                push_crc_line(&mut compact, key.as_bytes());
            }
            replace_file(dir, &log.path, &tmp, &compact).map_err(fail(&log.path))?;
            loaded.compacted = true;
            tracing::warn!(
                torn = loaded.torn,
                corrupt = loaded.corrupt.len(),
                repeats = loaded.repeats,
                "tombstone log repaired and compacted"
            );
        }
        Ok((log, loaded))
    }

    /// Appends `key` durably. Returns whether the log file was created (the
    /// directory then needs an fsync before the tombstone counts).
    pub(crate) fn append(&self, key: &str) -> std::io::Result<bool> {
        let mut line = Vec::with_capacity(key.len() + 10);
        push_crc_line(&mut line, key.as_bytes());
        append_synced(&self.path, &line)
    }
}

/// Tombstoned keys in log order, read-only (for inspection): torn and
/// corrupt lines are skipped, nothing is repaired.
pub(crate) fn read_tombstones(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(TOMBSTONE_LOG);
    let bytes = read_or_empty(&path).map_err(Error::io(&path))?;
    let mut seen = HashSet::new();
    Ok(scan(&bytes)
        .valid()
        .filter_map(|(_, b)| std::str::from_utf8(b).ok())
        .filter(|k| validate_key(k).is_ok() && seen.insert(*k))
        .map(str::to_owned)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn appended_tombstones_survive_a_reload_without_compaction() {
        let dir = tempfile::tempdir().unwrap();
        let (log, loaded) = TombstoneLog::load(dir.path()).unwrap();
        assert!(loaded.keys.is_empty() && !loaded.compacted);
        assert!(log.append("a").unwrap());
        assert!(!log.append("b").unwrap());
        let (_, loaded) = TombstoneLog::load(dir.path()).unwrap();
        assert_eq!(loaded.order, vec!["a", "b"]);
        assert!(!loaded.compacted);
        assert_eq!(read_tombstones(dir.path()).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn torn_corrupt_and_repeated_lines_are_compacted_away() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(TOMBSTONE_LOG);
        let mut bytes = Vec::new();
        push_crc_line(&mut bytes, b"a");
        bytes.extend_from_slice(b"zz,00000000\n"); // corrupt, line 2
        push_crc_line(&mut bytes, b"a"); // repeat
        push_crc_line(&mut bytes, b"../x"); // good CRC, not a key: corrupt
        push_crc_line(&mut bytes, b"b");
        bytes.extend_from_slice(b"c,12"); // torn
        fs::write(&path, &bytes).unwrap();
        fs::write(dir.path().join(TOMBSTONE_TMP), b"stale").unwrap();

        let (_, loaded) = TombstoneLog::load(dir.path()).unwrap();
        assert_eq!(loaded.order, vec!["a", "b"]);
        assert!(loaded.torn && loaded.compacted);
        assert_eq!(loaded.corrupt, vec![2, 4]);
        assert_eq!(loaded.repeats, 1);

        let mut expected = Vec::new();
        push_crc_line(&mut expected, b"a");
        push_crc_line(&mut expected, b"b");
        assert_eq!(fs::read(&path).unwrap(), expected);
        let quarantined = fs::read_to_string(dir.path().join(TOMBSTONE_CORRUPT)).unwrap();
        assert!(
            quarantined.starts_with("2,zz,00000000\n4,../x,"),
            "{quarantined}"
        );
        assert!(!dir.path().join(TOMBSTONE_TMP).exists());

        let (_, again) = TombstoneLog::load(dir.path()).unwrap();
        assert!(
            !again.compacted,
            "a compacted log needs no second compaction"
        );
    }
}
