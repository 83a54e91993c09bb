//! Becoming a partition's owner, and ceasing to be one.
//!
//! Taking over: a new epoch in the store (every effect of an earlier owner
//! is fenced from then on), the partition's directory opened under its lock
//! (its CSVs, if this replica has them, rebuilt), then the store's
//! changelog merged in — the stored results of the completed chunks of the
//! partition's open batches — so that what an earlier owner received and
//! acked is not lost with its disk; batches aggregated or purged meanwhile
//! are tombstoned, and batches complete now are finalized.
//!
//! Letting go: the epoch is released with the cause (if it is still ours),
//! the queue's next consumer nudged, and the directory closed, so that
//! another replica on the same volume can open it.

use std::path::Path;
use std::time::{Duration, Instant};

use broker::Broker;
use stateful_worker::{Processed, RebuildReport};
use store::Store;

use super::Manager;
use super::partition::{Owned, Partition};
use super::state::ChunkRow;
use crate::messages::{ResultMsg, decode, nudge, result_msg_id};
use crate::retry::retrying;
use crate::{Error, Result};
use uuid::Uuid;

/// How long opening a partition's directory waits for its lock: the
/// previous owner on the same volume (another process, or this one's loop
/// before) may still be letting go of it.
const LOCK_PATIENCE: Duration = Duration::from_secs(10);

/// Longest the nudge after a hand-over may wait for its confirm.
const NUDGE_PATIENCE: Duration = Duration::from_secs(2);

impl<B: Broker, S: Store> Partition<B, S> {
    /// Takes the partition: new epoch, state rebuilt from the directory and
    /// the changelog, complete batches finalized.
    pub(super) async fn take_over(&self) -> Result<TakeOver> {
        let start = Instant::now();
        let store = &self.replica.store;
        let (p, replica) = (self.p, self.replica.id.as_str());
        let fence = retrying("take the partition", &self.abort, || async {
            Ok(store.take_partition(p, replica).await?)
        })
        .await?;
        let dir = self.dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let Some((mgr, report)) = open(&dir).await? else {
            tracing::warn!(partition = p, dir = %dir.display(), "partition directory locked by another process; letting go");
            let _ = store.release_partition(fence, "locked").await;
            return Ok(TakeOver::Locked);
        };
        let mut owned = Owned { fence, mgr };
        // A result is acked only once it is durable with an owner, so
        // before the first epoch every result is still queued: the
        // changelog is for what an earlier owner acked.
        let merged = if fence.epoch > 1 {
            let merging = Instant::now();
            let merged = self.merge_changelog(&mut owned.mgr).await?;
            self.replica.stats.phase("changelog", merging.elapsed());
            merged
        } else {
            0
        };
        let ready = owned.mgr.ready_keys();
        for key in &ready {
            if !self.finalize(&mut owned, key).await? {
                return Ok(TakeOver::Fenced);
            }
        }
        let stats = &self.replica.stats;
        stats.phase("rebuild", start.elapsed());
        stats.count("rows_rebuilt", report.rows);
        stats.count("corrupt_rows_quarantined", report.corrupt);
        stats.count("torn_tails_truncated", report.truncated);
        stats.count("partitions_taken", 1);
        stats.count("changelog_results_merged", merged);
        tracing::info!(
            partition = p,
            epoch = fence.epoch,
            rows_from_files = report.rows,
            results_from_store = merged,
            finalized = ready.len(),
            elapsed_ms = start.elapsed().as_millis() as u64,
            "partition taken"
        );
        Ok(TakeOver::Taken(Box::new(owned)))
    }

    /// Folds into the state the changelog's chunks it lacks (not counted
    /// as duplicate deliveries: they are not deliveries), and tombstones
    /// batches aggregated meanwhile. Returns how many results it added.
    async fn merge_changelog(&self, mgr: &mut Manager) -> Result<u64> {
        let store = &self.replica.store;
        let p = self.p;
        let changelog = retrying("read the partition's changelog", &self.abort, || async {
            Ok(store.partition_changelog(p).await?)
        })
        .await?;
        let mut added = 0;
        for (batch, chunk, json) in changelog {
            if fold_stored(mgr, batch, chunk, &json)? {
                added += 1;
            }
        }
        for key in mgr.keys() {
            if let Ok(batch) = key.parse()
                && self.is_finished(batch).await?
            {
                tokio::task::block_in_place(|| mgr.complete(&key))?;
            }
        }
        tokio::task::block_in_place(|| mgr.commit())?;
        Ok(added)
    }

