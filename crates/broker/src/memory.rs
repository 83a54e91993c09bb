//! The in-process broker: RabbitMQ's at-least-once contract without a server.
//!
//! It copies what the stages can observe of a quorum queue: per-queue FIFO;
//! deliveries pushed round-robin to the consumers that have prefetch credit;
//! unacked deliveries return to the front of the queue (`redelivered`) when
//! their consumer is dropped or nacks with requeue; a message returned more
//! than `delivery_limit` times, or nacked without requeue, is dead-lettered
//! with a reason; the retry queue holds messages for `retry_delay` and then
//! moves them to work. Test hooks inject publish failures
//! ([`MemoryBroker::fail_next_publishes`]) and connection losses
//! ([`MemoryConsumer::simulate_connection_loss`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{
    Broker, Consumer, DEATH_COUNT_HEADER, DEATH_REASON_HEADER, DELIVERY_COUNT_HEADER, Delivery,
    DeliveryTag, Error, Message, Queue, REASON_HEADER, Result,
};

/// Settings of the in-process broker (the same knobs as the RabbitMQ topology).
#[derive(Clone, Debug)]
pub struct MemoryConfig {
    /// Time a message waits in [`Queue::Retry`] before it moves to [`Queue::Work`].
    pub retry_delay: Duration,
    /// Returns to the queue allowed before a message is dead-lettered.
    pub delivery_limit: u32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            retry_delay: Duration::from_millis(crate::DEFAULT_RETRY_DELAY_MS),
            delivery_limit: crate::DEFAULT_DELIVERY_LIMIT,
        }
    }
}

/// An in-process [`Broker`]. Clones share the same queues.
#[derive(Clone)]
pub struct MemoryBroker {
    shared: Arc<Shared>,
}

struct Shared {
    config: MemoryConfig,
    state: Mutex<State>,
    publish_failures: AtomicU32,
}

#[derive(Default)]
struct State {
    queues: HashMap<Queue, QueueState>,
    consumers: HashMap<u64, ConsumerState>,
    next_consumer: u64,
}

#[derive(Default)]
struct QueueState {
    ready: VecDeque<Stored>,
    /// Consumer ids in subscription order; `cursor` is the next in turn.
    consumers: Vec<u64>,
    cursor: usize,
}

struct Stored {
    msg_id: String,
    payload: Vec<u8>,
    headers: BTreeMap<String, String>,
    /// Times returned to the queue: RabbitMQ's delivery count.
    returns: u32,
    redelivered: bool,
    /// When a message in the retry queue expires back to work.
    due: Option<Instant>,
    /// (queue, reason, count), most recent first, like RabbitMQ's `x-death`.
    deaths: Vec<(Queue, &'static str, u64)>,
}

struct ConsumerState {
    queue: Queue,
    prefetch: usize,
    generation: u64,
    next_tag: u64,
    /// Every delivery pushed to this consumer and not yet acked or nacked.
    unacked: BTreeMap<u64, Stored>,
    /// Tags pushed but not yet returned by `next()`, in order.
    pending: VecDeque<u64>,
    notify: Arc<Notify>,
    /// Cancelled: no new deliveries; `next()` ends once `pending` is empty.
    cancelled: bool,
}

/// Reasons written to [`DEATH_REASON_HEADER`], as RabbitMQ names them.
const REJECTED: &str = "rejected";
const DELIVERY_LIMIT: &str = "delivery_limit";
const EXPIRED: &str = "expired";

impl MemoryBroker {
    pub fn new(config: MemoryConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                state: Mutex::new(State::default()),
                publish_failures: AtomicU32::new(0),
            }),
        }
    }

    pub fn config(&self) -> &MemoryConfig {
        &self.shared.config
    }

    /// Makes the next `count` calls to `publish` fail with a retryable
    /// [`Error::Connection`] without enqueueing anything, so tests can check
    /// that a stage does not ack before its downstream publish is confirmed.
    pub fn fail_next_publishes(&self, count: u32) {
        self.shared.publish_failures.store(count, Ordering::SeqCst);
    }

    /// Unacked deliveries held by the consumers of `queue`.
    pub fn unacked(&self, queue: Queue) -> u64 {
        let state = self.shared.lock();
        state
            .consumers
            .values()
            .filter(|c| c.queue == queue)
            .map(|c| c.unacked.len() as u64)
            .sum()
    }
}

