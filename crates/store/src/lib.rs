//! store: the results store behind one trait, [`Store`].
//!
//! Layout:
//! - the trait and its domain types (this file): batches, chunks with claims
//!   and leases, per-run results in bulk, batch results and verdicts;
//! - [`postgres`]: [`PgStore`], sqlx on Postgres with embedded migrations
//!   (`migrations/postgres/`), `COPY` for per-run rows, `SKIP LOCKED` sweeps;
//!   `copy_rows` encodes the binary `COPY` rows;
//! - [`sqlite`]: [`SqliteStore`], sqlx on an embedded SQLite file for the
//!   zero-setup mode (`migrations/sqlite/`), WAL + `synchronous=FULL`;
//! - [`chunk`]: the chunk state machine in plain Rust, shared by both:
//!   [`ChunkStatus`], the claim decision, what a fenced write that changed
//!   nothing means, the failure reasons. The backends only read and write
//!   rows;
//! - `chunk_rows`: the check, shared by both, that a chunk's run rows are
//!   exactly the runs it owns;
//! - `outcome`: the byte layout of a run's outcome, shared by both;
//! - [`partition`]: a batch's aggregator partition (a stable hash of its
//!   id), the partition count fixed at migrate, and the epoch [`Fence`];
//! - [`purge`]: retention — what purging a batch removes and keeps, and
//!   when it is refused;
//! - `error`: [`Error`], and the mapping of sqlx errors to it (connection
//!   loss, timeouts and lock contention are retryable; the driver's error is
//!   kept as the source).
//!
//! State transitions only move forward (see [`chunk`]), finalization and
//! verdicts are idempotent. A claim's attempt number fences every later write
//! of that claim: a worker that lost its lease changes nothing. No sqlx type
//! appears in this API, so stages never see SQL. This crate knows nothing of
//! RabbitMQ or of what a run computes: a run's outcome is a row of `i32`s
//! whose meaning belongs to the workload.
//!
//! Both implementations pass one conformance suite (`tests/common/mod.rs`,
//! run by `tests/postgres.rs` and `tests/sqlite.rs`); `examples/store_throughput.rs`
//! measures claims/s, `complete_chunk` rows/s and `scan_runs` rows/s.
//!
//! Migrations are embedded and run by [`Store::migrate`]; once released, a
//! migration file is never edited (sqlx checks their checksums): add a new one.

use std::future::Future;
use std::time::Duration;

pub use uuid::Uuid;

pub mod catalog;
pub mod chunk;
mod chunk_rows;
mod error;
mod outcome;
pub mod partition;
pub mod postgres;
pub mod purge;
pub mod sqlite;

pub use catalog::Catalog;
pub use chunk::ChunkStatus;
pub use error::{Error, Result, Source};
pub use partition::Fence;
pub use postgres::{PgOptions, PgStore};
pub use purge::{Purge, PurgedBatch};
pub use sqlite::SqliteStore;

/// A batch to create, with its chunk rows, in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBatch {
    pub id: Uuid,
    pub name: String,
    /// The workload snapshot (JSON) every stage uses for this batch.
    pub workload: String,
    pub seed: i64,
    pub runs: i64,
    pub chunk_size: i32,
}

impl NewBatch {
    /// Number of chunks: `ceil(runs / chunk_size)`.
    pub fn chunks(&self) -> i32 {
        chunk_count(self.runs, self.chunk_size)
    }
}

/// `ceil(runs / chunk_size)`; the last chunk may be short.
pub fn chunk_count(runs: i64, chunk_size: i32) -> i32 {
    let size = i64::from(chunk_size.max(1));
    i32::try_from((runs + size - 1) / size).unwrap_or(i32::MAX)
}

/// A stored batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub id: Uuid,
    pub name: String,
    pub workload: String,
    pub seed: i64,
    pub runs: i64,
    pub chunk_size: i32,
    pub chunks: i32,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
}

impl Batch {
    /// First run index and number of runs of `chunk`.
    pub fn chunk_range(&self, chunk: i32) -> (i64, i64) {
        let first = i64::from(chunk) * i64::from(self.chunk_size);
        let runs = (self.runs - first).clamp(0, i64::from(self.chunk_size));
        (first, runs)
    }
}

/// Outcome of trying to claim a chunk.
#[derive(Clone, Debug, PartialEq)]
pub enum Claim {
    /// This worker owns the chunk until the lease ends; `attempt` fences its commit.
    Claimed { attempt: i32 },
    /// Already completed earlier; `result` is the stored chunk result to re-publish.
    Completed { result: String },
    /// Another worker holds a live lease (seconds until it expires).
    Leased { remaining_s: f64 },
    /// The chunk failed terminally (attempts exhausted).
    Failed { reason: String },
    /// No such batch or chunk.
    NotFound,
    /// The batch was purged: the message is late and is dropped.
    Purged,
}

