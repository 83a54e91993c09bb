//! One-shot runs of the binary (`submit`, `status`, `migrate`, a CLI error
//! case) with a time limit: a command that hangs is an error, not a stuck
//! caller.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::env::Env;
use crate::error::{Error, Result};
use crate::proc::{self, POLL, Spec};
use crate::signal;
use nix::sys::signal::Signal;

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

/// Runs `bin ARGS…` with exactly `env` and waits for it; after `timeout`
/// it is killed and [`Error::Timeout`] says so with its stderr.
pub fn run_once(bin: &Path, args: &[&str], env: &Env, timeout: Duration) -> Result<CliOutput> {
    run_once_in(None, bin, args, env, timeout)
}

/// [`run_once`] in directory `cwd` (this process's when `None`).
pub fn run_once_in(
    cwd: Option<&Path>,
    bin: &Path,
    args: &[&str],
    env: &Env,
    timeout: Duration,
) -> Result<CliOutput> {
    let spec = Spec {
        name: args.first().copied().unwrap_or("batchline").to_owned(),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        env: env.clone(),
        cwd: cwd.map(Path::to_path_buf),
    };
    let mut cmd = proc::command(bin, &spec);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().map_err(Error::spawn(bin, args))?;
    // Both pipes are read in threads so a chatty child never blocks on a full pipe.
    let out = child.stdout.take().map(read_all);
    let err = child.stderr.take().map(read_all);
    let collect = |h: Option<std::thread::JoinHandle<String>>| {
        h.and_then(|h| h.join().ok()).unwrap_or_default()
    };
    let wait_error = |source| Error::Wait {
        name: spec.name.clone(),
        source,
    };
    let status = loop {
        if let Some(status) = child.try_wait().map_err(wait_error)? {
            break status;
        }
        if start.elapsed() > timeout {
            // The whole group: a grandchild holding the pipes open would
            // keep the readers (and so this call) waiting.
            let _ = signal::send(&spec.name, child.id(), Signal::SIGKILL);
            let _ = child.wait();
            return Err(Error::Timeout {
                command: format!("batchline {}", args.join(" ")),
                timeout,
                stderr: collect(err),
            });
        }
        std::thread::sleep(POLL);
    };
    Ok(CliOutput {
        code: status.code(),
        elapsed: start.elapsed(),
        stdout: collect(out),
        stderr: collect(err),
    })
}

fn read_all(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}
