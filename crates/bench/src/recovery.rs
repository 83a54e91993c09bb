//! Recovery from executor deaths: one `sum` batch (20,000 runs in
//! 1,000-run chunks, 1 ms per run, one executor at concurrency 2) run
//! twice in one bench — once untouched, once with its only executor
//! SIGKILLed and restarted at once at a quarter and at 55 % of the
//! untouched run's time (issue 15's +8 s and +18 s of a 33-s batch). The
//! figure is the extra wall time the two kills cost, and for each kill the
//! time until the first chunk the dead process held is claimed again.

use std::time::{Duration, Instant};
use store::prelude::*;

use pipeline::submit::{SubmitRequest, submit};
use serde::Serialize;
use store::{BatchProgress, PgStore, Uuid};
use workload::WorkloadSpec;

use crate::e2e::round3;
use crate::error::{Error, Result};
use crate::scenario::{Bench, Scenario};

/// The batch of issue 15 (before `--quick` divides runs and chunk size).
const RUNS: i64 = 20_000;
const CHUNK_SIZE: i32 = 1_000;
const SIMULATION_DELAY_MS: u64 = 1;
const CONCURRENCY: usize = 2;
/// When the kills fall, as shares of the untouched run's wall time.
const KILLS_AT: [f64; 2] = [0.25, 0.55];
const POLL: Duration = Duration::from_millis(25);

/// What the two runs measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoveryResult {
    pub runs: i64,
    pub chunk_size: i32,
    pub simulation_delay_ms: u64,
    pub concurrency: usize,
    /// Submit to verdict, no kill.
    pub no_kill_s: f64,
    /// Submit to verdict with the two kills.
    pub two_kills_s: f64,
    /// `two_kills_s - no_kill_s`.
    pub kill_cost_s: f64,
    /// When each SIGKILL fell, from submit.
    pub kills_at_s: Vec<f64>,
    /// From each SIGKILL to the first chunk claimed again (an attempt
    /// beyond the first); `None` when the process held no chunk then.
    pub kill_to_reclaim_s: Vec<Option<f64>>,
}

/// `divisor` is `--quick`'s: 10 divides runs and chunk size alike.
pub async fn run(bench: &Bench, divisor: i64, timeout: Duration) -> Result<RecoveryResult> {
    let runs = RUNS / divisor;
    let chunk_size = (i64::from(CHUNK_SIZE) / divisor).max(1) as i32;
    let (calm, _) = bench
        .in_scenario("recovery-no-kill", async |s| {
            one_batch(s, runs, chunk_size, &[], timeout).await
        })
        .await?;
    let kills: Vec<f64> = KILLS_AT.iter().map(|f| f * calm.wall_s).collect();
    let (killed, _) = bench
        .in_scenario("recovery-two-kills", async |s| {
            one_batch(s, runs, chunk_size, &kills, timeout).await
        })
        .await?;
    Ok(RecoveryResult {
        runs,
        chunk_size,
        simulation_delay_ms: SIMULATION_DELAY_MS,
        concurrency: CONCURRENCY,
        no_kill_s: round3(calm.wall_s),
        two_kills_s: round3(killed.wall_s),
        kill_cost_s: round3(killed.wall_s - calm.wall_s),
        kills_at_s: killed.kills_at_s.iter().map(|t| round3(*t)).collect(),
        kill_to_reclaim_s: killed
            .kill_to_reclaim_s
            .iter()
            .map(|t| t.map(round3))
            .collect(),
    })
}

/// One batch, from submit to verdict, with `executor-1` SIGKILLed and
/// restarted at once at each of `kills` (seconds from submit).
struct Run {
    wall_s: f64,
    kills_at_s: Vec<f64>,
    kill_to_reclaim_s: Vec<Option<f64>>,
}

async fn one_batch(
    s: &mut Scenario,
    runs: i64,
    chunk_size: i32,
    kills: &[f64],
    timeout: Duration,
) -> Result<Run> {
    let (store, batch, start) = start(s, runs, chunk_size).await?;
    let mut run = Run {
        wall_s: 0.0,
        kills_at_s: Vec::new(),
        kill_to_reclaim_s: Vec::new(),
    };
    // Reclaims seen when the last kill fell, and when it fell.
    let mut watching: Option<(i64, Instant)> = None;
    loop {
        let p = progress(&store, batch).await?;
        let t = start.elapsed().as_secs_f64();
        if let Some((before, killed)) = watching
            && reclaims(&p) > before
        {
            if let Some(last) = run.kill_to_reclaim_s.last_mut() {
                *last = Some(killed.elapsed().as_secs_f64());
            }
            watching = None;
        }
        if let Some(&at) = kills.get(run.kills_at_s.len())
            && t >= at
            && p.verdict.is_none()
        {
            s.kill_and_restart("executor-1")?;
            run.kills_at_s.push(t);
            run.kill_to_reclaim_s.push(None);
            watching = (p.running > 0).then(|| (reclaims(&p), Instant::now()));
        }
        match p.verdict {
            Some(true) => break,
            Some(false) => {
                return Err(Error::Measure(format!(
                    "the batch failed: {}",
                    p.reason.unwrap_or_default()
                )));
            }
            None => {}
        }
        if start.elapsed() > timeout {
            return Err(Error::Measure(format!(
                "no verdict after {timeout:?}: {}/{} chunks completed",
                p.completed, p.chunks
            )));
        }
        s.check_alive()?;
        tokio::time::sleep(POLL).await;
    }
    run.wall_s = start.elapsed().as_secs_f64();
    Ok(run)
}

/// Starts the stages, then submits the batch: the store, the batch and
/// when it was submitted.
async fn start(s: &mut Scenario, runs: i64, chunk_size: i32) -> Result<(PgStore, Uuid, Instant)> {
    s.spawn("aggregator", &["aggregator".into()], "aggregator consuming")?;
    s.spawn("verifier", &["verifier".into()], "verifier consuming")?;
    let executor = [
        "executor".to_string(),
        "--concurrency".into(),
        CONCURRENCY.to_string(),
        "--simulation-delay-ms".into(),
        SIMULATION_DELAY_MS.to_string(),
    ];
    s.spawn("executor-1", &executor, "executor consuming")?;
    s.wait_ready(Duration::from_secs(60))?;
    let (store, broker) = (s.store()?.clone(), s.broker()?.clone());
    let req = SubmitRequest {
        name: Some("recovery".into()),
        runs,
        chunk_size,
        seed: Some(1),
        workload: WorkloadSpec::Sum,
        count: 1,
        share: Default::default(),
    };
    let start = Instant::now();
    let submitted = submit(&broker, &store, &req).await?;
    let batch = submitted
        .batches
        .first()
        .map(|b| b.id)
        .ok_or_else(|| Error::Measure("submit created no batch".into()))?;
    Ok((store, batch, start))
}

async fn progress(store: &PgStore, batch: Uuid) -> Result<BatchProgress> {
    store
        .progress(Some(batch), 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Measure("the submitted batch is not in the store".into()))
}

/// Claims beyond each chunk's first: every claimed chunk has one attempt,
/// each reclaim adds one (a `sum` chunk never fails, so nothing else does).
fn reclaims(p: &BatchProgress) -> i64 {
    p.attempts - i64::from(p.running + p.completed + p.failed)
}
