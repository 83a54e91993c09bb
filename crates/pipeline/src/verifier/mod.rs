//! The verifier stage: checks every aggregate against an independent source
//! — the executors' per-run rows in the store — records one verdict per
//! batch, and prints one line per batch.
//!
//! The checks are in [`check`]. The verdict write is idempotent (the first
//! verdict wins); its line is marked printed and then written, so a
//! verifier killed after recording the verdict but before the mark prints
//! it on redelivery, and no line is ever printed twice.

mod check;

use std::sync::Arc;

use broker::{Broker, Queue};
use store::{Store, Verdict, VerdictRecord};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

pub use check::{Done, check, check_in_parts};

use crate::common::{BatchCache, LoadedBatch, Lookup};
use crate::executor::cores;
use crate::faults::{CrashPoint, FaultSettings, Faults};
use crate::health::Health;
use crate::messages::VerifyMsg;
use crate::retry::retrying;
use crate::stage::{self, Handled, Inbound, Outcome, Shape, Stage, Stopping};
use crate::telemetry::StageStats;
use crate::{Check, Error, Result};

/// Where verdict lines go (stdout in the binary). Must write the whole line
/// before returning.
pub type LineSink = Arc<dyn Fn(&str) -> std::io::Result<()> + Send + Sync>;

pub const DEFAULT_SPOT_CHECKS: usize = 5;

/// Verify messages held at once; they are checked one after another.
const PREFETCH: u16 = 4;

/// Verifier settings (worker-3).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct VerifierSettings {
    /// Runs re-simulated from the seed per batch (first, last and random ones).
    #[arg(long, env = "SPOT_CHECKS", default_value_t = DEFAULT_SPOT_CHECKS)]
    pub spot_checks: usize,
    /// Run ranges each batch's rows are read in, concurrently, each on its
    /// own connection (default: the number of cores).
    #[arg(long, env = "SCAN_PARTS")]
    pub scan_parts: Option<usize>,
    #[command(flatten)]
    pub faults: FaultSettings,
}

/// The verdict line for a success.
pub fn success_line(name: &str, batch_id: Uuid, runs: i64, chunks: i32, duplicates: i64) -> String {
    format!(
        "SUCCESS [{name}] batch={batch_id} runs={runs} chunks={chunks} duplicates_dropped={duplicates}"
    )
}

/// The verdict line for a cancelled batch whose completed runs checked
/// out: `runs_done` of its `runs` were run and counted exactly once.
pub fn cancelled_line(name: &str, batch_id: Uuid, runs_done: i64, runs: i64) -> String {
    format!("CANCELLED [{name}] batch={batch_id} runs_done={runs_done} of {runs}")
}

/// The verdict line for a failure.
pub fn failure_line(name: &str, batch_id: Uuid, reason: &str) -> String {
    format!("FAILURE [{name}] batch={batch_id} reason={reason}")
}

/// Runs the verifier until `shutdown`; verdict lines go to `sink`.
pub async fn run<B: Broker, S: Store>(
    broker: B,
    store: S,
    settings: VerifierSettings,
    sink: LineSink,
    stats: StageStats,
    health: Health,
    shutdown: CancellationToken,
) -> Result<()> {
    let stopping = Stopping::on(shutdown);
    let verifier = Arc::new(Verifier {
        store,
        spot_checks: settings.spot_checks,
        scan_parts: settings.scan_parts.unwrap_or_else(cores).max(1),
        faults: settings.faults.parse()?,
        sink,
        cache: BatchCache::default(),
        stats: stats.clone(),
        shutdown: stopping.abort.clone(),
    });
    let shape = Shape::sequential(PREFETCH);
    stage::run(broker, verifier, shape, stats, health, stopping).await
}

/// The verifier's domain steps; the loop around them is [`stage::run`].
struct Verifier<S> {
    store: S,
    spot_checks: usize,
    scan_parts: usize,
    faults: Faults,
    sink: LineSink,
    cache: BatchCache,
    stats: StageStats,
    shutdown: CancellationToken,
}

impl<S: Store> Stage for Verifier<S> {
    type Msg = VerifyMsg;
    type Done = ();

    fn queue(&self) -> Queue {
        Queue::Verify
    }

    async fn handle(&self, window: Vec<Inbound<VerifyMsg>>) -> Result<Handled<()>> {
        let mut outcomes = Vec::with_capacity(window.len());
        for inbound in window {
            outcomes.push(self.verify(&inbound).await?);
        }
        Ok(Handled { outcomes, done: () })
    }
}

impl<S: Store> Verifier<S> {
    async fn verify(&self, inbound: &Inbound<VerifyMsg>) -> Result<Outcome> {
        let batch_id = inbound.msg.batch_id();
        let loaded = match self
            .cache
            .load(&self.store, batch_id, &self.shutdown)
            .await?
        {
            Lookup::Found(b) => b,
            Lookup::Purged => return Ok(self.purged(batch_id)),
            Lookup::Invalid(reason) => return Ok(Outcome::DeadLetter(reason)),
        };
        let span = tracing::info_span!("verify", batch = %batch_id, name = %loaded.batch.name, msg_id = %inbound.msg_id);
        async {
            let verdict = match &inbound.msg {
                VerifyMsg::Failed { reason, .. } => failed(&loaded, reason),
                VerifyMsg::Aggregated { .. } => match self.judge(&loaded).await? {
                    Some(verdict) => verdict,
                    // Its aggregate went with it (`purge --force`).
                    None if self.is_purged(batch_id).await? => return Ok(self.purged(batch_id)),
                    None => {
                        return Ok(Outcome::DeadLetter(format!(
                            "no aggregate stored for batch {batch_id}"
                        )));
                    }
                },
            };
            self.record_and_print(batch_id, verdict).await?;
            Ok(Outcome::Ack)
        }
        .instrument(span)
        .await
    }

