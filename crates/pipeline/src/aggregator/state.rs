//! The aggregator's per-batch state: the row it appends to a batch's CSV
//! log ([`ChunkRow`]) and the state those rows fold into ([`BatchState`]).
//! `docs/architecture.md` shows a row as it stands on disk.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use stateful_worker::KeyedState;
use workload::Summary;

use crate::messages::ResultMsg;

/// One row of a batch's state file: a chunk result, or the record that a
/// duplicate delivery of chunk `chunk` was dropped. Duplicates are recorded
/// (and fsynced with the window) so `duplicates_dropped` survives restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChunkRow {
    /// `true` for a dropped-duplicate record (no summary).
    pub duplicate: bool,
    pub chunk: i32,
    pub chunks: i32,
    pub runs_total: i64,
    pub runs: i64,
    pub name: String,
    /// The chunk's summary; in the CSV, its JSON in one column (empty for
    /// a duplicate record). Parsed once per row: when the message is
    /// decoded, or when the row is read back at a rebuild.
    #[serde(with = "json_column")]
    pub summary: Option<Summary>,
}

impl From<ResultMsg> for ChunkRow {
    fn from(msg: ResultMsg) -> Self {
        ChunkRow {
            duplicate: false,
            chunk: msg.chunk,
            chunks: msg.chunks,
            runs_total: msg.runs_total,
            runs: msg.runs,
            name: msg.name,
            summary: Some(msg.summary),
        }
    }
}

impl ChunkRow {
    /// The record that a duplicate delivery of `msg` was dropped.
    pub fn duplicate_of(msg: &ResultMsg) -> Self {
        ChunkRow {
            duplicate: true,
            chunk: msg.chunk,
            chunks: msg.chunks,
            runs_total: msg.runs_total,
            runs: 0,
            name: msg.name.clone(),
            summary: None,
        }
    }
}

/// The per-batch state: which chunks are in and their merged summary.
#[derive(Debug, Default)]
pub struct BatchState {
    pub name: String,
    pub chunks_total: i32,
    pub runs_total: i64,
    pub runs: i64,
    pub chunks_seen: BTreeSet<i32>,
    pub summary: Option<Summary>,
    /// Duplicate deliveries dropped for this batch, across restarts.
    pub duplicates_dropped: u64,
    /// Rows that could not be folded (should never happen: rows are
    /// validated before they are appended). A batch with such rows is never
    /// ready, so the sweeper's re-publish or FAILURE path takes over.
    pub unfoldable: u64,
}

impl KeyedState for BatchState {
    type Row = ChunkRow;

    fn apply(&mut self, row: &ChunkRow) {
        if row.duplicate {
            self.duplicates_dropped += 1;
            return;
        }
        if self.chunks_seen.contains(&row.chunk) {
            return;
        }
        let folded = match (&row.summary, &mut self.summary) {
            (None, _) => Err("a chunk row without its summary".to_owned()),
            (Some(s), None) => {
                self.summary = Some(s.clone());
                Ok(())
            }
            (Some(s), Some(acc)) => acc.merge(s).map_err(|e| e.to_string()),
        };
        if let Err(e) = folded {
            tracing::error!(chunk = row.chunk, error = %e, "state row could not be folded");
            self.unfoldable += 1;
            return;
        }
        self.chunks_seen.insert(row.chunk);
        self.name.clone_from(&row.name);
        self.chunks_total = row.chunks;
        self.runs_total = row.runs_total;
        self.runs += row.runs;
    }

    fn is_ready(&self) -> bool {
        self.chunks_total > 0
            && self.unfoldable == 0
            && self.chunks_seen.len() == self.chunks_total as usize
            && self.runs == self.runs_total
    }
}

/// A summary as its JSON in one CSV column; empty for none.
mod json_column {
    use serde::de::Error as _;
    use serde::ser::Error as _;
    use serde::{Deserialize, Deserializer, Serializer};
    use workload::Summary;

    pub fn serialize<S: Serializer>(value: &Option<Summary>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            None => s.serialize_str(""),
            Some(summary) => {
                let json = serde_json::to_string(summary).map_err(S::Error::custom)?;
                s.serialize_str(&json)
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Summary>, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(None);
        }
        serde_json::from_str(&text)
            .map(Some)
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum_summary(values: &[i32]) -> Summary {
        let w = workload::Workload::new(&workload::WorkloadSpec::Sum).unwrap();
        let mut s = w.empty_summary();
        for v in values {
            s.add(&[*v]).unwrap();
        }
        s
    }

    fn row(chunk: i32, summary: Option<Summary>) -> ChunkRow {
        ChunkRow {
            duplicate: summary.is_none(),
            chunk,
            chunks: 2,
            runs_total: 3,
            runs: summary.as_ref().map_or(0, |s| s.runs() as i64),
            name: "b".into(),
            summary,
        }
    }

    #[test]
    fn rows_fold_once_per_chunk_and_count_duplicates() {
        let mut state = BatchState::default();
        state.apply(&row(0, Some(sum_summary(&[1, 2]))));
        state.apply(&row(0, Some(sum_summary(&[1, 2]))));
        assert!(!state.is_ready());
        state.apply(&row(1, None));
        state.apply(&row(1, Some(sum_summary(&[3]))));
        assert!(state.is_ready());
        assert_eq!(state.runs, 3);
        assert_eq!(state.duplicates_dropped, 1);
        assert_eq!(state.summary, Some(sum_summary(&[1, 2, 3])));
    }

    #[test]
    fn a_row_round_trips_through_one_csv_line() {
        let r = row(1, Some(sum_summary(&[4, 5])));
        let mut out = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(Vec::new());
        out.serialize(&r).unwrap();
        let line = out.into_inner().unwrap();
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let back: ChunkRow = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(line.as_slice())
            .deserialize()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(back, r);
    }
}
