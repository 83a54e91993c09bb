//! The embedded mode: the whole pipeline in one process, with the
//! in-process broker and SQLite, and the aggregator's state in real CSV
//! files. The stages are the same code as in the distributed mode; only
//! this wiring differs.
//!
//! The scenario shows what batchline is for: it submits a few batches,
//! crashes the aggregator mid-way (its task is aborted: every bit of its
//! in-memory state is gone, its files stay), injects duplicate deliveries
//! while it is down, restarts it so it rebuilds from the CSVs, and waits
//! for every batch's verdict. It tells that story as it goes, in a few
//! plain lines ([`run`]'s `story`), so a newcomer reads what happened
//! without reading logs; the stages' own logs are there on request.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use store::prelude::*;

use broker::{Broker, MemoryBroker, MemoryConfig};
use store::{SqliteStore, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workload::WorkloadSpec;

use crate::aggregator::{self, AggregatorSettings};
use crate::executor::{self, ExecutorSettings};
use crate::health::Health;
use crate::messages::stored_result;
use crate::submit::{SubmitRequest, submit};
use crate::sweeper::SweeperSettings;
use crate::telemetry::StageStats;
use crate::verifier::{self, LineSink, VerifierSettings};
use crate::{Error, Result};

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Where the demo keeps its SQLite file and aggregator CSVs (wiped first).
    pub dir: PathBuf,
    pub batches: usize,
    pub runs: i64,
    pub chunk_size: i32,
    pub workload: WorkloadSpec,
    /// Chunks simulated at once.
    pub concurrency: usize,
    /// Duplicate result deliveries injected while the aggregator is down.
    pub duplicates: usize,
    /// Give up after this long.
    pub timeout: Duration,
}

/// What happened, for the summary table.
#[derive(Clone, Debug, Default)]
pub struct DemoReport {
    pub lines: Vec<String>,
    pub batches: usize,
    pub succeeded: usize,
    pub runs: i64,
    pub elapsed: Duration,
    /// Chunk results the aggregator had applied when it was crashed.
    pub applied_before_crash: u64,
    pub rows_rebuilt: u64,
    pub duplicates_injected: usize,
    pub duplicates_dropped: u64,
}

impl DemoReport {
    pub fn runs_per_s(&self) -> f64 {
        self.runs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// True when every batch got SUCCESS.
    pub fn all_succeeded(&self) -> bool {
        self.batches > 0 && self.succeeded == self.batches
    }
}

/// The last lines of the story: what the restarted aggregator did, and
/// the outcome.
impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: u64, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        writeln!(
            f,
            "the restarted aggregator rebuilt {} from its CSV files and dropped {}",
            plural(self.rows_rebuilt, "row", "rows"),
            plural(
                self.duplicates_dropped,
                "duplicate delivery",
                "duplicate deliveries"
            )
        )?;
        write!(
            f,
            "{} of {} batches SUCCESS: {} runs in {:.2} s ({:.0} runs/s)",
            self.succeeded,
            self.batches,
            self.runs,
            self.elapsed.as_secs_f64(),
            self.runs_per_s()
        )
    }
}

/// The demo's pipeline: one broker, one store, the stages as tasks.
struct Pipeline {
    broker: MemoryBroker,
    store: SqliteStore,
    shutdown: CancellationToken,
    state_dir: PathBuf,
    /// Every verdict line printed so far.
    lines: Arc<Mutex<Vec<String>>>,
    tasks: Vec<JoinHandle<Result<()>>>,
}

