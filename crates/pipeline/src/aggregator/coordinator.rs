//! The replica's view of the others, without a coordinator of its own
//! making: every [`HEARTBEAT`] it announces itself in the store; every
//! [`WATCH`] it reads which replicas are alive and which partitions it
//! owns; and (at the heartbeat's pace) when it owns more than its fair
//! share (`ceil(partitions / replicas)`), or two more than the least
//! loaded replica, it hands one partition over — gracefully: its queue is
//! cancelled, what is on its way is folded and acked, the epoch released
//! with the cause `rebalance` — then waits until another replica took it
//! before handing over the next (and waits longer when it came back to
//! itself: no other replica consumes it). RabbitMQ makes the next waiting
//! consumer active, so the partitions flow to the replicas that have
//! fewer.
//!
//! RabbitMQ does not tell a consumer it became a queue's active one, and a
//! replica takes a partition at its first delivery; so the first live
//! replica (by name) nudges every partition that has no live owner — none
//! yet, one whose process ended (its database session, and with it its
//! claim holder lock, ended: seen at the next look, every [`WATCH`]), or
//! one gone silent (frozen, cut off) — and the active consumer takes it at
//! once.
//!
//! The heartbeat is a task of its own that talks only to the store, and
//! every broker call here has a time limit: a replica cut off from
//! RabbitMQ still sees that another replica took its partitions, and drops
//! them at once (`LoopControl::drop_now`). Another task asks RabbitMQ every
//! [`HEARTBEAT`] whether it answers ([`BrokerClock`]; a delivery counts
//! too): once its probes have gone unanswered for [`SILENCE`] — the bound
//! the others wait for a silent replica — the replica cannot consume its
//! partitions' queues, so
//! it lets go of every partition it holds (released under its epochs) and
//! stops announcing itself until the broker answers again. The others then
//! count it gone and nudge its partitions, idle ones too, to the consumers
//! RabbitMQ made active; without that, an idle partition would stay
//! recorded as the cut replica's until work arrived for it.
//!
//! It also marks the replica ready once every partition's queue is
//! subscribed (the replica is then a hot standby for all of them), and
//! publishes each owned partition's queue depth as a gauge.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use broker::{Broker, Queue};
use store::Store;
use tokio_util::sync::CancellationToken;

use super::Replica;
use super::partition::LoopControl;
use crate::health::{CONSUMING, Health};
use crate::messages::nudge;

/// How often a replica announces itself.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(2);

/// How often a replica looks at the others (owners gone, partitions taken
/// from it, the fair share): one small query, so that an owner's death
/// moves its partitions within about this long.
pub(super) const WATCH: Duration = Duration::from_millis(500);

/// Longest a broker call of the coordinator (a nudge, a queue depth) may
/// take: the next look tries again.
const BROKER_PATIENCE: Duration = Duration::from_secs(2);

/// A replica silent for this long counts as gone; a replica whose heartbeats
/// Postgres, or whose probes RabbitMQ ([`BrokerClock`]), has not answered
/// for this long lets go of its partitions.
pub const SILENCE: Duration = Duration::from_secs(6);

/// How long a hand-over may take before the next one is tried anyway.
const HANDOVER_PATIENCE: Duration = Duration::from_secs(30);

/// How often the same partition is nudged while it has no live owner.
const NUDGE_EVERY: Duration = SILENCE;

/// How often owned partitions' queue depths are published.
const DEPTH_EVERY: Duration = Duration::from_secs(10);

pub(super) struct Coordinator<B, S> {
    replica: Arc<Replica<B, S>>,
    controls: Vec<Arc<LoopControl>>,
    health: Health,
    /// The partition being handed over, and since when.
    handing_over: Option<(u16, Instant)>,
    /// The last partition handed over, and when it was let go.
    handed: Option<(u16, Instant)>,
    /// When each partition was last nudged by this replica.
    nudged: Vec<Option<Instant>>,
    last_depths: Instant,
    /// When the spread was last looked at.
    last_spread: Instant,
}

impl<B: Broker, S: Store> Coordinator<B, S> {
    pub(super) fn new(
        replica: Arc<Replica<B, S>>,
        controls: Vec<Arc<LoopControl>>,
        health: Health,
    ) -> Self {
        let nudged = vec![None; usize::from(replica.partitions)];
        Self {
            replica,
            controls,
            health,
            handing_over: None,
            handed: None,
            nudged,
            last_depths: Instant::now(),
            last_spread: Instant::now(),
        }
    }

