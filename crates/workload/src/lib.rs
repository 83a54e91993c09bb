//! workload: the simulations batchline runs, pure compute.
//!
//! A batch stores a [`WorkloadSpec`] (JSON). Every process that touches the
//! batch compiles it once into a [`Workload`] and runs simulations by
//! (batch seed, run index): the same pair gives the same outcome row on any
//! machine, forever. Runs fold into a [`Summary`], an exact integer
//! aggregate that merges in any order, and read out as a [`Report`].
//!
//! This crate knows nothing of brokers, databases or files beyond loading an
//! event file.
//!
//! # Layout
//! - `event`: the bingo event config users write (serde); `spring_league`:
//!   the built-in default event (board in `EVENT.md`).
//! - `validate`: checks an event, reporting every problem with its location.
//! - `names`: the rule for event and batch names (one length limit).
//! - `compile`: the event as flat index-based arrays, precomputed once.
//! - `strategy`: RowUnlocking / Greedy / ComboUnlocking decisions.
//! - `sim`: one bingo run, a discrete-event loop over a reusable [`Scratch`].
//! - `sum`: the numeric-chunks drill workload.
//! - `rng`: per-run seeding and sampling, version-stable.
//! - `summary`, `report`: aggregation and its presentation.

mod compile;
mod error;
pub mod event;
mod names;
mod report;
mod rng;
mod sim;
mod spring_league;
mod strategy;
mod sum;
mod summary;
#[cfg(test)]
mod testkit;
mod validate;

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use error::{Error, Result};
pub use event::Event;
pub use names::{MAX_NAME_CHARS, batch_name_problem, name_problem};
pub use report::{BingoReport, Report, Stats, SumReport, TeamReport};
pub use sim::Scratch;
pub use summary::{BingoSummary, SumSummary, Summary};

use compile::Model;

impl Event {
    /// "Spring League Bingo", the default event (docs/bingo-model.md; board in EVENT.md).
    pub fn spring_league() -> Event {
        spring_league::spring_league()
    }

    /// Checks the event, returning every problem found in one
    /// [`Error::InvalidEvent`].
    pub fn validate(&self) -> Result<()> {
        validate::validate(self)
    }

    /// Reads and validates an event JSON file.
    pub fn from_file(path: &Path) -> Result<Event> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadEvent {
            path: path.to_path_buf(),
            source,
        })?;
        let event: Event = serde_json::from_str(&text).map_err(|source| Error::ParseEvent {
            path: path.to_path_buf(),
            source,
        })?;
        event.validate()?;
        Ok(event)
    }
}

/// What a batch runs; stored with the batch as JSON
/// (`{"kind":"bingo","event":{…}}` or `{"kind":"sum"}`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WorkloadSpec {
    Bingo { event: Event },
    Sum,
}

impl WorkloadSpec {
    /// Bingo on Spring League.
    pub fn bingo_default() -> Self {
        WorkloadSpec::Bingo {
            event: Event::spring_league(),
        }
    }

    /// Bingo on the event in a JSON file, validated.
    pub fn from_event_file(path: &Path) -> Result<Self> {
        Ok(WorkloadSpec::Bingo {
            event: Event::from_file(path)?,
        })
    }

    /// `"bingo"` or `"sum"`.
    pub fn name(&self) -> &'static str {
        match self {
            WorkloadSpec::Bingo { .. } => "bingo",
            WorkloadSpec::Sum => "sum",
        }
    }
}

#[derive(Debug)]
#[expect(clippy::large_enum_variant, reason = "one per workload, behind an Arc")]
enum Compiled {
    Bingo(Model),
    Sum,
}

/// A compiled [`WorkloadSpec`]: cheap to clone (shared), `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Workload(Arc<Compiled>);

/// Everything one bingo run produced, including what the outcome row leaves
/// out (row unlock times). Allocates; for inspection, not batches.
#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct RunDetail {
    pub winner: usize,
    pub teams: Vec<TeamRun>,
}

#[derive(Serialize, Clone, Debug, PartialEq, Eq)]
pub struct TeamRun {
    pub name: String,
    pub points: u32,
    pub tiles: u32,
    pub furthest_row: u32,
    /// `row_unlocked_at[r]`: event second at which row r unlocked (row 0 at 0).
    pub row_unlocked_at: Vec<Option<u32>>,
    /// Keys (`s{points}-r{row}`) of the tiles left incomplete.
    pub open_tiles: Vec<String>,
}

