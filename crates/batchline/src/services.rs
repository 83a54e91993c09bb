//! The long-running stages: build each stage's config from the options and
//! run it until Ctrl-C / SIGTERM.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use broker::RabbitBroker;
use pipeline::aggregator::{self, AggregatorConfig};
use pipeline::executor::{self, ExecutorConfig};
use pipeline::faults::Faults;
use pipeline::health::{Health, Watched};
use pipeline::sweeper::SweeperConfig;
use pipeline::telemetry::StageStats;
use pipeline::verifier::{self, LineSink, VerifierConfig};
use store::PgStore;

use crate::cli::{
    AggregatorArgs, DemoArgs, ExecutorArgs, FaultArgs, Global, VerifierArgs, WorkloadKind,
};
use crate::{connect, observe, shutdown};

fn faults(args: &FaultArgs) -> anyhow::Result<Faults> {
    Ok(Faults::parse(&args.fail_chunks, &args.crash_points)?)
}

/// Connects the stage's store and broker and marks the process connected;
/// the broker it returns marks it consuming once the stage subscribes.
async fn connect_watched(
    g: &Global,
    health: &Health,
) -> anyhow::Result<(PgStore, Watched<RabbitBroker>)> {
    let store = connect::store(g).await?;
    let broker = connect::broker(g).await?;
    health.set_ready("connected", true);
    Ok((store, Watched::new(broker, health.clone())))
}

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub async fn executor(g: &Global, args: &ExecutorArgs) -> anyhow::Result<ExitCode> {
    let faults = faults(&args.faults)?;
    let health = Health::new();
    observe::init_metrics(g.metrics_addr, &health).await?;
    let token = shutdown::on_signals();
    let (store, broker) = connect_watched(g, &health).await?;
    let concurrency = args.concurrency.unwrap_or_else(cores).max(1);
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "local".into());
    let cfg = ExecutorConfig {
        worker_id: args
            .worker_id
            .clone()
            .unwrap_or_else(|| format!("executor-{host}-{}", std::process::id())),
        concurrency,
        prefetch: args
            .prefetch
            .unwrap_or_else(|| pipeline::executor::default_prefetch(concurrency)),
        lease: Duration::from_secs(args.lease_s.max(1)),
        max_attempts: args.max_attempts.max(1),
        simulation_delay: Duration::from_millis(args.simulation_delay_ms),
        faults,
        sweeper: (!args.no_sweeper).then(|| SweeperConfig {
            interval: Duration::from_secs(args.sweep_interval_s.max(1)),
            lease_grace: Duration::from_secs(args.lease_s.max(1) / 3 + 1),
            stall_deadline: Duration::from_secs(args.stall_deadline_s.max(1)),
            ..SweeperConfig::default()
        }),
        drain_timeout: Duration::from_secs(30),
    };
    executor::run(broker, store, cfg, StageStats::new("executor"), token)
        .await
        .context("executor stopped")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn aggregator(g: &Global, args: &AggregatorArgs) -> anyhow::Result<ExitCode> {
    let faults = faults(&args.faults)?;
    let health = Health::new();
    observe::init_metrics(g.metrics_addr, &health).await?;
    let token = shutdown::on_signals();
    let (store, broker) = connect_watched(g, &health).await?;
    let cfg = AggregatorConfig {
        data_dir: g.worker_data_dir.join("aggregator"),
        prefetch: args.prefetch.max(1),
        faults,
    };
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create {}", cfg.data_dir.display()))?;
    aggregator::run(broker, store, cfg, StageStats::new("aggregator"), token)
        .await
        .context("aggregator stopped")?;
    Ok(ExitCode::SUCCESS)
}

pub async fn verifier(g: &Global, args: &VerifierArgs) -> anyhow::Result<ExitCode> {
    let faults = faults(&args.faults)?;
    let health = Health::new();
    observe::init_metrics(g.metrics_addr, &health).await?;
    let token = shutdown::on_signals();
    let (store, broker) = connect_watched(g, &health).await?;
    let cfg = VerifierConfig {
        spot_checks: args.spot_checks,
        faults,
        ..VerifierConfig::default()
    };
    verifier::run(
        broker,
        store,
        cfg,
        stdout_sink(),
        StageStats::new("verifier"),
        token,
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
    eprintln!(
        "batchline demo: {} batches x {} runs, in-process broker, SQLite and CSV state in {}",
        cfg.batches,
        cfg.runs,
        cfg.dir.display()
    );
    let report = pipeline::demo::run(cfg, stdout_sink())
        .await
        .context("demo failed")?;
    println!("{report}");
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
