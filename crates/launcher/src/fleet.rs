//! [`Fleet`]: the named child processes of one stack, all of one binary,
//! sharing an environment, a log directory and one [`LineSink`] for their
//! stdout. Restarting a name starts it again with the env it had, and its
//! log is appended to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::env::Env;
use crate::error::{Error, Result};
use crate::proc::{LineSink, Proc, Spec};
use crate::stop::{self, StopEvent};

/// How a process ended when the fleet stopped it.
#[derive(Debug, Clone)]
pub struct Stopped {
    pub name: String,
    /// Its exit status, when it could be read.
    pub status: Option<ExitStatus>,
    /// It needed SIGKILL: it did not exit within the grace period.
    pub killed: bool,
}

impl Stopped {
    /// Exited 0 on SIGTERM within the grace period (drained cleanly).
    pub fn clean(&self) -> bool {
        !self.killed && self.status.is_some_and(|s| s.success())
    }
}

/// Named children of one binary; see the module docs.
#[derive(Debug)]
pub struct Fleet {
    bin: PathBuf,
    log_dir: PathBuf,
    cwd: Option<PathBuf>,
    env: Env,
    procs: BTreeMap<String, Proc>,
    sink: LineSink,
}

impl Fleet {
    /// A fleet of `bin` whose processes all get `env` (plus their own),
    /// logging to `log_dir` (created), stdout lines copied to
    /// `log_dir/stdout-lines.txt`.
    pub fn new(bin: &Path, log_dir: &Path, env: Env) -> Result<Fleet> {
        std::fs::create_dir_all(log_dir).map_err(Error::io("cannot create", log_dir))?;
        Ok(Fleet {
            bin: bin.to_owned(),
            log_dir: log_dir.to_owned(),
            cwd: None,
            env,
            procs: BTreeMap::new(),
            sink: LineSink::new(log_dir.join("stdout-lines.txt")),
        })
    }

    /// Runs every process in `cwd`.
    pub fn in_dir(mut self, cwd: &Path) -> Fleet {
        self.cwd = Some(cwd.to_owned());
        self
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The environment every process gets.
    pub fn env(&self) -> &Env {
        &self.env
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Every stdout line of every process, in order.
    pub fn lines(&self) -> Vec<String> {
        self.sink.lines()
    }

    pub fn lines_file(&self) -> &Path {
        self.sink.file()
    }

    /// Starts `bin ARGS…` as `name` with `extra` on top of the fleet's env.
    /// Fails if a process of that name runs.
    pub fn spawn(&mut self, name: &str, args: &[&str], extra: &Env) -> Result<()> {
        self.start(name, args, self.env.with(extra), None)
    }

    /// As [`Fleet::spawn`], SIGKILLing the process the moment its `n`th
    /// stdout line arrives.
    pub fn spawn_killed_after_lines(
        &mut self,
        name: &str,
        args: &[&str],
        extra: &Env,
        n: usize,
    ) -> Result<()> {
        self.start(name, args, self.env.with(extra), Some(n))
    }

    fn start(
        &mut self,
        name: &str,
        args: &[&str],
        env: Env,
        kill_after: Option<usize>,
    ) -> Result<()> {
        let starts = match self.procs.get_mut(name) {
            Some(p) => {
                if p.is_alive() {
                    return Err(Error::AlreadyRunning(name.to_owned()));
                }
                p.starts() + 1
            }
            None => 1,
        };
        let spec = Spec {
            name: name.to_owned(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env,
            cwd: self.cwd.clone(),
        };
        let proc = Proc::start(
            &self.bin,
            spec,
            &self.log_dir,
            &self.sink,
            starts,
            kill_after,
        )?;
        self.procs.insert(name.to_owned(), proc);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Result<&Proc> {
        self.procs
            .get(name)
            .ok_or_else(|| Error::NoSuchProcess(name.to_owned()))
    }

    pub fn get_mut(&mut self, name: &str) -> Result<&mut Proc> {
        self.procs
            .get_mut(name)
            .ok_or_else(|| Error::NoSuchProcess(name.to_owned()))
    }

    /// Every process, by name.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut Proc)> {
        self.procs.iter_mut()
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, name: &str) -> Result<()> {
        self.get_mut(name)?.kill()
    }

    /// Sends `signal` to `name` while it runs.
    pub fn signal(&mut self, name: &str, signal: Signal) -> Result<()> {
        self.get_mut(name)?.signal(signal)
    }

    /// Kills `name` (if it runs) and starts it again with the env it had.
    pub fn restart(&mut self, name: &str) -> Result<()> {
        self.rerun(name, None)
    }

    /// Kills `name` (if it runs) and starts it again with the fleet's env
    /// plus `extra`: what it had on top before is dropped.
    pub fn restart_with(&mut self, name: &str, extra: &Env) -> Result<()> {
        self.rerun(name, Some(extra))
    }

    fn rerun(&mut self, name: &str, extra: Option<&Env>) -> Result<()> {
        let p = self.get_mut(name)?;
        p.kill()?;
        let spec = p.spec().clone();
        let env = extra.map_or(spec.env, |e| self.env.with(e));
        let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
        self.start(name, &args, env, None)
    }

    /// Names of the processes that do not run.
    pub fn dead(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|(n, p)| (!p.is_alive()).then(|| n.clone()))
            .collect()
    }

    /// The processes that exited, with how.
    pub fn exited(&mut self) -> Vec<(String, ExitStatus)> {
        self.procs
            .iter_mut()
            .filter_map(|(n, p)| Some((n.clone(), p.exit_status().ok()??)))
            .collect()
    }

    /// SIGKILLs and reaps every process; failures are left to the OS.
    pub fn kill_all(&mut self) {
        for p in self.procs.values_mut() {
            let _ = p.kill();
        }
    }

    /// Stops every process (SIGTERM, SIGKILL after `grace`) and says how
    /// each ended.
    pub fn stop_all(&mut self, grace: Duration) -> Vec<Stopped> {
        let mut procs: Vec<&mut Proc> = self.procs.values_mut().collect();
        let killed = stop::stop_all(&mut procs, grace, &mut |_: StopEvent| {});
        procs
            .into_iter()
            .map(|p| Stopped {
                name: p.name().to_owned(),
                status: p.exit_status().ok().flatten(),
                killed: killed.iter().any(|k| k == p.name()),
            })
            .collect()
    }
}
