//! End to end: one batch from `submit` to the verifier's verdict, through
//! real executor, aggregator and verifier processes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use store::prelude::*;

use pipeline::submit::{SubmitRequest, submit};
use serde::Serialize;
use workload::WorkloadSpec;

use crate::cpu::{self, CpuUse};
use crate::error::{Error, Result};
use crate::metrics::StageMetrics;
use crate::scenario::{Bench, Scenario, StageReport};

/// How often Postgres is asked whether the batch is done: fine enough for
/// runs of seconds, rare enough not to load the database being measured.
const POLL: Duration = Duration::from_millis(25);

/// One end-to-end configuration.
#[derive(Clone, Debug)]
pub struct E2eSpec {
    pub label: String,
    pub workload: WorkloadSpec,
    pub runs: i64,
    pub chunk_size: i32,
    pub seed: i64,
    pub executors: usize,
    pub concurrency: usize,
    /// Aggregator replicas sharing the partitions.
    pub aggregators: usize,
    pub executor_prefetch: Option<u16>,
    pub aggregator_prefetch: u16,
    pub timeout: Duration,
    pub quiet: Quiet,
}

/// How long to wait for an idle machine before measuring.
#[derive(Clone, Copy, Debug)]
pub struct Quiet {
    pub below: f64,
    pub max_wait: Duration,
}

impl Quiet {
    /// Waits for an idle machine; the busy share seen last (`None` when
    /// not asked to wait).
    pub async fn wait(&self) -> Option<f64> {
        if self.max_wait.is_zero() {
            return None;
        }
        cpu::wait_quiet(self.below, self.max_wait).await.map(round3)
    }
}

/// Phase totals of one stage kind in one scenario.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseLine {
    pub count: u64,
    pub total_s: f64,
    pub mean_ms: f64,
    /// Phase time over the scenario's wall time, summed over the stage's
    /// processes and concurrent tasks (so it can pass 100%), like the stages'
    /// 10-second log lines.
    pub pct_of_wall: f64,
}

/// What one end-to-end run measured.
#[derive(Clone, Debug, Serialize)]
pub struct E2eResult {
    pub label: String,
    pub workload: String,
    pub runs: i64,
    pub chunk_size: i32,
    pub chunks: i32,
    pub executors: usize,
    pub concurrency: usize,
    pub aggregators: usize,
    /// Submit call (batch and chunk rows, work messages confirmed).
    pub submit_s: f64,
    /// Until the last chunk was committed, as far as the 25 ms poll saw.
    pub executed_s: f64,
    /// Until the aggregate was saved.
    pub aggregated_s: f64,
    /// Until the verdict was recorded: the figure `runs_per_s` is based on.
    pub verified_s: f64,
    pub runs_per_s: f64,
    /// The pipeline's own CPU (stages, bench, Postgres, RabbitMQ) per run, in µs.
    pub cpu_us_per_run: f64,
    /// Share of the machine busy just before submit (when the bench waited for quiet).
    pub busy_before: Option<f64>,
    pub verdict: String,
    /// Per stage kind (`executor`, `aggregator`, `verifier`), per phase.
    pub phases: BTreeMap<String, BTreeMap<String, PhaseLine>>,
    /// Per stage kind, event counters (runs, chunks, acked, duplicates, …).
    pub events: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per process (`executor-1`, `aggregator`, …), `VmHWM` in MiB.
    pub peak_rss_mb: BTreeMap<String, f64>,
    /// CPU seconds from submit to verdict per process and for the machine.
    pub cpu: CpuUse,
    /// WARN / ERROR lines the stages logged (first few, prefixed with the
    /// process): a broker or database restart disturbs a measurement.
    pub warnings: Vec<String>,
    #[serde(skip)]
    pub aggregate: Option<String>,
    #[serde(skip)]
    pub stages: Vec<StageReport>,
}

