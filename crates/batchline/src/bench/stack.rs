//! One isolated pipeline per scenario: its own Postgres schema, queue prefix
//! and state directory, the stages as child processes of this very binary,
//! and the teardown (SIGTERM, peak RSS, metrics, schema and queues dropped).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use broker::{RabbitBroker, RabbitConfig};
use serde::Serialize;
use store::{PgStore, Store};
use tokio::process::{Child, Command};

use super::metrics::{self, StageMetrics};
use crate::cli::Global;

/// Env vars of the stages that the bench sets itself (or must not leak in
/// from the caller's shell and skew a measurement).
const SCRUBBED_ENV: &[&str] = &[
    "CONCURRENCY",
    "PREFETCH",
    "CHUNKS_IN_FLIGHT",
    "COMMIT_WINDOW",
    "SCAN_PARTS",
    "DRAIN_TIMEOUT_S",
    "SIMULATION_DELAY_MS",
    "FAIL_CHUNKS",
    "CRASH_POINTS",
    "WORKER_ID",
    "NO_SWEEPER",
    "LEASE_S",
    "MAX_ATTEMPTS",
    "SPOT_CHECKS",
    "LOG_FORMAT",
];

/// Where and against what the bench runs; shared by all scenarios.
#[derive(Debug)]
pub struct Bench {
    pub exe: PathBuf,
    pub database_url: String,
    pub rabbitmq_url: Option<String>,
    /// Queue arguments every process must declare alike (RabbitMQ refuses a
    /// redeclare with other arguments).
    pub retry_delay: Duration,
    pub delivery_limit: u32,
    /// `WORKER_DATA_DIR/bench`: logs and the scenarios' state directories.
    pub root: PathBuf,
    seq: AtomicU32,
}

impl Bench {
    pub fn new(global: &Global) -> anyhow::Result<Self> {
        let worker_data_dir = &global.worker_data_dir;
        let exe = std::env::current_exe().context("cannot find this binary to spawn the stages")?;
        let root = worker_data_dir.join("bench");
        // The previous run's logs go; state directories go with their scenario.
        let logs = root.join("logs");
        if logs.exists() {
            std::fs::remove_dir_all(&logs)
                .with_context(|| format!("cannot clear {}", logs.display()))?;
        }
        std::fs::create_dir_all(&logs)
            .with_context(|| format!("cannot create {}", logs.display()))?;
        Ok(Self {
            exe,
            database_url: global.database_url.clone(),
            rabbitmq_url: global.rabbitmq_url.clone(),
            retry_delay: Duration::from_millis(global.retry_delay_ms),
            delivery_limit: global.delivery_limit,
            root,
            seq: AtomicU32::new(0),
        })
    }

    /// A fresh schema, queue prefix and state directory, connected.
    pub async fn scenario(&self, label: &str) -> anyhow::Result<Scenario> {
        let n = self.seq.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let schema = format!("bench_{pid}_{n}");
        let prefix = format!("bench-{pid}-{n}");
        // Unique, so two benches sharing WORKER_DATA_DIR never share an aggregator's state.
        let dir = self.root.join(format!("{label}-{pid}-{n}-state"));
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let store = PgStore::connect_with_schema(&self.database_url, &schema)
            .await
            .context("cannot connect to Postgres (DATABASE_URL)")?;
        store.migrate().await.context("cannot apply migrations")?;
        let mut config = RabbitConfig::from_env();
        if let Some(url) = &self.rabbitmq_url {
            config.url = url.clone();
        }
        config.prefix = prefix.clone();
        config.retry_delay = self.retry_delay;
        config.delivery_limit = self.delivery_limit;
        let broker = match RabbitBroker::connect(config).await {
            Ok(b) => b,
            Err(e) => {
                let _ = store.drop_schema().await;
                return Err(e).context(
                    "cannot connect to RabbitMQ (RABBITMQ_URL or RABBITMQ_HOST/PORT/USER/PASS)",
                );
            }
        };
        Ok(Scenario {
            label: label.to_owned(),
            schema,
            prefix,
            dir,
            logs: self.root.join("logs"),
            exe: self.exe.clone(),
            database_url: self.database_url.clone(),
            rabbitmq_url: self.rabbitmq_url.clone(),
            retry_delay: self.retry_delay,
            delivery_limit: self.delivery_limit,
            store,
            broker,
            stages: Vec::new(),
        })
    }
}

