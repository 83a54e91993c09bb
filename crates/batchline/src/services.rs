//! The long-running stages: build each stage's config from the options and
//! run it until Ctrl-C / SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::RabbitBroker;
use pipeline::aggregator::{self, AggregatorSettings};
use pipeline::executor::{self, ExecutorSettings, cores};
use pipeline::health::Health;
use pipeline::telemetry::StageStats;
use pipeline::verifier::{self, LineSink, VerifierSettings};
use store::PgStore;
use tokio_util::sync::CancellationToken;

use crate::cli::{DemoArgs, Global, WorkloadKind};
use crate::{connect, observe, shutdown};

/// What every stage and the web console start with: the probes and
/// metrics on `METRICS_ADDR`, the signal handler, and the connections (the
/// process is then `connected`; a stage's runtime marks it `consuming`).
pub(crate) struct Started {
    pub(crate) health: Health,
    pub(crate) token: CancellationToken,
    pub(crate) store: PgStore,
    pub(crate) broker: RabbitBroker,
}

pub(crate) async fn start(g: &Global) -> anyhow::Result<Started> {
    let (health, token, store) = start_without_broker(g).await?;
    let broker = connect::broker(g, &store).await?;
    health.set_ready("connected", true);
    Ok(Started {
        health,
        token,
        store,
        broker,
    })
}

/// As [`start`], up to the store: for the web console, which works with
/// Postgres alone.
pub(crate) async fn start_without_broker(
    g: &Global,
) -> anyhow::Result<(Health, CancellationToken, PgStore)> {
    let health = Health::new();
    observe::init_metrics(g.metrics_addr, &health).await?;
    let token = shutdown::on_signals();
    let store = connect::store(g).await?;
    Ok((health, token, store))
}

pub async fn executor(g: &Global, settings: &ExecutorSettings) -> anyhow::Result<ExitCode> {
    let s = start(g).await?;
    let stats = StageStats::new("executor");
    executor::run(
        s.broker,
        s.store,
        settings.clone(),
        stats,
        s.health,
        s.token,
    )
    .await
    .context("executor stopped")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn aggregator(g: &Global, settings: &AggregatorSettings) -> anyhow::Result<ExitCode> {
    let s = start(g).await?;
    connect::warn_if_rabbitmq_too_old(&s.broker).await;
    let dir = g.worker_data_dir.join("aggregator");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let stats = StageStats::new("aggregator");
    let settings = settings.clone();
    aggregator::run(s.broker, s.store, dir, settings, stats, s.health, s.token)
        .await
        .context("aggregator stopped")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verifier(g: &Global, settings: &VerifierSettings) -> anyhow::Result<ExitCode> {
    let s = start(g).await?;
    let stats = StageStats::new("verifier");
    let settings = settings.clone();
    verifier::run(
        s.broker,
        s.store,
        settings,
        stdout_sink(),
        stats,
        s.health,
        s.token,
    )
    .await
    .context("verifier stopped")?;
    Ok(ExitCode::SUCCESS)
}

/// Verdict lines go to stdout, flushed line by line.
pub fn stdout_sink() -> LineSink {
    Arc::new(|line: &str| {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    })
}

pub async fn demo(g: &Global, args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let cfg = pipeline::demo::DemoConfig {
        dir: g.worker_data_dir.join("demo"),
        batches: args.batches,
        runs: args.runs,
        chunk_size: args.chunk_size,
        workload: match args.workload {
            WorkloadKind::Bingo => workload::WorkloadSpec::bingo_default(),
            WorkloadKind::Sum => workload::WorkloadSpec::Sum,
        },
        concurrency: cores(),
        duplicates: args.duplicates,
        timeout: Duration::from_secs(args.timeout_s.max(1)),
    };
    println!(
        "batchline demo: {} batches of {} {} runs, the whole pipeline in this process \
         (in-process broker, SQLite, aggregator state in CSV files under {}); its logs: -v or RUST_LOG=info",
        cfg.batches,
        cfg.runs,
        cfg.workload.name(),
        cfg.dir.display()
    );
    let report = pipeline::demo::run(cfg, stdout_sink(), stdout_sink())
        .await
        .context("demo failed")?;
    println!("{report}");
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
