//! Detached services: processes that outlive the command that started them
//! and are found again by the next one through files in a data directory.
//!
//! ```text
//! DATA/run/NAME.pid   the pid of a running service
//! DATA/run/NAME.env   the environment it was started with (a restart reuses it)
//! DATA/logs/NAME.log  its stdout and stderr, appended across restarts
//! ```
//!
//! A pid file alone could name another process once the service died and
//! its pid was reused, so every service carries a marker in its
//! environment (`BATCHLINE_STACK_SERVICE=DATA/NAME`) and only a live process
//! with that marker counts as the service.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::env::{Env, tmp_path};
use crate::error::{Error, Result};
use crate::proc::{self, POLL, Spec};
use crate::stop::Stoppable;
use crate::{procinfo, signal};

/// The environment variable that marks a service as this data dir's.
pub const MARKER: &str = "BATCHLINE_STACK_SERVICE";

/// How long a new process may take to exec (and so show its marker).
const EXEC_LIMIT: Duration = Duration::from_secs(10);

/// The `run/` and `logs/` directories of one data directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    data: PathBuf,
    run: PathBuf,
    logs: PathBuf,
}

impl RunDir {
    /// Creates `DATA/run` and `DATA/logs`; `DATA` is made absolute.
    pub fn open(data_dir: &Path) -> Result<RunDir> {
        std::fs::create_dir_all(data_dir).map_err(Error::io("cannot create", data_dir))?;
        let data = data_dir
            .canonicalize()
            .map_err(Error::io("cannot resolve", data_dir))?;
        let (run, logs) = (data.join("run"), data.join("logs"));
        for dir in [&run, &logs] {
            std::fs::create_dir_all(dir).map_err(Error::io("cannot create", dir))?;
        }
        Ok(RunDir { data, run, logs })
    }

    /// The data directory, absolute.
    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn run_dir(&self) -> &Path {
        &self.run
    }

    pub fn log_dir(&self) -> &Path {
        &self.logs
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.logs.join(format!("{name}.log"))
    }

