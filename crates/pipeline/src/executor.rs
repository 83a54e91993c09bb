//! The executor stage: claim a chunk, simulate it on the blocking pool,
//! commit its per-run rows and completion in one transaction, publish the
//! chunk result, and only then ack.
//!
//! Crash reasoning (DESIGN.md's crash table): a crash after the claim leaves
//! a lease that expires (the redelivered message finds it live and takes the
//! delayed retry path until then); a crash after the commit makes the
//! redelivered message find the chunk completed, and its stored result is
//! re-published with the same msg_id; a stale owner's commit is fenced by
//! the attempt number it claimed with. While this executor holds a claim
//! it renews the lease, so a chunk may take longer than the lease; a frozen
//! or dead process renews nothing and its chunks pass on when it runs out.
//!
//! Pipelining: `concurrency` bounds the chunks *simulating* at once (the
//! blocking threads), not the chunks in flight. A chunk gives its simulation
//! slot back as soon as its runs are computed, so the next chunk simulates
//! while this one's rows are committed and its result published; the cores
//! stay on simulation while the commit waits on Postgres.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{Broker, Consumer, Delivery, DeliveryTag, Message, Queue};
use store::{AttemptFailure, Claim, Completion, RunRows, Store};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use workload::{Summary, Workload};

use crate::common::{BatchCache, LoadedBatch, Lookup, dead_letter};
use crate::faults::{CrashPoint, Faults};
use crate::messages::{ResultMsg, VERSION, VerifyMsg, WorkMsg, decode, encode};
use crate::retry::retrying;
use crate::sweeper::{self, SweeperConfig};
use crate::telemetry::StageStats;
use crate::{Error, Result};

/// Executor settings.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// Recorded with each claim (host:pid by default).
    pub worker_id: String,
    /// Chunks simulated at once (blocking threads).
    pub concurrency: usize,
    /// Unacked work messages held at once, which is also the number of chunks
    /// in flight (simulating, committing or publishing). Above `concurrency`
    /// lets simulation overlap the commits; see [`default_prefetch`].
    pub prefetch: u16,
    /// How long a claim stays valid without being renewed; the executor
    /// renews it every third of this while it holds the chunk.
    pub lease: Duration,
    /// Attempts before a chunk is failed.
    pub max_attempts: i32,
    /// Sleep per run, to make drills watchable.
    pub simulation_delay: Duration,
    pub faults: Faults,
    /// The sweeper runs inside executors; `None` turns it off.
    pub sweeper: Option<SweeperConfig>,
    /// How long shutdown waits for in-flight chunks.
    pub drain_timeout: Duration,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            worker_id: format!("executor-{}", std::process::id()),
            concurrency: 1,
            prefetch: default_prefetch(1),
            lease: Duration::from_secs(30),
            max_attempts: 5,
            simulation_delay: Duration::ZERO,
            faults: Faults::default(),
            sweeper: Some(SweeperConfig::default()),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Twice the concurrency: one chunk committing behind each simulating one.
/// More would only hold messages that idle executors could take.
pub fn default_prefetch(concurrency: usize) -> u16 {
    u16::try_from(concurrency.max(1).saturating_mul(2)).unwrap_or(u16::MAX)
}

/// What to do with a delivery once its task is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    Ack,
    /// Requeue (counts towards the queue's delivery limit).
    Requeue,
    /// Leave it unacked: it is redelivered when this consumer goes away.
    Leave,
}

struct Ctx<B, S> {
    broker: B,
    store: S,
    cfg: ExecutorConfig,
    cache: BatchCache,
    stats: StageStats,
    shutdown: CancellationToken,
    /// Simulation slots (`concurrency`), held only while a chunk simulates.
    simulating: Arc<Semaphore>,
}

