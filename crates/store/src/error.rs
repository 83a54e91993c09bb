//! Errors of the store crate.

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or the connection broke; retry later.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A query failed for another reason.
    #[error("database query: {0}")]
    Query(String),
    /// Migrations failed.
    #[error("migration: {0}")]
    Migration(String),
    /// Bad configuration (e.g. an unparsable URL).
    #[error("store configuration: {0}")]
    Config(String),
    /// Stored data does not have the expected shape.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The caller passed something the store refuses, e.g. run rows that do
    /// not cover exactly their chunk's run range. Retrying cannot help.
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl Error {
    /// True when the same operation may succeed later.
    pub fn can_be_retried(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Maps a sqlx error that is not a database's own error report: lost
/// connections, an exhausted pool and I/O are retryable.
fn from_sqlx_common(e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Error::Unavailable(e.to_string()),
        sqlx::Error::Configuration(_) => Error::Config(e.to_string()),
        sqlx::Error::Migrate(_) => Error::Migration(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => Error::Corrupt(e.to_string()),
        other => Error::Query(other.to_string()),
    }
}

/// Postgres: SQLSTATE classes that say "try again later" are retryable —
/// connection exceptions (08), operator intervention such as a server
/// shutting down (57P01-57P03), insufficient resources (53), serialization
/// failures and deadlocks (40001, 40P01).
pub(crate) fn from_pg(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e {
        let code = db.code().unwrap_or_default();
        let transient = code.starts_with("08")
            || code.starts_with("53")
            || matches!(
                code.as_ref(),
                "57P01" | "57P02" | "57P03" | "40001" | "40P01"
            );
        return if transient {
            Error::Unavailable(e.to_string())
        } else {
            Error::Query(e.to_string())
        };
    }
    from_sqlx_common(e)
}

/// SQLite: a busy or locked database (primary codes 5 and 6, whatever the
/// extended code) is retryable.
pub(crate) fn from_sqlite(e: sqlx::Error) -> Error {
    if let sqlx::Error::Database(db) = &e {
        let primary = db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff);
        return if matches!(primary, Some(5 | 6)) {
            Error::Unavailable(e.to_string())
        } else {
            Error::Query(e.to_string())
        };
    }
    from_sqlx_common(e)
}
