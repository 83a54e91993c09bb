//! Retention on SQLite ([`crate::purge`]): one write transaction records
//! the batch in `purged_batches` and deletes it, its run rows with it
//! (chunks, aggregate and verdict by `ON DELETE CASCADE`). One process
//! owns the file, so there is nothing to finish later.

use std::time::Duration;

use super::{SqliteStore, from_sqlite, now, progress_of};
use crate::purge::{Decision, PurgedRow, decide};
use crate::roles::Retention;
use crate::{BatchProgress, Purge, PurgedBatch, Result, Uuid};

impl Retention for SqliteStore {
    async fn purge_batch(&self, id: Uuid, force: bool) -> Result<crate::Purge> {
        let mut tx = self.begin_immediate().await?;
        let found: Option<(Option<bool>, bool)> = sqlx::query_as(
            "SELECT v.success, b.cancelled_at IS NOT NULL FROM batches AS b LEFT JOIN verdicts AS v ON v.batch_id = b.id
             WHERE b.id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        let success = match decide(
            found.map(|(success, _)| success),
            force || found.is_some_and(|(_, cancelled)| cancelled),
        ) {
            Decision::Purge { success } => success,
            Decision::Refuse => return Ok(Purge::Running),
            Decision::NotThere => {
                drop(tx);
                return Ok(match self.purged_batch(id).await? {
                    Some(_) => Purge::AlreadyPurged,
                    None => Purge::Unknown,
                });
            }
        };
        let now = now();
        sqlx::query(
            "INSERT INTO purged_batches
                 (id, name, runs, chunks, success, created_at, purged_at, runs_dropped_at)
             SELECT id, name, runs, chunks, ?2, created_at, ?3, ?3 FROM batches WHERE id = ?1",
        )
        .bind(id)
        .bind(success)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        for sql in [
            "DELETE FROM run_results WHERE batch_id = ?",
            "DELETE FROM batches WHERE id = ?",
        ] {
            sqlx::query(sql)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
        }
        tx.commit().await.map_err(from_sqlite)?;
        Ok(Purge::Purged)
    }

    async fn purged_batch(&self, id: Uuid) -> Result<Option<crate::PurgedBatch>> {
        let row: Option<PurgedRow> = sqlx::query_as(
            "SELECT id, name, runs, chunks, success, created_at, purged_at
             FROM purged_batches WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(row.map(PurgedBatch::from))
    }

    async fn purged_among(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        let mut purged = Vec::new();
        for &id in ids {
            if self.purged_batch(id).await?.is_some() {
                purged.push(id);
            }
        }
        purged.sort_unstable();
        Ok(purged)
    }

    async fn batches_older_than(&self, age: Duration, limit: i64) -> Result<Vec<BatchProgress>> {
        let rows = sqlx::query(concat!(
            progress_columns!(),
            " FROM batches AS b
             LEFT JOIN verdicts AS v ON v.batch_id = b.id
             LEFT JOIN chunks AS c ON c.batch_id = b.id
             WHERE coalesce(v.created_at, b.created_at) < ?1
             GROUP BY b.id
             ORDER BY coalesce(v.created_at, b.created_at), b.id
             LIMIT ?2",
        ))
        .bind(now() - age.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        rows.iter().map(progress_of).collect()
    }

    async fn finish_purges(&self) -> Result<u64> {
        // One transaction purges everything: nothing is ever left over.
        Ok(0)
    }
}
