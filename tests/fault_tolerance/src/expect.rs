//! Aggregates computed directly in the test process from (workload, seed,
//! runs), independently of the pipeline, to compare with the stored
//! `batch_results.result`; and an event that makes ties common.

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

/// Spring League, one hour long, its second team a twin of the first:
/// about a quarter of the runs end level, so ties are counted by the
/// thousand (the tie drill and the browser test).
pub fn twins_event(name: &str) -> workload::Event {
    let mut event = workload::Event::spring_league();
    event.name = name.into();
    event.duration_seconds = 3600;
    let mut twin = event.teams[0].clone();
    twin.name = "Twin".into();
    event.teams[1] = twin;
    event
}