/// One scenario's private pipeline.
#[derive(Debug)]
pub struct Scenario {
    pub label: String,
    schema: String,
    prefix: String,
    dir: PathBuf,
    logs: PathBuf,
    exe: PathBuf,
    database_url: String,
    rabbitmq_url: Option<String>,
    retry_delay: Duration,
    delivery_limit: u32,
    pub store: PgStore,
    pub broker: RabbitBroker,
    stages: Vec<Stage>,
}

/// A running stage process.
#[derive(Debug)]
struct Stage {
    name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
    metrics_addr: SocketAddr,
    ready_marker: &'static str,
}

/// What a stage left behind when it was stopped.
#[derive(Clone, Debug, Serialize)]
pub struct StageReport {
    pub name: String,
    /// `VmHWM` just before the stop, in MiB.
    pub peak_rss_mb: f64,
    pub metrics: StageMetrics,
    /// Exited 0 after SIGTERM within the drain time.
    pub clean_exit: bool,
    pub log: PathBuf,
    /// WARN and ERROR lines the stage logged (a broker restart, a retried
    /// statement…): a scenario with any was disturbed.
    pub warnings: Vec<String>,
}

impl Scenario {
    /// Starts `batchline <args…>` as the stage `name` and waits until it
    /// logs `ready_marker` (so start-up is not timed).
    pub async fn spawn(
        &mut self,
        name: &str,
        args: &[String],
        ready_marker: &'static str,
    ) -> anyhow::Result<()> {
        let metrics_addr = free_local_addr()?;
        let log = self.logs.join(format!("{}-{name}.log", self.label));
        let stderr = std::fs::File::create(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        // Only the verifier prints on stdout (its verdict lines).
        let stdout = std::fs::File::create(self.logs.join(format!("{}-{name}.out", self.label)))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .env("DATABASE_URL", &self.database_url)
            .env("DB_SCHEMA", &self.schema)
            .env("QUEUE_PREFIX", &self.prefix)
            .env("WORKER_DATA_DIR", &self.dir)
            .env("METRICS_ADDR", metrics_addr.to_string())
            .env("RETRY_DELAY_MS", self.retry_delay.as_millis().to_string())
            .env("DELIVERY_LIMIT", self.delivery_limit.to_string())
            .env("RUST_LOG", "info,sqlx=warn,lapin=warn")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true);
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        if let Some(url) = &self.rabbitmq_url {
            cmd.env("RABBITMQ_URL", url);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let pid = child
            .id()
            .context("the stage exited before its pid was read")?;
        self.stages.push(Stage {
            name: name.to_owned(),
            child,
            pid,
            log,
            metrics_addr,
            ready_marker,
        });
        Ok(())
    }

    /// Waits until every stage logged its ready marker.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        for stage in &mut self.stages {
            loop {
                let log = std::fs::read_to_string(&stage.log).unwrap_or_default();
                if log.contains(stage.ready_marker) {
                    break;
                }
                if let Some(status) = stage.child.try_wait()? {
                    anyhow::bail!(
                        "{} exited ({status}) before it was ready:\n{}",
                        stage.name,
                        tail(&log, 15)
                    );
                }
                if Instant::now() > deadline {
                    anyhow::bail!(
                        "{} not ready after {timeout:?}:\n{}",
                        stage.name,
                        tail(&log, 15)
                    );
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(())
    }

    /// Stage names and pids, and this process as `bench` (it submits and polls).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = self
            .stages
            .iter()
            .map(|s| (s.name.clone(), s.pid))
            .collect();
        pids.push(("bench".into(), std::process::id()));
        pids
    }

    /// Fails if a stage died: a scenario must not wait for a dead pipeline.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for stage in &mut self.stages {
            if let Some(status) = stage.child.try_wait()? {
                let log = std::fs::read_to_string(&stage.log).unwrap_or_default();
                anyhow::bail!(
                    "{} exited ({status}) during the scenario:\n{}",
                    stage.name,
                    tail(&log, 15)
                );
            }
        }
        Ok(())
    }

    /// Stops every stage: peak RSS and metrics first, then SIGTERM and a
    /// bounded wait for the drain (SIGKILL after it).
    pub async fn stop_all(&mut self) -> Vec<StageReport> {
        let mut reports = Vec::new();
        for stage in &mut self.stages {
            let peak_rss_mb = peak_rss_mb(stage.pid).unwrap_or(f64::NAN);
            let metrics = match metrics::scrape(stage.metrics_addr).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(stage = %stage.name, error = %e, "no metrics from the stage");
                    StageMetrics::default()
                }
            };
            signal_term(stage.pid).await;
            reports.push(StageReport {
                name: stage.name.clone(),
                peak_rss_mb,
                metrics,
                clean_exit: false,
                log: stage.log.clone(),
                warnings: Vec::new(),
            });
        }
        for (stage, report) in self.stages.iter_mut().zip(reports.iter_mut()) {
            match tokio::time::timeout(Duration::from_secs(60), stage.child.wait()).await {
                Ok(Ok(status)) => report.clean_exit = status.success(),
                Ok(Err(e)) => {
                    tracing::warn!(stage = %stage.name, error = %e, "cannot wait for the stage")
                }
                Err(_) => {
                    tracing::warn!(stage = %stage.name, "stage did not stop within 60 s: killing it");
                    let _ = stage.child.kill().await;
                }
            }
        }
        for report in &mut reports {
            let log = std::fs::read_to_string(&report.log).unwrap_or_default();
            report.warnings = warnings(&log);
        }
        self.stages.clear();
        reports
    }

    /// Stops what still runs, then drops the queues, the schema and the
    /// state directory (the logs stay).
    pub async fn teardown(mut self) -> anyhow::Result<()> {
        if !self.stages.is_empty() {
            self.stop_all().await;
        }
        let queues = self.broker.delete_topology().await;
        let schema = self.store.drop_schema().await;
        let dir = std::fs::remove_dir_all(&self.dir);
        queues.context("cannot delete the scenario's queues")?;
        schema.context("cannot drop the scenario's schema")?;
        dir.with_context(|| format!("cannot remove {}", self.dir.display()))?;
        Ok(())
    }
}

