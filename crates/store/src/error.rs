//! Errors of the store crate: what went wrong, whether retrying may help,
//! and the driver's error kept as the [`source`](std::error::Error::source)
//! (no sqlx type appears in the API, only a boxed error).

/// The underlying cause of an error (a driver or I/O error).
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database could not be reached or the connection broke; retry
    /// later. `context` says what was being reached ("cannot connect to
    /// Postgres at host:port/db") or just "database unavailable".
    #[error("{context}")]
    Unavailable {
        context: String,
        #[source]
        source: Source,
    },
    /// A statement failed for another reason (the database's own report).
    #[error("database query failed")]
    Query(#[source] Source),
    /// Migrations failed.
    #[error("database migration failed")]
    Migration(#[source] Source),
    /// Bad configuration (e.g. an unparsable URL, a bad schema name).
    #[error("store configuration: {message}")]
    Config {
        message: String,
        #[source]
        source: Option<Source>,
    },
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
        matches!(self, Error::Unavailable { .. })
    }

    /// A configuration error of our own making (no underlying cause).
    pub(crate) fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            source: None,
        }
    }

    /// The database was unavailable for a plain reason.
    pub(crate) fn unavailable(source: impl Into<Source>) -> Self {
        Error::Unavailable {
            context: "database unavailable".into(),
            source: source.into(),
        }
    }

    /// Names what could not be reached, keeping the cause; other errors
    /// pass through.
    pub(crate) fn reaching(self, what: impl Into<String>) -> Self {
        match self {
            Error::Unavailable { source, .. } => Error::Unavailable {
                context: what.into(),
                source,
            },
            other => other,
        }
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
        | sqlx::Error::WorkerCrashed => Error::unavailable(e),
        sqlx::Error::Configuration(_) => Error::Config {
            message: "invalid database settings".into(),
            source: Some(e.into()),
        },
        sqlx::Error::Migrate(_) => Error::Migration(e.into()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => Error::Corrupt(e.to_string()),
        other => Error::Query(other.into()),
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
            Error::unavailable(e)
        } else {
            Error::Query(e.into())
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
            Error::unavailable(e)
        } else {
            Error::Query(e.into())
        };
    }
    from_sqlx_common(e)
}

/// Maps a migrator's error, keeping a failed statement's database error
/// classification (an unreachable server stays retryable).
pub(crate) fn from_migrate(
    e: sqlx::migrate::MigrateError,
    classify: fn(sqlx::Error) -> Error,
) -> Error {
    match e {
        sqlx::migrate::MigrateError::Execute(e) => classify(e),
        other => Error::Migration(other.into()),
    }
}

/// Whether a statement failed because a row it references is gone — for
/// a batch, that it was purged meanwhile (`crate::purge`).
pub(crate) fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.kind() == sqlx::error::ErrorKind::ForeignKeyViolation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_is_kept_as_the_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = from_pg(sqlx::Error::Io(io)).reaching("cannot connect to Postgres at h:1/db");
        assert!(e.can_be_retried());
        assert_eq!(e.to_string(), "cannot connect to Postgres at h:1/db");
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert!(source.is_some_and(|s| s.contains("refused")), "{e:?}");
        // Only unavailability is renamed.
        let q = Error::Corrupt("x".into()).reaching("elsewhere");
        assert!(matches!(q, Error::Corrupt(_)));
    }
}
