//! The chunk life cycle on Postgres: the rows [`crate::chunk`]'s state
//! machine reads and writes. A claim locks the chunk's row (`FOR UPDATE`),
//! asks the state machine, and writes its answer in the same transaction;
//! the fenced writes (`complete`, `fail`, lease renewal) require the
//! attempt they were claimed with, and on a write that changed nothing the
//! state machine reads what it means.

use std::time::Duration;

use sqlx::{PgConnection, Postgres, Transaction};

use super::holder::{HOLDER_LOCK_CLASS, Holder};
use super::{PgStore, copy_rows, get, secs};
use crate::chunk::{
    self, ChunkRow, ChunkStatus, ClaimStep, failure_outcome, repeated_completion, repeated_failure,
    status_after_failure,
};
use crate::chunk_rows::check_rows;
use crate::error::from_pg;
use crate::roles::{Chunks, Retention};
use crate::{AttemptFailure, ChunkRef, Claim, Completion, Result, RunRows, Uuid};

/// Bytes of COPY data sent per `CopyData` message: large enough that a chunk
/// of 10,000 runs goes in a handful of messages.
const COPY_SEND_BYTES: usize = 1 << 20;

impl Chunks for PgStore {
    async fn hold_claims(&self) -> Result<()> {
        if self.holder_id().is_some() {
            return Ok(());
        }
        let options = (*self.pool.connect_options()).clone();
        let holder = Holder::take(options).await?;
        *self.lock_holder() = Some(holder);
        Ok(())
    }

    async fn mark_published(&self, chunks: &[ChunkRef]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = chunks.iter().map(|c| c.batch_id).collect();
        let nums: Vec<i32> = chunks.iter().map(|c| c.chunk).collect();
        sqlx::query(
            "UPDATE chunks SET published = true
             FROM unnest($1::uuid[], $2::int4[]) AS t(batch_id, chunk)
             WHERE chunks.batch_id = t.batch_id AND chunks.chunk = t.chunk
               AND NOT chunks.published",
        )
        .bind(&ids)
        .bind(&nums)
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(())
    }

    async fn claim_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        worker: &str,
        lease: Duration,
        max_attempts: i32,
    ) -> Result<Claim> {
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        let holder = self.holder_id();
        let Some(row) = lock_chunk(&mut tx, batch_id, chunk).await? else {
            tx.rollback().await.map_err(from_pg)?;
            return Ok(match self.purged_batch(batch_id).await? {
                Some(_) => Claim::Purged,
                None => Claim::NotFound,
            });
        };
        let claim = match chunk::claim_step(&row, max_attempts)? {
            ClaimStep::Answer(claim) => return Ok(claim),
            ClaimStep::Take { attempt } => {
                sqlx::query(
                    "UPDATE chunks
                     SET status = $3, attempts = $4, worker = $5, holder = $7,
                         lease_until = now() + make_interval(secs => $6), updated_at = now()
                     WHERE batch_id = $1 AND chunk = $2",
                )
                .bind(batch_id)
                .bind(chunk)
                .bind(ChunkStatus::Running.as_str())
                .bind(attempt)
                .bind(worker)
                .bind(secs(lease))
                .bind(holder)
                .execute(&mut *tx)
                .await
                .map_err(from_pg)?;
                Claim::Claimed { attempt }
            }
            ClaimStep::Fail { reason } => {
                set_failed(&mut tx, batch_id, chunk, &reason).await?;
                Claim::Failed { reason }
            }
        };
        tx.commit().await.map_err(from_pg)?;
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
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        let owned: Option<(i64, i32)> = sqlx::query_as(
            "UPDATE chunks AS c
             SET status = $5, result = $4, completed_at = now(),
                 lease_until = NULL, updated_at = now()
             FROM batches AS b
             WHERE c.batch_id = $1 AND c.chunk = $2 AND c.status = $6
               AND c.attempts = $3 AND b.id = c.batch_id
             RETURNING b.runs, b.chunk_size",
        )
        .bind(batch_id)
        .bind(chunk)
        .bind(attempt)
        .bind(result)
        .bind(ChunkStatus::Completed.as_str())
        .bind(ChunkStatus::Running.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_pg)?;
        let Some((runs, chunk_size)) = owned else {
            let row = status_and_attempts(&mut tx, batch_id, chunk).await?;
            tx.rollback().await.map_err(from_pg)?;
            return Ok(repeated_completion(row, attempt));
        };
        if let Err(e) = check_rows(runs, chunk_size, chunk, rows) {
            tx.rollback().await.map_err(from_pg)?;
            return Err(e);
        }
        copy_run_rows(&mut tx, batch_id, rows).await?;
        tx.commit().await.map_err(from_pg)?;
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
            "UPDATE chunks SET lease_until = now() + make_interval(secs => $4)
             WHERE batch_id = $1 AND chunk = $2 AND status = $5 AND attempts = $3",
        )
        .bind(batch_id)
        .bind(chunk)
        .bind(attempt)
        .bind(secs(lease))
        .bind(ChunkStatus::Running.as_str())
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
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
        let changed = sqlx::query(
            "UPDATE chunks
             SET status = $4, last_error = $5, lease_until = NULL, updated_at = now()
             WHERE batch_id = $1 AND chunk = $2 AND status = $6 AND attempts = $3",
        )
        .bind(batch_id)
        .bind(chunk)
        .bind(attempt)
        .bind(next.as_str())
        .bind(error)
        .bind(ChunkStatus::Running.as_str())
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
        if changed.rows_affected() == 1 {
            return Ok(failure_outcome(next, attempt));
        }
        // Nothing changed: either the claim is lost, or an earlier call for
        // this attempt took effect and its answer was lost.
        let row: Option<(String, i32, Option<String>)> = sqlx::query_as(
            "SELECT status, attempts, last_error FROM chunks WHERE batch_id = $1 AND chunk = $2",
        )
        .bind(batch_id)
        .bind(chunk)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
        let row = row
            .map(|(status, attempts, last)| {
                Ok::<_, crate::Error>((status.parse()?, attempts, last))
            })
            .transpose()?;
        Ok(repeated_failure(row, attempt, error))
    }

    async fn chunk_results(&self, batch_id: Uuid) -> Result<Vec<(i32, String)>> {
        sqlx::query_as(
            "SELECT chunk, result FROM chunks
             WHERE batch_id = $1 AND status = 'completed' ORDER BY chunk",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)
    }
}

