//! Reading an event someone uploaded or pasted: JSON syntax and shape
//! errors with their line and column, then every validation problem the
//! workload crate finds with its location — all before anything is saved.
//! A readable, valid event becomes the workload snapshot that batches run
//! from it store (`{"kind":"bingo","event":{…}}`, as `submit` writes it).

use axum::http::StatusCode;
use serde_json::json;
use store::Uuid;
use store::catalog::NewEvent;
use workload::{Event, WorkloadSpec};

/// Why an event text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventProblem {
    /// Nothing was pasted or uploaded.
    #[error("no event: paste the event JSON or choose a file")]
    Empty,
    #[error("the event is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    /// Not JSON, or not the shape of an event: serde_json's message, and
    /// where (1-based line and column).
    #[error("line {line}, column {column}: {message}")]
    Json {
        message: String,
        line: usize,
        column: usize,
    },
    /// Well-formed, but the event cannot run; every problem with its place.
    #[error("the event has {}: {}", crate::views::format::things(problems.len(), "problem", "problems"), problems.join("; "))]
    Invalid { problems: Vec<String> },
}

impl EventProblem {
    pub fn status(&self) -> StatusCode {
        match self {
            EventProblem::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            EventProblem::Empty | EventProblem::Json { .. } => StatusCode::BAD_REQUEST,
            EventProblem::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }

    /// Adds the machine-readable details to an API error object.
    pub fn add_details(&self, body: &mut serde_json::Value) {
        match self {
            EventProblem::Json { line, column, .. } => {
                body["line"] = json!(line);
                body["column"] = json!(column);
            }
            EventProblem::Invalid { problems } => body["problems"] = json!(problems),
            EventProblem::TooLarge { limit, .. } => body["limit_bytes"] = json!(limit),
            EventProblem::Empty => {}
        }
    }
}

/// A readable, valid event.
#[derive(Clone, Debug)]
pub struct CheckedEvent {
    pub event: Event,
    /// The snapshot batches run from it store.
    pub workload: String,
}

impl CheckedEvent {
    /// The row that saves it.
    pub fn to_new(&self) -> NewEvent {
        NewEvent {
            id: Uuid::new_v4(),
            name: self.event.name.clone(),
            workload: self.workload.clone(),
            teams: i32::try_from(self.event.teams.len()).unwrap_or(i32::MAX),
            rows: i32::try_from(self.event.rows.len()).unwrap_or(i32::MAX),
        }
    }
}

/// Parses and validates an event text of at most `limit` bytes.
pub fn check(text: &[u8], limit: usize) -> Result<CheckedEvent, EventProblem> {
    if text.len() > limit {
        return Err(EventProblem::TooLarge {
            bytes: text.len(),
            limit,
        });
    }
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(EventProblem::Empty);
    }
    let event: Event = crate::body::parse(text).map_err(|s| EventProblem::Json {
        message: s.message,
        line: s.line,
        column: s.column,
    })?;
    let spec = WorkloadSpec::Bingo { event };
    if let Err(e) = workload::Workload::new(&spec) {
        return Err(match e {
            workload::Error::InvalidEvent { problems } => EventProblem::Invalid { problems },
            other => EventProblem::Invalid {
                problems: vec![other.to_string()],
            },
        });
    }
    let workload = serde_json::to_string(&spec).map_err(|e| EventProblem::Invalid {
        problems: vec![format!("the event cannot be written back as JSON: {e}")],
    })?;
    let WorkloadSpec::Bingo { event } = spec else {
        unreachable!("built as bingo above");
    };
    Ok(CheckedEvent { event, workload })
}

/// The event inside a stored snapshot, if it is a bingo one.
pub fn event_of(workload: &str) -> Option<Event> {
    match serde_json::from_str::<WorkloadSpec>(workload).ok()? {
        WorkloadSpec::Bingo { event } => Some(event),
        WorkloadSpec::Sum => None,
    }
}

/// The line `line` (1-based) of `text`, for showing where a JSON error is.
pub fn line_of(text: &str, line: usize) -> Option<&str> {
    text.lines().nth(line.checked_sub(1)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spring() -> String {
        serde_json::to_string_pretty(&Event::spring_league()).unwrap()
    }

    #[test]
    fn a_valid_event_becomes_the_snapshot_submit_stores() {
        let checked = check(spring().as_bytes(), 1 << 20).unwrap();
        let expected = serde_json::to_string(&WorkloadSpec::bingo_default()).unwrap();
        assert_eq!(checked.workload, expected);
        let row = checked.to_new();
        assert_eq!(
            (row.name.as_str(), row.teams, row.rows),
            ("Spring League Bingo", 2, 20)
        );
    }

    #[test]
    fn malformed_json_says_where() {
        let text = "{\n  \"name\": \"x\",\n  \"start\": oops\n}";
        match check(text.as_bytes(), 1 << 20) {
            Err(EventProblem::Json {
                line,
                column,
                message,
            }) => {
                assert_eq!((line, column), (3, 12), "{message}");
                assert!(!message.contains("at line"), "{message}");
                assert_eq!(line_of(text, line), Some("  \"start\": oops"));
            }
            other => panic!("expected a JSON error, got {other:?}"),
        }
        let unknown = spring().replacen("\"name\"", "\"nmae\"", 1);
        assert!(matches!(
            check(unknown.as_bytes(), 1 << 20),
            Err(EventProblem::Json { line: 2, .. })
        ));
    }

    #[test]
    fn every_validation_problem_is_listed() {
        let mut event = Event::spring_league();
        event.unlock_threshold = 42;
        event.rows[3].tiles[1].rules[0].activity = "cox2".into();
        let text = serde_json::to_string(&event).unwrap();
        match check(text.as_bytes(), 1 << 20) {
            Err(EventProblem::Invalid { problems }) => {
                assert_eq!(problems.len(), 2, "{problems:?}");
                assert!(problems.iter().any(|p| p.starts_with("unlock_threshold")));
                assert!(problems.iter().any(|p| p.starts_with("rows[3].tiles[1]")));
            }
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn size_and_emptiness_are_checked_first() {
        let text = spring();
        assert_eq!(
            check(text.as_bytes(), 100).unwrap_err(),
            EventProblem::TooLarge {
                bytes: text.len(),
                limit: 100
            }
        );
        assert_eq!(check(b"  \n ", 100).unwrap_err(), EventProblem::Empty);
    }
}
