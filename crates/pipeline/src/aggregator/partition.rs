//! One partition of the aggregator, as a [`Stage`]: the windows of its
//! results queue are folded into the partition's state, which exists only
//! while this replica owns the partition (`takeover`). Every effect outside
//! the replica's disk — an aggregate saved — is made under the owner's
//! epoch; a replica that finds itself fenced drops the state and lets go of
//! the queue.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex as SyncMutex};
use std::time::Instant;

use broker::{Broker, Queue};
use stateful_worker::{KeyedState, Processed};
use store::{Fence, Saved, Store};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::state::ChunkRow;
use super::takeover::{TakeOver, fold_stored};
use super::{Manager, Replica};
use crate::common::Lookup;
use crate::faults::CrashPoint;
use crate::messages::{ResultMsg, VerifyMsg, is_nudge};
use crate::retry::retrying;
use crate::stage::{Handled, Inbound, Outcome, Stage, Stopping};
use crate::{Check, Error, Result};

/// How the coordinator and the partition itself stop a partition's
/// current loop, and why (the cause is recorded with the hand-over).
#[derive(Debug, Default)]
pub(super) struct LoopControl {
    stop: SyncMutex<Option<Stopping>>,
    cause: SyncMutex<Option<&'static str>>,
    /// The partition's queue was subscribed at least once.
    subscribed: std::sync::atomic::AtomicBool,
    /// The epoch this replica holds the partition under; 0 when it does
    /// not hold it.
    epoch: std::sync::atomic::AtomicI64,
}

impl LoopControl {
    /// A new loop runs until `stopping` fires.
    pub(super) fn started(&self, stopping: &Stopping) {
        *lock(&self.stop) = Some(stopping.clone());
        *lock(&self.cause) = None;
    }

    /// Asks the current loop to let go, for `cause`: gracefully (what is
    /// on its way is folded and acked).
    pub(super) fn let_go(&self, cause: &'static str) {
        lock(&self.cause).get_or_insert(cause);
        if let Some(stopping) = lock(&self.stop).as_ref() {
            stopping.stop.cancel();
        }
    }

    /// Another replica owns the partition: the current loop lets go at
    /// once, whatever it waits on (its retries end, the loop is abandoned),
    /// so that its state and directory lock go now — never after a broker
    /// that does not answer.
    pub(super) fn drop_now(&self, cause: &'static str) {
        lock(&self.cause).get_or_insert(cause);
        if let Some(stopping) = lock(&self.stop).as_ref() {
            stopping.stop.cancel();
            stopping.abort.cancel();
        }
    }

