//! The dispatcher: keeps the work queue shallow and fills it in fair-share
//! order (docs/architecture.md, "Fair share").
//!
//! A submitted batch's chunks wait in the store, not in RabbitMQ. Whenever
//! fewer than `depth` chunks wait in the work queue, the store decides
//! which chunks go next ([`store::roles::Scheduling::dispatch`], exact and
//! one decision at a time) and the dispatcher publishes them. Every
//! executor runs one, woken by its own claims (a chunk left the queue) and
//! by a short tick; `submit` fills once itself, so an idle pool starts at
//! once. A new batch thus waits behind at most `depth` queued chunks plus
//! the chunks the executors hold, whatever the size of the batches before
//! it, and a cancel finds only that many messages of its batch to drop.
//!
//! Crash reasoning (the crash table in docs/architecture.md): the store
//! marks chunks published before their messages go out. A failed publish
//! gives them back ([`store::roles::Scheduling::undispatch`]); a process
//! that dies in between leaves them marked with no message, and the
//! sweeper publishes a chunk queued that long again ([`crate::sweeper`]).
//! A duplicate message is harmless: the claim is fenced.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::Broker;
use store::Store;
use store::share::Charge;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::messages::work_messages;
use crate::telemetry::StageStats;

/// Chunks kept waiting in the work queue: enough that an executor that
/// takes one finds the next while the dispatch that replaces it commits
/// (the chunks an executor holds cover that), few enough that a new batch
/// waits behind little.
pub const DEFAULT_DISPATCH_DEPTH: i64 = 2;

/// Estimated executor seconds of work kept in the work queue besides the
/// [`DEFAULT_DISPATCH_DEPTH`] chunks: cheap chunks (a `sum` chunk takes a
/// few tens of milliseconds) go out several at a time, so executors are
/// not left waiting on a dispatch per chunk; costly ones are bounded by the
/// chunk count. The queue is refilled when it holds less than half of it.
pub const DISPATCH_AHEAD_S: f64 = 0.5;

/// Most chunks one dispatch hands out.
const DISPATCH_LIMIT: i64 = 500;

/// How often a dispatcher looks without being woken: what a batch
/// submitted while the submitter could not dispatch waits at most, and how
/// fast chunks freed by a cancel are refilled.
const TICK: Duration = Duration::from_millis(250);

/// How often an executor tells the store it is alive, with its threads.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// The dispatcher's settings (it runs inside executors).
#[derive(Clone, Debug, clap::Args)]
pub struct DispatchSettings {
    /// Chunks kept waiting in the work queue, dispatched in fair-share
    /// order; a new batch waits behind about this many plus what the
    /// executors hold.
    #[arg(long, env = "DISPATCH_DEPTH", default_value_t = DEFAULT_DISPATCH_DEPTH,
          value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub dispatch_depth: i64,
}

impl Default for DispatchSettings {
    fn default() -> Self {
        Self {
            dispatch_depth: DEFAULT_DISPATCH_DEPTH,
        }
    }
}

/// Dispatches until `depth` chunks wait in the work queue (or nothing is
/// left to dispatch); returns how many went out.
pub async fn fill<B: Broker, S: Store>(broker: &B, store: &S, depth: i64) -> Result<usize> {
    let mut sent = 0;
    loop {
        let chunks = store
            .dispatch(depth, DISPATCH_AHEAD_S, DISPATCH_LIMIT)
            .await?;
        if chunks.is_empty() {
            return Ok(sent);
        }
        if let Err(e) = broker.publish(work_messages(&chunks)?).await {
            // Back to waiting; if even that fails, the sweeper publishes
            // them once they have been queued too long.
            if let Err(undo) = store.undispatch(&chunks).await {
                tracing::warn!(
                    error = &undo as &dyn std::error::Error,
                    chunks = chunks.len(),
                    "could not give back undelivered chunks; the sweeper will publish them"
                );
            }
            return Err(e.into());
        }
        sent += chunks.len();
    }
}

/// What an executor's dispatcher needs.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    pub depth: i64,
    /// This executor, for the heartbeat.
    pub worker: String,
    /// Its simulation threads: the pool's size for estimates.
    pub threads: i32,
    /// Woken when a chunk left the queue.
    pub wake: Arc<Notify>,
    /// What the executor measured, charged before each dispatch.
    pub charges: Charges,
}

/// Executor time measured and not yet charged: the executor adds to it,
/// the dispatcher charges it in one transaction before each dispatch, so
/// the clocks a dispatch reads are as fresh as the chunks just done and
/// no chunk pays a transaction of its own.
#[derive(Clone, Debug, Default)]
pub struct Charges(Arc<Mutex<Vec<Charge>>>);

impl Charges {
    pub fn add(&self, charge: Charge) {
        // A poisoned lock only means a panic mid-push: the list is intact.
        let mut list = self.0.lock().unwrap_or_else(|p| p.into_inner());
        list.push(charge);
    }

    fn take(&self) -> Vec<Charge> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Dispatcher {
    /// Fills the queue whenever woken or every [`TICK`], until `shutdown`.
    pub async fn run<B: Broker, S: Store>(
        self,
        broker: B,
        store: S,
        stats: StageStats,
        shutdown: CancellationToken,
    ) {
        let mut ticker = tokio::time::interval(TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = ticker.tick() => {}
                _ = heartbeat.tick() => {
                    if let Err(e) = store.executor_heartbeat(&self.worker, self.threads).await {
                        tracing::debug!(error = &e as &dyn std::error::Error, "executor heartbeat failed");
                    }
                    continue;
                }
            }
            // Best effort: a charge lost to an error leaves the estimates.
            let charges = self.charges.take();
            if let Err(e) = store.charge(&charges).await {
                tracing::warn!(
                    error = &e as &dyn std::error::Error,
                    charges = charges.len(),
                    "charging executor time failed"
                );
            }
            // Infrastructure away: the next wake or tick tries again.
            match stats
                .time("dispatch", fill(&broker, &store, self.depth))
                .await
            {
                Ok(0) => {}
                Ok(n) => stats.count("dispatched", n as u64),
                Err(e) => tracing::warn!(error = &e as &dyn std::error::Error, "dispatch failed"),
            }
        }
    }
}