/// Per-run outcomes of one chunk, flat: run `first_run + i` has the values
/// `values[i * width .. (i + 1) * width]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunRows {
    pub first_run: i64,
    pub width: usize,
    pub values: Vec<i32>,
}

impl RunRows {
    pub fn len(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn row(&self, i: usize) -> &[i32] {
        &self.values[i * self.width..(i + 1) * self.width]
    }
}

/// Outcome of committing a chunk's results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Rows inserted and chunk marked completed, atomically. Also the answer
    /// when this very attempt had already committed (a retried call whose
    /// first answer was lost with the connection): the caller goes on to
    /// publish, so an ambiguous commit never leaves a result unpublished.
    Committed,
    /// The claim was lost (another attempt owns the chunk, or another attempt
    /// completed it): nothing was written.
    Fenced,
}

/// Outcome of recording a failed attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptFailure {
    /// Back to pending; the caller schedules a delayed retry. `attempt` is
    /// the attempt that just failed (the next claim gets `attempt + 1`).
    WillRetry { attempt: i32 },
    /// Attempts exhausted: the chunk is failed.
    Exhausted { attempts: i32 },
    /// The claim was lost meanwhile; nothing changed.
    Fenced,
}

/// What saving an aggregate did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Saved now.
    Saved,
    /// An aggregate was saved before (the first write wins): nothing changed.
    AlreadySaved,
    /// The fence's epoch is no longer the partition's: nothing changed.
    Fenced,
    /// The batch was purged (`purge --force` while it ran): nothing changed.
    Purged,
}

/// One aggregator partition, for `batchline partitions`.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionInfo {
    pub partition: u16,
    pub epoch: i64,
    /// The replica holding the epoch; `None` before any, or after it let go.
    pub owner: Option<String>,
    /// Seconds since the Unix epoch.
    pub owned_since: Option<f64>,
    /// Batches of the partition without an aggregate yet.
    pub open_batches: i64,
    pub handovers: i64,
    pub last_handover_at: Option<f64>,
    /// `start`, `failover` (the previous owner never let go: it died or
    /// froze), or what the previous owner said when it let go (`rebalance`,
    /// `shutdown`, `fenced`).
    pub last_handover_cause: Option<String>,
}

/// An aggregator replica that announced itself.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicaInfo {
    pub replica: String,
    /// Seconds since its last heartbeat, by the database's clock.
    pub silent_s: f64,
    /// Partitions whose epoch it holds.
    pub partitions: Vec<u16>,
}

/// A verdict to record for a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub success: bool,
    /// The line's detail: `reason` for failures, empty for success.
    pub reason: String,
    /// The full line the verifier prints (so a re-print is identical).
    pub line: String,
}

/// What recording a verdict found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VerdictRecord {
    /// First verdict for this batch; the caller prints it, then marks it printed.
    New,
    /// A verdict existed already (the first one wins); `printed` says whether
    /// its line was printed.
    Existing { verdict: Verdict, printed: bool },
    /// The batch was purged meanwhile: nothing recorded, nothing to print.
    Purged,
}

/// A chunk the sweeper must re-publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkRef {
    pub batch_id: Uuid,
    pub chunk: i32,
}

/// Progress of a batch, for `status` and `submit --wait`.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchProgress {
    pub id: Uuid,
    pub name: String,
    pub runs: i64,
    pub chunks: i32,
    pub pending: i32,
    pub running: i32,
    pub completed: i32,
    pub failed: i32,
    /// Sum of attempts over all chunks.
    pub attempts: i64,
    pub aggregated: bool,
    /// `Some(true)` SUCCESS, `Some(false)` FAILURE, `None` no verdict yet.
    pub verdict: Option<bool>,
    /// The verdict's reason; `None` without a verdict or for SUCCESS.
    pub reason: Option<String>,
    pub created_at: f64,
    /// When the verdict was recorded.
    pub finished_at: Option<f64>,
}

impl BatchProgress {
    /// From the first 14 columns of a row of either database, in the
    /// order `progress`, `batches_older_than` and the catalog select them.
    pub(crate) fn from_row<R>(r: &R) -> std::result::Result<Self, sqlx::Error>
    where
        R: sqlx::Row,
        usize: sqlx::ColumnIndex<R>,
        for<'r> Uuid: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> i32: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> f64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        for<'r> bool: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    {
        Ok(Self {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            runs: r.try_get(2)?,
            chunks: r.try_get(3)?,
            created_at: r.try_get(4)?,
            pending: r.try_get(5)?,
            running: r.try_get(6)?,
            completed: r.try_get(7)?,
            failed: r.try_get(8)?,
            attempts: r.try_get(9)?,
            aggregated: r.try_get(10)?,
            verdict: r.try_get(11)?,
            reason: r.try_get(12)?,
            finished_at: r.try_get(13)?,
        })
    }
}

