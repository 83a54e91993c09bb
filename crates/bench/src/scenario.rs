//! One isolated pipeline per scenario, from the launcher: its own schema,
//! queue prefix and state directory, the stages as child processes of this
//! very binary (each with a metrics endpoint of its own), and what they
//! leave behind when stopped: peak RSS, metrics, clean exit, warnings.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use broker::RabbitBroker;
use launcher::{Env, Fleet, Isolation, Keep, Naming, Services};
use serde::Serialize;
use store::PgStore;

use crate::error::{Error, Result};
use crate::metrics::{self, StageMetrics};

/// How long a stage may drain after SIGTERM before it is killed.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// Where and against what the bench runs; shared by all scenarios.
#[derive(Debug)]
pub struct Bench {
    /// This binary: the stages are its subcommands.
    pub exe: PathBuf,
    pub services: Services,
    /// `WORKER_DATA_DIR/bench`: logs and the scenarios' state directories.
    pub root: PathBuf,
}

impl Bench {
    pub fn new(services: Services, worker_data_dir: &Path) -> Result<Self> {
        let exe =
            std::env::current_exe().map_err(launcher::Error::io("cannot find", "this binary"))?;
        let root = worker_data_dir.join("bench");
        // The previous run's logs go; state directories go with their scenario.
        let logs = root.join("logs");
        if logs.exists() {
            std::fs::remove_dir_all(&logs).map_err(launcher::Error::io("cannot clear", &logs))?;
        }
        std::fs::create_dir_all(&logs).map_err(launcher::Error::io("cannot create", &logs))?;
        Ok(Self {
            exe,
            services,
            root,
        })
    }

    /// Runs `measure` on a fresh scenario named `label`, then stops its
    /// stages and tears it down whatever happened. The measurement and
    /// what the stages left; an error names the scenario.
    pub async fn in_scenario<T>(
        &self,
        label: &str,
        measure: impl AsyncFnOnce(&mut Scenario) -> Result<T>,
    ) -> Result<(T, Vec<StageReport>)> {
        let within = |e: Error| e.in_scenario(label);
        let mut scenario = self.scenario(label).await.map_err(within)?;
        let outcome = measure(&mut scenario).await;
        let stages = scenario.stop_all().await;
        let teardown = scenario.teardown().await;
        let result = outcome.map_err(within)?;
        teardown.map_err(within)?;
        Ok((result, stages))
    }

    /// A fresh schema, queue prefix and state directory, connected.
    async fn scenario(&self, label: &str) -> Result<Scenario> {
        let naming = Naming {
            stem: "bench".into(),
            dir_prefix: format!("{label}-"),
            parent: Some(self.root.clone()),
            partitions: None,
        };
        let isolation = Isolation::create(&self.services, &naming).await?;
        let env = Env::clean_base()
            .with(&isolation.env())
            .with(&Env::from_pairs(&[
                ("RUST_LOG", "info,sqlx=warn,lapin=warn"),
                ("NO_COLOR", "1"),
            ]));
        let fleet = Fleet::new(&self.exe, &self.root.join("logs").join(label), env)?;
        Ok(Scenario {
            label: label.to_owned(),
            isolation: Some(isolation),
            fleet,
            stages: Vec::new(),
        })
    }
}

/// One scenario's private pipeline.
#[derive(Debug)]
pub struct Scenario {
    pub label: String,
    isolation: Option<Isolation>,
    fleet: Fleet,
    stages: Vec<Stage>,
}

/// A stage the scenario started.
#[derive(Debug)]
struct Stage {
    name: String,
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
    fn isolation(&self) -> Result<&Isolation> {
        self.isolation
            .as_ref()
            .ok_or_else(|| Error::Measure(format!("scenario {} was torn down", self.label)))
    }

    /// The scenario's store (its own schema).
    pub fn store(&self) -> Result<&PgStore> {
        Ok(self.isolation()?.store())
    }

    /// The scenario's broker (its own queues).
    pub fn broker(&self) -> Result<&RabbitBroker> {
        Ok(self.isolation()?.broker())
    }

    /// Starts `batchline <args…>` as the stage `name`, serving metrics on a
    /// free local port; [`Scenario::wait_ready`] waits for `ready_marker`.
    pub fn spawn(&mut self, name: &str, args: &[String], ready_marker: &'static str) -> Result<()> {
        let metrics_addr = free_local_addr()?;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env = Env::from_pairs(&[("METRICS_ADDR", metrics_addr.to_string())]);
        self.fleet.spawn(name, &args, &env)?;
        self.stages.push(Stage {
            name: name.to_owned(),
            metrics_addr,
            ready_marker,
        });
        Ok(())
    }

