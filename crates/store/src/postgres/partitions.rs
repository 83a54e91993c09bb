//! The aggregator's partitions on Postgres: the fixed count, the epochs
//! that fence owners, the changelog a new owner rebuilds from, replica
//! heartbeats, and the status `batchline partitions` shows
//! (`crate::partition` says what they are for).

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::{Postgres, Transaction};

use super::holder::HOLDER_LOCK_CLASS;
use super::{PgStore, secs};
use crate::error::{from_pg, is_foreign_key_violation};
use crate::partition::{self, Fence, MAX_PARTITIONS};
use crate::{Error, PartitionInfo, ReplicaInfo, Result, Saved, Uuid};

/// `partition` as the `int2` column holds it.
pub(super) fn column(partition: u16) -> i16 {
    i16::try_from(partition).unwrap_or(i16::MAX)
}

fn from_column(partition: i16) -> u16 {
    u16::try_from(partition).unwrap_or_default()
}

impl PgStore {
    /// The partition count, read once (it never changes) and kept.
    pub(super) async fn partition_count(&self) -> Result<u16> {
        let known = self.partitions.load(Ordering::Relaxed);
        if known > 0 {
            return Ok(known);
        }
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM partitions")
            .fetch_one(&self.pool)
            .await
            .map_err(from_pg)?;
        let n = partition::count_of_rows(rows)?;
        self.partitions.store(n, Ordering::Relaxed);
        Ok(n)
    }

    pub(super) async fn init_partition_rows(&self, wanted: Option<u16>) -> Result<u16> {
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        // One initializer at a time (several processes start at once).
        sqlx::query("LOCK TABLE partitions IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        let (has, has_batches): (i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM partitions), EXISTS (SELECT 1 FROM batches)",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_pg)?;
        let has = u16::try_from(has).unwrap_or(MAX_PARTITIONS);
        let count = partition::settle_count(has, wanted, has_batches)?;
        if count != has {
            sqlx::query("DELETE FROM partitions")
                .execute(&mut *tx)
                .await
                .map_err(from_pg)?;
            sqlx::query(
                "INSERT INTO partitions (partition) SELECT g FROM generate_series(0, $1 - 1) AS g",
            )
            .bind(i32::from(count))
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        }
        backfill(&mut tx, count).await?;
        tx.commit().await.map_err(from_pg)?;
        self.partitions.store(count, Ordering::Relaxed);
        Ok(count)
    }

    pub(super) async fn save_result(
        &self,
        batch_id: Uuid,
        result: &str,
        duplicates_dropped: i64,
        fence: Option<Fence>,
    ) -> Result<Saved> {
        let inserted = sqlx::query(
            "INSERT INTO batch_results (batch_id, result, duplicates_dropped)
             SELECT $1, $2, $3
             WHERE $4::int2 IS NULL
                OR EXISTS (SELECT 1 FROM partitions WHERE partition = $4 AND epoch = $5)
             ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(result)
        .bind(duplicates_dropped)
        .bind(fence.map(|f| column(f.partition)))
        .bind(fence.map_or(0, |f| f.epoch))
        .execute(&self.pool)
        .await;
        let inserted = match inserted {
            Ok(done) => done,
            Err(e) if is_foreign_key_violation(&e) => return Ok(Saved::Purged),
            Err(e) => return Err(from_pg(e)),
        };
        if inserted.rows_affected() == 1 {
            return Ok(Saved::Saved);
        }
        match fence {
            Some(f) if !self.holds(f).await? => Ok(Saved::Fenced),
            _ => Ok(Saved::AlreadySaved),
        }
    }

    pub(super) async fn take(&self, partition: u16, owner: &str) -> Result<Fence> {
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE partitions
             SET epoch = epoch + 1, owner = $2, owned_since = now(),
                 handovers = handovers + 1, last_handover_at = now(),
                 last_handover_cause = coalesce(release_cause,
                     CASE WHEN owner IS NULL THEN 'start' ELSE 'failover' END),
                 release_cause = NULL
             WHERE partition = $1
             RETURNING epoch",
        )
        .bind(column(partition))
        .bind(owner)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
        let epoch = epoch.ok_or_else(|| Error::Invalid(format!("no partition {partition}")))?;
        Ok(Fence { partition, epoch })
    }

    pub(super) async fn release(&self, fence: Fence, cause: &str) -> Result<bool> {
        let released = sqlx::query(
            "UPDATE partitions SET owner = NULL, release_cause = $3
             WHERE partition = $1 AND epoch = $2",
        )
        .bind(column(fence.partition))
        .bind(fence.epoch)
        .bind(cause)
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(released.rows_affected() == 1)
    }

