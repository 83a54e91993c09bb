//! The chunk life cycle on SQLite: the rows [`crate::chunk`]'s state
//! machine reads and writes. `BEGIN IMMEDIATE` takes the database's write
//! lock up front, so the row a claim reads cannot move before it writes.
//! Fenced writes require the attempt they were claimed with, as on Postgres.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Duration;

use sqlx::{AssertSqlSafe, Sqlite, Transaction};

use super::{SqliteStore, get, now};
use crate::chunk::{
    self, ChunkRow, ChunkStatus, ClaimStep, failure_outcome, repeated_completion, repeated_failure,
    status_after_failure,
};
use crate::chunk_rows::check_rows;
use crate::error::from_sqlite;
use crate::roles::{Chunks, Retention};
use crate::{AttemptFailure, ChunkRef, Claim, Completion, Result, RunRows, Uuid, outcome};

/// Rows per multi-row INSERT: 1 + 2 × 500 bound parameters, well under
/// SQLite's limit of 32,766.
const INSERT_ROWS: usize = 500;

impl Chunks for SqliteStore {
    async fn hold_claims(&self) -> Result<()> {
        Ok(())
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
        let Some(row) = read_chunk(&mut tx, batch_id, chunk, now).await? else {
            tx.rollback().await.map_err(from_sqlite)?;
            return Ok(match self.purged_batch(batch_id).await? {
                Some(_) => Claim::Purged,
                None => Claim::NotFound,
            });
        };
        let claim = match chunk::claim_step(&row, max_attempts)? {
            ClaimStep::Answer(claim) => return Ok(claim),
            ClaimStep::Take { attempt } => {
                sqlx::query(
                    "UPDATE chunks SET status = ?1, attempts = ?2, worker = ?3,
                         lease_until = ?4 + ?5, updated_at = ?4
                     WHERE batch_id = ?6 AND chunk = ?7",
                )
                .bind(ChunkStatus::Running.as_str())
                .bind(attempt)
                .bind(worker)
                .bind(now)
                .bind(lease.as_secs_f64())
                .bind(batch_id)
                .bind(chunk)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
                Claim::Claimed { attempt }
            }
            ClaimStep::Fail { reason } => {
                sqlx::query(
                    "UPDATE chunks SET status = ?1, lease_until = NULL, last_error = ?2,
                         updated_at = ?3
                     WHERE batch_id = ?4 AND chunk = ?5",
                )
                .bind(ChunkStatus::Failed.as_str())
                .bind(&reason)
                .bind(now)
                .bind(batch_id)
                .bind(chunk)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
                Claim::Failed { reason }
            }
        };
        tx.commit().await.map_err(from_sqlite)?;
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
        let owned: Option<(i64, i32)> = sqlx::query_as(
            "UPDATE chunks
             SET status = ?1, result = ?2, completed_at = ?3, lease_until = NULL, updated_at = ?3
             WHERE batch_id = ?4 AND chunk = ?5 AND status = ?6 AND attempts = ?7
             RETURNING (SELECT runs FROM batches WHERE id = ?4),
                       (SELECT chunk_size FROM batches WHERE id = ?4)",
        )
        .bind(ChunkStatus::Completed.as_str())
        .bind(result)
        .bind(now())
        .bind(batch_id)
        .bind(chunk)
        .bind(ChunkStatus::Running.as_str())
        .bind(attempt)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        let Some((runs, chunk_size)) = owned else {
            let row = status_and_attempts(&mut tx, batch_id, chunk).await?;
            tx.rollback().await.map_err(from_sqlite)?;
            return Ok(repeated_completion(row.map(|(s, a, _)| (s, a)), attempt));
        };
        if let Err(e) = check_rows(runs, chunk_size, chunk, rows) {
            tx.rollback().await.map_err(from_sqlite)?;
            return Err(e);
        }
        insert_run_rows(&mut tx, batch_id, rows).await?;
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
             WHERE batch_id = ?3 AND chunk = ?4 AND status = ?5 AND attempts = ?6",
        )
        .bind(now())
        .bind(lease.as_secs_f64())
        .bind(batch_id)
        .bind(chunk)
        .bind(ChunkStatus::Running.as_str())
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
        let next = status_after_failure(attempt, max_attempts);
        let mut tx = self.begin_immediate().await?;
        let changed = sqlx::query(
            "UPDATE chunks SET status = ?1, last_error = ?2, lease_until = NULL, updated_at = ?3
             WHERE batch_id = ?4 AND chunk = ?5 AND status = ?6 AND attempts = ?7",
        )
        .bind(next.as_str())
        .bind(error)
        .bind(now())
        .bind(batch_id)
        .bind(chunk)
        .bind(ChunkStatus::Running.as_str())
        .bind(attempt)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        let answer = if changed.rows_affected() == 1 {
            failure_outcome(next, attempt)
        } else {
            // Nothing changed: the claim is lost, or this repeats a call
            // that took effect and whose answer was lost.
            let row = status_and_attempts(&mut tx, batch_id, chunk).await?;
            repeated_failure(row, attempt, error)
        };
        tx.commit().await.map_err(from_sqlite)?;
        Ok(answer)
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
}

