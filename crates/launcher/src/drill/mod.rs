//! The drill of `make up` as local processes: `batchline stack up|up-detached|
//! down|kill|restart|ps|logs|cli|data-dir` (`docs/drill.md` is the user's
//! guide; `scripts/stack.sh` picks this mode or Docker Compose).
//!
//! - `plan`: the services (`worker-1` executor ×`EXECUTORS`, `worker-2`
//!   aggregator, `worker-3` verifier, `runner`), their names and metrics ports;
//! - `dotenv`: `.env` applied without overriding the environment;
//! - `commands`: what each subcommand does, on [`crate::detached`] services.
//!
//! The settings are clap arguments with `env`, so `batchline stack --help`
//! shows them with their defaults, and `.env.example` is checked against it.

mod commands;
pub mod dotenv;
pub mod plan;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::detached::{MARKER, RunDir};
use crate::env::{Env, env_names};
use crate::error::{Result, report};
use plan::Role;

/// `batchline stack`: the settings and the subcommand.
#[derive(Debug, Args)]
pub struct StackArgs {
    #[command(flatten)]
    pub settings: DrillSettings,
    #[command(subcommand)]
    pub command: StackCommand,
}

/// What the drill runs. They come from the environment (and `.env`); the
/// defaults make a run of about a minute with one executor, time enough to
/// kill worker-2 mid-batch.
#[derive(Debug, Clone, Args)]
pub struct DrillSettings {
    /// Executor processes: worker-1, or worker-1-1 … worker-1-N.
    #[arg(long, env = "EXECUTORS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub executors: u16,
    /// Aggregator replicas: worker-2, or worker-2-1 … worker-2-N. On one
    /// host they share the data directory, partition by partition.
    #[arg(long, env = "AGGREGATORS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub aggregators: u16,
    /// 0 starts the workers only; 1 also the runner.
    #[arg(long, env = "RUNNER", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub runner: u8,
    /// Batches the runner submits.
    #[arg(long, env = "NUM_BATCHES", default_value_t = 3)]
    pub num_batches: u32,
    /// Runs per batch the runner submits.
    #[arg(long, env = "RUNS_PER_BATCH", default_value_t = 20_000)]
    pub runs_per_batch: u64,
    /// Runs per chunk of the runner's batches.
    #[arg(long, env = "CHUNK_SIZE", default_value_t = 1_000)]
    pub chunk_size: u32,
    /// Sleep per run in the executors, so the drill is watchable (0 for real work).
    #[arg(long, env = "SIMULATION_DELAY_MS", default_value_t = 2)]
    pub simulation_delay_ms: u64,
    /// Seconds between SIGTERM and SIGKILL when stopping a service.
    #[arg(long, env = "STOP_TIMEOUT", default_value_t = 35)]
    pub stop_timeout: u64,
    /// The batchline binary the services run (default: this one).
    #[arg(long, env = "BATCHLINE_BIN")]
    pub bin: Option<PathBuf>,
    /// Why this mode runs (scripts/stack.sh says).
    #[arg(
        long,
        env = "STACK_MODE_WHY",
        hide = true,
        default_value = "batchline stack"
    )]
    pub mode_why: String,
    /// Milliseconds after a start before checking that a service still runs.
    #[arg(
        long,
        env = "STACK_START_CHECK_MS",
        hide = true,
        default_value_t = 1_500
    )]
    pub start_check_ms: u64,
}

