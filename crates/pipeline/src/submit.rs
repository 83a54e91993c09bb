//! Submitting batches: batch and chunk rows in one transaction, then one
//! work message per chunk with publisher confirms.
//!
//! If the process dies (or the broker is away) between the commit and the
//! confirms, the chunks stay unpublished in the store and the sweeper
//! publishes them: a submitted batch is never lost.

use broker::Broker;
use store::{ChunkRef, NewBatch, Share, Store};
use uuid::Uuid;
use workload::{Workload, WorkloadSpec};

use crate::messages::work_messages;
use crate::{Error, Result};

/// What the user asked for.
#[derive(Clone, Debug)]
pub struct SubmitRequest {
    /// Batch name (shown in the verdict line); `count > 1` adds `-1`, `-2`, ….
    pub name: Option<String>,
    pub runs: i64,
    pub chunk_size: i32,
    /// Seed of the first batch (random if `None`); batch `i` uses `seed + i`.
    pub seed: Option<i64>,
    pub workload: WorkloadSpec,
    pub count: usize,
    /// Tenant and weight in the pool's fair share.
    pub share: Share,
}

/// Runs per chunk when the user names none: `batchline submit` and the
/// console's form start from it.
pub const DEFAULT_CHUNK_SIZE: i32 = 10_000;

/// How many work messages go out per publish call (all confirmed together).
const PUBLISH_SLICE: usize = 5_000;

/// Creates the batches and publishes their chunks. Returns the batches;
/// `published` is false when publishing failed and the sweeper will do it.
pub async fn submit<B: Broker, S: Store>(
    broker: &B,
    store: &S,
    req: &SubmitRequest,
) -> Result<Submitted> {
    if req.runs <= 0 {
        return Err(Error::Invalid(format!(
            "--runs must be positive, got {}",
            req.runs
        )));
    }
    if req.chunk_size <= 0 {
        return Err(Error::Invalid(format!(
            "--chunk-size must be positive, got {}",
            req.chunk_size
        )));
    }
    if req.count == 0 {
        return Err(Error::Invalid("--count must be at least 1".into()));
    }
    if let Some(problem) = req.name.as_deref().and_then(workload::batch_name_problem) {
        return Err(Error::Invalid(format!("--name {problem}")));
    }
    Workload::new(&req.workload)?;
    let workload = serde_json::to_string(&req.workload).map_err(|source| Error::Encode {
        what: "workload",
        source,
    })?;
    let base_seed = req
        .seed
        .unwrap_or_else(|| (Uuid::new_v4().as_u128() as i64) & i64::MAX);

    let batches: Vec<NewBatch> = (0..req.count)
        .map(|i| {
            let id = Uuid::new_v4();
            let name = match (&req.name, req.count) {
                (Some(n), 1) => n.clone(),
                (Some(n), _) => format!("{n}-{}", i + 1),
                (None, _) => format!("{}-{}", req.workload.name(), &id.simple().to_string()[..8]),
            };
            NewBatch {
                id,
                name,
                workload: workload.clone(),
                seed: base_seed.wrapping_add(i as i64),
                runs: req.runs,
                chunk_size: req.chunk_size,
                share: req.share.clone(),
            }
        })
        .collect();
    store.create_batches(&batches).await?;

    let chunks: Vec<ChunkRef> = batches
        .iter()
        .flat_map(|b| {
            (0..b.chunks()).map(|chunk| ChunkRef {
                batch_id: b.id,
                chunk,
            })
        })
        .collect();
    let mut published = true;
    for slice in chunks.chunks(PUBLISH_SLICE) {
        if let Err(e) = broker.publish(work_messages(slice)?).await {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "publishing work failed; the sweeper will publish the remaining chunks"
            );
            published = false;
            break;
        }
        store.mark_published(slice).await?;
    }
    Ok(Submitted { batches, published })
}

/// The result of [`submit`].
#[derive(Clone, Debug)]
pub struct Submitted {
    pub batches: Vec<NewBatch>,
    pub published: bool,
}
