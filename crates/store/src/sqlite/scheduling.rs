//! Fair share on SQLite: the same decisions as on Postgres
//! ([`crate::share`], [`crate::queue`]), each dispatch and charge one
//! write transaction (`BEGIN IMMEDIATE`) instead of row locks.

use super::{SqliteStore, now};
use crate::error::from_sqlite;
use crate::queue::{self, QueueRow, QueueTuple, QueueView, RATE_WINDOW_S};
use crate::roles::Scheduling;
use crate::share::{Budget, Candidate, CandidateRow, Charge, ChargeRow, Clocks, Plan, Settlement};
use crate::{ChunkRef, Result};

/// Executors heard from within this many seconds count in the pool.
const EXECUTOR_SEEN_S: f64 = 15.0;

/// The dispatched chunks waiting in the work queue, and their estimated
/// executor seconds (retried chunks wait in the retry queue: not counted).
const QUEUED: &str = "SELECT count(*), coalesce(sum(charged_s), 0.0) FROM chunks
     WHERE status = 'pending' AND published AND attempts = 0";

impl Scheduling for SqliteStore {
    async fn dispatch(&self, depth: i64, ahead_s: f64, limit: i64) -> Result<Vec<ChunkRef>> {
        // Most calls find the queue full: one read says so, without the
        // write lock; a refill reads it again under the lock.
        let (queued, queued_s): (i64, f64) = sqlx::query_as(QUEUED)
            .fetch_one(&self.pool)
            .await
            .map_err(from_sqlite)?;
        if Budget::refill(depth, ahead_s, queued, queued_s, limit).is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_immediate().await?;
        let vnow: f64 = sqlx::query_scalar("SELECT vnow FROM scheduler WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        let (queued, queued_s): (i64, f64) = sqlx::query_as(QUEUED)
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        let Some(budget) = Budget::refill(depth, ahead_s, queued, queued_s, limit) else {
            tx.commit().await.map_err(from_sqlite)?;
            return Ok(Vec::new());
        };
        let rows: Vec<CandidateRow> = sqlx::query_as(
            "SELECT b.id, b.tenant, b.weight, b.vtime, w.n, b.runs, b.chunk_size,
                    b.created_at, r.sec_per_run
             FROM (SELECT batch_id, count(*) AS n FROM chunks
                   WHERE status = 'pending' AND NOT published GROUP BY batch_id) AS w
             JOIN batches AS b ON b.id = w.batch_id
             LEFT JOIN workload_rates AS r ON r.workload = b.workload
             WHERE b.cancelled_at IS NULL",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        if rows.is_empty() {
            tx.commit().await.map_err(from_sqlite)?;
            return Ok(Vec::new());
        }
        let mut candidates: Vec<Candidate> = rows.into_iter().map(Candidate::from).collect();
        let tenants: Vec<(String, f64, f64)> =
            sqlx::query_as("SELECT name, vtime, vnow FROM tenants")
                .fetch_all(&mut *tx)
                .await
                .map_err(from_sqlite)?;
        let mut clocks = Clocks::from_rows(vnow, tenants);
        let plan = Plan::new(&mut clocks, &mut candidates, budget);
        let stamp = now();
        let mut taken = Vec::with_capacity(plan.takes.len());
        for &(i, n) in &plan.takes {
            let c = &candidates[i];
            sqlx::query("UPDATE batches SET vtime = ? WHERE id = ?")
                .bind(c.vtime)
                .bind(c.batch_id)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
            let mut chunks: Vec<i32> = sqlx::query_scalar(
                "UPDATE chunks SET published = 1, charged_s = ?3, updated_at = ?4
                 WHERE batch_id = ?1 AND chunk IN (
                     SELECT chunk FROM chunks
                     WHERE batch_id = ?1 AND status = 'pending' AND NOT published
                     ORDER BY chunk LIMIT ?2)
                 RETURNING chunk",
            )
            .bind(c.batch_id)
            .bind(n)
            .bind(c.chunk_cost)
            .bind(stamp)
            .fetch_all(&mut *tx)
            .await
            .map_err(from_sqlite)?;
            chunks.sort_unstable();
            taken.push(chunks);
        }
        for (name, clock) in &clocks.tenants {
            sqlx::query(
                "INSERT INTO tenants (name, vtime, vnow) VALUES (?, ?, ?)
                 ON CONFLICT (name) DO UPDATE SET vtime = excluded.vtime, vnow = excluded.vnow",
            )
            .bind(name)
            .bind(clock.vtime)
            .bind(clock.vnow)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        }
        sqlx::query("UPDATE scheduler SET vnow = ? WHERE id = 1")
            .bind(clocks.vnow)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        tx.commit().await.map_err(from_sqlite)?;
        Ok(plan.in_order(&candidates, &taken))
    }

    async fn undispatch(&self, chunks: &[ChunkRef]) -> Result<()> {
        let mut tx = self.begin_immediate().await?;
        for c in chunks {
            sqlx::query(
                "UPDATE chunks SET published = 0, updated_at = ?
                 WHERE batch_id = ? AND chunk = ? AND status = 'pending'",
            )
            .bind(now())
            .bind(c.batch_id)
            .bind(c.chunk)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        }
        tx.commit().await.map_err(from_sqlite)
    }

    async fn charge(&self, charges: &[Charge]) -> Result<()> {
        if charges.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_immediate().await?;
        let mut rows = Vec::with_capacity(charges.len());
        for c in charges {
            let row: Option<ChargeRow> = sqlx::query_as(
                "SELECT c.charged_s, min(b.chunk_size, b.runs - c.chunk * b.chunk_size),
                        b.workload, b.weight, b.tenant, r.sec_per_run
                 FROM chunks AS c JOIN batches AS b ON b.id = c.batch_id
                 LEFT JOIN workload_rates AS r ON r.workload = b.workload
                 WHERE c.batch_id = ? AND c.chunk = ?",
            )
            .bind(c.batch_id)
            .bind(c.chunk)
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlite)?;
            rows.push(row);
        }
        let settled = Settlement::of(charges, &rows);
        for (id, (vtime, used)) in &settled.batches {
            sqlx::query("UPDATE batches SET vtime = vtime + ?, used_s = used_s + ? WHERE id = ?")
                .bind(vtime)
                .bind(used)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
        }
        for ((batch_id, chunk), seconds) in &settled.chunks {
            sqlx::query(
                "UPDATE chunks SET charged_s = NULL, cost_s = coalesce(cost_s, 0) + ?
                 WHERE batch_id = ? AND chunk = ?",
            )
            .bind(seconds)
            .bind(batch_id)
            .bind(chunk)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        }
        for (tenant, vtime) in &settled.tenants {
            sqlx::query("UPDATE tenants SET vtime = vtime + ? WHERE name = ?")
                .bind(vtime)
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .map_err(from_sqlite)?;
        }
        for (workload, rate) in &settled.rates {
            sqlx::query(
                "INSERT INTO workload_rates (workload, sec_per_run, updated_at) VALUES (?, ?, ?)
                 ON CONFLICT (workload) DO UPDATE
                 SET sec_per_run = excluded.sec_per_run, updated_at = excluded.updated_at",
            )
            .bind(workload)
            .bind(rate)
            .bind(now())
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        }
        tx.commit().await.map_err(from_sqlite)
    }

