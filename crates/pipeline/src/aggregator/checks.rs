//! What a chunk result must match before it is appended: its batch
//! exists, and its chunk number, run counts, name and summary agree with
//! the batch. A result that does not is dead-lettered with the reason; a
//! result of a purged batch is dropped.

use broker::Broker;
use store::Store;

use super::partition::Partition;
use crate::common::Lookup;
use crate::messages::ResultMsg;
use crate::{Check, Result};

impl<B: Broker, S: Store> Partition<B, S> {
    /// Checks a decoded result against its batch: what fails goes to the
    /// dead-letter queue with the reason. `None`: the batch was purged.
    pub(super) async fn validate(&self, msg: &ResultMsg) -> Result<Option<Check>> {
        let (cache, store) = (&self.replica.cache, &self.replica.store);
        let loaded = match cache.load(store, msg.batch_id, &self.abort).await? {
            Lookup::Found(b) => b,
            Lookup::Purged => return Ok(None),
            Lookup::Invalid(reason) => return Ok(Some(Check::Fail(reason))),
        };
        let b = &loaded.batch;
        let (_, runs) = b.chunk_range(msg.chunk);
        Ok(Some(
            Check::that(msg.chunk >= 0 && msg.chunk < b.chunks, || {
                format!("chunk {} out of range (batch has {})", msg.chunk, b.chunks)
            })
            .and_then(|| {
                let same = msg.chunks == b.chunks
                    && msg.runs_total == b.runs
                    && msg.runs == runs
                    && msg.name == b.name;
                Check::that(same, || {
                    format!(
                        "result does not match batch {}: chunks {}/{} runs_total {}/{} runs {}/{}",
                        msg.batch_id, msg.chunks, b.chunks, msg.runs_total, b.runs, msg.runs, runs
                    )
                })
            })
            .and_then(|| {
                Check::that(msg.summary.runs() == runs as u64, || {
                    format!(
                        "summary counts {} runs, chunk has {runs}",
                        msg.summary.runs()
                    )
                })
            })
            .and_then(
                || match loaded.workload.empty_summary().merge(&msg.summary) {
                    Ok(()) => Check::Pass,
                    Err(e) => {
                        Check::Fail(format!("summary does not fit the batch's workload: {e}"))
                    }
                },
            ),
        ))
    }
}
