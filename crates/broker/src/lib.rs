//! broker: the one small messaging trait the stages see, and its implementations.
//!
//! Layout:
//! - [`Broker`] / [`Consumer`]: publish-with-confirm, consume with prefetch,
//!   ack / nack (optionally `multiple`). Nothing AMQP-specific leaks through:
//!   queues are the logical [`Queue`] names, headers are plain strings.
//! - `rabbit`: RabbitMQ through lapin. Declares the topology idempotently,
//!   pipelines publisher confirms, and owns its reconnect loop.
//! - `memory`: an in-process broker with the same at-least-once semantics,
//!   for the embedded mode and for stage tests.
//!
//! This crate knows nothing of batches, chunks or SQL.

use std::future::Future;

mod error;
pub use error::{Error, Result};

/// The logical queues of the pipeline. Implementations map them to concrete
/// names under a prefix so tests (and several pipelines) can share a broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Chunks to execute.
    Work,
    /// Chunk results for the aggregator.
    Results,
    /// Aggregates and terminal failures for the verifier.
    Verify,
    /// Delayed retry: messages sit here for the configured delay, then go
    /// back to [`Queue::Work`].
    Retry,
    /// Poison messages, each with an `x-reason` header.
    DeadLetter,
}

impl Queue {
    pub const ALL: [Queue; 5] = [
        Queue::Work,
        Queue::Results,
        Queue::Verify,
        Queue::Retry,
        Queue::DeadLetter,
    ];

    /// Short name used as the suffix of the concrete queue name.
    pub fn suffix(self) -> &'static str {
        match self {
            Queue::Work => "work",
            Queue::Results => "results",
            Queue::Verify => "verify",
            Queue::Retry => "retry",
            Queue::DeadLetter => "dlq",
        }
    }
}

/// Header carrying the reason a message was dead-lettered.
pub const REASON_HEADER: &str = "x-reason";

/// A message to publish. It is durable (persistent) once `publish` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub queue: Queue,
    /// Stable id of the message; consumers deduplicate on it.
    pub msg_id: String,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

impl Message {
    pub fn new(queue: Queue, msg_id: impl Into<String>, payload: Vec<u8>) -> Self {
        Self {
            queue,
            msg_id: msg_id.into(),
            payload,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }
}

/// Identifies one delivery for ack / nack. It carries the connection
/// generation it arrived on: an ack for a delivery from a connection that has
/// since been lost is dropped (the broker redelivers that message anyway).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryTag {
    pub generation: u64,
    pub tag: u64,
}

/// A received message. It stays unacknowledged (and is redelivered if the
/// consumer goes away) until acked or nacked.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub tag: DeliveryTag,
    pub msg_id: Option<String>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, String)>,
    /// The broker says this message was delivered before.
    pub redelivered: bool,
}

impl Delivery {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Publish side of a broker, and the factory for consumers.
pub trait Broker: Clone + Send + Sync + 'static {
    type Consumer: Consumer;

    /// Publishes all messages with many confirms in flight and returns once
    /// every one is confirmed by the broker (durable). On error, some may have
    /// been published: callers re-publish, consumers deduplicate.
    fn publish(&self, messages: Vec<Message>) -> impl Future<Output = Result<()>> + Send;

    /// Starts consuming `queue` with at most `prefetch` unacked deliveries.
    /// The consumer survives broker restarts (it reconnects by itself).
    fn consume(
        &self,
        queue: Queue,
        prefetch: u16,
    ) -> impl Future<Output = Result<Self::Consumer>> + Send;

    /// Messages ready in `queue` (not counting unacked ones).
    fn queue_depth(&self, queue: Queue) -> impl Future<Output = Result<u64>> + Send;
}

/// One consumer of one queue.
pub trait Consumer: Send + 'static {
    /// Next delivery. Cancel-safe (usable in `select!`). Reconnects on
    /// connection loss; returns `Err` only when it cannot go on.
    fn next(&mut self) -> impl Future<Output = Result<Delivery>> + Send;

    /// Acknowledges `tag` (and, with `multiple`, every earlier delivery of the
    /// same generation). A tag from a lost connection is ignored.
    fn ack(&mut self, tag: DeliveryTag, multiple: bool) -> impl Future<Output = Result<()>> + Send;

    /// Rejects `tag`; with `requeue` it goes back to the queue, otherwise it
    /// is dead-lettered by the broker's queue policy.
    fn nack(&mut self, tag: DeliveryTag, requeue: bool) -> impl Future<Output = Result<()>> + Send;
}
