//! [`SqliteStore`]: the [`Store`] on an embedded SQLite file, for the
//! zero-setup mode (`batchline demo`), with its own migrations
//! (`migrations/sqlite/`).
//!
//! One process owns the file, so the Postgres row locks become transactions
//! that take the write lock up front (`BEGIN IMMEDIATE`), which also rules out
//! the deadlock of two readers upgrading at once. WAL with
//! `synchronous=FULL`: a commit is on disk before the store returns, because
//! acks depend on it. Times are Unix-epoch seconds (REAL) from this process's
//! clock; a run's outcome is a BLOB of little-endian `i32`s.

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row};

use crate::chunk_rows::check_rows;
use crate::error::from_sqlite;
use crate::fencing::{failure_outcome, repeated_failure};
use crate::{
    AttemptFailure, Batch, BatchProgress, ChunkRef, Claim, Completion, Error, NewBatch, Result,
    RunRows, Store, Uuid, Verdict, VerdictRecord,
};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// Rows per multi-row INSERT: 1 + 2 × 500 bound parameters, well under
/// SQLite's limit of 32,766.
const INSERT_ROWS: usize = 500;

/// How long a writer waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The results store on an embedded SQLite file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it and its directory if
    /// missing. Call [`Store::migrate`] before use.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                Error::Config(format!("cannot create directory {}: {e}", dir.display()))
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
            .map_err(|e| match from_sqlite(e) {
                // Busy or I/O trouble may pass; anything else (not a
                // database, no permission) needs a person.
                Error::Unavailable(m) => Error::Unavailable(format!(
                    "cannot open SQLite database {}: {m}",
                    path.display()
                )),
                other => Error::Config(format!(
                    "cannot open SQLite database {}: {other}",
                    path.display()
                )),
            })?;
        Ok(Self { pool })
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

fn get<'r, T>(row: &'r SqliteRow, i: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(i).map_err(from_sqlite)
}

/// `INSERT … VALUES (?1, ?2, ?3), (?1, ?4, ?5), …` for `rows` rows: the batch
/// id is bound once, then run index and outcome per row.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO run_results (batch_id, run_index, outcome) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(?1, ?{}, ?{})", 2 + 2 * i, 3 + 2 * i));
    }
    sql
}

/// The full-size statement is built once; sqlx caches its prepared form.
fn full_insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| insert_sql(INSERT_ROWS))
}

