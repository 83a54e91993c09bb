//! Pieces every stage shares: dead-lettering with a reason, and a small
//! cache of batches with their compiled workload.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use broker::{Broker, Delivery, Message, Queue, REASON_HEADER};
use store::Batch;
use store::prelude::*;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use workload::{Workload, WorkloadSpec};

use crate::Result;
use crate::messages::nudge;
use crate::retry::retrying;

/// Publishes a copy of `delivery` to the dead-letter queue with `reason`
/// (confirmed). The caller acks the original only after this returns.
pub async fn dead_letter<B: Broker>(
    broker: &B,
    from: Queue,
    delivery: &Delivery,
    reason: &str,
) -> Result<()> {
    tracing::warn!(queue = from.name(), msg_id = ?delivery.msg_id, reason, "dead-lettering message");
    let mut msg = Message::new(
        Queue::DeadLetter,
        delivery.msg_id.clone().unwrap_or_default(),
        delivery.payload.clone(),
    )
    .with_header(REASON_HEADER, reason)
    .with_header("x-original-queue", from.name());
    msg.headers.extend(
        delivery
            .headers
            .iter()
            .filter(|(k, _)| k != REASON_HEADER && k != "x-original-queue")
            .cloned(),
    );
    broker.publish(vec![msg]).await?;
    Ok(())
}

/// A batch with its workload compiled once.
#[derive(Debug)]
pub struct LoadedBatch {
    pub batch: Batch,
    pub workload: Workload,
}

/// Batches looked up by id, compiled once per process. Batches never change
/// after submit; a purged one stays cached, which is harmless: every write
/// about it fails in the store, and the stages drop the message then.
/// The map is cleared when large.
#[derive(Clone, Debug, Default)]
pub struct BatchCache {
    inner: Arc<Mutex<HashMap<Uuid, Arc<LoadedBatch>>>>,
}

/// A message's batch, or why the message cannot use it. Every stage looks
/// its batches up through [`BatchCache::load`] and acts on these three.
#[derive(Debug)]
pub enum Lookup {
    Found(Arc<LoadedBatch>),
    /// The batch was purged (docs/operations.md, "Retention"): the message
    /// is late and is acked and dropped.
    Purged,
    /// No such batch, or its stored workload does not compile: the message
    /// goes to the dead-letter queue with this reason.
    Invalid(String),
}

const CACHE_LIMIT: usize = 4096;

impl BatchCache {
    /// The batch `id`, retried while the store is briefly away, until
    /// `stop` fires ([`crate::Error::Shutdown`]).
    pub async fn load<S: Store>(
        &self,
        store: &S,
        id: Uuid,
        stop: &CancellationToken,
    ) -> Result<Lookup> {
        retrying("load batch", stop, || self.get(store, id)).await
    }

    async fn get<S: Store>(&self, store: &S, id: Uuid) -> Result<Lookup> {
        if let Some(hit) = self.inner.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(Lookup::Found(hit));
        }
        let Some(batch) = store.batch(id).await? else {
            return Ok(match store.purged_batch(id).await? {
                Some(_) => Lookup::Purged,
                None => Lookup::Invalid(format!("unknown batch {id}")),
            });
        };
        let workload = match serde_json::from_str::<WorkloadSpec>(&batch.workload)
            .map_err(|e| e.to_string())
            .and_then(|spec| Workload::new(&spec).map_err(|e| e.to_string()))
        {
            Ok(w) => w,
            Err(reason) => return Ok(Lookup::Invalid(format!("batch workload invalid: {reason}"))),
        };
        let loaded = Arc::new(LoadedBatch { batch, workload });
        if let Ok(mut map) = self.inner.lock() {
            if map.len() >= CACHE_LIMIT {
                map.clear();
            }
            map.insert(id, loaded.clone());
        }
        Ok(Lookup::Found(loaded))
    }
}

/// Tells the aggregator partition of batch `id` to look at its batches now
/// (a purge or a cancel). Best effort, logged when it fails: partitions
/// look on their own too, and the sweeper nudges a cancelled batch that
/// stays unsealed.
pub async fn nudge_partition_of<S: Store, B: Broker>(
    store: &S,
    broker: Option<&B>,
    id: Uuid,
    from: &str,
) {
    let Some(broker) = broker else {
        return;
    };
    let sent = async {
        let partitions = store.partitions().await?;
        let msg = nudge(store::partition::of(id, partitions), from)?;
        broker.publish(vec![msg]).await?;
        Ok::<_, crate::Error>(())
    };
    if let Err(e) = sent.await {
        tracing::warn!(
            batch = %id,
            error = &e as &dyn std::error::Error,
            "could not nudge the aggregator; it looks at the batch on its own later"
        );
    }
}
