//! The sweeper (inside executor processes): finds work whose message was
//! lost or never sent and sends it again.
//!
//! - chunks dispatched whose message is nowhere (the dispatcher died or
//!   froze between its commit and its publish; a frozen executor holds it
//!   unclaimed): 5 s after their dispatch when the work queue is empty,
//!   60 s after otherwise; and chunks whose lease expired long ago (their
//!   message is gone): their work message is re-published;
//! - batches whose chunks are all completed but that have no aggregate past
//!   a deadline (e.g. the aggregator quarantined a corrupt row): their chunk
//!   results are re-published with their original msg_ids, so the
//!   aggregator drops what it has and refills what it lost; after
//!   `max_rounds` such rounds the batch gets FAILURE with a reason;
//! - batches with a failed chunk but no verdict get their FAILURE message
//!   (again);
//! - retention: with `RETENTION_DAYS`, batches finished longer ago are
//!   purged (never an unfinished one: that takes a person's
//!   `purge --force`), and purges interrupted after their commit are
//!   finished. Each sweep: both are one indexed query when there is
//!   nothing to do.
//!
//! Several sweepers may run: the store hands each row to one of them
//! (`SKIP LOCKED`), and everything re-published is idempotent downstream.

use std::time::Duration;

use broker::{Broker, Queue};
use store::Store;
use tokio_util::sync::CancellationToken;

use crate::Result;
use crate::messages::{VerifyMsg, nudge, stored_result, work_messages};
use crate::retention;
use crate::telemetry::StageStats;

pub const DEFAULT_SWEEP_INTERVAL_S: u64 = 5;
pub const DEFAULT_STALL_DEADLINE_S: u64 = 20;

/// A dispatched chunk still waiting this long is published again: far
/// longer than a shallow queue keeps a chunk while executors work
/// ([`crate::dispatch`]); a duplicate costs only a fenced claim.
const QUEUED_AFTER: Duration = Duration::from_secs(60);
/// The same while the work queue holds no message at all: the chunk's
/// message was lost (its dispatcher died or froze between its commit and
/// its publish) or sits unclaimed in a frozen executor's prefetch.
const LOST_AFTER: Duration = Duration::from_secs(5);
/// Re-publish rounds of a stalled batch before it is failed.
const MAX_ROUNDS: i32 = 3;

/// The sweeper's settings (it runs inside executors).
#[derive(Clone, Debug, clap::Args)]
pub struct SweeperSettings {
    /// Seconds between sweeps.
    #[arg(long, env = "SWEEP_INTERVAL_S", default_value_t = DEFAULT_SWEEP_INTERVAL_S)]
    pub sweep_interval_s: u64,
    /// Seconds a batch may sit complete but unaggregated before its chunk
    /// results are re-published.
    #[arg(long, env = "STALL_DEADLINE_S", default_value_t = DEFAULT_STALL_DEADLINE_S)]
    pub stall_deadline_s: u64,
    /// Purge batches finished more than this many days ago (fractions
    /// allowed); unset or 0 keeps every batch.
    #[arg(long, env = "RETENTION_DAYS", value_parser = parse_days)]
    pub retention_days: Option<f64>,
}

fn parse_days(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(d) if d.is_finite() && d >= 0.0 => Ok(d),
        _ => Err(format!("{s:?} is not a number of days (e.g. 30 or 0.5)")),
    }
}

impl Default for SweeperSettings {
    fn default() -> Self {
        Self {
            sweep_interval_s: DEFAULT_SWEEP_INTERVAL_S,
            stall_deadline_s: DEFAULT_STALL_DEADLINE_S,
            retention_days: None,
        }
    }
}

impl SweeperSettings {
    /// The timings for executors leasing chunks for `lease`.
    pub fn resolve(&self, lease: Duration) -> SweeperConfig {
        SweeperConfig {
            interval: Duration::from_secs(self.sweep_interval_s.max(1)),
            queued_after: QUEUED_AFTER,
            lost_after: LOST_AFTER,
            // A third of the lease plus a second: a live owner renews every
            // third of the lease, so a lease this far past its end is dead.
            lease_grace: lease / 3 + Duration::from_secs(1),
            stall_deadline: Duration::from_secs(self.stall_deadline_s.max(1)),
            max_rounds: MAX_ROUNDS,
            retention: self
                .retention_days
                .filter(|d| *d > 0.0)
                .map(|d| Duration::from_secs_f64(d * 86_400.0)),
        }
    }
}

/// Sweeper timings.
#[derive(Clone, Debug)]
pub struct SweeperConfig {
    pub interval: Duration,
    /// A dispatched chunk still waiting this long is published again.
    pub queued_after: Duration,
    /// The same while the work queue is empty.
    pub lost_after: Duration,
    /// A running chunk is re-published this long after its lease expired.
    pub lease_grace: Duration,
    /// All chunks completed but no aggregate for this long → re-publish results.
    pub stall_deadline: Duration,
    /// Re-publish rounds before the batch is failed.
    pub max_rounds: i32,
    /// Batches finished longer ago are purged; `None` keeps them.
    pub retention: Option<Duration>,
}

