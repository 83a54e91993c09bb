//! One long-running child process of the stack: started with its role's
//! subcommand and env, stderr appended to a log file that survives
//! restarts, stdout lines collected by a thread (the verifier's verdicts),
//! killed with SIGKILL.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::binary::base_command;

/// Lines a process printed on stdout, shared with its reader thread.
pub type Lines = Arc<Mutex<Vec<String>>>;

/// A running (or dead) `batchline ROLE` child.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    /// The subcommand: `executor`, `aggregator` or `verifier`.
    pub role: String,
    /// The full environment it was started with.
    pub env: Vec<(String, String)>,
    /// How many times it was started.
    pub starts: u32,
    /// Its stderr (all starts, appended).
    pub log: PathBuf,
    child: Child,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Starts `bin ROLE` with `env`. Stdout lines go to `lines` and to
    /// `lines_file`; stderr is appended to `log_dir/NAME.log`. The child
    /// runs in `cwd` (so a core dump lands in the temp dir, not the repo).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        bin: &Path,
        name: &str,
        role: &str,
        env: Vec<(String, String)>,
        starts: u32,
        cwd: &Path,
        log_dir: &Path,
        lines: Lines,
        lines_file: PathBuf,
        kill_after_lines: Option<usize>,
    ) -> Proc {
        let log = log_dir.join(format!("{name}.log"));
        let mut log_file = append(&log);
        let _ = writeln!(
            log_file,
            "===== harness: start #{starts} of {name} ({role}) ====="
        );
        let mut cmd = base_command(bin, &env);
        cmd.arg(role)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {} {role}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let tag = format!("{name}#{starts}");
        let pid = child.id();
        let reader = std::thread::spawn(move || {
            let mut file = append(&lines_file);
            for (n, line) in BufReader::new(stdout).lines().enumerate() {
                let Ok(line) = line else { break };
                if kill_after_lines == Some(n + 1) {
                    // As soon as the line is out: the narrowest window we can hit.
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
                let _ = writeln!(file, "{tag}: {line}");
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Proc {
            name: name.to_string(),
            role: role.to_string(),
            env,
            starts,
            log,
            child,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while it runs, its exit status once it ended (reaped).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        let status = self.child.try_wait().expect("try_wait on a child");
        if status.is_some() {
            self.join_reader();
        }
        status
    }

    pub fn is_alive(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// SIGKILL (if still running) and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.join_reader();
    }

    /// Waits until it exits by itself; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()))
}

/// The last `n` lines of a file (for failure reports).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
