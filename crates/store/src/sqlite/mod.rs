//! [`SqliteStore`]: the [`Store`] on an embedded SQLite file, for the
//! zero-setup mode (`batchline demo`), with its own migrations
//! (`migrations/sqlite/`).
//!
//! One process owns the file, so the Postgres row locks become transactions
//! that take the write lock up front (`BEGIN IMMEDIATE`), which also rules out
//! the deadlock of two readers upgrading at once. WAL with
//! `synchronous=FULL`: a commit is on disk before the store returns, because
//! acks depend on it. Times are Unix-epoch seconds (REAL) from this process's
//! clock; a run's outcome is a BLOB in the layout of [`crate::outcome`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::chunk::failure_reason;
use crate::error::{from_migrate, from_sqlite, is_foreign_key_violation};
use crate::{
    AttemptFailure, Batch, BatchProgress, ChunkRef, Claim, Completion, Error, Fence, NewBatch,
    PartitionInfo, ReplicaInfo, Result, RunRows, Saved, Store, Uuid, Verdict, VerdictRecord,
    outcome,
};

/// The columns of [`BatchProgress::from_row`] for a batch `b` joined with
/// its chunks `c` (grouped by batch) and its verdict `v`: `progress` and
/// `batches_older_than` select them.
macro_rules! progress_columns {
    () => {
        "SELECT b.id, b.name, b.runs, b.chunks, b.created_at,
                coalesce(sum(c.status = 'pending'), 0), coalesce(sum(c.status = 'running'), 0),
                coalesce(sum(c.status = 'completed'), 0), coalesce(sum(c.status = 'failed'), 0),
                coalesce(sum(c.attempts), 0),
                EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id),
                v.success, nullif(v.reason, ''), v.created_at"
    };
}

