//! Submitting batches: batch and chunk rows in one transaction; their work
//! messages go out in fair-share order ([`crate::dispatch`]), the first
//! ones right away.
//!
//! Once the commit returns, the batch is the store's: if the process dies
//! (or the broker is away) right after it, the executors' dispatchers send
//! its chunks. A submitted batch is never lost.

use broker::Broker;
use store::{NewBatch, Share, Store};
use uuid::Uuid;
use workload::{Workload, WorkloadSpec};

use crate::dispatch::{self, DEFAULT_DISPATCH_DEPTH};
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

/// Creates the batches and dispatches what the queue has room for.
/// Returns the batches; `published` is false when that dispatch failed
/// (the executors' dispatchers send the chunks anyway).
pub async fn submit<B: Broker, S: Store>(
    broker: &B,
    store: &S,
    req: &SubmitRequest,
) -> Result<Submitted> {
    submit_with_depth(broker, store, req, DEFAULT_DISPATCH_DEPTH).await
}

/// [`submit`], filling the work queue up to `depth` chunks (the
/// executors' `DISPATCH_DEPTH`) rather than the default.
pub async fn submit_with_depth<B: Broker, S: Store>(
    broker: &B,
    store: &S,
    req: &SubmitRequest,
    depth: i64,
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

    // The chunks wait in the store; the dispatchers send them out in
    // fair-share order. Filling once here starts an idle pool at once.
    let published = match dispatch::fill(broker, store, depth).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(
                error = &e as &dyn std::error::Error,
                "dispatching work failed; the executors' dispatchers will send it"
            );
            false
        }
    };
    Ok(Submitted { batches, published })
}

/// The result of [`submit`].
#[derive(Clone, Debug)]
pub struct Submitted {
    pub batches: Vec<NewBatch>,
    pub published: bool,
}
