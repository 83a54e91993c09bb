//! [`Proc`]: one child process the launcher owns. It runs `BIN ARGS…` in a
//! process group of its own with exactly the [`Env`] it was given, appends
//! its stderr to `LOG_DIR/NAME.log` (which survives restarts), hands each
//! stdout line to a [`LineSink`] from a reader thread, and can be
//! signalled, waited for, and measured (peak RSS).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::{procinfo, signal};

/// How often waits look at a child again.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// What a child is: a name, the binary's arguments, the environment on top
/// of nothing (callers start from [`Env::clean_base`]), and where it runs.
#[derive(Clone, Debug)]
pub struct Spec {
    pub name: String,
    pub args: Vec<String>,
    pub env: Env,
    /// Working directory (so a core dump lands there); inherited when `None`.
    pub cwd: Option<PathBuf>,
}

/// The stdout lines of a set of children, in arrival order, also appended
/// to a file as `NAME#START: LINE` (the verifier's verdict lines, for
/// assertions and for a failed test's report).
#[derive(Clone, Debug)]
pub struct LineSink {
    lines: Arc<Mutex<Vec<String>>>,
    file: PathBuf,
}

impl LineSink {
    pub fn new(file: PathBuf) -> LineSink {
        LineSink {
            lines: Arc::default(),
            file,
        }
    }

    /// Every line so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    fn push(&self, file: &mut Option<File>, tag: &str, line: String) {
        if let Some(f) = file {
            // The file is a copy for people; the in-memory list is the record.
            let _ = writeln!(f, "{tag}: {line}");
        }
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }
}

/// A running (or exited) child.
#[derive(Debug)]
pub struct Proc {
    spec: Spec,
    bin: PathBuf,
    log: PathBuf,
    starts: u32,
    child: Child,
    status: Option<ExitStatus>,
    reader: Option<JoinHandle<()>>,
}

impl Proc {
    /// Starts `bin spec.args…` as start number `starts` of `spec.name`.
    /// `kill_after_lines = Some(n)` SIGKILLs it the moment its `n`th stdout
    /// line arrives, before the line is recorded: the narrowest window
    /// after a print that a test can hit.
    pub fn start(
        bin: &Path,
        spec: Spec,
        log_dir: &Path,
        sink: &LineSink,
        starts: u32,
        kill_after_lines: Option<usize>,
    ) -> Result<Proc> {
        let log = log_dir.join(format!("{}.log", spec.name));
        let mut log_file = append(&log)?;
        writeln!(log_file, "{}", header(bin, &spec, Some(starts)))
            .map_err(Error::io("cannot write", &log))?;
        let mut cmd = command(bin, &spec);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        let mut child = cmd.spawn().map_err(Error::spawn(bin, &spec.args))?;
        let reader = child.stdout.take().map(|stdout| {
            let (sink, name, pid) = (sink.clone(), spec.name.clone(), child.id());
            let tag = format!("{name}#{starts}");
            std::thread::spawn(move || {
                let mut file = append(sink.file()).ok();
                for (n, line) in BufReader::new(stdout).lines().enumerate() {
                    let Ok(line) = line else { break };
                    if kill_after_lines == Some(n + 1) {
                        let _ = signal::send(&name, pid, Signal::SIGKILL);
                    }
                    sink.push(&mut file, &tag, line);
                }
            })
        });
        Ok(Proc {
            spec,
            bin: bin.to_owned(),
            log,
            starts,
            child,
            status: None,
            reader,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The subcommand (its first argument).
    pub fn role(&self) -> &str {
        self.spec.args.first().map_or("", String::as_str)
    }

    pub fn spec(&self) -> &Spec {
        &self.spec
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// How many times a process of this name was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }

    /// Its stderr, all starts appended.
    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while it runs; its exit status once it ended (and was reaped).
    pub fn exit_status(&mut self) -> Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait().map_err(|source| Error::Wait {
                name: self.spec.name.clone(),
                source,
            })?;
            if self.status.is_some() {
                self.join_reader();
            }
        }
        Ok(self.status)
    }

    /// Runs and has not been reaped. A child that cannot be waited for
    /// counts as gone.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.exit_status(), Ok(None))
    }

    /// Sends `signal` to its process group while it runs; a reaped child's
    /// pid may belong to someone else by now, so it gets nothing.
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.exit_status()?.is_none() {
            signal::send(&self.spec.name, self.pid(), signal)?;
        }
        Ok(())
    }

    /// SIGKILL (if it still runs) and reap.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(Signal::SIGKILL)?;
        if self.status.is_none() {
            self.status = Some(self.child.wait().map_err(|source| Error::Wait {
                name: self.spec.name.clone(),
                source,
            })?);
        }
        self.join_reader();
        Ok(())
    }

    /// Waits until it exits by itself; `None` if it still runs after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exit_status()? {
                return Ok(Some(status));
            }
            if start.elapsed() > timeout {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until its log holds `marker` (it logged that it is ready).
    /// Fails at once if it exits, and after `timeout`, with its log's end.
    pub fn wait_log_line(&mut self, marker: &str, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let log = std::fs::read(&self.log).unwrap_or_default();
            if String::from_utf8_lossy(&log).contains(marker) {
                return Ok(());
            }
            let what = if let Some(status) = self.exit_status()? {
                format!("exited ({status}) before it was ready")
            } else if start.elapsed() > timeout {
                format!("logged no {marker:?} within {timeout:?}")
            } else {
                std::thread::sleep(POLL);
                continue;
            };
            return Err(self.failure(what));
        }
    }

    /// An [`Error::NotReady`] about this process with the end of its log.
    pub fn failure(&self, what: String) -> Error {
        Error::NotReady {
            name: self.spec.name.clone(),
            what,
            log: self.log.clone(),
            tail: procinfo::tail(&self.log, 15),
        }
    }

    /// Peak resident set while it runs, in MiB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        procinfo::peak_rss_mb(self.pid())
    }

    fn join_reader(&mut self) {
        if let Some(reader) = self.reader.take() {
            // A reader that panicked lost lines it never had; nothing to add.
            let _ = reader.join();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// `bin args…` with exactly `spec.env`, in a process group of its own, so a
/// terminal's Ctrl-C reaches only the launcher and a signal reaches the
/// whole child.
pub(crate) fn command(bin: &Path, spec: &Spec) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.args(&spec.args).env_clear().process_group(0);
    for (k, v) in spec.env.iter() {
        cmd.env(k, v);
    }
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    cmd
}

/// The line written to a log before each start.
pub(crate) fn header(bin: &Path, spec: &Spec, start: Option<u32>) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let nth = start.map(|n| format!(" (start #{n})")).unwrap_or_default();
    let bin = bin
        .file_name()
        .map_or(bin.as_os_str(), |f| f)
        .to_string_lossy();
    format!(
        "[stack] {now}: starting {}{nth}: {bin} {}",
        spec.name,
        spec.args.join(" ")
    )
}

/// Opens `path` for appending, creating it.
pub(crate) fn append(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(Error::io("cannot open", path))
}
