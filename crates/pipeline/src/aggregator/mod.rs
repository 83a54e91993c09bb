//! The aggregator stage (the stateful one): folds chunk results per batch
//! through the [`StatefulWorkerManager`], one CSV append log per batch, in
//! a fixed number of partitions (a stable hash of the batch id,
//! `store::partition`) so that any number of replicas can share the work.
//!
//! Each partition's results queue has a single active consumer: every
//! replica consumes every partition, RabbitMQ makes one active per
//! partition, the others wait as hot standbys. RabbitMQ's choice is not a
//! fence: a replica becomes the partition's owner when its first delivery
//! arrives by taking a new epoch in the store, rebuilds the partition's
//! state (its CSVs in `p{NN}/` if it has them, plus the changelog in the
//! store: the stored results of the partition's open batches), and saves
//! aggregates only under that epoch. A replica that finds itself fenced
//! drops the partition's state and lets go of its queue.
//!
//! Per partition, each window of deliveries (what arrived together, up to
//! the commit window) is validated, appended, made durable with one group
//! commit (one fsync per touched file) and only then acked. A batch whose
//! chunks are all in is finalized after the acks: aggregate saved under the
//! epoch (first write wins), verify message published (confirmed), then
//! the batch is completed in the manager (tombstone, CSV deleted). Each
//! step of finalization is idempotent (the crash table in
//! `docs/architecture.md`).
//!
//! Replicas heartbeat in the store; one owning more than its fair share of
//! the partitions hands one over gracefully (cancel, drain, ack, release),
//! one at a time; SIGTERM hands over everything. A replica that Postgres or
//! RabbitMQ has not answered for [`SILENCE`] lets go of its partitions
//! under their epochs (it can neither save nor consume); cut from RabbitMQ,
//! it also stops announcing itself until the broker answers again, so that
//! the others take its idle partitions too.
//!
//! Layout: `settings` ([`AggregatorSettings`]), `state` (the row on disk and
//! the per-batch state), `partition` (the [`Stage`] of one partition:
//! ownership, windows, finalization), `takeover` (becoming and ceasing to
//! be a partition's owner), `checks` (what a result must match),
//! `coordinator` (heartbeats, fair share, readiness, queue depths),
//! `upgrade` (state and queue of versions before partitions), and here the
//! wiring and each partition's loop.

mod checks;
mod coordinator;
mod partition;
mod settings;
mod state;
mod takeover;
mod upgrade;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use broker::Broker;
use stateful_worker::StatefulWorkerManager;
use store::Store;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use coordinator::SILENCE;
pub use settings::{AggregatorSettings, DEFAULT_COMMIT_WINDOW};
pub use state::{BatchState, ChunkRow};

use crate::common::BatchCache;
use crate::faults::Faults;
use crate::health::Health;
use crate::retry::retrying;
use crate::stage::{self, Shape, Stopping};
use crate::telemetry::StageStats;
use crate::{Error, Result};
use coordinator::{BrokerClock, Coordinator};
use partition::{LoopControl, Partition};

type Manager = StatefulWorkerManager<BatchState>;

/// How long a replica waits before it subscribes again after letting go of
/// a partition: long enough to be behind the replicas already waiting.
const REJOIN_DELAY: Duration = Duration::from_secs(1);

/// What every partition of one replica shares.
struct Replica<B, S> {
    /// This replica's name in the store (owner of partitions, heartbeats).
    id: String,
    broker: B,
    store: S,
    /// The state root: each partition's state is in `root/p{NN}/`.
    root: PathBuf,
    partitions: u16,
    faults: Faults,
    stats: StageStats,
    cache: BatchCache,
    /// When RabbitMQ last answered this replica (`coordinator`).
    broker_heard: BrokerClock,
}

