//! `batchline metadata`: the aggregator's CSV state as it is on disk — one
//! directory per partition (`p00` … under the aggregator's directory) —
//! read without taking any lock (safe while aggregators run).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use stateful_worker::{inspect, inspect_key, inspect_tombstones};

/// Lists every batch file (no `batch`) or the rows of one batch.
pub fn print(dir: &Path, batch: Option<&str>) -> anyhow::Result<ExitCode> {
    if !dir.exists() {
        println!(
            "no aggregator state in {} (nothing received yet)",
            dir.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let dirs = state_dirs(dir)?;
    match batch {
        None => list(dir, &dirs),
        Some(key) => rows(&dirs, key),
    }
}

/// The partitions' directories, by name; and the root itself while it
/// still holds state from before partitions (an aggregator moves it at its
/// next start).
fn state_dirs(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let entries =
        std::fs::read_dir(root).with_context(|| format!("cannot list {}", root.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", root.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if store::partition::from_name(&name).is_some() && entry.path().is_dir() {
            dirs.push((name, entry.path()));
        }
    }
    dirs.sort();
    if !inspect(root).unwrap_or_default().is_empty() {
        dirs.push(("(root)".into(), root.to_path_buf()));
    }
    Ok(dirs)
}

fn list(root: &Path, dirs: &[(String, PathBuf)]) -> anyhow::Result<ExitCode> {
    println!("aggregator state in {}", root.display());
    let mut files = Vec::new();
    let mut tombstones = 0;
    for (name, dir) in dirs {
        let found = inspect(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
        files.extend(found.into_iter().map(|f| (name.as_str(), f)));
        tombstones += inspect_tombstones(dir).unwrap_or_default().len();
    }
    if files.is_empty() {
        println!("no batch has state right now");
    } else {
        println!(
            "{:<36} {:>4} {:>6} {:>6} {:>8} {:>5} {:>5} {:>11} {:>9}",
            "BATCH", "PART", "ROWS", "VALID", "CRC-FAIL", "TORN", "DUPS", "QUARANTINED", "BYTES"
        );
        for (part, f) in &files {
            println!(
                "{:<36} {:>4} {:>6} {:>6} {:>8} {:>5} {:>5} {:>11} {:>9}{}",
                f.key,
                part,
                f.rows,
                f.valid_rows,
                f.crc_failures,
                if f.torn_tail { "yes" } else { "no" },
                f.duplicate_msg_ids,
                f.quarantined,
                f.bytes,
                if f.tombstoned {
                    "  (completed; leftover file)"
                } else {
                    ""
                }
            );
        }
    }
    println!(
        "{tombstones} batches completed (tombstones) in {} partition directories",
        dirs.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn rows(dirs: &[(String, PathBuf)], key: &str) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    let mut done = false;
    for (_, dir) in dirs {
        rows = inspect_key(dir, key)
            .with_context(|| format!("cannot read the state of batch {key}"))?;
        if !rows.is_empty() {
            break;
        }
        done |= inspect_tombstones(dir)
            .unwrap_or_default()
            .iter()
            .any(|k| k == key);
    }
    if rows.is_empty() {
        println!(
            "batch {key}: {}",
            if done {
                "completed (tombstoned; its file was deleted)"
            } else {
                "no state file"
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:>5}  {:<36}  {:<6}  FIELDS", "LINE", "MSG_ID", "CRC");
    for r in &rows {
        let status = if r.torn {
            "TORN"
        } else if !r.crc_ok {
            "BAD"
        } else if r.duplicate {
            "DUP"
        } else {
            "ok"
        };
        let mut fields = r.fields.join(",");
        if fields.len() > 120 {
            fields.truncate(fields.floor_char_boundary(117));
            fields.push_str("...");
        }
        println!(
            "{:>5}  {:<36}  {:<6}  {fields}",
            r.line,
            r.msg_id.as_deref().unwrap_or("?"),
            status
        );
    }
    Ok(ExitCode::SUCCESS)
}
