//! The crate's one error type. None of these is worth retrying: each is a
//! bad event, a bad outcome row or a summary of another shape, so callers
//! dead-letter or report rather than retry.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read event file {}: {source}", path.display())]
    ReadEvent {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("event file {} is not valid event JSON: {source}", path.display())]
    ParseEvent {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// Every problem found, each prefixed with where it is, e.g.
    /// `rows[3].tiles[2].rules[0]: activity "zulrahh" is not defined`.
    #[error("invalid event: {}", problems.join("; "))]
    InvalidEvent { problems: Vec<String> },
    #[error("outcome row has {got} values, this workload's rows have {expected}")]
    OutcomeWidth { expected: usize, got: usize },
    #[error("outcome row value {field} = {value} is outside {min}..={max}")]
    OutcomeRange {
        field: String,
        value: i32,
        min: i64,
        max: i64,
    },
    #[error("outcome row names team {winner} the winner, but {reason}")]
    WrongWinner { winner: i32, reason: String },
    #[error("summaries have different shapes: {ours} vs {theirs}")]
    ShapeMismatch { ours: String, theirs: String },
    #[error("summary is inconsistent: {0}")]
    InvalidSummary(String),
    #[error("summary counter overflowed")]
    Overflow,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
