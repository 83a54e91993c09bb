//! Batches on SQLite: a batch and its chunk rows in one transaction;
//! reading one; the progress `status` shows; cancelling one
//! ([`crate::cancel`]).

use super::{SqliteStore, get, now, progress_of};
use crate::cancel::{self, Cancel, CancelRow, Cancelled, cancelled_of};
use crate::chunk::ChunkStatus;
use crate::error::from_sqlite;
use crate::roles::{Batches, Partitions, Retention};
use crate::{Batch, BatchProgress, NewBatch, Result, Uuid};

impl Batches for SqliteStore {
    async fn create_batches(&self, batches: &[NewBatch]) -> Result<()> {
        let now = now();
        let partitions = self.partitions().await?;
        let mut tx = self.begin_immediate().await?;
        for b in batches {
            sqlx::query(
                "INSERT INTO batches (id, name, workload, seed, runs, chunk_size, chunks, created_at, partition,
                                      tenant, weight)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            .bind(&b.share.tenant)
            .bind(b.share.weight)
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

    async fn cancel_batch(&self, id: Uuid, reason: &str) -> Result<Cancel> {
        // BEGIN IMMEDIATE takes the write lock: nothing commits between
        // the reads and the writes below.
        let mut tx = self.begin_immediate().await?;
        let found: Option<(bool, Option<bool>)> = sqlx::query_as(
            "SELECT b.cancelled_at IS NOT NULL, v.success
             FROM batches AS b LEFT JOIN verdicts AS v ON v.batch_id = b.id WHERE b.id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        let Some((cancelled, verdict)) = found else {
            drop(tx);
            return Ok(match self.purged_batch(id).await? {
                Some(_) => Cancel::Purged,
                None => Cancel::Unknown,
            });
        };
        if let Some(refused) = cancel::refusal(&CancelRow { cancelled, verdict }) {
            return Ok(refused);
        }
        let now = now();
        let changed = sqlx::query(
            "UPDATE chunks SET status = ?2, lease_until = NULL, updated_at = ?5
             WHERE batch_id = ?1 AND status IN (?3, ?4)",
        )
        .bind(id)
        .bind(ChunkStatus::Cancelled.as_str())
        .bind(ChunkStatus::Pending.as_str())
        .bind(ChunkStatus::Running.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlite)?
        .rows_affected();
        let (failed, completed): (bool, i64) = sqlx::query_as(
            "SELECT coalesce(sum(status = ?2), 0) > 0, coalesce(sum(status = ?3), 0)
             FROM chunks WHERE batch_id = ?1",
        )
        .bind(id)
        .bind(ChunkStatus::Failed.as_str())
        .bind(ChunkStatus::Completed.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        if let Some(refused) = cancel::after_update(changed, failed) {
            return Ok(refused);
        }
        sqlx::query("UPDATE batches SET cancelled_at = ?2, cancel_reason = ?3 WHERE id = ?1")
            .bind(id)
            .bind(now)
            .bind(reason)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        tx.commit().await.map_err(from_sqlite)?;
        Ok(Cancel::Cancelled {
            chunks: i32::try_from(changed).unwrap_or(i32::MAX),
            completed: i32::try_from(completed).unwrap_or(i32::MAX),
        })
    }

    async fn cancelled_among(&self, ids: &[Uuid]) -> Result<Vec<Cancelled>> {
        let mut found = Vec::new();
        for id in ids {
            let row: Option<(Uuid, f64, Option<String>)> = sqlx::query_as(
                "SELECT id, cancelled_at, cancel_reason FROM batches
                 WHERE id = ? AND cancelled_at IS NOT NULL",
            )
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlite)?;
            found.extend(row.map(cancelled_of));
        }
        Ok(found)
    }
}
