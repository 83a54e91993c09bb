//! The manager's rules, one test each, on real files in a temp dir.

use std::fs::{self, File, OpenOptions};

use super::*;
use crate::test_support::{Manager, Tags, append_raw, applied, file_names, line, row};
use crate::tombstones::TOMBSTONE_CORRUPT;

fn open(dir: &Path) -> (Manager, RebuildReport) {
    Manager::open(dir).unwrap()
}

#[test]
fn process_says_applied_then_duplicate_then_already_completed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    assert_eq!(m.process("k", "m1", row(1)).unwrap(), Processed::Applied);
    assert_eq!(m.process("k", "m1", row(1)).unwrap(), Processed::Duplicate);
    // The same msg_id under another key is another message.
    assert_eq!(m.process("j", "m1", row(1)).unwrap(), Processed::Applied);
    assert_eq!(m.duplicates("k"), 1);
    m.complete("k").unwrap();
    assert_eq!(
        m.process("k", "m2", row(2)).unwrap(),
        Processed::AlreadyCompleted
    );
    assert_eq!(applied(&m, "j"), vec![1]);
    assert!(m.state("k").is_none() && m.is_completed("k"));
}

#[test]
fn nothing_is_durable_until_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    m.process("k", "m1", row(1)).unwrap();
    m.commit().unwrap();
    m.process("k", "m2", row(2)).unwrap();
    assert_eq!(m.uncommitted_rows(), 1);
    m.crash();

    let (m, report) = open(dir.path());
    assert_eq!(applied(&m, "k"), vec![1]);
    assert_eq!(report.rows, 1);
    assert_eq!(m.uncommitted_rows(), 0);
}

#[test]
fn a_crash_before_the_first_commit_leaves_an_empty_key_at_most() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    m.process("k", "m1", row(1)).unwrap();
    m.crash();
    let (mut m, _) = open(dir.path());
    assert_eq!(applied(&m, "k"), Vec::<u32>::new());
    // The redelivered message is applied, not taken for a duplicate.
    assert_eq!(m.process("k", "m1", row(1)).unwrap(), Processed::Applied);
}

#[test]
fn commit_syncs_each_touched_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    for i in 0..10 {
        m.process(["a", "b", "c"][i % 3], &format!("m{i}"), row(i as u32))
            .unwrap();
    }
    m.process("a", "m0", row(0)).unwrap(); // a duplicate writes nothing
    let s = m.commit().unwrap();
    assert_eq!(
        s,
        CommitSummary {
            rows: 10,
            files_synced: 3
        }
    );
    m.process("b", "m10", row(10)).unwrap();
    assert_eq!(
        m.commit().unwrap(),
        CommitSummary {
            rows: 1,
            files_synced: 1
        }
    );
    assert_eq!(m.commit().unwrap(), CommitSummary::default());
}

#[test]
fn complete_tombstones_the_key_deletes_its_file_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    for i in 0..3 {
        m.process("k", &format!("m{i}"), row(i)).unwrap();
    }
    // complete() commits what is pending first.
    m.complete("k").unwrap();
    m.complete("k").unwrap(); // idempotent
    assert!(!data_path(dir.path(), "k").exists());
    let log = fs::read_to_string(dir.path().join(TOMBSTONE_LOG)).unwrap();
    assert_eq!(log, format!("k,{:08x}\n", crc32fast::hash(b"k")));
    drop(m);

    let (mut m, report) = open(dir.path());
    assert_eq!((report.keys, report.tombstones), (0, 1));
    assert!(m.is_completed("k"));
    assert_eq!(
        m.process("k", "m9", row(9)).unwrap(),
        Processed::AlreadyCompleted
    );
    m.commit().unwrap();
    assert_eq!(file_names(dir.path()), vec!["LOCK", TOMBSTONE_LOG]);
}

