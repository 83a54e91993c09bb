//! Tests that need real processes: SIGKILL at random moments while a child
//! processes and commits, and the directory lock held by another process.
//!
//! The child is this test binary run again with `SW_CHILD_MODE` set (see
//! `child_process_entry`). It prints `@@C <first> <last>` for each group of
//! stream messages only after `commit()` returned, and `@@D <key> <rows>`
//! with the rows in a key's state just before it completes the key.

// Test code: a failed unwrap is the test failing, in helpers too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use stateful_worker::{Error, KeyedState, Processed, StatefulWorkerManager};

/// Messages in the stream; each key gets `CHUNKS` of them, interleaved
/// over `KEYS_AT_ONCE` keys.
const MESSAGES: u64 = 2016;
const CHUNKS: u64 = 6;
const KEYS_AT_ONCE: u64 = 4;
const KILL_ROUNDS: usize = 200;
// Every key must get all of its chunks.
const _: () = assert!(MESSAGES.is_multiple_of(CHUNKS * KEYS_AT_ONCE));
/// Messages the child sends again after a restart (redeliveries).
const REDELIVER: u64 = 25;

#[derive(Debug, Serialize, Deserialize)]
struct Row {
    idx: u64,
    chunk: u64,
    value: i64,
}

/// How many times each stream message was applied to this key.
#[derive(Debug, Default)]
struct Applied {
    times: BTreeMap<u64, u32>,
}

impl KeyedState for Applied {
    type Row = Row;
    fn apply(&mut self, row: &Row) {
        *self.times.entry(row.idx).or_default() += 1;
    }
    fn is_ready(&self) -> bool {
        self.times.len() as u64 == CHUNKS
    }
}

fn key_of(idx: u64) -> String {
    let group = idx / (KEYS_AT_ONCE * CHUNKS);
    format!("b{}", group * KEYS_AT_ONCE + idx % KEYS_AT_ONCE)
}

fn msgs_of(key: &str) -> BTreeSet<u64> {
    (0..MESSAGES).filter(|&i| key_of(i) == key).collect()
}

/// A small xorshift: the tests need no cryptographic randomness, only a
/// seed they can print to replay a failure.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn seed() -> u64 {
    std::env::var("SW_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            t.as_nanos() as u64 | 1
        })
}

// ---------------------------------------------------------------- child --

/// Not a test: the entry point of the child processes. Ignored so a normal
/// run skips it; the parents run it with `--ignored --exact`.
#[test]
#[ignore = "child process entry point, run by the other tests"]
fn child_process_entry() {
    let Ok(mode) = std::env::var("SW_CHILD_MODE") else {
        return;
    };
    let dir = std::env::var("SW_CHILD_DIR").unwrap();
    match mode.as_str() {
        "stream" => child_stream(Path::new(&dir)),
        "hold-lock" => child_hold_lock(Path::new(&dir)),
        other => panic!("unknown SW_CHILD_MODE {other}"),
    }
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    // The leading newline keeps our line apart from the harness's output.
    write!(out, "\n@@{line}\n").unwrap();
    out.flush().unwrap();
}

fn child_stream(dir: &Path) {
    let start: u64 = std::env::var("SW_CHILD_START").unwrap().parse().unwrap();
    let mut rng = Rng(std::env::var("SW_CHILD_SEED").unwrap().parse().unwrap());
    let (mut m, _) = StatefulWorkerManager::<Applied>::open(dir).unwrap();
    for key in m.ready_keys() {
        finalize(&mut m, &key);
    }
    let mut group_start = start;
    let mut group_len = 1 + rng.below(16);
    let mut ready = Vec::new();
    for i in start..MESSAGES {
        let key = key_of(i);
        let row = Row {
            idx: i,
            chunk: (i / KEYS_AT_ONCE) % CHUNKS,
            value: i as i64 * 3,
        };
        let outcome = m.process(&key, &format!("m{i}"), row).unwrap();
        if outcome == Processed::Applied && m.state(&key).is_some_and(Applied::is_ready) {
            ready.push(key);
        }
        if i + 1 - group_start >= group_len || i + 1 == MESSAGES {
            m.commit().unwrap();
            say(&format!("C {group_start} {i}"));
            for key in ready.drain(..) {
                finalize(&mut m, &key);
            }
            group_start = i + 1;
            group_len = 1 + rng.below(16);
        }
    }
    say("END");
}

