//! Read-only commands: `status`, `results` and `metadata`.

use std::process::ExitCode;

use anyhow::Context;
use pipeline::status::{BatchStatus, ellipsis, now_s};
use store::Store;
use workload::Summary;

use crate::cli::{Global, MetadataArgs, ResultsArgs, StatusArgs};
use crate::connect;

pub async fn status(g: &Global, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    let rows = store.progress(args.batch, args.limit.max(1)).await?;
    if let Some(id) = args.batch
        && rows.is_empty()
    {
        anyhow::bail!("no batch {id}");
    }
    let now = now_s();
    let list: Vec<BatchStatus> = rows.iter().map(|p| BatchStatus::new(p, now)).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<36}  {:<24} {:>9} {:>13} {:>8} {:<11} {:>9} {:>10}",
        "BATCH", "NAME", "RUNS", "CHUNKS DONE", "ATTEMPTS", "STATE", "ELAPSED", "RUNS/S"
    );
    for p in &list {
        println!(
            "{:<36}  {:<24} {:>9} {:>13} {:>8} {:<11} {:>8.1}s {:>10.0}",
            p.batch_id,
            ellipsis(&p.name, 24),
            p.runs,
            format!("{}/{}", p.completed, p.chunks),
            p.attempts,
            p.state.as_str(),
            p.elapsed_s,
            p.runs_per_s
        );
        if let Some(reason) = &p.reason {
            println!("    reason: {reason}");
        }
    }
    Ok(ExitCode::SUCCESS)
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
    let report = pipeline::status::batch_report(&batch.workload, &summary);
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}

pub fn metadata(g: &Global, args: &MetadataArgs) -> anyhow::Result<ExitCode> {
    let dir = g.worker_data_dir.join("aggregator");
    crate::metadata::print(&dir, args.batch.as_deref())
}
