//! [`Health`]: what a process's `/healthz` (alive) and `/readyz` (ready)
//! answer, as one cheap-to-clone handle its loops and its wiring share.
//!
//! Who calls what:
//! - Every long-running loop (a stage's consume loop, the sweeper, the
//!   lease renewer) calls [`Health::beat`] with its own name each time it
//!   turns. A loop that waits for messages must also turn on a timer (a
//!   `select!` arm on an interval well under the silence allowed), or an
//!   idle stage looks dead.
//! - The wiring and the stage mark readiness conditions with
//!   [`Health::set_ready`]: for a stage `connected` (RabbitMQ and Postgres
//!   answer; the binary) and [`CONSUMING`] (state rebuilt and its consumer
//!   subscribed; the stage runtime, [`crate::stage`]), and `false` again
//!   when one is lost. A condition is declared by its first `set_ready`.
//! - The probe server (the binary) asks [`Health::alive`] for `/healthz` and
//!   [`Health::ready`] for `/readyz`, and answers 200 on [`Probe::Pass`],
//!   503 with the reasons on [`Probe::Fail`].
//!
//! Time is tokio's, so tests run it on a paused clock.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// How long a loop may go without a beat before `/healthz` fails: far above
/// any idle tick, below an orchestrator's patience.
pub const DEFAULT_MAX_SILENCE: Duration = Duration::from_secs(60);

/// The outcome of a probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Pass,
    /// Why not, one reason per failing loop or condition.
    Fail(Vec<String>),
}

#[derive(Debug, Default)]
struct State {
    /// Last beat of each loop.
    beats: BTreeMap<&'static str, Instant>,
    /// Readiness conditions and whether each holds.
    conditions: BTreeMap<&'static str, bool>,
}

/// Liveness and readiness of one process. Cheap to clone; clones share.
#[derive(Clone, Debug, Default)]
pub struct Health {
    state: Arc<Mutex<State>>,
}

impl Health {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic elsewhere while holding the lock leaves plain data behind:
        // still good for answering probes.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// The loop `name` turned.
    pub fn beat(&self, name: &'static str) {
        let now = Instant::now();
        self.with(|s| s.beats.insert(name, now));
    }

    /// Declares or updates the readiness condition `name`.
    pub fn set_ready(&self, name: &'static str, holds: bool) {
        self.with(|s| s.conditions.insert(name, holds));
    }

    /// Alive when every loop that ever beat did so within `max_silence`.
    /// A process with no loop yet is alive: it answers the probe.
    pub fn alive(&self, max_silence: Duration) -> Probe {
        let now = Instant::now();
        let silent: Vec<String> = self.with(|s| {
            s.beats
                .iter()
                .filter(|(_, last)| now.duration_since(**last) > max_silence)
                .map(|(name, last)| {
                    format!(
                        "loop {name} silent for {}s",
                        now.duration_since(*last).as_secs()
                    )
                })
                .collect()
        });
        probe(silent)
    }

    /// Ready when at least one condition is declared and all hold.
    pub fn ready(&self) -> Probe {
        let (declared, unmet): (bool, Vec<String>) = self.with(|s| {
            let unmet = s
                .conditions
                .iter()
                .filter(|(_, holds)| !**holds)
                .map(|(name, _)| format!("not {name}"))
                .collect();
            (!s.conditions.is_empty(), unmet)
        });
        if !declared {
            return Probe::Fail(vec!["starting".into()]);
        }
        probe(unmet)
    }
}

fn probe(reasons: Vec<String>) -> Probe {
    if reasons.is_empty() {
        Probe::Pass
    } else {
        Probe::Fail(reasons)
    }
}

/// The readiness condition the stage runtime sets once its consumer is
/// subscribed (and clears when it stops).
pub const CONSUMING: &str = "consuming";

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_beating_fails_liveness_and_recovers() {
        let health = Health::new();
        assert_eq!(health.alive(Duration::from_secs(10)), Probe::Pass);
        health.beat("consume");
        health.beat("sweeper");
        tokio::time::advance(Duration::from_secs(8)).await;
        health.beat("consume");
        assert_eq!(health.alive(Duration::from_secs(10)), Probe::Pass);
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            health.alive(Duration::from_secs(10)),
            Probe::Fail(vec!["loop sweeper silent for 13s".into()])
        );
        health.beat("sweeper");
        assert_eq!(health.alive(Duration::from_secs(10)), Probe::Pass);
    }

    #[test]
    fn ready_only_when_every_declared_condition_holds() {
        let health = Health::new();
        assert_eq!(health.ready(), Probe::Fail(vec!["starting".into()]));
        health.set_ready("connected", true);
        health.set_ready("consuming", false);
        assert_eq!(health.ready(), Probe::Fail(vec!["not consuming".into()]));
        health.clone().set_ready("consuming", true);
        assert_eq!(health.ready(), Probe::Pass);
        health.set_ready("connected", false);
        assert_eq!(health.ready(), Probe::Fail(vec!["not connected".into()]));
    }
}
