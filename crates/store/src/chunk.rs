//! The chunk state machine, in plain Rust and shared by both backends: the
//! statuses, what a claim does to a chunk, what a fenced write that changed
//! nothing means, and the failure reasons. The backends only read and write
//! rows: each reads a chunk under its write lock, asks this module what to
//! do, and writes that.
//!
//! ```text
//! pending ──claim──► running ──complete(attempt)──► completed
//!    ▲                  │ │
//!    └─fail(attempt)────┘ └─fail(attempt) with no attempts left,
//!                           or lease expired with none left ──► failed
//!
//! pending | running ──cancel (its batch)──► cancelled
//! ```
//!
//! A running chunk whose lease expired is claimable again (attempt + 1), and
//! so is one whose holder is known to be gone (its process ended: see
//! `postgres/holder.rs`) even while its lease runs.
//! The attempt number a claim returns fences every later write of that
//! claim: `complete`, `fail` and lease renewals require it, so a worker
//! that lost its claim changes nothing.

use std::fmt;
use std::str::FromStr;

use crate::{AttemptFailure, Claim, Completion, Error, Result};

/// Where a chunk is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkStatus {
    /// Not claimed (new, or back after a failed attempt).
    Pending,
    /// Claimed by a worker under a lease.
    Running,
    /// Its rows and result are committed. Final.
    Completed,
    /// Attempts exhausted. Final.
    Failed,
    /// Its batch was cancelled before it completed. Final: no claim takes
    /// it, and the completion of an attempt that was running is fenced.
    Cancelled,
}

impl ChunkStatus {
    /// The name stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            ChunkStatus::Pending => "pending",
            ChunkStatus::Running => "running",
            ChunkStatus::Completed => "completed",
            ChunkStatus::Failed => "failed",
            ChunkStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ChunkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChunkStatus {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => ChunkStatus::Pending,
            "running" => ChunkStatus::Running,
            "completed" => ChunkStatus::Completed,
            "failed" => ChunkStatus::Failed,
            "cancelled" => ChunkStatus::Cancelled,
            other => return Err(Error::Corrupt(format!("unknown chunk status {other:?}"))),
        })
    }
}

/// A chunk as a claim reads it (under the chunk's write lock).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ChunkRow {
    pub status: ChunkStatus,
    pub attempts: i32,
    /// Seconds left on the lease by the database's clock (negative once
    /// expired); `None` without a lease.
    pub lease_remaining_s: Option<f64>,
    /// The process holding the claim is known to be gone. Only ever true
    /// when that is certain (its database session ended); unknown is false.
    pub holder_gone: bool,
    pub result: Option<String>,
    pub last_error: Option<String>,
}

/// What a claim does to the chunk it read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ClaimStep {
    /// Take it: `running` under `attempt`, with a fresh lease.
    Take { attempt: i32 },
    /// No attempts left: mark it `failed` with `reason`; the claim answers
    /// [`Claim::Failed`].
    Fail { reason: String },
    /// Change nothing and answer this.
    Answer(Claim),
}

/// The claim decision. A pending chunk, or a running one whose lease ran
/// out or whose holder is gone, is taken while attempts remain and failed
/// once they are used up; a live lease of a live (or unknown) holder, a
/// completed or a failed chunk is only reported.
pub(crate) fn claim_step(row: &ChunkRow, max_attempts: i32) -> Result<ClaimStep> {
    let lease_live = row.lease_remaining_s.is_some_and(|s| s > 0.0) && !row.holder_gone;
    Ok(match row.status {
        ChunkStatus::Completed => {
            let result = row.result.clone().ok_or_else(|| {
                Error::Corrupt("a completed chunk without its stored result".into())
            })?;
            ClaimStep::Answer(Claim::Completed { result })
        }
        ChunkStatus::Failed => ClaimStep::Answer(Claim::Failed {
            reason: row.last_error.clone().unwrap_or_else(|| "failed".into()),
        }),
        ChunkStatus::Cancelled => ClaimStep::Answer(Claim::Cancelled),
        ChunkStatus::Running if lease_live => ClaimStep::Answer(Claim::Leased {
            remaining_s: row.lease_remaining_s.unwrap_or_default(),
        }),
        _ if row.attempts < max_attempts => ClaimStep::Take {
            attempt: row.attempts + 1,
        },
        ChunkStatus::Running if row.holder_gone => ClaimStep::Fail {
            reason: format!("its executor died after {} attempts", row.attempts),
        },
        ChunkStatus::Running => ClaimStep::Fail {
            reason: format!("lease expired after {} attempts", row.attempts),
        },
        ChunkStatus::Pending => ClaimStep::Fail {
            reason: format!(
                "attempts exhausted after {} attempts: {}",
                row.attempts,
                row.last_error.as_deref().unwrap_or_default()
            ),
        },
    })
}

