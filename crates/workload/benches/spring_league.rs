//! Single-thread cost of one Spring League run, and the batch's shape as a
//! sanity check of the model: `cargo bench -p workload`.
//! `RUNS=n` sets the number of runs (default 10,000), `SEED=s` the seed,
//! `START="fri 18:00"` moves the event's start (the default is Wed 18:00;
//! a Friday start gives the players twice the session time in the 48 h).
//!
//! Prints wall time and, on Linux, the thread's on-CPU time from
//! /proc/thread-self/schedstat: on a shared machine the wall figure includes
//! time spent waiting for a core, the CPU figure does not.

use std::time::Instant;

use workload::event::EventStart;
use workload::{Event, Workload, WorkloadSpec};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Nanoseconds this thread has spent on a CPU, if the kernel says.
fn cpu_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    stat.split_whitespace().next()?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs = env_u64("RUNS", 10_000).max(1);
    let seed = env_u64("SEED", 1);
    let mut event = Event::spring_league();
    if let Ok(start) = std::env::var("START") {
        let (day, time) = start
            .split_once(' ')
            .ok_or("START is \"day HH:MM\", e.g. \"fri 18:00\"")?;
        event.start =
            serde_json::from_value::<EventStart>(serde_json::json!({ "day": day, "time": time }))?;
    }
    println!(
        "{} from {:?} {}",
        event.name, event.start.day, event.start.time
    );
    for spec in [WorkloadSpec::Bingo { event }, WorkloadSpec::Sum] {
        let w = Workload::new(&spec)?;
        let mut scratch = w.scratch();
        let mut values = Vec::with_capacity(w.width() * runs as usize);
        let mut summary = w.empty_summary();
        // Warm up caches and the scratch buffers on runs outside the measured range.
        w.run_range(
            seed,
            runs,
            200,
            &mut scratch,
            &mut Vec::new(),
            &mut w.empty_summary(),
        );
        let (wall, cpu) = (Instant::now(), cpu_ns());
        w.run_range(seed, 0, runs, &mut scratch, &mut values, &mut summary);
        let wall = wall.elapsed().as_secs_f64();
        let cpu = cpu.zip(cpu_ns()).map(|(a, b)| (b - a) as f64 / 1e9);
        let per_run = |secs: f64| secs * 1e6 / runs as f64;
        print!(
            "{}: {runs} runs on 1 thread: wall {:.3} s = {:.2} µs/run",
            w.name(),
            wall,
            per_run(wall)
        );
        match cpu.filter(|&c| c > 0.0) {
            Some(cpu) => println!(
                ", cpu {cpu:.3} s = {:.2} µs/run ({:.0} runs/s/core)",
                per_run(cpu),
                runs as f64 / cpu
            ),
            None => println!(),
        }
        println!("{}", w.report(&summary));
    }
    Ok(())
}
