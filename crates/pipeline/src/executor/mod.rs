//! The executor stage: claim a chunk, simulate it on the blocking pool,
//! commit its per-run rows and completion in one transaction, publish the
//! chunk result, and only then ack.
//!
//! Crash reasoning (the crash table in `docs/architecture.md`): a crash
//! after the claim leaves the chunk running under a lease, but this
//! process's claims are tied to its database session
//! ([`store::Store::hold_claims`]), so the redelivered message finds the
//! holder gone and takes the chunk at once (attempt + 1); a crash after the
//! commit makes the redelivered message find the chunk completed, and its
//! stored result is re-published with the same msg_id; a frozen or
//! partitioned owner keeps its session, so its chunk passes on only when
//! the lease runs out, and its late commit is fenced by the attempt number
//! it claimed with. While this executor holds a claim it renews the lease
//! ([`lease`]), so a slow chunk is never taken from a live executor.
//!
//! Pipelining: `concurrency` bounds the chunks *simulating* at once (the
//! blocking threads), not the chunks in flight. A chunk gives its simulation
//! slot back as soon as its runs are computed, so the next chunk simulates
//! while this one's rows are committed and its result published; the cores
//! stay on simulation while the commit waits on Postgres.
//!
//! Layout: `settings` ([`ExecutorSettings`]), `lease` (renewal while a chunk
//! is held), `simulate` (the runs of one chunk), and here the [`Stage`].

mod lease;
mod settings;
mod simulate;

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Message, Queue};
use store::share::Charge;
use store::{AttemptFailure, Claim, Completion, RunRows, Store};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use workload::Summary;

pub use lease::CANCEL_POLL;
pub use settings::{
    DEFAULT_DRAIN_TIMEOUT_S, DEFAULT_LEASE_S, DEFAULT_MAX_ATTEMPTS, ExecutorSettings, cores,
};
pub use simulate::{Ran, STOP_CHECK_RUNS, Stop, simulate, simulate_until};

use crate::common::{BatchCache, LoadedBatch, Lookup};
use crate::dispatch::{Charges, Dispatcher};
use crate::faults::CrashPoint;
use crate::health::Health;
use crate::messages::{ResultMsg, VERSION, VerifyMsg, WorkMsg, stored_result};
use crate::retry::retrying;
use crate::stage::{self, Handled, Inbound, Outcome, Shape, Stage, Stopping};
use crate::sweeper;
use crate::telemetry::StageStats;
use crate::{Error, Result};
use lease::LeaseRenewal;
use settings::Resolved;

/// Runs the executor (and, unless turned off, the sweeper) until
/// `shutdown`, then drains the chunks in flight.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    settings: ExecutorSettings,
    stats: StageStats,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    let cfg = settings.resolve()?;
    tracing::info!(concurrency = cfg.concurrency, worker = %cfg.worker_id, "executor starting");
    // Our chunks pass on the moment this process is gone, not a lease later.
    retrying("hold claims", &shutdown, || async {
        Ok(store.hold_claims().await?)
    })
    .await?;
    let partitions = retrying("read the partition count", &shutdown, || async {
        Ok(store.partitions().await?)
    })
    .await?;
    // Fills the work queue in fair-share order, woken by our claims.
    let wake = Arc::new(Notify::new());
    let charges = Charges::default();
    let dispatcher = tokio::spawn(
        Dispatcher {
            depth: settings.dispatch.dispatch_depth,
            worker: cfg.worker_id.clone(),
            threads: i32::try_from(cfg.concurrency).unwrap_or(i32::MAX),
            wake: wake.clone(),
            charges: charges.clone(),
        }
        .run(
            broker.clone(),
            store.clone(),
            stats.clone(),
            shutdown.clone(),
        ),
    );
    let sweeper = (!settings.no_sweeper).then(|| {
        let sweep = settings.sweeper.resolve(cfg.lease);
        tokio::spawn(sweeper::run(
            broker.clone(),
            store.clone(),
            sweep,
            stats.clone(),
            shutdown.clone(),
        ))
    });
    let shape = Shape {
        prefetch: cfg.chunks_in_flight,
        window: 1,
        in_flight: usize::from(cfg.chunks_in_flight),
        drain_timeout: cfg.drain_timeout,
        ..Shape::sequential(1)
    };
    let stopping = Stopping::on(shutdown);
    let executor = Arc::new(Executor {
        simulating: Arc::new(Semaphore::new(cfg.concurrency)),
        broker: broker.clone(),
        store,
        cfg,
        partitions,
        cache: BatchCache::default(),
        stats: stats.clone(),
        shutdown: stopping.abort.clone(),
        dequeued: wake,
        charges,
    });
    let outcome = stage::run(broker, executor, shape, stats, health, stopping).await;
    dispatcher.abort();
    if let Some(sweeper) = sweeper {
        sweeper.abort();
    }
    outcome
}