/// The status a failed attempt leaves: `failed` when it was the last
/// allowed one, `pending` (retried) otherwise.
pub(crate) fn status_after_failure(attempt: i32, max_attempts: i32) -> ChunkStatus {
    if attempt >= max_attempts {
        ChunkStatus::Failed
    } else {
        ChunkStatus::Pending
    }
}

/// The answer of a failed-attempt write that took effect.
pub(crate) fn failure_outcome(status: ChunkStatus, attempts: i32) -> AttemptFailure {
    if status == ChunkStatus::Failed {
        AttemptFailure::Exhausted { attempts }
    } else {
        AttemptFailure::WillRetry { attempt: attempts }
    }
}

/// The answer when `fail_attempt(attempt, error)` changed nothing, given
/// the chunk's `(status, attempts, last_error)`: either the claim is lost,
/// or this is a repeat of a call that took effect already (its answer lost
/// with the connection) and must get the same answer, or the caller would
/// skip the retry message and strand the chunk. Only `fail_attempt` by the
/// holder of `attempt` leaves a chunk pending with that attempt count; a
/// failed chunk counts as this call's doing only with this very error (a
/// lease that expired is another story).
pub(crate) fn repeated_failure(
    row: Option<(ChunkStatus, i32, Option<String>)>,
    attempt: i32,
    error: &str,
) -> AttemptFailure {
    match row {
        Some((ChunkStatus::Pending, attempts, _)) if attempts == attempt => {
            AttemptFailure::WillRetry { attempt }
        }
        Some((ChunkStatus::Failed, attempts, last_error))
            if attempts == attempt && last_error.as_deref() == Some(error) =>
        {
            AttemptFailure::Exhausted { attempts }
        }
        _ => AttemptFailure::Fenced,
    }
}

/// The answer when `complete_chunk(attempt)` changed nothing, given the
/// chunk's `(status, attempts)`: completed under this very attempt means an
/// earlier call committed and its answer was lost (only this claim can have
/// done that, since attempts never change once a chunk is completed), so
/// the caller goes on to publish; anything else is a lost claim.
pub(crate) fn repeated_completion(row: Option<(ChunkStatus, i32)>, attempt: i32) -> Completion {
    match row {
        Some((ChunkStatus::Completed, attempts)) if attempts == attempt => Completion::Committed,
        _ => Completion::Fenced,
    }
}

