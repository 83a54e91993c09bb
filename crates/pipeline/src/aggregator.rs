//! The aggregator stage (the stateful one): folds chunk results per batch
//! through the [`StatefulWorkerManager`], one CSV append log per batch.
//!
//! Each window of deliveries (what arrived together, up to the prefetch) is
//! validated, appended, made durable with one group commit (one fsync per
//! touched file) and only then acked. A batch whose chunks are all in is
//! finalized: aggregate saved in the store (idempotent), verify message
//! published (confirmed), then the batch is completed in the manager
//! (tombstone, CSV deleted). On start the manager rebuilds every batch from
//! its CSV, and batches that were complete before a crash are finalized
//! again — each step of finalization is idempotent.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use broker::{Broker, Consumer, Delivery, Message, Queue};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use stateful_worker::{KeyedState, Processed, StatefulWorkerManager};
use store::Store;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;
use workload::Summary;

use crate::common::{BatchCache, Lookup, dead_letter};
use crate::faults::{CrashPoint, Faults};
use crate::messages::{ResultMsg, VerifyMsg, decode, encode};
use crate::retry::retrying;
use crate::telemetry::StageStats;
use crate::{Error, Result};

/// One row of a batch's state file: a chunk result, or the record that a
/// duplicate delivery of chunk `chunk` was dropped. Duplicates are recorded
/// (and fsynced with the window) so `duplicates_dropped` survives restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkRow {
    /// `true` for a dropped-duplicate record (no summary).
    pub duplicate: bool,
    pub chunk: i32,
    pub chunks: i32,
    pub runs_total: i64,
    pub runs: i64,
    pub name: String,
    /// The chunk's [`Summary`] as JSON.
    pub summary: String,
}

/// The per-batch state: which chunks are in and their merged summary.
#[derive(Debug, Default)]
pub struct BatchState {
    pub name: String,
    pub chunks_total: i32,
    pub runs_total: i64,
    pub runs: i64,
    pub chunks_seen: BTreeSet<i32>,
    pub summary: Option<Summary>,
    /// Duplicate deliveries dropped for this batch, across restarts.
    pub duplicates_dropped: u64,
    /// Rows that could not be folded (should never happen: rows are
    /// validated before they are appended). A batch with such rows is never
    /// ready, so the sweeper's re-publish or FAILURE path takes over.
    pub unfoldable: u64,
}

impl KeyedState for BatchState {
    type Row = ChunkRow;

    fn apply(&mut self, row: &ChunkRow) {
        if row.duplicate {
            self.duplicates_dropped += 1;
            return;
        }
        if !self.chunks_seen.insert(row.chunk) {
            return;
        }
        self.name.clone_from(&row.name);
        self.chunks_total = row.chunks;
        self.runs_total = row.runs_total;
        self.runs += row.runs;
        let folded = serde_json::from_str::<Summary>(&row.summary)
            .map_err(|e| e.to_string())
            .and_then(|s| match &mut self.summary {
                None => {
                    self.summary = Some(s);
                    Ok(())
                }
                Some(acc) => acc.merge(&s).map_err(|e| e.to_string()),
            });
        if let Err(e) = folded {
            tracing::error!(chunk = row.chunk, error = %e, "state row could not be folded");
            self.chunks_seen.remove(&row.chunk);
            self.runs -= row.runs;
            self.unfoldable += 1;
        }
    }

    fn is_ready(&self) -> bool {
        self.chunks_total > 0
            && self.unfoldable == 0
            && self.chunks_seen.len() == self.chunks_total as usize
            && self.runs == self.runs_total
    }
}

/// Aggregator settings.
#[derive(Clone, Debug)]
pub struct AggregatorConfig {
    /// The state directory (`worker-data/aggregator`).
    pub data_dir: PathBuf,
    /// Unacked result messages held at once: the group-commit window.
    pub prefetch: u16,
    pub faults: Faults,
}

