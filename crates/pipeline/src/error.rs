//! Errors of the pipeline crate, and what a stage does about each: retry
//! in place (infrastructure briefly away), exit and rebuild (state on disk
//! or the process's output can no longer be trusted), or give up on the one
//! message (requeue it; the delivery limit dead-letters one that keeps
//! failing). The stage runtime ([`crate::stage`]) applies this policy.

/// Pipeline errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Broker(#[from] broker::Error),
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The aggregator's state manager failed.
    #[error("aggregator state")]
    State(#[from] stateful_worker::Error),
    #[error("workload")]
    Workload(#[from] workload::Error),
    /// A request the user made cannot be carried out as asked (submit's
    /// arguments, an event file).
    #[error("{0}")]
    Invalid(String),
    /// A setting is malformed (e.g. `CRASH_POINTS`).
    #[error("invalid setting {name}: {reason}")]
    Setting { name: &'static str, reason: String },
    /// A message or stored value could not be encoded.
    #[error("cannot encode {what}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// Writing to the local disk or to stdout failed.
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A task of the stage panicked or was cancelled.
    #[error("{what} task failed")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    /// Something did not happen in the time allowed (the demo's batches).
    #[error("timed out: {0}")]
    TimedOut(String),
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

    /// True when the process must stop and start again: the aggregator's
    /// state may be ahead of its disk (a failed append or fsync, which is
    /// never retried), or the verdict lines cannot be written. Restarting
    /// rebuilds from what is durable.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::State(_) | Error::Io { .. })
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The outcome of checking something against the rules: it passes, or it
/// fails for a reason that becomes a dead-letter reason or a FAILURE
/// verdict. An error (`Err`) is something else: the check could not be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    Pass,
    Fail(String),
}

impl Check {
    /// Fails with `reason` unless `ok`.
    pub fn that(ok: bool, reason: impl FnOnce() -> String) -> Check {
        if ok {
            Check::Pass
        } else {
            Check::Fail(reason())
        }
    }

    /// The first failure of `self` and then `next`.
    pub fn and_then(self, next: impl FnOnce() -> Check) -> Check {
        match self {
            Check::Pass => next(),
            fail => fail,
        }
    }
}