impl Default for MemoryBroker {
    fn default() -> Self {
        Self::new(MemoryConfig::default())
    }
}

impl fmt::Debug for MemoryBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBroker")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the queues consistent (every
        // mutation is completed before anything can panic), so keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves expired messages from the head of the retry queue to work, as
    /// RabbitMQ dead-letters them on TTL expiry.
    fn expire_retries(&self) {
        let mut state = self.lock();
        let now = Instant::now();
        let mut moved = false;
        loop {
            let retry = state.queues.entry(Queue::Retry).or_default();
            match retry.ready.front() {
                Some(front) if front.due.is_some_and(|due| due <= now) => {}
                _ => break,
            }
            if let Some(message) = retry.ready.pop_front() {
                state.dead_letter(Queue::Retry, message, EXPIRED);
                moved = true;
            }
        }
        if moved {
            state.dispatch(Queue::Work);
        }
    }
}

impl State {
    /// Pushes ready messages to consumers with prefetch credit, round-robin.
    fn dispatch(&mut self, queue: Queue) {
        let State {
            queues, consumers, ..
        } = self;
        let Some(q) = queues.get_mut(&queue) else {
            return;
        };
        // A single-active-consumer queue delivers to its oldest consumer only.
        let single = matches!(queue, Queue::Results(_));
        while !q.ready.is_empty() && !q.consumers.is_empty() {
            let n = if single { 1 } else { q.consumers.len() };
            let chosen = (0..n).map(|i| (q.cursor + i) % n).find(|&index| {
                consumers
                    .get(&q.consumers[index])
                    .is_some_and(|c| c.unacked.len() < c.prefetch)
            });
            let Some(index) = chosen else { break };
            q.cursor = (index + 1) % n;
            let (Some(consumer), Some(mut message)) =
                (consumers.get_mut(&q.consumers[index]), q.ready.pop_front())
            else {
                break;
            };
            message.due = None;
            consumer.next_tag += 1;
            consumer.unacked.insert(consumer.next_tag, message);
            consumer.pending.push_back(consumer.next_tag);
            consumer.notify.notify_one();
        }
    }

    /// Puts a message back at the head of its queue, or dead-letters it once
    /// it has been returned more than the delivery limit allows.
    fn return_to_queue(&mut self, config: &MemoryConfig, queue: Queue, mut message: Stored) {
        message.returns += 1;
        message.redelivered = true;
        if queue.has_delivery_limit() && message.returns > config.delivery_limit {
            self.dead_letter(queue, message, DELIVERY_LIMIT);
            return;
        }
        message.headers.insert(
            DELIVERY_COUNT_HEADER.to_owned(),
            message.returns.to_string(),
        );
        self.queues
            .entry(queue)
            .or_default()
            .ready
            .push_front(message);
    }

    /// Routes a message that died in `from`, following the queue arguments
    /// the RabbitMQ topology declares: retry expires to work, the
    /// dead-letter queue drops, everything else goes to the dead-letter queue.
    fn dead_letter(&mut self, from: Queue, mut message: Stored, reason: &'static str) {
        let Some(target) = from.dead_letter_target() else {
            return;
        };
        let count = match message
            .deaths
            .iter()
            .position(|&(q, r, _)| q == from && r == reason)
        {
            Some(index) => {
                let mut death = message.deaths.remove(index);
                death.2 += 1;
                message.deaths.insert(0, death);
                death.2
            }
            None => {
                message.deaths.insert(0, (from, reason, 1));
                1
            }
        };
        message
            .headers
            .insert(DEATH_REASON_HEADER.to_owned(), reason.to_owned());
        message
            .headers
            .insert(DEATH_COUNT_HEADER.to_owned(), count.to_string());
        message.headers.remove(DELIVERY_COUNT_HEADER);
        if target == Queue::DeadLetter {
            message
                .headers
                .entry(REASON_HEADER.to_owned())
                .or_insert_with(|| reason.to_owned());
        }
        message.returns = 0;
        message.redelivered = false;
        message.due = None;
        self.queues
            .entry(target)
            .or_default()
            .ready
            .push_back(message);
        self.dispatch(target);
    }

