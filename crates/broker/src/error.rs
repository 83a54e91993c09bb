//! Errors of the broker crate, and whether they can be retried.

/// Broker errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connection to the broker failed or was lost; retrying later may work.
    #[error("broker connection: {0}")]
    Connection(String),
    /// The broker refused a publish (nack) or a confirm never came.
    #[error("publish not confirmed: {0}")]
    NotConfirmed(String),
    /// Bad configuration (e.g. an unparsable URL).
    #[error("broker configuration: {0}")]
    Config(String),
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
        matches!(self, Error::Connection(_) | Error::NotConfirmed(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
