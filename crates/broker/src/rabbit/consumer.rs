//! A RabbitMQ consumer that owns its reconnect loop.
//!
//! A background task holds the connection and the lapin consumer and pushes
//! deliveries into a channel that `next()` reads (so `next()` is cancel-safe).
//! When the connection or channel dies the task logs a warning, reconnects
//! with backoff, re-declares the topology, sets the prefetch, consumes again
//! and bumps the generation. Deliveries and acks of an older generation are
//! dropped: RabbitMQ redelivers those messages on the new connection.

use std::fmt;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::session::{self, map_error};
use super::{RabbitConfig, headers, topology};
use crate::{Consumer, Delivery, DeliveryTag, Error, Queue, Result};

/// A consumer of one RabbitMQ queue; survives connection loss.
/// Dropping it closes its connection, so its unacked deliveries go back to
/// the queue.
pub struct RabbitConsumer {
    queue: Queue,
    deliveries: mpsc::Receiver<Result<Delivery>>,
    current: Arc<Mutex<Current>>,
    /// Tells the pump to cancel the subscription (see [`Consumer::cancel`]).
    cancel: Arc<Notify>,
    task: JoinHandle<()>,
}

/// The generation deliveries are tagged with, and its channel for acks
/// (`None` while reconnecting).
struct Current {
    generation: u64,
    channel: Option<Channel>,
}

/// A connection consuming one queue.
struct Session {
    consumer: lapin::Consumer,
    channel: Channel,
    _connection: Connection,
}

struct Pump {
    config: RabbitConfig,
    queue: Queue,
    prefetch: u16,
    deliveries: mpsc::Sender<Result<Delivery>>,
    current: Arc<Mutex<Current>>,
    cancel: Arc<Notify>,
}

impl RabbitConsumer {
    /// Connects and starts consuming; the first connection is made here so
    /// an unreachable broker or a topology mismatch is reported at once.
    pub(crate) async fn start(config: RabbitConfig, queue: Queue, prefetch: u16) -> Result<Self> {
        let session = Session::open(&config, queue, prefetch).await?;
        let current = Arc::new(Mutex::new(Current {
            generation: 1,
            channel: Some(session.channel.clone()),
        }));
        // The broker never sends more than `prefetch` unacked deliveries, so
        // this buffer never holds up the lapin consumer.
        // One more slot than the prefetch, for the end-of-cancel marker.
        let (sender, deliveries) = mpsc::channel(usize::from(prefetch).max(1) + 1);
        let cancel = Arc::new(Notify::new());
        let pump = Pump {
            config,
            queue,
            prefetch,
            deliveries: sender,
            current: current.clone(),
            cancel: cancel.clone(),
        };
        let task = tokio::spawn(pump.run(session));
        Ok(Self {
            queue,
            deliveries,
            current,
            cancel,
            task,
        })
    }

    /// The connection generation new deliveries are tagged with (starts at
    /// 1, +1 per reconnect).
    pub fn generation(&self) -> u64 {
        lock(&self.current).generation
    }

    /// The channel to ack `tag` on, or `None` when the tag's connection is
    /// gone (the broker redelivers that message anyway).
    fn channel_for(&self, tag: DeliveryTag) -> Option<Channel> {
        let current = lock(&self.current);
        if current.generation != tag.generation {
            debug!(queue = ?self.queue, ?tag, "ignoring ack of an older connection");
            return None;
        }
        current.channel.clone()
    }
}

fn lock(current: &Mutex<Current>) -> std::sync::MutexGuard<'_, Current> {
    // Plain data: a panic elsewhere cannot leave it half-written.
    current.lock().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for RabbitConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitConsumer")
            .field("queue", &self.queue)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl Drop for RabbitConsumer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Consumer for RabbitConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            match self.deliveries.recv().await {
                Some(Ok(delivery)) => {
                    // Buffered before a reconnect: RabbitMQ redelivers it on
                    // the new connection, so handing it out would only make
                    // a duplicate whose ack is ignored.
                    if delivery.tag.generation == self.generation() {
                        return Ok(delivery);
                    }
                }
                Some(Err(e)) => return Err(e),
                None => return Err(Error::Closed),
            }
        }
    }

    async fn ack(&mut self, tag: DeliveryTag, multiple: bool) -> Result<()> {
        let Some(channel) = self.channel_for(tag) else {
            return Ok(());
        };
        if let Err(e) = channel
            .basic_ack(tag.tag, BasicAckOptions { multiple })
            .await
        {
            // The connection died under the ack: the message comes back on
            // the next connection, which is what ignoring a stale tag means.
            warn!(queue = ?self.queue, error = %e, "ack lost with the connection; RabbitMQ will redeliver");
        }
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        self.cancel.notify_one();
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, requeue: bool) -> Result<()> {
        let Some(channel) = self.channel_for(tag) else {
            return Ok(());
        };
        let options = BasicNackOptions {
            multiple: false,
            requeue,
        };
        if let Err(e) = channel.basic_nack(tag.tag, options).await {
            warn!(queue = ?self.queue, error = %e, "nack lost with the connection; RabbitMQ will redeliver");
        }
        Ok(())
    }
}

