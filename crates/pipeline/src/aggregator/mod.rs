//! The aggregator stage (the stateful one): folds chunk results per batch
//! through the [`StatefulWorkerManager`], one CSV append log per batch.
//!
//! Each window of deliveries (what arrived together, up to the commit
//! window) is validated, appended, made durable with one group commit (one
//! fsync per touched file) and only then acked. A batch whose chunks are
//! all in is finalized after the acks: aggregate saved in the store
//! (idempotent), verify message published (confirmed), then the batch is
//! completed in the manager (tombstone, CSV deleted). On start the manager
//! rebuilds every batch from its CSV, and batches that were complete
//! before a crash are finalized again — each step of finalization is
//! idempotent (the crash table in `docs/architecture.md`).
//!
//! Layout: `settings` ([`AggregatorSettings`]), `state` (the row on disk
//! and the per-batch state), and here the [`Stage`].

mod settings;
mod state;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Queue};
use stateful_worker::{KeyedState, Processed, StatefulWorkerManager};
use store::Store;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

pub use settings::{AggregatorSettings, DEFAULT_COMMIT_WINDOW};
pub use state::{BatchState, ChunkRow};

use crate::common::{BatchCache, Lookup};
use crate::faults::{CrashPoint, Faults};
use crate::health::Health;
use crate::messages::{ResultMsg, VerifyMsg};
use crate::retry::retrying;
use crate::stage::{self, Handled, Inbound, Outcome, Shape, Stage};
use crate::telemetry::StageStats;
use crate::{Check, Error, Result};

type Manager = StatefulWorkerManager<BatchState>;

/// Runs the aggregator on the state in `dir` until `shutdown`: rebuild,
/// finalize what was complete before a crash, then consume.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    dir: PathBuf,
    settings: AggregatorSettings,
    stats: StageStats,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    let window = settings.commit_window();
    let faults = settings.faults.parse()?;
    let mgr = rebuild(&dir, &stats).await?;
    let aggregator = Arc::new(Aggregator {
        broker: broker.clone(),
        store,
        faults,
        stats: stats.clone(),
        cache: BatchCache::default(),
        shutdown: shutdown.clone(),
        mgr: Mutex::new(mgr),
    });
    let ready = aggregator.mgr.lock().await.ready_keys();
    for key in ready {
        tracing::info!(batch = %key, "batch was complete before the restart: finalizing again");
        aggregator.finalize(&key).await?;
    }
    let shape = Shape {
        prefetch: window,
        window: usize::from(window),
        in_flight: 1,
        ..Shape::sequential(window)
    };
    stage::run(broker, aggregator, shape, stats, health, shutdown).await
}

/// How long opening waits for an aggregator of this same process to let go
/// of the directory (see [`open`]).
const SAME_PROCESS_GRACE: Duration = Duration::from_secs(10);

/// Opens the state directory (taking its lock) and rebuilds every batch.
async fn rebuild(dir: &Path, stats: &StageStats) -> Result<Manager> {
    let start = Instant::now();
    let (mgr, report) = open(dir).await?;
    tracing::info!(dir = %dir.display(), ?report, elapsed_ms = start.elapsed().as_millis() as u64, "aggregator state rebuilt");
    stats.phase("rebuild", start.elapsed());
    stats.count("rows_rebuilt", report.rows);
    stats.count("corrupt_rows_quarantined", report.corrupt);
    stats.count("torn_tails_truncated", report.truncated);
    Ok(mgr)
}