    async fn executor_heartbeat(&self, worker: &str, threads: i32) -> Result<()> {
        let now = now();
        let mut tx = self.begin_immediate().await?;
        sqlx::query("DELETE FROM executors WHERE seen_at < ?")
            .bind(now - 3_600.0)
            .execute(&mut *tx)
            .await
            .map_err(from_sqlite)?;
        sqlx::query(
            "INSERT INTO executors (worker, threads, seen_at) VALUES (?, ?, ?)
             ON CONFLICT (worker) DO UPDATE SET threads = excluded.threads, seen_at = excluded.seen_at",
        )
        .bind(worker)
        .bind(threads.max(1))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlite)?;
        tx.commit().await.map_err(from_sqlite)
    }

    async fn queue(&self) -> Result<QueueView> {
        let now = now();
        let rows: Vec<QueueTuple> = sqlx::query_as(
            "SELECT b.id, b.name, b.tenant, b.weight, b.vtime, b.workload, b.runs, b.chunk_size,
                    b.created_at,
                    coalesce(sum(c.status = 'pending' AND NOT c.published), 0),
                    coalesce(sum(c.status = 'pending' AND c.published), 0),
                    coalesce(sum(c.status = 'running'), 0),
                    coalesce(sum(CASE WHEN c.status = 'completed'
                                 THEN min(b.chunk_size, b.runs - c.chunk * b.chunk_size) END), 0),
                    coalesce(sum(CASE WHEN c.status = 'completed' AND c.completed_at > ?1
                                 THEN min(b.chunk_size, b.runs - c.chunk * b.chunk_size) END), 0),
                    b.used_s, r.sec_per_run
             FROM batches AS b
             JOIN chunks AS c ON c.batch_id = b.id
             LEFT JOIN workload_rates AS r ON r.workload = b.workload
             WHERE b.cancelled_at IS NULL
               AND EXISTS (SELECT 1 FROM chunks AS l WHERE l.batch_id = b.id
                             AND l.status IN ('pending', 'running'))
             GROUP BY b.id",
        )
        .bind(now - RATE_WINDOW_S)
        .fetch_all(&self.pool)
        .await
        .map_err(from_sqlite)?;
        let rows: Vec<QueueRow> = rows.into_iter().map(QueueRow::from).collect();
        let vnow: f64 = sqlx::query_scalar("SELECT vnow FROM scheduler WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(from_sqlite)?;
        let tenants: Vec<(String, f64, f64)> =
            sqlx::query_as("SELECT name, vtime, vnow FROM tenants")
                .fetch_all(&self.pool)
                .await
                .map_err(from_sqlite)?;
        let threads: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(threads), 0) FROM executors WHERE seen_at > ?")
                .bind(now - EXECUTOR_SEEN_S)
                .fetch_one(&self.pool)
                .await
                .map_err(from_sqlite)?;
        Ok(queue::build(
            rows,
            &Clocks::from_rows(vnow, tenants),
            threads,
            now,
        ))
    }

    async fn seconds_per_run(&self, workload: &str) -> Result<Option<f64>> {
        sqlx::query_scalar("SELECT sec_per_run FROM workload_rates WHERE workload = ?")
            .bind(workload)
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlite)
    }
}
