//! Batches on Postgres: a batch, its chunk rows and its run rows'
//! partition created in one transaction; reading one; the progress
//! `status` shows.

use super::{PgStore, get, partitions, progress_of};
use crate::error::from_pg;
use crate::roles::{Batches, Partitions};
use crate::{Batch, BatchProgress, NewBatch, Result, Uuid};

impl Batches for PgStore {
    async fn create_batches(&self, batches: &[NewBatch]) -> Result<()> {
        let partitions = self.partitions().await?;
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        for b in batches {
            sqlx::query(
                "INSERT INTO batches (id, name, workload, seed, runs, chunk_size, chunks, partition)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(b.id)
            .bind(&b.name)
            .bind(&b.workload)
            .bind(b.seed)
            .bind(b.runs)
            .bind(b.chunk_size)
            .bind(b.chunks())
            .bind(partitions::column(crate::partition::of(b.id, partitions)))
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
}
