//! Batches on Postgres: a batch, its chunk rows and its run rows'
//! partition created in one transaction; reading one; the progress
//! `status` shows; cancelling one ([`crate::cancel`]).

use super::{PgStore, get, partitions, progress_of};
use crate::cancel::{self, Cancel, CancelRow, Cancelled, cancelled_of};
use crate::chunk::ChunkStatus;
use crate::error::from_pg;
use crate::roles::{Batches, Partitions, Retention};
use crate::{Batch, BatchProgress, NewBatch, Result, Uuid};

impl Batches for PgStore {
    async fn create_batches(&self, batches: &[NewBatch]) -> Result<()> {
        let partitions = self.partitions().await?;
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        for b in batches {
            sqlx::query(
                "INSERT INTO batches (id, name, workload, seed, runs, chunk_size, chunks, partition,
                                      tenant, weight)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(b.id)
            .bind(&b.name)
            .bind(&b.workload)
            .bind(b.seed)
            .bind(b.runs)
            .bind(b.chunk_size)
            .bind(b.chunks())
            .bind(partitions::column(crate::partition::of(b.id, partitions)))
            .bind(&b.share.tenant)
            .bind(b.share.weight)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
            sqlx::query(
                "INSERT INTO chunks (batch_id, chunk)
                 SELECT $1, g FROM generate_series(0, $2 - 1) AS g",
            )
            .bind(b.id)
            .bind(b.chunks())
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
            // Its run rows' partition (migration 20261201000012).
            sqlx::query("SELECT run_results_add_partition($1)")
                .bind(b.id)
                .execute(&mut *tx)
                .await
                .map_err(from_pg)?;
        }
        tx.commit().await.map_err(from_pg)
    }

    async fn batch(&self, id: Uuid) -> Result<Option<Batch>> {
        let row = sqlx::query(
            "SELECT id, name, workload, seed, runs, chunk_size, chunks,
                    extract(epoch FROM created_at)::float8
             FROM batches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
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

    async fn progress(&self, batch_id: Option<Uuid>, limit: i64) -> Result<Vec<BatchProgress>> {
        let rows = sqlx::query(concat!(
            progress_columns!(),
            " FROM (SELECT * FROM batches WHERE $1::uuid IS NULL OR id = $1
                   ORDER BY created_at DESC, id LIMIT $2) AS b",
            chunk_counts!(),
            "LEFT JOIN verdicts AS v ON v.batch_id = b.id
             ORDER BY b.created_at DESC, b.id",
        ))
        .bind(batch_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        rows.iter().map(progress_of).collect()
    }

    async fn cancel_batch(&self, id: Uuid, reason: &str) -> Result<Cancel> {
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        // The batch's row lock orders this cancel with a purge of the
        // batch and with another cancel of it.
        let found: Option<(bool, Option<bool>)> = sqlx::query_as(
            "SELECT b.cancelled_at IS NOT NULL, v.success
             FROM batches AS b LEFT JOIN verdicts AS v ON v.batch_id = b.id
             WHERE b.id = $1 FOR UPDATE OF b",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_pg)?;
        let Some((cancelled, verdict)) = found else {
            tx.rollback().await.map_err(from_pg)?;
            return Ok(match self.purged_batch(id).await? {
                Some(_) => Cancel::Purged,
                None => Cancel::Unknown,
            });
        };
        if let Some(refused) = cancel::refusal(&CancelRow { cancelled, verdict }) {
            tx.rollback().await.map_err(from_pg)?;
            return Ok(refused);
        }
        // Waits for the row lock of a chunk whose completion or failure is
        // committing, then sees its new status: what completed stays
        // completed, and that attempt's write is never undone.
        let changed = sqlx::query(
            "UPDATE chunks SET status = $2, lease_until = NULL, updated_at = now()
             WHERE batch_id = $1 AND status IN ($3, $4)",
        )
        .bind(id)
        .bind(ChunkStatus::Cancelled.as_str())
        .bind(ChunkStatus::Pending.as_str())
        .bind(ChunkStatus::Running.as_str())
        .execute(&mut *tx)
        .await
        .map_err(from_pg)?
        .rows_affected();
        let (failed, completed): (bool, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = $2) > 0, count(*) FILTER (WHERE status = $3)
             FROM chunks WHERE batch_id = $1",
        )
        .bind(id)
        .bind(ChunkStatus::Failed.as_str())
        .bind(ChunkStatus::Completed.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(from_pg)?;
        if let Some(refused) = cancel::after_update(changed, failed) {
            tx.rollback().await.map_err(from_pg)?;
            return Ok(refused);
        }
        sqlx::query("UPDATE batches SET cancelled_at = now(), cancel_reason = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        tx.commit().await.map_err(from_pg)?;
        Ok(Cancel::Cancelled {
            chunks: i32::try_from(changed).unwrap_or(i32::MAX),
            completed: i32::try_from(completed).unwrap_or(i32::MAX),
        })
    }

    async fn cancelled_among(&self, ids: &[Uuid]) -> Result<Vec<Cancelled>> {
        let rows: Vec<(Uuid, f64, Option<String>)> = sqlx::query_as(
            "SELECT id, extract(epoch FROM cancelled_at)::float8, cancel_reason FROM batches
             WHERE id = ANY($1) AND cancelled_at IS NOT NULL",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(rows.into_iter().map(cancelled_of).collect())
    }
}
