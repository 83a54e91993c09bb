//! Errors of the pipeline crate, and which of them are worth retrying.

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] broker::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error("state: {0}")]
    State(#[from] stateful_worker::Error),
    #[error("workload: {0}")]
    Workload(#[from] workload::Error),
    /// Bad user input (CLI arguments, event file, …).
    #[error("{0}")]
    Invalid(String),
    /// A background task panicked or was cancelled.
    #[error("task failed: {0}")]
    Task(String),
    /// The stage was asked to stop.
    #[error("shutting down")]
    Shutdown,
}

impl Error {
    /// True for infrastructure errors that may go away (broker or database
    /// unreachable): the operation is retried with backoff, not failed.
    pub fn can_be_retried(&self) -> bool {
        match self {
            Error::Broker(e) => e.can_be_retried(),
            Error::Store(e) => e.can_be_retried(),
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
