//! The partition drills (issue 12): aggregator replicas that share the
//! results partitions are SIGKILLed, frozen, scaled up and down, lose their
//! state directory, run on separate disks, and are upgraded from the single
//! queue and directory of the versions before partitions. Judged by the
//! verifier's lines, the rows in Postgres, the partitions table and (for
//! fencing) the replica's own counters; never by log text. Times are
//! measured and printed, not asserted.
// Helpers here are test code: a failed step panics, failing the test.
#![allow(clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use broker::Queue;
use common::*;

use std::net::SocketAddr;

use fault_tolerance::proxy::TcpProxy;
use fault_tolerance::{Stack, expected_summary, rabbitmq_url, service_addr, url_via};
use uuid::Uuid;
use workload::WorkloadSpec;

/// Slow executors, so that a batch is still in flight when a replica dies.
const SLOW: [(&str, &str); 2] = [("CONCURRENCY", "1"), ("SIMULATION_DELAY_MS", "4")];

/// No stalled-batch re-publish by the sweeper within a drill: a batch that
/// succeeds did so from what the aggregator rebuilt, not from a refill.
const NO_REFILL: (&str, &str) = ("STALL_DEADLINE_S", "3600");

/// Every batch SUCCESS (first line), exact run rows, aggregate equal to an
/// in-process sum computation, and exactly one line each.
fn assert_all_exact_sum(s: &Stack, ids: &[Uuid]) {
    let verdicts = s.lines();
    for id in ids {
        let lines = s.lines_for(*id);
        assert_eq!(lines.len(), 1, "one line for {id}: {verdicts:#?}");
        assert!(lines[0].contains("SUCCESS"), "{}", lines[0]);
        s.assert_batch_exact(*id);
        let (seed, runs, _) = s.batch_row(*id);
        let (summary, _) = s.batch_result(*id).expect("aggregate");
        assert_eq!(
            summary,
            expected_summary(&WorkloadSpec::Sum, seed, runs as u64),
            "batch {id}: aggregate differs from an in-process computation"
        );
    }
}

/// As [`wait_balanced`], for replicas whose owner names `name_of` maps to
/// one of `replicas` (`None`: no replica of these).
fn wait_even(
    s: &mut Stack,
    replicas: &[&str],
    name_of: impl Fn(&mut Stack, &str) -> Option<String>,
) {
    let partitions = usize::from(s.partitions());
    let fair = partitions.div_ceil(replicas.len());
    s.wait_until(
        &format!("{replicas:?} own every partition, fair shares"),
        PATIENCE,
        |s| {
            let owners = s.partition_owners();
            let mut held = vec![0usize; replicas.len()];
            for (owner, n) in &owners {
                match name_of(s, owner).and_then(|name| replicas.iter().position(|r| *r == name)) {
                    Some(i) => held[i] += n,
                    None => return false,
                }
            }
            held.iter().sum::<usize>() == partitions && held.iter().all(|h| (1..=fair).contains(h))
        },
    );
}

/// Two slow executors, the verifier, and replica `aggregator-a` (with
/// `extra` env) owning every partition; returns a's probe address.
fn start_with_one_owner(s: &mut Stack, extra: &[(&str, &str)]) -> SocketAddr {
    let addr_a = spawn_replica(s, "aggregator-a", extra);
    s.spawn("executor-1", "executor", &SLOW);
    s.spawn("executor-2", "executor", &SLOW);
    s.spawn("verifier", "verifier", &[]);
    wait_ready(s, addr_a);
    s.wait_until("a owns every partition", PATIENCE, |s| {
        s.partition_owners().values().sum::<usize>() == usize::from(s.partitions())
    });
    addr_a
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(what: &str, samples: &[Duration]) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let ms: Vec<u128> = samples.iter().map(Duration::as_millis).collect();
    eprintln!(
        "{what}: {} samples (ms, in order) {ms:?}; p50 {} ms, max {} ms",
        samples.len(),
        percentile(&sorted, 0.5).as_millis(),
        sorted.last().map_or(0, Duration::as_millis),
    );
}