    /// The verdict on an aggregated batch; `None` when it has no aggregate.
    async fn judge(&self, loaded: &LoadedBatch) -> Result<Option<Verdict>> {
        let batch = &loaded.batch;
        let stored = retrying("read aggregate", &self.shutdown, || async {
            Ok(self.store.batch_result(batch.id).await?)
        })
        .await?;
        let Some((result, duplicates)) = stored else {
            return Ok(None);
        };
        let (done, runs_done) = self.done(loaded).await?;
        let cancelled = matches!(done, Done::Chunks(_));
        let checked = self
            .stats
            .time(
                "check",
                check(
                    &self.store,
                    loaded,
                    &result,
                    done,
                    self.spot_checks,
                    self.scan_parts,
                ),
            )
            .await?;
        Ok(Some(match checked {
            Check::Pass if cancelled => Verdict {
                success: true,
                reason: String::new(),
                line: cancelled_line(&batch.name, batch.id, runs_done, batch.runs),
            },
            Check::Pass => Verdict {
                success: true,
                reason: String::new(),
                line: success_line(&batch.name, batch.id, batch.runs, batch.chunks, duplicates),
            },
            Check::Fail(reason) => failed(loaded, &reason),
        }))
    }

    /// What the aggregate must cover: every run, or for a cancelled batch
    /// the runs of the chunks that completed before the cancel (frozen by
    /// its commit), with their count.
    async fn done(&self, loaded: &LoadedBatch) -> Result<(Done, i64)> {
        let batch = &loaded.batch;
        let cancelled = retrying("read cancel", &self.shutdown, || async {
            Ok(self.store.cancelled_among(&[batch.id]).await?)
        })
        .await?;
        if cancelled.is_empty() {
            return Ok((Done::All, batch.runs));
        }
        let completed = retrying("read completed chunks", &self.shutdown, || async {
            Ok(self.store.chunk_results(batch.id).await?)
        })
        .await?;
        let runs_done = completed.iter().map(|(c, _)| batch.chunk_range(*c).1).sum();
        let done = Done::chunks(batch.chunks, completed.into_iter().map(|(c, _)| c));
        Ok((done, runs_done))
    }

    /// Records the verdict (the first one wins) and prints its line unless
    /// it was printed already.
    async fn record_and_print(&self, batch_id: Uuid, verdict: Verdict) -> Result<()> {
        let record = retrying("record verdict", &self.shutdown, || async {
            Ok(self.store.record_verdict(batch_id, &verdict).await?)
        })
        .await?;
        self.faults.maybe_crash(CrashPoint::AfterVerdict);
        if matches!(record, VerdictRecord::Existing { .. }) {
            // A verdict came late (a redelivery after a lost connection or
            // a crash): the first one stands and this one changed nothing,
            // as an executor's commit under an expired lease is fenced.
            self.stats.count("fenced", 1);
        }
        let line = match record {
            VerdictRecord::New => verdict.line,
            VerdictRecord::Existing {
                verdict,
                printed: false,
            } => verdict.line,
            VerdictRecord::Existing { printed: true, .. } => return Ok(()),
            VerdictRecord::Purged => {
                self.purged(batch_id);
                return Ok(());
            }
        };
        // Marked before it is written: a kill between the two loses the
        // line from this stdout (the verdict stays in the store, for
        // `status` and `submit --wait`) rather than printing it twice; the
        // window is one write of an already committed line.
        retrying("mark printed", &self.shutdown, || async {
            Ok(self.store.mark_verdict_printed(batch_id).await?)
        })
        .await?;
        (self.sink)(&line).map_err(|e| Error::io("cannot write the verdict line", e))?;
        if line.starts_with("SUCCESS") {
            self.stats.count("success", 1);
        } else if line.starts_with("CANCELLED") {
            self.stats.count("cancelled", 1);
        } else {
            self.stats.count("failure", 1);
        }
        // The line itself is on stdout, which deployments log already.
        tracing::debug!(batch = %batch_id, "verdict printed");
        Ok(())
    }
}

impl<S: Store> Verifier<S> {
    async fn is_purged(&self, batch_id: Uuid) -> Result<bool> {
        let purged = retrying("read purged batch", &self.shutdown, || async {
            Ok(self.store.purged_batch(batch_id).await?)
        })
        .await?;
        Ok(purged.is_some())
    }

    /// A message about a purged batch: late, dropped (acked); no line.
    fn purged(&self, batch_id: Uuid) -> Outcome {
        tracing::info!(batch = %batch_id, "verify message of a purged batch dropped");
        self.stats.count("purged_dropped", 1);
        Outcome::Ack
    }
}

fn failed(loaded: &LoadedBatch, reason: &str) -> Verdict {
    // One line per batch: keep the reason on it.
    let reason = reason.replace(['\n', '\r'], " ");
    Verdict {
        success: false,
        line: failure_line(&loaded.batch.name, loaded.batch.id, &reason),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_match_the_contract() {
        let id = Uuid::nil();
        assert_eq!(
            success_line("x", id, 10, 2, 1),
            "SUCCESS [x] batch=00000000-0000-0000-0000-000000000000 runs=10 chunks=2 duplicates_dropped=1"
        );
        assert_eq!(
            failure_line("x", id, "boom"),
            "FAILURE [x] batch=00000000-0000-0000-0000-000000000000 reason=boom"
        );
    }
}
