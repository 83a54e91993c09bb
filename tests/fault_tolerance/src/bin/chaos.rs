//! `chaos`: the coordinator behind `make chaos`. It runs an isolated stack
//! of the real binary (executors, aggregator, verifier), submits batches
//! continuously, SIGKILLs and restarts random stages at random intervals
//! (optionally restarting RabbitMQ's app too), then drains and checks every
//! batch against Postgres: one verdict each, every run counted exactly once
//! (no gaps, no duplicate rows), aggregates covering all runs, and one
//! verdict line per batch. It prints a report and exits 0 only when all of
//! that holds. A run is replayed with the same `--seed`.
//!
//! The aggregator runs as replicas sharing the partitions: next to the
//! kills, a share of the events (`--aggregator-events`) are `scale_up`
//! (another replica, up to `--max-replicas`), `scale_down` (SIGTERM one,
//! keeping at least one) and `owner_failure` (SIGKILL the owner of the
//! partition with the most open batches). The report adds the partitions'
//! hand-overs, the replicas' fenced effects (read from their `/metrics`
//! before they go and at the end) and each owner failure's time to a new
//! epoch.
//!
//! `cancel` events (every `--cancel-interval-s`) cancel a random batch
//! that has no verdict yet with `batchline cancel`. The final check takes
//! the store's word for which batches were cancelled (and that it agrees
//! with what each cancel answered): those must end CANCELLED with
//! `runs_done`, run rows and partial aggregate all equal to the runs of
//! their completed chunks; every other batch must end SUCCESS.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use clap::Parser;
use fault_tolerance::Stack;
use fault_tolerance::http::{free_addr, get};
use fault_tolerance::services::restart_rabbitmq_app;
use fault_tolerance::{CliOutput, VerdictLine};
use uuid::Uuid;
use workload::Summary;

/// Chaos run: continuous batches while stages are killed at random.
#[derive(Debug, Parser)]
#[command(name = "chaos")]
struct Args {
    /// How long to submit batches and kill stages, in seconds.
    #[arg(long, env = "CHAOS_DURATION_S", default_value_t = 120)]
    duration_s: u64,
    /// Mean seconds between kills (each gap is uniform in 0.5×..1.5× this).
    #[arg(long, env = "CHAOS_KILL_INTERVAL_S", default_value_t = 4.0)]
    kill_interval_s: f64,
    /// Seconds a killed stage stays down (uniform in 0..this).
    #[arg(long, env = "CHAOS_DOWNTIME_S", default_value_t = 2.0)]
    downtime_s: f64,
    /// Seed of every random choice; printed so a failing run can be replayed.
    #[arg(long, env = "CHAOS_SEED")]
    seed: Option<u64>,
    /// Executor processes.
    #[arg(long, env = "CHAOS_EXECUTORS", default_value_t = 2)]
    executors: usize,
    /// Also restart RabbitMQ's app every this many seconds (0 = never).
    #[arg(long, env = "CHAOS_BROKER_RESTART_S", default_value_t = 0)]
    broker_restart_s: u64,
    /// Seconds between submitted batches.
    #[arg(long, env = "CHAOS_SUBMIT_INTERVAL_S", default_value_t = 3)]
    submit_interval_s: u64,
    /// Runs per batch.
    #[arg(long, env = "CHAOS_RUNS", default_value_t = 3000)]
    runs: i64,
    /// Runs per chunk.
    #[arg(long, env = "CHAOS_CHUNK_SIZE", default_value_t = 250)]
    chunk_size: i32,
    /// Sleep per run in the executors (ms), so kills land mid-batch.
    #[arg(long, env = "CHAOS_SIMULATION_DELAY_MS", default_value_t = 1)]
    simulation_delay_ms: u64,
    /// Share of the events that are aggregator events (scale_up,
    /// scale_down, owner_failure) rather than a random stage's SIGKILL.
    #[arg(long, env = "CHAOS_AGGREGATOR_EVENTS", default_value_t = 0.5)]
    aggregator_events: f64,
    /// Most aggregator replicas at once.
    #[arg(long, env = "CHAOS_MAX_REPLICAS", default_value_t = 3)]
    max_replicas: usize,
    /// Mean seconds between cancels of a random unfinished batch (each gap
    /// uniform in 0.5×..1.5× this; 0 = never).
    #[arg(long, env = "CHAOS_CANCEL_INTERVAL_S", default_value_t = 15.0)]
    cancel_interval_s: f64,
    /// Give up draining after this many seconds.
    #[arg(long, env = "CHAOS_DRAIN_TIMEOUT_S", default_value_t = 600)]
    drain_timeout_s: u64,
}