/// Emits the key's result (like publishing an aggregate), then completes it.
fn finalize(m: &mut StatefulWorkerManager<Applied>, key: &str) {
    let Some(state) = m.state(key) else { return };
    let rows: Vec<String> = state
        .times
        .iter()
        .map(|(i, n)| format!("{i}:{n}"))
        .collect();
    say(&format!("D {key} {}", rows.join(",")));
    m.complete(key).unwrap();
}

fn child_hold_lock(dir: &Path) {
    let (_m, _) = StatefulWorkerManager::<Applied>::open(dir).unwrap();
    say("LOCKED");
    // Held until the parent kills us.
    thread::sleep(Duration::from_secs(60));
}

// --------------------------------------------------------------- parent --

fn spawn_child(mode: &str, dir: &Path, start: u64, seed: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("SW_CHILD_MODE", mode)
        .env("SW_CHILD_DIR", dir)
        .env("SW_CHILD_START", start.to_string())
        .env("SW_CHILD_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The child's `@@` lines, read on a thread until the pipe closes.
fn read_lines(child: &mut Child) -> thread::JoinHandle<Vec<String>> {
    let lines = stream_lines(child);
    thread::spawn(move || lines.into_iter().collect())
}

/// The child's `@@` lines as they come.
fn stream_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(l) = line.strip_prefix("@@")
                && tx.send(l.to_owned()).is_err()
            {
                break;
            }
        }
    });
    rx
}

