//! The in-process broker against the conformance suite every broker passes
//! (its own behaviour — injected failures, simulated connection losses —
//! is tested in `src/memory.rs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod conformance;

use broker::{MemoryBroker, MemoryConfig};
use conformance::{Backend, RETRY_DELAY};

conformance_tests!(Memory);

struct Memory;

impl Backend for Memory {
    type B = MemoryBroker;

    async fn broker(&self, delivery_limit: u32) -> MemoryBroker {
        MemoryBroker::new(MemoryConfig {
            retry_delay: RETRY_DELAY,
            delivery_limit,
        })
    }
}
