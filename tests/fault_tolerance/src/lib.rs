//! fault_tolerance: the harness of the fault drills. Tests spawn the real
//! `batchline` binary against the real RabbitMQ and Postgres, kill its
//! processes with SIGKILL, and judge the outcome by the verifier's stdout
//! lines and the rows in Postgres — never by log text.
//!
//! It is a test layer over the `launcher` crate, which owns the isolation
//! (schema, queue prefix, directory) and the processes; what is here is
//! what tests need on top: panics that say what was expected, waiting for
//! verdicts, message injection, SQL for assertions, a failure report.
//!
//! # Layout
//! - [`binary`]: where the binary is, the drills' base environment, and
//!   one-shot runs of it with a time limit.
//! - [`stack`]: [`Stack`], an isolated pipeline (a `launcher::Isolation`
//!   and a `launcher::Fleet`) with named processes, injection of raw
//!   messages, SQL for assertions, and cleanup on drop.
//! - [`verdict`]: the verifier's line format, parsed.
//! - [`expect`]: aggregates computed in-process, to compare with Postgres;
//!   a tie-heavy event.
//! - [`slots`]: at most [`slots::MAX_STACKS`] stacks at once per test binary.
//! - [`services`]: restarting the shared RabbitMQ and Postgres (drill 6).
//! - [`http`]: GET a stage's probe server, POST JSON to the web console.
//! - [`proxy`]: a TCP proxy in front of one service that a drill opens
//!   late, cuts and heals (a service not up yet, a network cut).
//! - [`tls`]: a throwaway PKI and a TLS-terminating proxy in front of the
//!   shared services, for the TLS drills.
//!
//! # Isolation and parallelism
//! Every [`Stack`] has a random schema, queue prefix and temp dir, so tests
//! never see each other's data. Each stack runs 3–5 processes; to keep a
//! 2-core CI machine responsive, [`Stack::new`] waits for one of
//! [`slots::MAX_STACKS`] slots (cargo runs test binaries one after another,
//! so this bounds the whole package).
//!
//! # Running
//! ```sh
//! cargo build -p batchline && cargo test -p fault_tolerance
//! ```
//! - `BATCHLINE_BIN` picks the binary (else `$CARGO_TARGET_DIR/debug/batchline`,
//!   else `<workspace>/target/debug/batchline`).
//! - `DATABASE_URL`, `RABBITMQ_URL` point at the services (local defaults).
//! - `FT_MAX_STACKS` changes the number of stacks at once (default 2).
//! - `FT_KEEP=1` keeps each stack's temp dir, schema and queues and prints
//!   where; a failing test always keeps its temp dir and prints every
//!   process's log tail.
//! - `RUST_LOG` is passed to the processes (e.g. `info,pipeline=debug`).
//! - `tests/service_restarts.rs` restarts the machine's RabbitMQ application
//!   and Postgres cluster: skip it (`--skip restarted`) when others share them.
//!
//! This crate is test code: a failed step panics with a message saying
//! what was expected, which is how a test fails.
#![allow(clippy::expect_used, clippy::unwrap_used)]

pub mod binary;
pub mod expect;
pub mod http;
pub mod proxy;
pub mod services;
pub mod slots;
pub mod stack;
pub mod tls;
pub mod verdict;

pub use binary::{CliOutput, batchline_bin, run_cli};
pub use expect::{expected_summary, twins_event};
pub use stack::Stack;
pub use verdict::VerdictLine;

/// Postgres URL of the tests (`DATABASE_URL`, local default).
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// RabbitMQ URL of the tests (`RABBITMQ_URL`, local default).
pub fn rabbitmq_url() -> String {
    std::env::var("RABBITMQ_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The pid in a default aggregator replica id
/// (`aggregator-HOST-PID-RANDOM`), to tell which process owns a partition.
pub fn replica_pid(owner: &str) -> Option<u32> {
    owner.rsplit('-').nth(1)?.parse().ok()
}

/// `url` with its host and port replaced by `addr` (a proxy in front of
/// the service).
pub fn url_via(url: &str, addr: std::net::SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
    parsed
        .set_ip_host(addr.ip())
        .unwrap_or_else(|()| panic!("{url:?} takes no host"));
    parsed
        .set_port(Some(addr.port()))
        .unwrap_or_else(|()| panic!("{url:?} takes no port"));
    parsed.to_string()
}

/// Where the service of `url` listens (`default_port` when the URL has
/// none), e.g. to put a proxy in front of it.
pub fn service_addr(url: &str, default_port: u16) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("{url:?}: {e}"));
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let port = parsed.port().unwrap_or(default_port);
    (host, port)
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("cannot resolve {host}:{port}: {e}"))
        .next()
        .unwrap_or_else(|| panic!("{host}:{port} resolves to nothing"))
}
