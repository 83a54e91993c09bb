//! Read-only inspection of a state directory, for tools such as
//! `batchline metadata`. Takes no lock and changes nothing, so it can run
//! beside a live manager; a row being appended at that moment may show as
//! a torn tail.

use std::collections::HashSet;
use std::fs;
use std::path::Path;

use csv::{ByteRecord, ReaderBuilder, Terminator};

use crate::error::{Error, Result};
use crate::format::parse_bodies;
use crate::fsutil::read_or_empty;
use crate::key::{CORRUPT_SUFFIX, DATA_SUFFIX, corrupt_path, data_path, key_of, validate_key};
use crate::scan::scan;
use crate::tombstones::read_tombstones;

/// A summary of one key's log as it is on disk now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileInfo {
    pub key: String,
    /// File size.
    pub bytes: u64,
    /// Lines, counting a torn tail.
    pub rows: u64,
    /// Lines whose CRC checks out (the last line included).
    pub valid_rows: u64,
    /// Lines before the last that fail their CRC: a rebuild quarantines them.
    pub crc_failures: u64,
    /// The last line has no `\n` or fails its CRC: a rebuild cuts it.
    pub torn_tail: bool,
    /// Valid rows whose msg_id appeared on an earlier valid row.
    pub duplicate_msg_ids: u64,
    /// Lines already moved to `{key}.csv.corrupt` by earlier rebuilds.
    pub quarantined: u64,
    /// The key is in the tombstone log (its file is a leftover).
    pub tombstoned: bool,
}

/// One line of a key's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowInfo {
    /// 1-based line number.
    pub line: u64,
    /// The first field (for a damaged line: its first comma-separated piece).
    pub msg_id: Option<String>,
    /// The row's fields after the msg_id, without the CRC (or the raw
    /// comma-separated pieces when the line does not parse as CSV).
    pub fields: Vec<String>,
    pub crc_ok: bool,
    /// The line is the torn tail a rebuild would cut.
    pub torn: bool,
    /// CRC ok, but its msg_id appeared on an earlier valid line.
    pub duplicate: bool,
}

/// Every key log in `dir` (and keys that only have a quarantine file),
/// sorted by key.
pub fn inspect(dir: impl AsRef<Path>) -> Result<Vec<KeyFileInfo>> {
    let dir = dir.as_ref();
    let tombstones: HashSet<String> = read_tombstones(dir)?.into_iter().collect();
    let mut keys = Vec::new();
    for dirent in fs::read_dir(dir).map_err(Error::io(dir))? {
        let dirent = dirent.map_err(Error::io(dir))?;
        let name = dirent.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(key) = key_of(name, DATA_SUFFIX).or_else(|| key_of(name, CORRUPT_SUFFIX)) {
            keys.push(key.to_owned());
        }
    }
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|key| {
            let tombstoned = tombstones.contains(&key);
            key_info(dir, key, tombstoned)
        })
        .collect()
}

fn key_info(dir: &Path, key: String, tombstoned: bool) -> Result<KeyFileInfo> {
    let path = data_path(dir, &key);
    let bytes = read_or_empty(&path).map_err(Error::io(&path))?;
    let qpath = corrupt_path(dir, &key);
    let quarantined = read_or_empty(&qpath)
        .map_err(Error::io(&qpath))?
        .iter()
        .filter(|&&b| b == b'\n')
        .count() as u64;
    let rows = rows_of(&bytes);
    Ok(KeyFileInfo {
        key,
        bytes: bytes.len() as u64,
        rows: rows.len() as u64,
        valid_rows: rows.iter().filter(|r| r.crc_ok).count() as u64,
        crc_failures: rows.iter().filter(|r| !r.crc_ok && !r.torn).count() as u64,
        torn_tail: rows.iter().any(|r| r.torn),
        duplicate_msg_ids: rows.iter().filter(|r| r.duplicate).count() as u64,
        quarantined,
        tombstoned,
    })
}

/// Every line of `key`'s log. A missing file is an [`Error::Io`].
pub fn inspect_key(dir: impl AsRef<Path>, key: &str) -> Result<Vec<RowInfo>> {
    validate_key(key)?;
    let path = data_path(dir.as_ref(), key);
    let bytes = fs::read(&path).map_err(Error::io(&path))?;
    Ok(rows_of(&bytes))
}

/// Completed keys in the tombstone log, in the order they were completed.
pub fn inspect_tombstones(dir: impl AsRef<Path>) -> Result<Vec<String>> {
    read_tombstones(dir.as_ref())
}

