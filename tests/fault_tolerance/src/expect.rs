//! Aggregates computed directly in the test process from (workload, seed,
//! runs), independently of the pipeline, to compare with the stored
//! `batch_results.result`.

use workload::{Summary, Workload, WorkloadSpec};

/// The summary of runs `0..runs` of `spec` seeded `seed`.
pub fn expected_summary(spec: &WorkloadSpec, seed: i64, runs: u64) -> Summary {
    let workload = Workload::new(spec).expect("the workload compiles");
    let mut scratch = workload.scratch();
    let mut summary = workload.empty_summary();
    let mut values = Vec::new();
    // In slices, so the row buffer stays small for big batches.
    let mut first = 0;
    while first < runs {
        let n = (runs - first).min(1000);
        values.clear();
        workload.run_range(
            seed as u64,
            first,
            n,
            &mut scratch,
            &mut values,
            &mut summary,
        );
        first += n;
    }
    summary
}