/// Runs the demo; verdict lines go to `sink` as they come, and the story
/// of what the demo does to the pipeline to `story`, one line per step.
pub async fn run(cfg: DemoConfig, sink: LineSink, story: LineSink) -> Result<DemoReport> {
    let tell =
        |line: String| story(&line).map_err(|e| Error::io("cannot write the demo's story", e));
    let mut p = Pipeline::start(&cfg, sink).await?;
    let start = Instant::now();
    let submitted = submit(
        &p.broker,
        &p.store,
        &SubmitRequest {
            name: Some("demo".into()),
            runs: cfg.runs,
            chunk_size: cfg.chunk_size,
            seed: Some(20_261_123),
            workload: cfg.workload.clone(),
            count: cfg.batches,
            share: Default::default(),
        },
    )
    .await?;
    let ids: Vec<_> = submitted.batches.iter().map(|b| b.id).collect();
    let total_chunks: u64 = submitted.batches.iter().map(|b| b.chunks() as u64).sum();
    tell(format!(
        "submitted {} batches: {} chunks of up to {} runs",
        ids.len(),
        total_chunks,
        cfg.chunk_size
    ))?;

    // Crash the aggregator once about a third of the chunk results are in.
    let first_stats = StageStats::new("aggregator");
    let first = p.aggregator(&first_stats);
    let crash_at = (total_chunks / 3).max(1);
    while first_stats.total("applied") < crash_at && !first.is_finished() {
        if start.elapsed() > cfg.timeout {
            return Err(Error::TimedOut(
                "the demo before the aggregator crash".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    first.abort();
    let _ = first.await;
    let applied_before_crash = first_stats.total("applied");
    tell(format!(
        "crashed the aggregator after it applied {applied_before_crash} chunk results: its memory is gone, its CSV files stay"
    ))?;
    let duplicates_injected = p.inject_duplicates(&ids, cfg.duplicates).await?;
    tell(format!(
        "delivered {duplicates_injected} chunk results a second time while it was down; restarted it"
    ))?;
    let second_stats = StageStats::new("aggregator");
    let second = p.aggregator(&second_stats);
    p.tasks.push(second);

    let succeeded = p.wait_verdicts(&ids, start, cfg.timeout).await?;
    let elapsed = start.elapsed();
    let lines = p.stop().await;
    Ok(DemoReport {
        lines,
        batches: ids.len(),
        succeeded,
        runs: submitted.batches.iter().map(|b| b.runs).sum(),
        elapsed,
        applied_before_crash,
        rows_rebuilt: second_stats.total("rows_rebuilt"),
        duplicates_injected,
        duplicates_dropped: first_stats.total("duplicates_dropped")
            + second_stats.total("duplicates_dropped")
            + second_stats.total("late_duplicates_dropped"),
    })
}

impl Pipeline {
    /// A fresh state directory, SQLite store and in-process broker, with the
    /// executor and the verifier running (the aggregator comes and goes).
    async fn start(cfg: &DemoConfig, sink: LineSink) -> Result<Pipeline> {
        let io = |what: &str, e| Error::io(format!("{what} {}", cfg.dir.display()), e);
        if cfg.dir.exists() {
            std::fs::remove_dir_all(&cfg.dir).map_err(|e| io("cannot clear", e))?;
        }
        std::fs::create_dir_all(&cfg.dir).map_err(|e| io("cannot create", e))?;
        let store = SqliteStore::open(cfg.dir.join("batchline.db")).await?;
        store.migrate().await?;
        let broker = MemoryBroker::new(MemoryConfig {
            retry_delay: Duration::from_millis(200),
            delivery_limit: 20,
        });
        let shutdown = CancellationToken::new();
        let executor = ExecutorSettings {
            worker_id: Some("demo-executor".into()),
            concurrency: Some(cfg.concurrency.max(1)),
            chunks_in_flight: Some(u16::try_from(cfg.concurrency.max(1)).unwrap_or(u16::MAX)),
            sweeper: SweeperSettings {
                sweep_interval_s: 1,
                stall_deadline_s: 3,
                ..SweeperSettings::default()
            },
            ..ExecutorSettings::default()
        };
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let collecting: LineSink = {
            let lines = lines.clone();
            Arc::new(move |line: &str| {
                sink(line)?;
                if let Ok(mut l) = lines.lock() {
                    l.push(line.to_string());
                }
                Ok(())
            })
        };
        let tasks = vec![
            tokio::spawn(executor::run(
                broker.clone(),
                store.clone(),
                executor,
                StageStats::new("executor"),
                Health::new(),
                shutdown.clone(),
            )),
            tokio::spawn(verifier::run(
                broker.clone(),
                store.clone(),
                VerifierSettings::default(),
                collecting,
                StageStats::new("verifier"),
                Health::new(),
                shutdown.clone(),
            )),
        ];
        Ok(Pipeline {
            broker,
            store,
            shutdown,
            state_dir: cfg.dir.join("aggregator"),
            lines,
            tasks,
        })
    }

    fn aggregator(&self, stats: &StageStats) -> JoinHandle<Result<()>> {
        let settings = AggregatorSettings {
            commit_window: Some(64),
            ..AggregatorSettings::default()
        };
        tokio::spawn(aggregator::run(
            self.broker.clone(),
            self.store.clone(),
            self.state_dir.clone(),
            settings,
            stats.clone(),
            Health::new(),
            self.shutdown.child_token(),
        ))
    }

    /// Delivers up to `n` chunk results a second time. Prefers batches still
    /// being aggregated: their duplicates are dropped by msg_id from the
    /// rebuilt state, not just by the tombstone.
    async fn inject_duplicates(&self, ids: &[Uuid], n: usize) -> Result<usize> {
        let mut order = Vec::new();
        for id in ids {
            let aggregated = self.store.batch_result(*id).await?.is_some();
            order.push((aggregated, *id));
        }
        order.sort_by_key(|(aggregated, _)| *aggregated);
        let mut duplicates = Vec::new();
        for (_, id) in &order {
            for (chunk, json) in self.store.chunk_results(*id).await? {
                if duplicates.len() >= n {
                    break;
                }
                let partitions = self.store.partitions().await?;
                duplicates.push(stored_result(*id, chunk, json, partitions));
            }
        }
        let injected = duplicates.len();
        self.broker.publish(duplicates).await?;
        Ok(injected)
    }

    /// Waits for every batch's verdict (and line); how many succeeded.
    async fn wait_verdicts(
        &self,
        ids: &[Uuid],
        start: Instant,
        timeout: Duration,
    ) -> Result<usize> {
        loop {
            let verdicts = self.store.progress(None, ids.len() as i64 + 10).await?;
            let done: Vec<_> = verdicts
                .iter()
                .filter(|p| ids.contains(&p.id) && p.verdict.is_some())
                .collect();
            let printed = self.lines.lock().map(|l| l.len()).unwrap_or(0);
            if done.len() == ids.len() && printed >= ids.len() {
                return Ok(done.iter().filter(|p| p.verdict == Some(true)).count());
            }
            if start.elapsed() > timeout {
                self.shutdown.cancel();
                return Err(Error::TimedOut(format!(
                    "the demo after {:.0}s with {}/{} verdicts",
                    timeout.as_secs_f64(),
                    done.len(),
                    ids.len()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops every stage; the verdict lines printed.
    async fn stop(self) -> Vec<String> {
        self.shutdown.cancel();
        for task in self.tasks {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "demo stage stopped with an error"
                ),
                Err(e) => tracing::warn!(error = %e, "demo stage task failed"),
            }
        }
        self.store.close().await;
        self.lines.lock().map(|l| l.clone()).unwrap_or_default()
    }
}
