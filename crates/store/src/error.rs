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
}

impl Error {
    /// True when the same operation may succeed later.
    pub fn can_be_retried(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
