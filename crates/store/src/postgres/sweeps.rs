//! What the sweeper takes on Postgres. Every query locks its candidates
//! with `FOR UPDATE SKIP LOCKED` and stamps them, so several sweepers split
//! the work instead of doing it twice.

use std::time::Duration;

use super::{PgStore, secs};
use crate::chunk::failure_reason;
use crate::error::from_pg;
use crate::roles::Sweeps;
use crate::{ChunkRef, Result, Uuid};

impl Sweeps for PgStore {
    async fn take_chunks_to_republish(
        &self,
        queued_after: Duration,
        lease_grace: Duration,
        limit: i64,
    ) -> Result<Vec<ChunkRef>> {
        let mut taken: Vec<(Uuid, i32)> = sqlx::query_as(
            "WITH due AS (
                 SELECT batch_id, chunk FROM chunks
                 WHERE (status = 'pending' AND published
                        AND updated_at < now() - make_interval(secs => $1)
                        AND (swept_at IS NULL
                             OR swept_at < now() - make_interval(secs => greatest($1, $2))))
                    OR (status = 'running'
                        AND lease_until < now() - make_interval(secs => $2)
                        AND (swept_at IS NULL OR swept_at < now() - make_interval(secs => $2)))
                 ORDER BY updated_at
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE chunks AS c SET swept_at = now()
             FROM due WHERE c.batch_id = due.batch_id AND c.chunk = due.chunk
             RETURNING c.batch_id, c.chunk",
        )
        .bind(secs(queued_after))
        .bind(secs(lease_grace))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
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
            "WITH due AS (
                 SELECT b.id FROM batches AS b
                 WHERE b.created_at < now() - make_interval(secs => $1)
                   AND (b.last_republish_at IS NULL
                        OR b.last_republish_at < now() - make_interval(secs => $1))
                   AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)
                   AND NOT EXISTS (SELECT 1 FROM verdicts AS v WHERE v.batch_id = b.id)
                   AND NOT EXISTS (
                       SELECT 1 FROM chunks AS c WHERE c.batch_id = b.id
                         AND (c.status NOT IN ('completed', 'cancelled')
                              OR c.completed_at >= now() - make_interval(secs => $1)))
                 ORDER BY b.created_at
                 LIMIT $2
                 FOR UPDATE OF b SKIP LOCKED
             )
             UPDATE batches AS b
             SET republish_round = b.republish_round + 1, last_republish_at = now()
             FROM due WHERE b.id = due.id
             RETURNING b.id, b.republish_round",
        )
        .bind(secs(deadline))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        taken.sort_unstable();
        Ok(taken)
    }

    async fn failed_batches_without_verdict(&self, limit: i64) -> Result<Vec<(Uuid, String)>> {
        let rows: Vec<(Uuid, i32, Option<String>)> = sqlx::query_as(
            "SELECT DISTINCT ON (c.batch_id) c.batch_id, c.chunk, c.last_error
             FROM chunks AS c
             WHERE c.status = 'failed'
               AND NOT EXISTS (SELECT 1 FROM verdicts AS v WHERE v.batch_id = c.batch_id)
             ORDER BY c.batch_id, c.chunk
             LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
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
        sqlx::query_scalar(
            "WITH due AS (
                 SELECT r.batch_id FROM batch_results AS r
                 WHERE r.created_at < now() - make_interval(secs => $1)
                   AND (r.reannounced_at IS NULL
                        OR r.reannounced_at < now() - make_interval(secs => $1))
                   AND NOT EXISTS (SELECT 1 FROM verdicts AS v WHERE v.batch_id = r.batch_id)
                 ORDER BY r.created_at LIMIT $2
                 FOR UPDATE OF r SKIP LOCKED
             )
             UPDATE batch_results AS r SET reannounced_at = now()
             FROM due WHERE r.batch_id = due.batch_id
             RETURNING r.batch_id",
        )
        .bind(secs(older_than))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)
    }
}
