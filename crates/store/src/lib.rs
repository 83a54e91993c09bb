//! store: the results store, split into roles ([`roles`]) that [`Store`]
//! gathers.
//!
//! Layout:
//! - the domain types (this file): batches, claims, per-run rows, batch
//!   results, verdicts, progress;
//! - [`roles`]: one trait per part of the state — [`Batches`], [`Chunks`]
//!   (claims and leases), [`Runs`] (per-run rows in bulk), [`Aggregates`],
//!   [`Verdicts`], [`Sweeps`], [`Partitions`], [`Retention`] — and
//!   [`Store`], all of them; `use store::prelude::*` brings them in scope;
//! - [`postgres`]: [`PgStore`], sqlx on Postgres with embedded migrations
//!   (`migrations/postgres/`), `COPY` for per-run rows, `SKIP LOCKED` sweeps;
//!   one file per role (`batches.rs`, `chunks.rs`, …); `copy_rows` encodes
//!   the binary `COPY` rows;
//! - [`sqlite`]: [`SqliteStore`], sqlx on an embedded SQLite file for the
//!   zero-setup mode (`migrations/sqlite/`), WAL + `synchronous=FULL`; the
//!   same files per role;
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

pub use uuid::Uuid;

pub mod cancel;
pub mod catalog;
pub mod chunk;
mod chunk_rows;
mod error;
mod outcome;
pub mod partition;
pub mod postgres;
pub mod purge;
pub mod queue;
pub mod roles;
pub mod share;

/// Every role trait, for `use store::prelude::*` where a store is used.
pub mod prelude {
    pub use crate::roles::{
        Aggregates, Batches, Chunks, Partitions, Retention, Runs, Scheduling, Store, Sweeps,
        Verdicts,
    };
}
pub mod sqlite;

pub use cancel::Cancel;
pub use catalog::Catalog;
pub use chunk::ChunkStatus;
pub use error::{Error, Result, Source};
pub use partition::Fence;
pub use postgres::{PgOptions, PgStore};
pub use purge::{Purge, PurgedBatch};
pub use queue::{QueueEntry, QueueView};
pub use roles::{
    Aggregates, Batches, Chunks, Partitions, Retention, Runs, Scheduling, Store, Sweeps, Verdicts,
};
pub use share::{Priority, Share};
pub use sqlite::SqliteStore;

/// A batch to create, with its chunk rows, in one transaction.
#[derive(Clone, Debug, PartialEq)]
pub struct NewBatch {
    pub id: Uuid,
    pub name: String,
    /// The workload snapshot (JSON) every stage uses for this batch.
    pub workload: String,
    pub seed: i64,
    pub runs: i64,
    pub chunk_size: i32,
    /// Its tenant and weight in the pool's fair share.
    pub share: Share,
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
    /// The batch was cancelled: the chunk will never run.
    Cancelled,
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
    /// Failed attempts given another go: claims beyond the first of each
    /// claimed chunk, and every attempt of a chunk back to pending.
    pub retries: i64,
    pub aggregated: bool,
    /// `Some(true)` SUCCESS, `Some(false)` FAILURE, `None` no verdict yet.
    pub verdict: Option<bool>,
    /// The verdict's reason; `None` without a verdict or for SUCCESS.
    pub reason: Option<String>,
    pub created_at: f64,
    /// When the verdict was recorded.
    pub finished_at: Option<f64>,
    /// A person cancelled it (`batchline cancel`): its verdict, once
    /// recorded, is CANCELLED when the check of what was done passed.
    pub cancelled: bool,
}

impl BatchProgress {
    /// From the first 16 columns of a row of either database, in the
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
            cancelled: r.try_get(14)?,
            retries: r.try_get(15)?,
        })
    }
}
