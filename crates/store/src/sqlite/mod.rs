//! [`SqliteStore`]: the [`Store`] on an embedded SQLite file, for the
//! zero-setup mode (`batchline demo`), with its own migrations
//! (`migrations/sqlite/`).
//!
//! One process owns the file, so the Postgres row locks become transactions
//! that take the write lock up front (`BEGIN IMMEDIATE`), which also rules out
//! the deadlock of two readers upgrading at once. WAL with
//! `synchronous=FULL`: a commit is on disk before the store returns, because
//! acks depend on it. Times are Unix-epoch seconds (REAL) from this process's
//! clock; a run's outcome is a BLOB in the layout of [`crate::outcome`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::Row;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::error::{from_migrate, from_sqlite};
use crate::roles::{Partitions, Store};
use crate::{BatchProgress, Error, Result};

/// The columns of [`BatchProgress::from_row`] for a batch `b` joined with
/// its chunks `c` (grouped by batch) and its verdict `v`: `progress` and
/// `batches_older_than` select them.
macro_rules! progress_columns {
    () => {
        "SELECT b.id, b.name, b.runs, b.chunks, b.created_at,
                coalesce(sum(c.status = 'pending'), 0), coalesce(sum(c.status = 'running'), 0),
                coalesce(sum(c.status = 'completed'), 0), coalesce(sum(c.status = 'failed'), 0),
                coalesce(sum(c.attempts), 0),
                EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id),
                v.success, nullif(v.reason, ''), v.created_at, b.cancelled_at IS NOT NULL,
                coalesce(sum(CASE WHEN c.status = 'pending' THEN c.attempts
                                  ELSE max(c.attempts - 1, 0) END), 0)"
    };
}

mod batches;
mod chunks;
mod partitions;
mod purge;
mod results;
mod runs;
mod scheduling;
mod sweeps;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a writer waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The results store on an embedded SQLite file. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The partition count once read (0 before): it changes only while no
    /// batch exists.
    partitions: Arc<AtomicU16>,
}

impl SqliteStore {
    /// Opens the database file at `path`, creating it and its directory if
    /// missing. Call [`Store::migrate`] before use.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| Error::Config {
                    message: format!("cannot create directory {}", dir.display()),
                    source: Some(e.into()),
                })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        // A few connections so a long `scan_runs` does not stall the writers
        // (WAL lets readers run beside one writer).
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                let what = format!("cannot open SQLite database {}", path.display());
                match from_sqlite(e) {
                    // Busy or I/O trouble may pass; anything else (not a
                    // database, no permission) needs a person.
                    e @ Error::Unavailable { .. } => e.reaching(what),
                    other => Error::Config {
                        message: what,
                        source: Some(other.into()),
                    },
                }
            })?;
        Ok(Self {
            pool,
            partitions: Arc::default(),
        })
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    async fn begin_immediate(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(from_sqlite)
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// A batch's progress from a row ([`BatchProgress::from_row`]).
fn progress_of(r: &SqliteRow) -> Result<BatchProgress> {
    BatchProgress::from_row(r).map_err(from_sqlite)
}

fn get<'r, T>(row: &'r SqliteRow, i: usize) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(i).map_err(from_sqlite)
}

impl Store for SqliteStore {
    async fn migrate(&self) -> Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| from_migrate(e, from_sqlite))?;
        self.init_partitions(None).await.map(|_| ())
    }
}
