//! The limit: the same batch simulated in this process, chunk by chunk
//! exactly as an executor does it ([`pipeline::executor::simulate`]), with no
//! broker and no database, on 1 thread and on all cores.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use workload::{Summary, Workload, WorkloadSpec};

use crate::error::{Error, Result};

/// One in-process measurement.
#[derive(Clone, Debug, Serialize)]
pub struct LimitResult {
    pub workload: String,
    pub runs: i64,
    pub chunk_size: i32,
    pub threads: usize,
    pub wall_s: f64,
    pub runs_per_s: f64,
    /// On-CPU time of the simulating threads (from `/proc/thread-self/schedstat`):
    /// on a shared machine the wall time also holds time spent waiting for a core.
    pub cpu_s: Option<f64>,
    pub cpu_us_per_run: Option<f64>,
    /// Share of the machine busy just before (when the bench waited for quiet).
    pub busy_before: Option<f64>,
    /// Measured again right after the end-to-end run, so that `efficiency`
    /// compares against the machine's speed at both ends of it.
    pub after_e2e: bool,
    /// The batch's aggregate, to check the pipeline computed the same thing.
    #[serde(skip)]
    pub summary: Summary,
}

/// Simulates runs `[0, runs)` of `spec` seeded `seed` on `threads` threads,
/// which take chunks of `chunk_size` runs from a shared counter.
pub fn measure(
    spec: &WorkloadSpec,
    seed: i64,
    runs: i64,
    chunk_size: i32,
    threads: usize,
) -> Result<LimitResult> {
    let workload = Workload::new(spec)?;
    let threads = threads.max(1);
    let chunk = i64::from(chunk_size.max(1));
    let next = AtomicI64::new(0);
    // The store keeps the seed as i64; executors reinterpret it the same way.
    let seed = seed as u64;
    let start = Instant::now();
    let parts: Vec<(Summary, Option<u64>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let cpu0 = thread_cpu_ns();
                    let mut total = workload.empty_summary();
                    loop {
                        let first = next.fetch_add(chunk, Ordering::Relaxed);
                        if first >= runs {
                            break;
                        }
                        let n = chunk.min(runs - first);
                        let (_rows, summary) =
                            pipeline::executor::simulate(&workload, seed, first, n, Duration::ZERO);
                        // Same-workload summaries always merge.
                        let _ = total.merge(&summary);
                    }
                    let cpu = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
                    (total, cpu)
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    let wall_s = start.elapsed().as_secs_f64();
    if parts.len() != threads {
        return Err(Error::Panicked("a simulation thread"));
    }
    let mut summary = workload.empty_summary();
    let mut cpu_ns = Some(0u64);
    for (part, cpu) in &parts {
        summary.merge(part)?;
        cpu_ns = cpu_ns.zip(*cpu).map(|(a, b)| a + b);
    }
    let cpu_s = cpu_ns.map(|ns| ns as f64 / 1e9).filter(|&s| s > 0.0);
    Ok(LimitResult {
        workload: workload.name().to_owned(),
        runs,
        chunk_size,
        threads,
        wall_s,
        runs_per_s: runs as f64 / wall_s.max(1e-9),
        cpu_s,
        cpu_us_per_run: cpu_s.map(|s| s * 1e6 / runs.max(1) as f64),
        busy_before: None,
        after_e2e: false,
        summary,
    })
}

/// Nanoseconds the calling thread has spent on a CPU, if the kernel says.
fn thread_cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_compute_the_same_aggregate_as_one() {
        let spec = WorkloadSpec::bingo_default();
        let one = measure(&spec, 7, 2_000, 300, 1).unwrap();
        let four = measure(&spec, 7, 2_000, 300, 4).unwrap();
        assert_eq!(one.summary, four.summary);
        assert_eq!(one.summary.runs(), 2_000);
        assert!(one.runs_per_s > 0.0 && four.runs_per_s > 0.0);
    }

    #[test]
    fn matches_a_single_run_range() {
        let spec = WorkloadSpec::Sum;
        let w = Workload::new(&spec).unwrap();
        let mut expected = w.empty_summary();
        w.run_range(
            3,
            0,
            1_001,
            &mut w.scratch(),
            &mut Vec::new(),
            &mut expected,
        );
        let got = measure(&spec, 3, 1_001, 100, 3).unwrap();
        assert_eq!(got.summary, expected);
    }
}
