//! Read-only commands: `status`, `results` and `metadata`.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde_json::json;
use store::{BatchProgress, Store};
use workload::Summary;

use crate::cli::{Global, MetadataArgs, ResultsArgs, StatusArgs};
use crate::connect;

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn verdict_word(p: &BatchProgress) -> &'static str {
    match p.verdict {
        Some(true) => "SUCCESS",
        Some(false) => "FAILURE",
        None if p.aggregated => "verifying",
        None if p.completed == p.chunks => "aggregating",
        None if p.completed + p.running + p.failed > 0 => "running",
        None => "pending",
    }
}

pub async fn status(g: &Global, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    let rows = store.progress(args.batch, args.limit.max(1)).await?;
    if let Some(id) = args.batch
        && rows.is_empty()
    {
        anyhow::bail!("no batch {id}");
    }
    let now = now_s();
    let elapsed = |p: &BatchProgress| p.finished_at.unwrap_or(now) - p.created_at;
    let rate = |p: &BatchProgress| {
        let done = (p.runs as f64 * f64::from(p.completed) / f64::from(p.chunks.max(1)))
            .min(p.runs as f64);
        done / elapsed(p).max(1e-3)
    };
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|p| {
                json!({
                    "batch_id": p.id, "name": p.name, "runs": p.runs, "chunks": p.chunks,
                    "pending": p.pending, "running": p.running, "completed": p.completed,
                    "failed": p.failed, "attempts": p.attempts, "aggregated": p.aggregated,
                    "state": verdict_word(p), "reason": p.reason,
                    "elapsed_s": elapsed(p), "runs_per_s": rate(p),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<24} {:>9} {:>13} {:>8} {:<11} {:>9} {:>10}",
        "BATCH", "NAME", "RUNS", "CHUNKS DONE", "ATTEMPTS", "STATE", "ELAPSED", "RUNS/S"
    );
    for p in &rows {
        println!(
            "{:<36}  {:<24} {:>9} {:>13} {:>8} {:<11} {:>8.1}s {:>10.0}",
            p.id,
            truncate(&p.name, 24),
            p.runs,
            format!("{}/{}", p.completed, p.chunks),
            p.attempts,
            verdict_word(p),
            elapsed(p),
            rate(p)
        );
        if let Some(reason) = &p.reason {
            println!("    reason: {reason}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

pub async fn results(g: &Global, args: &ResultsArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    let batch = store
        .batch(args.batch)
        .await?
        .with_context(|| format!("no batch {}", args.batch))?;
    let Some((result, duplicates)) = store.batch_result(args.batch).await? else {
        anyhow::bail!("batch {} ({}) has no aggregate yet", batch.id, batch.name);
    };
    if args.json {
        println!("{result}");
        return Ok(ExitCode::SUCCESS);
    }
    let summary: Summary = serde_json::from_str(&result).context("stored aggregate unreadable")?;
    let verdict = store.verdict(args.batch).await?;
    println!(
        "batch {} [{}]: {} runs in {} chunks, seed {}",
        batch.id, batch.name, batch.runs, batch.chunks, batch.seed
    );
    println!("duplicates dropped by the aggregator: {duplicates}");
    match verdict {
        Some(v) => println!("verdict: {}", v.line),
        None => println!("verdict: not yet"),
    }
    println!();
    // The workload names the teams (summaries carry only counts).
    let report = serde_json::from_str::<workload::WorkloadSpec>(&batch.workload)
        .ok()
        .and_then(|spec| workload::Workload::new(&spec).ok())
        .map(|w| w.report(&summary))
        .unwrap_or_else(|| summary.report());
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

pub fn metadata(g: &Global, args: &MetadataArgs) -> anyhow::Result<ExitCode> {
    let dir = g.worker_data_dir.join("aggregator");
    crate::metadata::print(&dir, args.batch.as_deref())
}
