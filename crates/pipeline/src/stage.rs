//! One runtime for every stage: the loop the executor, aggregator and
//! verifier used to write each in its own shape.
//!
//! A stage is its domain steps behind [`Stage`]: what it consumes, what it
//! does with a window of decoded messages, and what it does once their acks
//! are out. This module owns everything around that, once:
//!
//! - consuming (the [`broker::Consumer`] reconnects by itself; the first
//!   subscription is retried until the broker answers);
//! - decoding, and dead-lettering what does not decode, with the reason;
//! - filling a window: whatever already arrived, up to [`Shape::window`]
//!   (the aggregator's group commit; 1 elsewhere);
//! - bounded concurrency: up to [`Shape::in_flight`] windows handled at
//!   once, each on its own task (the executor's chunks in flight);
//! - settling in order of effect: a window's messages are dead-lettered,
//!   acked or requeued only after [`Stage::handle`] returned, i.e. after
//!   their effect is durable; with one window at a time, one `multiple` ack
//!   covers it;
//! - one error policy, from the error itself ([`Error::is_fatal`],
//!   [`Error::can_be_retried`]): steps retry infrastructure errors in place
//!   ([`crate::retry::retrying`]); a fatal error stops the stage (the
//!   process exits and rebuilds from what is durable); any other error
//!   requeues the window's messages after [`Shape::requeue_delay`], so one
//!   that keeps failing reaches the delivery limit and the dead-letter
//!   queue instead of blocking its queue;
//! - letting go on shutdown: the subscription is cancelled (on a
//!   single-active-consumer queue the next consumer takes over), what was
//!   already on its way is handled and acked, within
//!   [`Shape::drain_timeout`]; only what is left then stays unacked (the
//!   broker returns it, counting a delivery);
//! - the throughput line every 10 s and the metrics ([`StageStats`]), and
//!   liveness and readiness ([`Health`]).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Consumer, Delivery, DeliveryTag, Queue};
use futures_util::FutureExt;
use serde::de::DeserializeOwned;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::common::dead_letter;
use crate::health::{CONSUMING, Health};
use crate::messages::decode;
use crate::retry::retrying;
use crate::telemetry::StageStats;
use crate::{Error, Result};

/// How often the throughput line is logged.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// How often the loop proves it turns, even when idle.
const BEAT_EVERY: Duration = Duration::from_secs(1);

/// A stage: its domain steps. One type and one `impl` make a new stage.
pub trait Stage: Send + Sync + 'static {
    /// The message the stage consumes; the runtime decodes it (strictly,
    /// version first) and dead-letters what does not decode.
    type Msg: DeserializeOwned + Send + 'static;
    /// What handling a window leaves for [`Stage::after_ack`].
    type Done: Send + 'static;

    /// The queue it consumes.
    fn queue(&self) -> Queue;

    /// Handles a window of messages and says what to do with each, in
    /// order. Every [`Outcome::Ack`] must be durable when this returns.
    fn handle(
        &self,
        window: Vec<Inbound<Self::Msg>>,
    ) -> impl Future<Output = Result<Handled<Self::Done>>> + Send;

    /// Called once the queue is subscribed (the loop is then a consumer,
    /// active or, on a single-active-consumer queue, waiting).
    fn subscribed(&self) {}

    /// Whether a delivery (by its msg_id) is a control message: it carries
    /// no work, is not decoded, and is acked with its window; a window with
    /// control messages is first handed to [`Stage::handle`] empty, which
    /// is how they take effect (the aggregator's nudge), then with its
    /// other messages, if any.
    fn is_control(&self, msg_id: &str) -> bool {
        let _ = msg_id;
        false
    }

    /// Runs once the window's outcomes are settled (its acks sent): work
    /// that must not hold the acks back. An error here stops the stage (its
    /// messages are acked already; only a restart redoes the work).
    fn after_ack(&self, done: Self::Done) -> impl Future<Output = Result<()>> + Send {
        let _ = done;
        async { Ok(()) }
    }
}

