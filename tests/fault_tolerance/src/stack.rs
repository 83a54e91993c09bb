//! [`Stack`]: one isolated pipeline for one test. Its own Postgres schema,
//! queue prefix and directory (a `launcher::Isolation`); named processes
//! of the real binary (a `launcher::Fleet`); the verifier's stdout lines
//! collected; raw message injection and SQL for assertions; everything
//! killed and removed on drop. When the test failed, drop prints each
//! process's log tail and keeps the directory.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};
use store::prelude::*;

use broker::{Broker, Consumer, Delivery, Message, Queue, RabbitBroker, RabbitConfig};
use launcher::{Env, Fleet, Isolation, Keep, Naming, Services, procinfo, report};
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use uuid::Uuid;
use workload::Summary;

use crate::binary::{CliOutput, base_env, batchline_bin, run_cli};
use crate::slots::{self, Slot};
use crate::verdict::VerdictLine;
use crate::{database_url, rabbitmq_url};

/// Retry-queue delay of every stack: short, so retries take no time.
/// (It is a queue argument: the harness and the processes must agree.)
pub const RETRY_DELAY_MS: u64 = 300;
/// Aggregator partitions of a stack unless its env sets `PARTITIONS`.
pub const PARTITIONS: u16 = 4;
/// Delivery limit of every stack (a queue argument too).
pub const DELIVERY_LIMIT: u32 = 20;

/// A chunk row as sqlx returns it.
type ChunkTuple = (i32, String, i32, Option<String>, Option<String>);

/// One chunk row, as the assertions need it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkState {
    pub chunk: i32,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub result: Option<String>,
}

/// An isolated pipeline: see the module docs.
pub struct Stack {
    pub schema: String,
    pub prefix: String,
    /// What this stack adds to the base env of its processes.
    env: Env,
    fleet: Fleet,
    isolation: Option<Isolation>,
    rt: tokio::runtime::Runtime,
    pool: Option<PgPool>,
    _slot: Slot,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("schema", &self.schema)
            .field("prefix", &self.prefix)
            .field("dir", &self.isolation.as_ref().map(Isolation::dir))
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// A stack with the default environment.
    pub fn new() -> Stack {
        Stack::with_env(&[])
    }

    /// A stack whose processes all get `env` on top of the defaults
    /// (`RETRY_DELAY_MS` and `DELIVERY_LIMIT` are fixed: see the consts).
    /// Waits for a free slot, creates the isolation (panicking, naming the
    /// service, when Postgres or RabbitMQ do not answer), and runs
    /// `batchline migrate` with the stack's env.
    pub fn with_env(env: &[(&str, &str)]) -> Stack {
        let slot = slots::acquire();
        let bin = batchline_bin();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let services = Services {
            database_url: database_url(),
            rabbit: RabbitConfig {
                retry_delay: Duration::from_millis(RETRY_DELAY_MS),
                delivery_limit: DELIVERY_LIMIT,
                ..RabbitConfig::new(rabbitmq_url())
            },
            env: Env::new(),
        };
        // Fewer partitions than production's 16 unless a test asks: each
        // is a quorum queue, and the drills create many stacks.
        let partitions = env
            .iter()
            .find(|(k, _)| *k == "PARTITIONS")
            .map_or(Some(PARTITIONS), |(_, v)| v.parse().ok());
        let naming = Naming {
            stem: "ft".into(),
            dir_prefix: "ft-stack-".into(),
            parent: None,
            partitions,
        };
        let isolation = rt
            .block_on(Isolation::create(&services, &naming))
            .unwrap_or_else(|e| panic!("the fault drills need {}", report(&e)));

        let mut all = isolation.env();
        all.set("SWEEP_INTERVAL_S", "1").set("RUST_BACKTRACE", "0");
        for (k, v) in env {
            assert!(
                *k != "RETRY_DELAY_MS" && *k != "DELIVERY_LIMIT",
                "{k} is fixed per stack"
            );
            all.set(k, *v);
        }
        let fleet = Fleet::new(&bin, &isolation.dir().join("logs"), base_env().with(&all))
            .unwrap_or_else(|e| panic!("{}", report(&e)))
            .in_dir(isolation.dir());
        let pool = rt.block_on(connect_pg(isolation.schema()));
        let stack = Stack {
            schema: isolation.schema().to_owned(),
            prefix: isolation.prefix().to_owned(),
            env: all,
            fleet,
            isolation: Some(isolation),
            rt,
            pool: Some(pool),
            _slot: slot,
        };
        // The isolation is migrated already; `batchline migrate` with the
        // stack's env also proves the binary reaches the services the way
        // its processes will (a test may route them through a proxy).
        let out = stack.cli(&["migrate"], Duration::from_secs(60));
        assert!(out.success(), "batchline migrate failed: {}", out.stderr);
        stack
    }

