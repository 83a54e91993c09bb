//! [`BatchStatus`]: a batch's progress as people read it — its state word,
//! runs done, elapsed time, runs/s, retries. `batchline status` (text and
//! `--json`) and the web console's pages and `/api/batches` all show this
//! one struct, so they never disagree; [`batch_report`] names the teams of
//! an aggregate for both.

use serde::Serialize;
use store::{BatchProgress, Uuid};
use workload::{Report, Summary, Workload, WorkloadSpec};

/// Where a batch is, from the store's counts.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    #[serde(rename = "pending")]
    Pending,
    #[serde(rename = "running")]
    Running,
    /// Every chunk completed; the aggregator has not saved the aggregate yet.
    #[serde(rename = "aggregating")]
    Aggregating,
    /// Aggregated; the verifier has not recorded a verdict yet.
    #[serde(rename = "verifying")]
    Verifying,
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "FAILURE")]
    Failure,
    /// Cancelled by a person; its partial aggregate is not verified yet.
    #[serde(rename = "cancelling")]
    Cancelling,
    /// Cancelled, and what was done checked out (runs done exactly once).
    #[serde(rename = "CANCELLED")]
    Cancelled,
}

impl State {
    pub fn of(p: &BatchProgress) -> State {
        match p.verdict {
            Some(true) if p.cancelled => State::Cancelled,
            Some(true) => State::Success,
            Some(false) => State::Failure,
            None if p.cancelled => State::Cancelling,
            None if p.aggregated => State::Verifying,
            None if p.completed == p.chunks => State::Aggregating,
            None if p.completed + p.running + p.failed > 0 => State::Running,
            None => State::Pending,
        }
    }

    /// The word `status` prints (the same as in JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Running => "running",
            State::Aggregating => "aggregating",
            State::Verifying => "verifying",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
            State::Cancelling => "cancelling",
            State::Cancelled => "CANCELLED",
        }
    }

    /// A verdict was recorded: nothing about the batch changes any more.
    pub fn is_final(self) -> bool {
        matches!(self, State::Success | State::Failure | State::Cancelled)
    }
}

/// One batch as `status --json` prints it.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BatchStatus {
    pub batch_id: Uuid,
    pub name: String,
    pub runs: i64,
    pub chunks: i32,
    pub pending: i32,
    pub running: i32,
    pub completed: i32,
    pub failed: i32,
    /// Claims over all chunks.
    pub attempts: i64,
    /// Claims beyond the first of each chunk claimed so far.
    pub retries: i64,
    pub aggregated: bool,
    pub state: State,
    /// Why it failed; `None` without a verdict or for SUCCESS.
    pub reason: Option<String>,
    /// Runs of the completed chunks.
    pub runs_done: i64,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
    pub finished_at: Option<f64>,
    /// From creation to the verdict, or to now.
    pub elapsed_s: f64,
    /// `runs_done / elapsed_s`.
    pub runs_per_s: f64,
}

impl BatchStatus {
    /// The status of `p` at `now` (seconds since the Unix epoch).
    pub fn new(p: &BatchProgress, now: f64) -> BatchStatus {
        let elapsed_s = (p.finished_at.unwrap_or(now) - p.created_at).max(0.0);
        let per_chunk = p.runs as f64 / f64::from(p.chunks.max(1));
        let runs_done = ((f64::from(p.completed) * per_chunk) as i64).min(p.runs);
        BatchStatus {
            batch_id: p.id,
            name: p.name.clone(),
            runs: p.runs,
            chunks: p.chunks,
            pending: p.pending,
            running: p.running,
            completed: p.completed,
            failed: p.failed,
            attempts: p.attempts,
            retries: p.retries,
            aggregated: p.aggregated,
            state: State::of(p),
            reason: p.reason.clone(),
            runs_done,
            created_at: p.created_at,
            finished_at: p.finished_at,
            elapsed_s,
            runs_per_s: runs_done as f64 / elapsed_s.max(1e-3),
        }
    }

    /// A person cancelled it (its verdict may still be on the way).
    pub fn cancelled(&self) -> bool {
        matches!(self.state, State::Cancelling | State::Cancelled)
    }

    /// Share of chunks completed, 0 to 1.
    pub fn done_fraction(&self) -> f64 {
        f64::from(self.completed) / f64::from(self.chunks.max(1))
    }
}

/// The report of a batch's aggregate with its teams' names, which come from
/// the batch's workload snapshot (summaries carry only counts). An
/// unreadable snapshot gives the report with numbered teams.
pub fn batch_report(workload_json: &str, summary: &Summary) -> Report {
    serde_json::from_str::<WorkloadSpec>(workload_json)
        .ok()
        .and_then(|spec| Workload::new(&spec).ok())
        .map(|w| w.report(summary))
        .unwrap_or_else(|| summary.report())
}

/// At most `n` characters of `s`, the last one `…` when cut (names in
/// narrow columns and chart labels).
pub fn ellipsis(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress() -> BatchProgress {
        BatchProgress {
            id: Uuid::nil(),
            name: "b".into(),
            runs: 1_000,
            chunks: 4,
            pending: 1,
            running: 1,
            completed: 2,
            failed: 0,
            attempts: 5,
            retries: 2,
            aggregated: false,
            verdict: None,
            reason: None,
            created_at: 100.0,
            finished_at: None,
            cancelled: false,
        }
    }

    #[test]
    fn status_follows_the_counts() {
        let p = progress();
        let s = BatchStatus::new(&p, 110.0);
        assert_eq!(s.state, State::Running);
        assert_eq!((s.runs_done, s.retries), (500, 2));
        assert_eq!((s.elapsed_s, s.runs_per_s), (10.0, 50.0));
        assert_eq!(s.done_fraction(), 0.5);

        let done = BatchProgress {
            pending: 0,
            running: 0,
            completed: 4,
            aggregated: true,
            verdict: Some(false),
            reason: Some("chunk 3 failed".into()),
            finished_at: Some(104.0),
            ..p
        };
        let s = BatchStatus::new(&done, 999.0);
        assert_eq!(s.state, State::Failure);
        assert!(s.state.is_final());
        assert_eq!((s.runs_done, s.elapsed_s), (1_000, 4.0));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["state"], "FAILURE");
        assert_eq!(json["reason"], "chunk 3 failed");
    }

    #[test]
    fn long_names_are_cut_with_an_ellipsis() {
        assert_eq!(ellipsis("short", 5), "short");
        assert_eq!(ellipsis("longer name", 5), "long…");
        assert_eq!(ellipsis("ääääää", 3), "ää…");
    }

    #[test]
    fn states_before_the_verdict() {
        let p = BatchProgress {
            pending: 4,
            running: 0,
            completed: 0,
            ..progress()
        };
        assert_eq!(State::of(&p), State::Pending);
        let all = BatchProgress {
            pending: 0,
            running: 0,
            completed: 4,
            ..progress()
        };
        assert_eq!(State::of(&all), State::Aggregating);
        let aggregated = BatchProgress {
            aggregated: true,
            ..all
        };
        assert_eq!(State::of(&aggregated).as_str(), "verifying");
        let cancelling = BatchProgress {
            cancelled: true,
            ..progress()
        };
        assert_eq!(State::of(&cancelling), State::Cancelling);
        assert!(!State::of(&cancelling).is_final());
        let cancelled = BatchProgress {
            verdict: Some(true),
            ..cancelling
        };
        assert_eq!(State::of(&cancelled).as_str(), "CANCELLED");
        assert!(State::of(&cancelled).is_final());
    }
}