/// Runs the executor until `shutdown` fires, then drains in-flight chunks.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    cfg: ExecutorConfig,
    stats: StageStats,
    shutdown: CancellationToken,
) -> Result<()> {
    let concurrency = cfg.concurrency.max(1);
    // Fewer chunks in flight than simulation slots would leave slots unused.
    let prefetch = cfg
        .prefetch
        .max(u16::try_from(concurrency).unwrap_or(u16::MAX))
        .max(1);
    let mut consumer = retrying("consume work queue", &shutdown, || async {
        Ok(broker.consume(Queue::Work, prefetch).await?)
    })
    .await?;
    tracing::info!(concurrency, prefetch, worker = %cfg.worker_id, "executor consuming");

    let mut background = JoinSet::new();
    if let Some(sweep_cfg) = cfg.sweeper.clone() {
        background.spawn(sweeper::run(
            broker.clone(),
            store.clone(),
            sweep_cfg,
            stats.clone(),
            shutdown.clone(),
        ));
    }
    background.spawn(
        stats
            .clone()
            .report_every(Duration::from_secs(10), shutdown.clone()),
    );

    let drain_timeout = cfg.drain_timeout;
    let ctx = Arc::new(Ctx {
        broker,
        store,
        cfg,
        cache: BatchCache::default(),
        stats,
        shutdown: shutdown.clone(),
        simulating: Arc::new(Semaphore::new(concurrency)),
    });
    // Chunks in flight; the broker never delivers more than `prefetch`, and
    // this keeps the loop from taking a delivery it has no task slot for.
    let permits = Arc::new(Semaphore::new(usize::from(prefetch)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(DeliveryTag, Settle)>();
    let mut tasks = JoinSet::new();

    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            Some((tag, settle)) = done_rx.recv() => settle_delivery(&mut consumer, &ctx.stats, tag, settle).await,
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => log_join(joined),
            delivery = consumer.next(), if permits.available_permits() > 0 => {
                let delivery = delivery?;
                let Ok(permit) = permits.clone().try_acquire_owned() else { continue };
                ctx.stats.count("received", 1);
                let ctx = ctx.clone();
                let done = done_tx.clone();
                tasks.spawn(async move {
                    let tag = delivery.tag;
                    let settle = handle(&ctx, delivery).await;
                    drop(permit);
                    let _ = done.send((tag, settle));
                });
            }
        }
    }

    tracing::info!(
        in_flight = tasks.len(),
        "executor stopping: draining in-flight chunks"
    );
    let deadline = tokio::time::sleep(drain_timeout);
    tokio::pin!(deadline);
    while !tasks.is_empty() {
        tokio::select! {
            Some(joined) = tasks.join_next() => log_join(joined),
            _ = &mut deadline => {
                tracing::warn!(left = tasks.len(), "drain timeout: leaving chunks unacked (they will be redelivered)");
                tasks.abort_all();
                break;
            }
        }
    }
    while let Ok((tag, settle)) = done_rx.try_recv() {
        settle_delivery(&mut consumer, &ctx.stats, tag, settle).await;
    }
    background.abort_all();
    Ok(())
}

fn log_join(joined: std::result::Result<(), tokio::task::JoinError>) {
    if let Err(e) = joined
        && e.is_panic()
    {
        tracing::error!(error = %e, "chunk task panicked; its message stays unacked");
    }
}

async fn settle_delivery<C: Consumer>(
    consumer: &mut C,
    stats: &StageStats,
    tag: DeliveryTag,
    settle: Settle,
) {
    let start = Instant::now();
    let result = match settle {
        Settle::Ack => consumer.ack(tag, false).await,
        Settle::Requeue => consumer.nack(tag, true).await,
        Settle::Leave => return,
    };
    stats.phase("ack", start.elapsed());
    match result {
        Ok(()) => stats.count(
            if settle == Settle::Ack {
                "acked"
            } else {
                "requeued"
            },
            1,
        ),
        // The message will be redelivered; every step before the ack is idempotent.
        Err(e) => tracing::warn!(error = %e, "ack failed; the message will be redelivered"),
    }
}