/// Opens the manager. Another process holding the directory is an error at
/// once; this process holding it means an aggregator task that was just
/// aborted (the embedded mode's crash): its windows in flight drop the
/// manager a moment later, so wait for that.
async fn open(dir: &Path) -> Result<(Manager, stateful_worker::RebuildReport)> {
    let deadline = Instant::now() + SAME_PROCESS_GRACE;
    loop {
        match tokio::task::block_in_place(|| Manager::open(dir)) {
            Err(stateful_worker::Error::Locked { pid: Some(pid), .. })
                if pid == std::process::id() && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// The aggregator's domain steps; the loop around them is [`stage::run`].
struct Aggregator<B, S> {
    broker: B,
    store: S,
    faults: Faults,
    stats: StageStats,
    cache: BatchCache,
    shutdown: CancellationToken,
    /// One window at a time holds it; finalization too.
    mgr: Mutex<Manager>,
}

impl<B: Broker, S: Store> Stage for Aggregator<B, S> {
    type Msg = ResultMsg;
    /// The batches the window touched (to finalize those now complete).
    type Done = BTreeSet<String>;
    const QUEUE: Queue = Queue::Results;

    async fn handle(&self, window: Vec<Inbound<ResultMsg>>) -> Result<Handled<Self::Done>> {
        // Everything that needs the store first, so that a failure there
        // (requeue) leaves nothing appended.
        let mut checks = Vec::with_capacity(window.len());
        for inbound in &window {
            checks.push(self.validate(&inbound.msg).await?);
        }
        let start = Instant::now();
        let mut mgr = self.mgr.lock().await;
        let mut touched = BTreeSet::new();
        let mut outcomes = Vec::with_capacity(window.len());
        for (inbound, check) in window.into_iter().zip(checks) {
            match check {
                Check::Pass => {
                    let key = inbound.msg.batch_id.to_string();
                    if self.append(&mut mgr, &key, inbound.msg)? {
                        touched.insert(key);
                    }
                    outcomes.push(Outcome::Ack);
                }
                Check::Fail(reason) => outcomes.push(Outcome::DeadLetter(reason)),
            }
        }
        self.stats.phase("apply", start.elapsed());

        self.faults.maybe_crash(CrashPoint::BeforeFsync);
        let start = Instant::now();
        // Durable before acked: one fsync per touched file for the whole window.
        tokio::task::block_in_place(|| mgr.commit())?;
        self.stats.phase("fsync", start.elapsed());
        self.faults.maybe_crash(CrashPoint::AfterFsync);
        Ok(Handled {
            outcomes,
            done: touched,
        })
    }

    async fn after_ack(&self, touched: BTreeSet<String>) -> Result<()> {
        for key in touched {
            let ready = self
                .mgr
                .lock()
                .await
                .state(&key)
                .is_some_and(|s| s.is_ready());
            if ready {
                self.finalize(&key).await?;
            }
        }
        Ok(())
    }
}

impl<B: Broker, S: Store> Aggregator<B, S> {
    /// Appends one valid result under `key` (or the record of a dropped
    /// duplicate); `true` when it was applied, so its batch may be complete.
    fn append(&self, mgr: &mut Manager, key: &str, msg: ResultMsg) -> Result<bool> {
        let msg_id = msg.msg_id();
        let (batch, chunk) = (msg.batch_id, msg.chunk);
        let record = ChunkRow {
            duplicate: true,
            chunk,
            chunks: msg.chunks,
            runs_total: msg.runs_total,
            runs: 0,
            name: msg.name.clone(),
            summary: None,
        };
        let row = ChunkRow {
            duplicate: false,
            chunk,
            chunks: msg.chunks,
            runs_total: msg.runs_total,
            runs: msg.runs,
            name: msg.name,
            summary: Some(msg.summary),
        };
        match mgr.process(key, &msg_id, row)? {
            Processed::Applied => {
                self.stats.count("applied", 1);
                Ok(true)
            }
            Processed::Duplicate => {
                tracing::debug!(%batch, chunk, "duplicate chunk result dropped");
                self.stats.count("duplicates_dropped", 1);
                // Each dropped delivery gets its own record id: a duplicate
                // redelivered after a crash was dropped twice.
                mgr.process(key, &format!("dup-{}", Uuid::new_v4().simple()), record)?;
                Ok(false)
            }
            Processed::AlreadyCompleted => {
                tracing::debug!(%batch, chunk, "late duplicate for a finalized batch dropped");
                self.stats.count("late_duplicates_dropped", 1);
                Ok(false)
            }
        }
    }

    /// Checks a decoded result against its batch: what fails goes to the
    /// dead-letter queue with the reason.
    async fn validate(&self, msg: &ResultMsg) -> Result<Check> {
        let loaded = match retrying("load batch", &self.shutdown, || async {
            self.cache.get(&self.store, msg.batch_id).await
        })
        .await?
        {
            Lookup::Found(b) => b,
            Lookup::Unknown => return Ok(Check::Fail(format!("unknown batch {}", msg.batch_id))),
            Lookup::BadWorkload(e) => {
                return Ok(Check::Fail(format!("batch workload invalid: {e}")));
            }
        };
        let b = &loaded.batch;
        let (_, runs) = b.chunk_range(msg.chunk);
        Ok(Check::that(msg.chunk >= 0 && msg.chunk < b.chunks, || {
            format!("chunk {} out of range (batch has {})", msg.chunk, b.chunks)
        })
        .and_then(|| {
            let same = msg.chunks == b.chunks
                && msg.runs_total == b.runs
                && msg.runs == runs
                && msg.name == b.name;
            Check::that(same, || {
                format!(
                    "result does not match batch {}: chunks {}/{} runs_total {}/{} runs {}/{}",
                    msg.batch_id, msg.chunks, b.chunks, msg.runs_total, b.runs, msg.runs, runs
                )
            })
        })
        .and_then(|| {
            Check::that(msg.summary.runs() == runs as u64, || {
                format!(
                    "summary counts {} runs, chunk has {runs}",
                    msg.summary.runs()
                )
            })
        })
        .and_then(
            || match loaded.workload.empty_summary().merge(&msg.summary) {
                Ok(()) => Check::Pass,
                Err(e) => Check::Fail(format!("summary does not fit the batch's workload: {e}")),
            },
        ))
    }

    /// Saves the batch's aggregate, sends it to the verifier, tombstones it.
    async fn finalize(&self, key: &str) -> Result<()> {
        let batch_id: Uuid = key
            .parse()
            .map_err(|_| Error::Invalid(format!("state key {key} is not a batch id")))?;
        let (result, duplicates, name) = {
            let mgr = self.mgr.lock().await;
            let Some(state) = mgr.state(key) else {
                return Ok(());
            };
            let result = serde_json::to_string(&state.summary).map_err(|source| Error::Encode {
                what: "aggregate",
                source,
            })?;
            (result, state.duplicates_dropped, state.name.clone())
        };
        let span = tracing::info_span!("finalize", batch = %batch_id, name = %name);
        let start = Instant::now();
        async {
            retrying("save aggregate", &self.shutdown, || async {
                Ok(self
                    .store
                    .save_batch_result(batch_id, &result, duplicates as i64)
                    .await?)
            })
            .await?;
            self.faults.maybe_crash(CrashPoint::BeforeVerifyPublish);
            let verify = VerifyMsg::aggregated(batch_id).to_message()?;
            retrying("publish verify", &self.shutdown, || async {
                Ok(self.broker.publish(vec![verify.clone()]).await?)
            })
            .await?;
            self.faults.maybe_crash(CrashPoint::BeforeTombstone);
            let mut mgr = self.mgr.lock().await;
            tokio::task::block_in_place(|| mgr.complete(key))?;
            tracing::info!(duplicates, "batch aggregated");
            Ok::<(), Error>(())
        }
        .instrument(span)
        .await?;
        self.stats.phase("finalize", start.elapsed());
        self.stats.count("batches_finalized", 1);
        Ok(())
    }
}