/// Drill P1: the replica owning the partition of a busy batch is SIGKILLed
/// (5 times, `FAILOVER_KILLS` for more), each time while the other replica
/// stands by, and restarted after. The standby takes the partition under a
/// new epoch (cause `failover`) and the batch is aggregated; every batch
/// SUCCESS, exact, one line each. Prints, per kill, the time from the kill
/// to the new epoch and to the batch's aggregate.
#[test]
fn owner_killed_standby_takes_over() {
    let kills = env_count("FAILOVER_KILLS", 5);
    let mut s = Stack::with_env(&[NO_REFILL]);
    let replicas = ["aggregator-a", "aggregator-b"];
    let addrs = start_replicated(&mut s, &replicas, &SLOW);

    let mut ids = Vec::new();
    let (mut takeovers, mut aggregated) = (Vec::new(), Vec::new());
    for round in 0..kills {
        wait_balanced(&mut s, &replicas);
        let args = format!(
            "--runs 2400 --chunk-size 100 --seed {} --name failover-{round} --workload sum",
            700 + round
        );
        let batch = s.submit(&args)[0];
        ids.push(batch);
        let p = usize::from(partition_of(&s, batch));
        // Busy: a quarter of its chunks in, and its partition owned.
        s.wait_until("the batch under way", PATIENCE, |s| {
            completed_chunks(s, batch) >= 6 && s.partition_status()[p].owner.is_some()
        });
        let before = s.partition_status()[p].clone();
        let owner = before.owner.clone().expect("owned");
        let victim = replica_named(&mut s, &owner, &replicas)
            .unwrap_or_else(|| panic!("partition {p} owned by {owner}, not a running replica"));
        assert!(
            s.batch_result(batch).is_none(),
            "the batch finished too soon"
        );
        let t0 = Instant::now();
        s.kill(victim);
        s.wait_until("the standby took the partition", PATIENCE, |s| {
            let now = &s.partition_status()[p];
            now.epoch > before.epoch && now.owner.as_ref().is_some_and(|o| *o != owner)
        });
        let took = t0.elapsed();
        let after = s.partition_status()[p].clone();
        s.wait_until("the batch aggregated", PATIENCE, |s| {
            s.batch_result(batch).is_some()
        });
        let done = t0.elapsed();
        eprintln!(
            "kill {round}: {victim} owned p{p:02} (epoch {}); new epoch {} by {:?} ({:?}) after {} ms; \
             batch aggregated after {} ms",
            before.epoch,
            after.epoch,
            after.owner,
            after.last_handover_cause,
            took.as_millis(),
            done.as_millis()
        );
        assert_eq!(after.last_handover_cause.as_deref(), Some("failover"));
        takeovers.push(took);
        aggregated.push(done);
        s.restart(victim);
        let i = replicas
            .iter()
            .position(|r| *r == victim)
            .expect("a replica");
        wait_ready(&mut s, addrs[i]);
    }
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    assert_all_exact_sum(&s, &ids);
    summary(
        &format!("failover, kill → new epoch ({kills} kills)"),
        &takeovers,
    );
    summary(
        &format!("failover, kill → batch aggregated ({kills} kills)"),
        &aggregated,
    );
    assert!(s.leftover_csvs().is_empty(), "{:?}", s.leftover_csvs());
}

