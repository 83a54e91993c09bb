//! Throughput of process+commit at several commit intervals, and rebuild
//! time for 100,000 rows across 1,000 keys. Prints a table; run with
//! `cargo bench -p stateful-worker`. The state directory is a temp dir
//! (under `$SW_BENCH_DIR` if set): put it on the disk you care about.

// Test code: a failed unwrap is the test failing, in helpers too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use stateful_worker::{KeyedState, StatefulWorkerManager};

#[derive(Serialize, Deserialize)]
struct Chunk {
    chunk_number: u32,
    value: i64,
}

#[derive(Default)]
struct ClientSum {
    chunks: u64,
    sum: i64,
}

impl KeyedState for ClientSum {
    type Row = Chunk;
    fn apply(&mut self, row: &Chunk) {
        self.chunks += 1;
        self.sum += row.value;
    }
    fn is_ready(&self) -> bool {
        false
    }
}

type Manager = StatefulWorkerManager<ClientSum>;

fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("SW_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).unwrap(),
        None => tempfile::tempdir().unwrap(),
    }
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("0b6f3a1e-8c4d-4f1a-9d7e-{i:012}"))
        .collect()
}

/// Rows per second for `rows` rows over `nkeys` keys, committing every
/// `every` rows (0: never, to see the CPU cost alone).
fn process_and_commit(rows: usize, nkeys: usize, every: usize) -> f64 {
    let dir = temp_dir();
    let (mut m, _) = Manager::open(dir.path()).unwrap();
    let keys = keys(nkeys);
    let msg_ids: Vec<String> = (0..rows).map(|i| format!("msg-{i:010}")).collect();
    let start = Instant::now();
    for (i, msg_id) in msg_ids.iter().enumerate() {
        let row = Chunk {
            chunk_number: i as u32,
            value: i as i64 * 7,
        };
        m.process(&keys[i % nkeys], msg_id, row).unwrap();
        if every > 0 && (i + 1) % every == 0 {
            m.commit().unwrap();
        }
    }
    m.commit().unwrap();
    let elapsed = start.elapsed();
    black_box(m.state(&keys[0]).map(|s| s.sum));
    rows as f64 / elapsed.as_secs_f64()
}

fn write_rebuild_fixture(dir: &Path, rows: usize, nkeys: usize) {
    let (mut m, _) = Manager::open(dir).unwrap();
    m.set_max_open_files(nkeys);
    let keys = keys(nkeys);
    for i in 0..rows {
        let row = Chunk {
            chunk_number: (i / nkeys) as u32,
            value: i as i64,
        };
        m.process(&keys[i % nkeys], &format!("msg-{i:010}"), row)
            .unwrap();
    }
    m.commit().unwrap();
}

fn main() {
    // `cargo test --benches` runs this too: keep that quick.
    if std::env::args().any(|a| a == "--test") {
        let rate = process_and_commit(2_000, 4, 64);
        println!("smoke: {rate:.0} rows/s");
        return;
    }
    println!(
        "process + commit (fsync on {})",
        temp_dir().path().display()
    );
    println!(
        "{:>14} {:>6} {:>9} {:>12} {:>24}",
        "commit every", "keys", "rows", "rows/s med", "rows/s min..max of 3"
    );
    for (every, nkeys, rows) in [
        (0, 1, 1_000_000),
        (1, 8, 1_000),
        (64, 1, 64_000),
        (64, 8, 64_000),
        (1_024, 1, 500_000),
        (1_024, 8, 500_000),
        (1_024, 64, 500_000),
    ] {
        // fsync latency on a shared disk varies a lot: three runs each.
        let mut rates: Vec<f64> = (0..3)
            .map(|_| process_and_commit(rows, nkeys, every))
            .collect();
        rates.sort_by(f64::total_cmp);
        let every = if every == 0 {
            "never".to_owned()
        } else {
            every.to_string()
        };
        let range = format!("{:.0}..{:.0}", rates[0], rates[2]);
        println!(
            "{every:>14} {nkeys:>6} {rows:>9} {:>12.0} {range:>24}",
            rates[1]
        );
    }

    let (rows, nkeys) = (100_000, 1_000);
    let dir = temp_dir();
    write_rebuild_fixture(dir.path(), rows, nkeys);
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        let (m, report) = Manager::open(dir.path()).unwrap();
        times.push(start.elapsed());
        assert_eq!((report.rows, report.keys), (rows as u64, nkeys));
        drop(m);
    }
    times.sort();
    println!(
        "rebuild {rows} rows across {nkeys} keys (page cache warm): min {:.1?}, median {:.1?}, max {:.1?}",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    );
}