    /// Runs until `shutdown`.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        self.health.set_ready(CONSUMING, false);
        let heartbeat = tokio::spawn(heartbeat(
            self.replica.clone(),
            self.controls.clone(),
            shutdown.clone(),
        ));
        let broker_watch = tokio::spawn(broker_watch(self.replica.clone(), shutdown.clone()));
        self.watch(shutdown).await;
        heartbeat.abort();
        broker_watch.abort();
    }

    async fn watch(&mut self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(WATCH);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.health.beat("aggregator coordinator");
            if self.controls.iter().all(|c| c.subscribed()) {
                self.health.set_ready(CONSUMING, true);
            }
            if let Err(e) = self.turn().await {
                // The store is away: try again at the next beat.
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    "aggregator coordination failed"
                );
            }
        }
    }

    async fn turn(&mut self) -> crate::Result<()> {
        let store = &self.replica.store;
        let live = store.live_replicas(SILENCE).await?;
        let owned: Vec<u16> = live
            .iter()
            .find(|r| r.replica == self.replica.id)
            .map(|r| r.partitions.clone())
            .unwrap_or_default();
        // The store first: what this replica must let go of never waits
        // for a broker call.
        self.drop_stale_ownership().await?;
        if self.replica.broker_heard.silence() >= SILENCE {
            // Cut from RabbitMQ: the heartbeat task lets go of everything,
            // and a nudge or a hand-over could not reach the broker anyway.
            return Ok(());
        }
        if live.iter().map(|r| &r.replica).min() == Some(&self.replica.id) {
            self.nudge_orphans(&live).await?;
        }
        if self.last_depths.elapsed() >= DEPTH_EVERY {
            self.last_depths = Instant::now();
            self.publish_depths(&owned).await;
        }
        // The spread at the heartbeat's pace, not every look: a hand-over
        // takes a moment to show in the store, and deciding on a view in
        // between would hand partitions back and forth.
        if self.last_spread.elapsed() < HEARTBEAT {
            return Ok(());
        }
        self.last_spread = Instant::now();
        let replicas = live.len().max(1);
        let fair = usize::from(self.replica.partitions).div_ceil(replicas);
        if let Some((p, since)) = self.handing_over {
            let done = !owned.contains(&p) || since.elapsed() > HANDOVER_PATIENCE;
            if !done {
                return Ok(());
            }
            self.handing_over = None;
            self.handed = Some((p, Instant::now()));
        }
        // The last partition handed over came back to this replica: no
        // other one consumes its queue (cut off from RabbitMQ, or not
        // subscribed yet, though it heartbeats). Handing it over again
        // would only loop; wait before the next try.
        if let Some((p, at)) = self.handed
            && owned.contains(&p)
            && at.elapsed() < HANDOVER_PATIENCE
        {
            return Ok(());
        }
        // Over the fair share, or two more than the least loaded replica:
        // with 4 partitions over 3 replicas the share is 2, and 2/2/0 would
        // stay.
        let least = live.iter().map(|r| r.partitions.len()).min().unwrap_or(0);
        if (owned.len() > fair || owned.len() >= least + 2)
            && let Some(&p) = owned.last()
        {
            tracing::info!(
                partition = p,
                owned = owned.len(),
                fair,
                least,
                replicas,
                "handing a partition over to even the spread"
            );
            self.controls[usize::from(p)].let_go("rebalance");
            self.handing_over = Some((p, Instant::now()));
        }
        Ok(())
    }

    /// Lets go of the partitions another replica has taken since this one
    /// took them. A replica that froze, or lost its connection, keeps its
    /// partitions' state while RabbitMQ hands their queues to a standby
    /// (its own consumer reconnects at the back of the line), and would
    /// find out only at its next save; meanwhile it would hold the state
    /// directory's lock that a next owner on the same volume needs.
    async fn drop_stale_ownership(&self) -> crate::Result<()> {
        let held: Vec<(u16, i64)> = (0..self.replica.partitions)
            .filter_map(|p| Some((p, self.controls[usize::from(p)].epoch()?)))
            .collect();
        if held.is_empty() {
            return Ok(());
        }
        let status = self.replica.store.partition_status().await?;
        for (p, mine) in held {
            // Epochs only grow: a newer one is another take-over, while an
            // older one was read before this replica's own.
            if let Some(now) = status.iter().find(|s| s.partition == p)
                && now.epoch > mine
            {
                tracing::warn!(
                    partition = p,
                    epoch = mine,
                    current = now.epoch,
                    owner = now.owner.as_deref().unwrap_or("-"),
                    "another replica took this partition: dropping its state"
                );
                // Fenced by the epoch, as a refused save would have been.
                self.replica.stats.count("fenced", 1);
                self.controls[usize::from(p)].drop_now("fenced");
            }
        }
        Ok(())
    }

    /// Nudges the partitions without a live owner (none since the start or a
    /// hand-over, or one gone silent), each at most every [`NUDGE_EVERY`].
    async fn nudge_orphans(&mut self, live: &[store::ReplicaInfo]) -> crate::Result<()> {
        let owned: Vec<u16> = live
            .iter()
            .flat_map(|r| r.partitions.iter().copied())
            .collect();
        for p in 0..self.replica.partitions {
            let last = &mut self.nudged[usize::from(p)];
            if owned.contains(&p) || last.is_some_and(|t| t.elapsed() < NUDGE_EVERY) {
                continue;
            }
            *last = Some(Instant::now());
            tracing::debug!(partition = p, "nudging a partition without a live owner");
            let sent = self
                .replica
                .broker
                .publish(vec![nudge(p, &self.replica.id)?]);
            match tokio::time::timeout(BROKER_PATIENCE, sent).await {
                Ok(sent) => sent?,
                Err(_) => {
                    tracing::warn!(
                        partition = p,
                        "nudge not confirmed in time; trying again later"
                    );
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The lag of each partition this replica owns, as a gauge; 0 for the
    /// others, so a partition that moved away does not keep its last
    /// depth here (the dashboard sums the replicas by partition).
    async fn publish_depths(&self, owned: &[u16]) {
        for p in 0..self.replica.partitions {
            let depth = if owned.contains(&p) {
                let asked = self.replica.broker.queue_depth(Queue::Results(p));
                match tokio::time::timeout(BROKER_PATIENCE, asked).await {
                    Ok(Ok(depth)) => depth as f64,
                    Ok(Err(_)) => continue,
                    // The broker does not answer: not again this round.
                    Err(_) => return,
                }
            } else {
                0.0
            };
            metrics::gauge!("batchline_partition_depth", "partition" => store::partition::name(p))
                .set(depth);
        }
    }
}

/// Whether RabbitMQ answers this replica: since when the probes of
/// [`broker_watch`] have gone unanswered, if they have. Counted from the
/// first probe that failed, not from the last answer, so that a replica
/// that was frozen (SIGSTOP) or starved does not take its own silence for
/// the broker's when it wakes; an answer or a delivery ends it.
#[derive(Debug)]
pub(super) struct BrokerClock {
    start: Instant,
    /// Milliseconds from `start` to the first unanswered probe since the
    /// last answer; [`ANSWERING`] while the broker answers.
    failing_since_ms: AtomicU64,
}

const ANSWERING: u64 = u64::MAX;

impl BrokerClock {
    pub(super) fn new() -> Self {
        Self {
            start: Instant::now(),
            failing_since_ms: AtomicU64::new(ANSWERING),
        }
    }

    /// The broker answered (a probe, a delivery).
    pub(super) fn heard(&self) {
        self.failing_since_ms.store(ANSWERING, Ordering::Relaxed);
    }

    /// A probe sent at `asked` went unanswered: the silence starts then
    /// unless it had.
    fn unanswered(&self, asked: Instant) {
        let at = asked.saturating_duration_since(self.start).as_millis();
        let at = u64::try_from(at).unwrap_or(ANSWERING - 1);
        let _ = self.failing_since_ms.compare_exchange(
            ANSWERING,
            at,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// How long the broker has gone unanswered (zero while it answers).
    pub(super) fn silence(&self) -> Duration {
        match self.failing_since_ms.load(Ordering::Relaxed) {
            ANSWERING => Duration::ZERO,
            since => self
                .start
                .elapsed()
                .saturating_sub(Duration::from_millis(since)),
        }
    }
}

/// Asks RabbitMQ every [`HEARTBEAT`] for a partition queue's depth; a depth
/// read within [`BROKER_PATIENCE`] is the broker heard, anything else an
/// unanswered probe. The publisher's connection stands for the
/// consumers': a network cut takes them all, and a consumer says nothing
/// while it reconnects.
async fn broker_watch<B: Broker, S: Store>(
    replica: Arc<Replica<B, S>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let asked_at = Instant::now();
        let asked = replica.broker.queue_depth(Queue::Results(0));
        match tokio::time::timeout(BROKER_PATIENCE, asked).await {
            Ok(Ok(_)) => replica.broker_heard.heard(),
            Ok(Err(e)) => {
                tracing::debug!(
                    error = &e as &dyn std::error::Error,
                    "RabbitMQ did not answer the replica's probe"
                );
                replica.broker_heard.unanswered(asked_at);
            }
            Err(_) => {
                tracing::debug!("RabbitMQ did not answer within {BROKER_PATIENCE:?}");
                replica.broker_heard.unanswered(asked_at);
            }
        }
    }
}

/// Announces the replica every [`HEARTBEAT`], in the store only: nothing
/// the broker does can hold it back. A replica whose beats have not
/// reached the store for [`SILENCE`] is dead to the others, yet RabbitMQ
/// keeps its queues' consumers active while its broker connection lives
/// (a cut from Postgres only): it lets go of every partition it holds, so
/// that a standby gets their queues and takes them over; it could not save
/// anything under its epochs anyway.
///
/// A replica whose probes RabbitMQ has not answered for [`SILENCE`] (a cut
/// from the broker only) lets go of every partition it holds too — under their
/// epochs, since it still reaches the store — and does not announce itself
/// until the broker answers again: it cannot consume the queues, and while
/// it looked alive nobody would nudge its idle partitions to the consumers
/// RabbitMQ made active instead.
async fn heartbeat<B: Broker, S: Store>(
    replica: Arc<Replica<B, S>>,
    controls: Vec<Arc<LoopControl>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_beat = Instant::now();
    let mut broker_away = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let broker_silent = replica.broker_heard.silence();
        if broker_silent >= SILENCE {
            if !broker_away {
                broker_away = true;
                tracing::warn!(
                    silent_s = broker_silent.as_secs(),
                    "RabbitMQ has not answered this replica for longer than the others wait: letting go of its partitions, and no heartbeat until it answers again"
                );
            }
            let held: Vec<&Arc<LoopControl>> =
                controls.iter().filter(|c| c.epoch().is_some()).collect();
            if !held.is_empty() {
                replica.stats.count("broker_silence_let_go", 1);
                for control in held {
                    control.drop_now("broker unreachable");
                }
            }
            continue;
        }
        if broker_away {
            broker_away = false;
            tracing::info!("RabbitMQ answers again: announcing this replica again");
        }
        // A cut connection can hang a statement far longer than a beat.
        let beat = tokio::time::timeout(HEARTBEAT, replica.store.replica_heartbeat(&replica.id));
        match beat.await {
            Ok(Ok(())) => last_beat = Instant::now(),
            Ok(Err(e)) => tracing::warn!(
                error = &e as &dyn std::error::Error,
                "aggregator heartbeat failed"
            ),
            Err(_) => tracing::warn!("aggregator heartbeat got no answer within {HEARTBEAT:?}"),
        }
        if last_beat.elapsed() >= SILENCE {
            let held: Vec<&Arc<LoopControl>> =
                controls.iter().filter(|c| c.epoch().is_some()).collect();
            if !held.is_empty() {
                tracing::warn!(
                    partitions = held.len(),
                    silent_s = last_beat.elapsed().as_secs(),
                    "the store has not heard this replica for longer than the others wait: letting go of its partitions"
                );
                replica.stats.count("store_silence_let_go", 1);
                for control in held {
                    control.drop_now("store unreachable");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_silence_runs_from_the_first_unanswered_probe_until_an_answer() {
        let clock = BrokerClock::new();
        // A replica that has not probed yet (or woke from a freeze) is not
        // silent, however long ago the last answer was.
        assert_eq!(clock.silence(), Duration::ZERO);
        clock.unanswered(Instant::now());
        let first = clock.silence();
        // A later failure does not move the start of the silence.
        clock.unanswered(Instant::now());
        assert!(clock.silence() >= first);
        clock.heard();
        assert_eq!(clock.silence(), Duration::ZERO);
    }
}