    pub(super) fn take_cause(&self) -> Option<&'static str> {
        lock(&self.cause).take()
    }

    /// Records the epoch the partition is held under (0: not held).
    pub(super) fn set_epoch(&self, epoch: i64) {
        self.epoch
            .store(epoch, std::sync::atomic::Ordering::Relaxed);
    }

    /// The epoch the partition is held under, if it is.
    pub(super) fn epoch(&self) -> Option<i64> {
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Relaxed);
        (epoch > 0).then_some(epoch)
    }

    pub(super) fn subscribed(&self) -> bool {
        self.subscribed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn lock<T>(m: &SyncMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The partition while this replica owns it.
pub(super) struct Owned {
    pub fence: Fence,
    pub mgr: Manager,
}

/// One partition's domain steps; the loop around them is `stage::run`.
pub(super) struct Partition<B, S> {
    pub(super) replica: Arc<Replica<B, S>>,
    pub(super) p: u16,
    pub(super) control: Arc<LoopControl>,
    /// Ends the steps' retries (the runtime's abort).
    pub(super) abort: CancellationToken,
    /// `None` until this replica takes the partition, and after it was
    /// fenced or let go.
    pub(super) owned: Mutex<Option<Owned>>,
    /// Fenced during this loop: take nothing again until the next one.
    fenced: std::sync::atomic::AtomicBool,
    /// When the state was last looked at for purged batches.
    purge_checked: SyncMutex<Option<Instant>>,
}

/// How often a busy partition looks for batches purged while it held
/// their state (an idle one is nudged by the purge).
const PURGE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl<B: Broker, S: Store> Partition<B, S> {
    pub(super) fn new(
        replica: Arc<Replica<B, S>>,
        p: u16,
        control: Arc<LoopControl>,
        abort: CancellationToken,
    ) -> Self {
        Self {
            replica,
            p,
            control,
            abort,
            owned: Mutex::new(None),
            fenced: std::sync::atomic::AtomicBool::new(false),
            purge_checked: SyncMutex::new(None),
        }
    }

    /// The partition's state directory, `root/p{NN}`.
    pub(super) fn dir(&self) -> PathBuf {
        self.replica.root.join(store::partition::name(self.p))
    }

    fn is_fenced(&self) -> bool {
        self.fenced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Another replica owns the partition now: drop the state, let go.
    pub(super) fn fenced(&self, owned: &mut Option<Owned>) {
        tracing::warn!(
            partition = self.p,
            "fenced: another replica owns the partition now; letting go"
        );
        self.replica.stats.count("fenced", 1);
        *owned = None;
        self.control.set_epoch(0);
        self.fenced
            .store(true, std::sync::atomic::Ordering::Relaxed);
        // Found out here, the loop is not stuck: what it handled is acked.
        self.control.let_go("fenced");
    }
}

impl<B: Broker, S: Store> Stage for Partition<B, S> {
    type Msg = ResultMsg;
    /// The batches the window touched (to finalize those now complete).
    type Done = BTreeSet<String>;

    fn queue(&self) -> Queue {
        Queue::Results(self.p)
    }

    fn subscribed(&self) {
        let flag = &self.control.subscribed;
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn is_control(&self, msg_id: &str) -> bool {
        is_nudge(msg_id)
    }

    async fn handle(&self, window: Vec<Inbound<ResultMsg>>) -> Result<Handled<Self::Done>> {
        // A delivery (a nudge too) is RabbitMQ answering this replica.
        self.replica.broker_heard.heard();
        if self.is_fenced() {
            // Left unacked: they go back to the queue's active consumer.
            let outcomes = vec![Outcome::Leave; window.len()];
            return Ok(Handled {
                outcomes,
                done: BTreeSet::new(),
            });
        }
        // Everything that needs the store first, so that a failure there
        // (requeue) leaves nothing appended.
        let mut checks = Vec::with_capacity(window.len());
        for inbound in &window {
            checks.push(self.validate(&inbound.msg).await?);
        }
        let mut guard = self.owned.lock().await;
        let taking_over = guard.is_none();
        if taking_over {
            match self.take_over().await? {
                TakeOver::Taken(owned) => {
                    self.control.set_epoch(owned.fence.epoch);
                    *guard = Some(*owned);
                }
                TakeOver::Fenced | TakeOver::Locked => {
                    self.fenced(&mut guard);
                    return Ok(Handled {
                        outcomes: vec![Outcome::Leave; window.len()],
                        done: BTreeSet::new(),
                    });
                }
            }
        }
        let Some(owned) = guard.as_mut() else {
            return Err(Error::Invalid("partition not owned".into()));
        };
        if window.is_empty() || taking_over || self.purge_check_due() {
            // A nudge (taking the partition was the point; a forced purge
            // and a cancel nudge too), a new owner's first look, or time
            // to look again.
            self.drop_purged(owned).await?;
            if !self.seal_cancelled(owned).await? {
                self.fenced(&mut guard);
                return Ok(Handled {
                    outcomes: vec![Outcome::Leave; window.len()],
                    done: BTreeSet::new(),
                });
            }
        }
        if window.is_empty() {
            return Ok(Handled {
                outcomes: Vec::new(),
                done: BTreeSet::new(),
            });
        }
        let start = Instant::now();
        let mut touched = BTreeSet::new();
        let mut outcomes = Vec::with_capacity(window.len());
        for (inbound, check) in window.into_iter().zip(checks) {
            let outcome = match check {
                None => {
                    let (batch, chunk) = (inbound.msg.batch_id, inbound.msg.chunk);
                    tracing::debug!(%batch, chunk, "result of a purged batch dropped");
                    self.replica.stats.count("purged_dropped", 1);
                    Outcome::Ack
                }
                Some(Check::Pass) => {
                    let key = inbound.msg.batch_id.to_string();
                    if self.append(&mut owned.mgr, &key, inbound.msg).await? {
                        touched.insert(key);
                    }
                    Outcome::Ack
                }
                Some(Check::Fail(reason)) => Outcome::DeadLetter(reason),
            };
            outcomes.push(outcome);
        }
        self.replica.stats.phase("apply", start.elapsed());
        self.commit(owned).await?;
        if !self.holds(owned.fence).await? {
            // Acked all the same: whatever the window held is in the store's
            // changelog, which the new owner rebuilt from.
            self.fenced(&mut guard);
        }
        Ok(Handled {
            outcomes,
            done: touched,
        })
    }

    async fn after_ack(&self, touched: BTreeSet<String>) -> Result<()> {
        for key in touched {
            self.finalize_if_ready(&key).await?;
        }
        Ok(())
    }
}

impl<B: Broker, S: Store> Partition<B, S> {
    /// Makes the window durable: one fsync per touched file.
    async fn commit(&self, owned: &mut Owned) -> Result<()> {
        let faults = &self.replica.faults;
        faults.maybe_crash(CrashPoint::BeforeFsync);
        let start = Instant::now();
        // Durable before acked: one fsync per touched file for the whole window.
        tokio::task::block_in_place(|| owned.mgr.commit())?;
        self.replica.stats.phase("fsync", start.elapsed());
        faults.maybe_crash(CrashPoint::AfterFsync);
        Ok(())
    }

    async fn holds(&self, fence: Fence) -> Result<bool> {
        let store = &self.replica.store;
        retrying("check the partition's epoch", &self.abort, || async {
            Ok(store.holds_partition(fence).await?)
        })
        .await
    }

    /// Appends one valid result under `key` (or the record of a dropped
    /// duplicate); `true` when it was applied, so its batch may be complete.
    async fn append(&self, mgr: &mut Manager, key: &str, msg: ResultMsg) -> Result<bool> {
        if mgr.state(key).is_none()
            && !mgr.is_completed(key)
            && self.is_finished(msg.batch_id).await?
        {
            // Finalized elsewhere (by an earlier owner), or purged: a late
            // duplicate. Tombstoned, so it is recognised from now on.
            tokio::task::block_in_place(|| mgr.complete(key))?;
        }
        let stats = &self.replica.stats;
        let msg_id = msg.msg_id();
        let (batch, chunk) = (msg.batch_id, msg.chunk);
        let record = ChunkRow::duplicate_of(&msg);
        match mgr.process(key, &msg_id, ChunkRow::from(msg))? {
            Processed::Applied => {
                stats.count("applied", 1);
                Ok(true)
            }
            Processed::Duplicate => {
                tracing::debug!(%batch, chunk, "duplicate chunk result dropped");
                stats.count("duplicates_dropped", 1);
                // Each dropped delivery gets its own record id: a duplicate
                // redelivered after a crash was dropped twice.
                mgr.process(key, &format!("dup-{}", Uuid::new_v4().simple()), record)?;
                Ok(false)
            }
            Processed::AlreadyCompleted => {
                tracing::debug!(%batch, chunk, "late duplicate for a finalized batch dropped");
                stats.count("late_duplicates_dropped", 1);
                Ok(false)
            }
        }
    }

    /// Whether the batch is done with: it has an aggregate in the store,
    /// or it was purged.
    pub(super) async fn is_finished(&self, batch: Uuid) -> Result<bool> {
        let store = &self.replica.store;
        let stored = retrying("read aggregate", &self.abort, || async {
            Ok(store.batch_result(batch).await?)
        })
        .await?;
        if stored.is_some() {
            return Ok(true);
        }
        let purged = retrying("read purged batch", &self.abort, || async {
            Ok(store.purged_batch(batch).await?)
        })
        .await?;
        Ok(purged.is_some())
    }

    fn purge_check_due(&self) -> bool {
        let mut last = lock(&self.purge_checked);
        let due = last.is_none_or(|at| at.elapsed() >= PURGE_CHECK_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    /// Drops the state of batches purged while they ran (`purge --force`):
    /// tombstoned, so that a late result of theirs is dropped too.
    pub(super) async fn drop_purged(&self, owned: &mut Owned) -> Result<()> {
        let open: Vec<Uuid> = owned
            .mgr
            .keys()
            .iter()
            .filter_map(|k| k.parse().ok())
            .collect();
        if open.is_empty() {
            return Ok(());
        }
        let store = &self.replica.store;
        let purged = retrying("read purged batches", &self.abort, || async {
            Ok(store.purged_among(&open).await?)
        })
        .await?;
        for batch in purged {
            tokio::task::block_in_place(|| owned.mgr.complete(&batch.to_string()))?;
            self.replica.stats.count("purged_state_dropped", 1);
            tracing::info!(%batch, partition = self.p, "state of a purged batch dropped");
        }
        Ok(())
    }

    /// Seals the partition's cancelled batches that have no aggregate yet
    /// (docs/architecture.md, "Cancel"): the results of their completed
    /// chunks — frozen by the cancel's commit — are folded in from the
    /// store where a delivery has not brought them yet, and the partial
    /// aggregate is saved under the epoch and sent to the verifier.
    /// `false` when the epoch is no longer ours.
    pub(super) async fn seal_cancelled(&self, owned: &mut Owned) -> Result<bool> {
        let (store, cache) = (&self.replica.store, &self.replica.cache);
        let p = self.p;
        let cancelled = retrying("read cancelled batches", &self.abort, || async {
            Ok(store.cancelled_unsealed(p).await?)
        })
        .await?;
        for batch in cancelled {
            let key = batch.to_string();
            let stored = retrying("read completed chunks", &self.abort, || async {
                Ok(store.chunk_results(batch).await?)
            })
            .await?;
            for (chunk, json) in &stored {
                fold_stored(&mut owned.mgr, batch, *chunk, json)?;
            }
            tokio::task::block_in_place(|| owned.mgr.commit())?;
            let sealed = match owned.mgr.state(&key) {
                Some(_) => self.finalize(owned, &key).await?,
                None => {
                    // Cancelled before any chunk completed: the aggregate is
                    // the workload's empty summary.
                    let Lookup::Found(loaded) = cache.load(store, batch, &self.abort).await? else {
                        continue;
                    };
                    let empty = loaded.workload.empty_summary();
                    let result = serde_json::to_string(&empty).map_err(|source| Error::Encode {
                        what: "aggregate",
                        source,
                    })?;
                    self.publish_aggregate(owned, batch, &result, 0).await?
                }
            };
            if !sealed {
                return Ok(false);
            }
            self.replica.stats.count("cancelled_sealed", 1);
            tracing::info!(%batch, partition = p, chunks = stored.len(), "cancelled batch sealed");
        }
        Ok(true)
    }

    /// Finalizes `key` if its batch is complete and the partition is still
    /// this replica's.
    pub(super) async fn finalize_if_ready(&self, key: &str) -> Result<()> {
        let mut guard = self.owned.lock().await;
        let Some(owned) = guard.as_mut() else {
            return Ok(());
        };
        if !owned.mgr.state(key).is_some_and(|s| s.is_ready()) {
            return Ok(());
        }
        if !self.finalize(owned, key).await? {
            self.fenced(&mut guard);
        }
        Ok(())
    }

    /// Saves the batch's aggregate under the epoch, sends it to the
    /// verifier, tombstones it. `false` when the epoch is no longer ours.
    pub(super) async fn finalize(&self, owned: &mut Owned, key: &str) -> Result<bool> {
        let batch_id: Uuid = key
            .parse()
            .map_err(|_| Error::Invalid(format!("state key {key} is not a batch id")))?;
        let Some(state) = owned.mgr.state(key) else {
            return Ok(true);
        };
        let result = serde_json::to_string(&state.summary).map_err(|source| Error::Encode {
            what: "aggregate",
            source,
        })?;
        let (duplicates, name) = (state.duplicates_dropped, state.name.clone());
        let span =
            tracing::info_span!("finalize", batch = %batch_id, name = %name, partition = self.p);
        let start = Instant::now();
        let saved = self
            .publish_aggregate(owned, batch_id, &result, duplicates)
            .instrument(span)
            .await?;
        if saved {
            self.replica.stats.phase("finalize", start.elapsed());
            self.replica.stats.count("batches_finalized", 1);
        }
        Ok(saved)
    }

    async fn publish_aggregate(
        &self,
        owned: &mut Owned,
        batch_id: Uuid,
        result: &str,
        duplicates: u64,
    ) -> Result<bool> {
        let (store, broker, faults) = (
            &self.replica.store,
            &self.replica.broker,
            &self.replica.faults,
        );
        let fence = Some(owned.fence);
        let saved = retrying("save aggregate", &self.abort, || async {
            Ok(store
                .save_batch_result(batch_id, result, duplicates as i64, fence)
                .await?)
        })
        .await?;
        match saved {
            Saved::Fenced => return Ok(false),
            Saved::Purged => {
                // Purged while it ran: nothing to announce.
                tokio::task::block_in_place(|| owned.mgr.complete(&batch_id.to_string()))?;
                self.replica.stats.count("purged_state_dropped", 1);
                tracing::info!("batch purged before its aggregate was saved; state dropped");
                return Ok(true);
            }
            Saved::Saved | Saved::AlreadySaved => {}
        }
        faults.maybe_crash(CrashPoint::BeforeVerifyPublish);
        let verify = VerifyMsg::aggregated(batch_id).to_message()?;
        retrying("publish verify", &self.abort, || async {
            Ok(broker.publish(vec![verify.clone()]).await?)
        })
        .await?;
        faults.maybe_crash(CrashPoint::BeforeTombstone);
        tokio::task::block_in_place(|| owned.mgr.complete(&batch_id.to_string()))?;
        tracing::info!(duplicates, "batch aggregated");
        Ok(true)
    }
}