/// Runs the aggregator until `shutdown`: rebuild, re-finalize, then consume.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    cfg: AggregatorConfig,
    stats: StageStats,
    shutdown: CancellationToken,
) -> Result<()> {
    let start = Instant::now();
    let dir = cfg.data_dir.clone();
    let (mut mgr, report) =
        tokio::task::block_in_place(|| StatefulWorkerManager::<BatchState>::open(&dir))?;
    tracing::info!(dir = %cfg.data_dir.display(), ?report, elapsed_ms = start.elapsed().as_millis() as u64, "aggregator state rebuilt");
    stats.phase("rebuild", start.elapsed());
    stats.count("rows_rebuilt", report.rows);
    stats.count("corrupt_rows_quarantined", report.corrupt);
    stats.count("torn_tails_truncated", report.truncated);

    let mut agg = Aggregator {
        broker,
        store,
        cfg,
        stats: stats.clone(),
        cache: BatchCache::default(),
        shutdown: shutdown.clone(),
    };
    for key in mgr.ready_keys() {
        tracing::info!(batch = %key, "batch was complete before the restart: finalizing again");
        agg.finalize(&mut mgr, &key).await?;
    }

    let mut consumer = retrying("consume results queue", &shutdown, || async {
        Ok(agg
            .broker
            .consume(Queue::Results, agg.cfg.prefetch.max(1))
            .await?)
    })
    .await?;
    let reporter = tokio::spawn(
        stats
            .clone()
            .report_every(Duration::from_secs(10), shutdown.clone()),
    );
    tracing::info!(prefetch = agg.cfg.prefetch, "aggregator consuming");

    let outcome = loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => break Ok(()),
            d = consumer.next() => d,
        };
        let mut window = match first {
            Ok(d) => vec![d],
            Err(e) => break Err(e.into()),
        };
        // Take whatever else already arrived: one fsync for all of it.
        while window.len() < usize::from(agg.cfg.prefetch.max(1)) {
            match consumer.next().now_or_never() {
                Some(Ok(d)) => window.push(d),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error while filling the window");
                    break;
                }
                None => break,
            }
        }
        match agg.handle_window(&mut mgr, &mut consumer, window).await {
            Ok(()) => {}
            Err(Error::Shutdown) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    reporter.abort();
    // Everything appended was committed before its ack; nothing is pending.
    tracing::info!("aggregator stopped");
    outcome
}

struct Aggregator<B, S> {
    broker: B,
    store: S,
    cfg: AggregatorConfig,
    stats: StageStats,
    cache: BatchCache,
    shutdown: CancellationToken,
}

impl<B: Broker, S: Store> Aggregator<B, S> {
    async fn handle_window<C: Consumer>(
        &mut self,
        mgr: &mut StatefulWorkerManager<BatchState>,
        consumer: &mut C,
        window: Vec<Delivery>,
    ) -> Result<()> {
        self.stats.count("received", window.len() as u64);
        let mut touched = HashSet::new();
        let mut poison = Vec::new();
        let start = Instant::now();
        for delivery in &window {
            let msg = match decode::<ResultMsg>(&delivery.payload) {
                Ok(m) => m,
                Err(e) => {
                    poison.push((delivery, e.to_string()));
                    continue;
                }
            };
            if let Err(reason) = self.validate(&msg).await? {
                poison.push((delivery, reason));
                continue;
            }
            let key = msg.batch_id.to_string();
            let row = ChunkRow {
                duplicate: false,
                chunk: msg.chunk,
                chunks: msg.chunks,
                runs_total: msg.runs_total,
                runs: msg.runs,
                name: msg.name.clone(),
                summary: serde_json::to_string(&msg.summary).unwrap_or_default(),
            };
            match mgr.process(&key, &msg.msg_id(), row)? {
                Processed::Applied => {
                    touched.insert(key);
                    self.stats.count("applied", 1);
                }
                Processed::Duplicate => {
                    tracing::debug!(batch = %msg.batch_id, chunk = msg.chunk, "duplicate chunk result dropped");
                    self.stats.count("duplicates_dropped", 1);
                    // Each dropped delivery gets its own record id: a
                    // duplicate redelivered after a crash was dropped twice.
                    let record = ChunkRow {
                        duplicate: true,
                        chunk: msg.chunk,
                        chunks: msg.chunks,
                        runs_total: msg.runs_total,
                        runs: 0,
                        name: msg.name.clone(),
                        summary: String::new(),
                    };
                    mgr.process(&key, &format!("dup-{}", Uuid::new_v4().simple()), record)?;
                }
                Processed::AlreadyCompleted => {
                    tracing::debug!(batch = %msg.batch_id, chunk = msg.chunk, "late duplicate for a finalized batch dropped");
                    self.stats.count("late_duplicates_dropped", 1);
                }
            }
        }
        self.stats.phase("apply", start.elapsed());

        self.cfg.faults.maybe_crash(CrashPoint::BeforeFsync);
        let start = Instant::now();
        // Durable before acked: one fsync per touched file for the whole window.
        tokio::task::block_in_place(|| mgr.commit())?;
        self.stats.phase("fsync", start.elapsed());
        self.cfg.faults.maybe_crash(CrashPoint::AfterFsync);

        for (delivery, reason) in &poison {
            retrying("dead-letter", &self.shutdown, || async {
                dead_letter(&self.broker, Queue::Results, delivery, reason).await
            })
            .await?;
            self.stats.count("dead_lettered", 1);
        }

        let start = Instant::now();
        // One `multiple` ack per connection generation in the window.
        let mut last_by_generation = BTreeMap::new();
        for d in &window {
            let e = last_by_generation.entry(d.tag.generation).or_insert(d.tag);
            *e = (*e).max(d.tag);
        }
        for tag in last_by_generation.into_values() {
            if let Err(e) = consumer.ack(tag, true).await {
                tracing::warn!(error = %e, "ack failed; the window will be redelivered and deduplicated");
            }
        }
        self.stats.phase("ack", start.elapsed());
        self.stats.count("acked", window.len() as u64);

        for key in touched {
            if mgr.state(&key).is_some_and(|s| s.is_ready()) {
                self.finalize(mgr, &key).await?;
            }
        }
        Ok(())
    }

