//! [`PgStore`]: the [`Store`] on Postgres through sqlx, with embedded
//! migrations (`migrations/postgres/`).
//!
//! Every time comparison uses the database clock (`now()`), so leases mean
//! the same thing to every executor whatever their own clocks say. Sweeper
//! queries lock their candidates with `FOR UPDATE SKIP LOCKED`, so several
//! sweepers split the work instead of doing it twice. Per-run rows go in with
//! one `COPY` per chunk, inside the transaction that completes the chunk.

/// Each batch `b`'s chunk counts by status and its claims, as `c`: what
/// `progress` and the catalog's listing both show. A macro so the
/// statements that use it stay `&'static str`.
macro_rules! chunk_counts {
    () => {
        " LEFT JOIN LATERAL (
              SELECT count(*) FILTER (WHERE status = 'pending') AS pending,
                     count(*) FILTER (WHERE status = 'running') AS running,
                     count(*) FILTER (WHERE status = 'completed') AS completed,
                     count(*) FILTER (WHERE status = 'failed') AS failed,
                     sum(attempts) AS attempts
              FROM chunks WHERE chunks.batch_id = b.id
          ) AS c ON true "
    };
}

/// The columns of [`BatchProgress::from_row`] for a batch `b`, its chunk
/// counts `c` ([`chunk_counts`]) and its verdict `v`: `progress` and
/// `batches_older_than` select them.
macro_rules! progress_columns {
    () => {
        "SELECT b.id, b.name, b.runs, b.chunks, extract(epoch FROM b.created_at)::float8,
                coalesce(c.pending, 0)::int4, coalesce(c.running, 0)::int4,
                coalesce(c.completed, 0)::int4, coalesce(c.failed, 0)::int4,
                coalesce(c.attempts, 0)::int8,
                EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id),
                v.success, nullif(v.reason, ''), extract(epoch FROM v.created_at)::float8"
    };
}

mod catalog;
mod chunks;
mod copy_rows;
mod holder;
mod partitions;
mod purge;

use std::sync::atomic::AtomicU16;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::TryStreamExt;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::chunk::failure_reason;
use crate::error::{from_migrate, from_pg, is_foreign_key_violation};
use crate::{
    AttemptFailure, Batch, BatchProgress, ChunkRef, Claim, Completion, Error, Fence, NewBatch,
    PartitionInfo, ReplicaInfo, Result, RunRows, Saved, Store, Uuid, Verdict, VerdictRecord,
    outcome,
};
use holder::Holder;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// How a [`PgStore`] connects.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Schema to create (if missing) and put first on every connection's
    /// `search_path`; `None` uses the server's default (`public`). Letters,
    /// digits and `_` only.
    pub schema: Option<String>,
    /// Upper bound of the connection pool.
    pub max_connections: u32,
    /// Time allowed to open a connection (and to wait for a pooled one)
    /// before the store reports [`Error::Unavailable`].
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        Self {
            schema: None,
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The results store on Postgres. Cheap to clone (a pool handle).
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    schema: Option<String>,
    /// This process's claim holder lock, once [`Store::hold_claims`] took it.
    holder: Arc<Mutex<Option<Holder>>>,
    /// The partition count once read (0 before): it changes only while no
    /// batch exists.
    partitions: Arc<AtomicU16>,
}