#[test]
fn a_tombstoned_keys_leftover_file_is_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    m.process("k", "m1", row(1)).unwrap();
    m.commit().unwrap();
    m.complete("k").unwrap();
    drop(m);
    // As if the crash came between the tombstone and the delete.
    append_raw(&data_path(dir.path(), "k"), &line("m1", 1));

    let (m, report) = open(dir.path());
    assert_eq!(report.leftovers_removed, 1);
    assert!(m.state("k").is_none() && m.ready_keys().is_empty());
    assert!(!data_path(dir.path(), "k").exists());
}

#[test]
fn a_tail_without_newline_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_path(dir.path(), "k");
    append_raw(&path, &line("m1", 1));
    let good_len = fs::metadata(&path).unwrap().len();
    let torn = line("m2", 2);
    append_raw(&path, &torn[..torn.len() - 4]);

    let (mut m, report) = open(dir.path());
    assert_eq!((report.truncated, report.rows), (1, 1));
    assert_eq!(report.truncated_keys, vec!["k"]);
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    // The torn message was never applied, so its redelivery is.
    assert_eq!(m.process("k", "m2", row(2)).unwrap(), Processed::Applied);
    m.commit().unwrap();
    drop(m);
    let (m, report) = open(dir.path());
    assert_eq!((report.truncated, report.rows), (0, 2));
    assert_eq!(applied(&m, "k"), vec![1, 2]);
}

#[test]
fn a_last_line_failing_its_crc_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_path(dir.path(), "k");
    append_raw(&path, &line("m1", 1));
    let good_len = fs::metadata(&path).unwrap().len();
    let mut bad = line("m2", 2);
    bad[0] = b'x';
    append_raw(&path, &bad);

    let (m, report) = open(dir.path());
    assert_eq!((report.truncated, report.corrupt, report.rows), (1, 0, 1));
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len);
    assert_eq!(applied(&m, "k"), vec![1]);
    assert!(!dir.path().join("k.csv.corrupt").exists());
}

#[test]
fn a_corrupt_line_before_the_last_is_quarantined_with_its_line_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_path(dir.path(), "k");
    let mut bad = line("m2", 2);
    bad[3] ^= 0x01;
    append_raw(&path, &line("m1", 1));
    append_raw(&path, &bad);
    append_raw(&path, &line("m3", 3));

    let (mut m, report) = open(dir.path());
    assert_eq!((report.corrupt, report.truncated, report.rows), (1, 0, 2));
    assert_eq!(
        report.quarantined,
        vec![QuarantinedLine {
            file: "k.csv".into(),
            line: 2
        }]
    );
    assert_eq!(applied(&m, "k"), vec![1, 3]);
    let quarantine = fs::read(dir.path().join("k.csv.corrupt")).unwrap();
    assert_eq!(quarantine, [b"2,".as_slice(), &bad].concat());
    let mut expected = line("m1", 1);
    expected.extend(line("m3", 3));
    assert_eq!(fs::read(&path).unwrap(), expected, "moved out of the log");
    // The lost message is not a duplicate: a re-publish refills it.
    assert_eq!(m.process("k", "m2", row(2)).unwrap(), Processed::Applied);
    m.commit().unwrap();
    drop(m);
    let (_, report) = open(dir.path());
    assert_eq!((report.corrupt, report.rows), (0, 3));
}

#[test]
fn repeated_msg_ids_in_a_file_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_path(dir.path(), "k");
    append_raw(&path, &line("m1", 1));
    append_raw(&path, &line("m1", 1));
    append_raw(&path, &line("m2", 2));
    append_raw(&path, &line("m1", 1));

    let (mut m, report) = open(dir.path());
    assert_eq!((report.rows, report.duplicates), (2, 2));
    assert_eq!(applied(&m, "k"), vec![1, 2]);
    assert_eq!(m.duplicates("k"), 2);
    assert_eq!(m.rows("k"), 2);
    m.process("k", "m2", row(2)).unwrap();
    assert_eq!(m.duplicates("k"), 3);
}

