//! Fair share on Postgres: dispatches under the clocks' row lock, charges
//! of measured time, executor heartbeats, the queue ([`crate::share`],
//! [`crate::queue`]).
//!
//! Locks are taken in one order everywhere — the `scheduler` row, then
//! batch rows, then chunk rows, then tenant rows, each by key — the order
//! a cancel (batch, then its chunks) already takes, so no two of them
//! deadlock. Their commits do not wait for the disk ([`soft_state`]).

use sqlx::{Postgres, Transaction};

use super::PgStore;
use crate::error::from_pg;
use crate::queue::{self, QueueRow, QueueTuple, QueueView, RATE_WINDOW_S};
use crate::roles::Scheduling;
use crate::share::{Budget, Candidate, CandidateRow, Charge, ChargeRow, Clocks, Plan, Settlement};
use crate::{ChunkRef, Result, Uuid};

/// Executors heard from within this many seconds count in the pool.
const EXECUTOR_SEEN_S: f64 = 15.0;

/// The dispatched chunks waiting in the work queue, and their estimated
/// executor seconds. A retried chunk (attempts > 0) waits out its delay in
/// the retry queue: it must not hold the work queue's depth meanwhile.
const QUEUED: &str = "SELECT count(*), coalesce(sum(charged_s), 0)::float8 FROM chunks
     WHERE status = 'pending' AND published AND attempts = 0";