/// Sweeps every `interval` until `shutdown`.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    cfg: SweeperConfig,
    stats: StageStats,
    shutdown: CancellationToken,
) {
    let mut ticker = tokio::time::interval(cfg.interval);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        // Infrastructure away: the next sweep tries again.
        if let Err(e) = sweep_once(&broker, &store, &cfg, &stats).await {
            tracing::warn!(error = &e as &dyn std::error::Error, "sweep failed");
        }
        if let Err(e) = retain(&broker, &store, cfg.retention, &stats).await {
            tracing::warn!(error = &e as &dyn std::error::Error, "retention failed");
        }
    }
}

/// Purges batches finished longer ago than `keep` (if set), and finishes
/// interrupted purges.
pub async fn retain<B: Broker, S: Store>(
    broker: &B,
    store: &S,
    keep: Option<Duration>,
    stats: &StageStats,
) -> Result<()> {
    let finished = store.finish_purges().await?;
    if finished > 0 {
        tracing::info!(batches = finished, "interrupted purges finished");
    }
    let Some(keep) = keep else {
        return Ok(());
    };
    let target = retention::Target::OlderThan(keep);
    let done =
        retention::purge(store, Some(broker), &target, retention::Options::default()).await?;
    let purged = done
        .iter()
        .filter(|p| p.outcome == store::Purge::Purged)
        .count();
    if purged > 0 {
        tracing::info!(
            batches = purged,
            keep_days = keep.as_secs_f64() / 86_400.0,
            "retention purged batches"
        );
        stats.count("batches_purged", purged as u64);
    }
    Ok(())
}

/// One pass of the sweeper.
pub async fn sweep_once<B: Broker, S: Store>(
    broker: &B,
    store: &S,
    cfg: &SweeperConfig,
    stats: &StageStats,
) -> Result<()> {
    // Dispatched chunks whose message is nowhere: an empty work queue says
    // so after a short while (an executor claims what it is delivered at
    // once, unless it froze holding it); otherwise only a long wait does.
    let queued_after = if broker.queue_depth(Queue::Work).await? == 0 {
        cfg.lost_after
    } else {
        cfg.queued_after
    };
    let chunks = store
        .take_chunks_to_republish(queued_after, cfg.lease_grace, 1000)
        .await?;
    if !chunks.is_empty() {
        tracing::info!(
            chunks = chunks.len(),
            "sweeper re-publishing lost or abandoned chunks"
        );
        broker.publish(work_messages(&chunks)?).await?;
        store.mark_published(&chunks).await?;
        stats.count("swept_chunks", chunks.len() as u64);
    }

    // Only judge stalled batches when the aggregators have nothing queued: a
    // busy or stopped aggregator is not a lost chunk.
    let partitions = store.partitions().await?;
    let mut queued = 0;
    for p in 0..partitions {
        queued += broker.queue_depth(Queue::Results(p)).await?;
    }
    if queued == 0 {
        for (batch_id, round) in store.take_stalled_batches(cfg.stall_deadline, 100).await? {
            if round > cfg.max_rounds {
                let reason = format!(
                    "aggregation stalled: all chunks completed but no aggregate after {} re-publish rounds",
                    cfg.max_rounds
                );
                tracing::error!(batch = %batch_id, "{reason}");
                let v = VerifyMsg::failed(batch_id, reason);
                broker.publish(vec![v.to_message()?]).await?;
                continue;
            }
            if !store.cancelled_among(&[batch_id]).await?.is_empty() {
                // A cancel whose nudge was lost: the partition's owner seals
                // the batch from the store when nudged.
                let p = store::partition::of(batch_id, partitions);
                tracing::warn!(batch = %batch_id, round, "cancelled batch not sealed past its deadline: nudging its partition");
                broker.publish(vec![nudge(p, "sweeper")?]).await?;
                stats.count("cancelled_batches_nudged", 1);
                continue;
            }
            let results = store.chunk_results(batch_id).await?;
            tracing::warn!(batch = %batch_id, round, chunks = results.len(), "batch not aggregated past its deadline: re-publishing its chunk results");
            let msgs = results
                .into_iter()
                .map(|(chunk, json)| stored_result(batch_id, chunk, json, partitions))
                .collect();
            broker.publish(msgs).await?;
            stats.count("stalled_batches_republished", 1);
        }
    }

    // An aggregate saved but never announced (the aggregator died in between):
    // announce it again; the verifier records one verdict whatever it gets.
    for batch_id in store
        .aggregated_without_verdict(cfg.stall_deadline, 100)
        .await?
    {
        tracing::warn!(batch = %batch_id, "batch aggregated but not verified past its deadline: sending it to the verifier again");
        broker
            .publish(vec![VerifyMsg::aggregated(batch_id).to_message()?])
            .await?;
        stats.count("unverified_batches_republished", 1);
    }

    for (batch_id, reason) in store.failed_batches_without_verdict(100).await? {
        let v = VerifyMsg::failed(batch_id, reason);
        broker.publish(vec![v.to_message()?]).await?;
    }
    Ok(())
}
