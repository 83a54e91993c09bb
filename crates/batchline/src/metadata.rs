//! `batchline metadata`: the aggregator's CSV state as it is on disk, read
//! without taking the directory lock (safe while the aggregator runs).

use std::path::Path;
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
    match batch {
        None => list(dir),
        Some(key) => rows(dir, key),
    }
}

fn list(dir: &Path) -> anyhow::Result<ExitCode> {
    let files = inspect(dir).with_context(|| format!("cannot inspect {}", dir.display()))?;
    let tombstones = inspect_tombstones(dir).unwrap_or_default();
    println!("aggregator state in {}", dir.display());
    if files.is_empty() {
        println!("no batch has state right now");
    } else {
        println!(
            "{:<36} {:>6} {:>6} {:>8} {:>5} {:>5} {:>11} {:>9}",
            "BATCH", "ROWS", "VALID", "CRC-FAIL", "TORN", "DUPS", "QUARANTINED", "BYTES"
        );
        for f in &files {
            println!(
                "{:<36} {:>6} {:>6} {:>8} {:>5} {:>5} {:>11} {:>9}{}",
                f.key,
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
    println!("{} batches completed (tombstones)", tombstones.len());
    Ok(ExitCode::SUCCESS)
}

fn rows(dir: &Path, key: &str) -> anyhow::Result<ExitCode> {
    let rows =
        inspect_key(dir, key).with_context(|| format!("cannot read the state of batch {key}"))?;
    if rows.is_empty() {
        let done = inspect_tombstones(dir)
            .unwrap_or_default()
            .iter()
            .any(|k| k == key);
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
