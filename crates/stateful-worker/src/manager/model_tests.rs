//! Property test: random sequences of process / duplicate / commit /
//! complete / reopen / crash / torn tail against an in-memory model of what
//! must be true.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;
use crate::test_support::{Manager, append_raw, applied, line, row};

const KEYS: [&str; 3] = ["k0", "k1", "k2"];

#[derive(Debug, Clone)]
enum Op {
    /// A message; small msg numbers make redeliveries (duplicates) common.
    Process {
        key: usize,
        msg: u32,
    },
    Commit,
    Complete {
        key: usize,
    },
    /// Drop the manager cleanly (buffered rows reach the file) and reopen.
    Reopen,
    /// Crash: buffered rows are lost. Then reopen.
    Crash,
    /// Crash, leave a torn write at the end of a key's file, reopen.
    TornTail {
        key: usize,
        keep: usize,
        crc_bad: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..KEYS.len(), 0..8u32).prop_map(|(key, msg)| Op::Process { key, msg }),
        3 => Just(Op::Commit),
        1 => (0..KEYS.len()).prop_map(|key| Op::Complete { key }),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
        1 => (0..KEYS.len(), 0..40usize, any::<bool>())
            .prop_map(|(key, keep, crc_bad)| Op::TornTail { key, keep, crc_bad }),
    ]
}

/// What must be true. Rows carry their msg number as the tag.
#[derive(Debug, Default)]
struct Model {
    /// Rows of live keys in file order: committed, then uncommitted.
    committed: BTreeMap<usize, Vec<u32>>,
    pending: BTreeMap<usize, Vec<u32>>,
    completed: BTreeSet<usize>,
    /// Duplicates dropped since the last open.
    duplicates: BTreeMap<usize, u64>,
}

impl Model {
    fn rows(&self, key: usize) -> Vec<u32> {
        let mut rows = self.committed.get(&key).cloned().unwrap_or_default();
        rows.extend(self.pending.get(&key).into_iter().flatten());
        rows
    }

    fn commit(&mut self) {
        for (key, rows) in std::mem::take(&mut self.pending) {
            self.committed.entry(key).or_default().extend(rows);
        }
    }

    fn reopened(&mut self) {
        self.duplicates.clear();
    }
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let mut mgr = Some(Manager::open(dir.path()).unwrap().0);
    let mut model = Model::default();
    for op in ops {
        let Some(m) = mgr.as_mut() else {
            unreachable!()
        };
        match op {
            Op::Process { key, msg } => {
                let got = m.process(KEYS[key], &format!("m{msg}"), row(msg)).unwrap();
                let expected = if model.completed.contains(&key) {
                    Processed::AlreadyCompleted
                } else if model.rows(key).contains(&msg) {
                    *model.duplicates.entry(key).or_default() += 1;
                    Processed::Duplicate
                } else {
                    model.pending.entry(key).or_default().push(msg);
                    Processed::Applied
                };
                prop_assert_eq!(got, expected);
            }
            Op::Commit => {
                m.commit().unwrap();
                model.commit();
            }
            Op::Complete { key } => {
                m.complete(KEYS[key]).unwrap();
                model.commit();
                model.completed.insert(key);
                model.committed.remove(&key);
                model.duplicates.remove(&key);
                prop_assert!(!data_path(dir.path(), KEYS[key]).exists());
            }
            Op::Reopen => {
                drop(mgr.take());
                model.commit();
                model.reopened();
                let (m, report) = Manager::open(dir.path()).unwrap();
                prop_assert_eq!(report.truncated + report.corrupt + report.duplicates, 0);
                mgr = Some(m);
            }
            Op::Crash => {
                if let Some(m) = mgr.take() {
                    m.crash();
                }
                model.pending.clear();
                model.reopened();
                mgr = Some(Manager::open(dir.path()).unwrap().0);
            }
            Op::TornTail { key, keep, crc_bad } => {
                if let Some(m) = mgr.take() {
                    m.crash();
                }
                model.pending.clear();
                model.reopened();
                let path = data_path(dir.path(), KEYS[key]);
                let exists = path.exists();
                if exists {
                    // A write that reached the disk only in part: a prefix
                    // with no newline, or a whole line that fails its CRC.
                    let mut torn = line("m99", 99);
                    if crc_bad {
                        torn[1] = b'X';
                    } else {
                        torn.truncate(keep.min(torn.len() - 1).max(1));
                    }
                    append_raw(&path, &torn);
                }
                let (m, report) = Manager::open(dir.path()).unwrap();
                prop_assert_eq!(report.truncated, u64::from(exists));
                prop_assert_eq!(report.corrupt, 0);
                mgr = Some(m);
            }
        }

        let Some(m) = mgr.as_ref() else {
            unreachable!()
        };
        for (key, name) in KEYS.iter().enumerate() {
            prop_assert_eq!(m.is_completed(name), model.completed.contains(&key));
            prop_assert_eq!(applied(m, name), model.rows(key), "key {}", name);
            prop_assert_eq!(
                m.duplicates(name),
                model.duplicates.get(&key).copied().unwrap_or(0)
            );
            if model.completed.contains(&key) {
                prop_assert!(m.state(name).is_none());
                prop_assert!(!data_path(dir.path(), name).exists());
            }
        }
        let ready: Vec<String> = KEYS
            .iter()
            .enumerate()
            .filter(|&(k, _)| !model.completed.contains(&k) && model.rows(k).len() >= 3)
            .map(|(_, n)| n.to_string())
            .collect();
        prop_assert_eq!(m.ready_keys(), ready);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn the_manager_matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(ops)?;
    }
}
