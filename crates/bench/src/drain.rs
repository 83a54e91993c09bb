//! Aggregator drain: a results queue pre-filled with the chunk results of
//! one `sum` batch of 1-run chunks, drained by a freshly started aggregator
//! (fsynced group commit before every ack) until the batch's aggregate is saved.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use broker::{Broker, Message, Queue, RabbitBroker};
use pipeline::messages::{ResultMsg, VERSION};
use serde::Serialize;
use store::{NewBatch, PgStore, Store, Uuid};
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
    /// Chunk results pre-filled (one 1-run chunk each).
    pub results: i32,
    /// The aggregator's prefetch: its group-commit window.
    pub prefetch: u16,
    pub seed: i64,
    pub timeout: Duration,
    pub quiet: Quiet,
}

pub async fn run(bench: &Bench, spec: &DrainSpec) -> Result<DrainResult> {
    let measured = bench.in_scenario("aggregator-drain", async |s| measure(s, spec).await);
    let (mut result, stages) = measured.await?;
    let results = spec.results;
    if let Some(agg) = stages.first() {
        result.phases = phase_lines(&agg.metrics, result.drain_s);
        result.events = agg.metrics.events.clone();
        result.peak_rss_mb = round1(agg.peak_rss_mb);
        result.warnings.clone_from(&agg.warnings);
        let windows = agg.metrics.phases.get("fsync").map_or(0, |p| p.count);
        result.mean_window = round1(f64::from(results) / windows.max(1) as f64);
    }
    Ok(result)
}

/// Creates one `sum` batch of 1-run chunks and publishes the result of
/// each chunk, as executors would have; its id and the publishing time.
async fn prefill(store: &PgStore, broker: &RabbitBroker, spec: &DrainSpec) -> Result<(Uuid, f64)> {
    let (results, seed) = (spec.results, spec.seed);
    let workload_spec = WorkloadSpec::Sum;
    let workload = Workload::new(&workload_spec)?;
    let batch = NewBatch {
        id: Uuid::new_v4(),
        name: "bench-aggregator-drain".into(),
        workload: serde_json::to_string(&workload_spec)?,
        seed,
        runs: i64::from(results),
        chunk_size: 1,
    };
    store.create_batches(std::slice::from_ref(&batch)).await?;
    let mut scratch = workload.scratch();
    let mut values = Vec::new();
    let messages: Vec<Message> = (0..results)
        .map(|chunk| {
            let mut summary = workload.empty_summary();
            values.clear();
            workload.run_range(
                seed as u64,
                chunk as u64,
                1,
                &mut scratch,
                &mut values,
                &mut summary,
            );
            let msg = ResultMsg {
                v: VERSION,
                batch_id: batch.id,
                name: batch.name.clone(),
                chunk,
                chunks: results,
                runs_total: batch.runs,
                runs: 1,
                summary,
            };
            msg.to_message()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    for slice in messages.chunks(PUBLISH_SLICE) {
        broker.publish(slice.to_vec()).await?;
    }
    let fill_s = start.elapsed().as_secs_f64();
    let depth = broker.queue_depth(Queue::Results).await?;
    if depth < results as u64 {
        return Err(Error::Measure(format!(
            "results queue holds {depth} messages, expected {results}"
        )));
    }
    Ok((batch.id, fill_s))
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
    let (batch, fill_s) = prefill(&store, &broker, spec).await?;

    let busy_before = quiet.wait().await;
    scenario.spawn(
        "aggregator",
        &[
            "aggregator".into(),
            "--commit-window".into(),
            prefetch.to_string(),
        ],
        "aggregator consuming",
    )?;
    scenario.wait_ready(Duration::from_secs(60))?;
    let cpu_before = cpu::snapshot(&scenario.pids());
    let start = Instant::now();
    loop {
        if store.batch_result(batch).await?.is_some() {
            break;
        }
        if start.elapsed() > timeout {
            let left = broker.queue_depth(Queue::Results).await?;
            return Err(Error::Measure(format!(
                "aggregate not saved after {timeout:?}; {left} results still queued"
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