impl Workload {
    /// Validates and compiles the spec.
    pub fn new(spec: &WorkloadSpec) -> Result<Self> {
        let compiled = match spec {
            WorkloadSpec::Bingo { event } => {
                event.validate()?;
                Compiled::Bingo(compile::compile(event))
            }
            WorkloadSpec::Sum => Compiled::Sum,
        };
        Ok(Workload(Arc::new(compiled)))
    }

    /// `"bingo"` or `"sum"`.
    pub fn name(&self) -> &'static str {
        match &*self.0 {
            Compiled::Bingo(_) => "bingo",
            Compiled::Sum => "sum",
        }
    }

    /// Values in one run's outcome row.
    /// bingo: `1 + 3 × teams` = `[winner_team_index, then per team: points,
    /// tiles_completed, highest_row_reached]` (row 0-based); sum: `1` = `[value]`.
    pub fn width(&self) -> usize {
        match &*self.0 {
            Compiled::Bingo(m) => 1 + 3 * m.teams.len(),
            Compiled::Sum => 1,
        }
    }

    /// Team names in outcome order; `["value"]` for sum.
    pub fn team_names(&self) -> Vec<String> {
        match &*self.0 {
            Compiled::Bingo(m) => m.team_names.clone(),
            Compiled::Sum => vec!["value".to_string()],
        }
    }

    /// Per-run buffers for [`Workload::run`]; keep one per thread and reuse it.
    pub fn scratch(&self) -> Scratch {
        match &*self.0 {
            Compiled::Bingo(m) => Scratch::for_model(m),
            Compiled::Sum => Scratch::default(),
        }
    }

    /// An aggregate of zero runs of this workload.
    pub fn empty_summary(&self) -> Summary {
        match &*self.0 {
            Compiled::Bingo(m) => {
                Summary::empty_bingo(m.teams.len(), m.rows, m.tiles.len() as u32, m.max_points)
            }
            Compiled::Sum => Summary::empty_sum(),
        }
    }

    /// `summary`'s report with this workload's team names.
    pub fn report(&self, summary: &Summary) -> Report {
        summary.report().with_team_names(&self.team_names())
    }

    /// Runs simulation `run_index` of a batch seeded `seed`, writing its
    /// outcome row into `out`. Does not allocate.
    ///
    /// # Panics
    /// If `out.len() != self.width()` (a caller bug, like a bad slice index).
    pub fn run(&self, seed: u64, run_index: u64, scratch: &mut Scratch, out: &mut [i32]) {
        assert_eq!(
            out.len(),
            self.width(),
            "outcome buffer must be width() long"
        );
        match &*self.0 {
            Compiled::Bingo(m) => {
                sim::run(m, seed, run_index, scratch);
                let (mut winner, mut best) = (0, 0);
                for k in 0..m.teams.len() {
                    let (points, tiles, row) = scratch.team_result(k);
                    if points > best {
                        (winner, best) = (k, points);
                    }
                    out[1 + 3 * k] = points as i32;
                    out[2 + 3 * k] = tiles as i32;
                    out[3 + 3 * k] = row as i32;
                }
                out[0] = winner as i32;
            }
            Compiled::Sum => out[0] = sum::value(seed, run_index),
        }
    }

    /// Runs `[first_run, first_run + runs)`, appending `width() × runs`
    /// values to `values` and folding each run into `summary`.
    ///
    /// # Panics
    /// If `summary` is not of this workload (not from [`Workload::empty_summary`]
    /// or a merge of such).
    pub fn run_range(
        &self,
        seed: u64,
        first_run: u64,
        runs: u64,
        scratch: &mut Scratch,
        values: &mut Vec<i32>,
        summary: &mut Summary,
    ) {
        let fits = match &*self.0 {
            Compiled::Bingo(m) => {
                summary.is_bingo_of(m.teams.len(), m.rows, m.tiles.len() as u32, m.max_points)
            }
            Compiled::Sum => summary.as_sum().is_some(),
        };
        assert!(
            fits,
            "run_range needs a summary of this workload, got {}",
            summary.shape()
        );
        let width = self.width();
        values.reserve(width * runs as usize);
        for i in 0..runs {
            let at = values.len();
            values.resize(at + width, 0);
            self.run(seed, first_run + i, scratch, &mut values[at..]);
            if let Err(e) = summary.add(&values[at..]) {
                // A fresh row of this workload always fits its summary.
                unreachable!(
                    "run {} produced a row its summary rejects: {e}",
                    first_run + i
                );
            }
        }
    }

    /// Runs one bingo simulation and returns all it produced; `None` for sum.
    pub fn run_detail(
        &self,
        seed: u64,
        run_index: u64,
        scratch: &mut Scratch,
    ) -> Option<RunDetail> {
        let Compiled::Bingo(m) = &*self.0 else {
            return None;
        };
        let mut out = vec![0; self.width()];
        self.run(seed, run_index, scratch, &mut out);
        let teams = (0..m.teams.len())
            .map(|k| {
                let (points, tiles, furthest_row) = scratch.team_result(k);
                TeamRun {
                    name: m.team_names[k].clone(),
                    points,
                    tiles,
                    furthest_row,
                    row_unlocked_at: scratch.unlock_times(k).collect(),
                    open_tiles: scratch
                        .open_tiles(k)
                        .map(|i| format!("s{}-r{}", m.tiles[i].points, m.tiles[i].row))
                        .collect(),
                }
            })
            .collect();
        Some(RunDetail {
            winner: out[0] as usize,
            teams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_json_round_trips_exactly() {
        let spec = WorkloadSpec::bingo_default();
        let json = serde_json::to_string(&spec).unwrap();
        assert!(
            json.starts_with(r#"{"kind":"bingo","event":{"name":"Spring League Bingo""#),
            "{}",
            &json[..80]
        );
        let back: WorkloadSpec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
        let sum: WorkloadSpec = serde_json::from_str(r#"{"kind":"sum"}"#).unwrap();
        assert_eq!(sum, WorkloadSpec::Sum);
        assert_eq!((spec.name(), sum.name()), ("bingo", "sum"));
    }

    #[test]
    fn the_shipped_event_file_is_the_builtin_event() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("events/spring-league.json");
        let spec = WorkloadSpec::from_event_file(&path).unwrap();
        assert_eq!(
            spec,
            WorkloadSpec::bingo_default(),
            "regenerate with: cargo run -p workload --example print_event > crates/workload/events/spring-league.json"
        );
    }

    #[test]
    fn event_files_fail_with_what_went_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.json");
        assert!(matches!(
            WorkloadSpec::from_event_file(&missing),
            Err(Error::ReadEvent { .. })
        ));
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, "{\"name\": ").unwrap();
        let err = WorkloadSpec::from_event_file(&broken).unwrap_err();
        assert!(matches!(err, Error::ParseEvent { .. }));
        assert!(err.to_string().contains("broken.json"), "{err}");
        let mut event = Event::spring_league();
        event.unlock_threshold = 42;
        event.rows[3].tiles[1].rules[0].activity = "cox2".into();
        let invalid = dir.path().join("invalid.json");
        std::fs::write(&invalid, serde_json::to_string(&event).unwrap()).unwrap();
        match WorkloadSpec::from_event_file(&invalid) {
            Err(Error::InvalidEvent { problems }) => assert_eq!(problems.len(), 2, "{problems:?}"),
            other => panic!("expected InvalidEvent, got {other:?}"),
        }
        // Workload::new validates specs that did not come from a file too.
        assert!(matches!(
            Workload::new(&WorkloadSpec::Bingo { event }),
            Err(Error::InvalidEvent { .. })
        ));
    }

    #[test]
    fn shapes_names_and_summaries_fit_together() {
        let bingo = Workload::new(&WorkloadSpec::bingo_default()).unwrap();
        assert_eq!((bingo.name(), bingo.width()), ("bingo", 7));
        assert_eq!(bingo.team_names(), vec!["Alpha", "Beta"]);
        let sum = Workload::new(&WorkloadSpec::Sum).unwrap();
        assert_eq!(
            (sum.name(), sum.width(), sum.team_names()),
            ("sum", 1, vec!["value".to_string()])
        );
        assert!(sum.run_detail(1, 1, &mut sum.scratch()).is_none());

        for w in [bingo, sum] {
            let mut scratch = w.scratch();
            let (mut values, mut summary) = (Vec::new(), w.empty_summary());
            w.run_range(8, 100, 30, &mut scratch, &mut values, &mut summary);
            assert_eq!(values.len(), 30 * w.width());
            // The same runs one by one, in another order, give the same rows and summary.
            let mut again = w.empty_summary();
            let mut out = vec![0; w.width()];
            for i in (0..30).rev() {
                w.run(8, 100 + i, &mut scratch, &mut out);
                assert_eq!(
                    out,
                    values[i as usize * w.width()..(i as usize + 1) * w.width()]
                );
                again.add(&out).unwrap();
            }
            assert_eq!(again, summary);
            assert_eq!(summary.runs(), 30);
            let report = w.report(&summary).to_string();
            assert!(report.contains("30"), "{report}");
        }
    }
}