fn encode_outcome(values: &[i32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_outcome(blob: &[u8], out: &mut Vec<i32>) -> Result<()> {
    if !blob.len().is_multiple_of(4) {
        return Err(Error::Corrupt(format!(
            "run outcome of {} bytes is not a list of i32",
            blob.len()
        )));
    }
    out.clear();
    out.extend(
        blob.chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
    );
    Ok(())
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => from_sqlite(e),
            other => Error::Migration(other.to_string()),
        })
    }

    async fn create_batches(&self, batches: &[NewBatch]) -> Result<()> {
        let now = now();
        let mut tx = self.begin_immediate().await?;
        for b in batches {
            sqlx::query(
                "INSERT INTO batches (id, name, workload, seed, runs, chunk_size, chunks, created_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(b.id)
            .bind(&b.name)
            .bind(&b.workload)
            .bind(b.seed)
            .bind(b.runs)
            .bind(b.chunk_size)
            .bind(b.chunks())
            .bind(now)
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
        let mut tx = self.begin_immediate().await?;
        let now = now();
        let claimed: Option<i32> = sqlx::query_scalar(
            "UPDATE chunks
             SET status = 'running', lease_until = ?1 + ?2, attempts = attempts + 1,
                 worker = ?3, updated_at = ?1
             WHERE batch_id = ?4 AND chunk = ?5 AND attempts < ?6
               AND (status = 'pending' OR (status = 'running' AND lease_until < ?1))
             RETURNING attempts",
        )
        .bind(now)
        .bind(lease.as_secs_f64())
        .bind(worker)
        .bind(batch_id)
        .bind(chunk)
        .bind(max_attempts)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        if let Some(attempt) = claimed {
            tx.commit().await.map_err(from_sqlite)?;
            return Ok(Claim::Claimed { attempt });
        }

        // The write lock is held, so nothing moved since the UPDATE.
        let row = sqlx::query(
            "SELECT status, attempts, result, last_error, lease_until
             FROM chunks WHERE batch_id = ? AND chunk = ?",
        )
        .bind(batch_id)
        .bind(chunk)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        let Some(row) = row else {
            return Ok(Claim::NotFound);
        };
        let status: String = get(&row, 0)?;
        let attempts: i32 = get(&row, 1)?;
        let lease_until: Option<f64> = get(&row, 4)?;
        let claim = match status.as_str() {
            "completed" => Claim::Completed {
                result: get::<Option<String>>(&row, 2)?.unwrap_or_default(),
            },
            "failed" => Claim::Failed {
                reason: get::<Option<String>>(&row, 3)?.unwrap_or_else(|| "failed".into()),
            },
            "running" if lease_until.is_some_and(|t| t >= now) => Claim::Leased {
                remaining_s: lease_until.unwrap_or(now) - now,
            },
            // Not claimable yet still live: no attempts left.
            _ => {
                let previous: Option<String> = get(&row, 3)?;
                let reason = if status == "running" {
                    format!("lease expired after {attempts} attempts")
                } else {
                    format!(
                        "attempts exhausted after {attempts} attempts: {}",
                        previous.unwrap_or_default()
                    )
                };
                sqlx::query(
                    "UPDATE chunks SET status = 'failed', lease_until = NULL, last_error = ?1, updated_at = ?2
                     WHERE batch_id = ?3 AND chunk = ?4",
                )
                .bind(&reason)
                .bind(now)
                .bind(batch_id)
                .bind(chunk)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
                tx.commit().await.map_err(from_sqlite)?;
                return Ok(Claim::Failed { reason });
            }
        };
        Ok(claim)
    }

    async fn complete_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        rows: &RunRows,
        result: &str,
    ) -> Result<Completion> {
        let mut tx = self.begin_immediate().await?;
        let owned = sqlx::query(
            "UPDATE chunks
             SET status = 'completed', result = ?1, completed_at = ?2, lease_until = NULL, updated_at = ?2
             WHERE batch_id = ?3 AND chunk = ?4 AND status = 'running' AND attempts = ?5
             RETURNING (SELECT runs FROM batches WHERE id = ?3),
                       (SELECT chunk_size FROM batches WHERE id = ?3)",
        )
        .bind(result)
        .bind(now())
        .bind(batch_id)
        .bind(chunk)
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        let Some(owned) = owned else {
            // Completed under this very attempt: an earlier call committed
            // and its answer was lost (see the Postgres store).
            let mine: Option<bool> = sqlx::query_scalar(
                "SELECT status = 'completed' AND attempts = ?3 FROM chunks WHERE batch_id = ?1 AND chunk = ?2",
            )
            .bind(batch_id)
            .bind(chunk)
            .bind(attempt)
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlite)?;
            tx.rollback().await.map_err(from_sqlite)?;
            return Ok(if mine == Some(true) {
                Completion::Committed
            } else {
                Completion::Fenced
            });
        };
        if let Err(e) = check_rows(get(&owned, 0)?, get(&owned, 1)?, chunk, rows) {
            tx.rollback().await.map_err(from_sqlite)?;
            return Err(e);
        }

        let mut start = 0;
        while start < rows.len() {
            let end = (start + INSERT_ROWS).min(rows.len());
            let n = end - start;
            let sql = if n == INSERT_ROWS {
                AssertSqlSafe(std::borrow::Cow::Borrowed(full_insert_sql()))
            } else {
                AssertSqlSafe(std::borrow::Cow::Owned(insert_sql(n)))
            };
            let mut query = sqlx::query(sql).bind(batch_id);
            for i in start..end {
                query = query
                    .bind(rows.first_run + i as i64)
                    .bind(encode_outcome(rows.row(i)));
            }
            // A duplicate run index fails here; dropping `tx` rolls back.
            query.execute(&mut *tx).await.map_err(from_sqlite)?;
            start = end;
        }
        tx.commit().await.map_err(from_sqlite)?;
        Ok(Completion::Committed)
    }

    async fn renew_lease(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        lease: Duration,
    ) -> Result<bool> {
        let renewed = sqlx::query(
            "UPDATE chunks SET lease_until = ?1 + ?2
             WHERE batch_id = ?3 AND chunk = ?4 AND status = 'running' AND attempts = ?5",
        )
        .bind(now())
        .bind(lease.as_secs_f64())
        .bind(batch_id)
        .bind(chunk)
        .bind(attempt)
        .execute(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(renewed.rows_affected() == 1)
    }

    async fn fail_attempt(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        max_attempts: i32,
        error: &str,
    ) -> Result<AttemptFailure> {
        let row = sqlx::query(
            "UPDATE chunks
             SET status = CASE WHEN attempts >= ?1 THEN 'failed' ELSE 'pending' END,
                 last_error = ?2, lease_until = NULL, updated_at = ?3
             WHERE batch_id = ?4 AND chunk = ?5 AND status = 'running' AND attempts = ?6
             RETURNING status, attempts",
        )
        .bind(max_attempts)
        .bind(error)
        .bind(now())
        .bind(batch_id)
        .bind(chunk)
        .bind(attempt)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlite)?;
        if let Some(row) = row {
            let status: String = get(&row, 0)?;
            let attempts: i32 = get(&row, 1)?;
            return Ok(failure_outcome(&status, attempts));
        }
        let row: Option<(String, i32, Option<String>)> = sqlx::query_as(
            "SELECT status, attempts, last_error FROM chunks WHERE batch_id = ? AND chunk = ?",
        )
        .bind(batch_id)
        .bind(chunk)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(repeated_failure(row, attempt, error))
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
            decode_outcome(get::<&[u8]>(&row, 1)?, &mut values)?;
            f(run, &values);
        }
        Ok(())
    }

    async fn summarize_new_runs(&self) -> Result<Option<i64>> {
        // The primary key finds a batch's rows; there is nothing to catch up.
        Ok(Some(0))
    }

    async fn save_batch_result(
        &self,
        batch_id: Uuid,
        result: &str,
        duplicates_dropped: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO batch_results (batch_id, result, duplicates_dropped, created_at)
             VALUES (?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(result)
        .bind(duplicates_dropped)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(())
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
        .await
        .map_err(from_sqlite)?
        .rows_affected();
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
            .map(|(id, chunk, error)| (id, crate::failure_reason(chunk, error.as_deref())))
            .collect())
    }

    async fn progress(&self, batch_id: Option<Uuid>, limit: i64) -> Result<Vec<BatchProgress>> {
        let rows = sqlx::query(
            "SELECT b.id, b.name, b.runs, b.chunks, b.created_at,
                    coalesce(sum(c.status = 'pending'), 0), coalesce(sum(c.status = 'running'), 0),
                    coalesce(sum(c.status = 'completed'), 0), coalesce(sum(c.status = 'failed'), 0),
                    coalesce(sum(c.attempts), 0),
                    EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id),
                    v.success, nullif(v.reason, ''), v.created_at
             FROM (SELECT * FROM batches WHERE ?1 IS NULL OR id = ?1
                   ORDER BY created_at DESC, id LIMIT ?2) AS b
             LEFT JOIN chunks AS c ON c.batch_id = b.id
             LEFT JOIN verdicts AS v ON v.batch_id = b.id
             GROUP BY b.id
             ORDER BY b.created_at DESC, b.id",
        )
        .bind(batch_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        rows.iter()
            .map(|r| {
                Ok(BatchProgress {
                    id: get(r, 0)?,
                    name: get(r, 1)?,
                    runs: get(r, 2)?,
                    chunks: get(r, 3)?,
                    created_at: get(r, 4)?,
                    pending: get(r, 5)?,
                    running: get(r, 6)?,
                    completed: get(r, 7)?,
                    failed: get(r, 8)?,
                    attempts: get(r, 9)?,
                    aggregated: get(r, 10)?,
                    verdict: get(r, 11)?,
                    reason: get(r, 12)?,
                    finished_at: get(r, 13)?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_blobs() {
        let values = [0, -1, i32::MAX, i32::MIN, 42];
        let mut back = Vec::new();
        decode_outcome(&encode_outcome(&values), &mut back).unwrap();
        assert_eq!(back, values);
        assert!(matches!(
            decode_outcome(&[1, 2, 3], &mut back),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn insert_statement_binds_the_batch_once() {
        assert_eq!(
            insert_sql(2),
            "INSERT INTO run_results (batch_id, run_index, outcome) VALUES (?1, ?2, ?3), (?1, ?4, ?5)"
        );
    }
}
