//! The aggregator's settings: one struct, filled by the command line (and
//! its environment variables), taken by [`super::run`].

use crate::faults::FaultSettings;

/// Results made durable together by default (and so held unacked at once).
pub const DEFAULT_COMMIT_WINDOW: u16 = 256;

/// Aggregator settings (worker-2).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct AggregatorSettings {
    /// Results made durable with one group commit and acked together.
    #[arg(long, env = "COMMIT_WINDOW", help = commit_window_help())]
    pub commit_window: Option<u16>,
    /// Deprecated name of --commit-window (read for one more release).
    #[arg(long = "prefetch", env = "PREFETCH", hide = true)]
    pub deprecated_prefetch: Option<u16>,
    /// This replica's name as owner of partitions (default:
    /// aggregator-HOST-PID-RANDOM, new at every start; unique among the
    /// running replicas).
    #[arg(long, env = "REPLICA_ID")]
    pub replica_id: Option<String>,
    #[command(flatten)]
    pub faults: FaultSettings,
}

fn commit_window_help() -> String {
    format!(
        "Results made durable with one group commit (one fsync per batch file touched) \
         and acked together; also the results held unacked at once [default: {DEFAULT_COMMIT_WINDOW}]"
    )
}

impl AggregatorSettings {
    /// This replica's name: `REPLICA_ID`, or one new at every start. A
    /// container keeps its hostname and pid (1) across restarts, so the
    /// host and pid alone would make a restarted replica the owner the
    /// store remembers; the random suffix makes it a new one.
    pub fn replica_id(&self) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
            let suffix = &uuid::Uuid::new_v4().simple().to_string()[..4];
            format!("aggregator-{host}-{}-{suffix}", std::process::id())
        })
    }

    /// The commit window, from the deprecated `PREFETCH` when only it is set.
    pub fn commit_window(&self) -> u16 {
        let window = match (self.commit_window, self.deprecated_prefetch) {
            (Some(n), old) => {
                if old.is_some() {
                    tracing::warn!("PREFETCH is deprecated and ignored: COMMIT_WINDOW is set");
                }
                n
            }
            (None, Some(n)) => {
                tracing::warn!("PREFETCH is deprecated for the aggregator: use COMMIT_WINDOW");
                n
            }
            (None, None) => DEFAULT_COMMIT_WINDOW,
        };
        window.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_gets_a_new_name_at_every_start_unless_one_is_set() {
        let mut s = AggregatorSettings::default();
        assert_ne!(s.replica_id(), s.replica_id());
        assert!(s.replica_id().starts_with("aggregator-"));
        s.replica_id = Some("agg-a".into());
        assert_eq!(s.replica_id(), "agg-a");
    }

    #[test]
    fn the_window_comes_from_the_new_name_then_the_old_then_the_default() {
        let mut s = AggregatorSettings::default();
        assert_eq!(s.commit_window(), DEFAULT_COMMIT_WINDOW);
        s.deprecated_prefetch = Some(10);
        assert_eq!(s.commit_window(), 10);
        s.commit_window = Some(0);
        assert_eq!(s.commit_window(), 1);
    }
}