    /// Returns every delivery a consumer holds to its queue, oldest at the
    /// head, as RabbitMQ does when a channel closes.
    fn return_all(&mut self, config: &MemoryConfig, id: u64) {
        let Some(consumer) = self.consumers.get_mut(&id) else {
            return;
        };
        let queue = consumer.queue;
        let held = std::mem::take(&mut consumer.unacked);
        consumer.pending.clear();
        for (_, message) in held.into_iter().rev() {
            self.return_to_queue(config, queue, message);
        }
    }
}

impl Broker for MemoryBroker {
    type Consumer = MemoryConsumer;

    async fn publish(&self, messages: Vec<Message>) -> Result<()> {
        crate::validate(&messages)?;
        let injected =
            self.shared
                .publish_failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if injected.is_ok() {
            return Err(Error::connection("injected publish failure"));
        }
        let mut retry_due = None;
        {
            let mut state = self.shared.lock();
            let mut touched = Vec::new();
            for message in messages {
                let due = (message.queue == Queue::Retry)
                    .then(|| Instant::now() + self.shared.config.retry_delay);
                retry_due = retry_due.or(due);
                state
                    .queues
                    .entry(message.queue)
                    .or_default()
                    .ready
                    .push_back(Stored {
                        msg_id: message.msg_id,
                        payload: message.payload,
                        headers: message.headers.into_iter().collect(),
                        returns: 0,
                        redelivered: false,
                        due,
                        deaths: Vec::new(),
                    });
                if !touched.contains(&message.queue) {
                    touched.push(message.queue);
                }
            }
            for queue in touched {
                state.dispatch(queue);
            }
        }
        if let Some(due) = retry_due {
            // A weak handle: a dropped broker needs no timers.
            let shared: Weak<Shared> = Arc::downgrade(&self.shared);
            tokio::spawn(async move {
                tokio::time::sleep_until(due).await;
                if let Some(shared) = shared.upgrade() {
                    shared.expire_retries();
                }
            });
        }
        Ok(())
    }

    async fn consume(&self, queue: Queue, prefetch: u16) -> Result<MemoryConsumer> {
        let notify = Arc::new(Notify::new());
        let id = {
            let mut state = self.shared.lock();
            state.next_consumer += 1;
            let id = state.next_consumer;
            state.consumers.insert(
                id,
                ConsumerState {
                    queue,
                    // RabbitMQ reads a prefetch of 0 as "no limit".
                    prefetch: if prefetch == 0 {
                        usize::MAX
                    } else {
                        usize::from(prefetch)
                    },
                    generation: 1,
                    next_tag: 0,
                    unacked: BTreeMap::new(),
                    pending: VecDeque::new(),
                    notify: notify.clone(),
                    cancelled: false,
                },
            );
            state.queues.entry(queue).or_default().consumers.push(id);
            state.dispatch(queue);
            id
        };
        Ok(MemoryConsumer {
            shared: self.shared.clone(),
            id,
            queue,
            notify,
        })
    }

    async fn queue_depth(&self, queue: Queue) -> Result<u64> {
        let state = self.shared.lock();
        Ok(state.queues.get(&queue).map_or(0, |q| q.ready.len() as u64))
    }

    /// Every queue exists on demand, but for the legacy results queue of
    /// earlier versions: nothing in memory outlives a process.
    async fn queue_exists(&self, queue: Queue) -> Result<bool> {
        Ok(queue != Queue::LegacyResults)
    }
}

/// A consumer of a [`MemoryBroker`] queue. Dropping it returns its unacked
/// deliveries to the queue.
pub struct MemoryConsumer {
    shared: Arc<Shared>,
    id: u64,
    queue: Queue,
    notify: Arc<Notify>,
}

impl MemoryConsumer {
    /// Acts as if the connection dropped and came back: every unacked
    /// delivery returns to the queue (redelivered, counting towards the
    /// delivery limit) and the generation moves on, so acks of older tags
    /// are ignored, as with [`crate::RabbitBroker`].
    pub fn simulate_connection_loss(&mut self) {
        let mut state = self.shared.lock();
        state.return_all(&self.shared.config, self.id);
        if let Some(consumer) = state.consumers.get_mut(&self.id) {
            consumer.generation += 1;
        }
        state.dispatch(self.queue);
    }