#[derive(Debug, Subcommand)]
pub enum StackCommand {
    /// Start the services and follow their logs, each line prefixed [worker-N]; Ctrl-C stops them all.
    Up,
    /// Start the services in the background and print what runs.
    UpDetached,
    /// Stop everything the stack started (SIGTERM, then SIGKILL after STOP_TIMEOUT s).
    Down,
    /// Send SIGKILL (or SIGNAL) to worker-N: N is 1, 2, 3, 1-K (one executor) or runner.
    Kill {
        /// 1, 2, 3, 1-K or runner (or a full name: worker-2).
        worker: String,
        /// KILL, TERM, STOP, CONT, … (with or without SIG).
        signal: Option<String>,
    },
    /// Stop worker-N if it runs, then start it again with the environment it was first started with.
    Restart {
        /// 1, 2, 3, 1-K or runner.
        worker: String,
    },
    /// Which services run, their pids and log files.
    Ps,
    /// Follow the logs of every service, or of worker-N.
    Logs(LogsArgs),
    /// Run `batchline ARGS` with the stack's environment (metadata, status, results, …).
    Cli {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Print the state directory (WORKER_DATA_DIR, absolute).
    DataDir,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// 1, 2, 3, 1-K or runner; every service when unset.
    pub worker: Option<String>,
    /// Lines of each log to show first.
    #[arg(long, env = "TAIL", default_value_t = 100)]
    pub tail: usize,
    /// 0: print and exit; 1: keep following.
    #[arg(long, env = "FOLLOW", default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub follow: u8,
}

/// Variables a service reads outside clap: logging, backtraces, colours,
/// the host name in worker ids.
const PROCESS_VARS: [&str; 4] = ["RUST_LOG", "RUST_BACKTRACE", "NO_COLOR", "HOSTNAME"];

/// Runs one `batchline stack` command. `cli` is the binary's command line
/// (every `env` it names is passed on to the services); `worker_data_dir`
/// and `metrics_addr` are its global options. Errors are printed as
/// `[stack] error: …`.
pub fn run(
    args: &StackArgs,
    cli: &clap::Command,
    worker_data_dir: &Path,
    metrics_addr: Option<SocketAddr>,
) -> ExitCode {
    let outcome = dotenv::reexec_with(Path::new(".env"), |w| say(&format!("warning: {w}")))
        .and_then(|()| Drill::new(&args.settings, cli, worker_data_dir, metrics_addr))
        .and_then(|drill| drill.command(&args.command));
    outcome.unwrap_or_else(|e| {
        say(&format!("error: {}", report(&e)));
        ExitCode::FAILURE
    })
}

/// One line for the user, on stderr.
fn say(msg: &str) {
    eprintln!("[stack] {msg}");
}

/// What every command works with.
struct Drill<'a> {
    settings: &'a DrillSettings,
    dir: RunDir,
    bin: PathBuf,
    /// The variables passed on to the services (when set).
    vars: BTreeSet<String>,
    metrics_addr: Option<SocketAddr>,
}

impl<'a> Drill<'a> {
    fn new(
        settings: &'a DrillSettings,
        cli: &clap::Command,
        worker_data_dir: &Path,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Drill<'a>> {
        let bin = match &settings.bin {
            Some(bin) => bin.clone(),
            None => {
                std::env::current_exe().map_err(crate::Error::io("cannot find", "this binary"))?
            }
        };
        let mut vars = env_names(cli);
        vars.extend(PROCESS_VARS.map(String::from));
        vars.extend(broker::rabbit::ENV_VARS.map(String::from));
        Ok(Drill {
            settings,
            dir: RunDir::open(worker_data_dir)?,
            bin,
            vars,
            metrics_addr,
        })
    }

    fn counts(&self) -> plan::Counts {
        plan::Counts {
            executors: usize::from(self.settings.executors),
            aggregators: usize::from(self.settings.aggregators),
            runner: self.settings.runner == 1,
        }
    }

    /// The environment `name` starts with: what this process has of the
    /// services' variables, the drill's settings, its own metrics port.
    fn env_for(&self, name: &str) -> Env {
        let mut env = Env::new();
        for var in &self.vars {
            // Per process, set below or left to each process's default.
            if matches!(var.as_str(), "METRICS_ADDR" | "WORKER_ID" | MARKER) {
                continue;
            }
            if let Some(v) = std::env::var(var).ok().filter(|v| !v.is_empty()) {
                env.set(var, v);
            }
        }
        let s = self.settings;
        env.set("WORKER_DATA_DIR", self.dir.data().display().to_string())
            .set("EXECUTORS", s.executors.to_string())
            .set("AGGREGATORS", s.aggregators.to_string())
            .set("NUM_BATCHES", s.num_batches.to_string())
            .set("RUNS_PER_BATCH", s.runs_per_batch.to_string())
            .set("CHUNK_SIZE", s.chunk_size.to_string())
            .set("SIMULATION_DELAY_MS", s.simulation_delay_ms.to_string())
            // Logs go to files: no ANSI colours unless asked for.
            .set_default("NO_COLOR", "1");
        if let Ok(host) = nix::unistd::gethostname() {
            env.set_default("HOSTNAME", host.to_string_lossy());
        }
        if let Some(addr) = plan::metrics_addr(name, self.metrics_addr) {
            env.set("METRICS_ADDR", addr.to_string());
        }
        env
    }

    /// The command line of a service with `role`, from its environment.
    fn args_for(&self, role: Role, env: &Env) -> Vec<String> {
        let get = |k: &str, default: String| env.get(k).map_or(default, str::to_owned);
        let s = self.settings;
        match role {
            Role::Runner => vec![
                "submit".into(),
                "--count".into(),
                get("NUM_BATCHES", s.num_batches.to_string()),
                "--runs".into(),
                get("RUNS_PER_BATCH", s.runs_per_batch.to_string()),
                "--chunk-size".into(),
                get("CHUNK_SIZE", s.chunk_size.to_string()),
                "--wait".into(),
                // Its size was set on purpose (NUM_BATCHES, RUNS_PER_BATCH):
                // no question about a long estimate, there is nobody to answer.
                "--yes".into(),
            ],
            other => vec![other.as_str().into()],
        }
    }
}