/// Runs one configuration in its own scenario, then tears it down.
pub async fn run(bench: &Bench, spec: &E2eSpec) -> Result<E2eResult> {
    let measured = bench.in_scenario(&spec.label, async |s| measure(s, spec).await);
    let (mut result, stages) = measured.await?;
    let dirty: Vec<&str> = stages
        .iter()
        .filter(|s| !s.clean_exit)
        .map(|s| s.name.as_str())
        .collect();
    if !dirty.is_empty() {
        tracing::warn!(scenario = %spec.label, ?dirty, "stages did not exit cleanly on SIGTERM");
    }
    result.fill_from(&stages);
    result.stages = stages;
    Ok(result)
}

async fn measure(scenario: &mut Scenario, spec: &E2eSpec) -> Result<E2eResult> {
    start_stages(scenario, spec)?;
    let req = SubmitRequest {
        name: Some(spec.label.clone()),
        runs: spec.runs,
        chunk_size: spec.chunk_size,
        seed: Some(spec.seed),
        workload: spec.workload.clone(),
        count: 1,
        share: Default::default(),
    };
    let busy_before = spec.quiet.wait().await;
    let cpu_before = cpu::snapshot(&scenario.pids());
    let start = Instant::now();
    let (store, broker) = (scenario.store()?.clone(), scenario.broker()?.clone());
    let submitted = submit(&broker, &store, &req).await?;
    let submit_s = start.elapsed().as_secs_f64();
    let batch = submitted
        .batches
        .first()
        .ok_or_else(|| Error::Measure("submit created no batch".into()))?
        .clone();
    if !submitted.published {
        return Err(Error::Measure(
            "submit could not publish every chunk".into(),
        ));
    }
    let times = poll_until_verdict(scenario, &store, batch.id, start, spec.timeout).await?;
    let cpu = cpu_before.until(&cpu::snapshot(&scenario.pids()));
    let verdict = (store.verdict(batch.id).await?)
        .ok_or_else(|| Error::Measure("verdict vanished".into()))?;
    if !verdict.success {
        return Err(Error::Measure(format!(
            "the batch failed: {}",
            verdict.line
        )));
    }
    let aggregate = store.batch_result(batch.id).await?.map(|(json, _)| json);

    Ok(E2eResult {
        label: spec.label.clone(),
        workload: spec.workload.name().to_owned(),
        runs: spec.runs,
        chunk_size: spec.chunk_size,
        chunks: batch.chunks(),
        executors: spec.executors,
        concurrency: spec.concurrency,
        aggregators: spec.aggregators.max(1),
        submit_s,
        executed_s: times.executed_s,
        aggregated_s: times.aggregated_s,
        verified_s: times.verified_s,
        runs_per_s: spec.runs as f64 / times.verified_s.max(1e-9),
        cpu_us_per_run: round3(cpu.own_s * 1e6 / spec.runs.max(1) as f64),
        busy_before,
        verdict: verdict.line,
        phases: BTreeMap::new(),
        events: BTreeMap::new(),
        peak_rss_mb: BTreeMap::new(),
        cpu,
        warnings: Vec::new(),
        aggregate,
        stages: Vec::new(),
    })
}

/// The aggregator, the verifier and the executors, until each is consuming.
fn start_stages(scenario: &mut Scenario, spec: &E2eSpec) -> Result<()> {
    for i in 1..=spec.aggregators.max(1) {
        let name = match i {
            1 => "aggregator".to_string(),
            i => format!("aggregator-{i}"),
        };
        let args = [
            "aggregator".into(),
            "--commit-window".into(),
            spec.aggregator_prefetch.to_string(),
        ];
        scenario.spawn(&name, &args, "aggregator consuming")?;
    }
    scenario.spawn("verifier", &["verifier".into()], "verifier consuming")?;
    for i in 1..=spec.executors {
        let mut args = vec![
            "executor".to_string(),
            "--concurrency".into(),
            spec.concurrency.to_string(),
            "--worker-id".into(),
            format!("bench-executor-{i}"),
        ];
        if let Some(p) = spec.executor_prefetch {
            args.extend(["--chunks-in-flight".into(), p.to_string()]);
        }
        scenario.spawn(&format!("executor-{i}"), &args, "executor consuming")?;
    }
    scenario.wait_ready(Duration::from_secs(60))
}

