//! launcher: isolated stacks of the real `batchline` binary, written once
//! for the fault drills, the benchmark and the `make up` drill.
//!
//! # Layout
//! - [`isolation`]: [`Isolation`], a private Postgres schema, RabbitMQ
//!   queue prefix and state directory on the shared [`Services`], and its
//!   teardown.
//! - [`fleet`]: [`Fleet`], named child processes of one binary, restarted
//!   with the env they had; built on [`proc`]'s [`Proc`]: one child in a
//!   process group of its own, stderr appended to its log, stdout lines
//!   captured, signals, exit, readiness (a log line) and peak RSS.
//! - [`stop`]: SIGTERM, a grace period, then SIGKILL — for owned children
//!   and detached services alike.
//! - [`once`]: one-shot runs with a time limit ([`run_once`]).
//! - [`detached`]: services that outlive the command that started them,
//!   found again through pid and env files (and a marker in their
//!   environment, so a reused pid is never taken for one).
//! - [`drill`]: `batchline stack …`, the local mode of `make up`, on
//!   detached services; [`follow`] prints their logs with a prefix.
//! - [`env`]: [`Env`], a child's environment on a clean base, and its
//!   file form.
//! - [`signal`], [`procinfo`]: signals through `nix`; liveness, identity
//!   and peak RSS from `/proc`.
//!
//! This crate knows the binary only by its command line and environment
//! variables; it never links the pipeline, and uses `broker` and `store`
//! only to create and drop an isolation's queues and schema. Liveness and
//! identity come from Linux's `/proc`.

pub mod detached;
pub mod drill;
pub mod env;
pub mod error;
pub mod fleet;
pub mod follow;
pub mod isolation;
pub mod once;
pub mod proc;
pub mod procinfo;
pub mod signal;
pub mod stop;

pub use env::{Env, env_names};
pub use error::{Error, Result, report};
pub use fleet::{Fleet, Stopped};
pub use isolation::{Isolation, Keep, Naming, Services};
pub use nix::sys::signal::Signal;
pub use once::{CliOutput, run_once, run_once_in};
pub use proc::{LineSink, Proc, Spec};