/// One decoded message of a window.
#[derive(Debug)]
pub struct Inbound<M> {
    pub msg: M,
    /// The broker's message id (for spans and dead-letter records).
    pub msg_id: String,
    /// The broker delivered it before.
    pub redelivered: bool,
}

/// What to do with one message once its window is handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is durable: ack it.
    Ack,
    /// It is invalid: copy it to the dead-letter queue with this reason,
    /// then ack it.
    DeadLetter(String),
    /// Put it back (counts towards the delivery limit).
    Requeue,
    /// Leave it unacked: it is redelivered when this consumer goes away
    /// (the stage is stopping).
    Leave,
}

/// A handled window: one outcome per message, in order, and what the
/// stage wants to do after the acks.
#[derive(Debug)]
pub struct Handled<D> {
    pub outcomes: Vec<Outcome>,
    pub done: D,
}

/// The shape of a stage's consumption.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    /// Unacked deliveries the broker may hand this consumer.
    pub prefetch: u16,
    /// Most messages handled together in one window.
    pub window: usize,
    /// Windows handled at once.
    pub in_flight: usize,
    /// How long shutdown waits for windows in flight.
    pub drain_timeout: Duration,
    /// Wait before a failed window's messages are requeued.
    pub requeue_delay: Duration,
    /// The loop marks the process consuming (`/readyz`) while it runs; a
    /// stage with several loops (the aggregator's partitions) marks it
    /// itself.
    pub marks_ready: bool,
}

impl Shape {
    /// One message at a time (the verifier).
    pub fn sequential(prefetch: u16) -> Self {
        Self {
            prefetch: prefetch.max(1),
            window: 1,
            in_flight: 1,
            drain_timeout: Duration::from_secs(30),
            requeue_delay: Duration::from_secs(1),
            marks_ready: true,
        }
    }
}

/// What one window task hands back to the loop: its deliveries and their
/// outcomes (those that did not decode are dead-lettered with the reason,
/// never shown to the stage); `done` is `None` when the stage saw nothing.
struct Finished<D> {
    deliveries: Vec<Delivery>,
    result: Result<Handled<Option<D>>>,
}

/// How a stage stops. `stop` asks it to let go of its queue (cancel the
/// subscription, handle what is on its way); `abort` ends everything still
/// waiting — every retry of the stage's steps uses it — once the drain time
/// is up (or the stage ended). A stage's steps retry on `abort`, not on
/// `stop`: a window being drained must still be able to finish.
#[derive(Clone, Debug)]
pub struct Stopping {
    pub stop: CancellationToken,
    pub abort: CancellationToken,
}

impl Stopping {
    /// Stops when `stop` fires; aborts only when the runtime says so.
    pub fn on(stop: CancellationToken) -> Self {
        Self {
            stop,
            abort: CancellationToken::new(),
        }
    }
}

/// Consumes the stage's queue until `stopping.stop`, handing windows to
/// `stage`; then lets go of the queue without returning anything to it
/// (the subscription is cancelled and what was already on its way is
/// handled, within the drain time). Returns `Ok` after a shutdown, `Err`
/// when a fatal error stopped it.
pub async fn run<B: Broker, S: Stage>(
    broker: B,
    stage: Arc<S>,
    shape: Shape,
    stats: StageStats,
    health: Health,
    stopping: Stopping,
) -> Result<()> {
    let queue = stage.queue();
    let subscribed = retrying("consume", &stopping.stop, || async {
        Ok(broker.consume(queue, shape.prefetch.max(1)).await?)
    })
    .await;
    let mut consumer = match subscribed {
        Ok(consumer) => consumer,
        Err(e) => {
            stopping.abort.cancel();
            return Err(e);
        }
    };
    stage.subscribed();
    let reporter = tokio::spawn(
        stats
            .clone()
            .report_every(REPORT_EVERY, stopping.stop.clone()),
    );
    let mut runtime = Runtime {
        broker,
        stage,
        shape,
        stats,
        health,
        stopping,
        tasks: JoinSet::new(),
        closed: false,
    };
    // "<stage> consuming" is what launchers wait for in the log.
    tracing::info!(
        queue = queue.name(),
        prefetch = shape.prefetch,
        window = shape.window,
        in_flight = shape.in_flight,
        "{} consuming",
        runtime.stats.stage()
    );
    if shape.marks_ready {
        runtime.health.set_ready(CONSUMING, true);
    }
    let outcome = runtime.consume(&mut consumer).await;
    if shape.marks_ready {
        runtime.health.set_ready(CONSUMING, false);
    }
    let outcome = match outcome {
        Ok(()) => runtime.drain(&mut consumer).await,
        Err(e) => Err(e),
    };
    runtime.stopping.abort.cancel();
    reporter.abort();
    outcome
}

