//! Errors of the broker crate, whether they can be retried, and the
//! client library's error kept as the [`source`](std::error::Error::source)
//! (boxed: no lapin type appears in the API).

/// The underlying cause of an error.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Broker errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection to the broker failed or was lost; retrying later may
    /// work. `context` says what was being done.
    #[error("{context}")]
    Connection {
        context: String,
        #[source]
        source: Option<Source>,
    },
    /// The broker refused a publish (nack) or a confirm never came.
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    /// Bad configuration (e.g. an unparsable URL, wrong credentials, a queue
    /// declared elsewhere with other arguments).
    #[error("broker configuration: {context}")]
    Config {
        context: String,
        #[source]
        source: Option<Source>,
    },
    /// The request is invalid and retrying will not help: a msg_id or header
    /// name longer than AMQP's 255-byte short string, or (in-memory broker)
    /// an ack / nack of a delivery tag the consumer does not hold.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The broker was shut down.
    #[error("broker closed")]
    Closed,
}

impl Error {
    /// True when the same operation may succeed later (after a reconnect).
    pub fn can_be_retried(&self) -> bool {
        matches!(self, Error::Connection { .. } | Error::NotConfirmed(_))
    }

    /// A lost or failed connection with no further cause to report.
    pub(crate) fn connection(context: impl Into<String>) -> Self {
        Error::Connection {
            context: context.into(),
            source: None,
        }
    }

    /// A configuration error of our own finding.
    pub(crate) fn config(context: impl Into<String>) -> Self {
        Error::Config {
            context: context.into(),
            source: None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