impl Scheduling for PgStore {
    async fn dispatch(&self, depth: i64, ahead_s: f64, limit: i64) -> Result<Vec<ChunkRef>> {
        // Most calls find the queue full: one read says so, without the
        // lock or a transaction; a refill reads it again under the lock.
        let (queued, queued_s): (i64, f64) = sqlx::query_as(QUEUED)
            .fetch_one(&self.pool)
            .await
            .map_err(from_pg)?;
        if Budget::refill(depth, ahead_s, queued, queued_s, limit).is_none() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        soft_state(&mut tx).await?;
        let vnow: f64 = sqlx::query_scalar("SELECT vnow FROM scheduler WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(from_pg)?;
        let (queued, queued_s): (i64, f64) = sqlx::query_as(QUEUED)
            .fetch_one(&mut *tx)
            .await
            .map_err(from_pg)?;
        let Some(budget) = Budget::refill(depth, ahead_s, queued, queued_s, limit) else {
            tx.commit().await.map_err(from_pg)?;
            return Ok(Vec::new());
        };
        let rows: Vec<CandidateRow> = sqlx::query_as(
            "SELECT b.id, b.tenant, b.weight, b.vtime, w.n, b.runs, b.chunk_size,
                        extract(epoch FROM b.created_at)::float8, r.sec_per_run
                 FROM (SELECT batch_id, count(*) AS n FROM chunks
                       WHERE status = 'pending' AND NOT published GROUP BY batch_id) AS w
                 JOIN batches AS b ON b.id = w.batch_id
                 LEFT JOIN workload_rates AS r ON r.workload = b.workload
                 WHERE b.cancelled_at IS NULL",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(from_pg)?;
        if rows.is_empty() {
            tx.commit().await.map_err(from_pg)?;
            return Ok(Vec::new());
        }
        let mut candidates: Vec<Candidate> = rows.into_iter().map(Candidate::from).collect();
        let mut clocks = Clocks::from_rows(vnow, tenant_clocks(&mut tx, &candidates).await?);
        let plan = Plan::new(&mut clocks, &mut candidates, budget);
        for &(i, _) in &plan.takes {
            let c = &candidates[i];
            sqlx::query("UPDATE batches SET vtime = $2 WHERE id = $1")
                .bind(c.batch_id)
                .bind(c.vtime)
                .execute(&mut *tx)
                .await
                .map_err(from_pg)?;
        }
        let mut taken = Vec::with_capacity(plan.takes.len());
        for &(i, n) in &plan.takes {
            let c = &candidates[i];
            let mut chunks: Vec<i32> = sqlx::query_scalar(
                "UPDATE chunks SET published = true, charged_s = $3, updated_at = now()
                 WHERE batch_id = $1 AND chunk IN (
                     SELECT chunk FROM chunks
                     WHERE batch_id = $1 AND status = 'pending' AND NOT published
                     ORDER BY chunk LIMIT $2)
                   AND status = 'pending' AND NOT published
                 RETURNING chunk",
            )
            .bind(c.batch_id)
            .bind(n)
            .bind(c.chunk_cost)
            .fetch_all(&mut *tx)
            .await
            .map_err(from_pg)?;
            chunks.sort_unstable();
            taken.push(chunks);
        }
        for (name, clock) in &clocks.tenants {
            sqlx::query(
                "INSERT INTO tenants (name, vtime, vnow) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET vtime = excluded.vtime, vnow = excluded.vnow",
            )
            .bind(name)
            .bind(clock.vtime)
            .bind(clock.vnow)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        }
        sqlx::query("UPDATE scheduler SET vnow = $1 WHERE id = 1")
            .bind(clocks.vnow)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        tx.commit().await.map_err(from_pg)?;
        Ok(plan.in_order(&candidates, &taken))
    }

    async fn undispatch(&self, chunks: &[ChunkRef]) -> Result<()> {
        let (batches, numbers): (Vec<Uuid>, Vec<i32>) =
            chunks.iter().map(|c| (c.batch_id, c.chunk)).unzip();
        sqlx::query(
            "UPDATE chunks AS c SET published = false, updated_at = now()
             FROM unnest($1::uuid[], $2::int[]) AS u(batch_id, chunk)
             WHERE c.batch_id = u.batch_id AND c.chunk = u.chunk AND c.status = 'pending'",
        )
        .bind(&batches)
        .bind(&numbers)
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(())
    }

    async fn charge(&self, charges: &[Charge]) -> Result<()> {
        if charges.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        soft_state(&mut tx).await?;
        let mut rows = Vec::with_capacity(charges.len());
        for c in charges {
            let row: Option<ChargeRow> = sqlx::query_as(
                "SELECT c.charged_s,
                        least(b.chunk_size::bigint, b.runs - c.chunk::bigint * b.chunk_size),
                        b.workload, b.weight, b.tenant, r.sec_per_run
                 FROM chunks AS c JOIN batches AS b ON b.id = c.batch_id
                 LEFT JOIN workload_rates AS r ON r.workload = b.workload
                 WHERE c.batch_id = $1 AND c.chunk = $2",
            )
            .bind(c.batch_id)
            .bind(c.chunk)
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_pg)?;
            rows.push(row);
        }
        let settled = Settlement::of(charges, &rows);
        for (id, (vtime, used)) in &settled.batches {
            sqlx::query(
                "UPDATE batches SET vtime = vtime + $2, used_s = used_s + $3 WHERE id = $1",
            )
            .bind(id)
            .bind(vtime)
            .bind(used)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        }
        for ((batch_id, chunk), seconds) in &settled.chunks {
            sqlx::query(
                "UPDATE chunks SET charged_s = NULL, cost_s = coalesce(cost_s, 0) + $3
                 WHERE batch_id = $1 AND chunk = $2",
            )
            .bind(batch_id)
            .bind(chunk)
            .bind(seconds)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        }
        for (tenant, vtime) in &settled.tenants {
            sqlx::query("UPDATE tenants SET vtime = vtime + $2 WHERE name = $1")
                .bind(tenant)
                .bind(vtime)
                .execute(&mut *tx)
                .await
                .map_err(from_pg)?;
        }
        for (workload, rate) in &settled.rates {
            sqlx::query(
                "INSERT INTO workload_rates (workload, sec_per_run) VALUES ($1, $2)
                 ON CONFLICT (workload) DO UPDATE
                 SET sec_per_run = excluded.sec_per_run, updated_at = now()",
            )
            .bind(workload)
            .bind(rate)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        }
        tx.commit().await.map_err(from_pg)
    }

    async fn executor_heartbeat(&self, worker: &str, threads: i32) -> Result<()> {
        // Executors' names are new with each process: forget the long gone.
        sqlx::query("DELETE FROM executors WHERE seen_at < now() - interval '1 hour'")
            .execute(&self.pool)
            .await
            .map_err(from_pg)?;
        sqlx::query(
            "INSERT INTO executors (worker, threads) VALUES ($1, $2)
             ON CONFLICT (worker) DO UPDATE SET threads = excluded.threads, seen_at = now()",
        )
        .bind(worker)
        .bind(threads.max(1))
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(())
    }

    async fn queue(&self) -> Result<QueueView> {
        let rows = sqlx::query_as::<_, QueueTuple>(
            "SELECT b.id, b.name, b.tenant, b.weight, b.vtime, b.workload, b.runs, b.chunk_size,
                    extract(epoch FROM b.created_at)::float8,
                    count(*) FILTER (WHERE c.status = 'pending' AND NOT c.published),
                    count(*) FILTER (WHERE c.status = 'pending' AND c.published),
                    count(*) FILTER (WHERE c.status = 'running'),
                    coalesce(sum(least(b.chunk_size::bigint, b.runs - c.chunk::bigint * b.chunk_size))
                             FILTER (WHERE c.status = 'completed'), 0)::int8,
                    coalesce(sum(least(b.chunk_size::bigint, b.runs - c.chunk::bigint * b.chunk_size))
                             FILTER (WHERE c.status = 'completed'
                                     AND c.completed_at > now() - make_interval(secs => $1)), 0)::int8,
                    b.used_s, r.sec_per_run
             FROM batches AS b
             JOIN chunks AS c ON c.batch_id = b.id
             LEFT JOIN workload_rates AS r ON r.workload = b.workload
             WHERE b.cancelled_at IS NULL
               AND EXISTS (SELECT 1 FROM chunks AS l WHERE l.batch_id = b.id
                             AND l.status IN ('pending', 'running'))
             GROUP BY b.id, r.sec_per_run",
        )
        .bind(RATE_WINDOW_S)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        let rows: Vec<QueueRow> = rows.into_iter().map(QueueRow::from).collect();
        let (vnow, now): (f64, f64) = sqlx::query_as(
            "SELECT vnow, extract(epoch FROM now())::float8 FROM scheduler WHERE id = 1",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)?;
        let tenants: Vec<(String, f64, f64)> =
            sqlx::query_as("SELECT name, vtime, vnow FROM tenants")
                .fetch_all(&self.pool)
                .await
                .map_err(from_pg)?;
        let clocks = Clocks::from_rows(vnow, tenants);
        let threads: i64 = sqlx::query_scalar(
            "SELECT coalesce(sum(threads), 0)::int8 FROM executors
             WHERE seen_at > now() - make_interval(secs => $1)",
        )
        .bind(EXECUTOR_SEEN_S)
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(queue::build(rows, &clocks, threads, now))
    }

    async fn seconds_per_run(&self, workload: &str) -> Result<Option<f64>> {
        sqlx::query_scalar("SELECT sec_per_run FROM workload_rates WHERE workload = $1")
            .bind(workload)
            .fetch_optional(&self.pool)
            .await
            .map_err(from_pg)
    }
}

/// Dispatches and charges are soft state: their commit need not wait for
/// the disk. Lost to a Postgres crash, a dispatch's chunks go out again
/// (the duplicate messages meet fenced claims) and a charge leaves the
/// estimate in place.
async fn soft_state(tx: &mut Transaction<'_, Postgres>) -> Result<()> {
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut **tx)
        .await
        .map_err(from_pg)?;
    Ok(())
}

/// The clock rows of the candidates' tenants (a tenant never served has none yet).
async fn tenant_clocks(
    tx: &mut Transaction<'_, Postgres>,
    candidates: &[Candidate],
) -> Result<Vec<(String, f64, f64)>> {
    let mut names: Vec<String> = candidates.iter().map(|c| c.tenant.clone()).collect();
    names.sort_unstable();
    names.dedup();
    let rows: Vec<(String, f64, f64)> =
        sqlx::query_as("SELECT name, vtime, vnow FROM tenants WHERE name = ANY($1)")
            .bind(&names)
            .fetch_all(&mut **tx)
            .await
            .map_err(from_pg)?;
    Ok(rows)
}