/// What simulating a chunk gave: its rows and summary, or why it failed
/// (an attempt failure, retried or terminal, not an error of the stage).
enum Simulated {
    Done(RunRows, Summary),
    Failed(String),
    /// Its batch was cancelled meanwhile: stopped after `runs` runs.
    Cancelled {
        runs: u64,
    },
}

/// The executor's domain steps; the loop around them is [`stage::run`].
struct Executor<B, S> {
    broker: B,
    store: S,
    cfg: Resolved,
    /// Result partitions: where a chunk's result goes.
    partitions: u16,
    cache: BatchCache,
    stats: StageStats,
    /// Ends the steps' retries (the runtime's abort: the drain time is up).
    shutdown: CancellationToken,
    /// Simulation slots (`concurrency`), held only while a chunk simulates.
    simulating: Arc<Semaphore>,
    /// Wakes this process's dispatcher: a chunk left the work queue.
    dequeued: Arc<Notify>,
    /// Executor time measured, for the dispatcher to charge.
    charges: Charges,
}

impl<B: Broker, S: Store> Stage for Executor<B, S> {
    type Msg = WorkMsg;
    type Done = ();

    fn queue(&self) -> Queue {
        Queue::Work
    }

    async fn handle(&self, window: Vec<Inbound<WorkMsg>>) -> Result<Handled<()>> {
        let mut outcomes = Vec::with_capacity(window.len());
        for inbound in window {
            let msg = &inbound.msg;
            let span = tracing::info_span!(
                "chunk",
                batch = %msg.batch_id,
                chunk = msg.chunk,
                attempt = tracing::field::Empty,
                msg_id = %inbound.msg_id,
            );
            outcomes.push(self.chunk(msg).instrument(span).await?);
        }
        Ok(Handled { outcomes, done: () })
    }
}

impl<B: Broker, S: Store> Executor<B, S> {
    /// One work message: claim the chunk and act on what the claim found.
    async fn chunk(&self, msg: &WorkMsg) -> Result<Outcome> {
        let loaded = match self
            .cache
            .load(&self.store, msg.batch_id, &self.shutdown)
            .await?
        {
            Lookup::Found(b) => b,
            Lookup::Purged => return Ok(self.purged(msg)),
            Lookup::Invalid(reason) => return Ok(Outcome::DeadLetter(reason)),
        };
        if msg.chunk < 0 || msg.chunk >= loaded.batch.chunks {
            return Ok(Outcome::DeadLetter(format!(
                "chunk {} out of range (batch has {})",
                msg.chunk, loaded.batch.chunks
            )));
        }
        let claim = self.stats.time("claim", self.claim(msg)).await?;
        // Whatever the claim found, the chunk is out of the queue: refill it.
        self.dequeued.notify_one();
        match claim {
            Claim::Claimed { attempt } => {
                tracing::Span::current().record("attempt", attempt);
                self.cfg.faults.maybe_crash(CrashPoint::AfterClaim);
                self.execute(&loaded, msg, attempt).await
            }
            Claim::Completed { result } => {
                // Committed earlier (crash before publish or ack): publish the
                // stored result again; the aggregator drops it if it has it.
                self.stats.count("republished_completed", 1);
                let stored = stored_result(msg.batch_id, msg.chunk, result, self.partitions);
                self.publish(vec![stored]).await?;
                Ok(Outcome::Ack)
            }
            Claim::Leased { remaining_s } => {
                tracing::debug!(remaining_s, "chunk leased by another worker; delayed retry");
                self.stats.count("lease_held", 1);
                self.publish(vec![msg.to_message(Queue::Retry)?]).await?;
                Ok(Outcome::Ack)
            }
            Claim::Failed { reason } => {
                self.publish_failure(msg, &reason).await?;
                Ok(Outcome::Ack)
            }
            Claim::NotFound => Ok(Outcome::DeadLetter(format!(
                "unknown chunk {} of batch {}",
                msg.chunk, msg.batch_id
            ))),
            Claim::Purged => Ok(self.purged(msg)),
            Claim::Cancelled => {
                // Cancelled before this chunk ran (`batchline cancel`).
                tracing::debug!("work of a cancelled batch dropped");
                self.stats.count("cancelled_dropped", 1);
                Ok(Outcome::Ack)
            }
        }
    }

