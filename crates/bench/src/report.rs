//! The bench's results: the JSON document (`bench/results.json`; keys in
//! `bench/README.md`) and the table printed on stdout.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::drain::DrainResult;
use crate::e2e::{E2eResult, PhaseLine};
use crate::limit::LimitResult;

/// Everything one `batchline bench` measured. The headline keys are `None`
/// when their section was not run (`--only`).
#[derive(Debug, Default, Serialize)]
pub struct BenchResults {
    /// Format version of this document.
    pub version: u32,
    pub command: String,
    pub quick: bool,
    pub machine: Machine,
    pub sizes: Sizes,
    /// In-process simulation of the batch on all cores, runs/s: the mean of
    /// the measurements just before and just after the `e2e` run (a shared
    /// machine's speed drifts by several percent over a minute).
    pub limit_runs_per_s: Option<f64>,
    /// The same on 1 thread.
    pub limit_runs_per_s_1_thread: Option<f64>,
    /// One bingo batch end to end, one executor with concurrency = cores.
    pub e2e_runs_per_s: Option<f64>,
    /// `e2e_runs_per_s / limit_runs_per_s`.
    pub efficiency: Option<f64>,
    /// CPU view of `efficiency`: the in-process CPU per run over the
    /// pipeline's whole CPU per run (stages, Postgres, RabbitMQ) — what
    /// `efficiency` would be on a machine nobody else uses, if CPU-bound.
    pub efficiency_cpu: Option<f64>,
    /// End to end with 1 and 2 executors at concurrency 1.
    pub e2e_1x1_runs_per_s: Option<f64>,
    pub e2e_2x1_runs_per_s: Option<f64>,
    /// `e2e_2x1_runs_per_s / e2e_1x1_runs_per_s`.
    pub scaling_1_to_2: Option<f64>,
    /// One sum batch end to end (one executor, concurrency = cores), every run's row in Postgres.
    pub sum_runs_per_s: Option<f64>,
    /// The sum batch's pipeline CPU per run (stages, Postgres, RabbitMQ), in µs.
    pub sum_cpu_us_per_run: Option<f64>,
    /// The `e2e` run with three aggregator replicas sharing the partitions.
    pub e2e_3_aggregators_runs_per_s: Option<f64>,
    /// `e2e_3_aggregators_runs_per_s / limit_runs_per_s`.
    pub efficiency_3_aggregators: Option<f64>,
    /// `e2e_3_aggregators_runs_per_s / e2e_runs_per_s`: what running
    /// standbys costs (goal: within noise of 1).
    pub aggregators_3_vs_1: Option<f64>,
    /// Pre-filled results over every partition drained by one aggregator
    /// replica, fsync before ack.
    pub aggregator_msgs_per_s: Option<f64>,
    /// The same drained by two replicas sharing the partitions.
    pub aggregator_2_replicas_msgs_per_s: Option<f64>,
    /// A partition with 1,000 open chunk results taken over by a replica
    /// without its files: the changelog read from Postgres and made
    /// durable, in seconds.
    pub rebuild_from_store_s: Option<f64>,
    pub rebuild: Option<crate::rebuild::RebuildResult>,
    /// Extra wall time two SIGKILLs (and immediate restarts) of the only
    /// executor cost one `sum` batch, against the same batch untouched.
    pub recovery_kill_cost_s: Option<f64>,
    pub recovery: Option<crate::recovery::RecoveryResult>,
    /// Purging one batch of `runs` rows from a store holding 20 such
    /// batches: its rows, chunks, aggregate, verdict, partition dropped.
    pub purge_one_batch_s: Option<f64>,
    pub purge: Option<crate::purge::PurgeResult>,
    /// 20 cancels of a running 2,000,000-run batch: from the cancel's
    /// commit to the batch's last run executed (the largest
    /// `cancel_to_stop_ms` the executor logged), p50 and max, in ms.
    pub cancel_to_last_run_p50_ms: Option<f64>,
    pub cancel_to_last_run_max_ms: Option<f64>,
    /// The same cancels, from the cancel call's return to the CANCELLED line.
    pub cancel_to_line_p50_ms: Option<f64>,
    pub cancel_to_line_max_ms: Option<f64>,
    pub cancel: Option<crate::cancel::CancelResult>,
    /// Fair share: a small bingo batch from submit to verdict alone, and
    /// submitted while a big one runs, in seconds; their ratio; one
    /// chunk's simulation time; whether shared <= 2 × alone + one chunk.
    pub fair_small_alone_s: Option<f64>,
    pub fair_small_shared_s: Option<f64>,
    pub fair_small_ratio: Option<f64>,
    pub fair_chunk_s: Option<f64>,
    pub fair_small_goal_met: Option<bool>,
    /// Two equal batches submitted together: the largest |a-b|/max(a,b)
    /// of their runs done while both run, past the first chunks.
    pub fair_equal_max_gap: Option<f64>,
    /// Weights 2 and 1 submitted together: executor seconds of the first
    /// over the second's, before either finished.
    pub fair_weights_ratio: Option<f64>,
    pub fairness: Option<crate::fairness::FairnessResult>,
    /// Per batch size (runs), per process: `VmHWM` in MiB.
    pub peak_rss_mb: BTreeMap<String, BTreeMap<String, f64>>,
    /// Per process: peak RSS at the large size over the small one.
    pub peak_rss_growth: BTreeMap<String, f64>,
    /// Per scenario, per stage kind, per phase.
    pub phases: BTreeMap<String, BTreeMap<String, BTreeMap<String, PhaseLine>>>,
    /// Whether the pipeline's aggregate equals the in-process one (same batch).
    pub same_aggregate_as_limit: Option<bool>,
    pub limit: Vec<LimitResult>,
    pub e2e: Vec<E2eResult>,
    /// The drains, by replica count.
    pub aggregator: Vec<DrainResult>,
}

