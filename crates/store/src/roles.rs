//! The store's roles: one trait per part of the pipeline's state, each
//! implemented once per backend (`postgres/`, `sqlite/`) with no forwarders,
//! and [`Store`], every role at once, which the stages take.
//!
//! A stage needs only the roles it uses, but naming `S: Store` is enough:
//! bring the roles into scope with `use store::roles::*` (or the crate
//! root's re-exports). New state goes into a role of its own — the
//! scheduling of fair share next to [`Chunks`] — so no trait grows into a
//! list of everything.

use std::future::Future;
use std::time::Duration;

use crate::cancel::{Cancel, Cancelled};
use crate::queue::QueueView;
use crate::share::Charge;
use crate::{
    AttemptFailure, Batch, BatchProgress, ChunkRef, Claim, Completion, Fence, NewBatch,
    PartitionInfo, Purge, PurgedBatch, ReplicaInfo, Result, RunRows, Saved, Uuid, Verdict,
    VerdictRecord,
};

/// Batches: create them, read them, their progress, cancel them.
pub trait Batches: Send + Sync {
    /// Inserts batches and all their chunk rows (pending, unpublished) in one
    /// transaction.
    fn create_batches(&self, batches: &[NewBatch]) -> impl Future<Output = Result<()>> + Send;

    fn batch(&self, id: Uuid) -> impl Future<Output = Result<Option<Batch>>> + Send;

    /// Progress of one batch, or of the newest `limit` batches when `None`.
    fn progress(
        &self,
        batch_id: Option<Uuid>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<BatchProgress>>> + Send;

    /// Cancels the batch in one transaction ([`crate::cancel`]): its
    /// pending and running chunks become `cancelled`, the batch records
    /// when and why. Refused for a final batch; idempotent.
    fn cancel_batch(&self, id: Uuid, reason: &str) -> impl Future<Output = Result<Cancel>> + Send;

    /// Those of `ids` that were cancelled, with when and why.
    fn cancelled_among(&self, ids: &[Uuid]) -> impl Future<Output = Result<Vec<Cancelled>>> + Send;
}

/// Chunks and their claims: the state machine of [`crate::chunk`], fenced by attempt.
pub trait Chunks: Send + Sync {
    /// Ties this store's claims to this process: from now on, a chunk it
    /// claims can be taken by another claim at once (attempt + 1) when this
    /// process is known to be gone — on Postgres, when its database session
    /// ended, which it does with the process — instead of only when the
    /// lease runs out. A frozen or partitioned process keeps its session, so
    /// its chunks wait for their lease as before. Idempotent. SQLite: one
    /// process owns the store; nothing to do.
    fn hold_claims(&self) -> impl Future<Output = Result<()>> + Send;

    /// Records that the work messages of these chunks were confirmed by the broker.
    fn mark_published(&self, chunks: &[ChunkRef]) -> impl Future<Output = Result<()>> + Send;

    /// One statement: takes the chunk if it is pending or its lease expired
    /// (and attempts remain), setting a lease, the worker and attempts+1.
    /// Otherwise reports why not. A running chunk whose lease expired with no
    /// attempts left becomes failed.
    fn claim_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        worker: &str,
        lease: Duration,
        max_attempts: i32,
    ) -> impl Future<Output = Result<Claim>> + Send;

