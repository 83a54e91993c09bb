//! Cancel: what cancelling a batch does in the store and when it is
//! refused — shared by both backends, which only read and write the rows.
//!
//! One transaction locks the batch's row, turns every chunk that has not
//! completed (pending or running) into `cancelled`, and stamps the batch.
//! From its commit on, no claim takes a chunk of the batch, a running
//! attempt's completion is fenced (its chunk is no longer running), and
//! the set of completed chunks is frozen: the aggregator seals exactly
//! those, and the verifier checks exactly those (docs/architecture.md,
//! "Cancel").
//!
//! A batch is final — and a cancel refused — once it has a verdict, once a
//! chunk failed (its FAILURE is on the way), or once every chunk completed
//! (it ends with its own verdict). The row locks make a cancel racing the
//! last completion or a failure come out one way only: the completion (or
//! failure) commits first and the cancel finds nothing left to cancel, or
//! the cancel commits first and the completion (or failure) is fenced.

use crate::Uuid;

/// What cancelling one batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cancel {
    /// Cancelled now: `chunks` chunks will not run (those pending or
    /// running), `completed` chunks are kept.
    Cancelled { chunks: i32, completed: i32 },
    /// Cancelled before; nothing changed.
    AlreadyCancelled,
    /// The batch is final (or about to be, with its own verdict): why.
    Final { why: String },
    /// No such batch.
    Unknown,
    /// The batch was purged.
    Purged,
}

/// A cancelled batch, as the stages ask about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cancelled {
    pub id: Uuid,
    /// Seconds since the Unix epoch, by the store's clock.
    pub at: f64,
    pub reason: String,
}

/// A `(id, cancelled_at, cancel_reason)` row as both stores select it.
pub(crate) fn cancelled_of((id, at, reason): (Uuid, f64, Option<String>)) -> Cancelled {
    Cancelled {
        id,
        at,
        reason: reason.unwrap_or_else(|| DEFAULT_REASON.to_owned()),
    }
}

/// The batch a cancel found, read under its row lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CancelRow {
    pub cancelled: bool,
    /// The verdict, if one was recorded.
    pub verdict: Option<bool>,
}

/// Before touching chunks: refuse a batch that is cancelled or has a
/// verdict; `None` means go on.
pub(crate) fn refusal(row: &CancelRow) -> Option<Cancel> {
    if row.cancelled {
        return Some(Cancel::AlreadyCancelled);
    }
    row.verdict.map(|success| Cancel::Final {
        why: format!(
            "it has its verdict already ({})",
            if success { "SUCCESS" } else { "FAILURE" }
        ),
    })
}

/// After turning the live chunks into `cancelled` (`changed` of them, with
/// `failed` chunks in the batch): refuse, rolling back, when there was
/// nothing left to cancel or a chunk failed.
pub(crate) fn after_update(changed: u64, failed: bool) -> Option<Cancel> {
    if failed {
        return Some(Cancel::Final {
            why: "a chunk failed: it ends FAILURE".into(),
        });
    }
    (changed == 0).then(|| Cancel::Final {
        why: "every chunk completed: it ends with its own verdict".into(),
    })
}

/// The reason stored when none is given.
pub const DEFAULT_REASON: &str = "cancelled by a person";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_come_before_any_change() {
        let live = CancelRow {
            cancelled: false,
            verdict: None,
        };
        assert_eq!(refusal(&live), None);
        let again = CancelRow {
            cancelled: true,
            ..live.clone()
        };
        assert_eq!(refusal(&again), Some(Cancel::AlreadyCancelled));
        let done = CancelRow {
            verdict: Some(false),
            ..live
        };
        assert!(matches!(refusal(&done), Some(Cancel::Final { why }) if why.contains("FAILURE")));
    }

    #[test]
    fn nothing_left_or_a_failure_refuses_after_the_update() {
        assert_eq!(after_update(3, false), None);
        assert!(matches!(after_update(0, false), Some(Cancel::Final { .. })));
        assert!(matches!(after_update(3, true), Some(Cancel::Final { .. })));
    }
}
