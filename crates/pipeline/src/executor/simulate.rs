//! The runs of one chunk, computed on a blocking thread: the per-run rows
//! for the store and the chunk's summary for the aggregator. A chunk whose
//! batch is cancelled stops at the next run boundary of a short block
//! ([`STOP_CHECK_RUNS`]), so no run starts long after the executor learns
//! of the cancel (docs/architecture.md, "Cancel").

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use store::RunRows;
use workload::{Summary, Workload};

/// Set once, to the cancel's time (seconds since the Unix epoch, by the
/// store's clock), when the chunk's batch is cancelled while it runs.
pub type Stop = OnceLock<f64>;

/// Runs simulated between two looks at the [`Stop`]: a bingo run takes
/// about 20 µs, so a block is well under a millisecond, and one atomic
/// load per block costs nothing next to it.
pub const STOP_CHECK_RUNS: u64 = 32;

/// What a stoppable simulation gave.
#[derive(Debug)]
pub enum Ran {
    All(RunRows, Summary),
    /// Stopped by a cancel after `runs` runs, the last one ending at `at`.
    Stopped {
        runs: u64,
        at: Instant,
    },
}

/// Simulates runs `[first_run, first_run + runs)`. `delay` sleeps after
/// each run (drills use it to make a batch last).
pub fn simulate(
    workload: &Workload,
    seed: u64,
    first_run: i64,
    runs: i64,
    delay: Duration,
) -> (RunRows, Summary) {
    match simulate_until(workload, seed, first_run, runs, delay, &Stop::new()) {
        Ran::All(rows, summary) => (rows, summary),
        // Nothing sets a stop that only this call sees.
        Ran::Stopped { .. } => (RunRows::default(), workload.empty_summary()),
    }
}

/// [`simulate`], stopping at the first run boundary after `stop` is set.
pub fn simulate_until(
    workload: &Workload,
    seed: u64,
    first_run: i64,
    runs: i64,
    delay: Duration,
    stop: &Stop,
) -> Ran {
    let width = workload.width();
    let runs_u = runs.max(0) as u64;
    let mut scratch = workload.scratch();
    let mut values = Vec::with_capacity(width * runs_u as usize);
    let mut summary = workload.empty_summary();
    let first = first_run.max(0) as u64;
    let block = if delay.is_zero() { STOP_CHECK_RUNS } else { 1 };
    let mut done = 0;
    while done < runs_u {
        if stop.get().is_some() {
            return Ran::Stopped {
                runs: done,
                at: Instant::now(),
            };
        }
        let n = block.min(runs_u - done);
        workload.run_range(
            seed,
            first + done,
            n,
            &mut scratch,
            &mut values,
            &mut summary,
        );
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        done += n;
    }
    Ran::All(
        RunRows {
            first_run,
            width,
            values,
        },
        summary,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_give_the_same_rows_as_one_range() {
        let w = Workload::new(&workload::WorkloadSpec::Sum).unwrap();
        let (rows, summary) = simulate(&w, 9, 100, 1_000, Duration::ZERO);
        let mut scratch = w.scratch();
        let (mut values, mut whole) = (Vec::new(), w.empty_summary());
        w.run_range(9, 100, 1_000, &mut scratch, &mut values, &mut whole);
        assert_eq!((rows.values, rows.first_run), (values, 100));
        assert_eq!(summary, whole);
    }

    #[test]
    fn a_set_stop_stops_before_the_next_block() {
        let w = Workload::new(&workload::WorkloadSpec::Sum).unwrap();
        let stop = Stop::new();
        let _ = stop.set(1.0);
        match simulate_until(&w, 9, 0, 1_000, Duration::ZERO, &stop) {
            Ran::Stopped { runs, .. } => assert_eq!(runs, 0),
            Ran::All(..) => panic!("ran every run after the stop was set"),
        }
    }
}
