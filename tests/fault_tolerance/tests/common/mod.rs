//! Shared bits of the test binaries: patience, message builders, waiting
//! for consumers.
#![allow(dead_code, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use broker::Queue;
use fault_tolerance::Stack;
use fault_tolerance::http::{free_addr, get};
use pipeline::messages::{ResultMsg, VERSION, VerifyMsg, WorkMsg, encode, stored_result};
use uuid::Uuid;
use workload::{Workload, WorkloadSpec};

/// Upper bound for anything the pipeline does; reached only when it hangs.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The three long-running stages, `executors` executors of concurrency 1.
pub fn start_pipeline(stack: &mut Stack, executors: usize, extra: &[(&str, &str)]) {
    for i in 1..=executors {
        let mut env = vec![("CONCURRENCY", "1")];
        env.extend_from_slice(extra);
        stack.spawn(&format!("executor-{i}"), "executor", &env);
    }
    stack.spawn("aggregator", "aggregator", extra);
    stack.spawn("verifier", "verifier", extra);
    wait_consumers(stack, Queue::Work, executors as u64);
    for p in 0..stack.partitions() {
        wait_consumers(stack, Queue::Results(p), 1);
    }
    wait_consumers(stack, Queue::Verify, 1);
}

/// Waits until `queue` has at least `n` consumers (the processes are up).
pub fn wait_consumers(stack: &mut Stack, queue: Queue, n: u64) {
    stack.wait_until(&format!("{n} consumers on {queue:?}"), PATIENCE, |s| {
        s.block_on(s.broker().queue_stats(queue))
            .map(|st| st.consumers >= n)
            .unwrap_or(false)
    });
}

pub fn work_msg(batch: Uuid, chunk: i32) -> broker::Message {
    let m = WorkMsg::new(batch, chunk);
    m.to_message(Queue::Work).expect("a work message encodes")
}

/// The stored result of a completed chunk, as the executor published it.
pub fn result_msg(s: &Stack, batch: Uuid, chunk: i32, stored_json: &str) -> broker::Message {
    stored_result(batch, chunk, stored_json.to_owned(), s.partitions())
}

pub fn verify_msg(batch: Uuid) -> broker::Message {
    VerifyMsg::aggregated(batch)
        .to_message()
        .expect("a verify message encodes")
}

/// A verify message as earlier builds sent it (with a duplicates count the
/// verifier never used): still accepted.
pub fn legacy_verify_msg(batch: Uuid, duplicates: u64) -> broker::Message {
    let v = VerifyMsg::aggregated(batch);
    let payload = format!(
        r#"{{"kind":"aggregated","v":{VERSION},"batch_id":"{batch}","duplicates_dropped":{duplicates}}}"#
    );
    broker::Message::new(Queue::Verify, v.msg_id(), payload.into_bytes())
}

/// A well-formed result for a batch that does not exist.
pub fn result_for_unknown_batch() -> Vec<u8> {
    let m = ResultMsg {
        v: VERSION,
        batch_id: Uuid::new_v4(),
        name: "ghost".into(),
        chunk: 0,
        chunks: 1,
        runs_total: 0,
        runs: 0,
        summary: Workload::new(&WorkloadSpec::Sum)
            .expect("sum compiles")
            .empty_summary(),
    };
    encode(&m).expect("a result message encodes")
}

/// How many times a drill repeats, from `key` in the environment (for
/// longer runs by hand), else `default`.
pub fn env_count(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A tiny deterministic-per-call random source for kill timings.
pub fn random_ms(lo: u64, hi: u64) -> u64 {
    lo + (Uuid::new_v4().as_u128() as u64) % (hi - lo).max(1)
}

/// A result for chunk 0 of a real batch that claims the wrong run count.
pub fn mismatched_result(batch: Uuid) -> Vec<u8> {
    let m = ResultMsg {
        v: VERSION,
        batch_id: batch,
        name: "before".into(),
        chunk: 0,
        chunks: 8,
        runs_total: 2000,
        runs: 7,
        summary: Workload::new(&WorkloadSpec::Sum)
            .expect("sum compiles")
            .empty_summary(),
    };
    encode(&m).expect("a result message encodes")
}

/// Drops the schema a test created, pass or fail.
pub struct DropSchema(pub String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        use sqlx::Connection;
        let sql = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            if let Ok(mut conn) =
                sqlx::PgConnection::connect(&fault_tolerance::database_url()).await
            {
                let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await;
                let _ = conn.close().await;
            }
        });
    }
}