/// The reason a batch with a failed chunk gets: which chunk, and its last error.
pub(crate) fn failure_reason(chunk: i32, last_error: Option<&str>) -> String {
    format!(
        "chunk {chunk} failed: {}",
        last_error.unwrap_or("no error recorded")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: ChunkStatus, attempts: i32, lease: Option<f64>) -> ChunkRow {
        ChunkRow {
            status,
            attempts,
            lease_remaining_s: lease,
            holder_gone: false,
            result: (status == ChunkStatus::Completed).then(|| "{}".to_owned()),
            last_error: Some("boom".into()),
        }
    }

    #[test]
    fn statuses_round_trip_their_column_names() {
        for s in [
            ChunkStatus::Pending,
            ChunkStatus::Running,
            ChunkStatus::Completed,
            ChunkStatus::Failed,
        ] {
            assert_eq!(s.as_str().parse::<ChunkStatus>().unwrap(), s);
        }
        assert!(matches!(
            "done".parse::<ChunkStatus>(),
            Err(Error::Corrupt(_))
        ));
    }

    #[test]
    fn pending_and_expired_chunks_are_taken_while_attempts_remain() {
        use ChunkStatus::*;
        assert_eq!(
            claim_step(&row(Pending, 0, None), 5).unwrap(),
            ClaimStep::Take { attempt: 1 }
        );
        assert_eq!(
            claim_step(&row(Running, 2, Some(-0.5)), 5).unwrap(),
            ClaimStep::Take { attempt: 3 }
        );
        assert_eq!(
            claim_step(&row(Running, 2, Some(3.0)), 5).unwrap(),
            ClaimStep::Answer(Claim::Leased { remaining_s: 3.0 })
        );
    }

    #[test]
    fn a_live_lease_of_a_holder_that_is_gone_is_taken_at_once() {
        let mut gone = row(ChunkStatus::Running, 2, Some(25.0));
        gone.holder_gone = true;
        assert_eq!(
            claim_step(&gone, 5).unwrap(),
            ClaimStep::Take { attempt: 3 }
        );
        gone.attempts = 5;
        assert_eq!(
            claim_step(&gone, 5).unwrap(),
            ClaimStep::Fail {
                reason: "its executor died after 5 attempts".into()
            }
        );
    }

    #[test]
    fn used_up_attempts_fail_the_chunk_with_a_reason() {
        use ChunkStatus::*;
        assert_eq!(
            claim_step(&row(Running, 5, Some(-1.0)), 5).unwrap(),
            ClaimStep::Fail {
                reason: "lease expired after 5 attempts".into()
            }
        );
        assert_eq!(
            claim_step(&row(Pending, 5, None), 5).unwrap(),
            ClaimStep::Fail {
                reason: "attempts exhausted after 5 attempts: boom".into()
            }
        );
        // A live lease is reported even with no attempts left.
        assert!(matches!(
            claim_step(&row(Running, 5, Some(1.0)), 5).unwrap(),
            ClaimStep::Answer(Claim::Leased { .. })
        ));
    }

    #[test]
    fn final_states_are_only_reported() {
        use ChunkStatus::*;
        assert_eq!(
            claim_step(&row(Completed, 1, None), 5).unwrap(),
            ClaimStep::Answer(Claim::Completed {
                result: "{}".into()
            })
        );
        assert_eq!(
            claim_step(&row(Failed, 5, None), 5).unwrap(),
            ClaimStep::Answer(Claim::Failed {
                reason: "boom".into()
            })
        );
        let mut broken = row(Completed, 1, None);
        broken.result = None;
        assert!(matches!(claim_step(&broken, 5), Err(Error::Corrupt(_))));
    }

    fn failed_row(
        status: ChunkStatus,
        attempts: i32,
        error: Option<&str>,
    ) -> Option<(ChunkStatus, i32, Option<String>)> {
        Some((status, attempts, error.map(str::to_owned)))
    }

    #[test]
    fn a_repeated_failure_gets_the_first_answer() {
        use ChunkStatus::*;
        assert_eq!(status_after_failure(4, 5), Pending);
        assert_eq!(status_after_failure(5, 5), Failed);
        assert_eq!(
            failure_outcome(Pending, 2),
            AttemptFailure::WillRetry { attempt: 2 }
        );
        assert_eq!(
            repeated_failure(failed_row(Pending, 2, Some("boom")), 2, "boom"),
            AttemptFailure::WillRetry { attempt: 2 }
        );
        assert_eq!(
            repeated_failure(failed_row(Failed, 5, Some("boom")), 5, "boom"),
            AttemptFailure::Exhausted { attempts: 5 }
        );
    }

    #[test]
    fn anything_else_is_fenced() {
        use ChunkStatus::*;
        // A newer attempt claimed it, completed it, or its lease expired.
        for (row, attempt) in [
            (failed_row(Running, 3, None), 2),
            (failed_row(Pending, 3, Some("x")), 2),
            (failed_row(Completed, 2, None), 2),
            (
                failed_row(Failed, 1, Some("lease expired after 1 attempts")),
                1,
            ),
            (None, 1),
        ] {
            assert_eq!(
                repeated_failure(row, attempt, "boom"),
                AttemptFailure::Fenced
            );
        }
    }

    #[test]
    fn a_completion_is_ours_only_under_our_attempt() {
        use ChunkStatus::*;
        assert_eq!(
            repeated_completion(Some((Completed, 2)), 2),
            Completion::Committed
        );
        assert_eq!(
            repeated_completion(Some((Completed, 3)), 2),
            Completion::Fenced
        );
        assert_eq!(
            repeated_completion(Some((Running, 2)), 2),
            Completion::Fenced
        );
        assert_eq!(repeated_completion(None, 2), Completion::Fenced);
    }
}
