//! Liveness and readiness of a stage, for `/healthz` and `/readyz`.
//!
//! The stage runtime ([`crate::stage`]) calls [`Health::beat`] each time its
//! loop turns (at least once a second, idle or not) and
//! [`Health::set_ready`] once it consumes (its connections are up and, for
//! the aggregator, its state is rebuilt) and again when it stops. The HTTP
//! endpoints read [`Health::alive`] and [`Health::ready`]. A clone shares
//! the same state.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared liveness and readiness of one process.
#[derive(Clone, Debug)]
pub struct Health {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    start: Instant,
    /// Milliseconds since `start` at the last beat.
    last_beat_ms: AtomicU64,
    ready: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    /// Alive (it just started) and not ready.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                start: Instant::now(),
                last_beat_ms: AtomicU64::new(0),
                ready: AtomicBool::new(false),
            }),
        }
    }

    /// The loop turned.
    pub fn beat(&self) {
        let now = u64::try_from(self.inner.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.inner.last_beat_ms.store(now, Ordering::Relaxed);
    }

    /// Ready to take work (consuming), or not any more.
    pub fn set_ready(&self, ready: bool) {
        self.inner.ready.store(ready, Ordering::Relaxed);
    }

    /// The loop turned within `max_silence`.
    pub fn alive(&self, max_silence: Duration) -> bool {
        let last = Duration::from_millis(self.inner.last_beat_ms.load(Ordering::Relaxed));
        self.inner.start.elapsed().saturating_sub(last) <= max_silence
    }

    pub fn ready(&self) -> bool {
        self.inner.ready.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beats_keep_it_alive_and_readiness_is_explicit() {
        let h = Health::new();
        assert!(h.alive(Duration::from_secs(5)));
        assert!(!h.ready());
        h.clone().set_ready(true);
        assert!(h.ready());
        std::thread::sleep(Duration::from_millis(30));
        assert!(!h.alive(Duration::from_millis(10)));
        h.beat();
        assert!(h.alive(Duration::from_millis(10)));
    }
}