    /// Work of a purged batch: late, dropped (acked).
    fn purged(&self, msg: &WorkMsg) -> Outcome {
        tracing::info!(batch = %msg.batch_id, chunk = msg.chunk, "work of a purged batch dropped");
        self.stats.count("purged_dropped", 1);
        Outcome::Ack
    }

    async fn claim(&self, msg: &WorkMsg) -> Result<Claim> {
        retrying("claim", &self.shutdown, || async {
            Ok(self
                .store
                .claim_chunk(
                    msg.batch_id,
                    msg.chunk,
                    &self.cfg.worker_id,
                    self.cfg.lease,
                    self.cfg.max_attempts,
                )
                .await?)
        })
        .await
    }

    /// Simulates a claimed chunk, commits it under its attempt, publishes
    /// its result.
    async fn execute(&self, loaded: &LoadedBatch, msg: &WorkMsg, attempt: i32) -> Result<Outcome> {
        let lease = self.cfg.lease;
        let stop = Arc::new(Stop::new());
        let _renewal = LeaseRenewal::start(
            &self.store,
            &self.stats,
            msg,
            attempt,
            lease,
            &self.shutdown,
            stop.clone(),
        );
        let (simulated, took) = self.simulate_chunk(loaded, msg, attempt, &stop).await?;
        let outcome = match simulated {
            Simulated::Done(rows, summary) => {
                let batch = &loaded.batch;
                let result = ResultMsg {
                    v: VERSION,
                    batch_id: msg.batch_id,
                    name: batch.name.clone(),
                    chunk: msg.chunk,
                    chunks: batch.chunks,
                    runs_total: batch.runs,
                    runs: batch.chunk_range(msg.chunk).1,
                    summary,
                };
                self.commit_and_publish(&result, attempt, &rows).await?;
                Outcome::Ack
            }
            Simulated::Failed(reason) => self.record_failure(msg, attempt, &reason).await?,
            Simulated::Cancelled { runs } => {
                // The cancel's transaction made the chunk `cancelled`:
                // nothing of this attempt is written, the message is done.
                self.stats.count("cancel_stopped", 1);
                tracing::info!(runs, "chunk stopped: its batch was cancelled");
                Outcome::Ack
            }
        };
        // Whatever the outcome, the executor time was used.
        self.charge(msg, took);
        Ok(outcome)
    }

    /// Runs the chunk's simulations on the blocking pool, once a
    /// simulation slot is free; what it gave and how long it took.
    async fn simulate_chunk(
        &self,
        loaded: &LoadedBatch,
        msg: &WorkMsg,
        attempt: i32,
        stop: &Arc<Stop>,
    ) -> Result<(Simulated, Duration)> {
        let batch = &loaded.batch;
        if self.cfg.faults.fails(&batch.name, msg.chunk) {
            let reason = format!("injected failure (FAIL_CHUNKS) on attempt {attempt}");
            return Ok((Simulated::Failed(reason), Duration::ZERO));
        }
        // Claimed before the slot is free, on purpose: every message this
        // executor holds is then under a lease, so if the process freezes
        // (SIGSTOP, VM pause) the sweeper re-publishes the waiting chunks
        // too. The wait is at most one chunk's simulation (the semaphore is
        // FIFO and chunks in flight default to 2 x concurrency); the
        // renewal keeps the claim meanwhile. The slot goes back when this
        // returns: the commit runs beside the next chunk's simulation.
        let Ok(_slot) = self.simulating.acquire().await else {
            return Err(Error::Shutdown);
        };
        let start = Instant::now();
        let (first_run, runs) = batch.chunk_range(msg.chunk);
        let (workload, delay) = (loaded.workload.clone(), self.cfg.simulation_delay);
        let seed = batch.seed as u64;
        let until = stop.clone();
        let out = tokio::task::spawn_blocking(move || {
            simulate_until(&workload, seed, first_run, runs, delay, &until)
        })
        .await;
        let took = start.elapsed();
        self.stats.phase("simulate", took);
        let simulated = match out {
            Ok(Ran::All(rows, summary)) => Simulated::Done(rows, summary),
            Ok(Ran::Stopped { runs, at }) => {
                // A chunk stopped before its first run (it waited for a
                // slot) ran nothing: no last run to time.
                if runs > 0 {
                    self.record_stop(stop, at);
                }
                Simulated::Cancelled { runs }
            }
            Err(e) => Simulated::Failed(format!("simulation panicked: {e}")),
        };
        Ok((simulated, took))
    }