impl PgStore {
    /// Applies the migrations, then fixes the partition count: `wanted` on
    /// a database without partitions (or without batches yet), the
    /// default when `None`; the count. [`Store::migrate`] with a count, so
    /// that `PARTITIONS` applies before a default could.
    pub async fn migrate_with_partitions(&self, wanted: Option<u16>) -> Result<u16> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| from_migrate(e, from_pg))?;
        self.init_partition_rows(wanted).await
    }

    /// Connects with the default options (pool of 8, 5 s connect timeout).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, PgOptions::default()).await
    }

    /// Connects, creating `schema` if missing and setting `search_path` to it
    /// on every pooled connection: tests and drills isolate themselves so.
    pub async fn connect_with_schema(url: &str, schema: &str) -> Result<Self> {
        let options = PgOptions {
            schema: Some(schema.to_owned()),
            ..PgOptions::default()
        };
        Self::connect_with(url, options).await
    }

    /// Connects with explicit options. An unreachable server gives
    /// [`Error::Unavailable`] within `connect_timeout`, naming host, port and
    /// database (never the password).
    pub async fn connect_with(url: &str, options: PgOptions) -> Result<Self> {
        let mut connect: PgConnectOptions =
            url.parse().map_err(|e: sqlx::Error| Error::Config {
                message: "invalid Postgres URL".into(),
                source: Some(e.into()),
            })?;
        let target = format!(
            "{}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or(connect.get_username())
        );
        let reaching = format!("cannot connect to Postgres at {target}");
        let unavailable = |e: sqlx::Error| from_pg(e).reaching(reaching.clone());
        // One direct connection first: the pool would retry a refused
        // connection until its timeout and report only "timed out", while
        // this reports the actual cause (refused, auth, unknown database).
        let mut probe = tokio::time::timeout(
            options.connect_timeout,
            PgConnection::connect_with(&connect),
        )
        .await
        .map_err(|_| {
            let waited = format!("no answer within {:?}", options.connect_timeout);
            Error::unavailable(std::io::Error::new(std::io::ErrorKind::TimedOut, waited))
                .reaching(reaching.clone())
        })?
        .map_err(unavailable)?;
        if let Some(schema) = &options.schema {
            check_schema_name(schema)?;
            create_schema(&mut probe, schema).await?;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        // Closing politely only matters to the server's logs.
        let _ = probe.close().await;

        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            pool,
            schema: options.schema,
            holder: Arc::default(),
            partitions: Arc::default(),
        })
    }

    /// The schema this store was connected to, if any.
    pub fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// Drops this store's schema with everything in it and closes the pool.
    /// For tests and drills that connected with their own schema.
    pub async fn drop_schema(self) -> Result<()> {
        let Some(schema) = &self.schema else {
            return Err(Error::config("drop_schema: store has no schema of its own"));
        };
        // The name was checked at connect time, so quoting it is enough.
        let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        sqlx::query(AssertSqlSafe(sql))
            .execute(&self.pool)
            .await
            .map_err(from_pg)?;
        self.pool.close().await;
        Ok(())
    }

    /// Closes the pool, waiting for connections in use to come back, and
    /// ends the claim holder lock (the chunks it holds become claimable).
    pub async fn close(&self) {
        if let Some(holder) = self.lock_holder().take() {
            holder.release();
        }
        self.pool.close().await;
    }

    fn lock_holder(&self) -> std::sync::MutexGuard<'_, Option<Holder>> {
        // Plain data: a panic elsewhere cannot leave it half-written.
        self.holder.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The holder id this store's claims record, if it holds claims.
    fn holder_id(&self) -> Option<i32> {
        self.lock_holder().as_ref().map(|h| h.id)
    }

    /// A transaction with `settings` (`SET LOCAL …` statements) applied in
    /// one round trip; they end with it.
    async fn begin_with(
        &self,
        settings: &'static str,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self.pool.begin().await.map_err(from_pg)?;
        sqlx::raw_sql(settings)
            .execute(&mut *tx)
            .await
            .map_err(from_pg)?;
        Ok(tx)
    }
}

/// Schema names are interpolated into DDL, so only plain identifiers pass.
fn check_schema_name(schema: &str) -> Result<()> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "schema name {schema:?}: use 1-63 ASCII letters, digits or '_', not starting with a digit"
        )))
    }
}

