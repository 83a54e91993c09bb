//! The embedded mode end to end: the demo's whole path (submit, aggregator
//! crash, duplicate injection, rebuild from CSV, verdicts) in one process.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pipeline::demo::{DemoConfig, run};
use pipeline::verifier::LineSink;
use workload::WorkloadSpec;

fn config(dir: &std::path::Path, workload: WorkloadSpec) -> DemoConfig {
    DemoConfig {
        dir: dir.join("demo"),
        batches: 3,
        runs: 3_000,
        chunk_size: 100,
        workload,
        concurrency: 2,
        duplicates: 6,
        timeout: Duration::from_secs(120),
    }
}

fn sink() -> (LineSink, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let l = lines.clone();
    (
        Arc::new(move |line: &str| {
            if let Ok(mut v) = l.lock() {
                v.push(line.to_string());
            }
            Ok(())
        }),
        lines,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_crashes_the_aggregator_rebuilds_and_every_batch_succeeds() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, printed) = sink();
    let (story, told) = self::sink();
    let report = run(
        config(tmp.path(), WorkloadSpec::bingo_default()),
        sink,
        story,
    )
    .await
    .unwrap();

    assert_eq!(report.batches, 3);
    assert!(report.all_succeeded(), "{report}\n{:?}", report.lines);
    let printed = printed.lock().unwrap().clone();
    assert_eq!(printed.len(), 3, "one line per batch: {printed:?}");
    assert!(
        printed
            .iter()
            .all(|l| l.starts_with("SUCCESS [demo-") && l.contains("runs=3000 chunks=30"))
    );
    // The aggregator really crashed mid-way and rebuilt from its files.
    assert!(
        report.applied_before_crash > 0 && report.applied_before_crash < 90,
        "{report}"
    );
    assert_eq!(report.duplicates_injected, 6);
    assert!(report.duplicates_dropped >= 6, "{report}");
    // The story, in a few plain lines: submit, crash, duplicates; then the
    // report's rebuild and outcome.
    let told = told.lock().unwrap().clone();
    assert_eq!(told.len(), 3, "{told:?}");
    assert_eq!(told[0], "submitted 3 batches: 90 chunks of up to 100 runs");
    assert!(
        told[1].starts_with(&format!(
            "crashed the aggregator after it applied {} chunk results",
            report.applied_before_crash
        )),
        "{told:?}"
    );
    assert!(told[2].starts_with("delivered 6 chunk results a second time"));
    let end = report.to_string();
    assert_eq!(end.lines().count(), 2, "{end}");
    assert!(end.ends_with(&format!(
        "3 of 3 batches SUCCESS: 9000 runs in {:.2} s ({:.0} runs/s)",
        report.elapsed.as_secs_f64(),
        report.runs_per_s()
    )));
    // State files of finished batches are gone; tombstones remain, each in
    // its batch's partition directory.
    let agg = tmp.path().join("demo/aggregator");
    let (mut csvs, mut tombstones) = (0, 0);
    for dir in std::fs::read_dir(&agg).unwrap() {
        let dir = dir.unwrap().path();
        assert!(dir.is_dir(), "only partition directories: {dir:?}");
        csvs += std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "csv")
            })
            .count();
        tombstones += stateful_worker::inspect_tombstones(&dir).unwrap().len();
    }
    assert_eq!(csvs, 0, "every batch was finalized and its CSV deleted");
    assert_eq!(tombstones, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_runs_the_sum_workload_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (sink, _) = sink();
    let (story, _) = self::sink();
    let report = run(config(tmp.path(), WorkloadSpec::Sum), sink, story)
        .await
        .unwrap();
    assert!(report.all_succeeded(), "{report}");
    assert_eq!(report.runs, 9_000);
}
