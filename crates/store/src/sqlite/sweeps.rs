//! What the sweeper takes on SQLite. One process owns the file, so a
//! stamp in the same transaction is all the exclusion the sweeps need.

use std::time::Duration;

use super::{SqliteStore, now};
use crate::chunk::failure_reason;
use crate::error::from_sqlite;
use crate::roles::Sweeps;
use crate::{ChunkRef, Result, Uuid};

impl Sweeps for SqliteStore {
    async fn take_chunks_to_republish(
        &self,
        queued_after: Duration,
        lease_grace: Duration,
        limit: i64,
    ) -> Result<Vec<ChunkRef>> {
        // One statement is atomic; the single process needs no SKIP LOCKED.
        let mut taken: Vec<(Uuid, i32)> = sqlx::query_as(
            "UPDATE chunks SET swept_at = ?1
             WHERE (batch_id, chunk) IN (
                 SELECT batch_id, chunk FROM chunks
                 WHERE (status = 'pending' AND published AND updated_at < ?1 - ?2
                        AND (swept_at IS NULL OR swept_at < ?1 - max(?2, ?3)))
                    OR (status = 'running' AND lease_until < ?1 - ?3
                        AND (swept_at IS NULL OR swept_at < ?1 - ?3))
                 ORDER BY updated_at
                 LIMIT ?4)
             RETURNING batch_id, chunk",
        )
        .bind(now())
        .bind(queued_after.as_secs_f64())
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
                         AND (c.status NOT IN ('completed', 'cancelled') OR c.completed_at >= ?1 - ?2))
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

    async fn aggregated_without_verdict(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        let now = now();
        sqlx::query_scalar(
            "UPDATE batch_results SET reannounced_at = ?1
             WHERE batch_id IN (
                 SELECT r.batch_id FROM batch_results AS r
                 WHERE r.created_at < ?1 - ?2
                   AND (r.reannounced_at IS NULL OR r.reannounced_at < ?1 - ?2)
                   AND NOT EXISTS (SELECT 1 FROM verdicts AS v WHERE v.batch_id = r.batch_id)
                 ORDER BY r.created_at LIMIT ?3)
             RETURNING batch_id",
        )
        .bind(now)
        .bind(older_than.as_secs_f64())
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)
    }
}