/// splitmix64: small, seedable, and stable, so a seed replays a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn main() {
    let args = Args::parse();
    let seed = args.seed.unwrap_or_else(|| Uuid::new_v4().as_u64_pair().0);
    let mut rng = Rng(seed);
    println!(
        "chaos: seed {seed} (replay with --seed {seed}), {} s, a kill every ~{} s",
        args.duration_s, args.kill_interval_s
    );

    let delay = args.simulation_delay_ms.to_string();
    let mut stack = Stack::with_env(&[
        ("SIMULATION_DELAY_MS", delay.as_str()),
        ("LEASE_S", "5"),
        ("STALL_DEADLINE_S", "5"),
        ("CONCURRENCY", "1"),
    ]);
    let executors: Vec<String> = (1..=args.executors.max(1))
        .map(|i| format!("executor-{i}"))
        .collect();
    for name in &executors {
        stack.spawn(name, "executor", &[]);
    }
    let mut replicas = Replicas::default();
    replicas.start(&mut stack, "aggregator".into());
    stack.spawn("verifier", "verifier", &[]);
    let mut stages: Vec<String> = executors.clone();
    stages.push("verifier".into());

    let start = Instant::now();
    let until = Duration::from_secs(args.duration_s);
    let mut ids: Vec<Uuid> = Vec::new();
    let mut kills: BTreeMap<String, u32> = BTreeMap::new();
    let mut broker_restarts = 0u32;
    let mut failed_submits = 0u32;
    let mut next_submit = Duration::ZERO;
    let mut next_kill = Duration::from_secs_f64(args.kill_interval_s * (0.5 + rng.unit()));
    let mut next_broker = Duration::from_secs(args.broker_restart_s);
    let mut cancels = Cancels::default();
    let mut next_cancel = Duration::from_secs_f64(args.cancel_interval_s * (0.5 + rng.unit()));
    let mut n = 0;
    while start.elapsed() < until {
        let now = start.elapsed();
        if now >= next_submit {
            n += 1;
            let name = format!("chaos-{n}");
            let workload = if n % 2 == 0 { "sum" } else { "bingo" };
            let (runs, chunk) = (args.runs.to_string(), args.chunk_size.to_string());
            let submit = [
                "submit",
                "--runs",
                &runs,
                "--chunk-size",
                &chunk,
                "--workload",
                workload,
                "--name",
                &name,
            ];
            // A submit can fail while the broker restarts (it then creates
            // nothing): that batch is simply not submitted; the next one is.
            let out = stack.cli(&submit, Duration::from_secs(120));
            if out.success() {
                ids.extend(
                    out.stdout
                        .lines()
                        .filter_map(|l| l.trim().parse::<Uuid>().ok()),
                );
            } else {
                failed_submits += 1;
                println!(
                    "chaos: {:>6.1}s submit of {name} failed: {}",
                    now.as_secs_f64(),
                    out.stderr.trim()
                );
            }
            next_submit = now + Duration::from_secs(args.submit_interval_s.max(1));
        }
        replicas.watch_failovers(&stack);
        if now >= next_kill && rng.unit() < args.aggregator_events {
            let event = rng.below(3);
            replicas.event(&mut stack, &mut rng, event, args.max_replicas, now);
            next_kill = start.elapsed()
                + Duration::from_secs_f64(args.kill_interval_s * (0.5 + rng.unit()));
        } else if now >= next_kill {
            let mut all = stages.clone();
            all.extend(replicas.names.iter().cloned());
            let victim = all[rng.below(all.len())].clone();
            replicas.before_death(&victim);
            stack.kill(&victim);
            *kills.entry(victim.clone()).or_default() += 1;
            let down = Duration::from_secs_f64(args.downtime_s * rng.unit());
            println!(
                "chaos: {:>6.1}s SIGKILL {victim}, down {:.1}s",
                now.as_secs_f64(),
                down.as_secs_f64()
            );
            std::thread::sleep(down);
            stack.restart(&victim);
            next_kill = start.elapsed()
                + Duration::from_secs_f64(args.kill_interval_s * (0.5 + rng.unit()));
        }
        if args.cancel_interval_s > 0.0 && now >= next_cancel {
            cancels.cancel_one(&stack, &mut rng, &ids, now);
            next_cancel = start.elapsed()
                + Duration::from_secs_f64(args.cancel_interval_s * (0.5 + rng.unit()));
        }
        if args.broker_restart_s > 0 && now >= next_broker {
            println!(
                "chaos: {:>6.1}s restarting RabbitMQ's app",
                now.as_secs_f64()
            );
            restart_rabbitmq_app(Duration::from_secs(2));
            broker_restarts += 1;
            next_broker = start.elapsed() + Duration::from_secs(args.broker_restart_s);
        }
        // Stages that died on their own (they should not) are restarted and counted.
        for name in restart_dead(&mut stack, &stages, &replicas.names) {
            println!("chaos: {name} had exited on its own; restarted");
            *kills
                .entry(format!("{name} (exited by itself)"))
                .or_default() += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    println!(
        "chaos: {} batches submitted; draining (no more kills)",
        ids.len()
    );
    let names = replicas.names.clone();
    stack.wait_for_verdicts_while(&ids, Duration::from_secs(args.drain_timeout_s), |s| {
        restart_dead(s, &stages, &names);
    });
    replicas.watch_failovers(&stack);
    let fenced = replicas.fenced_total();
    let handovers: i64 = stack.partition_status().iter().map(|p| p.handovers).sum();

    let cancelled = cancels.check_answers(&stack, &ids);
    let report = check(&stack, &ids, args.runs, &cancelled);
    println!();
    println!("batches submitted        {}", ids.len());
    println!("batches SUCCESS          {}", report.success);
    println!(
        "batches CANCELLED        {} (cancels: {} answered cancelled, {} final, {} other)",
        report.cancelled,
        cancels.said_cancelled.len(),
        cancels.said_final.len(),
        cancels.other
    );
    println!("batches FAILURE          {}", report.failure);
    println!(
        "runs expected            {} (a cancelled batch's: its completed chunks'; {} runs not run)",
        report.runs_expected, report.runs_cancelled
    );
    println!("runs counted (rows)      {}", report.rows);
    println!("runs counted (distinct)  {}", report.distinct);
    println!("runs in aggregates       {}", report.aggregated_runs);
    println!(
        "gaps (missing runs)      {}",
        report.runs_expected - report.distinct
    );
    println!("duplicate run rows       {}", report.rows - report.distinct);
    println!(
        "verdict lines            {} (batches with != 1 line: {})",
        report.lines, report.bad_lines
    );
    println!("duplicates dropped       {}", report.duplicates_dropped);
    println!("broker restarts          {broker_restarts}");
    println!(
        "submits refused          {failed_submits} (broker or database away at submit time; not tracked)"
    );
    for (stage, k) in &kills {
        println!("kills {stage:<18} {k}");
    }
    for (event, k) in &replicas.events {
        println!("aggregator {event:<13} {k}");
    }
    println!(
        "replicas at the end      {} ({})",
        replicas.names.len(),
        replicas.names.join(", ")
    );
    println!("partitions moved         {handovers} (hand-overs, the first takes included)");
    println!("fenced effects           {fenced} (counted by the replicas that could be read)");
    let mut times: Vec<u128> = replicas.failover_ms.clone();
    times.sort_unstable();
    match (times.get(times.len().saturating_sub(1) / 2), times.last()) {
        (Some(p50), Some(max)) => println!(
            "owner failure → new epoch {} samples: p50 {p50} ms, max {max} ms {:?}",
            times.len(),
            replicas.failover_ms
        ),
        _ => println!("owner failure → new epoch (no sample)"),
    }
    if !replicas.pending.is_empty() {
        println!(
            "owner failures not yet taken over at the end: {}",
            replicas.pending.len()
        );
    }
    println!("seed                     {seed}");
    let ok = report.failure == 0
        && report.success + report.cancelled == ids.len()
        && report.cancelled == cancelled.len()
        && report.rows == report.runs_expected
        && report.distinct == report.runs_expected
        && report.aggregated_runs == report.runs_expected
        && report.bad_lines == 0
        && report.problems.is_empty();
    for p in &report.problems {
        println!("problem: {p}");
    }
    if ok {
        println!("SUCCESS: no loss or duplication");
    } else {
        println!("FAILURE: see the lines above (replay with --seed {seed})");
        std::process::exit(1);
    }
}

#[derive(Default)]
struct Report {
    success: usize,
    cancelled: usize,
    /// Runs of cancelled batches that never ran (not in runs_expected).
    runs_cancelled: i64,
    failure: usize,
    runs_expected: i64,
    rows: i64,
    distinct: i64,
    aggregated_runs: i64,
    lines: usize,
    bad_lines: usize,
    duplicates_dropped: i64,
    problems: Vec<String>,
}

/// Every batch of `ids` against Postgres; those in `cancelled` must end
/// CANCELLED with exactly their completed chunks' runs, the rest SUCCESS.
fn check(stack: &Stack, ids: &[Uuid], runs: i64, cancelled: &BTreeSet<Uuid>) -> Report {
    let mut r = Report::default();
    let pool = stack.pool();
    for id in ids {
        let was_cancelled = cancelled.contains(id);
        let expected = if was_cancelled {
            let done = stack.completed_runs(*id);
            r.runs_cancelled += runs - done;
            let outside = stack.rows_outside_completed_chunks(*id);
            if outside > 0 {
                r.problems.push(format!(
                    "batch {id}: {outside} run rows outside its completed chunks"
                ));
            }
            done
        } else {
            runs
        };
        r.runs_expected += expected;
        let (rows, distinct): (i64, i64) = stack
            .block_on(
                sqlx::query_as("SELECT count(*), count(DISTINCT run_index) FROM run_results WHERE batch_id = $1")
                    .bind(id)
                    .fetch_one(pool),
            )
            .unwrap_or((0, 0));
        r.rows += rows;
        r.distinct += distinct;
        let verdict: Option<(bool, Option<String>)> = stack
            .block_on(
                sqlx::query_as("SELECT success, reason FROM verdicts WHERE batch_id = $1")
                    .bind(id)
                    .fetch_optional(pool),
            )
            .unwrap_or(None);
        let lines = stack.lines_for(*id);
        let line = lines.first().and_then(|l| VerdictLine::parse(l));
        match verdict {
            Some((true, _)) if was_cancelled => match line {
                Some(v) if v.cancelled && v.runs_done == Some(expected) => r.cancelled += 1,
                other => r.problems.push(format!(
                    "batch {id}: cancelled with {expected} runs done, but its line is {other:?}"
                )),
            },
            Some((true, _)) => match line {
                Some(v) if v.success => r.success += 1,
                other => r
                    .problems
                    .push(format!("batch {id}: SUCCESS, but its line is {other:?}")),
            },
            Some((false, reason)) => {
                r.failure += 1;
                r.problems.push(format!(
                    "batch {id}: FAILURE {}",
                    reason.unwrap_or_default()
                ));
            }
            None => r.problems.push(format!("batch {id}: no verdict")),
        }
        let result: Option<(String, i64)> = stack
            .block_on(
                sqlx::query_as(
                    "SELECT result, duplicates_dropped FROM batch_results WHERE batch_id = $1",
                )
                .bind(id)
                .fetch_optional(pool),
            )
            .unwrap_or(None);
        if let Some((json, dups)) = result {
            r.duplicates_dropped += dups;
            match serde_json::from_str::<Summary>(&json) {
                Ok(s) => r.aggregated_runs += s.runs() as i64,
                Err(e) => r
                    .problems
                    .push(format!("batch {id}: aggregate unreadable: {e}")),
            }
        }
        let lines = lines.len();
        r.lines += lines;
        if lines != 1 {
            r.bad_lines += 1;
            r.problems
                .push(format!("batch {id}: {lines} verdict lines"));
        }
    }
    r
}

/// The cancel events and what each `batchline cancel` answered.
#[derive(Default)]
struct Cancels {
    said_cancelled: BTreeSet<Uuid>,
    said_final: BTreeSet<Uuid>,
    /// Cancels that answered neither (e.g. the database was away): the
    /// store decides whether they took effect.
    other: u32,
}

impl Cancels {
    /// Cancels a random batch of `ids` that has no verdict and is not
    /// cancelled yet (none: nothing to do).
    fn cancel_one(&mut self, stack: &Stack, rng: &mut Rng, ids: &[Uuid], now: Duration) {
        let open: Vec<Uuid> = stack
            .block_on(
                sqlx::query_scalar(
                    "SELECT id FROM batches AS b WHERE id = ANY($1) AND cancelled_at IS NULL
                     AND NOT EXISTS (SELECT 1 FROM verdicts AS v WHERE v.batch_id = b.id)
                     ORDER BY id",
                )
                .bind(ids)
                .fetch_all(stack.pool()),
            )
            .unwrap_or_default();
        if open.is_empty() {
            return;
        }
        let id = open[rng.below(open.len())];
        let out = stack.cli(&["cancel", &id.to_string()], Duration::from_secs(120));
        let said = self.record(id, &out);
        println!("chaos: {:>6.1}s cancel {id}: {said}", now.as_secs_f64());
    }

    fn record(&mut self, id: Uuid, out: &CliOutput) -> String {
        let line = out.stdout.trim().to_owned();
        if out.success() && line.starts_with(&format!("cancelled {id}")) {
            self.said_cancelled.insert(id);
        } else if out.code == Some(1) && line.contains("the batch is final") {
            self.said_final.insert(id);
        } else {
            self.other += 1;
            return format!("{line} {}", out.stderr.trim());
        }
        line
    }

    /// The batches of `ids` the store holds as cancelled; a problem is
    /// printed, and the run fails, when that disagrees with an answer.
    fn check_answers(&self, stack: &Stack, ids: &[Uuid]) -> BTreeSet<Uuid> {
        let cancelled: BTreeSet<Uuid> = stack
            .block_on(
                sqlx::query_scalar(
                    "SELECT id FROM batches WHERE id = ANY($1) AND cancelled_at IS NOT NULL",
                )
                .bind(ids)
                .fetch_all(stack.pool()),
            )
            .unwrap_or_else(|e| panic!("read the cancelled batches: {e}"))
            .into_iter()
            .collect();
        let lost: Vec<&Uuid> = self.said_cancelled.difference(&cancelled).collect();
        let wrong: Vec<&Uuid> = self.said_final.intersection(&cancelled).collect();
        if !lost.is_empty() || !wrong.is_empty() {
            println!(
                "FAILURE: cancels answered cancelled but not stored {lost:?}; \
                 answered final but stored cancelled {wrong:?}"
            );
            std::process::exit(1);
        }
        cancelled
    }
}

/// Restarts the named processes that are not running (a supervisor's
/// step); replicas scaled down are not in `replicas` any more and stay
/// down. Returns their names.
fn restart_dead(stack: &mut Stack, stages: &[String], replicas: &[String]) -> Vec<String> {
    let mut restarted = Vec::new();
    for name in stages.iter().chain(replicas) {
        if !stack.is_alive(name) {
            stack.restart(name);
            restarted.push(name.clone());
        }
    }
    restarted
}

/// The aggregator replicas of the run and their events.
#[derive(Default)]
struct Replicas {
    /// The replicas that should be running.
    names: Vec<String>,
    /// Each replica's probe server (its `/metrics`).
    addrs: BTreeMap<String, std::net::SocketAddr>,
    /// Replicas started so far (for new names).
    started: usize,
    events: BTreeMap<&'static str, u32>,
    /// Fenced effects counted by replicas before they went.
    fenced_gone: u64,
    /// Owner failures waiting for their partition's new epoch:
    /// (partition, epoch at the kill, when).
    pending: Vec<(usize, i64, Instant)>,
    failover_ms: Vec<u128>,
}

impl Replicas {
    fn start(&mut self, stack: &mut Stack, name: String) {
        let addr = free_addr();
        let metrics = addr.to_string();
        stack.spawn(&name, "aggregator", &[("METRICS_ADDR", metrics.as_str())]);
        self.addrs.insert(name.clone(), addr);
        self.names.push(name);
        self.started += 1;
    }

    /// `fenced` on `name`'s /metrics (0 when it does not answer).
    fn fenced(&self, name: &str) -> u64 {
        let Some(addr) = self.addrs.get(name) else {
            return 0;
        };
        let Some((200, body)) = get(*addr, "/metrics") else {
            return 0;
        };
        body.lines()
            .filter(|l| l.starts_with("batchline_events_total{"))
            .filter(|l| l.contains("stage=\"aggregator\"") && l.contains("event=\"fenced\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Keeps what a replica counted before it dies (a kill loses it).
    fn before_death(&mut self, name: &str) {
        if self.names.iter().any(|n| n == name) {
            self.fenced_gone += self.fenced(name);
        }
    }

    fn fenced_total(&self) -> u64 {
        self.fenced_gone + self.names.iter().map(|n| self.fenced(n)).sum::<u64>()
    }

    /// Records the owner failures whose partition has a new epoch now.
    fn watch_failovers(&mut self, stack: &Stack) {
        if self.pending.is_empty() {
            return;
        }
        let status = stack.partition_status();
        let mut done = Vec::new();
        self.pending.retain(|&(p, epoch, at)| {
            let moved = status.get(p).is_some_and(|s| s.epoch > epoch);
            if moved {
                done.push(at.elapsed().as_millis());
            }
            !moved
        });
        self.failover_ms.extend(done);
    }

    /// One aggregator event: 0 scale_up, 1 scale_down, 2 owner_failure
    /// (falling back to what the replica count allows).
    fn event(&mut self, stack: &mut Stack, rng: &mut Rng, event: usize, max: usize, now: Duration) {
        let at = now.as_secs_f64();
        let event = match event {
            0 if self.names.len() >= max.max(1) => 1,
            1 if self.names.len() <= 1 => 0,
            e => e,
        };
        match event {
            0 => {
                let name = format!("aggregator-{}", self.started + 1);
                println!("chaos: {at:>6.1}s scale_up: {name}");
                self.start(stack, name);
                *self.events.entry("scale_up").or_default() += 1;
            }
            1 => {
                let name = self.names.remove(rng.below(self.names.len()));
                self.fenced_gone += self.fenced(&name);
                let status = stack.stop(&name, Duration::from_secs(60));
                println!("chaos: {at:>6.1}s scale_down: SIGTERM {name}, exited {status}");
                *self.events.entry("scale_down").or_default() += 1;
            }
            _ => {
                let status = stack.partition_status();
                let Some(busiest) = status
                    .iter()
                    .filter(|p| p.owner.is_some())
                    .max_by_key(|p| p.open_batches)
                else {
                    return;
                };
                let owner = busiest.owner.clone().unwrap_or_default();
                let pid = fault_tolerance::replica_pid(&owner);
                let names = self.names.clone();
                let Some(victim) = names
                    .iter()
                    .find(|n| stack.is_alive(n) && Some(stack.pid(n)) == pid)
                else {
                    return;
                };
                self.fenced_gone += self.fenced(victim);
                stack.kill(victim);
                self.pending.push((
                    usize::from(busiest.partition),
                    busiest.epoch,
                    Instant::now(),
                ));
                println!(
                    "chaos: {at:>6.1}s owner_failure: SIGKILL {victim}, owner of p{:02} ({} open batches)",
                    busiest.partition, busiest.open_batches
                );
                *self.events.entry("owner_failure").or_default() += 1;
                // Back at once, as a crashed pod would be (and not counted
                // as a process that exited by itself).
                stack.restart(victim);
            }
        }
    }
}
