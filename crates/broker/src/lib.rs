//! broker: the one small messaging trait the stages see, and its implementations.
//!
//! Layout:
//! - [`Broker`] / [`Consumer`]: publish-with-confirm, consume with prefetch,
//!   ack / nack (optionally `multiple`). Nothing AMQP-specific leaks through:
//!   queues are the logical [`Queue`] names, headers are plain strings.
//! - [`rabbit`]: RabbitMQ through lapin ([`RabbitBroker`], [`RabbitConfig`]).
//!   Declares the topology idempotently (quorum queues with a delivery limit
//!   and at-least-once dead-lettering, a TTL retry queue), pipelines
//!   publisher confirms, and owns its reconnect loops (publisher and each
//!   consumer) instead of relying on lapin's automatic recovery.
//! - [`memory`]: an in-process broker ([`MemoryBroker`]) with the same
//!   at-least-once semantics (prefetch, redelivery when a consumer goes away,
//!   delivery limit, dead-lettering, delayed retry), for the embedded mode
//!   and for stage tests. It can also inject publish failures and simulated
//!   connection losses.
//! - [`Late`]: a broker connected in the background, for a process that
//!   works without one meanwhile (the web console).
//!
//! Semantics both implementations share:
//! - A publish returns once every message is durable; a message may still be
//!   delivered twice (redelivery, re-publish), so consumers deduplicate on
//!   [`Delivery::msg_id`]. Publishing the same msg_id twice delivers twice.
//! - Messages returned to a queue (nack with requeue, consumer lost) more than
//!   `delivery_limit` times, and messages nacked without requeue, go to
//!   [`Queue::DeadLetter`]. There they carry [`REASON_HEADER`] (the
//!   publisher's, or else `rejected` / `delivery_limit`) and
//!   [`DEATH_REASON_HEADER`] / [`DEATH_COUNT_HEADER`].
//! - Redelivered messages carry [`DELIVERY_COUNT_HEADER`] (returns so far).
//! - Headers are a string map: keys are unique and come back sorted.
//! - [`Queue::Results`] queues have a single active consumer: of all the
//!   consumers of one, only the oldest still subscribed gets deliveries; the
//!   others take over, in turn, when it goes away or cancels.
//! - Acks and nacks of a tag from an older generation (a lost connection) are
//!   ignored. Acking a tag twice is a caller bug: [`MemoryBroker`] returns
//!   [`Error::Invalid`]; RabbitMQ closes the channel, and [`RabbitConsumer`]
//!   reconnects (its unacked deliveries come back, redelivered).
//!
//! Both implementations pass one conformance suite (`tests/conformance/`,
//! run by `tests/memory.rs` and `tests/rabbit.rs`); what only one of them
//! does is tested next to it.
//!
//! This crate knows nothing of batches, chunks or SQL.

use std::future::Future;

mod error;
mod late;
pub mod memory;
pub mod rabbit;

pub use error::{Error, Result, Source};
pub use late::{Late, UNREACHABLE};
pub use memory::{MemoryBroker, MemoryConfig, MemoryConsumer};
pub use rabbit::{QueueStats, RabbitBroker, RabbitConfig, RabbitConsumer, RabbitTls};

/// Default time, in milliseconds, a message waits in [`Queue::Retry`]
/// before it goes back to [`Queue::Work`]: the delay of a retried or
/// leased chunk. (Milliseconds, because the command line takes it so.)
pub const DEFAULT_RETRY_DELAY_MS: u64 = 2_000;

/// Default number of times a message may be returned to its queue (nack with
/// requeue, consumer lost) before it is dead-lettered. Generous on purpose:
/// crash drills kill consumers holding a full prefetch window many times,
/// and a healthy message must not end in the dead-letter queue because of
/// that; the limit only stops a message that crashes every consumer.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 20;

/// The logical queues of the pipeline. Implementations map them to concrete
/// names under a prefix so tests (and several pipelines) can share a broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue {
    /// Chunks to execute.
    Work,
    /// Chunk results for the aggregator, one queue per partition: each has
    /// a single active consumer (one aggregator replica at a time; the
    /// others wait as hot standbys).
    Results(u16),
    /// Aggregates and terminal failures for the verifier.
    Verify,
    /// Delayed retry: messages sit here for the configured delay, then go
    /// back to [`Queue::Work`].
    Retry,
    /// Poison messages, each with an `x-reason` header.
    DeadLetter,
    /// The single results queue of versions before partitions. Never
    /// declared: consumed, where it still exists, only to move what it
    /// holds to the partitions' queues.
    LegacyResults,
}