    /// Releases the partition (if this replica still owns it), saying why,
    /// and closes its directory.
    pub(super) async fn let_go(&self, cause: &'static str) {
        let Some(owned) = self.owned.lock().await.take() else {
            return;
        };
        self.control.set_epoch(0);
        let fence = owned.fence;
        // Closing the manager closes its files and its directory lock, for
        // a next owner on the same volume.
        drop(owned);
        let store = &self.replica.store;
        match store.release_partition(fence, cause).await {
            Ok(true) => {
                self.replica.stats.count("partitions_released", 1);
                tracing::info!(partition = self.p, cause, "partition released");
                self.nudge_next_owner().await;
            }
            Ok(false) => tracing::info!(
                partition = self.p,
                "partition already taken by another replica"
            ),
            // The next owner records a fail-over instead of the cause.
            Err(e) => tracing::warn!(
                partition = self.p,
                error = &e as &dyn std::error::Error,
                "could not record the hand-over"
            ),
        }
    }

    /// The queue's next consumer is active already (this one's consumer is
    /// cancelled); a nudge makes it take the partition now rather than at
    /// its next result. Best effort: coordinators nudge partitions without
    /// an owner too.
    async fn nudge_next_owner(&self) {
        let sent = match nudge(self.p, &self.replica.id) {
            // Bounded: a broker that does not answer must not hold the
            // partition's loop (the coordinators nudge it later anyway).
            Ok(msg) => tokio::time::timeout(NUDGE_PATIENCE, self.replica.broker.publish(vec![msg]))
                .await
                .unwrap_or_else(|_| Err(broker::Error::NotConfirmed("nudge timed out".into())))
                .map_err(Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::warn!(
                partition = self.p,
                error = &e as &dyn std::error::Error,
                "could not nudge the next owner"
            );
        }
    }
}

/// Folds a completed chunk's stored result into the batch's state unless
/// it has the chunk; `true` when it was added. A result that does not
/// decode is logged and skipped (the sweeper's stalled-batch path reports
/// the batch).
pub(super) fn fold_stored(mgr: &mut Manager, batch: Uuid, chunk: i32, json: &str) -> Result<bool> {
    let msg: ResultMsg = match decode(json.as_bytes()) {
        Ok(msg) => msg,
        Err(e) => {
            tracing::error!(%batch, chunk, error = %e, "stored chunk result unreadable");
            return Ok(false);
        }
    };
    let key = batch.to_string();
    if mgr
        .state(&key)
        .is_some_and(|s| s.chunks_seen.contains(&chunk))
    {
        return Ok(false);
    }
    // Its own row id, not the delivery's: the delivery may still be
    // queued, and when it comes it is no duplicate (the state ignores the
    // chunk it has; `duplicates_dropped` stays true).
    let row_id = format!("store-{}", result_msg_id(batch, chunk));
    Ok(mgr.process(&key, &row_id, ChunkRow::from(msg))? == Processed::Applied)
}

/// What taking a partition came to.
pub(super) enum TakeOver {
    Taken(Box<Owned>),
    /// Another replica took it again while this one was rebuilding.
    Fenced,
    /// Its directory stayed locked by another process (a frozen previous
    /// owner on the same volume): released again, for another replica.
    Locked,
}

/// Opens a partition's directory, waiting up to [`LOCK_PATIENCE`] for its
/// lock (the previous owner on the same volume may still be letting go);
/// `None` when it stays locked.
async fn open(dir: &Path) -> Result<Option<(Manager, RebuildReport)>> {
    let deadline = Instant::now() + LOCK_PATIENCE;
    loop {
        match tokio::task::block_in_place(|| Manager::open(dir)) {
            Err(stateful_worker::Error::Locked { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(stateful_worker::Error::Locked { .. }) => return Ok(None),
            other => return Ok(Some(other?)),
        }
    }
}
