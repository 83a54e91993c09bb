//! Command-line interface: every option also comes from an environment
//! variable (`.env.example` lists them all).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use pipeline::aggregator::AggregatorSettings;
use pipeline::executor::ExecutorSettings;
use pipeline::verifier::VerifierSettings;

/// batchline: a stateful batch-processing pipeline. Submit batches of
/// simulation runs; executors run them; the aggregator folds the results
/// with crash-proof state; the verifier prints SUCCESS or FAILURE per batch.
#[derive(Debug, Parser)]
#[command(name = "batchline", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the command line. An environment variable that is set but
    /// empty (as `.env` files and compose pass them) counts as unset, so
    /// `CONCURRENCY=` means "the default", not "an invalid empty number".
    pub fn parse_env_aware() -> Self {
        let command = ignore_empty_env(Cli::command());
        let matches = command.get_matches();
        match Cli::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        }
    }
}

fn ignore_empty_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let empty = arg
                .get_env()
                .is_some_and(|var| std::env::var_os(var).is_some_and(|v| v.is_empty()));
            if empty { arg.env(None) } else { arg }
        })
        .mut_subcommands(ignore_empty_env)
}

#[derive(Debug, Args)]
pub struct Global {
    /// Postgres URL.
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        hide_env_values = true
    )]
    pub database_url: String,
    /// Postgres schema to use (created if missing); isolates several pipelines in one database.
    #[arg(long, global = true, env = "DB_SCHEMA")]
    pub db_schema: Option<String>,
    /// RabbitMQ URL; when unset, RABBITMQ_HOST/PORT/USER/PASS are used.
    #[arg(long, global = true, env = "RABBITMQ_URL", hide_env_values = true)]
    pub rabbitmq_url: Option<String>,
    /// Prefix of the queue names (`PREFIX.work`, `PREFIX.results`, …).
    #[arg(long, global = true, env = "QUEUE_PREFIX", default_value = broker::rabbit::DEFAULT_PREFIX)]
    pub queue_prefix: String,
    /// Delay before a failed or leased chunk is tried again.
    #[arg(long, global = true, env = "RETRY_DELAY_MS", default_value_t = broker::DEFAULT_RETRY_DELAY_MS)]
    pub retry_delay_ms: u64,
    /// Returns of one message to its queue before RabbitMQ dead-letters it.
    #[arg(long, global = true, env = "DELIVERY_LIMIT", default_value_t = broker::DEFAULT_DELIVERY_LIMIT)]
    pub delivery_limit: u32,
    /// Runtime state directory (the aggregator's CSVs live in DIR/aggregator).
    #[arg(
        long,
        global = true,
        env = "WORKER_DATA_DIR",
        default_value = "worker-data"
    )]
    pub worker_data_dir: PathBuf,
    /// Aggregator partitions of a new database (16 unless set); fixed once
    /// batches exist (see docs/operations.md).
    #[arg(long, global = true, env = "PARTITIONS")]
    pub partitions: Option<u16>,
    /// Seconds a process waits for Postgres and RabbitMQ to accept its
    /// first connection (retrying with backoff, one log line per wait)
    /// before it gives up; 0 tries once.
    #[arg(long, global = true, env = "CONNECT_TIMEOUT_S", default_value_t = 60)]
    pub connect_timeout_s: u64,
    /// Log format on stderr.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Serve /metrics (Prometheus), /healthz and /readyz on this address (e.g. 0.0.0.0:9100).
    #[arg(long, global = true, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub secret_files: crate::secrets::SecretFiles,
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    Bingo,
    Sum,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Zero-setup tour: the whole pipeline in one process (in-process broker,
    /// SQLite under worker-data/), with an aggregator crash and rebuild.
    Demo(DemoArgs),
    /// Apply the Postgres migrations (the services also do it at start).
    Migrate,
    /// Create batches and publish their chunks; prints each batch id.
    Submit(SubmitArgs),
    /// Run the executor (worker-1): claims and simulates chunks; runs the sweeper.
    Executor(ExecutorSettings),
    /// Run the aggregator (worker-2): folds chunk results with file-backed state.
    Aggregator(AggregatorSettings),
    /// Run the verifier (worker-3): checks each batch end to end and prints its verdict line.
    Verifier(VerifierSettings),
    /// Show batches with progress, attempts, verdict, elapsed time and runs/s.
    Status(StatusArgs),
    /// Show the batches waiting or running in the order the executors serve them: tenant, priority, share of the executors now, runs/s, time left.
    Queue(QueueArgs),
    /// Show a batch's aggregate: per team win rate, mean and percentiles of points.
    Results(ResultsArgs),
    /// Inspect the aggregator's CSV state: rows, CRC check, duplicates.
    Metadata(MetadataArgs),
    /// Show the aggregator's partitions: owner, epoch, open batches, queue depth, last hand-over.
    Partitions(PartitionsArgs),
    /// Remove finished batches everywhere: run rows, chunks, aggregate, verdict (docs/operations.md, Retention).
    Purge(PurgeArgs),
    /// Stop batches for good: no run starts later than about a second after the cancel commits; each ends CANCELLED with what was done, checked.
    Cancel(CancelArgs),
    /// Measure the pipeline against the real services: simulation limit, end to end, scaling, overhead, aggregator drain, peak RSS.
    Bench(bench::BenchArgs),
    /// The drill's services as local processes (the local mode of `make up`): up, up-detached, down, kill, restart, ps, logs, cli.
    Stack(launcher::drill::StackArgs),
    /// Serve the web console: batches, results as charts, new batch, events, compare; JSON under /api/.
    Web(web::WebArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Runs per batch.
    #[arg(long, env = "RUNS_PER_BATCH")]
    pub runs: i64,
    /// Runs per chunk (the unit of claims, results and state rows).
    #[arg(long, env = "CHUNK_SIZE", default_value_t = pipeline::submit::DEFAULT_CHUNK_SIZE)]
    pub chunk_size: i32,
    /// Seed of the first batch (batch i uses seed + i); random when unset.
    #[arg(long)]
    pub seed: Option<i64>,
    /// Batch name, shown in the verdict line.
    #[arg(long)]
    pub name: Option<String>,
    /// Workload to run.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Bingo)]
    pub workload: WorkloadKind,
    /// Bingo event file (JSON); the built-in Spring League Bingo when unset.
    #[arg(long)]
    pub event: Option<PathBuf>,
    /// Number of batches to create.
    #[arg(long, env = "NUM_BATCHES", default_value_t = 1)]
    pub count: usize,
    /// Who the batches are for: tenants share the executors equally before
    /// the batches of a tenant share its part by weight.
    #[arg(long, env = "TENANT", default_value = store::share::DEFAULT_TENANT)]
    pub tenant: String,
    /// high (weight 4), normal (1) or low (0.25): the batch's part of its
    /// tenant's share of the executors.
    #[arg(long, conflicts_with = "weight")]
    pub priority: Option<String>,
    /// A weight instead of a priority: 0.01 to 100, normal is 1.
    #[arg(long)]
    pub weight: Option<String>,
    #[command(flatten)]
    pub dispatch: pipeline::dispatch::DispatchSettings,
    /// Show progress and end with the verdicts; exits non-zero unless every batch ended SUCCESS (failed or cancelled).
    #[arg(long)]
    pub wait: bool,
    /// Give up waiting after this many seconds (0 = never).
    #[arg(long, default_value_t = 0)]
    pub timeout_s: u64,
    /// Submit without asking when the estimated run time is over an hour
    /// (without a terminal, such a submission is refused unless given).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// One batch (id); the newest batches when unset.
    pub batch: Option<uuid::Uuid>,
    /// How many batches to list.
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["batches", "older_than"])))]
pub struct PurgeArgs {
    /// Batches to purge, by id.
    #[arg(value_name = "BATCH")]
    pub batches: Vec<uuid::Uuid>,
    /// Every batch finished longer ago than this: 30d, 12h, 90m, …
    #[arg(long, value_name = "AGE", value_parser = parse_age, conflicts_with = "batches")]
    pub older_than: Option<std::time::Duration>,
    /// Say what would be purged; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Purge batches that have no verdict yet too (their work in flight is dropped).
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct CancelArgs {
    /// Batches to cancel, by id.
    #[arg(value_name = "BATCH", required = true)]
    pub batches: Vec<uuid::Uuid>,
    /// Why, kept with the batch (default: "cancelled by a person").
    #[arg(long, default_value = "")]
    pub reason: String,
}

fn parse_age(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("{s:?}: {e} (e.g. 30d, 12h, 90m)"))
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PartitionsArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Batch id.
    pub batch: uuid::Uuid,
    /// Print the raw aggregate as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetadataArgs {
    /// Show the rows of one batch (id); all batches' files when unset.
    pub batch: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Batches to submit.
    #[arg(long, default_value_t = 4)]
    pub batches: usize,
    /// Runs per batch.
    #[arg(long, default_value_t = 25_000)]
    pub runs: i64,
    /// Runs per chunk.
    #[arg(long, default_value_t = 1_000)]
    pub chunk_size: i32,
    /// Workload to run.
    #[arg(long, value_enum, default_value_t = WorkloadKind::Bingo)]
    pub workload: WorkloadKind,
    /// Duplicate deliveries injected while the aggregator is down.
    #[arg(long, default_value_t = 5)]
    pub duplicates: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout_s: u64,
    /// Also show the stages' logs on stderr (RUST_LOG chooses them in detail).
    #[arg(short, long)]
    pub verbose: bool,
}