/// How partition `p` is named in queue names and routing keys: `p03`.
/// The same as the aggregator's state directories (`store::partition::name`,
/// which this crate cannot call; `pipeline`'s tests hold the two equal).
pub fn partition_label(p: u16) -> String {
    format!("p{p:02}")
}

impl Queue {
    /// Every queue of a topology with `partitions` result partitions
    /// (dead-letter targets first).
    pub fn all(partitions: u16) -> Vec<Queue> {
        let mut all = vec![Queue::DeadLetter, Queue::Work];
        all.extend((0..partitions.max(1)).map(Queue::Results));
        all.extend([Queue::Verify, Queue::Retry]);
        all
    }

    /// Short name, the suffix of the concrete queue name: `work`,
    /// `results.p03`, `verify`, `retry`, `dlq`, `results` (legacy).
    pub fn name(self) -> String {
        match self {
            Queue::Work => "work".into(),
            Queue::Results(p) => format!("results.{}", partition_label(p)),
            Queue::Verify => "verify".into(),
            Queue::Retry => "retry".into(),
            Queue::DeadLetter => "dlq".into(),
            Queue::LegacyResults => "results".into(),
        }
    }

    /// Consumed queues dead-letter a message returned too often.
    pub fn has_delivery_limit(self) -> bool {
        matches!(
            self,
            Queue::Work | Queue::Results(_) | Queue::Verify | Queue::LegacyResults
        )
    }

    /// Where a message that dies here goes: retry expires back to work, the
    /// dead-letter queue drops it, everything else to the dead-letter queue.
    pub fn dead_letter_target(self) -> Option<Queue> {
        match self {
            Queue::DeadLetter => None,
            Queue::Retry => Some(Queue::Work),
            _ => Some(Queue::DeadLetter),
        }
    }
}

/// Header carrying the reason a message was dead-lettered.
pub const REASON_HEADER: &str = "x-reason";

/// Header set on redelivered messages: how many times the message was
/// returned to its queue so far (RabbitMQ's quorum-queue delivery count).
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

/// Header set on dead-lettered (or TTL-expired) messages: why the message
/// last left a queue (`rejected`, `delivery_limit` or `expired`).
pub const DEATH_REASON_HEADER: &str = "x-death-reason";

/// Header set with [`DEATH_REASON_HEADER`]: how many times the message died
/// in that queue for that reason.
pub const DEATH_COUNT_HEADER: &str = "x-death-count";

/// AMQP short strings (message ids, header names) hold at most 255 bytes.
const MAX_SHORT_STRING: usize = 255;

/// Rejects messages RabbitMQ could not carry, so both brokers refuse the
/// same input.
pub(crate) fn validate(messages: &[Message]) -> Result<()> {
    for message in messages {
        if message.msg_id.len() > MAX_SHORT_STRING {
            return Err(Error::Invalid(format!(
                "msg_id of {} bytes (max {MAX_SHORT_STRING})",
                message.msg_id.len()
            )));
        }
        if let Some((key, _)) = message
            .headers
            .iter()
            .find(|(key, _)| key.len() > MAX_SHORT_STRING)
        {
            return Err(Error::Invalid(format!(
                "header name of {} bytes (max {MAX_SHORT_STRING})",
                key.len()
            )));
        }
    }
    Ok(())
}

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

    /// Whether `queue` exists (for [`Queue::LegacyResults`], which nothing
    /// declares any more).
    fn queue_exists(&self, queue: Queue) -> impl Future<Output = Result<bool>> + Send;
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

    /// Stops new deliveries (on a single-active-consumer queue the next
    /// consumer becomes active). Deliveries already on their way still come
    /// out of [`Consumer::next`], which then fails with [`Error::Closed`];
    /// acks keep working until the consumer is dropped. So a consumer can
    /// let go of a queue without returning anything to it.
    fn cancel(&mut self) -> impl Future<Output = Result<()>> + Send;
}
