//! The executor's settings: one struct, what the command line (and its
//! environment variables) fill and what [`super::run`] takes. Each default
//! is written once, here.

use std::time::Duration;

use crate::dispatch::DispatchSettings;
use crate::faults::{FaultSettings, Faults};
use crate::sweeper::SweeperSettings;
use crate::{Error, Result};

pub const DEFAULT_LEASE_S: u64 = 30;
pub const DEFAULT_MAX_ATTEMPTS: i32 = 5;
pub const DEFAULT_DRAIN_TIMEOUT_S: u64 = 30;

/// Executor settings (worker-1).
#[derive(Clone, Debug, clap::Args)]
pub struct ExecutorSettings {
    /// Chunks simulated at once, on as many threads (default: the number of cores).
    #[arg(long, env = "CONCURRENCY")]
    pub concurrency: Option<usize>,
    /// Chunks held at once: simulating, committing or publishing (default:
    /// twice the concurrency, so one commits while the next simulates).
    /// Each held chunk is claimed under a lease.
    #[arg(long, env = "CHUNKS_IN_FLIGHT")]
    pub chunks_in_flight: Option<u16>,
    /// Deprecated name of --chunks-in-flight (read for one more release).
    #[arg(long = "prefetch", env = "PREFETCH", hide = true)]
    pub deprecated_prefetch: Option<u16>,
    /// Lease of a claim, in seconds; the executor renews it every third of
    /// this while it works on the chunk, so a chunk may take longer. A frozen
    /// or dead executor's chunks pass on about this long after it stopped.
    #[arg(long, env = "LEASE_S", default_value_t = DEFAULT_LEASE_S)]
    pub lease_s: u64,
    /// Attempts before a chunk is failed (and its batch gets FAILURE).
    #[arg(long, env = "MAX_ATTEMPTS", default_value_t = DEFAULT_MAX_ATTEMPTS)]
    pub max_attempts: i32,
    /// Sleep per run in milliseconds, so drills are watchable.
    #[arg(long, env = "SIMULATION_DELAY_MS", default_value_t = 0)]
    pub simulation_delay_ms: u64,
    /// Worker id recorded with claims (default: executor-HOST-PID).
    #[arg(long, env = "WORKER_ID")]
    pub worker_id: Option<String>,
    /// Do not run the sweeper in this process.
    #[arg(long, env = "NO_SWEEPER")]
    pub no_sweeper: bool,
    /// Seconds shutdown waits for chunks in flight before leaving them to
    /// be redelivered.
    #[arg(long, env = "DRAIN_TIMEOUT_S", default_value_t = DEFAULT_DRAIN_TIMEOUT_S)]
    pub drain_timeout_s: u64,
    #[command(flatten)]
    pub sweeper: SweeperSettings,
    #[command(flatten)]
    pub dispatch: DispatchSettings,
    #[command(flatten)]
    pub faults: FaultSettings,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        Self {
            concurrency: None,
            chunks_in_flight: None,
            deprecated_prefetch: None,
            lease_s: DEFAULT_LEASE_S,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            simulation_delay_ms: 0,
            worker_id: None,
            no_sweeper: false,
            drain_timeout_s: DEFAULT_DRAIN_TIMEOUT_S,
            sweeper: SweeperSettings::default(),
            dispatch: DispatchSettings::default(),
            faults: FaultSettings::default(),
        }
    }
}

/// The settings with every default resolved, as the executor uses them.
#[derive(Clone, Debug)]
pub(super) struct Resolved {
    pub worker_id: String,
    pub concurrency: usize,
    pub chunks_in_flight: u16,
    pub lease: Duration,
    pub max_attempts: i32,
    pub simulation_delay: Duration,
    pub drain_timeout: Duration,
    pub faults: Faults,
}

impl ExecutorSettings {
    /// Resolves the defaults and checks the values; says which deprecated
    /// setting it read.
    pub(super) fn resolve(&self) -> Result<Resolved> {
        let concurrency = self.concurrency.unwrap_or_else(cores).max(1);
        let twice = u16::try_from(concurrency.saturating_mul(2)).unwrap_or(u16::MAX);
        let in_flight = match (self.chunks_in_flight, self.deprecated_prefetch) {
            (Some(n), old) => {
                if old.is_some() {
                    tracing::warn!("PREFETCH is deprecated and ignored: CHUNKS_IN_FLIGHT is set");
                }
                n
            }
            (None, Some(n)) => {
                tracing::warn!("PREFETCH is deprecated for the executor: use CHUNKS_IN_FLIGHT");
                n
            }
            (None, None) => twice,
        };
        if self.max_attempts < 1 {
            return Err(Error::Setting {
                name: "MAX_ATTEMPTS",
                reason: format!("must be at least 1, got {}", self.max_attempts),
            });
        }
        Ok(Resolved {
            worker_id: self.worker_id.clone().unwrap_or_else(default_worker_id),
            concurrency,
            // Fewer chunks held than simulation slots would leave slots unused.
            chunks_in_flight: in_flight.max(u16::try_from(concurrency).unwrap_or(u16::MAX)),
            lease: Duration::from_secs(self.lease_s.max(1)),
            max_attempts: self.max_attempts,
            simulation_delay: Duration::from_millis(self.simulation_delay_ms),
            drain_timeout: Duration::from_secs(self.drain_timeout_s),
            faults: self.faults.parse()?,
        })
    }
}

/// The number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    format!("executor-{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_defaults_to_twice_the_concurrency_and_never_below_it() {
        let s = ExecutorSettings {
            concurrency: Some(3),
            ..ExecutorSettings::default()
        };
        assert_eq!(s.resolve().unwrap().chunks_in_flight, 6);
        let s = ExecutorSettings {
            concurrency: Some(3),
            chunks_in_flight: Some(1),
            ..ExecutorSettings::default()
        };
        assert_eq!(s.resolve().unwrap().chunks_in_flight, 3);
    }

    #[test]
    fn the_deprecated_prefetch_is_read_unless_the_new_name_is_set() {
        let old = ExecutorSettings {
            concurrency: Some(1),
            deprecated_prefetch: Some(5),
            ..ExecutorSettings::default()
        };
        assert_eq!(old.resolve().unwrap().chunks_in_flight, 5);
        let both = ExecutorSettings {
            chunks_in_flight: Some(4),
            ..old
        };
        assert_eq!(both.resolve().unwrap().chunks_in_flight, 4);
    }

    #[test]
    fn bad_values_are_setting_errors() {
        let s = ExecutorSettings {
            max_attempts: 0,
            ..ExecutorSettings::default()
        };
        assert!(matches!(s.resolve(), Err(Error::Setting { .. })));
    }
}
