//! The crate's one error type. `is_fatal` tells a caller whether it must
//! exit and rebuild (a durable write failed) or may carry on.

use std::io;
use std::path::PathBuf;

/// Everything the manager and the inspection functions can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another manager (in this or another process) owns the directory.
    #[error(
        "state directory is already owned by {}; lock file {}",
        holder(*.pid),
        .lock_file.display()
    )]
    Locked {
        lock_file: PathBuf,
        pid: Option<u32>,
    },

    /// A key that could name a path outside the directory, or an odd file.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey { key: String, reason: &'static str },

    /// A msg_id that cannot be stored on one CSV line.
    #[error("invalid msg_id {msg_id:?}: {reason}")]
    InvalidMsgId {
        msg_id: String,
        reason: &'static str,
    },

    /// The row serialized to something that is not one flat CSV line.
    #[error("row cannot be stored as one CSV line: {reason}")]
    InvalidRow { reason: String },

    /// The row could not be serialized by the `csv` crate (e.g. nested data).
    #[error("row cannot be encoded as CSV: {0}")]
    Encode(#[source] csv::Error),

    /// A stored row passed its CRC check but does not decode as the row
    /// type: the row type changed, or a line was edited by hand.
    #[error("{}: line {line}: row does not decode: {source}", .path.display())]
    Decode {
        path: PathBuf,
        line: u64,
        #[source]
        source: csv::Error,
    },

    /// Reading the directory or creating a file failed; nothing was changed
    /// in memory, and no durable write was half done.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// A write, flush, fsync, rename or delete that durability depends on
    /// failed. The manager is poisoned from now on; never retry an fsync:
    /// exit and rebuild from disk.
    #[error(
        "durable write to {} failed: {source}; the state manager refuses further work: exit and rebuild from disk",
        .path.display()
    )]
    WriteFailed {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// An earlier [`Error::WriteFailed`] poisoned the manager.
    #[error(
        "state manager is poisoned by an earlier failed write ({cause}); exit and rebuild from disk"
    )]
    Poisoned { cause: String },
}

impl Error {
    /// True when the process must stop using this manager: exit, restart,
    /// and let `open` rebuild from what is on disk.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Error::WriteFailed { .. } | Error::Poisoned { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

fn holder(pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!("process {pid}"),
        None => "another process (pid unknown)".to_owned(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
