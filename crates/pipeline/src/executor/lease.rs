//! Keeps a claimed chunk's lease alive while this executor works on it
//! (waiting for a simulation slot, simulating, committing).

use std::time::Duration;

use store::Store;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::messages::WorkMsg;
use crate::telemetry::StageStats;

/// Renews the lease every third of it until dropped, or until the claim
/// turns out lost (then the commit will be fenced, and there is nothing
/// left to keep). A renewal that fails is logged and tried again at the
/// next tick: the lease has two more ticks before it runs out.
pub(super) struct LeaseRenewal(CancellationToken);

impl LeaseRenewal {
    pub(super) fn start<S: Store>(
        store: &S,
        stats: &StageStats,
        msg: &WorkMsg,
        attempt: i32,
        lease: Duration,
        shutdown: &CancellationToken,
    ) -> Self {
        let stop = shutdown.child_token();
        let (store, stats, until) = (store.clone(), stats.clone(), stop.clone());
        let (batch_id, chunk) = (msg.batch_id, msg.chunk);
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
                        Err(e) => tracing::warn!(
                            error = &e as &dyn std::error::Error,
                            "lease renewal failed; retrying"
                        ),
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