impl Session {
    async fn open(config: &RabbitConfig, queue: Queue, prefetch: u16) -> Result<Self> {
        let role = format!("consumer {}", queue.name());
        let connection = session::connect(config, &role).await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| map_error("cannot open a RabbitMQ channel", &e))?;
        topology::declare(&channel, config).await?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| map_error("cannot set the prefetch", &e))?;
        let name = config.queue_name(queue);
        let consumer = channel
            .basic_consume(
                name.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| map_error(&format!("cannot consume {name}"), &e))?;
        Ok(Self {
            consumer,
            channel,
            _connection: connection,
        })
    }
}

impl Pump {
    async fn run(self, mut session: Session) {
        let mut generation = 1;
        loop {
            let reason = tokio::select! {
                reason = self.forward(&mut session, generation) => reason,
                // Nobody reads any more: the consumer was dropped.
                () = self.deliveries.closed() => return,
                () = self.cancel.notified() => {
                    self.cancel_and_drain(&mut session, generation).await;
                    return;
                }
            };
            let Some(reason) = reason else { return };
            warn!(
                queue = ?self.queue,
                generation,
                %reason,
                "RabbitMQ consumer lost its connection; reconnecting"
            );
            lock(&self.current).channel = None;
            drop(session);
            session = match self.reconnect().await {
                Some(session) => session,
                None => return,
            };
            generation += 1;
            *lock(&self.current) = Current {
                generation,
                channel: Some(session.channel.clone()),
            };
            info!(queue = ?self.queue, generation, "RabbitMQ consumer reconnected");
        }
    }

    /// Cancels the subscription, forwards what was already on its way, says
    /// `Closed`, and keeps the connection (acks still go through) until the
    /// consumer is dropped. Never reconnects: a lost connection returns the
    /// unacked deliveries anyway.
    async fn cancel_and_drain(&self, session: &mut Session, generation: u64) {
        let tag = session.consumer.tag();
        match session
            .channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
        {
            Ok(()) => {
                // The stream ends once RabbitMQ confirmed the cancel.
                let _ = self.forward(session, generation).await;
                info!(queue = ?self.queue, "RabbitMQ consumer cancelled");
            }
            Err(e) => {
                warn!(queue = ?self.queue, error = %e, "cancel failed; the connection will close")
            }
        }
        if self.deliveries.send(Err(Error::Closed)).await.is_ok() {
            self.deliveries.closed().await;
        }
    }

    /// Forwards deliveries until the session fails; returns why, or `None`
    /// when the receiving side is gone.
    async fn forward(&self, session: &mut Session, generation: u64) -> Option<String> {
        loop {
            let delivery = match session.consumer.next().await {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => return Some(e.to_string()),
                None => return Some("channel closed or consumer cancelled by the broker".into()),
            };
            let delivery = Delivery {
                tag: DeliveryTag {
                    generation,
                    tag: delivery.delivery_tag,
                },
                msg_id: delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string()),
                headers: headers::from_table(delivery.properties.headers().as_ref(), self.queue),
                redelivered: delivery.redelivered,
                payload: delivery.data,
            };
            if self.deliveries.send(Ok(delivery)).await.is_err() {
                return None;
            }
        }
    }

    /// Reconnects with capped backoff until it works; `None` when it cannot
    /// (a permanent error, handed to `next()`) or nobody listens any more.
    async fn reconnect(&self) -> Option<Session> {
        let mut backoff = session::backoff();
        loop {
            let delay = backoff.next().unwrap_or(std::time::Duration::from_secs(5));
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.deliveries.closed() => return None,
            }
            match Session::open(&self.config, self.queue, self.prefetch).await {
                Ok(session) => return Some(session),
                Err(e) if e.can_be_retried() => {
                    warn!(queue = ?self.queue, error = %e, "RabbitMQ reconnect failed; retrying");
                }
                Err(e) => {
                    warn!(queue = ?self.queue, error = %e, "RabbitMQ reconnect refused; giving up");
                    let _ = self.deliveries.send(Err(e)).await;
                    return None;
                }
            }
        }
    }
}