    /// The generation that tags of new deliveries carry.
    pub fn generation(&self) -> u64 {
        let state = self.shared.lock();
        state.consumers.get(&self.id).map_or(0, |c| c.generation)
    }

    /// Removes a delivery this consumer holds, or says why it cannot.
    /// `Ok(None)`: a tag of an older generation, ignored.
    fn take(state: &mut State, id: u64, tag: DeliveryTag) -> Result<Option<Stored>> {
        let Some(consumer) = state.consumers.get_mut(&id) else {
            return Err(Error::Closed);
        };
        if tag.generation != consumer.generation {
            return Ok(None);
        }
        consumer
            .unacked
            .remove(&tag.tag)
            .map(Some)
            .ok_or_else(|| unknown_tag(tag))
    }
}

fn unknown_tag(tag: DeliveryTag) -> Error {
    Error::Invalid(format!(
        "delivery tag {} (generation {}) is not held by this consumer",
        tag.tag, tag.generation
    ))
}

impl fmt::Debug for MemoryConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryConsumer")
            .field("id", &self.id)
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl Consumer for MemoryConsumer {
    async fn next(&mut self) -> Result<Delivery> {
        loop {
            {
                let mut state = self.shared.lock();
                let Some(consumer) = state.consumers.get_mut(&self.id) else {
                    return Err(Error::Closed);
                };
                if consumer.cancelled && consumer.pending.is_empty() {
                    return Err(Error::Closed);
                }
                while let Some(tag) = consumer.pending.pop_front() {
                    let Some(message) = consumer.unacked.get(&tag) else {
                        continue;
                    };
                    return Ok(Delivery {
                        tag: DeliveryTag {
                            generation: consumer.generation,
                            tag,
                        },
                        msg_id: Some(message.msg_id.clone()),
                        payload: message.payload.clone(),
                        headers: message
                            .headers
                            .iter()
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect(),
                        redelivered: message.redelivered,
                    });
                }
            }
            // `notify_one` keeps a permit when nobody waits, so a delivery
            // pushed between the unlock above and this await is not missed;
            // dropping this future (select!) loses nothing either.
            self.notify.notified().await;
        }
    }

    async fn ack(&mut self, tag: DeliveryTag, multiple: bool) -> Result<()> {
        let mut state = self.shared.lock();
        if multiple {
            let Some(consumer) = state.consumers.get_mut(&self.id) else {
                return Err(Error::Closed);
            };
            if tag.generation != consumer.generation {
                return Ok(());
            }
            if !consumer.unacked.contains_key(&tag.tag) {
                return Err(unknown_tag(tag));
            }
            let later = consumer.unacked.split_off(&(tag.tag + 1));
            consumer.unacked = later;
        } else {
            Self::take(&mut state, self.id, tag)?;
        }
        state.dispatch(self.queue);
        Ok(())
    }

    async fn nack(&mut self, tag: DeliveryTag, requeue: bool) -> Result<()> {
        let mut state = self.shared.lock();
        let Some(message) = Self::take(&mut state, self.id, tag)? else {
            return Ok(());
        };
        if requeue {
            state.return_to_queue(&self.shared.config, self.queue, message);
        } else {
            state.dead_letter(self.queue, message, REJECTED);
        }
        state.dispatch(self.queue);
        Ok(())
    }

    async fn cancel(&mut self) -> Result<()> {
        let mut state = self.shared.lock();
        if let Some(consumer) = state.consumers.get_mut(&self.id) {
            consumer.cancelled = true;
        }
        if let Some(q) = state.queues.get_mut(&self.queue) {
            q.consumers.retain(|&id| id != self.id);
            q.cursor = 0;
        }
        state.dispatch(self.queue);
        self.notify.notify_one();
        Ok(())
    }
}

