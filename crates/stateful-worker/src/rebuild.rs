//! Rebuilding one key from its `{key}.csv`: repair the file by the rules
//! (cut a torn tail; move corrupt lines to `{key}.csv.corrupt` and rewrite
//! the log without them), then fold every valid row into a fresh state,
//! skipping repeated msg_ids.

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::path::Path;

use csv::ByteRecord;

use crate::error::{Error, Result};
use crate::format::parse_bodies;
use crate::fsutil::{append_synced, replace_file};
use crate::key::{corrupt_path, data_path, tmp_path};
use crate::scan::{Scan, scan};
use crate::state::KeyedState;

/// A key's state as rebuilt, with what was found on the way.
#[derive(Debug)]
pub(crate) struct Rebuilt<S> {
    pub state: S,
    pub seen: HashSet<Box<str>>,
    pub rows: u64,
    pub duplicates: u64,
    pub truncated: bool,
    /// Line numbers moved to the `.corrupt` file.
    pub quarantined: Vec<u64>,
}

pub(crate) fn rebuild_key<S: KeyedState>(dir: &Path, key: &str) -> Result<Rebuilt<S>> {
    let path = data_path(dir, key);
    let bytes = fs::read(&path).map_err(Error::io(&path))?;
    let scanned = scan(&bytes);
    let quarantined: Vec<u64> = scanned.corrupt().map(|l| l.number).collect();
    repair(dir, key, &path, &scanned)?;

    let valid: Vec<(u64, &[u8])> = scanned.valid().collect();
    let bodies: Vec<&[u8]> = valid.iter().map(|&(_, b)| b).collect();
    let mut out = Rebuilt {
        state: S::default(),
        seen: HashSet::with_capacity(bodies.len()),
        rows: 0,
        duplicates: 0,
        truncated: scanned.torn.is_some(),
        quarantined,
    };
    let mut fields = ByteRecord::new();
    parse_bodies(&bodies, |_, record| {
        let msg_id = String::from_utf8_lossy(record.get(0).unwrap_or_default());
        if out.seen.contains(msg_id.as_ref()) {
            out.duplicates += 1;
            return Ok(());
        }
        fields.clear();
        for field in record.iter().skip(1) {
            fields.push_field(field);
        }
        let row: S::Row = fields.deserialize(None)?;
        out.state.apply(&row);
        out.rows += 1;
        out.seen.insert(msg_id.into());
        Ok(())
    })
    .map_err(|(i, source)| Error::Decode {
        path: path.clone(),
        line: valid.get(i).map_or(0, |&(n, _)| n),
        source,
    })?;
    if out.duplicates > 0 {
        tracing::warn!(
            key,
            duplicates = out.duplicates,
            "repeated msg_ids in state file skipped"
        );
    }
    Ok(out)
}

/// Applies the repair rules to the file on disk. Corrupt lines are made
/// durable in the quarantine file before they leave the log.
fn repair(dir: &Path, key: &str, path: &Path, scanned: &Scan<'_>) -> Result<()> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::WriteFailed { path, source }
    };
    let corrupt: Vec<_> = scanned.corrupt().collect();
    if !corrupt.is_empty() {
        let mut quarantine = Vec::new();
        for line in &corrupt {
            quarantine.extend_from_slice(format!("{},", line.number).as_bytes());
            quarantine.extend_from_slice(line.raw);
            quarantine.push(b'\n');
        }
        let qpath = corrupt_path(dir, key);
        append_synced(&qpath, &quarantine).map_err(failed(&qpath))?;
        let mut kept = Vec::new();
        for line in scanned.lines.iter().filter(|l| l.body.is_some()) {
            kept.extend_from_slice(line.raw);
            kept.push(b'\n');
        }
        // Also drops a torn tail; the rename and directory fsync make the
        // new quarantine file durable too.
        replace_file(dir, path, &tmp_path(dir, key), &kept).map_err(failed(path))?;
        let lines: Vec<u64> = corrupt.iter().map(|l| l.number).collect();
        tracing::warn!(
            key,
            ?lines,
            quarantine = %qpath.display(),
            "state rows failed their CRC: moved to quarantine, not applied"
        );
    } else if let Some(torn) = &scanned.torn {
        truncate(path, torn.offset as u64).map_err(failed(path))?;
    }
    if let Some(torn) = &scanned.torn {
        tracing::warn!(
            key,
            line = torn.number,
            bytes = torn.raw.len() + usize::from(torn.had_newline),
            "torn last row truncated"
        );
    }
    Ok(())
}

fn truncate(path: &Path, len: u64) -> std::io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()
}
