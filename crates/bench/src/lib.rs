//! bench: `batchline bench`, the performance benchmark against the real
//! RabbitMQ and Postgres, all sections in one run. The binary's `bench`
//! arm calls [`run`]; `bench/README.md` at the repository root explains
//! every key of the results.
//!
//! # Layout
//! - `args`: [`BenchArgs`], the options; `plan`: the sizes after `--quick`
//!   and the sections to run;
//! - `sections`: the sections in order and the figures derived from them;
//! - `limit`: the batch simulated in this process (no broker, no DB), on 1
//!   thread and on all cores — the ceiling the pipeline is measured against;
//! - `scenario`: one isolated pipeline per scenario from the `launcher`
//!   crate (schema, queue prefix, state dir, the stages as child processes
//!   of this binary), and what the stages leave when stopped;
//! - `e2e`: one batch from submit to the verifier's verdict;
//! - `drain`: the aggregator emptying a pre-filled results queue;
//! - `recovery`: one batch with and without two SIGKILLs of its only
//!   executor: what the kills cost;
//! - `rebuild`: a partition taken over from a replica whose disk is gone,
//!   rebuilt from the changelog in Postgres;
//! - `purge`: one batch purged from a store holding 20: time, and the run
//!   rows' size before and after;
//! - `fairness`: batches sharing the pool (fair share): a small batch
//!   beside a big one, two equal ones, weights 2 and 1;
//! - `metrics`: the stages' phase totals read from their `/metrics`;
//! - `cpu`: CPU seconds per stage, Postgres, RabbitMQ and machine;
//! - `report`: the results JSON and the table;
//! - `error`: [`Error`].

mod args;
mod cancel;
mod cpu;
mod drain;
mod e2e;
mod error;
mod fairness;
mod limit;
mod metrics;
mod plan;
mod purge;
mod rebuild;
mod recovery;
mod report;
mod scenario;
mod sections;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use launcher::Services;

pub use args::BenchArgs;
pub use error::{Error, Result};

use e2e::{Quiet, round1};
use report::{BenchResults, Machine, Sizes, load_avg};
use scenario::Bench;

/// Runs the sections `args` asks for against `services`, the stages being
/// this binary's subcommands, with their state under
/// `worker_data_dir/bench`; prints the table and writes the results JSON.
pub async fn run(services: Services, worker_data_dir: &Path, args: &BenchArgs) -> Result<()> {
    let plan = plan::plan(args)?;
    let started = Instant::now();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bench = Bench::new(services, worker_data_dir)?;
    let mut r = BenchResults {
        version: 1,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: args.quick,
        machine: Machine {
            cores,
            load_avg_start: load_avg(),
            started_at_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            ..Machine::default()
        },
        sizes: Sizes {
            runs: plan.runs,
            rss_runs: plan.rss_runs,
            chunk_size: plan.chunk_size,
            drain_results: plan.drain_results,
            aggregator_prefetch: args.aggregator_commit_window,
            executor_prefetch: args.executor_chunks_in_flight,
            seed: args.seed,
        },
        ..BenchResults::default()
    };
    let quiet_wait = args
        .quiet_wait_s
        .unwrap_or(if args.quick { 0 } else { 120 });
    let sections = sections::Run {
        bench: &bench,
        plan: &plan,
        args,
        cores,
        quiet: Quiet {
            below: args.quiet_below,
            max_wait: Duration::from_secs(quiet_wait),
        },
        timeout: Duration::from_secs(args.timeout_s.max(1)),
    };
    sections.all(&mut r).await?;
    r.machine.load_avg_end = load_avg();
    r.machine.total_s = round1(started.elapsed().as_secs_f64());

    print!("{}", r.table());
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(launcher::Error::io("cannot create", parent))?;
    }
    let json = serde_json::to_string_pretty(&r)?;
    std::fs::write(&args.out, json + "\n")
        .map_err(launcher::Error::io("cannot write", &args.out))?;
    tracing::info!(out = %args.out.display(), logs = %bench.root.join("logs").display(), "bench: results written");
    Ok(())
}
