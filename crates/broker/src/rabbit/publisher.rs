//! Publishing with confirms over one connection that reconnects itself.
//!
//! Every `basic_publish` of a call is issued concurrently (in lapin 4 an
//! awaited `basic_publish` resolves only once its frames are written, so
//! issuing them one after another serialises on the socket), then all
//! confirms are awaited together. Messages whose confirm is lost with the
//! connection are published again on a new connection; duplicates are
//! possible and consumers deduplicate on msg_id.

use std::time::Duration;

use futures_util::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{info, warn};

use super::session::{self, map_error};
use super::{RabbitConfig, headers, topology};
use crate::{Error, Message, Queue, Result};

/// How long a publish keeps reconnecting and re-publishing before it gives
/// up with a retryable error: long enough to ride out a broker restart.
const RETRY_BUDGET: Duration = Duration::from_secs(60);

/// Publishes issued at once; bounds the frames buffered by one call while
/// all confirms of the call stay in flight.
const ISSUE_WINDOW: usize = 1024;

/// AMQP persistent delivery mode.
const PERSISTENT: u8 = 2;

pub(crate) struct Publisher {
    config: RabbitConfig,
    link: Mutex<Option<Link>>,
    /// Held while issuing publishes: lapin numbers a publish for its confirm
    /// and queues its frames in two steps, and two tasks interleaving those
    /// on one channel would swap their confirms.
    issuing: Mutex<()>,
    generation: std::sync::atomic::AtomicU64,
}

/// One live connection with its confirm-mode publish channel.
struct Link {
    generation: u64,
    channel: Channel,
    /// Dropping the last handle closes the connection.
    connection: Connection,
}

/// What became of one message in one attempt.
enum Outcome {
    Confirmed,
    Nacked,
    Lost(Error),
}