/// Drill P2: the owner of a partition with a batch in flight is frozen
/// (SIGSTOP). Once RabbitMQ gives up on its connection (short AMQP
/// heartbeat), the other replica — on its own disk, as on another machine
/// — takes the partition under a new epoch and the batch succeeds. The
/// frozen replica is thawed (SIGCONT) still believing it owns the
/// partition; the other replica is then SIGKILLed, so the thawed one
/// receives the partition's next results: its first window is fenced
/// (its `fenced` counter moves), it takes the partition again properly, and
/// that batch succeeds too. One aggregate, one line, exact, for both.
#[test]
fn frozen_owner_is_fenced() {
    let mut s = Stack::with_env(&[NO_REFILL]);
    let url = rabbitmq_url_with_heartbeat(2);
    let other_disk = s.dir().join("machine-b");
    std::fs::create_dir_all(&other_disk).expect("machine-b's data dir");
    // a takes every partition first (nudged), b then stands by.
    let addr_a = start_with_one_owner(&mut s, &[("RABBITMQ_URL", &url)]);
    let b_dir = other_disk.display().to_string();
    let addr_b = spawn_replica(
        &mut s,
        "aggregator-b",
        &[("RABBITMQ_URL", &url), ("WORKER_DATA_DIR", &b_dir)],
    );
    let replicas = ["aggregator-a", "aggregator-b"];
    wait_ready(&mut s, addr_b);
    wait_balanced(&mut s, &replicas);

    // A batch in a partition a owns.
    let a_pid = s.pid("aggregator-a");
    let (batch, p) = loop {
        let batch = s.submit("--runs 3200 --chunk-size 100 --name frozen --workload sum")[0];
        let p = usize::from(partition_of(&s, batch));
        let owner = s.partition_status()[p].owner.clone();
        if owner.as_deref().and_then(owner_pid) == Some(a_pid) {
            break (batch, p);
        }
        // Not a's partition: let it finish, it is checked with the rest.
        s.wait_for_verdicts(&[batch], PATIENCE);
        assert_all_exact_sum(&s, &[batch]);
    };
    s.wait_until("a folding the batch", PATIENCE, |s| {
        completed_chunks(s, batch) >= 4
    });
    let before = s.partition_status()[p].clone();
    let fenced_before = events_total(addr_a, "aggregator", "fenced").expect("a's /metrics");
    let t0 = Instant::now();
    s.signal("aggregator-a", launcher::Signal::SIGSTOP);
    s.wait_until("b took the frozen owner's partition", PATIENCE, |s| {
        let now = &s.partition_status()[p];
        now.epoch > before.epoch && now.owner.as_deref().and_then(owner_pid) != Some(a_pid)
    });
    let took = t0.elapsed();
    let v = s.wait_for_verdicts(&[batch], PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    eprintln!(
        "frozen owner: p{p:02} taken by b {} ms after SIGSTOP; batch done {} ms after",
        took.as_millis(),
        t0.elapsed().as_millis()
    );

    s.signal("aggregator-a", launcher::Signal::SIGCONT);
    let thawed = s.partition_status()[p].clone();
    assert_ne!(
        thawed.owner.as_deref().and_then(owner_pid),
        Some(a_pid),
        "the thawed replica does not own p{p:02} again by itself: {thawed:?}"
    );
    // b gone: a, which still holds p's old state, is the only consumer left.
    s.kill("aggregator-b");
    let mut later = Vec::new();
    let next = loop {
        let id = s.submit("--runs 800 --chunk-size 100 --name after-thaw --workload sum")[0];
        later.push(id);
        if usize::from(partition_of(&s, id)) == p {
            break id;
        }
    };
    let v = s.wait_for_verdicts(&later, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    let fenced_after = events_total(addr_a, "aggregator", "fenced").expect("a's /metrics");
    let now = s.partition_status()[p].clone();
    eprintln!(
        "after the thaw: a's fenced counter {fenced_before} → {fenced_after}; p{p:02} {before:?} → {now:?}"
    );
    assert!(
        fenced_after > fenced_before,
        "the thawed replica's late effects on p{p:02} were fenced"
    );
    assert_eq!(
        now.owner.as_deref().and_then(owner_pid),
        Some(a_pid),
        "a owns p{p:02} again, under a new epoch"
    );
    assert!(now.epoch > thawed.epoch);
    let mut all = vec![batch, next];
    all.extend(later.iter().filter(|id| **id != next));
    assert_all_exact_sum(&s, &all);
    assert!(s.is_alive("aggregator-a"), "a survived its fencing");
}

/// Drill P3: one replica has folded and acked part of a batch when it is
/// SIGKILLed and its partition's directory is lost (deleted: a new disk).
/// A new replica takes the partition (epoch 2) and rebuilds what was acked
/// from Postgres (the completed chunks' stored results): the batch
/// succeeds, exact, with the sweeper's refill switched off.
#[test]
fn lost_partition_directory_is_rebuilt_from_postgres() {
    let mut s = Stack::with_env(&[NO_REFILL]);
    s.spawn("executor-1", "executor", &SLOW);
    s.spawn("executor-2", "executor", &SLOW);
    s.spawn("aggregator-1", "aggregator", &[]);
    s.spawn("verifier", "verifier", &[]);
    wait_consumers(&mut s, Queue::Work, 2);
    let batch = s.submit("--runs 3200 --chunk-size 100 --name lostdir --workload sum")[0];
    let csv = s.batch_csv(batch);
    // Rows in the CSV are durable and acked a window later: wait for a few.
    s.wait_until("some chunks folded", PATIENCE, |s| {
        std::fs::read_to_string(&csv).is_ok_and(|t| t.lines().count() >= 8)
            && completed_chunks(s, batch) >= 10
    });
    s.kill("aggregator-1");
    let folded = std::fs::read_to_string(&csv).map_or(0, |t| t.lines().count());
    let dir = s.partition_dir(batch);
    std::fs::remove_dir_all(&dir).expect("delete the partition directory");
    let p = usize::from(partition_of(&s, batch));
    let epoch = s.partition_status()[p].epoch;
    eprintln!(
        "killed with {folded} CSV lines, {} of 32 chunks completed; {} deleted",
        completed_chunks(&s, batch),
        dir.display()
    );
    s.spawn("aggregator-2", "aggregator", &[]);
    let v = s.wait_for_verdicts(&[batch], PATIENCE);
    assert!(v[0].success, "{}", v[0].line);
    assert_all_exact_sum(&s, &[batch]);
    let now = s.partition_status()[p].clone();
    assert!(now.epoch > epoch, "a new epoch: {now:?}");
    assert!(s.leftover_csvs().is_empty(), "{:?}", s.leftover_csvs());
}

/// Drill P4: two replicas with separate `WORKER_DATA_DIR`s (two machines)
/// share the partitions, each owning some; batches spread over the
/// partitions all succeed. One machine is then lost (SIGKILL): the other
/// takes its partitions (its disk has none of their state: rebuilt from
/// Postgres) and the batches after succeed too.
#[test]
fn two_replicas_on_two_machines() {
    let mut s = Stack::new();
    let machine_b = s.dir().join("machine-b");
    std::fs::create_dir_all(&machine_b).expect("machine-b's data dir");
    let b_dir = machine_b.display().to_string();
    let replicas = ["aggregator-a", "aggregator-b"];
    s.spawn("executor-1", "executor", &[("CONCURRENCY", "1")]);
    s.spawn("executor-2", "executor", &[("CONCURRENCY", "1")]);
    let a = spawn_replica(&mut s, "aggregator-a", &[]);
    let b = spawn_replica(&mut s, "aggregator-b", &[("WORKER_DATA_DIR", &b_dir)]);
    s.spawn("verifier", "verifier", &[]);
    wait_ready(&mut s, a);
    wait_ready(&mut s, b);
    wait_balanced(&mut s, &replicas);

    let first = s.submit("--runs 2000 --chunk-size 250 --name machines --count 8 --workload sum");
    let spread: BTreeSet<u16> = first.iter().map(|b| partition_of(&s, *b)).collect();
    let v = s.wait_for_verdicts(&first, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    assert_all_exact_sum(&s, &first);
    // Each machine kept state only for its own partitions.
    let b_pid = s.pid("aggregator-b");
    for info in s.partition_status() {
        let name = store::partition::name(info.partition);
        let on_b = machine_b.join("aggregator").join(&name).exists();
        let b_owns = info.owner.as_deref().and_then(owner_pid) == Some(b_pid);
        assert!(!b_owns || on_b, "b owns {name} but has no directory for it");
    }
    eprintln!("first batches over partitions {spread:?}");

    s.kill("aggregator-a");
    let t0 = Instant::now();
    let partitions = usize::from(s.partitions());
    s.wait_until("b owns every partition", PATIENCE, |s| {
        let owners = s.partition_owners();
        owners.len() == 1
            && owners.values().sum::<usize>() == partitions
            && owners.keys().all(|o| owner_pid(o) == Some(b_pid))
    });
    eprintln!(
        "a lost: b owns every partition {} ms later",
        t0.elapsed().as_millis()
    );
    let second = s.submit("--runs 2000 --chunk-size 250 --name machine-b --count 8 --workload sum");
    let v = s.wait_for_verdicts(&second, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    assert_all_exact_sum(&s, &second);
    for p in 0..s.partitions() {
        let name = store::partition::name(p);
        assert!(
            machine_b.join("aggregator").join(&name).exists(),
            "b's disk has {name} now"
        );
    }
    for name in ["executor-1", "executor-2", "aggregator-b", "verifier"] {
        assert!(s.is_alive(name), "{name} still runs");
    }
}

/// Drill P5: batches keep coming while the replicas go 1 → 3 → 1: two
/// replicas join (each gets its fair share of six partitions), then both
/// are stopped with SIGTERM (they hand their partitions over and exit
/// cleanly). Every batch SUCCESS, exact, one line; nothing dead-lettered;
/// at the end every partition is owned by the one replica left.
#[test]
fn scale_one_three_one_while_batches_stream() {
    // Six partitions, so that three replicas' fair shares (2 each) leave
    // none of them idle: with four, the replicas settle at 2/2/0 (the
    // partitions handed over go to the queue's next waiting consumer,
    // which may be the replica that took the previous one).
    let mut s = Stack::with_env(&[("PARTITIONS", "6")]);
    s.spawn("executor-1", "executor", &SLOW);
    s.spawn("executor-2", "executor", &SLOW);
    let first = spawn_replica(&mut s, "aggregator-1", &[]);
    s.spawn("verifier", "verifier", &[]);
    wait_ready(&mut s, first);
    wait_balanced(&mut s, &["aggregator-1"]);

    let mut ids = Vec::new();
    let mut n = 0;
    let mut submit = |s: &mut Stack| {
        n += 1;
        let args = format!("--runs 1200 --chunk-size 100 --name stream-{n} --workload sum");
        ids.extend(s.submit(&args));
    };
    for _ in 0..3 {
        submit(&mut s);
    }
    let t0 = Instant::now();
    let joined = [
        spawn_replica(&mut s, "aggregator-2", &[]),
        spawn_replica(&mut s, "aggregator-3", &[]),
    ];
    submit(&mut s);
    let three = ["aggregator-1", "aggregator-2", "aggregator-3"];
    wait_balanced(&mut s, &three);
    for addr in joined {
        wait_ready(&mut s, addr);
    }
    eprintln!(
        "1 → 3 replicas: balanced {} ms after the start of the two",
        t0.elapsed().as_millis()
    );
    for _ in 0..3 {
        submit(&mut s);
    }
    let t1 = Instant::now();
    for name in ["aggregator-2", "aggregator-3"] {
        let status = s.stop(name, PATIENCE);
        assert!(
            status.success(),
            "{name} exited cleanly on SIGTERM: {status}"
        );
        submit(&mut s);
    }
    let one = ["aggregator-1"];
    wait_balanced(&mut s, &one);
    eprintln!(
        "3 → 1 replicas: the one left owns everything {} ms after the first SIGTERM",
        t1.elapsed().as_millis()
    );
    for _ in 0..2 {
        submit(&mut s);
    }
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    assert_all_exact_sum(&s, &ids);
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0, "nothing dead-lettered");
    let pid = s.pid("aggregator-1");
    let status = s.partition_status();
    assert!(
        status
            .iter()
            .all(|p| p.owner.as_deref().and_then(owner_pid) == Some(pid)),
        "every partition owned by aggregator-1: {status:?}"
    );
    let moves: i64 = status.iter().map(|p| p.handovers).sum();
    let causes: Vec<Option<String>> = status
        .iter()
        .map(|p| p.last_handover_cause.clone())
        .collect();
    eprintln!(
        "{} batches; partitions moved {moves} times; last causes {causes:?}",
        ids.len()
    );
    assert!(s.leftover_csvs().is_empty(), "{:?}", s.leftover_csvs());
}

/// Drill P6, the upgrade: the state of a version before partitions — a
/// batch half folded in a CSV at the top of `aggregator/`, and the rest of
/// its results (with a duplicate) plus a whole second batch in the single
/// results queue `PREFIX.results` — and a fresh partitions table (epoch 0:
/// the first owner merges no changelog, so the CSV is the only record of
/// what was acked). A replica of this version moves the CSV into its
/// partition's directory before it takes anything, drains the old queue
/// into the partition queues, and both batches end with one correct
/// verdict (the sweeper's refill switched off).
#[test]
fn upgrade_from_the_single_queue_and_directory() {
    let mut s = Stack::with_env(&[NO_REFILL]);
    // The executors do the work (run rows and stored results) first.
    s.spawn("executor-1", "executor", &[("CONCURRENCY", "1")]);
    wait_consumers(&mut s, Queue::Work, 1);
    let ids = s.submit("--runs 1600 --chunk-size 200 --name legacy --count 2 --workload sum");
    let (half, whole) = (ids[0], ids[1]);
    s.wait_until("every chunk completed", PATIENCE, |s| {
        ids.iter().all(|b| completed_chunks(s, *b) == 8)
    });
    s.kill("executor-1");
    // The executors published to the partition queues; a legacy deployment
    // had them in the single queue: take them out.
    let mut per_queue = std::collections::BTreeMap::new();
    for b in &ids {
        *per_queue.entry(s.results_queue(*b)).or_insert(0) += 8;
    }
    for (q, n) in per_queue {
        s.take(q, n, PATIENCE);
    }
    let results = |s: &Stack, b: Uuid| -> Vec<broker::Message> {
        (s.chunks(b).into_iter())
            .map(|c| result_msg(s, b, c.chunk, &c.result.expect("a stored result")))
            .collect()
    };
    let (half_results, whole_results) = (results(&s, half), results(&s, whole));

    // The legacy CSV: rows made by this version's aggregator, then moved to
    // where the old version kept them, its directory lock and tombstones
    // with them.
    s.publish_all(half_results[..4].to_vec());
    s.spawn("aggregator", "aggregator", &[]);
    let csv = s.batch_csv(half);
    s.wait_until("four rows of the first batch folded", PATIENCE, |s| {
        std::fs::read_to_string(&csv).is_ok_and(|t| t.lines().count() >= 4)
            && s.queue_depth(s.results_queue(half)) == 0
    });
    s.kill("aggregator");
    let root = s.aggregator_dir();
    let legacy_csv = root.join(format!("{half}.csv"));
    std::fs::rename(&csv, &legacy_csv).expect("move the CSV to the old layout");
    let tombstones = s.partition_dir(half).join(stateful_worker_tombstones());
    if tombstones.exists() {
        std::fs::rename(&tombstones, root.join(stateful_worker_tombstones()))
            .expect("move the tombstones");
    }
    for entry in std::fs::read_dir(&root).expect("aggregator dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path).expect("remove a partition dir");
        }
    }
    // A database just migrated to partitions: no owner has been.
    s.block_on(
        sqlx::query(
            "UPDATE partitions SET epoch = 0, owner = NULL, owned_since = NULL, handovers = 0,
                    last_handover_at = NULL, last_handover_cause = NULL, release_cause = NULL",
        )
        .execute(s.pool()),
    )
    .expect("reset the partitions");
    s.block_on(sqlx::query("DELETE FROM aggregator_replicas").execute(s.pool()))
        .expect("forget the replica");

    // The old queue, with the rest of the first batch (chunk 0 again: a
    // redelivery) and all of the second.
    declare_legacy_results_queue(&s);
    let legacy: Vec<broker::Message> = (half_results[4..].iter())
        .chain(&half_results[..1])
        .chain(&whole_results)
        .cloned()
        .map(|mut m| {
            m.queue = Queue::LegacyResults;
            m
        })
        .collect();
    let published = legacy.len() as u64;
    s.publish_all(legacy);
    assert_eq!(s.queue_depth(Queue::LegacyResults), published);

    s.spawn("verifier", "verifier", &[]);
    s.spawn("aggregator-new", "aggregator", &[]);
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    assert_all_exact_sum(&s, &ids);
    assert!(!legacy_csv.exists(), "the old CSV was moved");
    assert!(
        std::fs::read_dir(&root)
            .expect("aggregator dir")
            .filter_map(Result::ok)
            .all(|e| !e.file_name().to_string_lossy().ends_with(".csv")),
        "no CSV left at the top of {}",
        root.display()
    );
    assert_eq!(
        s.queue_depth(Queue::LegacyResults),
        0,
        "the old queue drained"
    );
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0, "nothing dead-lettered");
    assert!(s.leftover_csvs().is_empty(), "{:?}", s.leftover_csvs());
    let epochs: Vec<i64> = s.partition_status().iter().map(|p| p.epoch).collect();
    eprintln!("upgrade: {published} results drained from the old queue; epochs now {epochs:?}");
    let p = usize::from(partition_of(&s, half));
    assert_eq!(
        s.partition_status()[p].epoch,
        1,
        "the first batch's rows came from the moved CSV (epoch 1 merges no changelog)"
    );
}

/// The tombstone log's file name in a state directory.
fn stateful_worker_tombstones() -> &'static str {
    "tombstones.log"
}