async fn handle<B: Broker, S: Store>(ctx: &Ctx<B, S>, delivery: Delivery) -> Settle {
    let msg = match decode::<WorkMsg>(&delivery.payload) {
        Ok(m) => m,
        Err(e) => return reject(ctx, &delivery, &e.to_string()).await,
    };
    let span = tracing::info_span!(
        "chunk",
        batch = %msg.batch_id,
        chunk = msg.chunk,
        attempt = tracing::field::Empty,
        msg_id = delivery.msg_id.as_deref().unwrap_or(""),
    );
    match process(ctx, &delivery, &msg).instrument(span).await {
        Ok(settle) => settle,
        Err(Error::Shutdown) => Settle::Leave,
        Err(e) => {
            // Not an infrastructure blip (those are retried in place): requeue,
            // so a message that keeps failing reaches the delivery limit and
            // the dead-letter queue instead of blocking the queue.
            tracing::error!(error = %e, batch = %msg.batch_id, chunk = msg.chunk, "chunk processing failed; requeueing");
            tokio::time::sleep(Duration::from_secs(1)).await;
            Settle::Requeue
        }
    }
}

async fn reject<B: Broker, S: Store>(ctx: &Ctx<B, S>, delivery: &Delivery, reason: &str) -> Settle {
    match retrying("dead-letter", &ctx.shutdown, || async {
        dead_letter(&ctx.broker, Queue::Work, delivery, reason).await
    })
    .await
    {
        Ok(()) => {
            ctx.stats.count("dead_lettered", 1);
            Settle::Ack
        }
        Err(_) => Settle::Leave,
    }
}

async fn process<B: Broker, S: Store>(
    ctx: &Ctx<B, S>,
    delivery: &Delivery,
    msg: &WorkMsg,
) -> Result<Settle> {
    let sd = &ctx.shutdown;
    let loaded = match retrying("load batch", sd, || async {
        ctx.cache.get(&ctx.store, msg.batch_id).await
    })
    .await?
    {
        Lookup::Found(b) => b,
        Lookup::Unknown => {
            return Ok(reject(ctx, delivery, &format!("unknown batch {}", msg.batch_id)).await);
        }
        Lookup::BadWorkload(e) => {
            return Ok(reject(ctx, delivery, &format!("batch workload invalid: {e}")).await);
        }
    };
    if msg.chunk < 0 || msg.chunk >= loaded.batch.chunks {
        let reason = format!(
            "chunk {} out of range (batch has {})",
            msg.chunk, loaded.batch.chunks
        );
        return Ok(reject(ctx, delivery, &reason).await);
    }

    let start = Instant::now();
    let claim = retrying("claim", sd, || async {
        Ok(ctx
            .store
            .claim_chunk(
                msg.batch_id,
                msg.chunk,
                &ctx.cfg.worker_id,
                ctx.cfg.lease,
                ctx.cfg.max_attempts,
            )
            .await?)
    })
    .await?;
    ctx.stats.phase("claim", start.elapsed());

    match claim {
        Claim::Claimed { attempt } => {
            tracing::Span::current().record("attempt", attempt);
            ctx.cfg.faults.maybe_crash(CrashPoint::AfterClaim);
            execute(ctx, &loaded, msg, attempt).await
        }
        Claim::Completed { result } => {
            // Committed earlier (crash before publish or ack): publish the
            // stored result again; the aggregator drops it if it has it.
            ctx.stats.count("republished_completed", 1);
            publish(
                ctx,
                vec![Message::new(
                    Queue::Results,
                    crate::messages::result_msg_id(msg.batch_id, msg.chunk),
                    result.into_bytes(),
                )],
            )
            .await?;
            Ok(Settle::Ack)
        }
        Claim::Leased { remaining_s } => {
            tracing::debug!(remaining_s, "chunk leased by another worker; delayed retry");
            ctx.stats.count("lease_held", 1);
            publish(ctx, vec![retry_message(msg)]).await?;
            Ok(Settle::Ack)
        }
        Claim::Failed { reason } => {
            publish(ctx, vec![failure_message(msg.batch_id, msg.chunk, &reason)]).await?;
            Ok(Settle::Ack)
        }
        Claim::NotFound => Ok(reject(
            ctx,
            delivery,
            &format!("unknown chunk {} of batch {}", msg.chunk, msg.batch_id),
        )
        .await),
    }
}