/// When the batch was executed, aggregated and verified, in seconds since `start`.
struct Times {
    executed_s: f64,
    aggregated_s: f64,
    verified_s: f64,
}

/// Polls Postgres until `batch` has a verdict; fails after `timeout` or
/// when a stage dies.
async fn poll_until_verdict(
    scenario: &mut Scenario,
    store: &store::PgStore,
    batch: store::Uuid,
    start: Instant,
    timeout: Duration,
) -> Result<Times> {
    let (mut executed_s, mut aggregated_s) = (None, None);
    loop {
        let progress = store.progress(Some(batch), 1).await?;
        let p = progress
            .first()
            .ok_or_else(|| Error::Measure("the submitted batch is not in the store".into()))?;
        let t = start.elapsed().as_secs_f64();
        if p.completed == p.chunks && executed_s.is_none() {
            executed_s = Some(t);
        }
        if p.aggregated && aggregated_s.is_none() {
            aggregated_s = Some(t);
        }
        if p.verdict.is_some() {
            return Ok(Times {
                executed_s: executed_s.unwrap_or(t),
                aggregated_s: aggregated_s.unwrap_or(t),
                verified_s: t,
            });
        }
        if start.elapsed() > timeout {
            return Err(Error::Measure(format!(
                "no verdict after {timeout:?}: {}/{} chunks completed, aggregated={}",
                p.completed, p.chunks, p.aggregated
            )));
        }
        scenario.check_alive()?;
        tokio::time::sleep(POLL).await;
    }
}

impl E2eResult {
    /// Phases, events and peak RSS from the stopped stages.
    fn fill_from(&mut self, stages: &[StageReport]) {
        let mut by_kind: BTreeMap<String, StageMetrics> = BTreeMap::new();
        for s in stages {
            self.warnings
                .extend(s.warnings.iter().map(|w| format!("{}: {w}", s.name)));
            let kind = stage_kind(&s.name).to_owned();
            by_kind.entry(kind).or_default().add(&s.metrics);
            self.peak_rss_mb
                .insert(s.name.clone(), round1(s.peak_rss_mb));
        }
        for (kind, m) in by_kind {
            self.phases
                .insert(kind.clone(), phase_lines(&m, self.verified_s));
            self.events.insert(kind, m.events);
        }
    }
}

/// `executor-2` → `executor`.
pub fn stage_kind(name: &str) -> &str {
    name.split_once('-').map_or(name, |(kind, _)| kind)
}

pub fn phase_lines(m: &StageMetrics, wall_s: f64) -> BTreeMap<String, PhaseLine> {
    m.phases
        .iter()
        .map(|(name, p)| {
            let line = PhaseLine {
                count: p.count,
                total_s: round3(p.total_s),
                mean_ms: round3(p.total_s * 1e3 / p.count.max(1) as f64),
                pct_of_wall: round1(p.total_s * 100.0 / wall_s.max(1e-9)),
            };
            (name.clone(), line)
        })
        .collect()
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::PhaseTotal;

    #[test]
    fn stage_kinds() {
        assert_eq!(stage_kind("executor-2"), "executor");
        assert_eq!(stage_kind("aggregator"), "aggregator");
    }

    #[test]
    fn phase_lines_average_and_share() {
        let mut m = StageMetrics::default();
        m.phases.insert(
            "persist".into(),
            PhaseTotal {
                count: 4,
                total_s: 2.0,
            },
        );
        let lines = phase_lines(&m, 10.0);
        let p = &lines["persist"];
        assert_eq!((p.count, p.mean_ms, p.pct_of_wall), (4, 500.0, 20.0));
    }
}
