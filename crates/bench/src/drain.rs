//! Aggregator drain: every partition's results queue pre-filled with the
//! chunk results of one `sum` batch of 1-run chunks (one batch per
//! partition), drained by freshly started aggregator replicas (fsynced
//! group commit before every ack) until every batch's aggregate is saved.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use store::prelude::*;

use broker::{Broker, Message, Queue, RabbitBroker};
use pipeline::messages::{ResultMsg, VERSION};
use serde::Serialize;
use store::{NewBatch, PgStore, Uuid};
use workload::{Workload, WorkloadSpec};

use crate::cpu::{self, CpuUse};
use crate::e2e::{PhaseLine, Quiet, phase_lines, round1};
use crate::error::{Error, Result};
use crate::scenario::{Bench, Scenario};

/// Results per publish call (all confirmed together).
const PUBLISH_SLICE: usize = 5_000;

/// What the drain measured.
#[derive(Clone, Debug, Serialize)]
pub struct DrainResult {
    pub results: i32,
    pub prefetch: u16,
    /// Aggregator replicas draining together.
    pub replicas: usize,
    /// Partitions the results were spread over (one batch each).
    pub partitions: u16,
    /// Publishing the results with confirms (the pre-fill, not the measure).
    pub fill_s: f64,
    pub fill_msgs_per_s: f64,
    /// From the aggregator's "consuming" log line to the saved aggregate.
    pub drain_s: f64,
    pub msgs_per_s: f64,
    /// Results per group commit (one fsync each).
    pub mean_window: f64,
    pub phases: BTreeMap<String, PhaseLine>,
    pub events: BTreeMap<String, u64>,
    pub peak_rss_mb: f64,
    /// Share of the machine busy just before the aggregator started.
    pub busy_before: Option<f64>,
    /// CPU seconds of the drain per process and for the machine.
    pub cpu: CpuUse,
    /// WARN / ERROR lines the aggregator logged.
    pub warnings: Vec<String>,
}

/// What to drain.
#[derive(Clone, Copy, Debug)]
pub struct DrainSpec {
    /// Chunk results pre-filled (one 1-run chunk each), over all partitions.
    pub results: i32,
    /// Aggregator replicas started.
    pub replicas: usize,
    /// The aggregator's prefetch: its group-commit window.
    pub prefetch: u16,
    pub seed: i64,
    pub timeout: Duration,
    pub quiet: Quiet,
}

pub async fn run(bench: &Bench, spec: &DrainSpec) -> Result<DrainResult> {
    let label = format!("aggregator-drain-{}x", spec.replicas);
    let measured = bench.in_scenario(&label, async |s| measure(s, spec).await);
    let (mut result, stages) = measured.await?;
    let results = spec.results;
    // The replicas' totals together: which replica owned what is RabbitMQ's
    // choice, the drain is their sum.
    let mut metrics = crate::metrics::StageMetrics::default();
    for agg in &stages {
        metrics.add(&agg.metrics);
        result.peak_rss_mb = result.peak_rss_mb.max(round1(agg.peak_rss_mb));
    }
    result.phases = phase_lines(&metrics, result.drain_s);
    result.events = metrics.events.clone();
    let windows = metrics.phases.get("fsync").map_or(0, |p| p.count);
    result.mean_window = round1(f64::from(results) / windows.max(1) as f64);
    result.warnings = stages.iter().flat_map(|s| s.warnings.clone()).collect();
    Ok(result)
}

/// Creates one `sum` batch of 1-run chunks in each partition and publishes
/// the result of each chunk, as executors would have; the batches and the
/// publishing time.
async fn prefill(
    store: &PgStore,
    broker: &RabbitBroker,
    spec: &DrainSpec,
) -> Result<(Vec<Uuid>, f64)> {
    let partitions = store.partitions().await?;
    let per_batch = (spec.results / i32::from(partitions)).max(1);
    let workload_spec = WorkloadSpec::Sum;
    let workload = Workload::new(&workload_spec)?;
    let batches: Vec<NewBatch> = one_id_per_partition(partitions)
        .into_iter()
        .map(|id| {
            Ok(NewBatch {
                id,
                name: "bench-aggregator-drain".into(),
                workload: serde_json::to_string(&workload_spec)?,
                seed: spec.seed,
                runs: i64::from(per_batch),
                chunk_size: 1,
                share: Default::default(),
            })
        })
        .collect::<Result<_>>()?;
    store.create_batches(&batches).await?;
    let mut messages = Vec::new();
    for batch in &batches {
        messages.extend(chunk_results(&workload, batch, per_batch, partitions)?);
    }
    let start = Instant::now();
    for slice in messages.chunks(PUBLISH_SLICE) {
        broker.publish(slice.to_vec()).await?;
    }
    let fill_s = start.elapsed().as_secs_f64();
    let depth = queued(broker, partitions).await?;
    if depth < messages.len() as u64 {
        return Err(Error::Measure(format!(
            "results queues hold {depth} messages, expected {}",
            messages.len()
        )));
    }
    Ok((batches.iter().map(|b| b.id).collect(), fill_s))
}

