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
                     sum(attempts) AS attempts,
                     sum(CASE WHEN status = 'pending' THEN attempts
                              ELSE greatest(attempts - 1, 0) END) AS retries
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
                v.success, nullif(v.reason, ''), extract(epoch FROM v.created_at)::float8,
                b.cancelled_at IS NOT NULL, coalesce(c.retries, 0)::int8"
    };
}

mod batches;
mod catalog;
mod chunks;
mod copy_rows;
mod holder;
mod partitions;
mod purge;
mod results;
mod runs;
mod scheduling;
mod sweeps;

use std::sync::atomic::AtomicU16;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::error::{from_migrate, from_pg};
use crate::roles::{Partitions, Store};
use crate::{BatchProgress, Error, Result};
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
        self.init_partitions(wanted).await
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