/// Drill P7 (issue 21, defect 2): a replica that starts again under the
/// same name — a container keeps its hostname and pid 1, a StatefulSet pod
/// its name; here a fixed `REPLICA_ID` — is a new owner: the partitions the
/// store says its name owned are released at its start and taken again
/// under new epochs. Two more replicas join: the spread evens out, idle,
/// and again with batches streaming after one of them is SIGKILLed and
/// restarted under its name. Every batch SUCCESS, exact, one line. Prints
/// how long each evening out took.
#[test]
fn a_replica_restarted_under_its_name_lets_the_spread_even_out() {
    let mut s = Stack::with_env(&[NO_REFILL, ("PARTITIONS", "6")]);
    let named = |s: &mut Stack, owner: &str| {
        let _ = s;
        Some(owner.to_owned())
    };
    let addr_a = spawn_replica(&mut s, "aggregator-a", &[("REPLICA_ID", "agg-a")]);
    s.spawn("executor-1", "executor", &SLOW);
    s.spawn("executor-2", "executor", &SLOW);
    s.spawn("verifier", "verifier", &[]);
    wait_ready(&mut s, addr_a);
    wait_even(&mut s, &["agg-a"], named);
    let before = s.partition_status();

    s.kill("aggregator-a");
    s.restart("aggregator-a");
    wait_ready(&mut s, addr_a);
    s.wait_until("agg-a took every partition again", PATIENCE, |s| {
        s.partition_status()
            .iter()
            .zip(&before)
            .all(|(now, then)| now.epoch > then.epoch && now.owner.as_deref() == Some("agg-a"))
    });
    let again = s.partition_status();
    assert!(
        again
            .iter()
            .all(|p| p.last_handover_cause.as_deref() == Some("restart")),
        "{again:?}"
    );

    let t0 = Instant::now();
    let addr_b = spawn_replica(&mut s, "aggregator-b", &[("REPLICA_ID", "agg-b")]);
    let addr_c = spawn_replica(&mut s, "aggregator-c", &[("REPLICA_ID", "agg-c")]);
    let three = ["agg-a", "agg-b", "agg-c"];
    wait_even(&mut s, &three, named);
    let idle = t0.elapsed();
    for addr in [addr_b, addr_c] {
        wait_ready(&mut s, addr);
    }

    let ids = s.submit("--runs 2400 --chunk-size 100 --count 6 --name busy --workload sum");
    s.wait_until("the batches under way", PATIENCE, |s| {
        ids.iter().map(|id| completed_chunks(s, *id)).sum::<i64>() >= 6
    });
    let b_before: Vec<store::PartitionInfo> = s
        .partition_status()
        .into_iter()
        .filter(|p| p.owner.as_deref() == Some("agg-b"))
        .collect();
    let t1 = Instant::now();
    s.kill("aggregator-b");
    s.restart("aggregator-b");
    // What agg-b owned is owned again under new epochs (by the restarted
    // agg-b or another), and the spread is even.
    s.wait_until("agg-b's partitions taken again", PATIENCE, |s| {
        let now = s.partition_status();
        b_before
            .iter()
            .all(|b| now[usize::from(b.partition)].epoch > b.epoch)
    });
    wait_even(&mut s, &three, named);
    let busy = t1.elapsed();
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    assert_all_exact_sum(&s, &ids);
    eprintln!(
        "restart under the same name: 1 → 3 replicas even (idle) after {} ms; \
         agg-b SIGKILLed and restarted, even again (busy) after {} ms",
        idle.as_millis(),
        busy.as_millis()
    );
}