fn rows_of(bytes: &[u8]) -> Vec<RowInfo> {
    let scanned = scan(bytes);
    let mut rows: Vec<RowInfo> = scanned
        .lines
        .iter()
        .map(|l| {
            let crc_ok = l.body.is_some();
            // A valid line's last comma starts its CRC; for a damaged one,
            // show the whole line.
            let shown = l.body.unwrap_or(l.raw);
            row_info(l.number, shown, crc_ok, false)
        })
        .collect();
    // Valid lines are parsed together the way a rebuild does, which also
    // tells whether a rebuild would accept them.
    let valid: Vec<(usize, &[u8])> = scanned
        .lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| l.body.map(|b| (i, b)))
        .collect();
    let bodies: Vec<&[u8]> = valid.iter().map(|&(_, b)| b).collect();
    let mut seen = HashSet::new();
    let _ = parse_bodies(&bodies, |i, record| {
        let msg_id = String::from_utf8_lossy(record.get(0).unwrap_or_default()).into_owned();
        if let Some(&(row, _)) = valid.get(i) {
            rows[row].duplicate = !seen.insert(msg_id);
        }
        Ok(())
    });
    if let Some(t) = &scanned.torn {
        rows.push(row_info(t.number, t.raw, false, true));
    }
    rows
}

fn row_info(line: u64, text: &[u8], crc_ok: bool, torn: bool) -> RowInfo {
    let parsed = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .terminator(Terminator::Any(b'\n'))
        .from_reader(text)
        .byte_records()
        .next()
        .and_then(|r| r.ok());
    let fields: Vec<String> = match parsed {
        Some(record) => lossy_fields(&record),
        None => text
            .split(|&b| b == b',')
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect(),
    };
    let mut fields = fields.into_iter();
    RowInfo {
        line,
        msg_id: fields.next(),
        fields: fields.collect(),
        crc_ok,
        torn,
        duplicate: false,
    }
}

fn lossy_fields(record: &ByteRecord) -> Vec<String> {
    record
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Manager, append_raw, line, row};

    fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().into_string().unwrap(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        files
    }

    #[test]
    fn inspection_reports_every_rule_and_changes_nothing_under_a_live_manager() {
        let dir = tempfile::tempdir().unwrap();
        let (mut m, _) = Manager::open(dir.path()).unwrap();
        m.process("clean", "m1", row(1)).unwrap();
        m.process("done", "m1", row(1)).unwrap();
        m.commit().unwrap();
        m.complete("done").unwrap();
        // Damage behind the live manager's back (it only appends).
        let messy = crate::key::data_path(dir.path(), "messy");
        append_raw(&messy, &line("a", 1));
        let mut bad = line("b", 2);
        bad[0] = b'x';
        append_raw(&messy, &bad);
        append_raw(&messy, &line("a", 1));
        append_raw(&messy, &line("c", 3)[..5]);
        append_raw(&dir.path().join("messy.csv.corrupt"), b"7,old\n8,older\n");
        // A tombstoned key's leftover.
        append_raw(&crate::key::data_path(dir.path(), "done"), &line("z", 9));

        let before = snapshot(dir.path());
        let infos = inspect(dir.path()).unwrap();
        assert_eq!(snapshot(dir.path()), before, "inspection wrote something");

        let keys: Vec<&str> = infos.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, vec!["clean", "done", "messy"]);
        let clean = &infos[0];
        assert_eq!(
            (
                clean.rows,
                clean.valid_rows,
                clean.crc_failures,
                clean.torn_tail
            ),
            (1, 1, 0, false)
        );
        assert!(infos[1].tombstoned && !clean.tombstoned);
        let messy_info = &infos[2];
        assert_eq!(messy_info.rows, 4);
        assert_eq!(messy_info.valid_rows, 2);
        assert_eq!(messy_info.crc_failures, 1);
        assert!(messy_info.torn_tail);
        assert_eq!(messy_info.duplicate_msg_ids, 1);
        assert_eq!(messy_info.quarantined, 2);
        assert_eq!(messy_info.bytes, fs::metadata(&messy).unwrap().len());

        let rows = inspect_key(dir.path(), "messy").unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].msg_id.as_deref(), Some("a"));
        assert_eq!(rows[0].fields, vec!["1", "v1, \"quoted\", ünï"]);
        assert!(rows[0].crc_ok && !rows[0].duplicate && !rows[0].torn);
        assert!(!rows[1].crc_ok && !rows[1].torn);
        assert!(rows[2].crc_ok && rows[2].duplicate);
        assert!(!rows[3].crc_ok && rows[3].torn);
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        assert_eq!(inspect_tombstones(dir.path()).unwrap(), vec!["done"]);
        assert_eq!(snapshot(dir.path()), before, "inspection wrote something");
    }

    #[test]
    fn inspecting_a_bad_or_missing_key_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            inspect_key(dir.path(), "../etc"),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            inspect_key(dir.path(), "nope"),
            Err(Error::Io { .. })
        ));
        assert!(inspect(dir.path()).unwrap().is_empty());
        assert!(inspect_tombstones(dir.path()).unwrap().is_empty());
    }
}
