//! Bit flips and truncations of real state files: every single-bit flip
//! is detected, only the damaged rows are lost, nothing damaged is ever
//! applied, and the repaired file opens clean the next time.

// Test code: a failed unwrap is the test failing, in helpers too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use stateful_worker::{KeyedState, StatefulWorkerManager};

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    n: u32,
    value: i64,
    note: String,
}

/// Every (n, value, note) applied, in order.
#[derive(Debug, Default)]
struct Seen {
    rows: Vec<(u32, i64, String)>,
}

impl KeyedState for Seen {
    type Row = Row;
    fn apply(&mut self, row: &Row) {
        self.rows.push((row.n, row.value, row.note.clone()));
    }
    fn is_ready(&self) -> bool {
        false
    }
}

type Manager = StatefulWorkerManager<Seen>;

fn original(n: u32) -> (u32, i64, String) {
    (n, i64::from(n) * 1000 + 7, format!("note {n}, \"q\""))
}

/// A key file with `rows` committed rows, and its bytes.
fn make_file(dir: &Path, rows: u32) -> Vec<u8> {
    let (mut m, _) = Manager::open(dir).unwrap();
    for n in 0..rows {
        let (n, value, note) = original(n);
        m.process("k", &format!("m{n}"), Row { n, value, note })
            .unwrap();
    }
    m.commit().unwrap();
    drop(m);
    fs::read(dir.join("k.csv")).unwrap()
}

fn reset(dir: &Path, file: &[u8]) {
    for e in fs::read_dir(dir).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    fs::write(dir.join("k.csv"), file).unwrap();
}

fn applied(m: &Manager) -> Vec<(u32, i64, String)> {
    m.state("k").map(|s| s.rows.clone()).unwrap_or_default()
}

/// Line index (0-based) of each byte; a line's `\n` belongs to it.
fn line_of_each_byte(bytes: &[u8]) -> Vec<usize> {
    let mut line = 0;
    bytes
        .iter()
        .map(|&b| {
            let this = line;
            if b == b'\n' {
                line += 1;
            }
            this
        })
        .collect()
}

#[test]
fn every_single_bit_flip_is_caught_and_loses_only_the_rows_it_touched() {
    const ROWS: u32 = 4;
    let work = tempfile::tempdir().unwrap();
    let clean = make_file(work.path(), ROWS);
    let lines = line_of_each_byte(&clean);
    let mut cases = 0;
    for pos in 0..clean.len() {
        // One bit per byte, rotating, plus every bit of each line break.
        let bits: Vec<u8> = if clean[pos] == b'\n' {
            (0..8).collect()
        } else {
            vec![(pos % 8) as u8]
        };
        for bit in bits {
            cases += 1;
            let mut damaged = clean.clone();
            damaged[pos] ^= 1 << bit;
            reset(work.path(), &damaged);

            let line = lines[pos] as u32;
            // Flipping a line break joins the line with the next one.
            let mut lost = BTreeSet::from([line]);
            if clean[pos] == b'\n' && line + 1 < ROWS {
                lost.insert(line + 1);
            }
            let expected: Vec<_> = (0..ROWS)
                .filter(|n| !lost.contains(n))
                .map(original)
                .collect();

            let what = format!("byte {pos} bit {bit}");
            let (m, report) = Manager::open(work.path()).unwrap();
            assert_eq!(applied(&m), expected, "{what}");
            assert!(
                report.truncated + report.corrupt >= 1,
                "{what}: not reported"
            );
            drop(m);
            let (m, report) = Manager::open(work.path()).unwrap();
            assert_eq!(
                (report.truncated, report.corrupt),
                (0, 0),
                "{what}: repair did not stick"
            );
            assert_eq!(applied(&m), expected, "{what} after repair");
        }
    }
    assert!(cases > clean.len());
}

#[test]
fn a_file_cut_at_any_length_keeps_exactly_its_whole_lines() {
    const ROWS: u32 = 3;
    let work = tempfile::tempdir().unwrap();
    let clean = make_file(work.path(), ROWS);
    let ends: Vec<usize> = clean
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .map(|(i, _)| i + 1)
        .collect();
    for cut in 0..=clean.len() {
        reset(work.path(), &clean[..cut]);
        let whole = ends.iter().filter(|&&e| e <= cut).count() as u32;
        let boundary = ends
            .iter()
            .copied()
            .filter(|&e| e <= cut)
            .max()
            .unwrap_or(0);

        let (mut m, report) = Manager::open(work.path()).unwrap();
        let expected: Vec<_> = (0..whole).map(original).collect();
        assert_eq!(applied(&m), expected, "cut {cut}");
        assert_eq!(report.truncated, u64::from(cut != boundary), "cut {cut}");
        assert_eq!(report.corrupt, 0, "cut {cut}");
        assert_eq!(
            fs::metadata(work.path().join("k.csv")).unwrap().len(),
            boundary as u64,
            "cut {cut}"
        );

        // Appending after the repair gives a clean file.
        let (n, value, note) = original(9);
        m.process("k", "m9", Row { n, value, note }).unwrap();
        m.commit().unwrap();
        drop(m);
        let (m, report) = Manager::open(work.path()).unwrap();
        assert_eq!((report.truncated, report.corrupt), (0, 0), "cut {cut}");
        let mut expected = expected;
        expected.push(original(9));
        assert_eq!(applied(&m), expected, "cut {cut}");
    }
}

#[test]
fn a_zeroed_stretch_across_lines_is_quarantined_not_applied() {
    let work = tempfile::tempdir().unwrap();
    let mut bytes = make_file(work.path(), 5);
    // A lost write-back: 40 zero bytes from the middle of line 2 on.
    let start = bytes.iter().position(|&b| b == b'\n').unwrap() + 10;
    bytes[start..start + 40].fill(0);
    reset(work.path(), &bytes);
    let (m, report) = Manager::open(work.path()).unwrap();
    let got: BTreeSet<u32> = applied(&m).iter().map(|r| r.0).collect();
    assert!(report.corrupt >= 1, "{report:?}");
    assert!(
        got.contains(&0) && got.contains(&4) && !got.contains(&1),
        "{got:?}"
    );
    for row in applied(&m) {
        assert_eq!(row, original(row.0));
    }
    let quarantine = fs::read(work.path().join("k.csv.corrupt")).unwrap();
    assert!(quarantine.starts_with(b"2,"));
}

#[test]
fn every_bit_flip_in_the_tombstone_log_loses_at_most_the_touched_tombstones() {
    let work = tempfile::tempdir().unwrap();
    let keys = ["alpha", "bravo", "charlie"];
    {
        let (mut m, _) = Manager::open(work.path()).unwrap();
        for k in keys {
            m.complete(k).unwrap();
        }
    }
    let clean = fs::read(work.path().join("tombstones.log")).unwrap();
    let lines = line_of_each_byte(&clean);
    for pos in 0..clean.len() {
        let mut damaged = clean.clone();
        damaged[pos] ^= 1 << (pos % 8);
        for e in fs::read_dir(work.path()).unwrap() {
            fs::remove_file(e.unwrap().path()).unwrap();
        }
        fs::write(work.path().join("tombstones.log"), &damaged).unwrap();

        let (m, report) = Manager::open(work.path()).unwrap();
        assert!(report.tombstone_lines_dropped >= 1, "byte {pos}");
        for (i, k) in keys.iter().enumerate() {
            let touched = i == lines[pos] || (clean[pos] == b'\n' && i == lines[pos] + 1);
            assert_eq!(m.is_completed(k), !touched, "byte {pos}: {k}");
        }
    }
}