impl Drop for MemoryConsumer {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.return_all(&self.shared.config, self.id);
        state.consumers.remove(&self.id);
        if let Some(q) = state.queues.get_mut(&self.queue) {
            q.consumers.retain(|&id| id != self.id);
            q.cursor = 0;
        }
        state.dispatch(self.queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(delivery_limit: u32) -> MemoryBroker {
        MemoryBroker::new(MemoryConfig {
            retry_delay: Duration::from_secs(10),
            delivery_limit,
        })
    }

    fn msg(queue: Queue, id: &str) -> Message {
        Message::new(queue, id, id.as_bytes().to_vec())
    }

    async fn publish_work(broker: &MemoryBroker, ids: &[&str]) {
        let messages = ids.iter().map(|id| msg(Queue::Work, id)).collect();
        broker.publish(messages).await.unwrap();
    }

    fn id(delivery: &Delivery) -> &str {
        delivery.msg_id.as_deref().unwrap()
    }

    /// The contract both brokers keep is in `tests/conformance`; these are
    /// what only the in-process broker does.
    #[tokio::test]
    async fn consumers_of_one_queue_share_round_robin() {
        let broker = broker(5);
        let mut one = broker.consume(Queue::Verify, 10).await.unwrap();
        let mut two = broker.consume(Queue::Verify, 10).await.unwrap();
        let messages = ["a", "b", "c", "d"]
            .iter()
            .map(|id| msg(Queue::Verify, id))
            .collect();
        broker.publish(messages).await.unwrap();
        let got_one = [
            id(&one.next().await.unwrap()).to_owned(),
            id(&one.next().await.unwrap()).to_owned(),
        ];
        let got_two = [
            id(&two.next().await.unwrap()).to_owned(),
            id(&two.next().await.unwrap()).to_owned(),
        ];
        assert_eq!(got_one, ["a", "c"]);
        assert_eq!(got_two, ["b", "d"]);
    }

    #[tokio::test]
    async fn acking_an_acked_tag_is_a_caller_bug() {
        let broker = broker(5);
        publish_work(&broker, &["a", "b"]).await;
        let mut consumer = broker.consume(Queue::Work, 10).await.unwrap();
        let a = consumer.next().await.unwrap();
        let b = consumer.next().await.unwrap();
        consumer.ack(b.tag, true).await.unwrap();
        assert_eq!(broker.unacked(Queue::Work), 0);
        assert!(matches!(
            consumer.ack(a.tag, false).await,
            Err(Error::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn rejecting_a_dead_letter_drops_it() {
        let broker = broker(5);
        broker
            .publish(vec![msg(Queue::DeadLetter, "dead")])
            .await
            .unwrap();
        let mut dlq = broker.consume(Queue::DeadLetter, 10).await.unwrap();
        let dead = dlq.next().await.unwrap();
        // The dead-letter queue has no dead-letter target.
        dlq.nack(dead.tag, false).await.unwrap();
        assert_eq!(broker.queue_depth(Queue::DeadLetter).await.unwrap(), 0);
        assert_eq!(broker.unacked(Queue::DeadLetter), 0);
    }

    #[tokio::test]
    async fn a_connection_loss_redelivers_and_ignores_stale_acks() {
        let broker = broker(5);
        publish_work(&broker, &["a"]).await;
        let mut consumer = broker.consume(Queue::Work, 10).await.unwrap();
        let before = consumer.next().await.unwrap();
        consumer.simulate_connection_loss();
        assert_eq!(consumer.generation(), before.tag.generation + 1);
        // The old tag is ignored, not an error, and acks nothing.
        consumer.ack(before.tag, false).await.unwrap();
        let after = consumer.next().await.unwrap();
        assert_eq!(id(&after), "a");
        assert!(after.redelivered);
        assert_eq!(broker.unacked(Queue::Work), 1);
        consumer.ack(after.tag, false).await.unwrap();
        assert_eq!(broker.unacked(Queue::Work), 0);
    }

    #[tokio::test]
    async fn injected_publish_failures_publish_nothing() {
        let broker = broker(5);
        broker.fail_next_publishes(1);
        let error = broker
            .publish(vec![msg(Queue::Work, "a")])
            .await
            .unwrap_err();
        assert!(error.can_be_retried());
        assert_eq!(broker.queue_depth(Queue::Work).await.unwrap(), 0);
        broker.publish(vec![msg(Queue::Work, "a")]).await.unwrap();
        assert_eq!(broker.queue_depth(Queue::Work).await.unwrap(), 1);
    }
}