async fn execute<B: Broker, S: Store>(
    ctx: &Ctx<B, S>,
    loaded: &Arc<LoadedBatch>,
    msg: &WorkMsg,
    attempt: i32,
) -> Result<Settle> {
    let batch = &loaded.batch;
    let (first_run, runs) = batch.chunk_range(msg.chunk);
    let _renewal = LeaseRenewal::start(ctx, msg, attempt);
    let simulated = if ctx.cfg.faults.fails(&batch.name, msg.chunk) {
        Err(format!(
            "injected failure (FAIL_CHUNKS) on attempt {attempt}"
        ))
    } else {
        // Claimed before the slot is free, on purpose: every message this
        // executor holds is then under a lease, so if the process freezes
        // (SIGSTOP, VM pause) the sweeper re-publishes the waiting chunks
        // too. The wait is at most one chunk's simulation (the semaphore is
        // FIFO and `prefetch` defaults to 2 x `concurrency`); the renewal
        // keeps the claim meanwhile.
        let Ok(slot) = ctx.simulating.acquire().await else {
            return Err(Error::Shutdown);
        };
        let start = Instant::now();
        let workload = loaded.workload.clone();
        let (seed, delay) = (batch.seed as u64, ctx.cfg.simulation_delay);
        let out =
            tokio::task::spawn_blocking(move || simulate(&workload, seed, first_run, runs, delay))
                .await
                .map_err(|e| format!("simulation panicked: {e}"));
        ctx.stats.phase("simulate", start.elapsed());
        // The commit below runs beside the next chunk's simulation.
        drop(slot);
        out
    };

    let (rows, summary) = match simulated {
        Ok(out) => out,
        Err(reason) => return record_failure(ctx, msg, attempt, &reason).await,
    };
    let result = ResultMsg {
        v: VERSION,
        batch_id: msg.batch_id,
        name: batch.name.clone(),
        chunk: msg.chunk,
        chunks: batch.chunks,
        runs_total: batch.runs,
        runs,
        summary,
    };
    let json = String::from_utf8(encode(&result)).unwrap_or_default();

    let start = Instant::now();
    let completion = retrying("commit chunk", &ctx.shutdown, || async {
        Ok(ctx
            .store
            .complete_chunk(msg.batch_id, msg.chunk, attempt, &rows, &json)
            .await?)
    })
    .await?;
    ctx.stats.phase("persist", start.elapsed());
    match completion {
        Completion::Committed => {
            ctx.stats.count("chunks", 1);
            ctx.stats.count("runs", runs as u64);
            ctx.cfg.faults.maybe_crash(CrashPoint::AfterCommit);
            publish(
                ctx,
                vec![Message::new(
                    Queue::Results,
                    result.msg_id(),
                    json.into_bytes(),
                )],
            )
            .await?;
            ctx.cfg.faults.maybe_crash(CrashPoint::AfterPublish);
            Ok(Settle::Ack)
        }
        Completion::Fenced => {
            // Our lease expired and another attempt took over (or finished):
            // our transaction changed nothing; the owner publishes the result.
            tracing::warn!(
                attempt,
                "commit fenced: the chunk belongs to a newer attempt"
            );
            ctx.stats.count("fenced", 1);
            Ok(Settle::Ack)
        }
    }
}

/// Keeps a claimed chunk's lease alive while this executor works on it
/// (waiting for a slot, simulating, committing): renews it every third of
/// the lease until dropped, or until the claim turns out lost (then the
/// commit will be fenced, and there is nothing left to keep). Renewal
/// failures are logged and retried at the next tick; the lease has two
/// more ticks before it runs out.
struct LeaseRenewal(CancellationToken);

