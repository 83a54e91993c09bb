//! pipeline: the message contracts and the stages of batchline.
//!
//! Layout:
//! - [`messages`]: versioned JSON contracts (work, chunk result, verify) and
//!   strict decoding; deterministic result msg_ids.
//! - [`submit`]: batches and chunks in one transaction, then confirmed publishes.
//! - [`executor`]: claim → simulate (blocking pool) → commit rows and
//!   completion in one transaction → publish result → ack; retries.
//! - [`sweeper`]: re-publishes lost work and stalled batches' results.
//! - [`aggregator`]: the stateful stage on `stateful_worker`; group commit
//!   before ack; finalization; tombstones.
//! - [`verifier`]: checks aggregates against the per-run rows and
//!   re-simulated runs; one verdict and one line per batch.
//! - [`demo`]: the embedded mode's wiring (in-process broker, SQLite) and
//!   its crash-and-rebuild scenario.
//! - [`health`]: liveness and readiness of a process, behind `/healthz`
//!   and `/readyz`.
//! - [`telemetry`], [`faults`], `retry`, `common`: what the stages share.
//!
//! Stages are generic over the [`broker::Broker`] and [`store::Store`]
//! traits: they never see lapin or sqlx, so the same code runs over
//! RabbitMQ + Postgres and over the in-process broker + SQLite.

pub mod aggregator;
mod common;
pub mod demo;
mod error;
pub mod executor;
pub mod faults;
pub mod health;
pub mod messages;
mod retry;
pub mod submit;
pub mod sweeper;
pub mod telemetry;
pub mod verifier;

pub use common::{BatchCache, LoadedBatch, Lookup};
pub use error::{Error, Result};
