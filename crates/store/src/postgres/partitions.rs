//! The aggregator's partitions on Postgres: the fixed count, the epochs
//! that fence owners, the changelog a new owner rebuilds from, replica
//! heartbeats, and the status `batchline partitions` shows
//! (`crate::partition` says what they are for).

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::{Postgres, Transaction};

use super::holder::HOLDER_LOCK_CLASS;
use super::{PgStore, secs};
use crate::error::from_pg;
use crate::partition::{self, Fence, MAX_PARTITIONS};
use crate::roles::Partitions;
use crate::{Error, PartitionInfo, ReplicaInfo, Result, Uuid};

/// `partition` as the `int2` column holds it.
pub(super) fn column(partition: u16) -> i16 {
    i16::try_from(partition).unwrap_or(i16::MAX)
}

fn from_column(partition: i16) -> u16 {
    u16::try_from(partition).unwrap_or_default()
}

impl Partitions for PgStore {
    async fn init_partitions(&self, wanted: Option<u16>) -> Result<u16> {
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

    /// The partition count, read once (it never changes) and kept.
    async fn partitions(&self) -> Result<u16> {
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

    async fn take_partition(&self, partition: u16, owner: &str) -> Result<Fence> {
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

    async fn release_partition(&self, fence: Fence, cause: &str) -> Result<bool> {
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

    async fn holds_partition(&self, fence: Fence) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM partitions WHERE partition = $1 AND epoch = $2)",
        )
        .bind(column(fence.partition))
        .bind(fence.epoch)
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)
    }

    async fn partition_changelog(&self, partition: u16) -> Result<Vec<(Uuid, i32, String)>> {
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

    async fn cancelled_unsealed(&self, partition: u16) -> Result<Vec<Uuid>> {
        sqlx::query_scalar(
            "SELECT b.id FROM batches AS b
             WHERE b.partition = $1 AND b.cancelled_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)
             ORDER BY b.cancelled_at",
        )
        .bind(column(partition))
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)
    }

    async fn predates_partitions(&self) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE created_at <
                 (SELECT installed_on FROM _sqlx_migrations WHERE version = $1))",
        )
        .bind(crate::partition::MIGRATION)
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)
    }

    /// Records that `replica` is alive, with this process's claim holder
    /// lock if it holds one (`live_replicas` then knows it gone as soon as
    /// the lock's session ends).
    async fn replica_heartbeat(&self, replica: &str) -> Result<()> {
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
    async fn release_replica(&self, replica: &str, cause: &str) -> Result<Vec<u16>> {
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

    async fn live_replicas(&self, within: Duration) -> Result<Vec<ReplicaInfo>> {
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

    async fn partition_status(&self) -> Result<Vec<PartitionInfo>> {
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
