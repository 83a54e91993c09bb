//! Fault injection for tests and drills, configured from the environment.
//!
//! - `FAIL_CHUNKS="NAME:CHUNK,NAME:*"`: the executor's simulation of those
//!   chunks (by batch name) always fails, so retries and the terminal
//!   `FAILURE` path can be exercised.
//! - `CRASH_POINTS="after_claim:0.2,after_commit:0.1"`: the process aborts
//!   (no cleanup, like SIGKILL) at that point with that probability, so the
//!   drills can hit each row of the crash table in `docs/architecture.md`
//!   on purpose.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::str::FromStr;

use crate::Error;

/// The fault-injection settings every stage takes (hidden from `--help`:
/// they are for tests and drills).
#[derive(Clone, Debug, Default, clap::Args)]
pub struct FaultSettings {
    /// Fault injection: chunks whose simulation always fails, `NAME:CHUNK,NAME:*`.
    #[arg(long, env = "FAIL_CHUNKS", default_value = "", hide = true)]
    pub fail_chunks: String,
    /// Fault injection: `point:probability,…` where the process aborts (drills).
    #[arg(long, env = "CRASH_POINTS", default_value = "", hide = true)]
    pub crash_points: String,
}

impl FaultSettings {
    pub fn parse(&self) -> Result<Faults, Error> {
        Faults::parse(&self.fail_chunks, &self.crash_points)
    }
}

fn bad(name: &'static str, reason: String) -> Error {
    Error::Setting { name, reason }
}

/// Places in the stages where a drill may crash the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Executor: claimed the chunk, nothing committed.
    AfterClaim,
    /// Executor: results committed, result not yet published.
    AfterCommit,
    /// Executor: result published, message not acked.
    AfterPublish,
    /// Aggregator: rows appended, not fsynced.
    BeforeFsync,
    /// Aggregator: fsynced, not acked.
    AfterFsync,
    /// Aggregator: aggregate saved, verify message not published.
    BeforeVerifyPublish,
    /// Aggregator: verify published, no tombstone.
    BeforeTombstone,
    /// Verifier: verdict recorded, line not printed.
    AfterVerdict,
}

impl FromStr for CrashPoint {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "after_claim" => CrashPoint::AfterClaim,
            "after_commit" => CrashPoint::AfterCommit,
            "after_publish" => CrashPoint::AfterPublish,
            "before_fsync" => CrashPoint::BeforeFsync,
            "after_fsync" => CrashPoint::AfterFsync,
            "before_verify_publish" => CrashPoint::BeforeVerifyPublish,
            "before_tombstone" => CrashPoint::BeforeTombstone,
            "after_verdict" => CrashPoint::AfterVerdict,
            other => {
                return Err(bad(
                    "CRASH_POINTS",
                    format!("unknown crash point {other:?}"),
                ));
            }
        })
    }
}

/// The configured faults. The default injects nothing.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    fail_chunks: Vec<(String, Option<i32>)>,
    crashes: Vec<(CrashPoint, f64)>,
}

impl Faults {
    /// Parses `FAIL_CHUNKS` and `CRASH_POINTS` values (either may be empty).
    pub fn parse(fail_chunks: &str, crash_points: &str) -> Result<Self, Error> {
        let mut faults = Faults::default();
        for item in fail_chunks
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (name, chunk) = item
                .rsplit_once(':')
                .ok_or_else(|| bad("FAIL_CHUNKS", format!("{item:?} is not NAME:CHUNK")))?;
            let chunk = match chunk {
                "*" => None,
                n => Some(n.parse().map_err(|_| {
                    bad(
                        "FAIL_CHUNKS",
                        format!("{item:?}: chunk is not a number or *"),
                    )
                })?),
            };
            faults.fail_chunks.push((name.to_string(), chunk));
        }
        for item in crash_points
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (point, p) = item.split_once(':').unwrap_or((item, "1"));
            let p: f64 = p
                .parse()
                .map_err(|_| bad("CRASH_POINTS", format!("{item:?}: bad probability")))?;
            faults.crashes.push((point.parse()?, p.clamp(0.0, 1.0)));
        }
        Ok(faults)
    }

    /// Should the simulation of this chunk fail?
    pub fn fails(&self, batch_name: &str, chunk: i32) -> bool {
        self.fail_chunks
            .iter()
            .any(|(name, c)| name == batch_name && c.is_none_or(|c| c == chunk))
    }

    /// Aborts the process here with the configured probability.
    pub fn maybe_crash(&self, point: CrashPoint) {
        for (p, prob) in &self.crashes {
            if *p == point {
                let roll =
                    RandomState::new().hash_one(std::time::Instant::now()) as f64 / u64::MAX as f64;
                if roll < *prob {
                    tracing::warn!(?point, "fault injection: aborting the process");
                    std::process::abort();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fail_chunks_and_crash_points() {
        let f = Faults::parse("bad:2, all:*", "after_claim:0.5,after_commit").unwrap();
        assert!(f.fails("bad", 2));
        assert!(!f.fails("bad", 1));
        assert!(f.fails("all", 7));
        assert!(!f.fails("good", 2));
        assert_eq!(
            f.crashes,
            vec![
                (CrashPoint::AfterClaim, 0.5),
                (CrashPoint::AfterCommit, 1.0)
            ]
        );
    }

    #[test]
    fn rejects_bad_specs() {
        assert!(Faults::parse("nochunk", "").is_err());
        assert!(Faults::parse("x:y", "").is_err());
        assert!(Faults::parse("", "nowhere").is_err());
        assert!(Faults::parse("", "after_claim:abc").is_err());
    }
}
