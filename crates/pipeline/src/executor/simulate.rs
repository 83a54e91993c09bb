//! The runs of one chunk, computed on a blocking thread: the per-run rows
//! for the store and the chunk's summary for the aggregator.

use std::time::Duration;

use store::RunRows;
use workload::{Summary, Workload};

/// Simulates runs `[first_run, first_run + runs)`. `delay` sleeps after
/// each run (drills use it to make a batch last).
pub fn simulate(
    workload: &Workload,
    seed: u64,
    first_run: i64,
    runs: i64,
    delay: Duration,
) -> (RunRows, Summary) {
    let width = workload.width();
    let runs_u = runs.max(0) as u64;
    let mut scratch = workload.scratch();
    let mut values = Vec::with_capacity(width * runs_u as usize);
    let mut summary = workload.empty_summary();
    let first = first_run.max(0) as u64;
    if delay.is_zero() {
        workload.run_range(seed, first, runs_u, &mut scratch, &mut values, &mut summary);
    } else {
        for i in 0..runs_u {
            workload.run_range(seed, first + i, 1, &mut scratch, &mut values, &mut summary);
            std::thread::sleep(delay);
        }
    }
    (
        RunRows {
            first_run,
            width,
            values,
        },
        summary,
    )
}
