//! Upgrading in place from the versions before partitions, which kept one
//! state directory (`aggregator/{batch}.csv`, `tombstones.log`) and one
//! results queue (`PREFIX.results`).
//!
//! - The state files move into their batch's partition directory
//!   (`aggregator/p{NN}/`), once, at start, under the old directory's lock
//!   (an aggregator of the old version still running there is a clear
//!   error). The old tombstones are kept aside, renamed: a finalized batch
//!   is now recognised by its aggregate in the store.
//! - The old results queue, where it still exists (looked for only where
//!   there was old state or there are batches older than the partitions),
//!   is drained for as long
//!   as the replica runs: each result is published again to its
//!   partition's queue (confirmed) and only then acked, so results that
//!   were in flight, or that executors of the old version still publish
//!   during a rolling upgrade, reach their partition. It is never deleted
//!   by batchline: delete it once no old executor runs.

use std::path::Path;
use std::sync::Arc;

use broker::{Broker, Queue};
use tokio_util::sync::CancellationToken;

use super::Manager;
use crate::health::Health;
use crate::messages::ResultMsg;
use crate::stage::{self, Handled, Inbound, Outcome, Shape, Stage, Stopping};
use crate::telemetry::StageStats;
use crate::{Error, Result};

/// What the old tombstone log is renamed to.
const OLD_TOMBSTONES: &str = "tombstones.log.before-partitions";

/// Moves the state files of the single-directory layout into their
/// partitions' directories; nothing to do when there are none. Whether
/// there were.
pub(super) async fn move_legacy_state(dir: &Path, partitions: u16) -> Result<bool> {
    if !has_legacy_files(dir)? {
        return Ok(false);
    }
    tracing::warn!(dir = %dir.display(), "state of a version before partitions: moving it into partition directories");
    let (mgr, report) = tokio::task::block_in_place(|| Manager::open(dir))?;
    let keys = mgr.keys();
    drop(mgr);
    let io = |what: String, e| Error::io(what, e);
    for key in &keys {
        let Ok(batch) = key.parse() else {
            tracing::warn!(key, "state file of no batch left where it is");
            continue;
        };
        let part = dir.join(store::partition::name(store::partition::of(
            batch, partitions,
        )));
        std::fs::create_dir_all(&part)
            .map_err(|e| io(format!("cannot create {}", part.display()), e))?;
        for suffix in [".csv", ".csv.corrupt"] {
            let from = dir.join(format!("{key}{suffix}"));
            let to = part.join(format!("{key}{suffix}"));
            if from.exists() && !to.exists() {
                std::fs::rename(&from, &to)
                    .map_err(|e| io(format!("cannot move {}", from.display()), e))?;
            }
        }
        sync_dir(&part)?;
    }
    for (from, to) in [
        (
            stateful_worker::TOMBSTONE_LOG.to_owned(),
            OLD_TOMBSTONES.to_owned(),
        ),
        (stateful_worker::LOCK_FILE.to_owned(), String::new()),
    ] {
        let from = dir.join(from);
        let moved = if to.is_empty() {
            std::fs::remove_file(&from)
        } else {
            std::fs::rename(&from, dir.join(to))
        };
        if let Err(e) = moved
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(io(format!("cannot move {} aside", from.display()), e));
        }
    }
    sync_dir(dir)?;
    tracing::info!(
        batches = keys.len(),
        rows = report.rows,
        "old state moved into partition directories"
    );
    Ok(true)
}

/// The single-directory layout has state files (or a tombstone log) at the
/// top of the aggregator's directory.
fn has_legacy_files(dir: &Path) -> Result<bool> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::io(format!("cannot read {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("cannot read {}", dir.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".csv") || name == stateful_worker::TOMBSTONE_LOG {
            return Ok(true);
        }
    }
    Ok(false)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("cannot sync {}", dir.display()), e))
}

/// Drains the old results queue into the partitions' queues, where it
/// exists, until `shutdown`. Asked only of deployments that have been
/// upgraded (old state files, or batches older than the partitions): the
/// existence check is a passive declare, which lapin logs as an error
/// when the queue is not there.
pub(super) async fn drain_legacy_queue<B: Broker>(
    broker: B,
    partitions: u16,
    stats: StageStats,
    shutdown: CancellationToken,
) {
    match broker.queue_exists(Queue::LegacyResults).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "cannot tell whether the old results queue exists; not draining it"
            );
            return;
        }
    }
    tracing::warn!(
        "the results queue of a version before partitions exists: moving what it holds to the partitions' queues"
    );
    let drain = Arc::new(LegacyDrain {
        broker: broker.clone(),
        partitions,
    });
    let shape = Shape {
        marks_ready: false,
        ..Shape::sequential(100)
    };
    let stopping = Stopping::on(shutdown);
    if let Err(e) = stage::run(broker, drain, shape, stats, Health::new(), stopping).await {
        tracing::warn!(
            error = &e as &dyn std::error::Error,
            "draining the old results queue stopped"
        );
    }
}

/// Publishes each result of the old queue to its partition's queue.
struct LegacyDrain<B> {
    broker: B,
    partitions: u16,
}

impl<B: Broker> Stage for LegacyDrain<B> {
    type Msg = ResultMsg;
    type Done = ();

    fn queue(&self) -> Queue {
        Queue::LegacyResults
    }

    async fn handle(&self, window: Vec<Inbound<ResultMsg>>) -> Result<Handled<()>> {
        let messages = window
            .iter()
            .map(|inbound| inbound.msg.to_message(self.partitions))
            .collect::<Result<Vec<_>>>()?;
        self.broker.publish(messages).await?;
        Ok(Handled {
            outcomes: vec![Outcome::Ack; window.len()],
            done: (),
        })
    }
}