    /// In one transaction: marks the chunk completed with `result` — only if
    /// it is still running under `attempt` — and inserts its per-run rows in bulk.
    /// `rows` must be exactly the chunk's runs ([`Batch::chunk_range`]),
    /// otherwise nothing is written and the answer is [`crate::Error::Invalid`].
    fn complete_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        rows: &RunRows,
        result: &str,
    ) -> impl Future<Output = Result<Completion>> + Send;

    /// Extends the lease of a chunk still running under `attempt` to `lease`
    /// from now. `false` when the claim is lost: a newer attempt took the
    /// chunk, or it is no longer running. Fenced like `complete_chunk`.
    fn renew_lease(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        lease: Duration,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Records a failed attempt: back to pending, or failed when `attempt`
    /// reached `max_attempts`. Fenced like `complete_chunk`, and idempotent
    /// like it: repeating the call for the same attempt (and error) after it
    /// took effect answers the same `WillRetry` / `Exhausted` again, as long
    /// as no newer attempt claimed the chunk meanwhile.
    fn fail_attempt(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        max_attempts: i32,
        error: &str,
    ) -> impl Future<Output = Result<AttemptFailure>> + Send;

    /// Stored results of all completed chunks of a batch, by chunk number.
    fn chunk_results(
        &self,
        batch_id: Uuid,
    ) -> impl Future<Output = Result<Vec<(i32, String)>>> + Send;
}

/// Fair share ([`crate::share`]): which chunks go to the work queue next,
/// what executors measured, and the queue as it is served.
pub trait Scheduling: Send + Sync {
    /// Dispatches chunks in fair-share order when the work queue runs
    /// short ([`crate::share::Budget::refill`]: fewer than `depth` dispatched chunks wait
    /// in it, or less than half of `ahead_s` estimated executor seconds),
    /// at most `limit` at once: marks them published, charges their batches
    /// and tenants their estimated cost, and returns them in the order to
    /// publish. One dispatch at a time: each holds the clocks' lock to its
    /// commit, so every decision sees the one before.
    fn dispatch(
        &self,
        depth: i64,
        ahead_s: f64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ChunkRef>>> + Send;

    /// Gives back dispatched chunks whose publish failed: they wait to be
    /// dispatched again. The estimate they were charged stays (one
    /// chunk's worth, on an error path).
    fn undispatch(&self, chunks: &[ChunkRef]) -> impl Future<Output = Result<()>> + Send;

    /// Charges the executor seconds attempts of chunks measured, in one
    /// transaction: corrects each batch's and tenant's clocks by the
    /// difference to the estimate its dispatch charged, and learns the
    /// workloads' seconds per run. A purged chunk's charge is skipped.
    fn charge(&self, charges: &[Charge]) -> impl Future<Output = Result<()>> + Send;

    /// Records that executor `worker` is alive with `threads` simulation
    /// threads: the pool's size for estimates.
    fn executor_heartbeat(
        &self,
        worker: &str,
        threads: i32,
    ) -> impl Future<Output = Result<()>> + Send;

    /// The unfinished batches in the order they are served, with their
    /// shares, rates and estimates, and the pool's size.
    fn queue(&self) -> impl Future<Output = Result<QueueView>> + Send;

    /// The measured executor seconds per run of a workload (its JSON
    /// snapshot), if a chunk of it ever completed.
    fn seconds_per_run(&self, workload: &str) -> impl Future<Output = Result<Option<f64>>> + Send;
}

/// Per-run rows: the verifier's independent source.
pub trait Runs: Send + Sync {
    /// Streams the batch's per-run rows whose run index is in `runs`, in no
    /// particular order, to `f(run_index, values)`. Every stored row comes
    /// out, a repeated run index as often as it is stored. Disjoint ranges
    /// may be scanned concurrently (each takes its own connection).
    fn scan_runs<F>(
        &self,
        batch_id: Uuid,
        runs: std::ops::Range<i64>,
        f: F,
    ) -> impl Future<Output = Result<()>> + Send
    where
        F: FnMut(i64, &[i32]) + Send;

    /// Bytes the per-run rows take on disk, indexes included (SQLite: the
    /// whole database file).
    fn run_rows_bytes(&self) -> impl Future<Output = Result<i64>> + Send;
}

/// Batch aggregates, saved once under the partition's fence.
pub trait Aggregates: Send + Sync {
    /// Stores the batch's aggregate. Idempotent: the first write wins and
    /// later ones change nothing. With a `fence`, only while the fence's
    /// epoch is still its partition's (checked in the same statement).
    fn save_batch_result(
        &self,
        batch_id: Uuid,
        result: &str,
        duplicates_dropped: i64,
        fence: Option<Fence>,
    ) -> impl Future<Output = Result<Saved>> + Send;