struct Runtime<B, S: Stage> {
    broker: B,
    stage: Arc<S>,
    shape: Shape,
    stats: StageStats,
    health: Health,
    stopping: Stopping,
    tasks: JoinSet<Finished<S::Done>>,
    /// The consumer said it has nothing more (after a cancel).
    closed: bool,
}

impl<B: Broker, S: Stage> Runtime<B, S> {
    /// The loop: take windows while there is room, settle finished ones.
    async fn consume(&mut self, consumer: &mut B::Consumer) -> Result<()> {
        let mut beat = tokio::time::interval(BEAT_EVERY);
        loop {
            self.health.beat(self.stats.stage());
            let room = self.tasks.len() < self.shape.in_flight.max(1);
            tokio::select! {
                biased;
                _ = self.stopping.stop.cancelled() => return Ok(()),
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    self.settle(consumer, joined).await?;
                }
                delivery = consumer.next(), if room => {
                    let window = self.fill(consumer, delivery?);
                    self.start(window);
                }
                _ = beat.tick() => {}
            }
        }
    }

    /// The first delivery and whatever else already arrived, up to the window.
    fn fill(&mut self, consumer: &mut B::Consumer, first: Delivery) -> Vec<Delivery> {
        let mut window = vec![first];
        while window.len() < self.shape.window.max(1) {
            match consumer.next().now_or_never() {
                Some(Ok(d)) => window.push(d),
                Some(Err(broker::Error::Closed)) => {
                    self.closed = true;
                    break;
                }
                Some(Err(e)) => {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "consumer error while filling a window"
                    );
                    break;
                }
                None => break,
            }
        }
        self.stats.count("received", window.len() as u64);
        window
    }

    /// Decodes the window and hands what decodes to the stage, on a task.
    fn start(&mut self, deliveries: Vec<Delivery>) {
        let mut inbound = Vec::with_capacity(deliveries.len());
        let mut settled = BTreeMap::new();
        for (i, d) in deliveries.iter().enumerate() {
            if d.msg_id
                .as_deref()
                .is_some_and(|id| self.stage.is_control(id))
            {
                settled.insert(i, Outcome::Ack);
                continue;
            }
            match decode::<S::Msg>(&d.payload) {
                Ok(msg) => inbound.push(Inbound {
                    msg,
                    msg_id: d.msg_id.clone().unwrap_or_default(),
                    redelivered: d.redelivered,
                }),
                Err(e) => {
                    settled.insert(i, Outcome::DeadLetter(e.to_string()));
                }
            }
        }
        let controls = settled.values().any(|o| *o == Outcome::Ack);
        let (look, work) = calls(inbound.len(), controls);
        let (stage, requeue_delay) = (self.stage.clone(), self.shape.requeue_delay);
        self.tasks.spawn(async move {
            let handled = async {
                let mut handled = Handled {
                    outcomes: Vec::new(),
                    done: None,
                };
                if look {
                    handled.done = Some(stage.handle(Vec::new()).await?.done);
                }
                if work {
                    let h = stage.handle(inbound).await?;
                    handled = Handled {
                        outcomes: h.outcomes,
                        done: Some(h.done),
                    };
                }
                Ok(handled)
            }
            .await;
            let result = match handled {
                Ok(h) => Ok(merge(h, settled, deliveries.len())),
                Err(e) => {
                    if !matches!(e, Error::Shutdown) && !e.is_fatal() {
                        tokio::time::sleep(requeue_delay).await;
                    }
                    Err(e)
                }
            };
            Finished { deliveries, result }
        });
    }

    /// Applies the outcome of one finished window.
    async fn settle(
        &mut self,
        consumer: &mut B::Consumer,
        joined: std::result::Result<Finished<S::Done>, tokio::task::JoinError>,
    ) -> Result<()> {
        let Finished { deliveries, result } = match joined {
            Ok(finished) => finished,
            Err(e) => {
                // A panic is a bug: the stage stops (its tags went with the
                // task, so its messages come back when this consumer goes
                // away) rather than go on in an unknown state.
                return Err(Error::Task {
                    what: "window",
                    source: e,
                });
            }
        };
        let handled = match result {
            Ok(handled) => handled,
            Err(Error::Shutdown) => return Ok(()),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                tracing::error!(
                    stage = self.stats.stage(),
                    error = &e as &dyn std::error::Error,
                    messages = deliveries.len(),
                    "handling failed; requeueing"
                );
                let requeue = vec![Outcome::Requeue; deliveries.len()];
                self.apply(consumer, &deliveries, &requeue).await?;
                return Ok(());
            }
        };
        self.apply(consumer, &deliveries, &handled.outcomes).await?;
        if let Some(done) = handled.done {
            match self.stage.after_ack(done).await {
                Ok(()) | Err(Error::Shutdown) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Dead-letters, acks and requeues, in that order: a dead-letter copy
    /// is confirmed before its original is acked.
    async fn apply(
        &self,
        consumer: &mut B::Consumer,
        deliveries: &[Delivery],
        outcomes: &[Outcome],
    ) -> Result<()> {
        for (d, outcome) in deliveries.iter().zip(outcomes) {
            if let Outcome::DeadLetter(reason) = outcome {
                let from = self.stage.queue();
                retrying("dead-letter", &self.stopping.abort, || async {
                    dead_letter(&self.broker, from, d, reason).await
                })
                .await?;
                self.stats.count("dead_lettered", 1);
            }
        }
        let start = Instant::now();
        let acked: Vec<DeliveryTag> = deliveries
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| matches!(o, Outcome::Ack | Outcome::DeadLetter(_)))
            .map(|(d, _)| d.tag)
            .collect();
        // One window at a time and all of it settled: nothing older is
        // unacked, so one `multiple` ack per connection generation covers it.
        let whole = self.shape.in_flight <= 1 && acked.len() == deliveries.len();
        for (tag, multiple) in ack_plan(&acked, whole) {
            if let Err(e) = consumer.ack(tag, multiple).await {
                // Redelivered then; every step before the ack is idempotent.
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "ack failed; the message will be redelivered"
                );
            }
        }
        self.stats.count("acked", acked.len() as u64);
        for (d, outcome) in deliveries.iter().zip(outcomes) {
            if *outcome == Outcome::Requeue {
                if let Err(e) = consumer.nack(d.tag, true).await {
                    tracing::warn!(
                        error = &e as &dyn std::error::Error,
                        "requeue failed; the message will be redelivered"
                    );
                }
                self.stats.count("requeued", 1);
            }
        }
        self.stats.phase("ack", start.elapsed());
        Ok(())
    }

    /// After a shutdown: cancels the subscription, then handles what was
    /// already on its way and settles every window, within the drain time;
    /// what is left then stays unacked (the broker returns it).
    async fn drain(&mut self, consumer: &mut B::Consumer) -> Result<()> {
        if let Err(e) = consumer.cancel().await {
            tracing::warn!(error = &e as &dyn std::error::Error, "cancel failed");
            self.closed = true;
        }
        let deadline = tokio::time::sleep(self.shape.drain_timeout);
        tokio::pin!(deadline);
        while !(self.closed && self.tasks.is_empty()) {
            let room = !self.closed && self.tasks.len() < self.shape.in_flight.max(1);
            tokio::select! {
                biased;
                Some(joined) = self.tasks.join_next(), if !self.tasks.is_empty() => {
                    if let Err(e) = self.settle(consumer, joined).await {
                        tracing::warn!(error = &e as &dyn std::error::Error, "settling while draining failed");
                    }
                }
                delivery = consumer.next(), if room => match delivery {
                    Ok(d) => {
                        let window = self.fill(consumer, d);
                        self.start(window);
                    }
                    Err(_) => self.closed = true,
                },
                _ = &mut deadline => {
                    tracing::warn!(
                        left = self.tasks.len(),
                        "drain timeout: leaving messages unacked (they will be redelivered)"
                    );
                    self.stopping.abort.cancel();
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        tracing::info!(stage = self.stats.stage(), "stopped");
        Ok(())
    }
}

/// Puts the outcomes settled before the stage saw the window (undecodable:
/// dead-letter with the reason; control messages: ack) among the stage's,
/// in delivery order.
fn merge<D>(
    handled: Handled<Option<D>>,
    mut settled: BTreeMap<usize, Outcome>,
    total: usize,
) -> Handled<Option<D>> {
    let mut theirs = handled.outcomes.into_iter();
    let outcomes = (0..total)
        .map(|i| match settled.remove(&i) {
            Some(outcome) => outcome,
            // A stage that returned too few outcomes leaves the rest unacked.
            None => theirs.next().unwrap_or(Outcome::Leave),
        })
        .collect();
    Handled {
        outcomes,
        done: handled.done,
    }
}

/// The acks to send: each tag alone, or, for a whole window, the highest
/// tag of each connection generation with `multiple`.
fn ack_plan(tags: &[DeliveryTag], whole: bool) -> Vec<(DeliveryTag, bool)> {
    if !whole {
        return tags.iter().map(|t| (*t, false)).collect();
    }
    let mut last = BTreeMap::new();
    for tag in tags {
        let e = last.entry(tag.generation).or_insert(*tag);
        *e = (*e).max(*tag);
    }
    last.into_values().map(|t| (t, true)).collect()
}

/// How a window of `decoded` messages is handed to the stage: `(look,
/// work)`. `look`: an empty call first, when the window holds control
/// messages — a nudge asks the stage to look now, and messages that share
/// its window must not swallow that (a cancel's nudge behind results of
/// the batch's last chunks was acked unseen, and the seal waited for the
/// sweeper); `work`: a call with the decoded messages.
fn calls(decoded: usize, controls: bool) -> (bool, bool) {
    (controls, decoded > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_control_message_is_looked_at_even_beside_work() {
        assert_eq!(calls(0, false), (false, false), "nothing decoded");
        assert_eq!(calls(0, true), (true, false), "a nudge alone");
        assert_eq!(calls(3, false), (false, true), "work alone");
        assert_eq!(calls(3, true), (true, true), "a nudge beside work");
    }

    fn tag(generation: u64, tag: u64) -> DeliveryTag {
        DeliveryTag { generation, tag }
    }

    #[test]
    fn a_whole_window_is_one_multiple_ack_per_generation() {
        let tags = [tag(1, 4), tag(1, 2), tag(2, 1), tag(2, 3)];
        assert_eq!(
            ack_plan(&tags, true),
            vec![(tag(1, 4), true), (tag(2, 3), true)]
        );
        assert_eq!(
            ack_plan(&tags[..2], false),
            vec![(tag(1, 4), false), (tag(1, 2), false)]
        );
    }

    #[test]
    fn settled_messages_keep_their_place() {
        let handled = Handled {
            outcomes: vec![Outcome::Ack, Outcome::Requeue],
            done: Some(()),
        };
        let settled = BTreeMap::from([
            (1, Outcome::DeadLetter("not JSON".into())),
            (3, Outcome::Ack),
        ]);
        let merged = merge(handled, settled, 5);
        assert_eq!(
            merged.outcomes,
            vec![
                Outcome::Ack,
                Outcome::DeadLetter("not JSON".into()),
                Outcome::Requeue,
                Outcome::Ack,
                Outcome::Leave
            ]
        );
    }
}