/// Reads a chunk for a claim, holding its row lock until the transaction
/// ends. For a chunk running under a live lease it also asks whether the
/// holder is gone: if its holder lock can be taken (until the end of this
/// transaction), no session holds it any more (`holder.rs`).
async fn lock_chunk(
    tx: &mut Transaction<'static, Postgres>,
    batch_id: Uuid,
    chunk: i32,
) -> Result<Option<ChunkRow>> {
    let row = sqlx::query(
        "SELECT status, attempts, extract(epoch FROM (lease_until - now()))::float8,
                result, last_error,
                CASE WHEN status = $3 AND lease_until > now() AND holder IS NOT NULL
                     THEN pg_try_advisory_xact_lock($4, holder) ELSE false END
         FROM chunks WHERE batch_id = $1 AND chunk = $2 FOR UPDATE",
    )
    .bind(batch_id)
    .bind(chunk)
    .bind(ChunkStatus::Running.as_str())
    .bind(HOLDER_LOCK_CLASS)
    .fetch_optional(&mut **tx)
    .await
    .map_err(from_pg)?;
    row.map(|r| {
        Ok(ChunkRow {
            status: get::<String>(&r, 0)?.parse()?,
            attempts: get(&r, 1)?,
            lease_remaining_s: get(&r, 2)?,
            result: get(&r, 3)?,
            last_error: get(&r, 4)?,
            holder_gone: get(&r, 5)?,
        })
    })
    .transpose()
}

async fn set_failed(
    tx: &mut Transaction<'static, Postgres>,
    batch_id: Uuid,
    chunk: i32,
    reason: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE chunks SET status = $3, last_error = $4, lease_until = NULL, updated_at = now()
         WHERE batch_id = $1 AND chunk = $2",
    )
    .bind(batch_id)
    .bind(chunk)
    .bind(ChunkStatus::Failed.as_str())
    .bind(reason)
    .execute(&mut **tx)
    .await
    .map_err(from_pg)?;
    Ok(())
}

async fn status_and_attempts(
    tx: &mut Transaction<'static, Postgres>,
    batch_id: Uuid,
    chunk: i32,
) -> Result<Option<(ChunkStatus, i32)>> {
    let row: Option<(String, i32)> =
        sqlx::query_as("SELECT status, attempts FROM chunks WHERE batch_id = $1 AND chunk = $2")
            .bind(batch_id)
            .bind(chunk)
            .fetch_optional(&mut **tx)
            .await
            .map_err(from_pg)?;
    row.map(|(status, attempts)| Ok((status.parse()?, attempts)))
        .transpose()
}

/// The chunk's per-run rows in one binary `COPY`, inside the transaction
/// that completes the chunk.
async fn copy_run_rows(tx: &mut PgConnection, batch_id: Uuid, rows: &RunRows) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut copy = tx
        .copy_in_raw("COPY run_results (batch_id, run_index, outcome) FROM STDIN (FORMAT binary)")
        .await
        .map_err(from_pg)?;
    // 2 + 20 + 12 + 4 + 4 * width bytes per tuple; tuples per message
    // chosen so a message stays near COPY_SEND_BYTES.
    let per_row = 38 + rows.width * 4;
    let rows_per_send = (COPY_SEND_BYTES / per_row).max(1);
    let mut buf = Vec::with_capacity((rows.len().min(rows_per_send)) * per_row + per_row);
    buf.extend_from_slice(copy_rows::BINARY_HEADER);
    let mut start = 0;
    while start < rows.len() {
        let end = (start + rows_per_send).min(rows.len());
        copy_rows::encode_rows_binary(batch_id, rows, start..end, &mut buf);
        if end == rows.len() {
            buf.extend_from_slice(copy_rows::BINARY_TRAILER);
        }
        copy.send(buf.as_slice()).await.map_err(from_pg)?;
        buf.clear();
        start = end;
    }
    // A row the server rejects fails here, and the transaction rolls back
    // when it is dropped.
    copy.finish().await.map_err(from_pg)?;
    Ok(())
}
