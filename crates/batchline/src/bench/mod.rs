//! `batchline bench`: the performance benchmark against the real RabbitMQ
//! and Postgres (`RABBITMQ_URL`, `DATABASE_URL`), all sections in one run.
//!
//! Layout:
//! - `limit`: the batch simulated in this process (no broker, no DB), on 1
//!   thread and on all cores — the ceiling the pipeline is measured against;
//! - `stack`: one isolated pipeline per scenario (schema, queue prefix, state
//!   dir), its stages as child processes of this binary, and their teardown;
//! - `e2e`: one batch from submit to the verifier's verdict;
//! - `drain`: the aggregator emptying a pre-filled results queue;
//! - `metrics`: the stages' phase totals read from their `/metrics`;
//! - `cpu`: CPU seconds per stage, Postgres, RabbitMQ and machine;
//! - `report`: the results JSON and the table.
//!
//! `bench/README.md` at the repository root explains every key.

mod cpu;
mod drain;
mod e2e;
mod limit;
mod metrics;
mod report;
mod stack;

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use workload::WorkloadSpec;

use crate::cli::{BenchArgs, Global};
use e2e::{E2eResult, E2eSpec, Quiet, round1, round3};
use report::{BenchResults, Machine, Sizes, load_avg};
use stack::Bench;

const SECTIONS: [&str; 6] = ["limit", "e2e", "scaling", "sum", "aggregator", "rss"];

/// The sizes of one bench run, after `--quick`.
#[derive(Clone, Debug)]
struct Plan {
    runs: i64,
    rss_runs: i64,
    chunk_size: i32,
    drain_results: i32,
    sections: BTreeSet<&'static str>,
}

