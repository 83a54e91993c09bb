//! Retention: purging batches, for `batchline purge` and for the sweeper
//! (`RETENTION_DAYS`). What a purge removes and keeps is the store's
//! ([`store::purge`]); this module picks the batches, refuses unfinished
//! ones unless forced, and tells the aggregator partition of a batch
//! purged while it ran to drop its state now (a nudge; without one the
//! partition looks within `PURGE_CHECK_EVERY` of its next result).
//! docs/operations.md, "Retention", is the user's side of it.

use std::collections::HashSet;
use std::time::Duration;

use broker::Broker;
use store::{BatchProgress, Purge, Store, Uuid};

use crate::Result;
use crate::common::nudge_partition_of;

/// Which batches to purge.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// These, by id.
    Batches(Vec<Uuid>),
    /// Every batch finished more than this long ago (and, when forced,
    /// every unfinished one created more than this long ago).
    OlderThan(Duration),
}

/// How to purge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Purge batches without a verdict too.
    pub force: bool,
    /// Say what would be purged; change nothing.
    pub dry_run: bool,
}

/// What became of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Purged {
    pub id: Uuid,
    /// Name, runs and verdict as they were; `None` for a batch unknown or
    /// purged before.
    pub batch: Option<BatchProgress>,
    /// What the store did; with `dry_run`, what it would do
    /// ([`Purge::Purged`] or [`Purge::Running`]).
    pub outcome: Purge,
}

/// Batches `--older-than` looks at per round.
const PAGE: i64 = 500;

/// Purges `target`; one entry per batch considered, in order.
pub async fn purge<S: Store, B: Broker>(
    store: &S,
    broker: Option<&B>,
    target: &Target,
    options: Options,
) -> Result<Vec<Purged>> {
    let mut done = Vec::new();
    match target {
        Target::Batches(ids) => {
            for &id in ids {
                let batch = store.progress(Some(id), 1).await?.into_iter().next();
                done.push(purge_one(store, broker, id, batch, options).await?);
            }
        }
        Target::OlderThan(age) => {
            // Refused batches stay in the listing: page past them.
            let mut seen = HashSet::new();
            loop {
                let page = store.batches_older_than(*age, PAGE).await?;
                let fresh: Vec<_> = page.into_iter().filter(|b| seen.insert(b.id)).collect();
                if fresh.is_empty() {
                    break;
                }
                for batch in fresh {
                    let id = batch.id;
                    done.push(purge_one(store, broker, id, Some(batch), options).await?);
                }
                if options.dry_run {
                    // Nothing left the listing, so the next page is this one.
                    break;
                }
            }
        }
    }
    Ok(done)
}

async fn purge_one<S: Store, B: Broker>(
    store: &S,
    broker: Option<&B>,
    id: Uuid,
    batch: Option<BatchProgress>,
    options: Options,
) -> Result<Purged> {
    // A cancelled batch is finished as far as retention goes: what still
    // runs of it is dropped.
    let running = batch.as_ref().is_some_and(|b| b.verdict.is_none());
    let refused = running && !batch.as_ref().is_some_and(|b| b.cancelled) && !options.force;
    let outcome = if options.dry_run {
        match &batch {
            Some(_) if refused => Purge::Running,
            Some(_) => Purge::Purged,
            None if store.purged_batch(id).await?.is_some() => Purge::AlreadyPurged,
            None => Purge::Unknown,
        }
    } else {
        let outcome = store.purge_batch(id, options.force).await?;
        if outcome == Purge::Purged && running {
            // Best effort: the partition also looks on its own.
            nudge_partition_of(store, broker, id, "purge").await;
        }
        outcome
    };
    Ok(Purged { id, batch, outcome })
}