    /// Hands the executor time the chunk's simulation took to the
    /// dispatcher, which charges it to the batch (fair share).
    fn charge(&self, msg: &WorkMsg, took: Duration) {
        self.charges.add(Charge {
            batch_id: msg.batch_id,
            chunk: msg.chunk,
            seconds: took.as_secs_f64(),
        });
    }

    /// How long after the cancel's commit this chunk's last run ended:
    /// the figure the cancel bound promises (`batchline_cancel_stop_seconds`,
    /// and the `cancel_to_stop_ms` field of the log line).
    fn record_stop(&self, stop: &Stop, at: Instant) {
        let Some(&cancelled_at) = stop.get() else {
            return;
        };
        let ended = crate::status::now_s() - at.elapsed().as_secs_f64();
        let after = (ended - cancelled_at).max(0.0);
        metrics::histogram!("batchline_cancel_stop_seconds").record(after);
        tracing::info!(
            cancel_to_stop_ms = after * 1e3,
            "last run ended after the cancel"
        );
    }

    /// Commits the chunk's rows and completion under `attempt`, then
    /// publishes its result (unless the commit was fenced).
    async fn commit_and_publish(
        &self,
        result: &ResultMsg,
        attempt: i32,
        rows: &RunRows,
    ) -> Result<()> {
        let json = result.to_json()?;
        let (batch_id, chunk) = (result.batch_id, result.chunk);
        let completion = self
            .stats
            .time(
                "persist",
                retrying("commit chunk", &self.shutdown, || async {
                    Ok(self
                        .store
                        .complete_chunk(batch_id, chunk, attempt, rows, &json)
                        .await?)
                }),
            )
            .await?;
        match completion {
            Completion::Committed => {
                self.stats.count("chunks", 1);
                self.stats.count("runs", result.runs as u64);
                self.cfg.faults.maybe_crash(CrashPoint::AfterCommit);
                let published = stored_result(batch_id, chunk, json, self.partitions);
                self.publish(vec![published]).await?;
                self.cfg.faults.maybe_crash(CrashPoint::AfterPublish);
            }
            Completion::Fenced => {
                // Our lease expired and another attempt took over (or
                // finished): our transaction changed nothing; the owner
                // publishes the result.
                tracing::warn!(
                    attempt,
                    "commit fenced: the chunk belongs to a newer attempt, or its batch was cancelled"
                );
                self.stats.count("fenced", 1);
            }
        }
        Ok(())
    }

    async fn record_failure(&self, msg: &WorkMsg, attempt: i32, reason: &str) -> Result<Outcome> {
        tracing::warn!(attempt, reason, "chunk attempt failed");
        let outcome = retrying("record failure", &self.shutdown, || async {
            Ok(self
                .store
                .fail_attempt(
                    msg.batch_id,
                    msg.chunk,
                    attempt,
                    self.cfg.max_attempts,
                    reason,
                )
                .await?)
        })
        .await?;
        match outcome {
            AttemptFailure::WillRetry { attempt } => {
                self.stats.count("retries", 1);
                tracing::info!(attempt, "chunk scheduled for a delayed retry");
                self.publish(vec![msg.to_message(Queue::Retry)?]).await?;
            }
            AttemptFailure::Exhausted { attempts } => {
                self.stats.count("chunks_failed", 1);
                self.publish_failure(msg, &format!("{reason} ({attempts} attempts)"))
                    .await?;
            }
            AttemptFailure::Fenced => {}
        }
        Ok(Outcome::Ack)
    }

    /// The batch's terminal failure, for the verifier.
    async fn publish_failure(&self, msg: &WorkMsg, reason: &str) -> Result<()> {
        let verify = VerifyMsg::failed(
            msg.batch_id,
            format!("chunk {} failed: {reason}", msg.chunk),
        );
        self.publish(vec![verify.to_message()?]).await
    }

    async fn publish(&self, messages: Vec<Message>) -> Result<()> {
        self.stats
            .time(
                "publish",
                retrying("publish", &self.shutdown, || async {
                    Ok(self.broker.publish(messages.clone()).await?)
                }),
            )
            .await
    }
}