async fn create_schema(conn: &mut PgConnection, schema: &str) -> Result<()> {
    let sql = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    match sqlx::query(AssertSqlSafe(sql)).execute(&mut *conn).await {
        Ok(_) => Ok(()),
        // Two processes creating the same schema at once: IF NOT EXISTS is
        // not atomic in Postgres, the loser sees a unique violation.
        Err(sqlx::Error::Database(e)) if matches!(e.code().as_deref(), Some("23505" | "42P06")) => {
            Ok(())
        }
        Err(e) => Err(from_pg(e)),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A batch's progress from a row ([`BatchProgress::from_row`]).
fn progress_of(r: &PgRow) -> Result<BatchProgress> {
    BatchProgress::from_row(r).map_err(from_pg)
}

fn get<'r, T>(row: &'r PgRow, i: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(i).map_err(from_pg)
}

/// A non-NULL column's bytes in the binary format (sqlx fetches results
/// in binary).
fn raw(row: &PgRow, i: usize) -> Result<&[u8]> {
    use sqlx::ValueRef;
    let value = row.try_get_raw(i).map_err(from_pg)?;
    if value.is_null() {
        return Err(Error::Corrupt(format!("column {i} is NULL")));
    }
    if value.format() != sqlx::postgres::PgValueFormat::Binary {
        return Err(Error::Corrupt(format!("column {i} came back as text")));
    }
    value
        .as_bytes()
        .map_err(|e| Error::Corrupt(format!("column {i}: {e}")))
}

impl Store for PgStore {
    async fn migrate(&self) -> Result<()> {
        self.migrate_with_partitions(None).await.map(|_| ())
    }

    async fn hold_claims(&self) -> Result<()> {
        if self.holder_id().is_some() {
            return Ok(());
        }
        let options = (*self.pool.connect_options()).clone();
        let holder = Holder::take(options).await?;
        *self.lock_holder() = Some(holder);
        Ok(())
    }

    async fn create_batches(&self, batches: &[NewBatch]) -> Result<()> {
        let partitions = self.partition_count().await?;
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

    async fn mark_published(&self, chunks: &[ChunkRef]) -> Result<()> {
        if chunks.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = chunks.iter().map(|c| c.batch_id).collect();
        let nums: Vec<i32> = chunks.iter().map(|c| c.chunk).collect();
        sqlx::query(
            "UPDATE chunks SET published = true
             FROM unnest($1::uuid[], $2::int4[]) AS t(batch_id, chunk)
             WHERE chunks.batch_id = t.batch_id AND chunks.chunk = t.chunk
               AND NOT chunks.published",
        )
        .bind(&ids)
        .bind(&nums)
        .execute(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(())
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

    async fn claim_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        worker: &str,
        lease: Duration,
        max_attempts: i32,
    ) -> Result<Claim> {
        self.claim((batch_id, chunk), worker, lease, max_attempts)
            .await
    }

    async fn complete_chunk(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        rows: &RunRows,
        result: &str,
    ) -> Result<Completion> {
        self.complete((batch_id, chunk), attempt, rows, result)
            .await
    }

    async fn renew_lease(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        lease: Duration,
    ) -> Result<bool> {
        self.renew((batch_id, chunk), attempt, lease).await
    }

    async fn fail_attempt(
        &self,
        batch_id: Uuid,
        chunk: i32,
        attempt: i32,
        max_attempts: i32,
        error: &str,
    ) -> Result<AttemptFailure> {
        self.fail((batch_id, chunk), attempt, max_attempts, error)
            .await
    }

    async fn chunk_results(&self, batch_id: Uuid) -> Result<Vec<(i32, String)>> {
        sqlx::query_as(
            "SELECT chunk, result FROM chunks
             WHERE batch_id = $1 AND status = 'completed' ORDER BY chunk",
        )
        .bind(batch_id)
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)
    }

    async fn scan_runs<F>(&self, batch_id: Uuid, runs: std::ops::Range<i64>, mut f: F) -> Result<()>
    where
        F: FnMut(i64, &[i32]) + Send,
    {
        // One partition holds the batch's rows (`purge.rs`), read
        // sequentially: a range filter reads the whole partition, which
        // is the batch's own rows only. A custom plan, always: it prunes
        // to that partition when planned, where a cached generic plan
        // would lock every batch's partition at each execution (thousands
        // of locks once many batches are kept). No parallel workers: the
        // verifier already scans one range per core, and extra processes
        // would only compete with it.
        let mut tx = self
            .begin_with(
                "SET LOCAL plan_cache_mode = force_custom_plan;
                 SET LOCAL max_parallel_workers_per_gather = 0",
            )
            .await?;
        {
            // A streamed result: sqlx reads rows off the socket as they are
            // consumed, so memory stays flat whatever the batch size.
            let mut rows = sqlx::query(
                "SELECT run_index, outcome FROM run_results
                 WHERE batch_id = $1 AND run_index >= $2 AND run_index < $3",
            )
            .bind(batch_id)
            .bind(runs.start)
            .bind(runs.end)
            .fetch(&mut *tx);
            let mut values = Vec::new();
            while let Some(row) = rows.try_next().await.map_err(from_pg)? {
                let run = copy_rows::decode_int8(raw(&row, 0)?)?;
                outcome::decode(raw(&row, 1)?, &mut values).map_err(|e| match e {
                    Error::Corrupt(m) => Error::Corrupt(format!("run {run}: {m}")),
                    other => other,
                })?;
                f(run, &values);
            }
        }
        tx.commit().await.map_err(from_pg)?;
        Ok(())
    }

    async fn purge_batch(&self, id: Uuid, force: bool) -> Result<crate::Purge> {
        self.purge(id, force).await
    }

    async fn purged_batch(&self, id: Uuid) -> Result<Option<crate::PurgedBatch>> {
        self.purged(id).await
    }

    async fn purged_among(&self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
        self.purged_of(ids).await
    }

    async fn batches_older_than(&self, age: Duration, limit: i64) -> Result<Vec<BatchProgress>> {
        self.older_than(age, limit).await
    }

    async fn finish_purges(&self) -> Result<u64> {
        self.finish_interrupted_purges().await
    }

    async fn run_rows_bytes(&self) -> Result<i64> {
        self.runs_bytes().await
    }

    async fn save_batch_result(
        &self,
        batch_id: Uuid,
        result: &str,
        duplicates_dropped: i64,
        fence: Option<Fence>,
    ) -> Result<Saved> {
        self.save_result(batch_id, result, duplicates_dropped, fence)
            .await
    }

    async fn batch_result(&self, batch_id: Uuid) -> Result<Option<(String, i64)>> {
        sqlx::query_as("SELECT result, duplicates_dropped FROM batch_results WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(from_pg)
    }

    async fn record_verdict(&self, batch_id: Uuid, verdict: &Verdict) -> Result<VerdictRecord> {
        let inserted = sqlx::query(
            "INSERT INTO verdicts (batch_id, success, reason, line)
             VALUES ($1, $2, $3, $4) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(verdict.success)
        .bind(&verdict.reason)
        .bind(&verdict.line)
        .execute(&self.pool)
        .await;
        let inserted = match inserted {
            Ok(done) => done.rows_affected(),
            Err(e) if is_foreign_key_violation(&e) => return Ok(VerdictRecord::Purged),
            Err(e) => return Err(from_pg(e)),
        };
        if inserted == 1 {
            return Ok(VerdictRecord::New);
        }
        let (success, reason, line, printed): (bool, String, String, bool) = sqlx::query_as(
            "SELECT success, reason, line, printed FROM verdicts WHERE batch_id = $1",
        )
        .bind(batch_id)
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)?;
        Ok(VerdictRecord::Existing {
            verdict: Verdict {
                success,
                reason,
                line,
            },
            printed,
        })
    }

    async fn mark_verdict_printed(&self, batch_id: Uuid) -> Result<()> {
        sqlx::query("UPDATE verdicts SET printed = true WHERE batch_id = $1 AND NOT printed")
            .bind(batch_id)
            .execute(&self.pool)
            .await
            .map_err(from_pg)?;
        Ok(())
    }

    async fn verdict(&self, batch_id: Uuid) -> Result<Option<Verdict>> {
        let row: Option<(bool, String, String)> =
            sqlx::query_as("SELECT success, reason, line FROM verdicts WHERE batch_id = $1")
                .bind(batch_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(from_pg)?;
        Ok(row.map(|(success, reason, line)| Verdict {
            success,
            reason,
            line,
        }))
    }

    async fn take_chunks_to_republish(
        &self,
        unpublished_after: Duration,
        lease_grace: Duration,
        limit: i64,
    ) -> Result<Vec<ChunkRef>> {
        let mut taken: Vec<(Uuid, i32)> = sqlx::query_as(
            "WITH due AS (
                 SELECT batch_id, chunk FROM chunks
                 WHERE ((status = 'pending' AND NOT published
                         AND updated_at < now() - make_interval(secs => $1))
                     OR (status = 'running'
                         AND lease_until < now() - make_interval(secs => $2)))
                   AND (swept_at IS NULL OR swept_at < now() - make_interval(secs => $2))
                 ORDER BY updated_at
                 LIMIT $3
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE chunks AS c SET swept_at = now()
             FROM due WHERE c.batch_id = due.batch_id AND c.chunk = due.chunk
             RETURNING c.batch_id, c.chunk",
        )
        .bind(secs(unpublished_after))
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
                         AND (c.status <> 'completed'
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

    async fn init_partitions(&self, wanted: Option<u16>) -> Result<u16> {
        self.init_partition_rows(wanted).await
    }

    async fn partitions(&self) -> Result<u16> {
        self.partition_count().await
    }

    async fn take_partition(&self, partition: u16, owner: &str) -> Result<Fence> {
        self.take(partition, owner).await
    }

    async fn release_partition(&self, fence: Fence, cause: &str) -> Result<bool> {
        self.release(fence, cause).await
    }

    async fn holds_partition(&self, fence: Fence) -> Result<bool> {
        self.holds(fence).await
    }

    async fn partition_changelog(&self, partition: u16) -> Result<Vec<(Uuid, i32, String)>> {
        self.changelog(partition).await
    }

    async fn aggregated_without_verdict(
        &self,
        older_than: Duration,
        limit: i64,
    ) -> Result<Vec<Uuid>> {
        self.unverified(older_than, limit).await
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

    async fn replica_heartbeat(&self, replica: &str) -> Result<()> {
        self.heartbeat(replica).await
    }

    async fn live_replicas(&self, within: Duration) -> Result<Vec<ReplicaInfo>> {
        self.replicas(within).await
    }

    async fn release_replica(&self, replica: &str, cause: &str) -> Result<Vec<u16>> {
        self.release_all(replica, cause).await
    }

    async fn partition_status(&self) -> Result<Vec<PartitionInfo>> {
        self.status().await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        assert!(check_schema_name("t_1a2b").is_ok());
        for bad in ["", "1abc", "a-b", "a\"b", "a b", &"x".repeat(64)] {
            assert!(
                matches!(check_schema_name(bad), Err(Error::Config { .. })),
                "{bad:?}"
            );
        }
    }
}
