//! `batchline submit`: say how long the batches will take, ask first when
//! that is over an hour, create them, print their ids, and with `--wait`
//! follow them to their verdicts (a progress bar on a terminal, plain lines
//! otherwise).

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use store::prelude::*;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use pipeline::estimate::{Estimate, estimate};
use pipeline::submit::{SubmitRequest, submit_with_depth};
use store::{PgStore, Share, Uuid};
use workload::WorkloadSpec;

use crate::cli::{Global, SubmitArgs, WorkloadKind};
use crate::connect;

pub async fn run(g: &Global, args: &SubmitArgs) -> anyhow::Result<ExitCode> {
    let workload = match (args.workload, &args.event) {
        (WorkloadKind::Sum, Some(_)) => anyhow::bail!("--event only applies to --workload bingo"),
        (WorkloadKind::Sum, None) => WorkloadSpec::Sum,
        (WorkloadKind::Bingo, None) => WorkloadSpec::bingo_default(),
        (WorkloadKind::Bingo, Some(path)) => WorkloadSpec::from_event_file(path)
            .with_context(|| format!("cannot load the event file {}", path.display()))?,
    };
    let share = Share::parse(
        Some(&args.tenant),
        args.priority.as_deref(),
        args.weight.as_deref(),
    )
    .map_err(anyhow::Error::msg)?;
    let req = SubmitRequest {
        name: args.name.clone(),
        runs: args.runs,
        chunk_size: args.chunk_size,
        seed: args.seed,
        workload,
        count: args.count,
        share,
    };
    // Reject bad arguments before touching any service.
    if req.runs <= 0 || req.chunk_size <= 0 || req.count == 0 {
        anyhow::bail!("--runs, --chunk-size and --count must be positive");
    }
    if let Some(problem) = req.name.as_deref().and_then(workload::batch_name_problem) {
        anyhow::bail!("--name {problem}");
    }
    let store = connect::store(g).await?;
    let guess = estimate(&store, &req).await?;
    eprintln!("{}", guess.line());
    if guess.needs_confirmation && !args.yes {
        confirm(&guess).await?;
    }
    let broker = connect::broker(g, &store).await?;
    let submitted = submit_with_depth(&broker, &store, &req, args.dispatch.dispatch_depth).await?;
    for b in &submitted.batches {
        println!("{}", b.id);
        tracing::info!(batch = %b.id, name = %b.name, runs = b.runs, chunks = b.chunks(), "batch submitted");
    }
    if !submitted.published {
        tracing::warn!("some chunks were not published; the executors' sweeper will publish them");
    }
    if !args.wait {
        return Ok(ExitCode::SUCCESS);
    }
    let ids: Vec<Uuid> = submitted.batches.iter().map(|b| b.id).collect();
    let total_runs: i64 = submitted.batches.iter().map(|b| b.runs).sum();
    wait(
        &store,
        &ids,
        total_runs,
        Duration::from_secs(args.timeout_s),
    )
    .await
}

/// Asks on the terminal whether to submit batches estimated to take over
/// an hour; without a terminal (a script), refuses: `--yes` says it.
async fn confirm(guess: &Estimate) -> anyhow::Result<()> {
    let over = match guess.batches {
        1 => "the batch would run for over an hour",
        _ => "the batches would run for over an hour",
    };
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        anyhow::bail!("not submitted: {over}; pass --yes to submit anyway");
    }
    let answer = tokio::task::spawn_blocking(|| {
        eprint!("Submit anyway? [y/N] ");
        std::io::stderr().flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        Ok::<_, std::io::Error>(line)
    })
    .await?
    .context("cannot read the answer")?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => anyhow::bail!("not submitted: {over}, and the answer was not yes"),
    }
}

/// Follows the batches until each has a verdict; prints the verdict lines.
async fn wait(
    store: &PgStore,
    ids: &[Uuid],
    total_runs: i64,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let bar = ProgressBar::new(total_runs.max(0) as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} runs ({per_sec}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    let mut last_line = Instant::now();
    loop {
        let mut done_runs = 0i64;
        let mut verdicts = 0usize;
        for id in ids {
            if let Some(p) = store.progress(Some(*id), 1).await?.into_iter().next() {
                let per_chunk = p.runs as f64 / f64::from(p.chunks.max(1));
                done_runs += ((f64::from(p.completed) * per_chunk) as i64).min(p.runs);
                verdicts += usize::from(p.verdict.is_some());
            }
        }
        let msg = format!("{verdicts}/{} batches verified", ids.len());
        match &bar {
            Some(bar) => {
                bar.set_position(done_runs.max(0) as u64);
                bar.set_message(msg.clone());
            }
            None if last_line.elapsed() >= Duration::from_secs(5) || verdicts == ids.len() => {
                eprintln!(
                    "progress: {done_runs}/{total_runs} runs executed, {msg}, {:.0}s",
                    start.elapsed().as_secs_f64()
                );
                last_line = Instant::now();
            }
            None => {}
        }
        if verdicts == ids.len() {
            break;
        }
        if !timeout.is_zero() && start.elapsed() > timeout {
            if let Some(bar) = &bar {
                bar.abandon();
            }
            anyhow::bail!(
                "timed out after {}s waiting for verdicts ({msg})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if let Some(bar) = &bar {
        bar.finish();
    }
    let mut failed = false;
    for id in ids {
        if let Some(v) = store.verdict(*id).await? {
            println!("{}", v.line);
            // Only SUCCESS is a whole result: a cancelled batch's is partial.
            failed |= !v.success || !store.cancelled_among(&[*id]).await?.is_empty();
        }
    }
    eprintln!(
        "{} batches, {total_runs} runs in {:.1}s ({:.0} runs/s)",
        ids.len(),
        start.elapsed().as_secs_f64(),
        total_runs as f64 / start.elapsed().as_secs_f64().max(1e-9)
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
