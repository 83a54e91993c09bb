//! [`Error`]: why a bench run stopped, with the scenario it concerns and
//! the underlying cause kept as the `source`.

use std::net::SocketAddr;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The options make no run (a size of zero, an unknown section).
    #[error("{0}")]
    Options(String),
    /// Launching, signalling or tearing down a scenario's stack, and the
    /// files the bench writes (`launcher::Error::Io`).
    #[error(transparent)]
    Launch(#[from] launcher::Error),
    #[error("Postgres")]
    Store(#[from] store::Error),
    #[error("RabbitMQ")]
    Broker(#[from] broker::Error),
    #[error("workload")]
    Workload(#[from] workload::Error),
    /// A stage's `/metrics` could not be read.
    #[error("metrics endpoint {addr}: {what}")]
    Metrics {
        addr: SocketAddr,
        what: String,
        #[source]
        source: Option<std::io::Error>,
    },
    /// Submitting the batch, or encoding a message, failed.
    #[error("pipeline")]
    Pipeline(#[from] pipeline::Error),
    /// The pipeline did not do what the measurement needs (no verdict in
    /// time, a failed batch).
    #[error("{0}")]
    Measure(String),
    /// A measurement thread panicked.
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// One scenario failed; its cause follows.
    #[error("scenario {label}")]
    Scenario {
        label: String,
        #[source]
        source: Box<Error>,
    },
    #[error("cannot encode the results")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// This error as the cause of scenario `label` failing.
    pub(crate) fn in_scenario(self, label: &str) -> Error {
        Error::Scenario {
            label: label.to_owned(),
            source: Box::new(self),
        }
    }
}