#[derive(Debug, Default, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// `/proc/loadavg` (1, 5, 15 min) when the bench started and ended: the
    /// services and other work share the cores.
    pub load_avg_start: Option<[f64; 3]>,
    pub load_avg_end: Option<[f64; 3]>,
    pub started_at_unix: u64,
    pub total_s: f64,
}

#[derive(Debug, Default, Serialize)]
pub struct Sizes {
    pub runs: i64,
    pub rss_runs: i64,
    pub chunk_size: i32,
    pub drain_results: i32,
    pub aggregator_prefetch: u16,
    pub executor_prefetch: Option<u16>,
    pub seed: i64,
}

pub fn load_avg() -> Option<[f64; 3]> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    let mut it = text.split_whitespace().map(|s| s.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

impl BenchResults {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = self.scenario_rows();
        t.push('\n');
        t.push_str(&self.goals());
        t.push_str(&self.rss_and_cpu());
        t.push_str(&self.phase_lines());
        t
    }

    /// One row per measurement: size, time, rate, CPU, busy share, warnings.
    fn scenario_rows(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "batchline bench{} — {} cores, load {}",
            if self.quick { " --quick" } else { "" },
            self.machine.cores,
            self.machine.load_avg_start.map_or("?".into(), |l| format!(
                "{:.1} {:.1} {:.1}",
                l[0], l[1], l[2]
            ))
        );
        let _ = writeln!(
            t,
            "{:<34} {:>9} {:>7} {:>8} {:>12} {:>11} {:>6} {:>5}",
            "scenario", "runs", "chunks", "secs", "runs/s", "cpu µs/run", "busy", "warn"
        );
        let busy = |b: Option<f64>| b.map_or("-".into(), |b| format!("{:.0}%", b * 100.0));
        for l in &self.limit {
            let _ = writeln!(
                t,
                "{:<34} {:>9} {:>7} {:>8.2} {:>12.0} {:>11} {:>6} {:>5}",
                format!(
                    "limit {} in-process, {} thread(s){}",
                    l.workload,
                    l.threads,
                    if l.after_e2e { " again" } else { "" }
                ),
                l.runs,
                "-",
                l.wall_s,
                l.runs_per_s,
                num(l.cpu_us_per_run, 2),
                busy(l.busy_before),
                "-"
            );
        }
        for e in &self.e2e {
            let _ = writeln!(
                t,
                "{:<34} {:>9} {:>7} {:>8.2} {:>12.0} {:>11.2} {:>6} {:>5}",
                format!(
                    "e2e {} {}x executor, conc {}",
                    e.workload, e.executors, e.concurrency
                ),
                e.runs,
                e.chunks,
                e.verified_s,
                e.runs_per_s,
                e.cpu_us_per_run,
                busy(e.busy_before),
                e.warnings.len()
            );
        }
        for d in &self.aggregator {
            let _ = writeln!(
                t,
                "{:<34} {:>9} {:>7} {:>8.2} {:>12} {:>11} {:>6} {:>5}",
                format!(
                    "aggregator drain, P {} x{}, window {}",
                    d.partitions, d.replicas, d.prefetch
                ),
                "-",
                d.results,
                d.drain_s,
                format!("{:.0} msg/s", d.msgs_per_s),
                "-",
                busy(d.busy_before),
                d.warnings.len()
            );
        }
        t
    }

    /// The headline figures against their goals.
    fn goals(&self) -> String {
        let mut t = String::new();
        let goal = |name: &str, v: Option<f64>, goal: &str, ok: Option<bool>| {
            format!(
                "{name:<24} {:>12}   goal {goal:<12} {}\n",
                num(v, 3),
                match ok {
                    Some(true) => "met",
                    Some(false) => "MISSED",
                    None => "-",
                }
            )
        };
        t.push_str(&goal(
            "efficiency",
            self.efficiency,
            ">= 0.85",
            self.efficiency.map(|v| v >= 0.85),
        ));
        t.push_str(&goal(
            "efficiency_cpu",
            self.efficiency_cpu,
            "(CPU view)",
            None,
        ));
        t.push_str(&goal(
            "efficiency_3_aggregators",
            self.efficiency_3_aggregators,
            "~ efficiency",
            None,
        ));
        t.push_str(&goal(
            "scaling_1_to_2",
            self.scaling_1_to_2,
            ">= 1.7",
            self.scaling_1_to_2.map(|v| v >= 1.7),
        ));
        t.push_str(&goal(
            "sum_runs_per_s",
            self.sum_runs_per_s,
            ">= 300000",
            self.sum_runs_per_s.map(|v| v >= 300_000.0),
        ));
        t.push_str(&goal(
            "aggregator_msgs_per_s",
            self.aggregator_msgs_per_s,
            ">= 20000",
            self.aggregator_msgs_per_s.map(|v| v >= 20_000.0),
        ));
        t.push_str(&goal(
            "aggregator_2_replicas",
            self.aggregator_2_replicas_msgs_per_s,
            ">= 20000",
            self.aggregator_2_replicas_msgs_per_s.map(|v| v >= 20_000.0),
        ));
        t.push_str(&goal(
            "two kills cost (s)",
            self.recovery_kill_cost_s,
            "< 5",
            self.recovery_kill_cost_s.map(|v| v < 5.0),
        ));
        t.push_str(&goal(
            "purge 1 of 20 (s)",
            self.purge_one_batch_s,
            "(figure)",
            None,
        ));
        t.push_str(&goal(
            "cancel to stop max (ms)",
            self.cancel_to_last_run_max_ms,
            "< 1000",
            self.cancel_to_last_run_max_ms.map(|v| v < 1000.0),
        ));
        t.push_str(&goal(
            "cancel to stop p50 (ms)",
            self.cancel_to_last_run_p50_ms,
            "(figure)",
            None,
        ));
        t.push_str(&goal(
            "cancel to line p50 (ms)",
            self.cancel_to_line_p50_ms,
            "(figure)",
            None,
        ));
        t.push_str(&goal(
            "cancel to line max (ms)",
            self.cancel_to_line_max_ms,
            "(figure)",
            None,
        ));
        t.push_str(&goal(
            "fair small alone (s)",
            self.fair_small_alone_s,
            "(figure)",
            None,
        ));
        t.push_str(&goal(
            "fair small shared (s)",
            self.fair_small_shared_s,
            "<= 2x+chunk",
            self.fair_small_goal_met,
        ));
        t.push_str(&goal(
            "fair small ratio",
            self.fair_small_ratio,
            "(figure)",
            None,
        ));
        t.push_str(&goal("fair chunk (s)", self.fair_chunk_s, "(figure)", None));
        t.push_str(&goal(
            "fair equal max gap",
            self.fair_equal_max_gap,
            "<= 0.10",
            self.fair_equal_max_gap.map(|g| g <= 0.10),
        ));
        t.push_str(&goal(
            "fair weights ratio",
            self.fair_weights_ratio,
            "2.0 +- 10%",
            self.fair_weights_ratio.map(|w| (1.8..=2.2).contains(&w)),
        ));
        t.push_str(&goal(
            "rebuild 1,000 (s)",
            self.rebuild_from_store_s,
            "(figure)",
            None,
        ));
        let worst_growth = self
            .peak_rss_growth
            .values()
            .copied()
            .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
        t.push_str(&goal(
            "peak RSS growth (max)",
            worst_growth,
            "<= 1.10",
            worst_growth.map(|g| g <= 1.10),
        ));
        t
    }

    /// Peak RSS per size and process; CPU seconds per scenario and process.
    fn rss_and_cpu(&self) -> String {
        let mut t = String::new();
        if !self.peak_rss_mb.is_empty() {
            let _ = writeln!(t, "\npeak RSS (MiB)");
            for (size, procs) in &self.peak_rss_mb {
                let list: Vec<String> =
                    procs.iter().map(|(p, mb)| format!("{p} {mb:.1}")).collect();
                let _ = writeln!(t, "  {size:>9} runs: {}", list.join(", "));
            }
        }
        let mut cpu_rows: Vec<(&str, &crate::cpu::CpuUse)> = self
            .e2e
            .iter()
            .map(|e| (e.label.as_str(), &e.cpu))
            .collect();
        let drains: Vec<(String, &crate::cpu::CpuUse)> = self
            .aggregator
            .iter()
            .map(|d| (format!("aggregator-drain-{}x", d.replicas), &d.cpu))
            .collect();
        cpu_rows.extend(drains.iter().map(|(l, c)| (l.as_str(), *c)));
        if !cpu_rows.is_empty() {
            let _ = writeln!(
                t,
                "\nCPU seconds: own + foreign (other users of the machine) / capacity; own per process"
            );
        }
        for (label, cpu) in cpu_rows {
            let list: Vec<String> = cpu
                .by_process
                .iter()
                .map(|(p, s)| format!("{p} {s:.2}"))
                .collect();
            let _ = writeln!(
                t,
                "  {label:<24} {:>5.1} + {:>5.1} / {:>5.1}: {}",
                cpu.own_s,
                cpu.foreign_s,
                cpu.machine_capacity_s,
                list.join(", ")
            );
        }
        t
    }

    /// Mean time per call and share of the wall time of each phase.
    fn phase_lines(&self) -> String {
        let mut t = String::new();
        for (scenario, kinds) in &self.phases {
            let _ = writeln!(t, "\nphases of {scenario} (mean ms per call, % of wall)");
            for (kind, phases) in kinds {
                let list: Vec<String> = phases
                    .iter()
                    .map(|(p, l)| {
                        format!(
                            "{p}={:.2}ms/{}x ({:.0}%)",
                            l.mean_ms, l.count, l.pct_of_wall
                        )
                    })
                    .collect();
                let _ = writeln!(t, "  {kind:<10} {}", list.join(" "));
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_marks_goals_and_json_has_the_headline_keys() {
        let r = BenchResults {
            efficiency: Some(0.9),
            scaling_1_to_2: Some(1.5),
            ..BenchResults::default()
        };
        let table = r.table();
        assert!(table.contains("efficiency"));
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("efficiency") && l.ends_with("met"))
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("scaling_1_to_2") && l.ends_with("MISSED"))
        );
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "limit_runs_per_s",
            "e2e_runs_per_s",
            "efficiency",
            "scaling_1_to_2",
            "sum_runs_per_s",
            "aggregator_msgs_per_s",
            "aggregator_2_replicas_msgs_per_s",
            "e2e_3_aggregators_runs_per_s",
            "efficiency_3_aggregators",
            "aggregators_3_vs_1",
            "rebuild_from_store_s",
            "recovery_kill_cost_s",
            "fair_small_alone_s",
            "fair_small_shared_s",
            "fair_small_ratio",
            "fair_chunk_s",
            "fair_small_goal_met",
            "fair_equal_max_gap",
            "fair_weights_ratio",
            "peak_rss_mb",
            "phases",
        ] {
            assert!(json.get(key).is_some(), "{key} missing");
        }
    }

    #[test]
    fn load_avg_reads_three_numbers() {
        let l = load_avg().unwrap();
        assert!(l.iter().all(|v| *v >= 0.0));
    }
}