    pub(super) async fn holds(&self, fence: Fence) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM partitions WHERE partition = $1 AND epoch = $2)",
        )
        .bind(column(fence.partition))
        .bind(fence.epoch)
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)
    }

    pub(super) async fn changelog(&self, partition: u16) -> Result<Vec<(Uuid, i32, String)>> {
        sqlx::query_as(
            "SELECT c.batch_id, c.chunk, c.result
             FROM batches AS b JOIN chunks AS c ON c.batch_id = b.id
             WHERE b.partition = $1 AND c.status = 'completed'
               AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)
             ORDER BY c.batch_id, c.chunk",
        )
        .bind(column(partition))
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)
    }

    pub(super) async fn unverified(&self, older_than: Duration, limit: i64) -> Result<Vec<Uuid>> {
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

    /// Records that `replica` is alive, with this process's claim holder
    /// lock if it holds one (`replicas` then knows it gone as soon as the
    /// lock's session ends).
    pub(super) async fn heartbeat(&self, replica: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO aggregator_replicas (replica, holder) VALUES ($1, $2)
             ON CONFLICT (replica) DO UPDATE SET last_seen = now(), holder = $2",
        )
        .bind(replica)
        .bind(self.holder_id())
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(())
    }

    /// Releases the partitions the store says `replica` owns: a process
    /// that starts under a name holds none yet, so these are a previous
    /// process's of that name (a container restarted under the same
    /// hostname), which would otherwise look owned by a live replica.
    pub(super) async fn release_all(&self, replica: &str, cause: &str) -> Result<Vec<u16>> {
        let released: Vec<i16> = sqlx::query_scalar(
            "UPDATE partitions SET owner = NULL, release_cause = $2
             WHERE owner = $1 RETURNING partition",
        )
        .bind(replica)
        .bind(cause)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        let mut released: Vec<u16> = released.into_iter().map(from_column).collect();
        released.sort_unstable();
        Ok(released)
    }

    pub(super) async fn replicas(&self, within: Duration) -> Result<Vec<ReplicaInfo>> {
        let rows: Vec<(String, f64, Vec<i16>)> = sqlx::query_as(
            "SELECT r.replica, extract(epoch FROM now() - r.last_seen)::float8,
                    coalesce(array_agg(p.partition ORDER BY p.partition)
                             FILTER (WHERE p.partition IS NOT NULL), '{}')
             FROM aggregator_replicas AS r
             LEFT JOIN partitions AS p ON p.owner = r.replica
             WHERE r.last_seen > now() - make_interval(secs => $1)
               AND (r.holder IS NULL OR EXISTS (
                   SELECT 1 FROM pg_locks AS l
                   WHERE l.locktype = 'advisory' AND l.granted
                     AND l.database = (SELECT oid FROM pg_database
                                       WHERE datname = current_database())
                     AND l.classid = $2::int4::oid AND l.objid = r.holder::oid
                     AND l.objsubid = 2))
             GROUP BY r.replica, r.last_seen
             ORDER BY r.replica",
        )
        .bind(secs(within))
        .bind(HOLDER_LOCK_CLASS)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(rows
            .into_iter()
            .map(|(replica, silent_s, owned)| ReplicaInfo {
                replica,
                silent_s,
                partitions: owned.into_iter().map(from_column).collect(),
            })
            .collect())
    }

    pub(super) async fn status(&self) -> Result<Vec<PartitionInfo>> {
        type Row = (
            i16,
            i64,
            Option<String>,
            Option<f64>,
            i64,
            i64,
            Option<f64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT p.partition, p.epoch, p.owner, extract(epoch FROM p.owned_since)::float8,
                    (SELECT count(*) FROM batches AS b WHERE b.partition = p.partition
                       AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)),
                    p.handovers, extract(epoch FROM p.last_handover_at)::float8,
                    p.last_handover_cause
             FROM partitions AS p ORDER BY p.partition",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(rows
            .into_iter()
            .map(|r| PartitionInfo {
                partition: from_column(r.0),
                epoch: r.1,
                owner: r.2,
                owned_since: r.3,
                open_batches: r.4,
                handovers: r.5,
                last_handover_at: r.6,
                last_handover_cause: r.7,
            })
            .collect())
    }
}

/// Batches created before partitions existed get theirs.
async fn backfill(tx: &mut Transaction<'static, Postgres>, count: u16) -> Result<()> {
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM batches WHERE partition IS NULL")
        .fetch_all(&mut **tx)
        .await
        .map_err(from_pg)?;
    if ids.is_empty() {
        return Ok(());
    }
    let parts: Vec<i16> = ids
        .iter()
        .map(|id| column(partition::of(*id, count)))
        .collect();
    sqlx::query(
        "UPDATE batches SET partition = t.p
         FROM unnest($1::uuid[], $2::int2[]) AS t(id, p) WHERE batches.id = t.id",
    )
    .bind(&ids)
    .bind(&parts)
    .execute(&mut **tx)
    .await
    .map_err(from_pg)?;
    Ok(())
}