    fn pid_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.pid"))
    }

    fn env_file(&self, name: &str) -> PathBuf {
        self.run.join(format!("{name}.env"))
    }

    fn marker(&self, name: &str) -> String {
        self.data.join(name).display().to_string()
    }

    /// Names with a saved environment or a pid file, unordered.
    pub fn known(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.run)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let file = e.file_name().to_string_lossy().into_owned();
                let (name, ext) = file.rsplit_once('.')?;
                matches!(ext, "pid" | "env").then(|| name.to_owned())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// The pid `name`'s pid file holds, if it holds one.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let text = std::fs::read_to_string(self.pid_file(name)).ok()?;
        text.trim().parse().ok()
    }

    /// `name`'s pid while it runs: its pid file names a live process that
    /// carries this directory's marker for `name` (not a reused pid, not a
    /// zombie).
    pub fn running(&self, name: &str) -> Option<u32> {
        let pid = self.pid(name)?;
        procinfo::carries(pid, MARKER, &self.marker(name)).then_some(pid)
    }

    /// Saves the environment `name` runs with, for restarts.
    pub fn save_env(&self, name: &str, comment: &str, env: &Env) -> Result<()> {
        env.write_file(&self.env_file(name), comment)
    }

    /// The environment `name` was started with, if saved.
    pub fn saved_env(&self, name: &str) -> Result<Option<Env>> {
        let path = self.env_file(name);
        if !path.exists() {
            return Ok(None);
        }
        Env::read_file(&path).map(Some)
    }

    /// Removes `name`'s pid file (it no longer runs).
    pub fn clear_pid(&self, name: &str) {
        let _ = std::fs::remove_file(self.pid_file(name));
    }

    /// Removes `name`'s pid and env files: the stack forgets it.
    pub fn forget(&self, name: &str) {
        self.clear_pid(name);
        let _ = std::fs::remove_file(self.env_file(name));
    }

    /// Appends `[stack] TIME: text` to `name`'s log.
    pub fn note(&self, name: &str, text: &str) -> Result<()> {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        let log = self.log(name);
        writeln!(proc::append(&log)?, "[stack] {now}: {text}")
            .map_err(Error::io("cannot write", &log))
    }

    /// `bin ARGS…` as `name` with `env` on a clean base (plus `marker`
    /// when given), stdout and stderr appended to its log after a header.
    fn logged(
        &self,
        bin: &Path,
        name: &str,
        args: &[String],
        env: &Env,
        marker: bool,
    ) -> Result<Command> {
        let mut full = Env::clean_base().with(env);
        if marker {
            full.set(MARKER, self.marker(name));
        }
        let spec = Spec {
            name: name.to_owned(),
            args: args.to_vec(),
            env: full,
            cwd: None,
        };
        let log = self.log(name);
        let mut out = proc::append(&log)?;
        writeln!(out, "{}", proc::header(bin, &spec, None))
            .map_err(Error::io("cannot write", &log))?;
        let err = out.try_clone().map_err(Error::io("cannot open", &log))?;
        let mut cmd = proc::command(bin, &spec);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        Ok(cmd)
    }

    /// Starts `bin ARGS…` as service `name` with `env` on a clean base, in
    /// a process group of its own, stdout and stderr appended to its log;
    /// waits until it has exec'd, then writes its pid file.
    pub fn start(&self, bin: &Path, name: &str, args: &[String], env: &Env) -> Result<Detached> {
        let spawn_error = Error::spawn(bin, args);
        let mut child = self
            .logged(bin, name, args, env, true)?
            .spawn()
            .map_err(spawn_error)?;
        let pid = child.id();
        let marker = self.marker(name);
        let start = Instant::now();
        while !procinfo::carries(pid, MARKER, &marker)
            && matches!(child.try_wait(), Ok(None))
            && start.elapsed() < EXEC_LIMIT
        {
            std::thread::sleep(POLL);
        }
        write_atomic(&self.pid_file(name), &format!("{pid}\n"))?;
        Ok(Detached {
            name: name.to_owned(),
            pid,
            marker,
            child: Some(child),
        })
    }

    /// `name` as something to stop, when it runs.
    pub fn detached(&self, name: &str) -> Option<Detached> {
        let pid = self.running(name)?;
        Some(Detached {
            name: name.to_owned(),
            pid,
            marker: self.marker(name),
            child: None,
        })
    }

    /// Runs `bin ARGS…` to completion with `env`, appending its output to
    /// `logs/NAME.log` (e.g. `migrate`).
    pub fn run_logged(
        &self,
        bin: &Path,
        name: &str,
        args: &[String],
        env: &Env,
    ) -> Result<ExitStatus> {
        let spawn_error = Error::spawn(bin, args);
        self.logged(bin, name, args, env, false)?
            .status()
            .map_err(spawn_error)
    }
}

/// A running service, to signal and stop. When this process started it,
/// it also reaps it (so it does not linger as a zombie).
#[derive(Debug)]
pub struct Detached {
    name: String,
    pid: u32,
    marker: String,
    child: Option<Child>,
}

impl Detached {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Stoppable for Detached {
    fn label(&self) -> &str {
        &self.name
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn running(&mut self) -> bool {
        if let Some(child) = &mut self.child
            && !matches!(child.try_wait(), Ok(None))
        {
            return false;
        }
        procinfo::carries(self.pid, MARKER, &self.marker)
    }

    fn signal(&mut self, sig: Signal) -> Result<()> {
        if self.running() {
            signal::send(&self.name, self.pid, sig)?;
        }
        Ok(())
    }
}

/// Writes `path` through a temp file and a rename, so a reader never sees
/// half of it.
fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = tmp_path(path);
    std::fs::write(&tmp, text).map_err(Error::io("cannot write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("cannot rename to", path))
}