/// Kills the child at a random moment: after a random number (0..=10) of
/// its commits, plus a random 0..3 ms, so the kill lands anywhere: in
/// `open`'s rebuild, between appends, inside a commit's fsyncs, inside
/// `complete`. Returns every line the child wrote before it died.
fn kill_at_random_moment(child: &mut Child, rng: &mut Rng) -> Vec<String> {
    let rx = stream_lines(child);
    let commits_before_kill = rng.below(11);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lines = Vec::new();
    let mut commits = 0;
    while commits < commits_before_kill {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                commits += u64::from(line.starts_with("C "));
                let end = line == "END";
                lines.push(line);
                if end {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    thread::sleep(Duration::from_micros(rng.below(3_000)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    lines.extend(rx.iter());
    lines
}

#[derive(Default)]
struct Observed {
    /// Stream messages `0..acked` were committed (acked).
    acked: u64,
    /// Every result emitted per key (a re-finalize after a crash repeats).
    done: BTreeMap<String, Vec<String>>,
}

impl Observed {
    fn take(&mut self, lines: &[String]) {
        for l in lines {
            let parts: Vec<&str> = l.split(' ').collect();
            match parts.as_slice() {
                ["C", first, last] => {
                    let (first, last): (u64, u64) = (first.parse().unwrap(), last.parse().unwrap());
                    assert!(
                        first <= self.acked,
                        "commit group {first}..{last} leaves a gap"
                    );
                    self.acked = self.acked.max(last + 1);
                }
                ["D", key, rows] => self
                    .done
                    .entry((*key).to_owned())
                    .or_default()
                    .push((*rows).to_owned()),
                _ => {}
            }
        }
    }
}

/// Checks the directory against what the child said before it died.
fn check(dir: &Path, seen: &Observed, seed: u64) {
    // Every emitted result holds each of its key's messages exactly once.
    for (key, results) in &seen.done {
        for rows in results {
            let got: Vec<(u64, u32)> = rows
                .split(',')
                .map(|p| {
                    let (i, n) = p.split_once(':').unwrap();
                    (i.parse().unwrap(), n.parse().unwrap())
                })
                .collect();
            let expected: Vec<(u64, u32)> = msgs_of(key).into_iter().map(|i| (i, 1)).collect();
            assert_eq!(got, expected, "seed {seed}: result of {key}");
        }
    }
    let (m, report) = StatefulWorkerManager::<Applied>::open(dir).unwrap();
    assert_eq!(
        report.corrupt, 0,
        "seed {seed}: a kill cannot corrupt a middle line"
    );
    for key in m.keys() {
        let state = m.state(&key).unwrap();
        for (idx, times) in &state.times {
            assert_eq!(*times, 1, "seed {seed}: {key} applied m{idx} {times} times");
        }
    }
    for idx in 0..seen.acked {
        let key = key_of(idx);
        if m.is_completed(&key) {
            assert!(
                seen.done.contains_key(&key),
                "seed {seed}: {key} completed without emitting a result"
            );
        } else {
            let times = m.state(&key).and_then(|s| s.times.get(&idx)).copied();
            assert_eq!(
                times,
                Some(1),
                "seed {seed}: committed m{idx} of {key} lost"
            );
        }
    }
}

#[test]
fn sigkill_at_random_moments_loses_no_committed_row_and_applies_none_twice() {
    let seed = seed();
    eprintln!("SW_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut seen = Observed::default();
    let started = Instant::now();
    let mut kills = 0;
    for _ in 0..KILL_ROUNDS {
        if seen.acked >= MESSAGES {
            break;
        }
        let start = seen.acked.saturating_sub(rng.below(REDELIVER + 1));
        let mut child = spawn_child("stream", dir.path(), start, rng.next() | 1);
        let lines = kill_at_random_moment(&mut child, &mut rng);
        kills += 1;
        seen.take(&lines);
        check(dir.path(), &seen, seed);
    }

    let acked_under_kills = seen.acked;
    assert!(kills >= 20, "seed {seed}: only {kills} kills");
    // One last run to the end of the stream, not killed.
    let start = seen.acked.saturating_sub(REDELIVER);
    let mut child = spawn_child("stream", dir.path(), start, rng.next() | 1);
    let lines = read_lines(&mut child);
    assert!(
        child.wait().unwrap().success(),
        "seed {seed}: final child failed"
    );
    let lines = lines.join().unwrap();
    assert_eq!(lines.last().map(String::as_str), Some("END"));
    seen.take(&lines);
    check(dir.path(), &seen, seed);

    assert_eq!(seen.acked, MESSAGES);
    let keys: BTreeSet<String> = (0..MESSAGES).map(key_of).collect();
    assert_eq!(seen.done.keys().cloned().collect::<BTreeSet<_>>(), keys);
    let (m, _) = StatefulWorkerManager::<Applied>::open(dir.path()).unwrap();
    assert!(m.keys().is_empty(), "seed {seed}: every key was completed");
    assert!(keys.iter().all(|k| m.is_completed(k)));
    eprintln!(
        "{kills} kills, {acked_under_kills} of {MESSAGES} messages acked before the final run, {} results, {:?}",
        seen.done.values().map(Vec::len).sum::<usize>(),
        started.elapsed()
    );
}

#[test]
fn another_process_holding_the_directory_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child("hold-lock", dir.path(), 0, 1);
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    assert!(
        lines.any(|l| l.unwrap() == "@@LOCKED"),
        "the child never took the lock"
    );

    let err = StatefulWorkerManager::<Applied>::open(dir.path()).unwrap_err();
    match &err {
        Error::Locked { lock_file, pid } => {
            assert_eq!(lock_file, &dir.path().join("LOCK"));
            assert_eq!(*pid, Some(child.id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&child.id().to_string()) && msg.contains("LOCK"),
        "{msg}"
    );

    child.kill().unwrap();
    child.wait().unwrap();
    // The lock dies with its holder.
    StatefulWorkerManager::<Applied>::open(dir.path()).unwrap();
}
