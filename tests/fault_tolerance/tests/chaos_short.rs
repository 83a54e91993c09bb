//! The short chaos run CI does on every change: the `chaos` coordinator
//! for ~40 s (continuous batches, random SIGKILLs of every stage), then its
//! own check of every batch against Postgres (a few batches cancelled on
//! the way must end CANCELLED, the rest SUCCESS). Long runs: `make chaos`.

use std::process::Command;

#[test]
fn short_chaos_loses_and_duplicates_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args([
            "--duration-s",
            "40",
            "--kill-interval-s",
            "3",
            "--runs",
            "2000",
            "--chunk-size",
            "200",
            "--cancel-interval-s",
            "8",
        ])
        .output()
        .expect("run the chaos coordinator");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("SUCCESS: no loss or duplication"),
        "chaos failed ({}):\n{stdout}\n--- stderr ---\n{stderr}",
        out.status
    );
    assert!(stdout.contains("kills "), "no stage was killed:\n{stdout}");
    assert!(
        stdout.lines().any(|l| l.contains(": cancelled ")),
        "no batch was cancelled:\n{stdout}"
    );
}