/// Non-zero exit, one `error:` line mentioning each of `mentions`
/// (case-insensitive), exited by itself, no panic or backtrace, nothing on
/// stdout.
pub fn assert_one_line_error(out: &fault_tolerance::CliOutput, mentions: &[&str]) {
    assert!(
        !out.success() && out.code.is_some(),
        "must exit non-zero: {out:?}"
    );
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("backtrace"),
        "no panic: {}",
        out.stderr
    );
    let errors: Vec<&str> = out
        .stderr_lines()
        .into_iter()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "exactly one error line: {}", out.stderr);
    for word in mentions {
        assert!(
            errors[0].to_lowercase().contains(&word.to_lowercase()),
            "the error should mention {word:?}: {}",
            errors[0]
        );
    }
    assert!(
        out.stdout.trim().is_empty(),
        "nothing on stdout: {}",
        out.stdout
    );
}

// ----- aggregator partitions (the partition drills) -------------------------

/// The partition of `batch` in `s`.
pub fn partition_of(s: &Stack, batch: Uuid) -> u16 {
    store::partition::of(batch, s.partitions())
}

/// The pid at the end of a default replica id (`aggregator-HOST-PID-RANDOM`).
pub fn owner_pid(owner: &str) -> Option<u32> {
    fault_tolerance::replica_pid(owner)
}

/// Which of the named processes `owner` (a default replica id) is.
pub fn replica_named<'a>(s: &mut Stack, owner: &str, names: &[&'a str]) -> Option<&'a str> {
    let pid = owner_pid(owner)?;
    names
        .iter()
        .copied()
        .find(|n| s.is_alive(n) && s.pid(n) == pid)
}

/// The replica id the named aggregator process goes by (default ids).
pub fn replica_id_of(s: &mut Stack, name: &str) -> String {
    let pid = s.pid(name);
    s.partition_owners()
        .into_keys()
        .find(|o| owner_pid(o) == Some(pid))
        .unwrap_or_else(|| panic!("{name} (pid {pid}) owns no partition"))
}

/// Waits until the named replicas together own every partition, each at
/// most its fair share (`ceil(partitions / replicas)`) and at least one.
pub fn wait_balanced(s: &mut Stack, names: &[&str]) {
    let partitions = usize::from(s.partitions());
    let fair = partitions.div_ceil(names.len());
    s.wait_until(
        &format!("{names:?} own every partition, fair shares"),
        PATIENCE,
        |s| {
            let pids: Vec<u32> = names.iter().map(|n| s.pid(n)).collect();
            let owners = s.partition_owners();
            let held = |pid: u32| {
                (owners.iter())
                    .filter(|(o, _)| owner_pid(o) == Some(pid))
                    .map(|(_, n)| *n)
                    .sum::<usize>()
            };
            owners.values().sum::<usize>() == partitions
                && owners
                    .keys()
                    .all(|o| owner_pid(o).is_some_and(|p| pids.contains(&p)))
                && pids.iter().all(|&p| (1..=fair).contains(&held(p)))
        },
    );
}

/// Starts aggregator replica `name` with its probe server on a free port
/// (kept across restarts: the env is); returns the port's address.
pub fn spawn_replica(s: &mut Stack, name: &str, extra: &[(&str, &str)]) -> SocketAddr {
    let addr = free_addr();
    let metrics = addr.to_string();
    let mut env = vec![("METRICS_ADDR", metrics.as_str())];
    env.extend_from_slice(extra);
    s.spawn(name, "aggregator", &env);
    addr
}

/// Waits until the replica on `addr` is ready: subscribed to every
/// partition's queue, so a hot standby for those it does not own.
/// (RabbitMQ counts only the active consumer of a single-active-consumer
/// queue, so the queues cannot tell.)
pub fn wait_ready(s: &mut Stack, addr: SocketAddr) {
    s.wait_until(&format!("the replica on {addr} ready"), PATIENCE, |_| {
        get(addr, "/readyz").is_some_and(|(status, _)| status == 200)
    });
}

