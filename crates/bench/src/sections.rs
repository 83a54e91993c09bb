//! The sections of one bench run, in order, each adding its figures to the
//! [`BenchResults`]: the in-process limit, end to end, scaling, the `sum`
//! workload, the aggregator drain, peak RSS at two sizes; then the ratios
//! between them.

use std::collections::BTreeMap;
use std::time::Duration;

use workload::WorkloadSpec;

use crate::args::BenchArgs;
use crate::drain;
use crate::e2e::{self, E2eResult, E2eSpec, Quiet, round3};
use crate::error::{Error, Result};
use crate::limit::{self, LimitResult};
use crate::plan::Plan;
use crate::report::BenchResults;
use crate::scenario::Bench;
use crate::{cancel, fairness, purge, rebuild, recovery};

/// Open chunk results in the changelog of the rebuilt partition (the
/// figure issue 12 asks for).
const REBUILD_RESULTS: i32 = 1_000;

/// Batches in the store when one is purged (the figure).
const PURGE_AMONG: usize = 20;

/// The label of the end-to-end run the headline figures come from.
const E2E: &str = "e2e-bingo-all-cores";
/// The same with three aggregator replicas sharing the partitions.
const E2E_3_AGGREGATORS: &str = "e2e-bingo-all-cores-3-aggregators";
/// The same configuration at the larger size, for peak RSS.
const E2E_RSS: &str = "e2e-bingo-all-cores-rss";

/// What every section needs.
pub struct Run<'a> {
    pub bench: &'a Bench,
    pub plan: &'a Plan,
    pub args: &'a BenchArgs,
    pub cores: usize,
    pub quiet: Quiet,
    pub timeout: Duration,
}