fn plan(args: &BenchArgs) -> anyhow::Result<Plan> {
    let div = if args.quick { 10 } else { 1 };
    let mut sections = BTreeSet::new();
    for s in &args.only {
        let known = SECTIONS
            .iter()
            .find(|k| **k == s.as_str())
            .with_context(|| format!("unknown section {s:?}; sections: {}", SECTIONS.join(", ")))?;
        sections.insert(*known);
    }
    if sections.is_empty() {
        sections.extend(SECTIONS);
    }
    let p = Plan {
        runs: args.runs / div,
        rss_runs: args.rss_runs / div,
        // A tenth of the chunk size too, so quick batches have as many chunks.
        chunk_size: (args.chunk_size / div as i32).max(1),
        drain_results: args.drain_results / div as i32,
        sections,
    };
    anyhow::ensure!(
        p.runs > 0 && p.rss_runs > 0 && p.drain_results > 0 && args.chunk_size > 0,
        "--runs, --rss-runs, --drain-results and --chunk-size must be positive (after --quick's division by 10)"
    );
    Ok(p)
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub async fn run(g: &Global, args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let plan = plan(args)?;
    let started = Instant::now();
    let cores = cores();
    let bench = Bench::new(g)?;
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
    let timeout = Duration::from_secs(args.timeout_s.max(1));
    let quiet = Quiet {
        below: args.quiet_below,
        max_wait: Duration::from_secs(args.quiet_wait_s.unwrap_or(if args.quick {
            0
        } else {
            120
        })),
    };
    let spec = |label: &str, workload: WorkloadSpec, runs: i64, executors, concurrency| E2eSpec {
        label: label.to_owned(),
        workload,
        runs,
        chunk_size: plan.chunk_size,
        seed: args.seed,
        executors,
        concurrency,
        executor_prefetch: args.executor_chunks_in_flight,
        aggregator_prefetch: args.aggregator_commit_window,
        timeout,
        quiet,
    };
    let bingo = WorkloadSpec::bingo_default();
    let on = |s: &str| plan.sections.contains(s);

    if on("limit") {
        for threads in [1, cores] {
            let l = limit_step(&bingo, &plan, args.seed, threads, quiet).await?;
            if threads == 1 {
                r.limit_runs_per_s_1_thread = Some(l.runs_per_s.round());
            }
            r.limit.push(l);
            if cores == 1 {
                break;
            }
        }
    }

    if on("e2e") {
        let e = e2e_step(
            &bench,
            &spec("e2e-bingo-all-cores", bingo.clone(), plan.runs, 1, cores),
        )
        .await?;
        r.e2e_runs_per_s = Some(e.runs_per_s.round());
        if let (Some(limit), Some(aggregate)) = (r.limit.last(), &e.aggregate) {
            r.same_aggregate_as_limit = Some(same_aggregate(aggregate, &limit.summary));
        }
        r.e2e.push(e);
        if on("limit") {
            let mut again = limit_step(&bingo, &plan, args.seed, cores, quiet).await?;
            again.after_e2e = true;
            r.limit.push(again);
        }
    }
    let all_cores: Vec<f64> = (r.limit.iter())
        .filter(|l| l.threads == cores)
        .map(|l| l.runs_per_s)
        .collect();
    if !all_cores.is_empty() {
        r.limit_runs_per_s = Some((all_cores.iter().sum::<f64>() / all_cores.len() as f64).round());
    }
    if on("scaling") {
        let one = e2e_step(
            &bench,
            &spec("e2e-bingo-1x1", bingo.clone(), plan.runs, 1, 1),
        )
        .await?;
        let two = e2e_step(
            &bench,
            &spec("e2e-bingo-2x1", bingo.clone(), plan.runs, 2, 1),
        )
        .await?;
        r.e2e_1x1_runs_per_s = Some(one.runs_per_s.round());
        r.e2e_2x1_runs_per_s = Some(two.runs_per_s.round());
        r.scaling_1_to_2 = Some(round3(two.runs_per_s / one.runs_per_s.max(1e-9)));
        r.e2e.push(one);
        r.e2e.push(two);
    }
    if on("sum") {
        let e = e2e_step(
            &bench,
            &spec("e2e-sum-all-cores", WorkloadSpec::Sum, plan.runs, 1, cores),
        )
        .await?;
        r.sum_runs_per_s = Some(e.runs_per_s.round());
        r.sum_cpu_us_per_run = Some(e.cpu_us_per_run);
        r.e2e.push(e);
    }
    if on("aggregator") {
        tracing::info!(results = plan.drain_results, "bench: aggregator drain");
        let d = drain::run(
            &bench,
            plan.drain_results,
            args.aggregator_commit_window,
            args.seed,
            timeout,
            quiet,
        )
        .await?;
        tracing::info!(
            msgs_per_s = d.msgs_per_s as u64,
            "bench: aggregator drain done"
        );
        r.aggregator_msgs_per_s = Some(d.msgs_per_s.round());
        r.phases.insert(
            "aggregator-drain".into(),
            BTreeMap::from([("aggregator".to_string(), d.phases.clone())]),
        );
        r.aggregator = Some(d);
    }
    if on("rss") {
        let small_label = "e2e-bingo-all-cores";
        if !r.e2e.iter().any(|e| e.label == small_label) {
            let e = e2e_step(
                &bench,
                &spec(small_label, bingo.clone(), plan.runs, 1, cores),
            )
            .await?;
            r.e2e.push(e);
        }
        let big = e2e_step(
            &bench,
            &spec(
                "e2e-bingo-all-cores-rss",
                bingo.clone(),
                plan.rss_runs,
                1,
                cores,
            ),
        )
        .await?;
        r.e2e.push(big);
        rss_tables(&mut r, small_label, "e2e-bingo-all-cores-rss");
    }

    if let (Some(e2e), Some(limit)) = (r.e2e_runs_per_s, r.limit_runs_per_s) {
        r.efficiency = Some(round3(e2e / limit.max(1e-9)));
    }
    let limit_cpu = r.limit.first().and_then(|l| l.cpu_us_per_run);
    let e2e_cpu = r
        .e2e
        .iter()
        .find(|e| e.label == "e2e-bingo-all-cores")
        .map(|e| e.cpu_us_per_run);
    if let (Some(limit), Some(e2e)) = (limit_cpu, e2e_cpu) {
        r.efficiency_cpu = Some(round3(limit / e2e.max(1e-9)));
    }
    for e in &r.e2e {
        r.phases.insert(e.label.clone(), e.phases.clone());
    }
    r.machine.load_avg_end = load_avg();
    r.machine.total_s = round1(started.elapsed().as_secs_f64());

    print!("{}", r.table());
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let json = serde_json::to_string_pretty(&r)?;
    std::fs::write(&args.out, json + "\n")
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    tracing::info!(out = %args.out.display(), logs = %bench.root.join("logs").display(), "bench: results written");
    Ok(ExitCode::SUCCESS)
}

async fn limit_step(
    spec: &WorkloadSpec,
    plan: &Plan,
    seed: i64,
    threads: usize,
    quiet: Quiet,
) -> anyhow::Result<limit::LimitResult> {
    tracing::info!(
        threads,
        runs = plan.runs,
        "bench: limit (in-process simulation)"
    );
    let (spec, runs, chunk) = (spec.clone(), plan.runs, plan.chunk_size);
    let busy_before = quiet.wait().await;
    let mut l =
        tokio::task::spawn_blocking(move || limit::measure(&spec, seed, runs, chunk, threads))
            .await
            .context("the limit measurement panicked")??;
    l.busy_before = busy_before;
    tracing::info!(runs_per_s = l.runs_per_s as u64, "bench: limit done");
    Ok(l)
}

async fn e2e_step(bench: &Bench, spec: &E2eSpec) -> anyhow::Result<E2eResult> {
    tracing::info!(
        scenario = %spec.label,
        runs = spec.runs,
        chunk_size = spec.chunk_size,
        executors = spec.executors,
        concurrency = spec.concurrency,
        "bench: end to end"
    );
    let e = e2e::run(bench, spec).await?;
    tracing::info!(scenario = %spec.label, secs = e.verified_s, runs_per_s = e.runs_per_s as u64, "bench: end to end done");
    Ok(e)
}

/// The aggregate the pipeline saved equals the in-process one.
fn same_aggregate(saved: &str, limit: &workload::Summary) -> bool {
    let saved: Option<serde_json::Value> = serde_json::from_str(saved).ok();
    let ours = serde_json::to_value(limit).ok();
    saved.is_some() && saved == ours
}

/// Peak RSS per process at both sizes, and the growth from small to big.
fn rss_tables(r: &mut BenchResults, small: &str, big: &str) {
    let find = |label: &str| r.e2e.iter().find(|e| e.label == label);
    let (Some(s), Some(b)) = (find(small), find(big)) else {
        return;
    };
    let growth: BTreeMap<String, f64> = b
        .peak_rss_mb
        .iter()
        .filter_map(|(p, big_mb)| {
            let small_mb = s.peak_rss_mb.get(p)?;
            Some((p.clone(), round3(big_mb / small_mb.max(1e-9))))
        })
        .collect();
    let sizes = [
        (s.runs.to_string(), s.peak_rss_mb.clone()),
        (b.runs.to_string(), b.peak_rss_mb.clone()),
    ];
    r.peak_rss_mb.extend(sizes);
    r.peak_rss_growth = growth;
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> BenchArgs {
        let mut argv = vec!["batchline", "bench"];
        argv.extend(extra);
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Bench(a) => a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn quick_is_a_tenth_of_every_size() {
        let p = plan(&args(&["--quick"])).unwrap();
        assert_eq!(
            (p.runs, p.rss_runs, p.chunk_size, p.drain_results),
            (50_000, 200_000, 1_000, 10_000)
        );
        assert_eq!(p.sections.len(), SECTIONS.len());
        let p = plan(&args(&[])).unwrap();
        assert_eq!((p.runs, p.rss_runs), (500_000, 2_000_000));
    }

    #[test]
    fn only_selects_known_sections_and_rejects_others() {
        let p = plan(&args(&["--only", "limit,sum"])).unwrap();
        assert_eq!(p.sections, BTreeSet::from(["limit", "sum"]));
        assert!(plan(&args(&["--only", "nope"])).is_err());
    }

    #[test]
    fn same_aggregate_compares_json_values() {
        let w = workload::Workload::new(&WorkloadSpec::Sum).unwrap();
        let mut s = w.empty_summary();
        w.run_range(1, 0, 10, &mut w.scratch(), &mut Vec::new(), &mut s);
        let json = serde_json::to_string(&Some(s.clone())).unwrap();
        assert!(same_aggregate(&json, &s));
        assert!(!same_aggregate("{}", &s));
        assert!(!same_aggregate("not json", &s));
    }
}
