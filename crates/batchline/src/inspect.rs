//! Read-only commands: `status`, `queue`, `results`, `metadata` and `partitions`.

use std::process::ExitCode;
use store::prelude::*;

use anyhow::Context;
use pipeline::estimate::rough;
use pipeline::partitions::{PartitionsView, ago};
use pipeline::status::{BatchStatus, ellipsis, now_s};
use store::QueueView;
use workload::Summary;

use crate::cli::{Global, MetadataArgs, PartitionsArgs, QueueArgs, ResultsArgs, StatusArgs};
use crate::connect;

pub async fn status(g: &Global, args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    let rows = store.progress(args.batch, args.limit.max(1)).await?;
    if let Some(id) = args.batch
        && rows.is_empty()
    {
        let Some(p) = store.purged_batch(id).await? else {
            anyhow::bail!("no batch {id}");
        };
        let verdict = match p.success {
            Some(true) => "SUCCESS",
            Some(false) => "FAILURE",
            None => "no verdict",
        };
        println!(
            "{id} [{}] runs={} {verdict}: purged {} ago",
            p.name,
            p.runs,
            ago(now_s() - p.purged_at)
        );
        return Ok(ExitCode::SUCCESS);
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
    if args.batch.is_none() {
        let view = PartitionsView::read::<broker::RabbitBroker, _>(&store, None).await?;
        println!();
        println!("{}", partitions_summary(&view));
    }
    Ok(ExitCode::SUCCESS)
}

/// The partitions in one line, for `status` (`partitions` has the table).
fn partitions_summary(view: &PartitionsView) -> String {
    let replicas = match view.replicas.len() {
        0 => "no aggregator replica running".to_string(),
        n => format!("{n} replica(s) ({})", shares(view)),
    };
    let orphans: Vec<&str> = view.orphans().map(|p| p.name.as_str()).collect();
    let orphans = match orphans.len() {
        0 => "every one owned".to_string(),
        n if n == view.partitions.len() => "none owned".to_string(),
        _ => format!("without a live owner: {}", orphans.join(" ")),
    };
    format!(
        "PARTITIONS  {}, {replicas}; {orphans} (batchline partitions for more)",
        view.partitions.len()
    )
}

/// Each live replica with how many partitions it owns.
fn shares(view: &PartitionsView) -> String {
    let shares: Vec<String> = view
        .replicas
        .iter()
        .map(|r| format!("{} {}", r.replica, r.partitions.len()))
        .collect();
    shares.join(", ")
}

pub async fn queue(g: &Global, args: &QueueArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    let view = store.queue().await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", queue_table(&view));
    }
    Ok(ExitCode::SUCCESS)
}

/// The queue as `batchline queue` prints it: one line per batch in the
/// order served, then the pool in one line.
fn queue_table(view: &QueueView) -> String {
    let mut out = String::new();
    if view.batches.is_empty() {
        out.push_str("No batch is waiting or running.\n");
    } else {
        out.push_str(&format!(
            "{:>3}  {:<36}  {:<24} {:<16} {:<12} {:>6} {:>7} {:>6} {:>10}  {}\n",
            "POS",
            "BATCH",
            "NAME",
            "TENANT",
            "PRIORITY",
            "DONE",
            "RUNNING",
            "SHARE",
            "RUNS/S",
            "LEFT"
        ));
        for b in &view.batches {
            let done = if b.runs > 0 {
                b.runs_done as f64 / b.runs as f64
            } else {
                0.0
            };
            out.push_str(&format!(
                "{:>3}  {:<36}  {:<24} {:<16} {:<12} {:>5.1}% {:>7} {:>5.1}% {:>10.0}  {}\n",
                b.position,
                b.id,
                ellipsis(&b.name, 24),
                ellipsis(&b.tenant, 16),
                b.priority,
                done * 100.0,
                b.chunks_running,
                b.share_now * 100.0,
                b.runs_per_s,
                b.left_s.map_or_else(|| "-".to_string(), rough),
            ));
        }
        out.push('\n');
    }
    out.push_str(&match view.executor_threads {
        0 => "POOL  no executor running: nothing runs until one starts\n".to_string(),
        n => format!(
            "POOL  {n} executor thread(s), {} chunk(s) running\n",
            view.chunks_running
        ),
    });
    out
}

pub async fn partitions(g: &Global, args: &PartitionsArgs) -> anyhow::Result<ExitCode> {
    let store = connect::store(g).await?;
    let broker = connect::broker(g, &store).await?;
    let view = PartitionsView::read(&store, Some(&broker)).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<5} {:>6}  {:<32} {:>8} {:>6} {:>7}  {:>9}  {:<10}",
        "PART", "EPOCH", "OWNER", "OWNED", "OPEN", "QUEUED", "HANDOVERS", "LAST"
    );
    for p in &view.partitions {
        let owner = match (&p.owner, p.owner_alive) {
            (Some(o), true) => ellipsis(o, 32),
            (Some(o), false) => ellipsis(&format!("{o} (silent)"), 32),
            (None, _) => "-".to_string(),
        };
        let last = match (&p.last_handover_cause, p.last_handover_ago_s) {
            (Some(cause), Some(s)) => format!("{cause} {} ago", ago(s)),
            _ => "-".to_string(),
        };
        println!(
            "{:<5} {:>6}  {:<32} {:>8} {:>6} {:>7}  {:>9}  {last}",
            p.name,
            p.epoch,
            owner,
            p.owned_for_s.map_or("-".into(), ago),
            p.open_batches,
            p.queue_depth.map_or("-".into(), |d| d.to_string()),
            p.handovers,
        );
    }
    println!();
    match view.fair_share {
        Some(share) => println!(
            "{} replica(s), fair share {share}: {}",
            view.replicas.len(),
            shares(&view)
        ),
        None => println!("no aggregator replica running"),
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
    if let Some(c) = store.cancelled_among(&[batch.id]).await?.first() {
        println!(
            "cancelled ({}): a partial aggregate of {} of {} runs",
            c.reason,
            summary.runs(),
            batch.runs
        );
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use store::QueueEntry;

    #[test]
    fn the_queue_reads_as_a_table_and_an_empty_one_says_so() {
        let view = QueueView {
            executor_threads: 8,
            chunks_running: 4,
            batches: vec![QueueEntry {
                position: 1,
                id: store::Uuid::nil(),
                name: "spring".into(),
                tenant: "acme".into(),
                priority: "high".into(),
                weight: 4.0,
                runs: 1_000,
                runs_done: 250,
                chunks_waiting: 5,
                chunks_queued: 1,
                chunks_running: 4,
                share_now: 1.0,
                runs_per_s: 100.0,
                executor_s: 12.0,
                left_s: Some(7.5),
            }],
        };
        let table = queue_table(&view);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("POS  BATCH"), "{table}");
        assert!(
            lines[1].contains("spring") && lines[1].contains("acme"),
            "{table}"
        );
        assert!(
            lines[1].contains(" 25.0%") && lines[1].contains("100.0%"),
            "{table}"
        );
        assert!(lines[1].ends_with("8 s"), "{table}");
        assert_eq!(lines[3], "POOL  8 executor thread(s), 4 chunk(s) running");
        let empty = queue_table(&QueueView::default());
        assert_eq!(
            empty,
            "No batch is waiting or running.\nPOOL  no executor running: nothing runs until one starts\n"
        );
    }
}
