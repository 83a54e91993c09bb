//! Where the `batchline` binary is, and one-shot runs of it (submit, status,
//! the CLI error tests) with a time limit: a hang is a failure, not a stuck
//! test.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

/// A clean environment for a child: only what the pipeline needs, so knobs
/// set in the developer's shell (CRASH_POINTS, PREFETCH, …) never leak in.
pub fn base_command(bin: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear();
    for key in ["PATH", "HOME", "RUST_LOG", "TMPDIR", "LANG"] {
        if let Some(v) = std::env::var_os(key) {
            cmd.env(key, v);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// What a one-shot run printed and how it ended.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CliOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// Non-empty stderr lines.
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect()
    }
}

/// Runs `batchline ARGS` with exactly `env` (plus PATH/HOME) and kills it
/// after `timeout`, panicking: a command that hangs is a failure.
pub fn run_cli(args: &[&str], env: &[(String, String)], timeout: Duration) -> CliOutput {
    let bin = batchline_bin();
    let mut cmd = base_command(&bin, env);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    // Read both pipes in threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on a child") {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err_reader.join().unwrap_or_default();
            panic!(
                "`batchline {}` did not finish within {timeout:?} (a hang); stderr so far:\n{stderr}",
                args.join(" ")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    CliOutput {
        code: status.code(),
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
        elapsed,
    }
}
