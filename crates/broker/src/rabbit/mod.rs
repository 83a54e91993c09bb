//! RabbitMQ through lapin.
//!
//! - `config`: [`RabbitConfig`] (URL from the environment, queue prefix,
//!   retry delay, delivery limit; the password never printed).
//! - `tls`: [`RabbitTls`], the CA and client certificate of `amqps://`
//!   connections (rustls; the CA is added to the system roots).
//! - `session`: one bounded connection attempt, error mapping, backoff.
//! - `topology`: the five quorum queues and their arguments.
//! - `publisher`: pipelined publish with confirms on a self-healing
//!   connection.
//! - `consumer`: [`RabbitConsumer`], which owns its reconnect loop.
//! - `headers`: string headers to AMQP tables and back.
//! - `version`: the broker's version, read by a probe connection, against
//!   the oldest one the partitions can rely on.
//!
//! The publisher and every consumer have their own connection: RabbitMQ
//! throttles publishing connections under memory pressure, and consumers
//! must keep draining (and acking) while it does.

mod config;
mod consumer;
mod headers;
mod publisher;
mod session;
mod tls;
mod topology;
mod version;

use std::fmt;
use std::sync::Arc;

pub use config::{DEFAULT_PREFIX, ENV_VARS, RabbitConfig};
pub use consumer::RabbitConsumer;
pub use session::{CONNECT_TIMEOUT, HEARTBEAT_S};
pub use tls::RabbitTls;
pub use version::{MIN_VERSION, older_than_required, server_version};

use crate::{Broker, Error, Message, Queue, Result};
use publisher::Publisher;

/// Longest prefix that keeps `{prefix}.results` within AMQP's 255-byte
/// queue names.
const MAX_PREFIX: usize = 240;

/// What a passive declare tells about a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery (not counting unacked ones).
    pub ready: u64,
    /// Consumers subscribed to the queue.
    pub consumers: u64,
}

/// A [`Broker`] over RabbitMQ. Cheap to clone; clones share the publish
/// connection. Dropping the last clone closes it.
#[derive(Clone)]
pub struct RabbitBroker {
    publisher: Arc<Publisher>,
}

impl RabbitBroker {
    /// Connects and declares the topology. One attempt, bounded by
    /// [`CONNECT_TIMEOUT`]: an unreachable broker gives a one-line
    /// [`Error::Connection`], a queue declared elsewhere with other
    /// arguments an [`Error::Config`].
    pub async fn connect(config: RabbitConfig) -> Result<Self> {
        if config.prefix.is_empty() || config.prefix.len() > MAX_PREFIX {
            return Err(Error::config(format!(
                "queue prefix must be 1 to {MAX_PREFIX} bytes, got {}",
                config.prefix.len()
            )));
        }
        Ok(Self {
            publisher: Arc::new(Publisher::connect(config).await?),
        })
    }

    pub fn config(&self) -> &RabbitConfig {
        self.publisher.config()
    }

    /// Ready messages and consumers of `queue`.
    pub async fn queue_stats(&self, queue: Queue) -> Result<QueueStats> {
        let channel = self.publisher.side_channel().await?;
        topology::stats(&channel, self.config(), queue).await
    }

    /// Removes the ready messages of `queue`; returns how many.
    pub async fn purge(&self, queue: Queue) -> Result<u64> {
        let channel = self.publisher.side_channel().await?;
        topology::purge(&channel, self.config(), queue).await
    }

    /// Deletes the five queues of this prefix, messages included. For tests
    /// and benchmarks that declared a private prefix; drop consumers first,
    /// or their reconnect loop declares the queues again.
    pub async fn delete_topology(&self) -> Result<()> {
        let channel = self.publisher.side_channel().await?;
        topology::delete(&channel, self.config()).await
    }
}

impl fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("config", self.config())
            .finish_non_exhaustive()
    }
}

impl Broker for RabbitBroker {
    type Consumer = RabbitConsumer;

    async fn publish(&self, messages: Vec<Message>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        self.publisher.publish(messages).await
    }

    async fn consume(&self, queue: Queue, prefetch: u16) -> Result<RabbitConsumer> {
        RabbitConsumer::start(self.config().clone(), queue, prefetch).await
    }

    async fn queue_depth(&self, queue: Queue) -> Result<u64> {
        Ok(self.queue_stats(queue).await?.ready)
    }

    async fn queue_exists(&self, queue: Queue) -> Result<bool> {
        let channel = self.publisher.side_channel().await?;
        topology::exists(&channel, self.config(), queue).await
    }
}
