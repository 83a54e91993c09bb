//! Retention on Postgres ([`crate::purge`]): a batch's run rows are its
//! own partition of `run_results` (migration `20261201000012_retention`),
//! so purging is two steps:
//!
//! 1. one transaction locks the batch's row, records it in
//!    `purged_batches` and deletes it — chunks, aggregate and verdict go
//!    with it (`ON DELETE CASCADE`). Waiting for the row lock orders the
//!    purge after a chunk completion or verdict already under way; any
//!    later one fails its foreign key;
//! 2. the partition is detached `CONCURRENTLY` and dropped. Not in a
//!    transaction (Postgres refuses), on a connection of its own holding a
//!    session advisory lock per batch, so that two purgers (a person and a
//!    sweeper) never detach the same partition at once. A concurrent
//!    detach takes only a SHARE UPDATE EXCLUSIVE lock on `run_results`:
//!    executors writing and verifiers reading other batches go on; a plain
//!    `DROP TABLE` would queue everyone behind an ACCESS EXCLUSIVE lock.
//!
//! A purge that dies between the two leaves `runs_dropped_at` NULL; the
//! next purge of the batch, or the sweeper's [`PgStore::finish_interrupted_purges`],
//! does step 2 (`DETACH … FINALIZE` when the detach itself was cut short).

use std::time::Duration;

use sqlx::{Connection, PgConnection};

use super::{PgStore, from_pg, progress_of, secs};
use crate::purge::{Decision, PurgedRow, decide};
use crate::roles::Retention;
use crate::{BatchProgress, Purge, PurgedBatch, Result, Uuid};

/// Advisory lock class of a batch's partition drop: `(class, hashtext(id))`.
const PURGE_LOCK_CLASS: i32 = 0x7072_6765; // "prge"

impl PgStore {
    /// Step 2: detaches and drops the batch's partition, if still there,
    /// and records that it is gone. Does nothing when another purger holds
    /// the batch's lock (it is doing the same).
    async fn drop_runs(&self, id: Uuid) -> Result<()> {
        // A connection of its own, closed at the end: the session lock
        // can then never outlive this call on a pooled connection.
        let mut conn = self.pool.acquire().await.map_err(from_pg)?.detach();
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext($2::text))")
                .bind(PURGE_LOCK_CLASS)
                .bind(id)
                .fetch_one(&mut conn)
                .await
                .map_err(from_pg)?;
        if locked {
            drop_partition(&mut conn, id).await?;
        }
        // Closing ends the session and its lock.
        let _ = conn.close().await;
        Ok(())
    }
}

impl Retention for PgStore {
    async fn purge_batch(&self, id: Uuid, force: bool) -> Result<crate::Purge> {
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        // The lock first, the verdict in a statement of its own: a verdict
        // committed while we waited for the lock (the verifier's insert
        // holds the batch row's key lock) is seen by a new statement, not
        // by the locking one, whose joined rows are from before the wait.
        let cancelled: Option<bool> = sqlx::query_scalar(
            "SELECT cancelled_at IS NOT NULL FROM batches WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(from_pg)?;
        let found = match cancelled {
            Some(cancelled) => {
                let success: Option<bool> =
                    sqlx::query_scalar("SELECT success FROM verdicts WHERE batch_id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(from_pg)?;
                Some((success, cancelled))
            }
            None => None,
        };
        let outcome = match decide(
            found.map(|(success, _)| success),
            force || found.is_some_and(|(_, cancelled)| cancelled),
        ) {
            Decision::Refuse => Purge::Running,
            Decision::NotThere if self.purged_batch(id).await?.is_some() => Purge::AlreadyPurged,
            Decision::NotThere => Purge::Unknown,
            Decision::Purge { success } => {
                sqlx::query(
                    "INSERT INTO purged_batches (id, name, runs, chunks, success, created_at)
                     SELECT id, name, runs, chunks, $2, created_at FROM batches WHERE id = $1
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(id)
                .bind(success)
                .execute(&mut *tx)
                .await
                .map_err(from_pg)?;
                sqlx::query("DELETE FROM batches WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(from_pg)?;
                Purge::Purged
            }
        };
        if outcome != Purge::Purged {
            tx.rollback().await.map_err(from_pg)?;
            if outcome != Purge::AlreadyPurged {
                return Ok(outcome);
            }
        } else {
            tx.commit().await.map_err(from_pg)?;
        }
        self.drop_runs(id).await?;
        Ok(outcome)
    }

    async fn purged_batch(&self, id: Uuid) -> Result<Option<crate::PurgedBatch>> {
        let row: Option<PurgedRow> = sqlx::query_as(
            "SELECT id, name, runs, chunks, success, extract(epoch FROM created_at)::float8,
                    extract(epoch FROM purged_at)::float8
             FROM purged_batches WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(row.map(PurgedBatch::from))
    }

    async fn purged_among(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT id FROM purged_batches WHERE id = ANY($1) ORDER BY id")
            .bind(ids)
            .fetch_all(&self.pool)
            .await
            .map_err(from_pg)
    }

    async fn batches_older_than(&self, age: Duration, limit: i64) -> Result<Vec<BatchProgress>> {
        let rows = sqlx::query(concat!(
            progress_columns!(),
            " FROM (SELECT b.* FROM batches AS b LEFT JOIN verdicts AS v ON v.batch_id = b.id
                   WHERE coalesce(v.created_at, b.created_at) < now() - make_interval(secs => $1)
                   ORDER BY coalesce(v.created_at, b.created_at), b.id LIMIT $2) AS b",
            chunk_counts!(),
            "LEFT JOIN verdicts AS v ON v.batch_id = b.id
             ORDER BY coalesce(v.created_at, b.created_at), b.id",
        ))
        .bind(secs(age))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        rows.iter().map(progress_of).collect()
    }

    async fn finish_purges(&self) -> Result<u64> {
        // Older than a minute: a purge between its two steps right now is
        // left to finish on its own.
        let pending: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM purged_batches
             WHERE runs_dropped_at IS NULL AND purged_at < now() - interval '1 minute'
             ORDER BY purged_at LIMIT 100",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        for &id in &pending {
            self.drop_runs(id).await?;
        }
        Ok(pending.len() as u64)
    }
}

/// Detaches (or finishes detaching) and drops the batch's partition, then
/// records that its run rows are gone.
async fn drop_partition(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    let (part, detach_pending): (String, Option<bool>) = sqlx::query_as(
        "SELECT run_results_partition($1),
                (SELECT inhdetachpending FROM pg_inherits
                 WHERE inhrelid = to_regclass(quote_ident(run_results_partition($1))))",
    )
    .bind(id)
    .fetch_one(&mut *conn)
    .await
    .map_err(from_pg)?;
    // `part` is `run_results_` and 32 hex digits (the SQL function), so
    // quoting it is enough.
    let detach = match detach_pending {
        Some(false) => Some("CONCURRENTLY"),
        Some(true) => Some("FINALIZE"),
        None => None,
    };
    if let Some(how) = detach {
        let sql = format!("ALTER TABLE run_results DETACH PARTITION \"{part}\" {how}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut *conn)
            .await
            .map_err(from_pg)?;
    }
    let sql = format!("DROP TABLE IF EXISTS \"{part}\"");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *conn)
        .await
        .map_err(from_pg)?;
    sqlx::query(
        "UPDATE purged_batches SET runs_dropped_at = now()
         WHERE id = $1 AND runs_dropped_at IS NULL",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(from_pg)?;
    Ok(())
}