    /// The aggregate and its duplicates-dropped count, if aggregated.
    fn batch_result(
        &self,
        batch_id: Uuid,
    ) -> impl Future<Output = Result<Option<(String, i64)>>> + Send;
}

/// Verdicts: the first one wins, and its line is printed once.
pub trait Verdicts: Send + Sync {
    /// Records the verdict unless one exists (the first one wins).
    fn record_verdict(
        &self,
        batch_id: Uuid,
        verdict: &Verdict,
    ) -> impl Future<Output = Result<VerdictRecord>> + Send;

    /// Marks the verdict's line as printed.
    fn mark_verdict_printed(&self, batch_id: Uuid) -> impl Future<Output = Result<()>> + Send;

    fn verdict(&self, batch_id: Uuid) -> impl Future<Output = Result<Option<Verdict>>> + Send;
}

/// What the sweeper takes: lost work, stalled batches, missing verdicts.
pub trait Sweeps: Send + Sync {
    /// Sweeper: takes (with `SKIP LOCKED`, so concurrent sweepers split the
    /// work) chunks that need their work message published again —
    /// dispatched chunks still waiting after `queued_after` (their message
    /// may never have gone out: the dispatcher died after its commit), and
    /// running chunks whose lease expired more than `lease_grace` ago — and
    /// stamps them so the next sweeps skip them for as long (and at least
    /// `lease_grace`). Chunks not yet
    /// dispatched are the dispatcher's ([`Scheduling::dispatch`]).
    fn take_chunks_to_republish(
        &self,
        queued_after: Duration,
        lease_grace: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ChunkRef>>> + Send;

    /// Sweeper: batches whose chunks are all completed (or, for a
    /// cancelled batch, completed or cancelled) for longer than
    /// `deadline` but that have no aggregate yet (nor a verdict), and that
    /// were not re-published within `deadline`. Bumps and returns each
    /// batch's re-publish round.
    fn take_stalled_batches(
        &self,
        deadline: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(Uuid, i32)>>> + Send;

    /// Sweeper: batches with a failed chunk and no verdict, with the failure
    /// reason (chunk number and last error).
    fn failed_batches_without_verdict(
        &self,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<(Uuid, String)>>> + Send;

    /// Sweeper: takes batches aggregated longer than `older_than` ago that
    /// still have no verdict (their verify message may have been lost: the
    /// aggregator died between saving the aggregate and publishing it), and
    /// stamps them so that each is taken at most once per `older_than`.
    fn aggregated_without_verdict(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Uuid>>> + Send;
}

/// The aggregator's partitions: count, epochs that fence owners, changelog, replicas.
pub trait Partitions: Send + Sync {
    /// The partition count, fixed when the database was first migrated:
    /// `wanted` (or [`crate::partition::DEFAULT_PARTITIONS`]) on a new database; on
    /// one that has partitions, [`crate::Error::Config`] if `wanted` differs.
    /// Batches created before partitions existed get theirs. Idempotent.
    fn init_partitions(&self, wanted: Option<u16>) -> impl Future<Output = Result<u16>> + Send;

    /// The partition count ([`crate::Error::Config`] before `init_partitions`).
    fn partitions(&self) -> impl Future<Output = Result<u16>> + Send;

    /// Makes `owner` the partition's owner under a new epoch, and returns
    /// it: every effect of an earlier owner is fenced from now on.
    fn take_partition(
        &self,
        partition: u16,
        owner: &str,
    ) -> impl Future<Output = Result<Fence>> + Send;

    /// The owner under `fence` lets go, saying why; `false` (nothing done)
    /// when the fence is stale.
    fn release_partition(
        &self,
        fence: Fence,
        cause: &str,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Whether `fence` is still its partition's current epoch.
    fn holds_partition(&self, fence: Fence) -> impl Future<Output = Result<bool>> + Send;

    /// The partition's changelog: the stored results of the completed chunks
    /// of its open batches (those without an aggregate), as
    /// `(batch, chunk, result)`. What a new owner rebuilds from.
    fn partition_changelog(
        &self,
        partition: u16,
    ) -> impl Future<Output = Result<Vec<(Uuid, i32, String)>>> + Send;

    /// Whether the database holds batches created before its partitions
    /// were (a deployment upgraded from the single results queue, whose
    /// old queue may still hold results or receive them from executors of
    /// the old version).
    fn predates_partitions(&self) -> impl Future<Output = Result<bool>> + Send;

    /// Records that aggregator `replica` is alive. On Postgres, a store
    /// that holds claims ([`Chunks::hold_claims`]) records its holder lock
    /// with it, so that the replica counts as gone as soon as its process's
    /// session ends.
    fn replica_heartbeat(&self, replica: &str) -> impl Future<Output = Result<()>> + Send;

    /// Replicas heard from within `within` (and, on Postgres, whose
    /// recorded holder lock is still held), with the partitions each owns.
    fn live_replicas(
        &self,
        within: Duration,
    ) -> impl Future<Output = Result<Vec<ReplicaInfo>>> + Send;

    /// Releases, saying `cause`, every partition recorded as owned by
    /// `replica` (a previous process under the same name: a replica that
    /// starts owns none); returns them. Their epochs stay: the next owner
    /// takes a new one.
    fn release_replica(
        &self,
        replica: &str,
        cause: &str,
    ) -> impl Future<Output = Result<Vec<u16>>> + Send;

    /// Cancelled batches of the partition that have no aggregate yet:
    /// what its owner must still seal.
    fn cancelled_unsealed(&self, partition: u16) -> impl Future<Output = Result<Vec<Uuid>>> + Send;

    /// Every partition's owner, epoch, open batches and last hand-over.
    fn partition_status(&self) -> impl Future<Output = Result<Vec<PartitionInfo>>> + Send;
}

/// Retention: purging batches and the records purges keep.
pub trait Retention: Send + Sync {
    /// Purges the batch (see [`crate::purge`]): its run rows, chunks, aggregate
    /// and verdict are removed and a [`PurgedBatch`] record kept. A batch
    /// without a verdict is refused unless `force`. Idempotent: purging
    /// again finishes what an interrupted purge left.
    fn purge_batch(&self, id: Uuid, force: bool) -> impl Future<Output = Result<Purge>> + Send;

    /// The record of a purged batch.
    fn purged_batch(&self, id: Uuid) -> impl Future<Output = Result<Option<PurgedBatch>>> + Send;

    /// Those of `ids` that were purged.
    fn purged_among(&self, ids: &[Uuid]) -> impl Future<Output = Result<Vec<Uuid>>> + Send;

    /// Batches finished (verdict recorded) more than `age` ago, and
    /// unfinished ones created more than `age` ago, oldest first: what
    /// `purge --older-than` considers.
    fn batches_older_than(
        &self,
        age: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<BatchProgress>>> + Send;

    /// Finishes purges that were interrupted after their commit (their
    /// run rows still stored); how many.
    fn finish_purges(&self) -> impl Future<Output = Result<u64>> + Send;
}

/// The whole store: every role, and the migrations that shape it.
/// Implementations: Postgres ([`crate::PgStore`]), SQLite ([`crate::SqliteStore`]).
pub trait Store:
    Batches
    + Chunks
    + Scheduling
    + Runs
    + Aggregates
    + Verdicts
    + Sweeps
    + Partitions
    + Retention
    + Clone
    + Send
    + Sync
    + 'static
{
    /// Applies pending migrations (idempotent).
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;
}