/// A local port nobody listens on right now, for a child's metrics endpoint.
fn free_local_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free local port")?;
    Ok(listener.local_addr()?)
}

/// The stages drain and exit 0 on SIGTERM. `kill(1)` sends it, since the
/// workspace forbids the `unsafe` a direct `libc::kill` needs.
async fn signal_term(pid: u32) {
    let sent = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    if !sent.is_ok_and(|s| s.success()) {
        tracing::warn!(pid, "kill -TERM failed; the stage may have exited already");
    }
}

/// Peak resident set (`VmHWM`) of a live process, in MiB.
pub fn peak_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_hwm_kb(&status).map(|kb| kb as f64 / 1024.0)
}

fn parse_vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The WARN and ERROR lines of a stage's log (text format), but sqlx's
/// "slow statement" notices: the verifier's scan of a large batch is slow by
/// nature, and the phase timings already say how slow.
fn warnings(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .filter(|l| !l.contains("slow statement"))
        .map(str::to_owned)
        .collect()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm_of_this_process() {
        let mb = peak_rss_mb(std::process::id()).unwrap();
        assert!(mb > 0.0, "VmHWM {mb}");
        assert_eq!(
            parse_vm_hwm_kb("Name:\tx\nVmPeak:\t  9 kB\nVmHWM:\t   1234 kB\n"),
            Some(1234)
        );
        assert_eq!(parse_vm_hwm_kb("Name:\tx\n"), None);
    }

    #[test]
    fn warnings_are_warn_and_error_lines() {
        let log = "2026 INFO a\n2026 WARN b\n2026 ERROR c\nWARNING-free\n2026 WARN x: slow statement: …\n";
        assert_eq!(warnings(log), ["2026 WARN b", "2026 ERROR c"]);
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