    /// The stack's Postgres schema.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    // ----- processes -------------------------------------------------------

    /// The environment every process of this stack gets (on the base env).
    pub fn env(&self) -> &[(String, String)] {
        self.env.as_slice()
    }

    /// The stack's env with `extra` on top.
    pub fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        self.env.with(&Env::from_pairs(extra)).as_slice().to_vec()
    }

    /// Starts `batchline ROLE` under `name` with `extra` env on top of the
    /// stack's. Panics if a process of that name runs.
    pub fn spawn(&mut self, name: &str, role: &str, extra: &[(&str, &str)]) {
        let done = self.fleet.spawn(name, &[role], &Env::from_pairs(extra));
        done.unwrap_or_else(|e| panic!("{}", report(&e)));
    }

    /// As [`Stack::spawn`], and SIGKILLs the process the moment its `n`th
    /// stdout line arrives (e.g. a verifier right after printing a verdict).
    pub fn spawn_killed_after_lines(
        &mut self,
        name: &str,
        role: &str,
        extra: &[(&str, &str)],
        n: usize,
    ) {
        let done = self
            .fleet
            .spawn_killed_after_lines(name, &[role], &Env::from_pairs(extra), n);
        done.unwrap_or_else(|e| panic!("{}", report(&e)));
    }

    fn proc(&mut self, name: &str) -> &mut launcher::Proc {
        self.fleet
            .get_mut(name)
            .unwrap_or_else(|e| panic!("{}", report(&e)))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, name: &str) {
        let done = self.proc(name).kill();
        done.unwrap_or_else(|e| panic!("{}", report(&e)));
    }

    /// Kills (if running) and starts again with the same env.
    pub fn restart(&mut self, name: &str) {
        let done = self.fleet.restart(name);
        done.unwrap_or_else(|e| panic!("{}", report(&e)));
    }

    /// Kills (if running) and starts again with the stack's env plus `extra`
    /// (the previous extra env is dropped, e.g. to remove CRASH_POINTS).
    pub fn restart_with(&mut self, name: &str, extra: &[(&str, &str)]) {
        let done = self.fleet.restart_with(name, &Env::from_pairs(extra));
        done.unwrap_or_else(|e| panic!("{}", report(&e)));
    }

    pub fn is_alive(&mut self, name: &str) -> bool {
        self.proc(name).is_alive()
    }

    /// How many times `name` was started.
    pub fn starts(&mut self, name: &str) -> u32 {
        self.proc(name).starts()
    }

    pub fn pid(&mut self, name: &str) -> u32 {
        self.proc(name).pid()
    }

    /// Waits until `name` exits by itself (e.g. at a crash point); panics
    /// after `timeout`.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> ExitStatus {
        match self.proc(name).wait_exit(timeout) {
            Ok(Some(status)) => status,
            Ok(None) => panic!("{name} was expected to exit but still runs after {timeout:?}"),
            Err(e) => panic!("{}", report(&e)),
        }
    }

    /// Names of the processes that are not running.
    pub fn dead(&mut self) -> Vec<String> {
        self.fleet.dead()
    }

    /// Panics naming every process that exited.
    pub fn assert_all_alive(&mut self) {
        let dead: Vec<String> = (self.fleet.exited().iter())
            .map(|(n, s)| format!("{n} ({s})"))
            .collect();
        assert!(dead.is_empty(), "processes exited: {dead:?}");
    }

    /// Restarts every process that died (a supervisor's loop step) with the
    /// env it had; returns their names.
    pub fn restart_dead(&mut self) -> Vec<String> {
        let dead = self.dead();
        for name in &dead {
            self.restart(name);
        }
        dead
    }

    // ----- one-shot commands ----------------------------------------------

    /// `batchline ARGS` with the stack's env.
    pub fn cli(&self, args: &[&str], timeout: Duration) -> CliOutput {
        run_cli(args, self.env.as_slice(), timeout)
    }

    /// `batchline submit ARGS` (`args` split on whitespace); returns the
    /// printed batch ids.
    pub fn submit(&self, args: &str) -> Vec<Uuid> {
        let mut full = vec!["submit"];
        full.extend(args.split_whitespace());
        let out = self.cli(&full, Duration::from_secs(120));
        assert!(
            out.success(),
            "batchline {} failed ({:?}): {}",
            full.join(" "),
            out.code,
            out.stderr
        );
        out.stdout
            .lines()
            .map(|l| {
                l.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("submit printed {l:?}, not a batch id"))
            })
            .collect()
    }

    /// `batchline status` (for failure messages).
    pub fn status_text(&self) -> String {
        let out = self.cli(&["status", "--limit", "50"], Duration::from_secs(30));
        format!("{}{}", out.stdout, out.stderr)
    }

    // ----- verdict lines ---------------------------------------------------

    /// Every line every verifier of this stack printed, in order.
    pub fn lines(&self) -> Vec<String> {
        self.fleet.lines()
    }

    /// The lines printed for `batch`.
    pub fn lines_for(&self, batch: Uuid) -> Vec<String> {
        let id = batch.to_string();
        self.lines()
            .into_iter()
            .filter(|l| l.contains(&id))
            .collect()
    }

    /// Waits until every batch has a verdict line; returns the first line of
    /// each, parsed, in the order of `ids`.
    pub fn wait_for_verdicts(&mut self, ids: &[Uuid], timeout: Duration) -> Vec<VerdictLine> {
        self.wait_for_verdicts_while(ids, timeout, |_| {})
    }

    /// As [`Stack::wait_for_verdicts`], calling `tick` about every 100 ms
    /// meanwhile (to kill and restart processes).
    pub fn wait_for_verdicts_while(
        &mut self,
        ids: &[Uuid],
        timeout: Duration,
        mut tick: impl FnMut(&mut Stack),
    ) -> Vec<VerdictLine> {
        let start = Instant::now();
        loop {
            let lines = self.lines();
            let found: Vec<Option<VerdictLine>> = ids
                .iter()
                .map(|id| {
                    lines
                        .iter()
                        .filter_map(|l| VerdictLine::parse(l))
                        .find(|v| v.batch == *id)
                })
                .collect();
            if found.iter().all(Option::is_some) {
                return found.into_iter().flatten().collect();
            }
            if start.elapsed() > timeout {
                let missing: Vec<&Uuid> = ids
                    .iter()
                    .zip(&found)
                    .filter_map(|(id, f)| f.is_none().then_some(id))
                    .collect();
                panic!(
                    "no verdict after {timeout:?} for batches {missing:?}\nlines so far: {lines:#?}\n\
                     batchline status:\n{}",
                    self.status_text()
                );
            }
            tick(self);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `cond` until it holds; panics with `what` after `timeout`.
    pub fn wait_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut cond: impl FnMut(&mut Stack) -> bool,
    ) {
        let start = Instant::now();
        while !cond(self) {
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}\nbatchline status:\n{}",
                    self.status_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    // ----- files -------------------------------------------------------------

    pub fn dir(&self) -> &Path {
        self.isolation().dir()
    }

    /// `WORKER_DATA_DIR/aggregator`: the aggregator's state files.
    pub fn aggregator_dir(&self) -> PathBuf {
        self.isolation().worker_data_dir().join("aggregator")
    }

    fn isolation(&self) -> &Isolation {
        self.isolation.as_ref().expect("the stack's isolation")
    }

    /// The state directory of `batch`'s partition (`aggregator/pNN`).
    pub fn partition_dir(&self, batch: Uuid) -> PathBuf {
        let p = store::partition::of(batch, self.partitions());
        self.aggregator_dir().join(store::partition::name(p))
    }

    /// The aggregator's CSV of `batch`.
    pub fn batch_csv(&self, batch: Uuid) -> PathBuf {
        self.partition_dir(batch).join(format!("{batch}.csv"))
    }

    /// The CSV files left in every partition directory.
    pub fn leftover_csvs(&self) -> Vec<String> {
        let Ok(dirs) = std::fs::read_dir(self.aggregator_dir()) else {
            return Vec::new();
        };
        dirs.filter_map(|d| d.ok())
            .filter_map(|d| std::fs::read_dir(d.path()).ok())
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".csv"))
            .collect()
    }

    // ----- Postgres and RabbitMQ ---------------------------------------------

    /// Runs a future on the stack's runtime (for sqlx and broker calls).
    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// A pool whose `search_path` is the stack's schema.
    pub fn pool(&self) -> &PgPool {
        self.pool.as_ref().expect("the stack's pool")
    }

    /// A broker on the stack's queues (same arguments as the processes).
    pub fn broker(&self) -> &RabbitBroker {
        self.isolation().broker()
    }

    /// The stack's aggregator partitions.
    pub fn partitions(&self) -> u16 {
        self.block_on(self.isolation().store().partitions())
            .expect("the partition count")
    }

    /// Every partition's owner, epoch and last hand-over.
    pub fn partition_status(&self) -> Vec<store::PartitionInfo> {
        self.block_on(self.isolation().store().partition_status())
            .expect("the partitions' status")
    }

    /// The owners of the partitions, each with how many it holds.
    pub fn partition_owners(&self) -> std::collections::BTreeMap<String, usize> {
        let mut owners = std::collections::BTreeMap::new();
        for p in self.partition_status() {
            if let Some(owner) = p.owner {
                *owners.entry(owner).or_default() += 1;
            }
        }
        owners
    }

    /// The results queue of `batch`'s partition.
    pub fn results_queue(&self, batch: Uuid) -> Queue {
        pipeline::messages::results_queue(batch, self.partitions())
    }

    /// Publishes one raw message (confirmed).
    pub fn publish(&self, queue: Queue, msg_id: &str, payload: impl Into<Vec<u8>>) {
        self.publish_all(vec![Message::new(queue, msg_id, payload.into())]);
    }

    pub fn publish_all(&self, messages: Vec<Message>) {
        self.block_on(self.broker().publish(messages))
            .expect("publish to RabbitMQ");
    }

    /// Ready messages in `queue`.
    pub fn queue_depth(&self, queue: Queue) -> u64 {
        self.block_on(self.broker().queue_depth(queue))
            .expect("queue depth")
    }

    /// Takes (and acks) `n` messages from `queue`; panics if fewer come
    /// within `timeout`. Only for queues no process consumes (the dlq, or a
    /// queue whose consumers are stopped).
    pub fn take(&self, queue: Queue, n: usize, timeout: Duration) -> Vec<Delivery> {
        self.block_on(async {
            let mut consumer = self
                .broker()
                .consume(queue, 100)
                .await
                .expect("consume from RabbitMQ");
            let mut got = Vec::new();
            let deadline = tokio::time::Instant::now() + timeout;
            while got.len() < n {
                match tokio::time::timeout_at(deadline, consumer.next()).await {
                    Ok(Ok(d)) => {
                        consumer.ack(d.tag, false).await.expect("ack");
                        got.push(d);
                    }
                    Ok(Err(e)) => panic!("consuming {queue:?}: {e}"),
                    Err(_) => {
                        let seen: Vec<String> = got.iter().map(describe).collect();
                        panic!(
                            "expected {n} messages in {queue:?} within {timeout:?}, got {}: {seen:#?}",
                            got.len()
                        )
                    }
                }
            }
            got
        })
    }

    /// `SELECT count(*)` style query returning one i64, with `batch` as `$1`
    /// when the SQL names it.
    pub fn scalar(&self, sql: &str, batch: Uuid) -> i64 {
        let sql = sql.to_string();
        self.block_on(async {
            let q = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.clone()));
            let q = if sql.contains("$1") { q.bind(batch) } else { q };
            q.fetch_one(self.pool())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"))
        })
    }

    /// The chunk rows of `batch`, by chunk.
    pub fn chunks(&self, batch: Uuid) -> Vec<ChunkState> {
        let rows: Vec<ChunkTuple> = self
            .block_on(
                sqlx::query_as(
                    "SELECT chunk, status, attempts, last_error, result FROM chunks
                     WHERE batch_id = $1 ORDER BY chunk",
                )
                .bind(batch)
                .fetch_all(self.pool()),
            )
            .expect("read chunks");
        rows.into_iter()
            .map(|(chunk, status, attempts, last_error, result)| ChunkState {
                chunk,
                status,
                attempts,
                last_error,
                result,
            })
            .collect()
    }

    /// `(count(*), count(DISTINCT run_index))` of `batch`'s run rows.
    pub fn run_counts(&self, batch: Uuid) -> (i64, i64) {
        self.block_on(
            sqlx::query_as(
                "SELECT count(*), count(DISTINCT run_index) FROM run_results WHERE batch_id = $1",
            )
            .bind(batch)
            .fetch_one(self.pool()),
        )
        .expect("count run rows")
    }

    /// The runs of `batch`'s completed chunks: what a cancelled batch's
    /// `runs_done` must be.
    pub fn completed_runs(&self, batch: Uuid) -> i64 {
        self.scalar(
            "SELECT coalesce(sum(least(b.chunk_size::bigint,
                                       b.runs - c.chunk::bigint * b.chunk_size)), 0)::bigint
             FROM chunks AS c JOIN batches AS b ON b.id = c.batch_id
             WHERE c.batch_id = $1 AND c.status = 'completed'",
            batch,
        )
    }

    /// Run rows of `batch` whose chunk did not complete (none, unless a
    /// cancelled chunk's attempt wrote rows behind the fence).
    pub fn rows_outside_completed_chunks(&self, batch: Uuid) -> i64 {
        self.scalar(
            "SELECT count(*) FROM run_results AS r
             JOIN batches AS b ON b.id = r.batch_id
             LEFT JOIN chunks AS c ON c.batch_id = r.batch_id
                                  AND c.chunk = (r.run_index / b.chunk_size)::int
             WHERE r.batch_id = $1 AND c.status IS DISTINCT FROM 'completed'",
            batch,
        )
    }

    /// `(seed, runs, chunks)` of `batch`.
    pub fn batch_row(&self, batch: Uuid) -> (i64, i64, i32) {
        self.block_on(
            sqlx::query_as("SELECT seed, runs, chunks FROM batches WHERE id = $1")
                .bind(batch)
                .fetch_one(self.pool()),
        )
        .expect("read the batch row")
    }

    /// The stored aggregate of `batch` and its duplicates_dropped.
    pub fn batch_result(&self, batch: Uuid) -> Option<(Summary, i64)> {
        let row: Option<(String, i64)> = self
            .block_on(
                sqlx::query_as(
                    "SELECT result, duplicates_dropped FROM batch_results WHERE batch_id = $1",
                )
                .bind(batch)
                .fetch_optional(self.pool()),
            )
            .expect("read batch_results");
        row.map(|(json, d)| {
            let summary = serde_json::from_str(&json)
                .unwrap_or_else(|e| panic!("batch_results.result is not a Summary: {e}: {json}"));
            (summary, d)
        })
    }

    /// Checks the invariants every finished successful batch must hold:
    /// one run row per run index, every chunk completed, one verdict row.
    pub fn assert_batch_exact(&self, batch: Uuid) {
        let (_, runs, chunks) = self.batch_row(batch);
        assert_eq!(
            self.run_counts(batch),
            (runs, runs),
            "batch {batch}: run rows (count, distinct) must both equal runs"
        );
        let states = self.chunks(batch);
        assert_eq!(states.len(), chunks as usize);
        assert!(
            states.iter().all(|c| c.status == "completed"),
            "batch {batch}: not every chunk completed: {states:?}"
        );
        assert_eq!(
            self.scalar("SELECT count(*) FROM verdicts WHERE batch_id = $1", batch),
            1
        );
        let (summary, _) = self
            .batch_result(batch)
            .unwrap_or_else(|| panic!("batch {batch} has no aggregate"));
        assert_eq!(
            summary.runs(),
            runs as u64,
            "batch {batch}: aggregate run count"
        );
    }

    /// Kills the processes, then drops the schema and queues and removes
    /// the directory, keeping what `FT_KEEP` or a failure asks to keep.
    fn cleanup(&mut self, failed: bool) {
        self.fleet.kill_all();
        let keep = if std::env::var_os("FT_KEEP").is_some() {
            Keep::Everything
        } else if failed {
            Keep::Dir
        } else {
            Keep::Nothing
        };
        if let Some(pool) = self.pool.take() {
            self.rt.block_on(pool.close());
        }
        let Some(isolation) = self.isolation.take() else {
            return;
        };
        match self.rt.block_on(isolation.teardown(keep)) {
            Ok(Some(dir)) if keep == Keep::Everything => eprintln!(
                "FT_KEEP: kept {} (schema {}, prefix {})",
                dir.display(),
                self.schema,
                self.prefix
            ),
            Ok(Some(dir)) => eprintln!("----- kept the stack's files in {} -----", dir.display()),
            Ok(None) => {}
            Err(e) => eprintln!("fault_tolerance: teardown of {self:?}: {}", report(&e)),
        }
    }

    fn report_failure(&mut self) {
        eprintln!("\n===== fault_tolerance: test failed; stack {self:?} =====");
        for (name, p) in self.fleet.iter_mut() {
            let state = match p.exit_status() {
                Ok(None) => "running".to_string(),
                Ok(Some(s)) => format!("exited: {s}"),
                Err(e) => format!("unknown: {e}"),
            };
            eprintln!(
                "----- {name} ({}; {} starts; {state}): last lines of {} -----\n{}",
                p.role(),
                p.starts(),
                p.log().display(),
                procinfo::tail(p.log(), 40)
            );
        }
        let lines = self.fleet.lines_file();
        eprintln!(
            "----- verifier lines ({}) -----\n{}",
            lines.display(),
            procinfo::tail(lines, 40)
        );
    }

    // ----- signals (added for the partition drills) -------------------------

    /// Sends `sig` to `name` while it runs (e.g. SIGSTOP / SIGCONT to
    /// freeze and thaw a process, SIGTERM to ask it to stop).
    pub fn signal(&mut self, name: &str, sig: launcher::Signal) {
        let done = self.proc(name).signal(sig);
        done.unwrap_or_else(|e| panic!("{}", report(&e)));
    }

    /// Graceful stop: SIGTERM, then waits until `name` exits by itself
    /// (panics after `timeout`); returns how it exited.
    pub fn stop(&mut self, name: &str, timeout: Duration) -> ExitStatus {
        self.signal(name, launcher::Signal::SIGTERM);
        self.wait_exit(name, timeout)
    }
}

impl Default for Stack {
    fn default() -> Self {
        Stack::new()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let failed = std::thread::panicking();
        if failed {
            self.report_failure();
        }
        self.cleanup(failed);
    }
}

/// A short description of a delivery for failure messages.
pub fn describe(d: &Delivery) -> String {
    format!(
        "msg_id={:?} headers={:?} payload={:?}",
        d.msg_id,
        d.headers,
        String::from_utf8_lossy(&d.payload)
    )
}

/// A pool whose `search_path` is the stack's schema, for the assertions.
async fn connect_pg(schema: &str) -> PgPool {
    let url = database_url();
    let opts: PgConnectOptions = url
        .parse()
        .unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a Postgres URL: {e}"));
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.options([("search_path", schema)]))
        .await
        .unwrap_or_else(|e| panic!("the fault drills need Postgres (set DATABASE_URL): {e}"))
}