#[test]
fn a_valid_row_that_does_not_decode_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = data_path(dir.path(), "k");
    append_raw(&path, &line("m1", 1));
    let mut bad = Vec::new();
    crate::format::push_crc_line(&mut bad, b"m2,not-a-number,x");
    append_raw(&path, &bad);
    append_raw(&path, &line("m3", 3));

    match Manager::open(dir.path()) {
        Err(Error::Decode { path: p, line, .. }) => {
            assert_eq!((p, line), (path, 2));
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn bad_keys_msg_ids_and_rows_are_errors_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    for key in ["../escape", "a/b", "", "a.csv", &"k".repeat(129)] {
        assert!(
            matches!(m.process(key, "m1", row(1)), Err(Error::InvalidKey { .. })),
            "{key:?}"
        );
    }
    assert!(matches!(m.complete("../x"), Err(Error::InvalidKey { .. })));
    assert!(matches!(
        m.process("k", "a\nb", row(1)),
        Err(Error::InvalidMsgId { .. })
    ));
    let two_lines = crate::test_support::Row {
        tag: 1,
        text: "a\nb".into(),
    };
    assert!(matches!(
        m.process("k", "m1", two_lines),
        Err(Error::InvalidRow { .. })
    ));
    m.commit().unwrap();
    assert!(m.keys().is_empty() && !m.is_poisoned());
    assert_eq!(file_names(dir.path()), vec!["LOCK"]);
    assert!(!dir.path().parent().unwrap().join("escape.csv").exists());
}

#[test]
fn a_second_open_gets_a_locked_error_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (m, _) = open(dir.path());
    let err = Manager::open(dir.path()).unwrap_err();
    match &err {
        Error::Locked { lock_file, pid } => {
            assert_eq!(lock_file, &dir.path().join("LOCK"));
            assert_eq!(*pid, Some(std::process::id()));
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(err.to_string().contains("LOCK"), "{err}");
    drop(m);
    open(dir.path());
}

#[test]
fn ready_keys_after_a_rebuild_are_the_ones_to_finalize_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    for i in 0..3 {
        m.process("done", &format!("m{i}"), row(i)).unwrap();
    }
    m.process("open", "m0", row(0)).unwrap();
    m.process("gone", "m0", row(0)).unwrap();
    m.commit().unwrap();
    m.complete("gone").unwrap();
    assert_eq!(m.ready_keys(), vec!["done"]);
    m.crash();

    let (m, report) = open(dir.path());
    assert_eq!(report.keys, 2);
    assert_eq!(m.keys(), vec!["done", "open"]);
    assert_eq!(m.ready_keys(), vec!["done"]);
}

#[test]
fn a_failed_write_poisons_the_manager() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    m.process("k", "m1", row(1)).unwrap();
    m.commit().unwrap();
    // /dev/full fails every write with ENOSPC, like a full disk.
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    m.replace_writer("k", full);
    m.process("k", "m2", row(2)).unwrap(); // buffered: no error yet
    let err = m.commit().unwrap_err();
    assert!(
        matches!(err, Error::WriteFailed { .. }) && err.is_fatal(),
        "{err}"
    );
    assert!(m.is_poisoned());
    for result in [
        m.process("k", "m3", row(3)).map(|_| ()),
        m.commit().map(|_| ()),
        m.complete("k"),
    ] {
        let e = result.unwrap_err();
        assert!(matches!(e, Error::Poisoned { .. }) && e.is_fatal(), "{e}");
        assert!(e.to_string().contains("exit and rebuild"), "{e}");
    }
    drop(m);
    // The rebuild has what was committed before the failure.
    let (m, _) = open(dir.path());
    assert_eq!(applied(&m, "k"), vec![1]);
}

#[test]
fn a_write_error_in_process_poisons_too_and_leaves_memory_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    m.process("k", "m1", row(1)).unwrap();
    m.commit().unwrap();
    let full = OpenOptions::new().write(true).open("/dev/full").unwrap();
    m.replace_writer("k", full);
    // A row larger than the buffer goes straight to the file and fails.
    let big = crate::test_support::Row {
        tag: 2,
        text: "x".repeat(100_000),
    };
    assert!(m.process("k", "m2", big).unwrap_err().is_fatal());
    assert_eq!(applied(&m, "k"), vec![1]);
    assert!(m.is_poisoned());
}