/// Runs the aggregator replica on the state under `dir` until `shutdown`,
/// then hands every partition over.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    dir: PathBuf,
    settings: AggregatorSettings,
    stats: StageStats,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    let window = settings.commit_window();
    let partitions = retrying("read the partition count", &shutdown, || async {
        Ok(store.partitions().await?)
    })
    .await?;
    let moved = upgrade::move_legacy_state(&dir, partitions).await?;
    let upgraded = moved
        || retrying(
            "read whether batches predate partitions",
            &shutdown,
            || async { Ok(store.predates_partitions().await?) },
        )
        .await?;
    let id = settings.replica_id();
    // The replica's liveness is its process's database session (seen by
    // the others at once when the process dies), and a previous process
    // under the same name owns nothing any more.
    retrying("take the replica's session lock", &shutdown, || async {
        Ok(store.hold_claims().await?)
    })
    .await?;
    let released = retrying(
        "release a previous process's partitions",
        &shutdown,
        || async { Ok(store.release_replica(&id, "restart").await?) },
    )
    .await?;
    if !released.is_empty() {
        tracing::info!(replica = %id, ?released, "partitions of a previous process of this name released");
    }
    let replica = Arc::new(Replica {
        id,
        broker: broker.clone(),
        store,
        root: dir,
        partitions,
        faults: settings.faults.parse()?,
        stats: stats.clone(),
        cache: BatchCache::default(),
        broker_heard: BrokerClock::new(),
    });
    tracing::info!(replica = %replica.id, partitions, "aggregator replica starting");
    let shape = Shape {
        prefetch: window,
        window: usize::from(window),
        in_flight: 1,
        marks_ready: false,
        ..Shape::sequential(window)
    };
    let mut loops = JoinSet::new();
    let mut controls = Vec::new();
    for p in 0..partitions {
        let control = Arc::new(LoopControl::default());
        controls.push(control.clone());
        let (replica, health, shutdown) = (replica.clone(), health.clone(), shutdown.clone());
        loops.spawn(run_partition(replica, p, shape, control, health, shutdown));
    }
    let legacy = upgraded.then(|| {
        tokio::spawn(upgrade::drain_legacy_queue(
            broker,
            partitions,
            StageStats::new("upgrade"),
            shutdown.clone(),
        ))
    });
    let coordinator = Coordinator::new(replica.clone(), controls, health);
    let outcome = tokio::select! {
        () = coordinator.run(shutdown.clone()) => Ok(()),
        Some(joined) = loops.join_next() => flatten(joined),
    };
    // Every partition lets go (a fatal error stops them too).
    shutdown.cancel();
    while let Some(joined) = loops.join_next().await {
        if let Err(e) = flatten(joined) {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "a partition stopped with an error"
            );
        }
    }
    if let Some(legacy) = legacy {
        legacy.abort();
    }
    tracing::info!(replica = %replica.id, "aggregator replica stopped");
    outcome
}

fn flatten(joined: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    joined.map_err(|source| Error::Task {
        what: "aggregator partition",
        source,
    })?
}

/// One partition's loop: consume (standby until RabbitMQ makes this
/// replica active), let go when asked (fenced, rebalance, shutdown), and
/// subscribe again at the back of the line, until `shutdown`.
async fn run_partition<B: Broker, S: Store>(
    replica: Arc<Replica<B, S>>,
    p: u16,
    shape: Shape,
    control: Arc<LoopControl>,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    loop {
        let stopping = Stopping::on(shutdown.child_token());
        control.started(&stopping);
        let abort = stopping.abort.clone();
        let stage = Arc::new(Partition::new(
            replica.clone(),
            p,
            control.clone(),
            stopping.abort.clone(),
        ));
        let running = stage::run(
            replica.broker.clone(),
            stage.clone(),
            shape,
            replica.stats.clone(),
            health.clone(),
            stopping,
        );
        // A fenced partition is dropped at once (`LoopControl::drop_now`):
        // its loop is abandoned wherever it waits (a publish to a broker
        // that does not answer, a consumer's cancel), its windows are never
        // acked (they go back to the queue, and the new owner has their
        // results from the changelog), and the directory lock goes with
        // the state just below.
        let outcome = tokio::select! {
            biased;
            outcome = running => outcome,
            () = abort.cancelled() => Ok(()),
        };
        let cause = control.take_cause().unwrap_or(if shutdown.is_cancelled() {
            "shutdown"
        } else {
            "stopped"
        });
        stage.let_go(cause).await;
        match outcome {
            Err(e) if e.is_fatal() || matches!(e, Error::Task { .. }) => return Err(e),
            Err(e) => tracing::warn!(
                partition = p,
                error = &e as &dyn std::error::Error,
                "partition loop stopped; subscribing again"
            ),
            Ok(()) => {}
        }
        if shutdown.is_cancelled() {
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(REJOIN_DELAY) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}
