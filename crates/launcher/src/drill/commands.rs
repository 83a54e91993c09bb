//! What each `batchline stack` subcommand does. Services are detached
//! processes ([`crate::detached`]): any command finds them again through
//! `WORKER_DATA_DIR/run/`, so `make kill-worker-2` in one terminal acts on
//! what `make up` started in another.

use std::io::IsTerminal;
use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::plan::{self, Role};
use super::{Drill, LogsArgs, StackCommand, say};
use crate::detached::Detached;
use crate::error::{Error, Result};
use crate::follow::{self, Follower};
use crate::procinfo;
use crate::stop::{self, StopEvent};

/// How long `kill` waits for a SIGKILLed service to be gone.
const AFTER_KILL: Duration = Duration::from_secs(10);

impl Drill<'_> {
    pub(super) fn command(&self, command: &StackCommand) -> Result<ExitCode> {
        match command {
            StackCommand::Up => self.up(),
            StackCommand::UpDetached => self.up_detached(),
            StackCommand::Down => self.down().map(|()| ExitCode::SUCCESS),
            StackCommand::Kill { worker, signal } => self.kill(worker, signal.as_deref()),
            StackCommand::Restart { worker } => self.restart(worker),
            StackCommand::Ps => self.ps().map(|()| ExitCode::SUCCESS),
            StackCommand::Logs(args) => self.logs(args),
            StackCommand::Cli { args } => Err(self.exec(args)),
            StackCommand::DataDir => {
                println!("{}", self.dir.data().display());
                Ok(ExitCode::SUCCESS)
            }
        }
    }

    fn planned(&self) -> Vec<String> {
        plan::plan(self.counts())
    }

    /// The services the stack knows (saved env or pid file), in plan order.
    fn known(&self) -> Vec<String> {
        let mut names = self.dir.known();
        plan::sort(&mut names);
        names
    }

    /// The names `user` means: among the known services, else the planned.
    fn resolve(&self, user: &str) -> Result<Vec<String>> {
        for candidates in [self.known(), self.planned()] {
            let names = plan::resolve(user, &candidates);
            if !names.is_empty() {
                return Ok(names);
            }
        }
        Err(Error::Invalid(format!(
            "unknown worker '{user}': use 1, 2, 3, 1-K (K up to EXECUTORS), 2-K (K up to AGGREGATORS) or runner"
        )))
    }

    /// Starts what the plan holds and does not run yet, migrations first.
    /// The services it started, or an error when some did not start.
    fn start(&self) -> Result<Vec<Detached>> {
        say(&format!(
            "mode: local ({}); binary {}; pids in {}, logs in {}",
            self.settings.mode_why,
            self.bin.display(),
            self.dir.run_dir().display(),
            self.dir.log_dir().display()
        ));
        let planned = self.planned();
        // Forget services of an earlier plan (another EXECUTORS or AGGREGATORS) that no longer run.
        for name in self.known() {
            if !planned.contains(&name) && self.dir.running(&name).is_none() {
                self.dir.forget(&name);
            }
        }
        self.migrate()?;
        let mut started = Vec::new();
        for name in &planned {
            if let Some(pid) = self.dir.running(name) {
                say(&format!("{name} already runs (pid {pid})"));
                continue;
            }
            let service = self.start_service(name, &self.save_env(name)?)?;
            let role = plan::role_of(name).map_or("?", Role::as_str);
            say(&format!("started {name} ({role}, pid {})", service.pid()));
            started.push(service);
        }
        let names: Vec<String> = started.iter().map(|s| s.name().to_owned()).collect();
        self.check_started(&names)?;
        Ok(started)
    }

    /// Writes the environment `name` starts with now, for restarts.
    fn save_env(&self, name: &str) -> Result<crate::Env> {
        let env = self.env_for(name);
        let role = plan::role_of(name).map_or("?", Role::as_str);
        let comment = format!("{name} ({role}), written by batchline stack; restart reuses it");
        self.dir.save_env(name, &comment, &env)?;
        Ok(env)
    }

    /// Starts service `name` with `env`, running what its role runs.
    fn start_service(&self, name: &str, env: &crate::Env) -> Result<Detached> {
        let role = plan::role_of(name)
            .ok_or_else(|| Error::Invalid(format!("unknown service '{name}'")))?;
        self.dir
            .start(&self.bin, name, &self.args_for(role, env), env)
    }

    /// Migrations once, before the services: a clear error when Postgres
    /// is not there, and no race between the services to create the schema.
    fn migrate(&self) -> Result<()> {
        let status = self.dir.run_logged(
            &self.bin,
            "migrate",
            &["migrate".into()],
            &self.env_for("migrate"),
        )?;
        if status.success() {
            return Ok(());
        }
        let log = self.dir.log("migrate");
        Err(Error::Invalid(format!(
            "'batchline migrate' failed (is Postgres up at DATABASE_URL?); the end of {}:\n{}",
            log.display(),
            indent(&procinfo::tail(&log, 10))
        )))
    }

    /// A service that exits at once (bad URL, services down) says why in its log.
    fn check_started(&self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(self.settings.start_check_ms));
        let mut failed = Vec::new();
        for name in names {
            if self.dir.running(name).is_some() {
                continue;
            }
            let log = self.dir.log(name);
            if name == "runner" {
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("SUCCESS") || text.contains("FAILURE") {
                    continue;
                }
            }
            say(&format!(
                "{name} exited right after starting; the end of {}:\n{}",
                log.display(),
                indent(&procinfo::tail(&log, 15))
            ));
            failed.push(name.clone());
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid(format!(
                "{} did not start",
                failed.join(", ")
            )))
        }
    }

    fn up_detached(&self) -> Result<ExitCode> {
        if let Err(e) = self.start() {
            say(&crate::report(&e));
            say("some services did not start (make down stops the others)");
            return Ok(ExitCode::FAILURE);
        }
        self.ps()?;
        say(
            "make logs follows them; make kill-worker-2 / restart-worker-2 for the drill; make down stops them",
        );
        Ok(ExitCode::SUCCESS)
    }

    /// `up`: start, follow every log with a prefix until Ctrl-C or until
    /// nothing runs any more, then stop everything.
    fn up(&self) -> Result<ExitCode> {
        let names = self.planned();
        let colors = std::io::stdout().is_terminal();
        let mut followers = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let log = self.dir.log(name);
            let len = std::fs::metadata(&log).map_or(0, |m| m.len());
            followers.push(Follower::start(
                &log,
                follow::From::Offset(len),
                prefix(name, colors.then_some(i)),
            ));
        }
        let stop = Arc::new(AtomicBool::new(false));
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, stop.clone())
                .map_err(Error::io("cannot handle signal", "SIGINT/SIGTERM"))?;
        }
        let mut code = ExitCode::SUCCESS;
        let mut owned = match self.start() {
            Ok(started) => {
                say(
                    "following the logs; Ctrl-C stops everything (make kill-worker-N / restart-worker-N from another terminal)",
                );
                started
            }
            Err(e) => {
                say(&crate::report(&e));
                say("some services did not start: stopping the others");
                code = ExitCode::FAILURE;
                stop.store(true, Ordering::SeqCst);
                Vec::new()
            }
        };
        self.watch(&stop, &mut owned);
        say("stopping everything");
        self.down()?;
        std::thread::sleep(Duration::from_millis(500)); // let the last lines through
        followers.into_iter().for_each(Follower::stop);
        Ok(code)
    }

    /// Says when a service stops or runs again, until `stop` is set or no
    /// service runs any more. Reaps the services this process started.
    fn watch(&self, stop: &AtomicBool, owned: &mut [Detached]) {
        let mut was: Vec<(String, bool)> = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let tick = Instant::now();
            while tick.elapsed() < Duration::from_secs(1) && !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
            owned.iter_mut().for_each(|s| {
                stop::Stoppable::running(s);
            });
            let mut any = false;
            for name in self.known() {
                let now = self.dir.running(&name);
                let before = was.iter().find(|(n, _)| *n == name).map(|(_, r)| *r);
                match (before, now) {
                    (Some(true), None) => say(&format!("{name} is no longer running")),
                    (Some(false), Some(pid)) => say(&format!("{name} runs again (pid {pid})")),
                    _ => {}
                }
                was.retain(|(n, _)| *n != name);
                was.push((name.clone(), now.is_some()));
                any |= now.is_some() && name != "runner";
            }
            if !any && self.dir.running("runner").is_none() {
                say("no service runs any more");
                break;
            }
        }
    }

    /// Stops the runner first (it only watches), then every other service.
    fn down(&self) -> Result<()> {
        let names = self.known();
        if names.is_empty() {
            say(&format!(
                "nothing to stop in {}",
                self.dir.run_dir().display()
            ));
            return Ok(());
        }
        self.stop(&["runner".to_owned()]);
        self.stop(&names);
        for name in &names {
            self.dir.forget(name);
        }
        say("stopped");
        Ok(())
    }

    /// SIGTERM to each running service of `names`, SIGKILL after STOP_TIMEOUT.
    fn stop(&self, names: &[String]) {
        let mut running: Vec<Detached> =
            names.iter().filter_map(|n| self.dir.detached(n)).collect();
        let grace = Duration::from_secs(self.settings.stop_timeout);
        let mut outlived = false;
        stop::stop_all(&mut running, grace, &mut |event| match event {
            StopEvent::Terminating { name, pid } => say(&format!("stopping {name} (pid {pid})")),
            StopEvent::Killing { name, pid, after } => say(&format!(
                "{name} (pid {pid}) still runs after {}s: SIGKILL",
                after.as_secs()
            )),
            StopEvent::Outlived { .. } => outlived = true,
        });
        if outlived {
            say("warning: some processes outlived SIGKILL");
        }
        for s in &running {
            self.dir.clear_pid(s.name());
        }
    }

    fn kill(&self, user: &str, signal: Option<&str>) -> Result<ExitCode> {
        let sig = match signal {
            Some(s) => crate::signal::parse(s)?,
            None => Signal::SIGKILL,
        };
        let mut killed: Vec<Detached> = Vec::new();
        for name in self.resolve(user)? {
            if let Some(mut service) = self.dir.detached(&name) {
                stop::Stoppable::signal(&mut service, sig)?;
                say(&format!(
                    "sent {} to {name} (pid {})",
                    sig.as_str(),
                    service.pid()
                ));
                killed.push(service);
            }
        }
        if killed.is_empty() {
            return Err(Error::Invalid(format!(
                "{} is not running (make ps shows what runs)",
                worker_label(user)
            )));
        }
        if sig == Signal::SIGKILL {
            let start = Instant::now();
            while killed.iter_mut().any(stop::Stoppable::running) {
                if start.elapsed() > AFTER_KILL {
                    let names: Vec<&str> = killed.iter().map(Detached::name).collect();
                    return Err(Error::Invalid(format!(
                        "{} still runs after SIGKILL",
                        names.join(" ")
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            for s in &killed {
                self.dir.clear_pid(s.name());
                self.dir
                    .note(s.name(), &format!("{} killed with SIGKILL", s.name()))?;
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    fn restart(&self, user: &str) -> Result<ExitCode> {
        let names = self.resolve(user)?;
        self.stop(&names);
        for name in &names {
            let env = match self.dir.saved_env(name)? {
                Some(env) => env,
                None => self.save_env(name)?,
            };
            let service = self.start_service(name, &env)?;
            say(&format!(
                "restarted {name} (pid {}), log {}",
                service.pid(),
                self.dir.log(name).display()
            ));
        }
        self.check_started(&names)?;
        Ok(ExitCode::SUCCESS)
    }

    fn ps(&self) -> Result<()> {
        let names = self.known();
        if names.is_empty() {
            println!("nothing started (state in {})", self.dir.data().display());
            return Ok(());
        }
        println!(
            "{:<12} {:<11} {:<8} {:<9} LOG",
            "NAME", "ROLE", "PID", "STATE"
        );
        for name in names {
            let role = plan::role_of(&name).map_or("?", Role::as_str);
            let (pid, state) = match self.dir.running(&name) {
                Some(pid) => (pid.to_string(), "running"),
                None => ("-".to_owned(), "stopped"),
            };
            let log = self.dir.log(&name);
            println!(
                "{name:<12} {role:<11} {pid:<8} {state:<9} {}",
                log.display()
            );
        }
        Ok(())
    }

    fn logs(&self, args: &LogsArgs) -> Result<ExitCode> {
        let mut names = match &args.worker {
            Some(user) => self.resolve(user)?,
            None => {
                let mut all = self.known();
                let planned: Vec<String> = (self.planned().into_iter())
                    .filter(|n| !all.contains(n))
                    .collect();
                all.extend(planned);
                all
            }
        };
        names.retain(|n| self.dir.log(n).exists());
        if names.is_empty() {
            return Err(Error::Invalid(format!(
                "no logs yet in {}",
                self.dir.log_dir().display()
            )));
        }
        if args.follow == 0 {
            for name in &names {
                print!(
                    "{}",
                    follow::last_lines(&self.dir.log(name), args.tail, &prefix(name, None))
                );
            }
            return Ok(ExitCode::SUCCESS);
        }
        for name in &names {
            let from = follow::From::LastLines(args.tail);
            // Detached: they follow until Ctrl-C ends this process.
            drop(Follower::start(
                &self.dir.log(name),
                from,
                prefix(name, None),
            ));
        }
        loop {
            std::thread::park();
        }
    }

    /// Replaces this process with `batchline ARGS` (the environment, `.env`
    /// included, passes on as it is); returns only if that fails.
    fn exec(&self, args: &[String]) -> Error {
        let source = std::process::Command::new(&self.bin).args(args).exec();
        Error::spawn(&self.bin, args)(source)
    }
}

/// `[name] `, coloured per service on a terminal.
fn prefix(name: &str, color: Option<usize>) -> String {
    const COLORS: [u8; 6] = [36, 33, 35, 32, 34, 31];
    match color {
        Some(i) => format!("\x1b[{}m[{name}]\x1b[0m ", COLORS[i % COLORS.len()]),
        None => format!("[{name}] "),
    }
}

/// How the user's `N` reads in a message: `worker-2`, `worker-1-2`, `runner`.
fn worker_label(user: &str) -> String {
    if user.starts_with("worker-") || user == "runner" {
        user.to_owned()
    } else {
        format!("worker-{user}")
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
