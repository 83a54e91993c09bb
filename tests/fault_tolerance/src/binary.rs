//! Where the `batchline` binary is, the clean environment the drills run it
//! with, and one-shot runs of it (submit, status, the CLI error tests) with
//! a time limit: a hang is a failure, not a stuck test.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use launcher::CliOutput;
use launcher::{Env, report, run_once};

/// The binary under test: `BATCHLINE_BIN`, else `$CARGO_TARGET_DIR/debug/batchline`,
/// else `<workspace>/target/debug/batchline`. Panics, saying how to build
/// it, when it is missing.
pub fn batchline_bin() -> PathBuf {
    let candidate = if let Some(bin) = env_path("BATCHLINE_BIN") {
        bin
    } else if let Some(target) = env_path("CARGO_TARGET_DIR") {
        target.join("debug").join("batchline")
    } else {
        workspace_root()
            .join("target")
            .join("debug")
            .join("batchline")
    };
    assert!(
        candidate.is_file(),
        "the batchline binary is missing at {}: run `cargo build -p batchline` first \
         (with the same CARGO_TARGET_DIR), or set BATCHLINE_BIN",
        candidate.display()
    );
    candidate
}

fn env_path(key: &str) -> Option<PathBuf> {
    std::env::var_os(key)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The workspace root (this package lives in `<root>/tests/fault_tolerance`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// What every drill process starts from: the launcher's clean base, plus
/// `RUST_LOG` from the test's environment (to debug a drill).
pub fn base_env() -> Env {
    Env::clean_base().with(&Env::passthrough(&["RUST_LOG"]))
}

/// Runs `batchline ARGS` with exactly `env` (on [`base_env`]) and kills it
/// after `timeout`, panicking: a command that hangs is a failure.
pub fn run_cli(args: &[&str], env: &[(String, String)], timeout: Duration) -> CliOutput {
    let bin = batchline_bin();
    let env = base_env().with(&Env::from(env));
    run_once(&bin, args, &env, timeout).unwrap_or_else(|e| panic!("{}", report(&e)))
}