/// Two executors with `executor_env`, the aggregator `replicas` (each with
/// its probe server) and a verifier, all consuming and every replica
/// ready; the replicas' probe addresses, in order.
pub fn start_replicated(
    s: &mut Stack,
    replicas: &[&str],
    executor_env: &[(&str, &str)],
) -> Vec<SocketAddr> {
    s.spawn("executor-1", "executor", executor_env);
    s.spawn("executor-2", "executor", executor_env);
    let addrs: Vec<SocketAddr> = (replicas.iter())
        .map(|r| spawn_replica(s, r, &[]))
        .collect();
    s.spawn("verifier", "verifier", &[]);
    wait_consumers(s, Queue::Work, 2);
    wait_consumers(s, Queue::Verify, 1);
    for addr in &addrs {
        wait_ready(s, *addr);
    }
    addrs
}

/// Chunks of `batch` completed by an executor.
pub fn completed_chunks(s: &Stack, batch: Uuid) -> i64 {
    s.scalar(
        "SELECT count(*) FROM chunks WHERE batch_id = $1 AND status = 'completed'",
        batch,
    )
}

/// `batchline_events_total{stage=STAGE,event=EVENT}` on the probe server at
/// `addr` (0 when not counted yet); `None` while nothing answers.
pub fn events_total(addr: std::net::SocketAddr, stage: &str, event: &str) -> Option<u64> {
    let (status, body) = fault_tolerance::http::get(addr, "/metrics")?;
    if status != 200 {
        return None;
    }
    let (stage, event) = (format!("stage=\"{stage}\""), format!("event=\"{event}\""));
    let total = body
        .lines()
        .filter(|l| l.starts_with("batchline_events_total{"))
        .filter(|l| l.contains(&stage) && l.contains(&event))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    Some(total as u64)
}

/// The tests' RabbitMQ URL with a short AMQP heartbeat, so that RabbitMQ
/// drops the connection of a frozen (SIGSTOPped) process within about two
/// heartbeats instead of the server's default (60 s).
pub fn rabbitmq_url_with_heartbeat(secs: u32) -> String {
    let url = fault_tolerance::rabbitmq_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat={secs}")
}

/// Declares the single results queue of the versions before partitions
/// (`PREFIX.results`), as they declared it: a durable quorum queue with the
/// delivery limit, dead-lettering to the dlq. batchline never declares it
/// (it only drains it where it exists) and the drills' broker client does
/// not declare arbitrary queues, so this goes through `rabbitmqctl eval`.
/// The stack's teardown deletes it with the other queues.
pub fn declare_legacy_results_queue(s: &Stack) {
    let name = format!("{}.results", s.prefix);
    let dlq = format!("{}.dlq", s.prefix);
    let expr = format!(
        "rabbit_amqqueue:declare(rabbit_misc:r(<<\"/\">>, queue, <<\"{name}\">>), true, false, \
         [{{<<\"x-queue-type\">>, longstr, <<\"quorum\">>}}, \
          {{<<\"x-delivery-limit\">>, long, {limit}}}, \
          {{<<\"x-dead-letter-exchange\">>, longstr, <<\"\">>}}, \
          {{<<\"x-dead-letter-routing-key\">>, longstr, <<\"{dlq}\">>}}, \
          {{<<\"x-dead-letter-strategy\">>, longstr, <<\"at-least-once\">>}}, \
          {{<<\"x-overflow\">>, longstr, <<\"reject-publish\">>}}], none, <<\"guest\">>).",
        limit = fault_tolerance::stack::DELIVERY_LIMIT,
    );
    let out = fault_tolerance::services::run("rabbitmqctl", &["-q", "eval", &expr]);
    assert!(
        out.contains("{new,") || out.contains("{existing,"),
        "declaring {name} through rabbitmqctl eval: {out}"
    );
    assert!(
        s.block_on(broker::Broker::queue_exists(
            s.broker(),
            Queue::LegacyResults
        ))
        .expect("ask RabbitMQ whether the legacy queue exists"),
        "{name} declared"
    );
}