    /// The verifier's stdout lines so far (verdict lines), in order.
    pub fn lines(&self) -> Vec<String> {
        self.fleet.lines()
    }

    /// Where stage `name` logs.
    pub fn log_of(&self, name: &str) -> Result<PathBuf> {
        Ok(self.fleet.get(name)?.log().to_owned())
    }

    /// SIGKILLs stage `name` and starts it again at once, as it was.
    pub fn kill_and_restart(&mut self, name: &str) -> Result<()> {
        Ok(self.fleet.restart(name)?)
    }

    /// What stage `name`'s `/metrics` says now.
    pub async fn scrape(&self, name: &str) -> Result<StageMetrics> {
        let stage = self
            .stages
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::Measure(format!("no stage {name}")))?;
        metrics::scrape(stage.metrics_addr).await
    }

    /// Waits until every stage logged its ready marker (so start-up is not
    /// timed).
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        for stage in &self.stages {
            let proc = self.fleet.get_mut(&stage.name)?;
            tokio::task::block_in_place(|| proc.wait_log_line(stage.ready_marker, timeout))?;
        }
        Ok(())
    }

    /// Stage names and pids, and this process as `bench` (it submits and polls).
    pub fn pids(&self) -> Vec<(String, u32)> {
        let mut pids: Vec<(String, u32)> = (self.stages.iter())
            .filter_map(|s| Some((s.name.clone(), self.fleet.get(&s.name).ok()?.pid())))
            .collect();
        pids.push(("bench".into(), std::process::id()));
        pids
    }

    /// Fails if a stage died: a scenario must not wait for a dead pipeline.
    pub fn check_alive(&mut self) -> Result<()> {
        for stage in &self.stages {
            let proc = self.fleet.get_mut(&stage.name)?;
            if let Some(status) = proc.exit_status()? {
                return Err(proc
                    .failure(format!("exited ({status}) during the scenario"))
                    .into());
            }
        }
        Ok(())
    }

    /// Stops every stage: peak RSS and metrics first, then SIGTERM and a
    /// bounded wait for the drain (SIGKILL after it).
    pub async fn stop_all(&mut self) -> Vec<StageReport> {
        let mut reports = Vec::new();
        for stage in &self.stages {
            let Ok(proc) = self.fleet.get(&stage.name) else {
                continue;
            };
            let peak_rss_mb = proc.peak_rss_mb().unwrap_or(f64::NAN);
            let metrics = match metrics::scrape(stage.metrics_addr).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(stage = %stage.name, error = %launcher::report(&e), "no metrics from the stage");
                    StageMetrics::default()
                }
            };
            reports.push(StageReport {
                name: stage.name.clone(),
                peak_rss_mb,
                metrics,
                clean_exit: false,
                log: proc.log().to_owned(),
                warnings: Vec::new(),
            });
        }
        let stopped = tokio::task::block_in_place(|| self.fleet.stop_all(DRAIN_LIMIT));
        for report in &mut reports {
            if let Some(s) = stopped.iter().find(|s| s.name == report.name) {
                report.clean_exit = s.clean();
                if s.killed {
                    tracing::warn!(stage = %s.name, "stage did not stop within {DRAIN_LIMIT:?}: killed");
                }
            }
            let log = std::fs::read_to_string(&report.log).unwrap_or_default();
            report.warnings = warnings(&log);
        }
        self.stages.clear();
        reports
    }

    /// Stops what still runs, then drops the queues, the schema and the
    /// state directory (the logs stay).
    pub async fn teardown(mut self) -> Result<()> {
        self.fleet.kill_all();
        if let Some(isolation) = self.isolation.take() {
            isolation.teardown(Keep::Nothing).await?;
        }
        Ok(())
    }
}

/// A local port nobody listens on right now, for a child's metrics endpoint.
fn free_local_addr() -> Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(launcher::Error::io("cannot bind", "127.0.0.1:0"))?;
    let addr = listener.local_addr();
    Ok(addr.map_err(launcher::Error::io(
        "cannot read the address of",
        "127.0.0.1:0",
    ))?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_warn_and_error_lines() {
        let log = "2026 INFO a\n2026 WARN b\n2026 ERROR c\nWARNING-free\n2026 WARN x: slow statement: …\n";
        assert_eq!(warnings(log), ["2026 WARN b", "2026 ERROR c"]);
    }
}
