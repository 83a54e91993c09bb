//! The aggregator's partitions on SQLite (the demo): the same rows as on
//! Postgres (`crate::partition` says what they are for). Times are this
//! process's clock; `BEGIN IMMEDIATE` stands in for row locks.

use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::{Sqlite, Transaction};

use super::{SqliteStore, now};
use crate::error::from_sqlite;
use crate::partition::{self, Fence, MAX_PARTITIONS};
use crate::roles::Partitions;
use crate::{Error, PartitionInfo, ReplicaInfo, Result, Uuid};

impl Partitions for SqliteStore {
    async fn init_partitions(&self, wanted: Option<u16>) -> Result<u16> {
        let mut tx = self.begin_immediate().await?;
        let (has, has_batches): (i64, bool) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM partitions), EXISTS (SELECT 1 FROM batches)",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        let has = u16::try_from(has).unwrap_or(MAX_PARTITIONS);
        let count = partition::settle_count(has, wanted, has_batches)?;
        if count != has {
            sqlx::query("DELETE FROM partitions")
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
            sqlx::query(
                "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n + 1 < ?1)
                 INSERT INTO partitions (partition) SELECT n FROM g",
            )
            .bind(i32::from(count))
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        }
        backfill(&mut tx, count).await?;
        tx.commit().await.map_err(from_sqlite)?;
        self.partitions.store(count, Ordering::Relaxed);
        Ok(count)
    }

    async fn partitions(&self) -> Result<u16> {
        let known = self.partitions.load(Ordering::Relaxed);
        if known > 0 {
            return Ok(known);
        }
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM partitions")
            .fetch_one(&self.pool)
            .await
            .map_err(from_sqlite)?;
        let n = partition::count_of_rows(rows)?;
        self.partitions.store(n, Ordering::Relaxed);
        Ok(n)
    }

    async fn take_partition(&self, partition: u16, owner: &str) -> Result<Fence> {
        let epoch: Option<i64> = sqlx::query_scalar(
            "UPDATE partitions
             SET epoch = epoch + 1, owner = ?2, owned_since = ?3,
                 handovers = handovers + 1, last_handover_at = ?3,
                 last_handover_cause = coalesce(release_cause,
                     CASE WHEN owner IS NULL THEN 'start' ELSE 'failover' END),
                 release_cause = NULL
             WHERE partition = ?1
             RETURNING epoch",
        )
        .bind(i32::from(partition))
        .bind(owner)
        .bind(now())
        .fetch_optional(&self.pool)
        .await
        .map_err(from_sqlite)?;
        let epoch = epoch.ok_or_else(|| Error::Invalid(format!("no partition {partition}")))?;
        Ok(Fence { partition, epoch })
    }

    async fn release_partition(&self, fence: Fence, cause: &str) -> Result<bool> {
        let released = sqlx::query(
            "UPDATE partitions SET owner = NULL, release_cause = ?3
             WHERE partition = ?1 AND epoch = ?2",
        )
        .bind(i32::from(fence.partition))
        .bind(fence.epoch)
        .bind(cause)
        .execute(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(released.rows_affected() == 1)
    }

    async fn holds_partition(&self, fence: Fence) -> Result<bool> {
        let mut conn = self.pool.acquire().await.map_err(from_sqlite)?;
        holds_in(&mut conn, fence).await
    }

    async fn partition_changelog(&self, partition: u16) -> Result<Vec<(Uuid, i32, String)>> {
        sqlx::query_as(
            "SELECT c.batch_id, c.chunk, c.result
             FROM batches AS b JOIN chunks AS c ON c.batch_id = b.id
             WHERE b.partition = ? AND c.status = 'completed'
               AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)
             ORDER BY c.batch_id, c.chunk",
        )
        .bind(i32::from(partition))
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)
    }

    async fn cancelled_unsealed(&self, partition: u16) -> Result<Vec<Uuid>> {
        sqlx::query_scalar(
            "SELECT b.id FROM batches AS b
             WHERE b.partition = ? AND b.cancelled_at IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)
             ORDER BY b.cancelled_at",
        )
        .bind(i32::from(partition))
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)
    }

    async fn predates_partitions(&self) -> Result<bool> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE created_at <
                 (SELECT CAST(strftime('%s', installed_on) AS REAL)
                  FROM _sqlx_migrations WHERE version = ?1))",
        )
        .bind(crate::partition::MIGRATION)
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlite)
    }

    async fn replica_heartbeat(&self, replica: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO aggregator_replicas (replica, started_at, last_seen) VALUES (?1, ?2, ?2)
             ON CONFLICT (replica) DO UPDATE SET last_seen = ?2",
        )
        .bind(replica)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(())
    }

    /// Releases the partitions recorded as `replica`'s (a previous process
    /// of that name: see the Postgres twin).
    async fn release_replica(&self, replica: &str, cause: &str) -> Result<Vec<u16>> {
        let released: Vec<i32> = sqlx::query_scalar(
            "UPDATE partitions SET owner = NULL, release_cause = ?2
             WHERE owner = ?1 RETURNING partition",
        )
        .bind(replica)
        .bind(cause)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        let mut released: Vec<u16> = released
            .into_iter()
            .map(|p| u16::try_from(p).unwrap_or_default())
            .collect();
        released.sort_unstable();
        Ok(released)
    }

    async fn live_replicas(&self, within: Duration) -> Result<Vec<ReplicaInfo>> {
        let now = now();
        let rows: Vec<(String, f64)> = sqlx::query_as(
            "SELECT replica, ?1 - last_seen FROM aggregator_replicas
             WHERE last_seen > ?1 - ?2 ORDER BY replica",
        )
        .bind(now)
        .bind(within.as_secs_f64())
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        let owned: Vec<(String, i32)> = sqlx::query_as(
            "SELECT owner, partition FROM partitions WHERE owner IS NOT NULL ORDER BY partition",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(rows
            .into_iter()
            .map(|(replica, silent_s)| ReplicaInfo {
                partitions: owned
                    .iter()
                    .filter(|(o, _)| *o == replica)
                    .map(|(_, p)| u16::try_from(*p).unwrap_or_default())
                    .collect(),
                replica,
                silent_s,
            })
            .collect())
    }

    async fn partition_status(&self) -> Result<Vec<PartitionInfo>> {
        type Row = (
            i32,
            i64,
            Option<String>,
            Option<f64>,
            i64,
            i64,
            Option<f64>,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT p.partition, p.epoch, p.owner, p.owned_since,
                    (SELECT count(*) FROM batches AS b WHERE b.partition = p.partition
                       AND NOT EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id)),
                    p.handovers, p.last_handover_at, p.last_handover_cause
             FROM partitions AS p ORDER BY p.partition",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(rows
            .into_iter()
            .map(|r| PartitionInfo {
                partition: u16::try_from(r.0).unwrap_or_default(),
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

pub(super) async fn holds_in(conn: &mut sqlx::SqliteConnection, fence: Fence) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM partitions WHERE partition = ? AND epoch = ?)")
        .bind(i32::from(fence.partition))
        .bind(fence.epoch)
        .fetch_one(conn)
        .await
        .map_err(from_sqlite)
}

/// Batches created before partitions existed get theirs.
async fn backfill(tx: &mut Transaction<'static, Sqlite>, count: u16) -> Result<()> {
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM batches WHERE partition IS NULL")
        .fetch_all(&mut **tx)
        .await
        .map_err(from_sqlite)?;
    for id in ids {
        sqlx::query("UPDATE batches SET partition = ? WHERE id = ?")
            .bind(i32::from(partition::of(id, count)))
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(from_sqlite)?;
    }
    Ok(())
}