impl Run<'_> {
    /// Every section the plan holds, then the figures derived from them.
    pub async fn all(&self, r: &mut BenchResults) -> Result<()> {
        if self.plan.on("limit") {
            self.limit(r).await?;
        }
        if self.plan.on("e2e") {
            self.e2e(r).await?;
        }
        if self.plan.on("replicas") {
            self.replicas(r).await?;
        }
        let all_cores: Vec<f64> = (r.limit.iter())
            .filter(|l| l.threads == self.cores)
            .map(|l| l.runs_per_s)
            .collect();
        if !all_cores.is_empty() {
            r.limit_runs_per_s =
                Some((all_cores.iter().sum::<f64>() / all_cores.len() as f64).round());
        }
        if self.plan.on("scaling") {
            self.scaling(r).await?;
        }
        if self.plan.on("sum") {
            let e = self
                .e2e_step(
                    "e2e-sum-all-cores",
                    WorkloadSpec::Sum,
                    self.plan.runs,
                    1,
                    self.cores,
                )
                .await?;
            r.sum_runs_per_s = Some(e.runs_per_s.round());
            r.sum_cpu_us_per_run = Some(e.cpu_us_per_run);
            r.e2e.push(e);
        }
        if self.plan.on("aggregator") {
            self.aggregator(r).await?;
        }
        if self.plan.on("rebuild") {
            tracing::info!(
                results = REBUILD_RESULTS,
                "bench: partition rebuilt from Postgres"
            );
            let b = rebuild::run(self.bench, REBUILD_RESULTS, self.timeout).await?;
            tracing::info!(
                secs = b.changelog_s,
                merged = b.merged,
                "bench: rebuild done"
            );
            r.rebuild_from_store_s = Some(b.changelog_s);
            r.rebuild = Some(b);
        }
        if self.plan.on("recovery") {
            tracing::info!("bench: recovery (one batch, then the same with two executor kills)");
            let divisor = if self.args.quick { 10 } else { 1 };
            let k = recovery::run(self.bench, divisor, self.timeout).await?;
            tracing::info!(
                no_kill_s = k.no_kill_s,
                two_kills_s = k.two_kills_s,
                "bench: recovery done"
            );
            r.recovery_kill_cost_s = Some(k.kill_cost_s);
            r.recovery = Some(k);
        }
        if self.plan.on("purge") {
            let runs = self.plan.runs;
            tracing::info!(
                batches = PURGE_AMONG,
                runs,
                "bench: purge one batch of many"
            );
            let p = purge::run(self.bench, PURGE_AMONG, runs, self.timeout).await?;
            tracing::info!(
                secs = p.purge_s,
                bytes_before = p.bytes_before,
                bytes_after = p.bytes_after,
                "bench: purge done"
            );
            r.purge_one_batch_s = Some(p.purge_s);
            r.purge = Some(p);
        }
        if self.plan.on("cancel") {
            self.cancel(r).await?;
        }
        if self.plan.on("fairness") {
            self.fairness(r).await?;
        }
        if self.plan.on("rss") {
            self.rss(r).await?;
        }
        derived(r);
        Ok(())
    }

    /// 20 cancels of a running 2,000,000-run bingo batch, one at a time.
    async fn cancel(&self, r: &mut BenchResults) -> Result<()> {
        let (cancels, runs) = if self.args.quick {
            (cancel::QUICK_CANCELS, cancel::RUNS / 10)
        } else {
            (cancel::CANCELS, cancel::RUNS)
        };
        tracing::info!(cancels, runs, "bench: cancels of a running batch");
        let c = cancel::run(
            self.bench,
            cancels,
            runs,
            self.plan.chunk_size,
            self.cores,
            self.timeout,
        )
        .await?;
        let (p50, max) = cancel::p50_max(c.to_last_run_ms.iter().flatten().copied());
        (r.cancel_to_last_run_p50_ms, r.cancel_to_last_run_max_ms) = (p50, max);
        let (p50, max) = cancel::p50_max(c.to_line_ms.iter().copied());
        (r.cancel_to_line_p50_ms, r.cancel_to_line_max_ms) = (p50, max);
        tracing::info!(
            to_last_run_p50_ms = ?r.cancel_to_last_run_p50_ms,
            to_last_run_max_ms = ?r.cancel_to_last_run_max_ms,
            to_line_p50_ms = ?r.cancel_to_line_p50_ms,
            to_line_max_ms = ?r.cancel_to_line_max_ms,
            "bench: cancels done"
        );
        r.cancel = Some(c);
        Ok(())
    }

    /// Batches sharing the pool: a small one beside a big one, two equal
    /// ones, weights 2 and 1 (one executor with concurrency = cores).
    async fn fairness(&self, r: &mut BenchResults) -> Result<()> {
        let spec = fairness::FairnessSpec {
            divisor: if self.args.quick { 10 } else { 1 },
            chunk_size: self.plan.chunk_size,
            concurrency: self.cores,
            chunks_in_flight: self.args.executor_chunks_in_flight,
            seed: self.args.seed,
            timeout: self.timeout,
            quiet: self.quiet,
        };
        tracing::info!(
            chunk_size = spec.chunk_size,
            concurrency = spec.concurrency,
            "bench: fair share"
        );
        let f = fairness::run(self.bench, &spec).await?;
        r.fair_small_alone_s = Some(f.small_alone_s);
        r.fair_small_shared_s = Some(f.small_shared_s);
        r.fair_chunk_s = Some(f.chunk_s);
        r.fair_small_ratio = Some(round3(f.small_shared_s / f.small_alone_s.max(1e-9)));
        r.fair_small_goal_met = Some(fairness::small_goal_met(
            f.small_alone_s,
            f.small_shared_s,
            f.chunk_s,
        ));
        r.fair_equal_max_gap = f.equal_max_gap;
        r.fair_weights_ratio = f.weights_ratio;
        tracing::info!(
            small_alone_s = f.small_alone_s,
            small_shared_s = f.small_shared_s,
            chunk_s = f.chunk_s,
            equal_max_gap = ?f.equal_max_gap,
            weights_ratio = ?f.weights_ratio,
            "bench: fair share done"
        );
        r.fairness = Some(f);
        Ok(())
    }

    async fn limit(&self, r: &mut BenchResults) -> Result<()> {
        for threads in [1, self.cores] {
            let l = self.limit_step(threads).await?;
            if threads == 1 {
                r.limit_runs_per_s_1_thread = Some(l.runs_per_s.round());
            }
            r.limit.push(l);
            if self.cores == 1 {
                break;
            }
        }
        Ok(())
    }

    async fn e2e(&self, r: &mut BenchResults) -> Result<()> {
        let e = self
            .e2e_step(
                E2E,
                WorkloadSpec::bingo_default(),
                self.plan.runs,
                1,
                self.cores,
            )
            .await?;
        r.e2e_runs_per_s = Some(e.runs_per_s.round());
        if let (Some(limit), Some(aggregate)) = (r.limit.last(), &e.aggregate) {
            r.same_aggregate_as_limit = Some(same_aggregate(aggregate, &limit.summary));
        }
        r.e2e.push(e);
        if self.plan.on("limit") {
            let mut again = self.limit_step(self.cores).await?;
            again.after_e2e = true;
            r.limit.push(again);
        }
        Ok(())
    }

    /// The end-to-end run again with three aggregator replicas (one active
    /// per partition, the others hot standbys), next to the one-replica run.
    async fn replicas(&self, r: &mut BenchResults) -> Result<()> {
        let e = self
            .e2e_step(
                E2E_3_AGGREGATORS,
                WorkloadSpec::bingo_default(),
                self.plan.runs,
                1,
                self.cores,
            )
            .await?;
        r.e2e_3_aggregators_runs_per_s = Some(e.runs_per_s.round());
        r.e2e.push(e);
        Ok(())
    }

    async fn scaling(&self, r: &mut BenchResults) -> Result<()> {
        let bingo = WorkloadSpec::bingo_default();
        let one = self
            .e2e_step("e2e-bingo-1x1", bingo.clone(), self.plan.runs, 1, 1)
            .await?;
        let two = self
            .e2e_step("e2e-bingo-2x1", bingo, self.plan.runs, 2, 1)
            .await?;
        r.e2e_1x1_runs_per_s = Some(one.runs_per_s.round());
        r.e2e_2x1_runs_per_s = Some(two.runs_per_s.round());
        r.scaling_1_to_2 = Some(round3(two.runs_per_s / one.runs_per_s.max(1e-9)));
        r.e2e.push(one);
        r.e2e.push(two);
        Ok(())
    }

    /// The drain with one replica, then with two sharing the partitions.
    async fn aggregator(&self, r: &mut BenchResults) -> Result<()> {
        let results = self.plan.drain_results;
        for replicas in [1, 2] {
            tracing::info!(results, replicas, "bench: aggregator drain");
            let spec = drain::DrainSpec {
                results,
                replicas,
                prefetch: self.args.aggregator_commit_window,
                seed: self.args.seed,
                timeout: self.timeout,
                quiet: self.quiet,
            };
            let d = drain::run(self.bench, &spec).await?;
            tracing::info!(
                msgs_per_s = d.msgs_per_s as u64,
                replicas,
                "bench: aggregator drain done"
            );
            let rate = Some(d.msgs_per_s.round());
            if replicas == 1 {
                r.aggregator_msgs_per_s = rate;
            } else {
                r.aggregator_2_replicas_msgs_per_s = rate;
            }
            r.phases.insert(
                format!("aggregator-drain-{replicas}x"),
                BTreeMap::from([("aggregator".to_string(), d.phases.clone())]),
            );
            r.aggregator.push(d);
        }
        Ok(())
    }

    async fn rss(&self, r: &mut BenchResults) -> Result<()> {
        let bingo = WorkloadSpec::bingo_default();
        if !r.e2e.iter().any(|e| e.label == E2E) {
            let e = self
                .e2e_step(E2E, bingo.clone(), self.plan.runs, 1, self.cores)
                .await?;
            r.e2e.push(e);
        }
        let big = self
            .e2e_step(E2E_RSS, bingo, self.plan.rss_runs, 1, self.cores)
            .await?;
        r.e2e.push(big);
        rss_tables(r, E2E, E2E_RSS);
        Ok(())
    }

    async fn limit_step(&self, threads: usize) -> Result<LimitResult> {
        let (runs, chunk, seed) = (self.plan.runs, self.plan.chunk_size, self.args.seed);
        tracing::info!(threads, runs, "bench: limit (in-process simulation)");
        let busy_before = self.quiet.wait().await;
        let spec = WorkloadSpec::bingo_default();
        let mut l =
            tokio::task::spawn_blocking(move || limit::measure(&spec, seed, runs, chunk, threads))
                .await
                .map_err(|_| Error::Panicked("the limit measurement"))??;
        l.busy_before = busy_before;
        tracing::info!(runs_per_s = l.runs_per_s as u64, "bench: limit done");
        Ok(l)
    }

    async fn e2e_step(
        &self,
        label: &str,
        workload: WorkloadSpec,
        runs: i64,
        executors: usize,
        concurrency: usize,
    ) -> Result<E2eResult> {
        let spec = E2eSpec {
            label: label.to_owned(),
            workload,
            runs,
            chunk_size: self.plan.chunk_size,
            seed: self.args.seed,
            executors,
            concurrency,
            aggregators: if label == E2E_3_AGGREGATORS { 3 } else { 1 },
            executor_prefetch: self.args.executor_chunks_in_flight,
            aggregator_prefetch: self.args.aggregator_commit_window,
            timeout: self.timeout,
            quiet: self.quiet,
        };
        tracing::info!(scenario = %label, runs, chunk_size = spec.chunk_size, executors, concurrency, "bench: end to end");
        let e = e2e::run(self.bench, &spec).await?;
        tracing::info!(scenario = %label, secs = e.verified_s, runs_per_s = e.runs_per_s as u64, "bench: end to end done");
        Ok(e)
    }
}

/// Efficiency (wall and CPU views) and the per-scenario phase tables.
fn derived(r: &mut BenchResults) {
    if let (Some(e2e), Some(limit)) = (r.e2e_runs_per_s, r.limit_runs_per_s) {
        r.efficiency = Some(round3(e2e / limit.max(1e-9)));
        if let Some(three) = r.e2e_3_aggregators_runs_per_s {
            r.efficiency_3_aggregators = Some(round3(three / limit.max(1e-9)));
            r.aggregators_3_vs_1 = Some(round3(three / e2e.max(1e-9)));
        }
    }
    let limit_cpu = r.limit.first().and_then(|l| l.cpu_us_per_run);
    let e2e_cpu = r
        .e2e
        .iter()
        .find(|e| e.label == E2E)
        .map(|e| e.cpu_us_per_run);
    if let (Some(limit), Some(e2e)) = (limit_cpu, e2e_cpu) {
        r.efficiency_cpu = Some(round3(limit / e2e.max(1e-9)));
    }
    for e in &r.e2e {
        r.phases.insert(e.label.clone(), e.phases.clone());
    }
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
