//! Cancel: stopping batches for good, for `batchline cancel`, the web
//! console and its API. The store makes the cancel durable and final in
//! one transaction ([`store::cancel`]); this module then nudges each
//! cancelled batch's aggregator partition, so that it seals the partial
//! aggregate now rather than at its next look. docs/architecture.md,
//! "Cancel", has the whole path and its bound.

use broker::Broker;
use store::prelude::*;
use store::{Cancel, Uuid};

use crate::Result;
use crate::common::nudge_partition_of;

/// Cancels each of `ids` with `reason` (the store's default when empty);
/// one answer per batch, in order. Without a broker the cancel still
/// holds: the sweeper nudges the partition once the stall deadline passes.
pub async fn cancel<S: Store, B: Broker>(
    store: &S,
    broker: Option<&B>,
    ids: &[Uuid],
    reason: &str,
) -> Result<Vec<(Uuid, Cancel)>> {
    let reason = match reason.trim() {
        "" => store::cancel::DEFAULT_REASON,
        given => given,
    };
    let mut done = Vec::with_capacity(ids.len());
    for &id in ids {
        let outcome = store.cancel_batch(id, reason).await?;
        if matches!(outcome, Cancel::Cancelled { .. }) {
            tracing::info!(batch = %id, reason, "batch cancelled");
            nudge_partition_of(store, broker, id, "cancel").await;
        }
        done.push((id, outcome));
    }
    Ok(done)
}