/// The results store. Implementations: Postgres, SQLite.
pub trait Store: Clone + Send + Sync + 'static {
    /// Applies pending migrations (idempotent).
    fn migrate(&self) -> impl Future<Output = Result<()>> + Send;

    /// Ties this store's claims to this process: from now on, a chunk it
    /// claims can be taken by another claim at once (attempt + 1) when this
    /// process is known to be gone — on Postgres, when its database session
    /// ended, which it does with the process — instead of only when the
    /// lease runs out. A frozen or partitioned process keeps its session, so
    /// its chunks wait for their lease as before. Idempotent. SQLite: one
    /// process owns the store; nothing to do.
    fn hold_claims(&self) -> impl Future<Output = Result<()>> + Send;

    /// Inserts batches and all their chunk rows (pending, unpublished) in one
    /// transaction.
    fn create_batches(&self, batches: &[NewBatch]) -> impl Future<Output = Result<()>> + Send;

    /// Records that the work messages of these chunks were confirmed by the broker.
    fn mark_published(&self, chunks: &[ChunkRef]) -> impl Future<Output = Result<()>> + Send;

    fn batch(&self, id: Uuid) -> impl Future<Output = Result<Option<Batch>>> + Send;

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
    /// otherwise nothing is written and the answer is [`Error::Invalid`].
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

    /// Purges the batch (see [`purge`]): its run rows, chunks, aggregate
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

    /// Bytes the per-run rows take on disk, indexes included (SQLite: the
    /// whole database file).
    fn run_rows_bytes(&self) -> impl Future<Output = Result<i64>> + Send;

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

    /// Records the verdict unless one exists (the first one wins).
    fn record_verdict(
        &self,
        batch_id: Uuid,
        verdict: &Verdict,
    ) -> impl Future<Output = Result<VerdictRecord>> + Send;

    /// Marks the verdict's line as printed.
    fn mark_verdict_printed(&self, batch_id: Uuid) -> impl Future<Output = Result<()>> + Send;

    fn verdict(&self, batch_id: Uuid) -> impl Future<Output = Result<Option<Verdict>>> + Send;

    /// Sweeper: takes (with `SKIP LOCKED`, so concurrent sweepers split the
    /// work) chunks that need their work message re-published — unpublished
    /// pending chunks older than `unpublished_after`, and running chunks
    /// whose lease expired more than `lease_grace` ago — and stamps them so
    /// the next sweep within `lease_grace` skips them.
    fn take_chunks_to_republish(
        &self,
        unpublished_after: Duration,
        lease_grace: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ChunkRef>>> + Send;

    /// Sweeper: batches whose chunks are all completed for longer than
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

    /// The partition count, fixed when the database was first migrated:
    /// `wanted` (or [`partition::DEFAULT_PARTITIONS`]) on a new database; on
    /// one that has partitions, [`Error::Config`] if `wanted` differs.
    /// Batches created before partitions existed get theirs. Idempotent.
    fn init_partitions(&self, wanted: Option<u16>) -> impl Future<Output = Result<u16>> + Send;

    /// The partition count ([`Error::Config`] before `init_partitions`).
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

    /// Sweeper: takes batches aggregated longer than `older_than` ago that
    /// still have no verdict (their verify message may have been lost: the
    /// aggregator died between saving the aggregate and publishing it), and
    /// stamps them so that each is taken at most once per `older_than`.
    fn aggregated_without_verdict(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<Uuid>>> + Send;

    /// Whether the database holds batches created before its partitions
    /// were (a deployment upgraded from the single results queue, whose
    /// old queue may still hold results or receive them from executors of
    /// the old version).
    fn predates_partitions(&self) -> impl Future<Output = Result<bool>> + Send;

    /// Records that aggregator `replica` is alive. On Postgres, a store
    /// that holds claims ([`Store::hold_claims`]) records its holder lock
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

    /// Every partition's owner, epoch, open batches and last hand-over.
    fn partition_status(&self) -> impl Future<Output = Result<Vec<PartitionInfo>>> + Send;

    /// Progress of one batch, or of the newest `limit` batches when `None`.
    fn progress(
        &self,
        batch_id: Option<Uuid>,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<BatchProgress>>> + Send;
}