#[test]
fn stale_temp_files_of_interrupted_rewrites_are_deleted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    append_raw(&data_path(dir.path(), "k"), &line("m1", 1));
    fs::write(dir.path().join("k.csv.tmp"), b"half a rewrite").unwrap();
    fs::write(dir.path().join("tombstones.log.tmp"), b"half").unwrap();
    let (m, _) = open(dir.path());
    assert_eq!(applied(&m, "k"), vec![1]);
    assert_eq!(file_names(dir.path()), vec!["LOCK", "k.csv"]);
}

#[test]
fn unrelated_files_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), b"hi").unwrap();
    fs::write(dir.path().join("a.b.csv"), b"not a key").unwrap();
    let (m, report) = open(dir.path());
    assert_eq!(report.keys, 0);
    assert!(m.keys().is_empty());
    assert_eq!(file_names(dir.path()), vec!["LOCK", "a.b.csv", "notes.txt"]);
}

#[test]
fn beyond_the_open_file_cap_clean_files_are_closed_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    m.set_max_open_files(2);
    for round in 0..3u32 {
        for k in 0..5u32 {
            m.process(&format!("k{k}"), &format!("m{round}"), row(round))
                .unwrap();
            m.commit().unwrap();
            assert!(m.open_writers() <= 2, "{}", m.open_writers());
        }
    }
    // With more dirty files than the cap, none can be closed: all stay open.
    for k in 0..5u32 {
        m.process(&format!("k{k}"), "m9", row(9)).unwrap();
    }
    assert_eq!(m.open_writers(), 5);
    assert_eq!(m.commit().unwrap().files_synced, 5);
    drop(m);
    let (m, _) = open(dir.path());
    for k in 0..5 {
        assert_eq!(applied(&m, &format!("k{k}")), vec![0, 1, 2, 9]);
    }
}

#[test]
fn a_damaged_tombstone_log_is_reported_and_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    for k in ["a", "b", "c"] {
        m.complete(k).unwrap();
    }
    drop(m);
    let path = dir.path().join(TOMBSTONE_LOG);
    let mut bytes = fs::read(&path).unwrap();
    bytes[11] ^= 0x20; // inside line 2 ("b,<crc>")
    bytes.extend_from_slice(b"d,1"); // torn
    fs::write(&path, &bytes).unwrap();

    let (m, report) = open(dir.path());
    assert_eq!(report.tombstones, 2);
    assert_eq!(report.tombstone_lines_dropped, 2);
    assert_eq!(
        report.quarantined,
        vec![QuarantinedLine {
            file: TOMBSTONE_LOG.into(),
            line: 2
        }]
    );
    assert!(m.is_completed("a") && !m.is_completed("b") && m.is_completed("c"));
    assert!(dir.path().join(TOMBSTONE_CORRUPT).exists());
    drop(m);
    let (_, report) = open(dir.path());
    assert_eq!(report.tombstone_lines_dropped, 0);
}

#[test]
fn keys_and_msg_ids_with_csv_specials_survive_a_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, _) = open(dir.path());
    let odd = "id,with \"quotes\", commas";
    m.process("k", odd, row(7)).unwrap();
    m.commit().unwrap();
    drop(m);
    let (mut m, _) = open(dir.path());
    assert_eq!(m.process("k", odd, row(7)).unwrap(), Processed::Duplicate);
    assert_eq!(m.state("k"), Some(&Tags { applied: vec![7] }));
}

#[test]
fn an_empty_state_file_rebuilds_to_an_empty_key() {
    let dir = tempfile::tempdir().unwrap();
    File::create(data_path(dir.path(), "k")).unwrap();
    let (m, report) = open(dir.path());
    assert_eq!((report.keys, report.rows, report.truncated), (1, 0, 0));
    assert_eq!(m.keys(), vec!["k"]);
    assert!(m.ready_keys().is_empty());
}

#[test]
fn the_manager_can_move_between_threads_and_be_shared() {
    // Async callers hold it across awaits (Send) and may borrow it (Sync).
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Manager>();
}
