//! [`Late`]: a broker whose connection is made after the process started
//! (in the background, while the broker is away), for a process that has
//! work to do without it — the web console shows results with Postgres
//! alone. Until the connection is there, every call fails with a
//! retryable [`Error::Connection`] saying the broker is unreachable.

use std::sync::{Arc, OnceLock};

use crate::{Broker, Error, Message, Queue, Result};

/// What every call says before the broker is connected.
pub const UNREACHABLE: &str = "the broker is unreachable, try again when it is back";

/// A broker that may not be connected yet. Cheap to clone; clones see the
/// connection once one of them has it.
#[derive(Clone)]
pub struct Late<B> {
    cell: Arc<OnceLock<B>>,
}

impl<B> std::fmt::Debug for Late<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Late")
            .field("connected", &self.cell.get().is_some())
            .finish()
    }
}

impl<B> Default for Late<B> {
    fn default() -> Self {
        Self {
            cell: Arc::new(OnceLock::new()),
        }
    }
}

impl<B: Broker> Late<B> {
    /// Not connected yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hands over the connected broker (a second one is ignored).
    pub fn connected(&self, broker: B) {
        let _ = self.cell.set(broker);
    }

    /// The broker, once connected.
    pub fn get(&self) -> Result<&B> {
        self.cell
            .get()
            .ok_or_else(|| Error::connection(UNREACHABLE))
    }
}

impl<B: Broker> Broker for Late<B> {
    type Consumer = B::Consumer;

    async fn publish(&self, messages: Vec<Message>) -> Result<()> {
        self.get()?.publish(messages).await
    }

    async fn consume(&self, queue: Queue, prefetch: u16) -> Result<Self::Consumer> {
        self.get()?.consume(queue, prefetch).await
    }

    async fn queue_depth(&self, queue: Queue) -> Result<u64> {
        self.get()?.queue_depth(queue).await
    }

    async fn queue_exists(&self, queue: Queue) -> Result<bool> {
        self.get()?.queue_exists(queue).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MemoryBroker, MemoryConfig};

    #[tokio::test]
    async fn calls_fail_retryably_until_connected_then_go_through() {
        let late: Late<MemoryBroker> = Late::new();
        let e = late.queue_exists(Queue::Work).await.unwrap_err();
        assert!(e.can_be_retried());
        assert!(e.to_string().contains(UNREACHABLE), "{e}");
        late.clone()
            .connected(MemoryBroker::new(MemoryConfig::default()));
        assert!(late.queue_exists(Queue::Work).await.unwrap());
    }
}