impl LeaseRenewal {
    fn start<B: Broker, S: Store>(ctx: &Ctx<B, S>, msg: &WorkMsg, attempt: i32) -> Self {
        let stop = ctx.shutdown.child_token();
        let (store, stats, lease) = (ctx.store.clone(), ctx.stats.clone(), ctx.cfg.lease);
        let (batch_id, chunk, until) = (msg.batch_id, msg.chunk, stop.clone());
        tokio::spawn(
            async move {
                let every = (lease / 3).max(Duration::from_millis(10));
                loop {
                    tokio::select! {
                        _ = until.cancelled() => return,
                        _ = tokio::time::sleep(every) => {}
                    }
                    match store.renew_lease(batch_id, chunk, attempt, lease).await {
                        Ok(true) => stats.count("lease_renewed", 1),
                        Ok(false) => {
                            tracing::warn!("claim lost while working on the chunk; stop renewing");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "lease renewal failed; retrying"),
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Self(stop)
    }
}

impl Drop for LeaseRenewal {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

async fn record_failure<B: Broker, S: Store>(
    ctx: &Ctx<B, S>,
    msg: &WorkMsg,
    attempt: i32,
    reason: &str,
) -> Result<Settle> {
    tracing::warn!(attempt, reason, "chunk attempt failed");
    let outcome = retrying("record failure", &ctx.shutdown, || async {
        Ok(ctx
            .store
            .fail_attempt(
                msg.batch_id,
                msg.chunk,
                attempt,
                ctx.cfg.max_attempts,
                reason,
            )
            .await?)
    })
    .await?;
    match outcome {
        AttemptFailure::WillRetry { attempt } => {
            ctx.stats.count("retries", 1);
            tracing::info!(attempt, "chunk scheduled for a delayed retry");
            publish(ctx, vec![retry_message(msg)]).await?;
        }
        AttemptFailure::Exhausted { attempts } => {
            ctx.stats.count("chunks_failed", 1);
            let reason = format!("{reason} ({attempts} attempts)");
            publish(ctx, vec![failure_message(msg.batch_id, msg.chunk, &reason)]).await?;
        }
        AttemptFailure::Fenced => {}
    }
    Ok(Settle::Ack)
}

async fn publish<B: Broker, S: Store>(ctx: &Ctx<B, S>, messages: Vec<Message>) -> Result<()> {
    let start = Instant::now();
    retrying("publish", &ctx.shutdown, || async {
        Ok(ctx.broker.publish(messages.clone()).await?)
    })
    .await?;
    ctx.stats.phase("publish", start.elapsed());
    Ok(())
}

fn retry_message(msg: &WorkMsg) -> Message {
    Message::new(Queue::Retry, msg.msg_id(), encode(msg))
}

fn failure_message(batch_id: uuid::Uuid, chunk: i32, reason: &str) -> Message {
    let verify = VerifyMsg::failed(batch_id, format!("chunk {chunk} failed: {reason}"));
    Message::new(Queue::Verify, verify.msg_id(), encode(&verify))
}

/// Simulates runs `[first_run, first_run + runs)`: the per-run rows for the
/// store and the chunk's summary. Runs on a blocking thread.
pub fn simulate(
    workload: &Workload,
    seed: u64,
    first_run: i64,
    runs: i64,
    delay: Duration,
) -> (RunRows, Summary) {
    let width = workload.width();
    let runs_u = runs.max(0) as u64;
    let mut scratch = workload.scratch();
    let mut values = Vec::with_capacity(width * runs_u as usize);
    let mut summary = workload.empty_summary();
    let first = first_run.max(0) as u64;
    if delay.is_zero() {
        workload.run_range(seed, first, runs_u, &mut scratch, &mut values, &mut summary);
    } else {
        for i in 0..runs_u {
            workload.run_range(seed, first + i, 1, &mut scratch, &mut values, &mut summary);
            std::thread::sleep(delay);
        }
    }
    (
        RunRows {
            first_run,
            width,
            values,
        },
        summary,
    )
}