/// Batch ids, one landing in each partition.
fn one_id_per_partition(partitions: u16) -> Vec<Uuid> {
    let mut ids: BTreeMap<u16, Uuid> = BTreeMap::new();
    while ids.len() < usize::from(partitions) {
        let id = Uuid::new_v4();
        ids.entry(store::partition::of(id, partitions))
            .or_insert(id);
    }
    ids.into_values().collect()
}

/// What executors would have published for each 1-run chunk of `batch`.
fn chunk_results(
    workload: &Workload,
    batch: &NewBatch,
    chunks: i32,
    partitions: u16,
) -> Result<Vec<Message>> {
    let mut scratch = workload.scratch();
    let mut values = Vec::new();
    (0..chunks)
        .map(|chunk| {
            let mut summary = workload.empty_summary();
            values.clear();
            let run = chunk as u64;
            let seed = batch.seed as u64;
            workload.run_range(seed, run, 1, &mut scratch, &mut values, &mut summary);
            let msg = ResultMsg {
                v: VERSION,
                batch_id: batch.id,
                name: batch.name.clone(),
                chunk,
                chunks,
                runs_total: batch.runs,
                runs: 1,
                summary,
            };
            Ok(msg.to_message(partitions)?)
        })
        .collect()
}

/// Results still queued, over all partitions.
async fn queued(broker: &RabbitBroker, partitions: u16) -> Result<u64> {
    let mut depth = 0;
    for p in 0..partitions {
        depth += broker.queue_depth(Queue::Results(p)).await?;
    }
    Ok(depth)
}

async fn measure(scenario: &mut Scenario, spec: &DrainSpec) -> Result<DrainResult> {
    let DrainSpec {
        results,
        prefetch,
        timeout,
        quiet,
        ..
    } = *spec;
    let (store, broker) = (scenario.store()?.clone(), scenario.broker()?.clone());
    let partitions = store.partitions().await?;
    let (batches, fill_s) = prefill(&store, &broker, spec).await?;
    // Whole batches per partition: what was really published.
    let results = (results / i32::from(partitions)).max(1) * i32::from(partitions);

    let busy_before = quiet.wait().await;
    for i in 1..=spec.replicas {
        scenario.spawn(
            &format!("aggregator-{i}"),
            &[
                "aggregator".into(),
                "--commit-window".into(),
                prefetch.to_string(),
            ],
            "aggregator consuming",
        )?;
    }
    scenario.wait_ready(Duration::from_secs(60))?;
    let cpu_before = cpu::snapshot(&scenario.pids());
    let start = Instant::now();
    let mut left = batches;
    while !left.is_empty() {
        let mut open = Vec::new();
        for batch in left {
            if store.batch_result(batch).await?.is_none() {
                open.push(batch);
            }
        }
        left = open;
        if start.elapsed() > timeout {
            let queued = queued(&broker, partitions).await?;
            return Err(Error::Measure(format!(
                "{} aggregates not saved after {timeout:?}; {queued} results still queued",
                left.len()
            )));
        }
        scenario.check_alive()?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain_s = start.elapsed().as_secs_f64();
    let cpu = cpu_before.until(&cpu::snapshot(&scenario.pids()));
    Ok(DrainResult {
        results,
        prefetch,
        replicas: spec.replicas,
        partitions,
        fill_s,
        fill_msgs_per_s: f64::from(results) / fill_s.max(1e-9),
        drain_s,
        msgs_per_s: f64::from(results) / drain_s.max(1e-9),
        mean_window: 0.0,
        phases: BTreeMap::new(),
        events: BTreeMap::new(),
        peak_rss_mb: 0.0,
        busy_before,
        cpu,
        warnings: Vec::new(),
    })
}