mod chunks;
mod partitions;
mod purge;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a writer waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The results store on an embedded SQLite file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The partition count once read (0 before): it changes only while no
    /// batch exists.
    partitions: Arc<AtomicU16>,
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it and its directory if
    /// missing. Call [`Store::migrate`] before use.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| Error::Config {
                    message: format!("cannot create directory {}", dir.display()),
                    source: Some(e.into()),
                })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // A few connections so a long `scan_runs` does not stall the writers
        // (WAL lets readers run beside one writer).
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                let what = format!("cannot open SQLite database {}", path.display());
                match from_sqlite(e) {
                    // Busy or I/O trouble may pass; anything else (not a
                    // database, no permission) needs a person.
                    e @ Error::Unavailable { .. } => e.reaching(what),
                    other => Error::Config {
                        message: what,
                        source: Some(other.into()),
                    },
                }
            })?;
        Ok(Self {
            pool,
            partitions: Arc::default(),
        })
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_immediate(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(from_sqlite)
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A batch's progress from a row ([`BatchProgress::from_row`]).
fn progress_of(r: &SqliteRow) -> Result<BatchProgress> {
    BatchProgress::from_row(r).map_err(from_sqlite)
}

fn get<'r, T>(row: &'r SqliteRow, i: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(i).map_err(from_sqlite)
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| from_migrate(e, from_sqlite))?;
        self.init_partition_rows(None).await.map(|_| ())
    }

    async fn hold_claims(&self) -> Result<()> {
        Ok(())
    }

    async fn create_batches(&self, batches: &[NewBatch]) -> Result<()> {
        let now = now();
        let partitions = self.partition_count().await?;
        let mut tx = self.begin_immediate().await?;
        for b in batches {
            sqlx::query(
                "INSERT INTO batches (id, name, workload, seed, runs, chunk_size, chunks, created_at, partition)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(b.id)
            .bind(&b.name)
            .bind(&b.workload)
            .bind(b.seed)
            .bind(b.runs)
            .bind(b.chunk_size)
            .bind(b.chunks())
            .bind(now)
            .bind(i32::from(crate::partition::of(b.id, partitions)))
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
            sqlx::query(
                "WITH RECURSIVE g(n) AS (SELECT 0 WHERE ?2 > 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?2)
                 INSERT INTO chunks (batch_id, chunk, updated_at) SELECT ?1, n, ?3 FROM g",
            )
            .bind(b.id)
            .bind(b.chunks())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        }
        tx.commit().await.map_err(from_sqlite)
    }

    async fn mark_published(&self, chunks: &[ChunkRef]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_immediate().await?;
        for c in chunks {
            sqlx::query("UPDATE chunks SET published = 1 WHERE batch_id = ? AND chunk = ? AND published = 0")
                .bind(c.batch_id)
                .bind(c.chunk)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
        }
        tx.commit().await.map_err(from_sqlite)
    }

    async fn batch(&self, id: Uuid) -> Result<Option<Batch>> {
        let row = sqlx::query(
            "SELECT id, name, workload, seed, runs, chunk_size, chunks, created_at
             FROM batches WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlite)?;
        row.map(|r| {
            Ok(Batch {
                id: get(&r, 0)?,
                name: get(&r, 1)?,
                workload: get(&r, 2)?,
                seed: get(&r, 3)?,
                runs: get(&r, 4)?,
                chunk_size: get(&r, 5)?,
                chunks: get(&r, 6)?,
                created_at: get(&r, 7)?,
            })
        })
        .transpose()
    }

    async fn claim_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        worker: &str,
        lease: Duration,
        max_attempts: i32,
    ) -> Result<Claim> {
        self.claim((batch_id, chunk), worker, lease, max_attempts)
            .await
    }

    async fn complete_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        rows: &RunRows,
        result: &str,
    ) -> Result<Completion> {
        self.complete((batch_id, chunk), attempt, rows, result)
            .await
    }

    async fn renew_lease(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        lease: Duration,
    ) -> Result<bool> {
        self.renew((batch_id, chunk), attempt, lease).await
    }

    async fn fail_attempt(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        max_attempts: i32,
        error: &str,
    ) -> Result<AttemptFailure> {
        self.fail((batch_id, chunk), attempt, max_attempts, error)
            .await
    }

    async fn chunk_results(&self, batch_id: Uuid) -> Result<Vec<(i32, String)>> {
        sqlx::query_as(
            "SELECT chunk, result FROM chunks
             WHERE batch_id = ? AND status = 'completed' ORDER BY chunk",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)
    }

    async fn scan_runs<F>(&self, batch_id: Uuid, runs: std::ops::Range<i64>, mut f: F) -> Result<()>
    where
        F: FnMut(i64, &[i32]) + Send,
    {
        let mut rows = sqlx::query(
            "SELECT run_index, outcome FROM run_results
             WHERE batch_id = ? AND run_index >= ? AND run_index < ?
             ORDER BY run_index",
        )
        .bind(batch_id)
        .bind(runs.start)
        .bind(runs.end)
        .fetch(&self.pool);
        let mut values = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(from_sqlite)? {
            let run: i64 = get(&row, 0)?;
            outcome::decode(get::<&[u8]>(&row, 1)?, &mut values)?;
            f(run, &values);
        }
        Ok(())
    }

    async fn purge_batch(&self, id: Uuid, force: bool) -> Result<crate::Purge> {
        self.purge(id, force).await
    }

    async fn purged_batch(&self, id: Uuid) -> Result<Option<crate::PurgedBatch>> {
        self.purged(id).await
    }

    async fn purged_among(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        self.purged_of(ids).await
    }

    async fn batches_older_than(&self, age: Duration, limit: i64) -> Result<Vec<BatchProgress>> {
        self.older_than(age, limit).await
    }

    async fn finish_purges(&self) -> Result<u64> {
        // One transaction purges everything: nothing is ever left over.
        Ok(0)
    }

    async fn run_rows_bytes(&self) -> Result<i64> {
        self.runs_bytes().await
    }

    async fn save_batch_result(
        &self,
        batch_id: Uuid,
        result: &str,
        duplicates_dropped: i64,
        fence: Option<Fence>,
    ) -> Result<Saved> {
        self.save_result(batch_id, result, duplicates_dropped, fence)
            .await
    }

    async fn batch_result(&self, batch_id: Uuid) -> Result<Option<(String, i64)>> {
        sqlx::query_as("SELECT result, duplicates_dropped FROM batch_results WHERE batch_id = ?")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlite)
    }

    async fn record_verdict(&self, batch_id: Uuid, verdict: &Verdict) -> Result<VerdictRecord> {
        let inserted = sqlx::query(
            "INSERT INTO verdicts (batch_id, success, reason, line, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(verdict.success)
        .bind(&verdict.reason)
        .bind(&verdict.line)
        .bind(now())
        .execute(&self.pool)
        .await;
        let inserted = match inserted {
            Ok(done) => done.rows_affected(),
            Err(e) if is_foreign_key_violation(&e) => return Ok(VerdictRecord::Purged),
            Err(e) => return Err(from_sqlite(e)),
        };
        if inserted == 1 {
            return Ok(VerdictRecord::New);
        }
        let (success, reason, line, printed): (bool, String, String, bool) = sqlx::query_as(
            "SELECT success, reason, line, printed FROM verdicts WHERE batch_id = ?",
        )
        .bind(batch_id)
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(VerdictRecord::Existing {
            verdict: Verdict {
                success,
                reason,
                line,
            },
            printed,
        })
    }

    async fn mark_verdict_printed(&self, batch_id: Uuid) -> Result<()> {
        sqlx::query("UPDATE verdicts SET printed = 1 WHERE batch_id = ? AND printed = 0")
            .bind(batch_id)
            .execute(&self.pool)
            .await
            .map_err(from_sqlite)?;
        Ok(())
    }

    async fn verdict(&self, batch_id: Uuid) -> Result<Option<Verdict>> {
        let row: Option<(bool, String, String)> =
            sqlx::query_as("SELECT success, reason, line FROM verdicts WHERE batch_id = ?")
                .bind(batch_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(from_sqlite)?;
        Ok(row.map(|(success, reason, line)| Verdict {
            success,
            reason,
            line,
        }))
    }

    async fn take_chunks_to_republish(
        &self,
        unpublished_after: Duration,
        lease_grace: Duration,
        limit: i64,
    ) -> Result<Vec<ChunkRef>> {
        // One statement is atomic; the single process needs no SKIP LOCKED.
        let mut taken: Vec<(Uuid, i32)> = sqlx::query_as(
            "UPDATE chunks SET swept_at = ?1
             WHERE (batch_id, chunk) IN (
                 SELECT batch_id, chunk FROM chunks
                 WHERE ((status = 'pending' AND published = 0 AND updated_at < ?1 - ?2)
                     OR (status = 'running' AND lease_until < ?1 - ?3))
                   AND (swept_at IS NULL OR swept_at < ?1 - ?3)
                 ORDER BY updated_at
                 LIMIT ?4)
             RETURNING batch_id, chunk",
        )
        .bind(now())
        .bind(unpublished_after.as_secs_f64())
        .bind(lease_grace.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        taken.sort_unstable();
        Ok(taken
            .into_iter()
            .map(|(batch_id, chunk)| ChunkRef { batch_id, chunk })
            .collect())
    }

    async fn take_stalled_batches(
        &self,
        deadline: Duration,
        limit: i64,
    ) -> Result<Vec<(Uuid, i32)>> {
        let mut taken: Vec<(Uuid, i32)> = sqlx::query_as(
            "UPDATE batches
             SET republish_round = republish_round + 1, last_republish_at = ?1
             WHERE id IN (
                 SELECT b.id FROM batches AS b
                 WHERE b.created_at < ?1 - ?2
                   AND (b.last_republish_at IS NULL OR b.last_republish_at < ?1 - ?2)
                   AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)
                   AND NOT EXISTS (SELECT 1 FROM verdicts AS v WHERE v.batch_id = b.id)
                   AND NOT EXISTS (
                       SELECT 1 FROM chunks AS c WHERE c.batch_id = b.id
                         AND (c.status <> 'completed' OR c.completed_at >= ?1 - ?2))
                 ORDER BY b.created_at
                 LIMIT ?3)
             RETURNING id, republish_round",
        )
        .bind(now())
        .bind(deadline.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        taken.sort_unstable();
        Ok(taken)
    }

    async fn failed_batches_without_verdict(&self, limit: i64) -> Result<Vec<(Uuid, String)>> {
        let rows: Vec<(Uuid, i32, Option<String>)> = sqlx::query_as(
            "SELECT c.batch_id, c.chunk, c.last_error
             FROM chunks AS c
             WHERE c.status = 'failed'
               AND c.chunk = (SELECT min(chunk) FROM chunks AS f
                              WHERE f.batch_id = c.batch_id AND f.status = 'failed')
               AND NOT EXISTS (SELECT 1 FROM verdicts AS v WHERE v.batch_id = c.batch_id)
             ORDER BY c.batch_id
             LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(rows
            .into_iter()
            .map(|(id, chunk, error)| (id, failure_reason(chunk, error.as_deref())))
            .collect())
    }

    async fn init_partitions(&self, wanted: Option<u16>) -> Result<u16> {
        self.init_partition_rows(wanted).await
    }

    async fn partitions(&self) -> Result<u16> {
        self.partition_count().await
    }

    async fn take_partition(&self, partition: u16, owner: &str) -> Result<Fence> {
        self.take(partition, owner).await
    }

    async fn release_partition(&self, fence: Fence, cause: &str) -> Result<bool> {
        self.release(fence, cause).await
    }

    async fn holds_partition(&self, fence: Fence) -> Result<bool> {
        self.holds(fence).await
    }

    async fn partition_changelog(&self, partition: u16) -> Result<Vec<(Uuid, i32, String)>> {
        self.changelog(partition).await
    }

    async fn aggregated_without_verdict(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        self.unverified(older_than, limit).await
    }

    async fn predates_partitions(&self) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE created_at <
                 (SELECT CAST(strftime('%s', installed_on) AS REAL)
                  FROM _sqlx_migrations WHERE version = ?1))",
        )
        .bind(crate::partition::MIGRATION)
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlite)
    }

    async fn replica_heartbeat(&self, replica: &str) -> Result<()> {
        self.heartbeat(replica).await
    }

    async fn live_replicas(&self, within: Duration) -> Result<Vec<ReplicaInfo>> {
        self.replicas(within).await
    }

    async fn release_replica(&self, replica: &str, cause: &str) -> Result<Vec<u16>> {
        self.release_all(replica, cause).await
    }

    async fn partition_status(&self) -> Result<Vec<PartitionInfo>> {
        self.status().await
    }

    async fn progress(&self, batch_id: Option<Uuid>, limit: i64) -> Result<Vec<BatchProgress>> {
        let rows = sqlx::query(concat!(
            progress_columns!(),
            " FROM (SELECT * FROM batches WHERE ?1 IS NULL OR id = ?1
                   ORDER BY created_at DESC, id LIMIT ?2) AS b
             LEFT JOIN chunks AS c ON c.batch_id = b.id
             LEFT JOIN verdicts AS v ON v.batch_id = b.id
             GROUP BY b.id
             ORDER BY b.created_at DESC, b.id",
        ))
        .bind(batch_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        rows.iter().map(progress_of).collect()
    }
}
