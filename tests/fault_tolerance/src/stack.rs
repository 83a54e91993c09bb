//! [`Stack`]: one isolated pipeline for one test. Its own Postgres schema,
//! queue prefix and worker-data dir; named processes of the real binary;
//! the verifier's stdout lines collected; raw message injection and SQL for
//! assertions; everything killed and removed on drop. When the test failed,
//! drop prints each process's log tail and keeps the temp dir.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::{Broker, Consumer, Delivery, Message, Queue, RabbitBroker, RabbitConfig};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection, PgConnection};
use tempfile::TempDir;
use uuid::Uuid;
use workload::Summary;

use crate::binary::{CliOutput, batchline_bin, run_cli};
use crate::process::{Lines, Proc, tail};
use crate::slots::{self, Slot};
use crate::verdict::VerdictLine;
use crate::{database_url, rabbitmq_url};

/// Retry-queue delay of every stack: short, so retries take no time.
/// (It is a queue argument: the harness and the processes must agree.)
pub const RETRY_DELAY_MS: u64 = 300;
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
    env: Vec<(String, String)>,
    bin: PathBuf,
    dir: Option<TempDir>,
    procs: BTreeMap<String, Proc>,
    lines: Lines,
    lines_file: PathBuf,
    rt: tokio::runtime::Runtime,
    pool: Option<PgPool>,
    broker: Option<RabbitBroker>,
    _slot: Slot,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("schema", &self.schema)
            .field("prefix", &self.prefix)
            .field("dir", &self.dir)
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
    /// Waits for a free slot, checks that Postgres and RabbitMQ answer
    /// (panicking with the URL if not), and applies the migrations.
    pub fn with_env(env: &[(&str, &str)]) -> Stack {
        let slot = slots::acquire();
        let bin = batchline_bin();
        let id = Uuid::new_v4().simple().to_string();
        let schema = format!("ft_{}", &id[..16]);
        let prefix = format!("ft-{}", &id[..16]);
        let dir = tempfile::Builder::new()
            .prefix("ft-stack-")
            .tempdir()
            .expect("create a temp dir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("create the log dir");
        let lines_file = dir.path().join("logs").join("verdict-lines.txt");

        let mut all: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url()),
            ("RABBITMQ_URL".into(), rabbitmq_url()),
            ("DB_SCHEMA".into(), schema.clone()),
            ("QUEUE_PREFIX".into(), prefix.clone()),
            (
                "WORKER_DATA_DIR".into(),
                dir.path().join("worker-data").display().to_string(),
            ),
            ("RETRY_DELAY_MS".into(), RETRY_DELAY_MS.to_string()),
            ("DELIVERY_LIMIT".into(), DELIVERY_LIMIT.to_string()),
            ("SWEEP_INTERVAL_S".into(), "1".into()),
            ("RUST_BACKTRACE".into(), "0".into()),
        ];
        for (k, v) in env {
            assert!(
                *k != "RETRY_DELAY_MS" && *k != "DELIVERY_LIMIT",
                "{k} is fixed per stack"
            );
            set(&mut all, k, v);
        }

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let pool = rt.block_on(connect_pg(&schema));
        let broker = rt.block_on(async {
            let config = RabbitConfig {
                prefix: prefix.clone(),
                retry_delay: Duration::from_millis(RETRY_DELAY_MS),
                delivery_limit: DELIVERY_LIMIT,
                ..RabbitConfig::new(rabbitmq_url())
            };
            let redacted = config.redacted_url();
            match tokio::time::timeout(Duration::from_secs(20), RabbitBroker::connect(config))
                .await
            {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => panic!(
                    "the fault drills need RabbitMQ at {redacted} (set RABBITMQ_URL): {e}"
                ),
                Err(_) => panic!(
                    "the fault drills need RabbitMQ at {redacted} (set RABBITMQ_URL): no answer in 20 s"
                ),
            }
        });

        let stack = Stack {
            schema,
            prefix,
            env: all,
            bin,
            dir: Some(dir),
            procs: BTreeMap::new(),
            lines: Arc::new(Mutex::new(Vec::new())),
            lines_file,
            rt,
            pool: Some(pool),
            broker: Some(broker),
            _slot: slot,
        };
        let out = stack.cli(&["migrate"], Duration::from_secs(60));
        assert!(out.success(), "batchline migrate failed: {}", out.stderr);
        stack
    }

    // ----- processes -------------------------------------------------------

    /// The environment every process of this stack gets.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The stack's env with `extra` on top.
    pub fn env_with(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut env = self.env.clone();
        for (k, v) in extra {
            set(&mut env, k, v);
        }
        env
    }

    /// Starts `batchline ROLE` under `name` with `extra` env on top of the
    /// stack's. Panics if a process of that name runs.
    pub fn spawn(&mut self, name: &str, role: &str, extra: &[(&str, &str)]) {
        let env = self.env_with(extra);
        self.start(name, role, env, None);
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
        let env = self.env_with(extra);
        self.start(name, role, env, Some(n));
    }

    fn start(
        &mut self,
        name: &str,
        role: &str,
        env: Vec<(String, String)>,
        kill_after_lines: Option<usize>,
    ) {
        let starts = match self.procs.get_mut(name) {
            Some(p) => {
                assert!(!p.is_alive(), "{name} is already running");
                p.starts + 1
            }
            None => 1,
        };
        let dir = self.dir().to_path_buf();
        let proc = Proc::start(
            &self.bin,
            name,
            role,
            env,
            starts,
            &dir,
            &dir.join("logs"),
            self.lines.clone(),
            self.lines_file.clone(),
            kill_after_lines,
        );
        self.procs.insert(name.to_string(), proc);
    }

    fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .get_mut(name)
            .unwrap_or_else(|| panic!("no process named {name}"))
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self, name: &str) {
        self.proc(name).kill();
    }

    /// Kills (if running) and starts again with the same env.
    pub fn restart(&mut self, name: &str) {
        let p = self.proc(name);
        p.kill();
        let (role, env) = (p.role.clone(), p.env.clone());
        self.start(name, &role, env, None);
    }

    /// Kills (if running) and starts again with the stack's env plus `extra`
    /// (the previous extra env is dropped, e.g. to remove CRASH_POINTS).
    pub fn restart_with(&mut self, name: &str, extra: &[(&str, &str)]) {
        let p = self.proc(name);
        p.kill();
        let role = p.role.clone();
        let env = self.env_with(extra);
        self.start(name, &role, env, None);
    }

    pub fn is_alive(&mut self, name: &str) -> bool {
        self.proc(name).is_alive()
    }

    /// How many times `name` was started.
    pub fn starts(&mut self, name: &str) -> u32 {
        self.proc(name).starts
    }

    pub fn pid(&mut self, name: &str) -> u32 {
        self.proc(name).pid()
    }

    /// Waits until `name` exits by itself (e.g. at a crash point); panics
    /// after `timeout`.
    pub fn wait_exit(&mut self, name: &str, timeout: Duration) -> ExitStatus {
        match self.proc(name).wait_exit(timeout) {
            Some(status) => status,
            None => panic!("{name} was expected to exit but still runs after {timeout:?}"),
        }
    }

    /// Names of the processes that are not running.
    pub fn dead(&mut self) -> Vec<String> {
        self.procs
            .iter_mut()
            .filter_map(|(n, p)| (!p.is_alive()).then(|| n.clone()))
            .collect()
    }

    /// Panics naming every process that exited.
    pub fn assert_all_alive(&mut self) {
        let dead: Vec<String> = self
            .procs
            .iter_mut()
            .filter_map(|(n, p)| p.exit_status().map(|s| format!("{n} ({s})")))
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
        run_cli(args, &self.env, timeout)
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
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
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
        self.dir.as_ref().expect("the stack's temp dir").path()
    }

    /// `WORKER_DATA_DIR/aggregator`: the aggregator's state files.
    pub fn aggregator_dir(&self) -> PathBuf {
        self.dir().join("worker-data").join("aggregator")
    }

    /// The aggregator's CSV of `batch`.
    pub fn batch_csv(&self, batch: Uuid) -> PathBuf {
        self.aggregator_dir().join(format!("{batch}.csv"))
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
        self.broker.as_ref().expect("the stack's broker")
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

    fn cleanup(&mut self) {
        for p in self.procs.values_mut() {
            p.kill();
        }
        if std::env::var_os("FT_KEEP").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!(
                    "FT_KEEP: kept {} (schema {}, prefix {})",
                    d.keep().display(),
                    self.schema,
                    self.prefix
                );
            }
            return;
        }
        let schema = self.schema.clone();
        let pool = self.pool.take();
        let broker = self.broker.take();
        self.rt.block_on(async {
            if let Some(pool) = pool {
                let sql = format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
                let _ = tokio::time::timeout(
                    Duration::from_secs(20),
                    sqlx::query(AssertSqlSafe(sql)).execute(&pool),
                )
                .await;
                pool.close().await;
            }
            if let Some(broker) = broker {
                let _ =
                    tokio::time::timeout(Duration::from_secs(20), broker.delete_topology()).await;
                drop(broker);
            }
        });
    }

    fn report_failure(&mut self) {
        let dir = self.dir().to_path_buf();
        eprintln!("\n===== fault_tolerance: test failed; stack {self:?} =====");
        for (name, p) in self.procs.iter_mut() {
            let state = match p.exit_status() {
                None => "running".to_string(),
                Some(s) => format!("exited: {s}"),
            };
            eprintln!(
                "----- {name} ({}; {} starts; {state}): last lines of {} -----\n{}",
                p.role,
                p.starts,
                p.log.display(),
                tail(&p.log, 40)
            );
        }
        eprintln!(
            "----- verifier lines ({}) -----\n{}",
            self.lines_file.display(),
            tail(&self.lines_file, 40)
        );
        if let Some(d) = self.dir.take() {
            let kept = d.keep();
            eprintln!("----- kept the stack's files in {} -----", kept.display());
        }
        let _ = dir;
    }
}

impl Default for Stack {
    fn default() -> Self {
        Stack::new()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.report_failure();
        }
        self.cleanup();
    }
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_string(), value.to_string()));
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

async fn connect_pg(schema: &str) -> PgPool {
    let url = database_url();
    let opts: PgConnectOptions = url
        .parse()
        .unwrap_or_else(|e| panic!("DATABASE_URL {url:?} is not a Postgres URL: {e}"));
    let target = format!("{}:{}", opts.get_host(), opts.get_port());
    let need = |e: String| -> ! {
        panic!("the fault drills need Postgres at {target} (set DATABASE_URL): {e}")
    };
    let mut conn = match tokio::time::timeout(
        Duration::from_secs(10),
        PgConnection::connect_with(&opts),
    )
    .await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => need(e.to_string()),
        Err(_) => need("no answer in 10 s".into()),
    };
    sqlx::query(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
    )))
    .execute(&mut conn)
    .await
    .unwrap_or_else(|e| need(e.to_string()));
    let _ = conn.close().await;
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts.options([("search_path", schema)]))
        .await
        .unwrap_or_else(|e| need(e.to_string()))
}
