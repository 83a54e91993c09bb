//! Batches on SQLite: a batch and its chunk rows in one transaction;
//! reading one; the progress `status` shows.

use super::{SqliteStore, get, now, progress_of};
use crate::error::from_sqlite;
use crate::roles::{Batches, Partitions};
use crate::{Batch, BatchProgress, NewBatch, Result, Uuid};

impl Batches for SqliteStore {
    async fn create_batches(&self, batches: &[NewBatch]) -> Result<()> {
        let now = now();
        let partitions = self.partitions().await?;
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
}
