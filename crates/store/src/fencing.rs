//! What a failed-attempt write means, shared by both backends: the answer
//! when it took effect, and the answer when it changed nothing — which is
//! either a lost claim or a repeat of a call that took effect already (its
//! answer lost with the connection). Repeats must get the same answer, or
//! the caller would skip the retry message and strand the chunk.

use crate::AttemptFailure;

/// The answer for a chunk that `fail_attempt` just moved to `status`.
pub(crate) fn failure_outcome(status: &str, attempts: i32) -> AttemptFailure {
    if status == "failed" {
        AttemptFailure::Exhausted { attempts }
    } else {
        AttemptFailure::WillRetry { attempt: attempts }
    }
}

/// The answer when `fail_attempt(attempt, error)` changed nothing, given the
/// chunk's `(status, attempts, last_error)`. Only `fail_attempt` by the
/// holder of `attempt` leaves a chunk pending with that attempt count; a
/// failed chunk counts as this call's doing only with this very error (a
/// lease that expired is another story).
pub(crate) fn repeated_failure(
    row: Option<(String, i32, Option<String>)>,
    attempt: i32,
    error: &str,
) -> AttemptFailure {
    match row {
        Some((status, attempts, _)) if attempts == attempt && status == "pending" => {
            AttemptFailure::WillRetry { attempt }
        }
        Some((status, attempts, last_error))
            if attempts == attempt
                && status == "failed"
                && last_error.as_deref() == Some(error) =>
        {
            AttemptFailure::Exhausted { attempts }
        }
        _ => AttemptFailure::Fenced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        status: &str,
        attempts: i32,
        error: Option<&str>,
    ) -> Option<(String, i32, Option<String>)> {
        Some((status.to_owned(), attempts, error.map(str::to_owned)))
    }

    #[test]
    fn a_repeat_gets_the_first_answer() {
        assert_eq!(
            repeated_failure(row("pending", 2, Some("boom")), 2, "boom"),
            AttemptFailure::WillRetry { attempt: 2 }
        );
        assert_eq!(
            repeated_failure(row("failed", 5, Some("boom")), 5, "boom"),
            AttemptFailure::Exhausted { attempts: 5 }
        );
    }

    #[test]
    fn anything_else_is_fenced() {
        // A newer attempt claimed it, completed it, or its lease expired.
        assert_eq!(
            repeated_failure(row("running", 3, None), 2, "boom"),
            AttemptFailure::Fenced
        );
        assert_eq!(
            repeated_failure(row("pending", 3, Some("x")), 2, "x"),
            AttemptFailure::Fenced
        );
        assert_eq!(
            repeated_failure(row("completed", 2, None), 2, "boom"),
            AttemptFailure::Fenced
        );
        assert_eq!(
            repeated_failure(
                row("failed", 1, Some("lease expired after 1 attempts")),
                1,
                "boom"
            ),
            AttemptFailure::Fenced
        );
        assert_eq!(repeated_failure(None, 1, "boom"), AttemptFailure::Fenced);
    }
}
