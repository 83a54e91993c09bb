//! [`Error`]: what can go wrong when launching, signalling or tearing down
//! a stack, each with the thing it concerns and the underlying cause.

use std::path::PathBuf;

/// The launcher's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A launcher failure. Messages name the process, file or service; the
/// cause is kept as the `source`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be created, read or written.
    #[error("{action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be started.
    #[error("cannot start {} {args}", bin.display())]
    Spawn {
        bin: PathBuf,
        args: String,
        #[source]
        source: std::io::Error,
    },
    /// A process the caller named does not exist in this stack.
    #[error("no process named {0}")]
    NoSuchProcess(String),
    /// A process of that name is already running.
    #[error("{0} is already running")]
    AlreadyRunning(String),
    /// A signal could not be delivered.
    #[error("cannot send {signal} to {name} (pid {pid})")]
    Signal {
        name: String,
        pid: u32,
        signal: &'static str,
        #[source]
        source: nix::Error,
    },
    /// Waiting on a child failed.
    #[error("cannot wait for {name}")]
    Wait {
        name: String,
        #[source]
        source: std::io::Error,
    },
    /// A one-shot command did not finish in time (a hang).
    #[error("`{command}` did not finish within {timeout:?}; stderr so far:\n{stderr}")]
    Timeout {
        command: String,
        timeout: std::time::Duration,
        stderr: String,
    },
    /// A process exited, or did not get ready, when it should have.
    #[error("{name} {what}; the end of {}:\n{tail}", log.display())]
    NotReady {
        name: String,
        what: String,
        log: PathBuf,
        tail: String,
    },
    /// Postgres could not be reached or prepared.
    #[error("Postgres at {target} (set DATABASE_URL)")]
    Postgres {
        target: String,
        #[source]
        source: store::Error,
    },
    /// RabbitMQ could not be reached or its queues not declared or deleted.
    #[error("RabbitMQ at {target} (set RABBITMQ_URL)")]
    Rabbit {
        target: String,
        #[source]
        source: broker::Error,
    },
    /// A service did not answer within the connect timeout.
    #[error("{service} at {target} does not answer within {timeout:?}")]
    NoAnswer {
        service: &'static str,
        target: String,
        timeout: std::time::Duration,
    },
    /// A setting of the drill is invalid (one line, for the user).
    #[error("{0}")]
    Invalid(String),
    /// A `.env` or saved environment file is malformed.
    #[error("{}: {source}", path.display())]
    EnvFile {
        path: PathBuf,
        #[source]
        source: dotenvy::Error,
    },
}

/// An error and its causes on one line: `a: b: c` (what `{:#}` of an
/// `anyhow::Error` prints), for callers that panic or print without anyhow.
pub fn report(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

impl Error {
    /// An [`Error::Spawn`] of `bin args…`, for `map_err`.
    pub(crate) fn spawn<S: AsRef<str>>(
        bin: &std::path::Path,
        args: &[S],
    ) -> impl FnOnce(std::io::Error) -> Error {
        let bin = bin.to_owned();
        let args = args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ");
        move |source| Error::Spawn { bin, args, source }
    }

    /// An [`Error::Io`] for `path`, for `map_err`.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}
