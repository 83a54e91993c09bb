//! Keeps a claimed chunk's lease alive while this executor works on it
//! (waiting for a simulation slot, simulating, committing), and watches
//! its batch for a cancel meanwhile.

use std::sync::Arc;
use std::time::Duration;

use store::prelude::*;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::simulate::Stop;
use crate::messages::WorkMsg;
use crate::telemetry::StageStats;

/// How often a held chunk asks whether its batch was cancelled. With the
/// simulation's stop check every few runs, this is what bounds the time
/// from a cancel's commit to the last run started (docs/architecture.md,
/// "Cancel"): one indexed read per held chunk and interval.
pub const CANCEL_POLL: Duration = Duration::from_millis(250);

/// Renews the lease every third of it until dropped, or until the claim
/// turns out lost (then the commit will be fenced, and there is nothing
/// left to keep). A renewal that fails is logged and tried again at the
/// next tick: the lease has two more ticks before it runs out. Every
/// [`CANCEL_POLL`] it asks the store whether the batch was cancelled, and
/// sets `stop` when it was.
pub(super) struct LeaseRenewal(CancellationToken);

impl LeaseRenewal {
    pub(super) fn start<S: Store>(
        store: &S,
        stats: &StageStats,
        msg: &WorkMsg,
        attempt: i32,
        lease: Duration,
        shutdown: &CancellationToken,
        stop: Arc<Stop>,
    ) -> Self {
        let until = shutdown.child_token();
        let (store, stats, ended) = (store.clone(), stats.clone(), until.clone());
        let (batch_id, chunk) = (msg.batch_id, msg.chunk);
        tokio::spawn(
            async move {
                let mut renew = tokio::time::interval((lease / 3).max(Duration::from_millis(10)));
                let mut watch = tokio::time::interval(CANCEL_POLL);
                renew.tick().await;
                watch.tick().await;
                let mut renewing = true;
                loop {
                    tokio::select! {
                        _ = ended.cancelled() => return,
                        _ = renew.tick(), if renewing => {
                            renewing = renew_once(&store, &stats, (batch_id, chunk), attempt, lease).await;
                        }
                        _ = watch.tick() => {
                            match store.cancelled_among(&[batch_id]).await {
                                Ok(found) => if let Some(c) = found.first() {
                                    let _ = stop.set(c.at);
                                    return;
                                },
                                Err(e) => tracing::debug!(
                                    error = &e as &dyn std::error::Error,
                                    "cancel check failed; trying again"
                                ),
                            }
                        }
                    }
                }
            }
            .instrument(tracing::Span::current()),
        );
        Self(until)
    }
}

/// One renewal; `false` once the claim is lost (nothing left to renew).
async fn renew_once<S: Store>(
    store: &S,
    stats: &StageStats,
    (batch_id, chunk): (store::Uuid, i32),
    attempt: i32,
    lease: Duration,
) -> bool {
    match store.renew_lease(batch_id, chunk, attempt, lease).await {
        Ok(true) => {
            stats.count("lease_renewed", 1);
            true
        }
        Ok(false) => {
            tracing::warn!("claim lost while working on the chunk; stop renewing");
            false
        }
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "lease renewal failed; retrying"
            );
            true
        }
    }
}

impl Drop for LeaseRenewal {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
