//! [`BenchArgs`]: the options of `batchline bench`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// A tenth of every size (runs, RSS runs, drained results): for CI and trying it out.
    #[arg(long)]
    pub quick: bool,
    /// Where the results JSON goes.
    #[arg(long, default_value = "bench/results.json")]
    pub out: PathBuf,
    /// Runs of the end-to-end batches (before --quick divides it).
    #[arg(long, default_value_t = 500_000)]
    pub runs: i64,
    /// Runs of the second batch whose peak RSS is compared (before --quick divides it).
    #[arg(long, default_value_t = 2_000_000)]
    pub rss_runs: i64,
    /// Runs per chunk of the end-to-end batches (before --quick divides it).
    #[arg(long, default_value_t = 10_000)]
    pub chunk_size: i32,
    /// Chunk results pre-filled into the results queue for the aggregator drain (before --quick divides it).
    #[arg(long, default_value_t = 100_000)]
    pub drain_results: i32,
    /// The aggregator's commit window in the drain and end-to-end runs.
    #[arg(long, alias = "aggregator-prefetch", default_value_t = 1_000)]
    pub aggregator_commit_window: u16,
    /// Executors' chunks in flight; the executor's default (twice its concurrency) when unset.
    #[arg(long, alias = "executor-prefetch")]
    pub executor_chunks_in_flight: Option<u16>,
    /// Seed of every batch, so all measurements simulate the same runs.
    #[arg(long, default_value_t = 42)]
    pub seed: i64,
    /// Sections to run (all by default): limit, e2e, scaling, sum, aggregator, rss.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Give up on one scenario after this many seconds.
    #[arg(long, default_value_t = 1_800)]
    pub timeout_s: u64,
    /// Before each measurement, wait up to this many seconds for the machine to be idle
    /// (default: 120, and 0 with --quick).
    #[arg(long)]
    pub quiet_wait_s: Option<u64>,
    /// Idle means less than this share of all cores busy.
    #[arg(long, default_value_t = 0.2)]
    pub quiet_below: f64,
}