/// Reads a chunk for a claim (the write lock is held by the transaction).
async fn read_chunk(
    tx: &mut Transaction<'static, Sqlite>,
    batch_id: Uuid,
    chunk: i32,
    now: f64,
) -> Result<Option<ChunkRow>> {
    let row = sqlx::query(
        "SELECT status, attempts, lease_until - ?3, result, last_error
         FROM chunks WHERE batch_id = ?1 AND chunk = ?2",
    )
    .bind(batch_id)
    .bind(chunk)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await
    .map_err(from_sqlite)?;
    row.map(|r| {
        Ok(ChunkRow {
            status: get::<String>(&r, 0)?.parse()?,
            attempts: get(&r, 1)?,
            lease_remaining_s: get(&r, 2)?,
            // One process owns the file: a holder is never another one.
            holder_gone: false,
            result: get(&r, 3)?,
            last_error: get(&r, 4)?,
        })
    })
    .transpose()
}

async fn status_and_attempts(
    tx: &mut Transaction<'static, Sqlite>,
    batch_id: Uuid,
    chunk: i32,
) -> Result<Option<(ChunkStatus, i32, Option<String>)>> {
    let row: Option<(String, i32, Option<String>)> = sqlx::query_as(
        "SELECT status, attempts, last_error FROM chunks WHERE batch_id = ? AND chunk = ?",
    )
    .bind(batch_id)
    .bind(chunk)
    .fetch_optional(&mut **tx)
    .await
    .map_err(from_sqlite)?;
    row.map(|(status, attempts, last)| Ok((status.parse()?, attempts, last)))
        .transpose()
}

/// The chunk's per-run rows in multi-row INSERTs, inside the transaction
/// that completes the chunk.
async fn insert_run_rows(
    tx: &mut Transaction<'static, Sqlite>,
    batch_id: Uuid,
    rows: &RunRows,
) -> Result<()> {
    let mut start = 0;
    while start < rows.len() {
        let end = (start + INSERT_ROWS).min(rows.len());
        let n = end - start;
        let sql = if n == INSERT_ROWS {
            AssertSqlSafe(Cow::Borrowed(full_insert_sql()))
        } else {
            AssertSqlSafe(Cow::Owned(insert_sql(n)))
        };
        let mut query = sqlx::query(sql).bind(batch_id);
        for i in start..end {
            let mut bytes = Vec::new();
            outcome::encode(rows.row(i), &mut bytes);
            query = query.bind(rows.first_run + i as i64).bind(bytes);
        }
        // A statement the database refuses fails here; dropping `tx` rolls back.
        query.execute(&mut **tx).await.map_err(from_sqlite)?;
        start = end;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_statement_binds_the_batch_once() {
        assert_eq!(
            insert_sql(2),
            "INSERT INTO run_results (batch_id, run_index, outcome) VALUES (?1, ?2, ?3), (?1, ?4, ?5)"
        );
    }
}
