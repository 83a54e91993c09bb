//! stateful-worker: keyed state made durable in CSV append logs, rebuilt
//! after a crash. A key is a batch id (the earlier system called it a
//! client). The user defines the state ([`KeyedState`]): a row type
//! (serde, written as CSV columns), how a row folds into the state, and
//! when the state is ready. [`StatefulWorkerManager`] does the rest:
//! dedupe by msg_id, group commit, tombstones, rebuild, a directory lock.
//!
//! This crate must never know about RabbitMQ, SQL, or any message or
//! result format: it stores rows for keys, nothing else.
//!
//! # Layout
//!
//! - [`manager`]: [`StatefulWorkerManager`]: open (lock + rebuild), process,
//!   commit, complete, and the read accessors.
//! - `state`: the [`KeyedState`] trait the user implements.
//! - `rebuild`: rebuilding one key from its file, with the repair rules.
//! - `scan`: classifying a log's lines (valid, corrupt, torn tail).
//! - `format`: the line format: CSV body plus CRC32.
//! - `tombstones`: the append-only tombstone log and its compaction.
//! - `lock`: the exclusive directory lock with the holder's pid.
//! - [`mod@inspect`]: read-only inspection without the lock ([`inspect()`],
//!   [`inspect_key`], [`inspect_tombstones`]).
//! - `key`: key and msg_id validation, file names.
//! - `fsutil`: fsync of directories, atomic replace, durable append.
//! - [`error`]: the one [`Error`] enum.
//!
//! # On disk
//!
//! A state directory holds:
//!
//! - `LOCK`: the advisory lock; holds the owner's pid.
//! - `{key}.csv`: the key's append log, no header line, one row a line:
//!   `msg_id,<row fields…>,<crc>` where `msg_id` and the row fields are one
//!   CSV record written by the `csv` crate (commas and quotes are quoted)
//!   and `<crc>` is the CRC32 (IEEE, `crc32fast`) of every byte of the line
//!   before the last comma — the msg_id and all fields as written — in 8
//!   lowercase hex digits. Fields may not contain line breaks.
//! - `{key}.csv.corrupt`: lines that failed their CRC, moved out of the log
//!   by a rebuild, each as `<line number>,<the line as found>`.
//! - `tombstones.log`: one `key,<crc>` line per completed key, and
//!   `tombstones.log.corrupt` for its damaged lines.
//! - `*.tmp`: a rewrite in progress; deleted by the next `open`.
//!
//! Keys are 1–128 characters of `[A-Za-z0-9_-]`, so a key cannot name a
//! path outside the directory.
//!
//! # Guarantees
//!
//! - [`process`](StatefulWorkerManager::process) appends to a buffer and
//!   updates memory only after the append succeeded; nothing is durable
//!   until [`commit`](StatefulWorkerManager::commit), which does one
//!   `sync_data` per touched file. Ack messages after `commit` returns.
//! - Dropping the manager hands buffered rows to the OS without an fsync:
//!   they may or may not survive a crash, which dedupe makes harmless.
//! - A failed write or fsync poisons the manager ([`Error::is_fatal`]): the
//!   process should exit and let `open` rebuild. An fsync is never retried.
//! - Rebuild rules: a torn last line (no `\n`, or a CRC failure on the last
//!   line) is cut away; a CRC failure before the last line is quarantined,
//!   reported and never applied; a repeated msg_id is skipped and counted;
//!   the leftover file of a tombstoned key is deleted. A CRC-valid row that
//!   does not decode as the row type is an [`Error::Decode`].
//!
//! # Example: a per-client sum over N chunks
//!
//! Rows are `msg_id,chunk_number,value`; a client is ready once all of its
//! chunks are in.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use stateful_worker::{KeyedState, Processed, StatefulWorkerManager};
//!
//! const CHUNKS: u32 = 3;
//!
//! #[derive(Serialize, Deserialize)]
//! struct Chunk {
//!     chunk_number: u32,
//!     value: i64,
//! }
//!
//! #[derive(Default)]
//! struct ClientSum {
//!     chunks: u32,
//!     sum: i64,
//! }
//!
//! impl KeyedState for ClientSum {
//!     type Row = Chunk;
//!     fn apply(&mut self, row: &Chunk) {
//!         self.chunks += 1;
//!         self.sum += row.value;
//!     }
//!     fn is_ready(&self) -> bool {
//!         self.chunks == CHUNKS
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (mut mgr, _report) = StatefulWorkerManager::<ClientSum>::open(dir.path())?;
//! for (msg_id, chunk_number, value) in [("m1", 0, 10), ("m2", 1, 20)] {
//!     let outcome = mgr.process("client-1", msg_id, Chunk { chunk_number, value })?;
//!     assert_eq!(outcome, Processed::Applied);
//! }
//! // A redelivered message is dropped.
//! let again = mgr.process("client-1", "m1", Chunk { chunk_number: 0, value: 10 })?;
//! assert_eq!(again, Processed::Duplicate);
//! mgr.commit()?; // durable: now the messages may be acked
//!
//! let file = std::fs::read_to_string(dir.path().join("client-1.csv"))?;
//! let first = file.lines().next().unwrap_or_default();
//! assert_eq!(first, format!("m1,0,10,{:08x}", crc32fast::hash(b"m1,0,10")));
//!
//! // A crash and restart: the state comes back from the file.
//! drop(mgr);
//! let (mut mgr, report) = StatefulWorkerManager::<ClientSum>::open(dir.path())?;
//! assert_eq!((report.keys, report.rows), (1, 2));
//! assert_eq!(mgr.state("client-1").map(|s| s.sum), Some(30));
//!
//! mgr.process("client-1", "m3", Chunk { chunk_number: 2, value: 12 })?;
//! mgr.commit()?;
//! assert_eq!(mgr.ready_keys(), vec!["client-1".to_string()]);
//! let total = mgr.state("client-1").map(|s| s.sum);
//! assert_eq!(total, Some(42)); // emit the result, then:
//! mgr.complete("client-1")?;
//!
//! // A late duplicate after cleanup does not start the client again.
//! let late = mgr.process("client-1", "m2", Chunk { chunk_number: 1, value: 20 })?;
//! assert_eq!(late, Processed::AlreadyCompleted);
//! assert!(!dir.path().join("client-1.csv").exists());
//! # Ok(())
//! # }
//! ```

pub mod error;
mod format;
mod fsutil;
pub mod inspect;
mod key;
mod lock;
pub mod manager;
mod rebuild;
mod scan;
mod state;
mod tombstones;

#[cfg(test)]
mod test_support;

pub use error::{Error, Result};
pub use inspect::{KeyFileInfo, RowInfo, inspect, inspect_key, inspect_tombstones};
pub use key::{MAX_KEY_LEN, MAX_MSG_ID_LEN, validate_key};
pub use lock::LOCK_FILE;
pub use manager::{
    CommitSummary, DEFAULT_MAX_OPEN_FILES, Processed, QuarantinedLine, RebuildReport,
    StatefulWorkerManager,
};
pub use state::KeyedState;
pub use tombstones::{TOMBSTONE_CORRUPT, TOMBSTONE_LOG};