    /// Checks a decoded result against its batch; `Ok(Err(reason))` means
    /// the message is invalid and goes to the dead-letter queue.
    async fn validate(&self, msg: &ResultMsg) -> Result<std::result::Result<(), String>> {
        let loaded = match retrying("load batch", &self.shutdown, || async {
            self.cache.get(&self.store, msg.batch_id).await
        })
        .await?
        {
            Lookup::Found(b) => b,
            Lookup::Unknown => return Ok(Err(format!("unknown batch {}", msg.batch_id))),
            Lookup::BadWorkload(e) => return Ok(Err(format!("batch workload invalid: {e}"))),
        };
        let b = &loaded.batch;
        if msg.chunk < 0 || msg.chunk >= b.chunks {
            return Ok(Err(format!(
                "chunk {} out of range (batch has {})",
                msg.chunk, b.chunks
            )));
        }
        let (_, runs) = b.chunk_range(msg.chunk);
        if msg.chunks != b.chunks
            || msg.runs_total != b.runs
            || msg.runs != runs
            || msg.name != b.name
        {
            return Ok(Err(format!(
                "result does not match batch {}: chunks {}/{} runs_total {}/{} runs {}/{}",
                msg.batch_id, msg.chunks, b.chunks, msg.runs_total, b.runs, msg.runs, runs
            )));
        }
        if msg.summary.runs() != runs as u64 {
            return Ok(Err(format!(
                "summary counts {} runs, chunk has {runs}",
                msg.summary.runs()
            )));
        }
        let mut probe = loaded.workload.empty_summary();
        if let Err(e) = probe.merge(&msg.summary) {
            return Ok(Err(format!(
                "summary does not fit the batch's workload: {e}"
            )));
        }
        Ok(Ok(()))
    }

    async fn finalize(
        &mut self,
        mgr: &mut StatefulWorkerManager<BatchState>,
        key: &str,
    ) -> Result<()> {
        let Some(state) = mgr.state(key) else {
            return Ok(());
        };
        let batch_id: Uuid = key
            .parse()
            .map_err(|_| Error::Invalid(format!("state key {key} is not a batch id")))?;
        let result = serde_json::to_string(&state.summary).unwrap_or_default();
        let duplicates = state.duplicates_dropped;
        let span = tracing::info_span!("finalize", batch = %batch_id, name = %state.name);
        let start = Instant::now();
        async {
            retrying("save aggregate", &self.shutdown, || async {
                Ok(self
                    .store
                    .save_batch_result(batch_id, &result, duplicates as i64)
                    .await?)
            })
            .await?;
            self.cfg.faults.maybe_crash(CrashPoint::BeforeVerifyPublish);
            let verify = VerifyMsg::aggregated(batch_id, duplicates);
            let msg = Message::new(Queue::Verify, verify.msg_id(), encode(&verify));
            retrying("publish verify", &self.shutdown, || async {
                Ok(self.broker.publish(vec![msg.clone()]).await?)
            })
            .await?;
            self.cfg.faults.maybe_crash(CrashPoint::BeforeTombstone);
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