impl Publisher {
    /// Connects (one attempt, so a CLI fails fast) and declares the topology.
    pub(crate) async fn connect(config: RabbitConfig) -> Result<Self> {
        let link = Link::open(&config, 1).await?;
        Ok(Self {
            config,
            link: Mutex::new(Some(link)),
            issuing: Mutex::new(()),
            generation: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub(crate) fn config(&self) -> &RabbitConfig {
        &self.config
    }

    /// The publish channel of the live connection, reconnecting if it died.
    async fn channel(&self) -> Result<(u64, Channel)> {
        let mut link = self.link.lock().await;
        if let Some(live) = link.as_ref()
            && live.channel.status().connected()
        {
            return Ok((live.generation, live.channel.clone()));
        }
        *link = None;
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        let fresh = Link::open(&self.config, generation).await?;
        info!(
            url = %self.config.redacted_url(),
            generation,
            "publisher reconnected to RabbitMQ"
        );
        let channel = fresh.channel.clone();
        *link = Some(fresh);
        Ok((generation, channel))
    }

    /// Drops the connection of `generation` if it is still the current one.
    async fn invalidate(&self, generation: u64) {
        let mut link = self.link.lock().await;
        if link.as_ref().is_some_and(|l| l.generation == generation) {
            *link = None;
        }
    }

    /// A fresh channel on the live connection for one-off operations
    /// (passive declares, purges, deletes), which may close their channel
    /// on failure and must not take the publish channel with them.
    pub(crate) async fn side_channel(&self) -> Result<Channel> {
        let (generation, _) = self.channel().await?;
        let link = self.link.lock().await;
        match link.as_ref() {
            Some(live) if live.generation == generation => live
                .connection
                .create_channel()
                .await
                .map_err(|e| map_error("cannot open a RabbitMQ channel", &e)),
            _ => Err(Error::connection(
                "RabbitMQ connection lost while opening a channel",
            )),
        }
    }

    pub(crate) async fn publish(&self, messages: Vec<Message>) -> Result<()> {
        crate::validate(&messages)?;
        let deadline = Instant::now() + RETRY_BUDGET;
        let mut backoff = session::backoff();
        let mut todo: Vec<&Message> = messages.iter().collect();
        loop {
            let attempt = match self.channel().await {
                Ok((generation, channel)) => {
                    let outcomes = self.publish_once(&channel, &todo).await;
                    let mut lost = Vec::new();
                    let mut last_error = None;
                    let mut nacked = 0usize;
                    for (message, outcome) in todo.iter().zip(outcomes) {
                        match outcome {
                            Outcome::Confirmed => {}
                            Outcome::Nacked => nacked += 1,
                            Outcome::Lost(e) => {
                                lost.push(*message);
                                last_error = Some(e);
                            }
                        }
                    }
                    if nacked > 0 {
                        return Err(Error::NotConfirmed(format!(
                            "RabbitMQ refused {nacked} of {} messages (nacked, or no queue routes them)",
                            todo.len()
                        )));
                    }
                    match last_error {
                        None => return Ok(()),
                        Some(e) => {
                            self.invalidate(generation).await;
                            todo = lost;
                            e
                        }
                    }
                }
                Err(e) if e.can_be_retried() => e,
                Err(e) => return Err(e),
            };
            let delay = backoff.next().unwrap_or(Duration::from_secs(5));
            if Instant::now() + delay > deadline {
                return Err(Error::Connection {
                    context: format!(
                        "{} messages unconfirmed after {}s of retries",
                        todo.len(),
                        RETRY_BUDGET.as_secs()
                    ),
                    source: Some(attempt.into()),
                });
            }
            warn!(
                error = %attempt,
                unconfirmed = todo.len(),
                retry_in_ms = delay.as_millis() as u64,
                "publish to RabbitMQ interrupted; reconnecting to publish again"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Where a message to `queue` is published: results through the
    /// results exchange under their partition's key, everything else to
    /// its queue through the default exchange.
    fn route(&self, queue: Queue) -> (String, String) {
        match queue {
            Queue::Results(p) => (self.config.results_exchange(), topology::routing_key(p)),
            other => (String::new(), self.config.queue_name(other)),
        }
    }

    /// Issues every message on `channel`, then awaits every confirm.
    async fn publish_once(&self, channel: &Channel, messages: &[&Message]) -> Vec<Outcome> {
        let mut confirms = Vec::with_capacity(messages.len());
        for window in messages.chunks(ISSUE_WINDOW) {
            let _issuing = self.issuing.lock().await;
            let issued = join_all(window.iter().map(|message| {
                let properties = BasicProperties::default()
                    .with_delivery_mode(PERSISTENT)
                    .with_message_id(message.msg_id.as_str().into())
                    .with_headers(headers::to_table(&message.headers));
                let (exchange, routing_key) = self.route(message.queue);
                // Mandatory: a message no queue takes comes back instead of
                // being confirmed and dropped.
                let options = BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                };
                async move {
                    channel
                        .basic_publish(
                            exchange.as_str().into(),
                            routing_key.as_str().into(),
                            options,
                            &message.payload,
                            properties,
                        )
                        .await
                }
            }))
            .await;
            confirms.extend(issued);
        }
        join_all(confirms.into_iter().map(|issued| async move {
            let confirm = match issued {
                Ok(confirm) => confirm,
                Err(e) => return Outcome::Lost(map_error("publish failed", &e)),
            };
            match confirm.await {
                Ok(Confirmation::Ack(None)) => Outcome::Confirmed,
                // Unroutable: nothing would ever deliver it. Not retried:
                // the topology is wrong, a reconnect does not fix it.
                Ok(Confirmation::Ack(Some(_))) => Outcome::Nacked,
                Ok(Confirmation::Nack(_)) => Outcome::Nacked,
                // Confirm mode is on for every publish channel, so this
                // means the channel lost its state: publish again.
                Ok(Confirmation::NotRequested) => {
                    Outcome::Lost(Error::NotConfirmed("channel not in confirm mode".into()))
                }
                Err(e) => Outcome::Lost(map_error("publish confirm lost", &e)),
            }
        }))
        .await
    }
}

impl Link {
    async fn open(config: &RabbitConfig, generation: u64) -> Result<Self> {
        let connection = session::connect(config, "publisher").await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| map_error("cannot open a RabbitMQ channel", &e))?;
        topology::declare(&channel, config).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| map_error("cannot enable publisher confirms", &e))?;
        Ok(Self {
            generation,
            channel,
            connection,
        })
    }
}