/// Drill P8 (issue 21): an owner's idle partitions move as soon as its
/// process dies, seen from its database session rather than a silence.
/// Two idle replicas, each owning half; one is SIGKILLed (5 times,
/// `FAILOVER_KILLS` for more, alternating), and each of its partitions is
/// taken by the other under a new epoch (cause `failover`); it is restarted
/// after. Prints, per partition and per kill (its last partition), the
/// time from the kill to the new epoch (the store's clock, same host).
#[test]
fn a_dead_owners_idle_partitions_move_at_once() {
    let kills: usize = std::env::var("FAILOVER_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let mut s = Stack::new();
    let replicas = ["aggregator-a", "aggregator-b"];
    let addrs: Vec<SocketAddr> = replicas
        .iter()
        .map(|r| spawn_replica(&mut s, r, &[]))
        .collect();
    for addr in &addrs {
        wait_ready(&mut s, *addr);
    }
    let (mut each, mut last) = (Vec::new(), Vec::new());
    for round in 0..kills {
        wait_balanced(&mut s, &replicas);
        let victim = replicas[round % 2];
        let pid = s.pid(victim);
        let before: Vec<store::PartitionInfo> = s
            .partition_status()
            .into_iter()
            .filter(|p| p.owner.as_deref().and_then(owner_pid) == Some(pid))
            .collect();
        assert!(!before.is_empty(), "{victim} owns partitions");
        let killed_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs_f64();
        s.kill(victim);
        s.wait_until("every partition of the dead owner taken", PATIENCE, |s| {
            let now = s.partition_status();
            before
                .iter()
                .all(|b| now[usize::from(b.partition)].epoch > b.epoch)
        });
        let now = s.partition_status();
        let mut moved = Vec::new();
        for b in &before {
            let after = &now[usize::from(b.partition)];
            assert_eq!(after.last_handover_cause.as_deref(), Some("failover"));
            let at = after.last_handover_at.expect("a hand-over time");
            moved.push(Duration::from_secs_f64((at - killed_at).max(0.0)));
        }
        last.extend(moved.iter().max().copied());
        each.extend(moved);
        s.restart(victim);
        wait_ready(&mut s, addrs[round % 2]);
    }
    summary(
        &format!("idle failover, kill → new epoch, per partition ({kills} kills)"),
        &each,
    );
    summary(
        &format!("idle failover, kill → last partition's new epoch ({kills} kills)"),
        &last,
    );
}

/// Drill P9 (issue 21, defect 3): an owner cut off from RabbitMQ only (its
/// connections go through a proxy that stops forwarding; Postgres stays
/// reachable), with the other replica on the same disk and batches in
/// flight. RabbitMQ drops the cut connections after the short default AMQP
/// heartbeat, the other replica gets the partitions' results and takes
/// them; the cut replica sees it and lets go at once (`fenced`), or — once
/// RabbitMQ has not answered it for the silence bound — lets go of every
/// partition itself (`broker_silence_let_go`) and stops heartbeating, so
/// that the other takes its idle partitions too, to which no work comes.
/// The directory locks pass and the batches finish. Healed, it announces
/// itself again, stands by and the spread evens out. Every batch SUCCESS,
/// exact, one line. Prints the times.
#[test]
fn an_owner_cut_from_rabbitmq_lets_go_at_once() {
    let mut s = Stack::with_env(&[NO_REFILL]);
    let proxy = TcpProxy::start(service_addr(&rabbitmq_url(), 5672));
    let cut_url = url_via(&rabbitmq_url(), proxy.addr);
    let addr_a = start_with_one_owner(&mut s, &[("RABBITMQ_URL", &cut_url)]);
    // b shares a's disk (WORKER_DATA_DIR): the directory locks must pass.
    let addr_b = spawn_replica(&mut s, "aggregator-b", &[]);
    let replicas = ["aggregator-a", "aggregator-b"];
    wait_ready(&mut s, addr_b);
    wait_balanced(&mut s, &replicas);
    let a_id = replica_id_of(&mut s, "aggregator-a");
    let a_pid = s.pid("aggregator-a");

    let ids = s.submit("--runs 4000 --chunk-size 100 --count 8 --name cut --workload sum");
    // a's partitions with a batch in flight: those must move.
    let busy: BTreeSet<u16> = ids.iter().map(|id| partition_of(&s, *id)).collect();
    let a_busy: Vec<u16> = s
        .partition_status()
        .into_iter()
        .filter(|p| busy.contains(&p.partition))
        .filter(|p| p.owner.as_deref().and_then(owner_pid) == Some(a_pid))
        .map(|p| p.partition)
        .collect();
    assert!(!a_busy.is_empty(), "a owns a partition with batches");
    s.wait_until("the batches under way", PATIENCE, |s| {
        ids.iter().map(|id| completed_chunks(s, *id)).sum::<i64>() >= 8
    });
    let fenced_before = events_total(addr_a, "aggregator", "fenced").expect("a's /metrics");
    let let_go_before =
        events_total(addr_a, "aggregator", "broker_silence_let_go").expect("a's /metrics");

    let t0 = Instant::now();
    proxy.cut();
    // When each of a's busy partitions became b's (at its first result
    // after RabbitMQ dropped a's connections).
    let mut moved: Vec<(u16, Duration)> = Vec::new();
    s.wait_until("b took a's busy partitions", PATIENCE, |s| {
        let (now, b_pid) = (s.partition_status(), s.pid("aggregator-b"));
        for p in &a_busy {
            let bs = now[usize::from(*p)].owner.as_deref().and_then(owner_pid) == Some(b_pid);
            if bs && !moved.iter().any(|(q, _)| q == p) {
                moved.push((*p, t0.elapsed()));
            }
        }
        moved.len() == a_busy.len()
    });
    let moved: Vec<String> = moved
        .iter()
        .map(|(p, t)| format!("p{p:02} {} ms", t.as_millis()))
        .collect();
    // Idle ones too: no result comes for them, so only a letting go (and
    // b, once a is silent, nudging them) moves them.
    let partitions = usize::from(s.partitions());
    s.wait_until("b owns every partition, a's idle ones too", PATIENCE, |s| {
        let b_pid = s.pid("aggregator-b");
        let owners = s.partition_owners();
        owners.len() == 1
            && owners
                .iter()
                .all(|(o, n)| owner_pid(o) == Some(b_pid) && *n == partitions)
    });
    let all_moved = t0.elapsed();
    let v = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    let done = t0.elapsed();
    // Cut from RabbitMQ, a still talks to Postgres, yet does not claim to
    // be a live owner while it cannot consume.
    s.wait_until("the cut replica no longer counts as live", PATIENCE, |s| {
        let view = s.cli(&["partitions", "--json"], Duration::from_secs(60));
        assert!(view.success(), "{}", view.stderr);
        let json: serde_json::Value = serde_json::from_str(&view.stdout).expect("JSON");
        let live: Vec<String> = json["replicas"]
            .as_array()
            .map(|rs| {
                rs.iter()
                    .filter_map(|r| Some(r["replica"].as_str()?.to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        !live.contains(&a_id)
    });
    let fenced_cut = events_total(addr_a, "aggregator", "fenced").expect("a's /metrics");
    let let_go_cut =
        events_total(addr_a, "aggregator", "broker_silence_let_go").expect("a's /metrics");
    // Each of a's partitions went one way or the other: taken by b while a
    // still held it (fenced), or let go by a when RabbitMQ stayed silent.
    assert!(
        fenced_cut > fenced_before || let_go_cut > let_go_before,
        "a dropped or let go of its partitions"
    );
    assert!(s.is_alive("aggregator-a"), "a survived the cut");

    proxy.heal();
    let t1 = Instant::now();
    wait_ready(&mut s, addr_a);
    let after = s.submit("--runs 1600 --chunk-size 100 --count 4 --name healed --workload sum");
    let v = s.wait_for_verdicts(&after, PATIENCE);
    assert!(v.iter().all(|v| v.success), "{v:?}");
    wait_balanced(&mut s, &replicas);
    let healed = t1.elapsed();
    let all: Vec<Uuid> = ids.iter().chain(&after).copied().collect();
    assert_all_exact_sum(&s, &all);
    eprintln!(
        "cut from RabbitMQ: a's busy partitions owned by b after the cut: {}; \
         all partitions b's {} ms after; batches done {} ms after; fenced {fenced_before} → {fenced_cut}; \
         broker_silence_let_go {let_go_before} → {let_go_cut}; healed: even again {} ms after",
        moved.join(", "),
        all_moved.as_millis(),
        done.as_millis(),
        healed.as_millis()
    );
}
