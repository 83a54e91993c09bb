//! Retention: what purging a batch removes, what it keeps, and when it is
//! refused — shared by both stores, which only read and write the rows.
//!
//! A purge removes the batch everywhere the store holds it: its per-run
//! rows, chunks, aggregate and verdict (and the `batches` row itself, so
//! that every later write referring to the batch — a late chunk
//! completion, an aggregate, a verdict — fails its foreign key instead of
//! bringing the batch back half-made). It keeps one [`PurgedBatch`] row:
//! the record that lets a stage recognise a very late message of the batch
//! and drop it, and lets `status` say what became of it.
//!
//! A batch is finished when it has a verdict or was cancelled (whatever
//! still runs of it is dropped); an unfinished batch is
//! purged only when forced (its executors, aggregator and verifier then
//! drop what they still hold of it: docs/operations.md, "Retention").

/// What purging one batch did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purge {
    /// Removed now.
    Purged,
    /// Purged before; whatever an interrupted purge had left of its run
    /// rows is gone now.
    AlreadyPurged,
    /// No verdict yet and not forced: nothing changed.
    Running,
    /// No such batch, purged or not.
    Unknown,
}

/// The record a purged batch leaves.
#[derive(Clone, Debug, PartialEq)]
pub struct PurgedBatch {
    pub id: crate::Uuid,
    pub name: String,
    pub runs: i64,
    pub chunks: i32,
    /// The verdict it had; `None` when it was purged without one.
    pub success: Option<bool>,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
    pub purged_at: f64,
}

/// A `purged_batches` row as both stores select it: id, name, runs,
/// chunks, success, created_at and purged_at (epoch seconds).
pub(crate) type PurgedRow = (crate::Uuid, String, i64, i32, Option<bool>, f64, f64);

impl From<PurgedRow> for PurgedBatch {
    fn from((id, name, runs, chunks, success, created_at, purged_at): PurgedRow) -> Self {
        Self {
            id,
            name,
            runs,
            chunks,
            success,
            created_at,
            purged_at,
        }
    }
}

/// What to do with a batch a purge found: `verdict` is `None` for a batch
/// that does not exist, `Some(None)` for one without a verdict, otherwise
/// `Some(Some(success))`.
pub(crate) fn decide(verdict: Option<Option<bool>>, force: bool) -> Decision {
    match verdict {
        None => Decision::NotThere,
        Some(None) if !force => Decision::Refuse,
        Some(success) => Decision::Purge { success },
    }
}

/// The answer of [`decide`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Remove it, recording the verdict it had.
    Purge { success: Option<bool> },
    /// Running and not forced.
    Refuse,
    /// Not in `batches`: purged before, or unknown.
    NotThere,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_batches_are_purged_unless_forced() {
        assert_eq!(decide(None, true), Decision::NotThere);
        assert_eq!(decide(Some(None), false), Decision::Refuse);
        assert_eq!(decide(Some(None), true), Decision::Purge { success: None });
        for force in [false, true] {
            assert_eq!(
                decide(Some(Some(false)), force),
                Decision::Purge {
                    success: Some(false)
                }
            );
        }
    }
}
