//! pipeline: the message contracts and the stages of batchline.
//!
//! Layout:
//! - [`messages`]: versioned JSON contracts (work, chunk result, verify) and
//!   strict decoding; deterministic result msg_ids.
//! - [`stage`]: the one runtime every consuming stage runs in (consume,
//!   decode, window, concurrency, settle, error policy, drain, throughput
//!   log); a stage is its domain steps behind [`stage::Stage`].
//! - [`submit`]: batches and chunks in one transaction, then confirmed publishes.
//! - [`estimate`]: a submission's run time before it is made, from the
//!   measured (or calibrated) rate and its fair share of the pool.
//! - [`executor`]: claim → simulate (blocking pool) → commit rows and
//!   completion in one transaction → publish result → ack; lease renewal.
//! - [`sweeper`]: re-publishes lost work and stalled batches' results;
//!   runs retention.
//! - [`retention`]: purging batches (`batchline purge`, `RETENTION_DAYS`).
//! - [`cancel`]: stopping batches for good (`batchline cancel`, the
//!   console): the store's cancel, then a nudge to the batch's partition.
//! - [`aggregator`]: the stateful stage on `stateful_worker`; group commit
//!   before ack; finalization; tombstones.
//! - [`verifier`]: checks aggregates against the per-run rows and
//!   re-simulated runs; one verdict and one line per batch.
//! - [`status`]: a batch's progress as `status` and the web console show it.
//! - [`partitions`]: the aggregator's partitions and replicas as
//!   `partitions` and `status` show them.
//! - [`demo`]: the embedded mode's wiring (in-process broker, SQLite) and
//!   its crash-and-rebuild scenario.
//! - [`telemetry`] (counters, phase timings, the 10-s throughput line),
//!   [`health`] (liveness and readiness), [`secret`] (secrets that never
//!   print, from `_FILE`s), [`faults`] (fault injection for
//!   drills), `retry`, `common`, `error` ([`Error`], [`Check`]): what the
//!   stages share.
//!
//! Each stage's settings are one struct deriving `clap::Args`
//! ([`executor::ExecutorSettings`], [`aggregator::AggregatorSettings`],
//! [`verifier::VerifierSettings`]): the command line fills it, the stage's
//! `run` takes it, and each default is written once, in it.
//!
//! Stages are generic over the [`broker::Broker`] and [`store::Store`]
//! traits: they never see lapin or sqlx, so the same code runs over
//! RabbitMQ + Postgres and over the in-process broker + SQLite.
//! `docs/architecture.md` follows a message through these modules.

pub mod aggregator;
pub mod cancel;
mod common;
pub mod demo;
pub mod dispatch;
mod error;
pub mod estimate;
pub mod executor;
pub mod faults;
pub mod health;
pub mod messages;
pub mod partitions;
pub mod retention;
pub mod retry;
pub mod secret;
pub mod stage;
pub mod status;
pub mod submit;
pub mod sweeper;
pub mod telemetry;
pub mod verifier;

pub use common::{BatchCache, LoadedBatch, Lookup};
pub use error::{Check, Error, Result};
