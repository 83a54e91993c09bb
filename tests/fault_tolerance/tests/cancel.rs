//! The cancel drills (issue 19) against the real binary and services: a
//! cancel racing the last chunk's completion, a cancel while the executor
//! holding a chunk is SIGKILLed, a cancel during an aggregator fail-over,
//! a cancel racing a purge, and bad input. Each is judged by the
//! verifier's lines and the rows in Postgres: a cancelled batch ends with
//! exactly one `CANCELLED` line whose `runs_done` is the runs of the
//! chunks completed in Postgres, its run rows are exactly those chunks'
//! (nothing counted twice), nothing is dead-lettered, no batch ever gets
//! FAILURE, and the batches around it end SUCCESS, exact.
//! Timings are printed, never asserted.

// Helpers here are test code: a failed step panics, failing the test.
#![allow(clippy::expect_used)]

mod common;

use std::time::Duration;

use broker::Queue;
use common::*;
use fault_tolerance::{CliOutput, Stack, VerdictLine, run_cli};
use uuid::Uuid;

/// Slow executors (4 ms a run), so that a batch is in flight for seconds.
const SLOW: [(&str, &str); 2] = [("CONCURRENCY", "1"), ("SIMULATION_DELAY_MS", "4")];

fn is_cancelled_in_store(s: &Stack, batch: Uuid) -> bool {
    s.scalar(
        "SELECT count(*) FROM batches WHERE id = $1 AND cancelled_at IS NOT NULL",
        batch,
    ) == 1
}

/// `batch` ended cancelled, exactly: one line, CANCELLED, `runs_done` the
/// runs of the chunks completed in Postgres (and of its aggregate), run
/// rows exactly those of the completed chunks, once each, every other
/// chunk cancelled. Returns the line.
fn assert_cancelled_exact(s: &Stack, batch: Uuid) -> VerdictLine {
    let lines = s.lines_for(batch);
    assert_eq!(lines.len(), 1, "one line for {batch}: {:#?}", s.lines());
    let v = VerdictLine::parse(&lines[0]).unwrap_or_else(|| panic!("not a verdict: {lines:?}"));
    assert!(v.cancelled, "{batch} should be CANCELLED: {}", v.line);
    assert!(is_cancelled_in_store(s, batch), "{batch} not cancelled");
    let (_, runs, chunks) = s.batch_row(batch);
    assert_eq!(v.runs, Some(runs), "{}", v.line);
    let done = s.completed_runs(batch);
    assert_eq!(v.runs_done, Some(done), "runs_done vs Postgres: {}", v.line);
    assert!(done < runs, "a cancelled batch ran every run: {}", v.line);
    assert_eq!(
        s.run_counts(batch),
        (done, done),
        "{batch}: run rows (count, distinct) must both equal the completed chunks' runs"
    );
    assert_eq!(
        s.rows_outside_completed_chunks(batch),
        0,
        "{batch}: a run row outside the completed chunks"
    );
    let states = s.chunks(batch);
    assert_eq!(states.len(), chunks as usize);
    assert!(
        (states.iter()).all(|c| c.status == "completed" || c.status == "cancelled"),
        "{batch}: a chunk neither completed nor cancelled: {states:?}"
    );
    assert!(states.iter().any(|c| c.status == "cancelled"));
    let (summary, _) = s
        .batch_result(batch)
        .unwrap_or_else(|| panic!("{batch} has no (partial) aggregate"));
    assert_eq!(summary.runs(), done as u64, "{batch}: partial aggregate");
    assert_eq!(
        s.scalar("SELECT count(*) FROM verdicts WHERE batch_id = $1", batch),
        1
    );
    v
}

/// `batch` ended SUCCESS, exact, with one line, and was never cancelled.
fn assert_success_exact(s: &Stack, batch: Uuid) {
    let lines = s.lines_for(batch);
    assert_eq!(lines.len(), 1, "one line for {batch}: {:#?}", s.lines());
    assert!(lines[0].starts_with("SUCCESS"), "{}", lines[0]);
    assert!(!is_cancelled_in_store(s, batch), "{batch} cancelled");
    s.assert_batch_exact(batch);
}

/// No FAILURE line anywhere, nothing dead-lettered.
fn assert_no_failure(s: &Stack) {
    let failed: Vec<String> = (s.lines().into_iter())
        .filter(|l| VerdictLine::parse(l).is_none_or(|v| v.failed()))
        .collect();
    assert!(failed.is_empty(), "FAILURE or malformed lines: {failed:#?}");
    assert_eq!(s.queue_depth(Queue::DeadLetter), 0, "dead-lettered");
}

/// `batchline cancel BATCH` with the stack's env.
fn cancel(s: &Stack, batch: Uuid) -> CliOutput {
    s.cli(&["cancel", &batch.to_string()], PATIENCE)
}

/// The cancel answered "cancelled" (exit 0) with `N chunk(s) will not run,
/// M completed kept`; returns `(N, M)`.
fn assert_cancelled_now(out: &CliOutput, batch: Uuid) -> (i64, i64) {
    assert!(out.success(), "cancel {batch}: {out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", out.stdout);
    let rest = (lines[0].strip_prefix(&format!("cancelled {batch}: ")))
        .unwrap_or_else(|| panic!("not a cancel: {}", lines[0]));
    let (left, rest) = rest.split_once(" chunk(s) will not run, ").expect("counts");
    let (kept, _) = rest.split_once(" completed kept").expect("counts");
    (
        left.parse().expect("a count"),
        kept.parse().expect("a count"),
    )
}

/// Waits until `batch` has `n` chunks completed and one running.
fn wait_under_way(s: &mut Stack, batch: Uuid, n: i64) {
    s.wait_until("the batch under way", PATIENCE, |s| {
        completed_chunks(s, batch) >= n
            && s.scalar(
                "SELECT count(*) FROM chunks WHERE batch_id = $1 AND status = 'running'",
                batch,
            ) > 0
    });
}

/// Drill C1: the cancel races the last chunk's completion, several times.
/// One executor runs the chunks one after another; once all but the last
/// completed, the cancel comes at a random moment around the last one's
/// end. Exactly one final state each time, agreeing with the cancel's
/// answer and the store: the cancel said "cancelled" (exit 0) and the batch
/// ends CANCELLED with the completed chunks' runs, or it said the batch is
/// final (exit 1) and the batch ends SUCCESS, exact, never cancelled.
#[test]
fn cancel_racing_the_last_completion_ends_one_way() {
    let rounds = env_count("CANCEL_RACES", 5);
    let mut s = Stack::new();
    start_pipeline(&mut s, 1, &[("SIMULATION_DELAY_MS", "2")]);
    let (mut cancelled, mut final_first) = (0, 0);
    let mut ids = Vec::new();
    for round in 0..rounds {
        // Three chunks of 400 runs, about 0.8 s each on an idle machine.
        let args = format!("--runs 1200 --chunk-size 400 --seed {round} --name race-{round}");
        let batch = s.submit(&args)[0];
        ids.push(batch);
        s.wait_until("a chunk completed", PATIENCE, |s| {
            completed_chunks(s, batch) >= 1
        });
        let second = std::time::Instant::now();
        s.wait_until("all but the last chunk completed", PATIENCE, |s| {
            completed_chunks(s, batch) >= 2
        });
        // One chunk's time on this machine now: the cancel lands anywhere
        // from the last chunk's start to well after its end.
        let chunk_ms = second.elapsed().as_millis() as u64;
        std::thread::sleep(Duration::from_millis(random_ms(0, 2 * chunk_ms)));
        let out = cancel(&s, batch);
        let v = s.wait_for_verdicts(&[batch], PATIENCE).remove(0);
        if out.success() {
            let (left, kept) = assert_cancelled_now(&out, batch);
            assert_eq!((left, kept), (1, 2), "{}", out.stdout);
            assert_eq!(assert_cancelled_exact(&s, batch), v);
            assert_eq!(v.runs_done, Some(800));
            cancelled += 1;
        } else {
            assert_eq!(out.code, Some(1), "{out:?}");
            // Final because every chunk completed, or because the verdict
            // came before the cancel did.
            let said = out.stdout.trim();
            assert!(
                said == format!(
                    "not cancelled {batch}: the batch is final: \
                     every chunk completed: it ends with its own verdict"
                ) || said
                    == format!(
                        "not cancelled {batch}: the batch is final: \
                         it has its verdict already (SUCCESS)"
                    ),
                "{out:?}"
            );
            assert_success_exact(&s, batch);
            final_first += 1;
        }
    }
    eprintln!(
        "cancel racing the last completion: {rounds} rounds, {cancelled} CANCELLED, \
         {final_first} SUCCESS (the completion committed first)"
    );
    let sentinel = s.submit("--runs 400 --chunk-size 200 --name sentinel")[0];
    s.wait_for_verdicts(&[sentinel], PATIENCE);
    assert_success_exact(&s, sentinel);
    assert_no_failure(&s);
    s.assert_all_alive();
}

/// Drill C2: the executor holding a chunk of the batch is SIGKILLed
/// mid-chunk, the batch is cancelled while it is down, and the executor
/// restarts. The killed chunk (still `running` under a lease of a dead
/// holder) and the queued ones are cancelled; the restarted executor meets
/// their work messages and drops them; the batch ends CANCELLED with
/// exactly the chunks completed before the kill, and a batch submitted
/// before it and a sentinel after it end SUCCESS.
#[test]
fn cancel_while_its_executor_is_killed() {
    let mut s = Stack::new();
    s.spawn("executor-1", "executor", &SLOW);
    s.spawn("aggregator", "aggregator", &[]);
    s.spawn("verifier", "verifier", &[]);
    wait_consumers(&mut s, Queue::Work, 1);
    wait_consumers(&mut s, Queue::Verify, 1);

    let other = s.submit("--runs 400 --chunk-size 200 --name before --workload sum")[0];
    let batch = s.submit("--runs 8000 --chunk-size 200 --name killed --workload sum")[0];
    wait_under_way(&mut s, batch, 3);
    s.kill("executor-1");
    let completed = completed_chunks(&s, batch);
    let out = cancel(&s, batch);
    let (left, kept) = assert_cancelled_now(&out, batch);
    assert_eq!(kept, completed, "the completed chunks are kept");
    assert_eq!(left + kept, 40, "{}", out.stdout);
    s.restart("executor-1");
    let sentinel = s.submit("--runs 400 --chunk-size 200 --name after --workload sum")[0];
    s.wait_for_verdicts(&[other, batch, sentinel], PATIENCE);
    let v = assert_cancelled_exact(&s, batch);
    assert_eq!(completed_chunks(&s, batch), completed, "{}", v.line);
    eprintln!("cancel while its executor is killed: {}", v.line);
    assert_success_exact(&s, other);
    assert_success_exact(&s, sentinel);
    assert_no_failure(&s);
    s.assert_all_alive();
}

/// Drill C3: two aggregator replicas; right after the cancel commits, the
/// replica owning the batch's partition is SIGKILLed (it may or may not
/// have sealed the batch). The standby takes the partition under a new
/// epoch and the batch ends CANCELLED, exactly once; a batch in flight on
/// another partition during the fail-over and a sentinel end SUCCESS.
#[test]
fn cancel_during_an_aggregator_failover() {
    let mut s = Stack::new();
    let replicas = ["aggregator-a", "aggregator-b"];
    let addrs = start_replicated(&mut s, &replicas, &SLOW);
    wait_balanced(&mut s, &replicas);

    let batch = s.submit("--runs 8000 --chunk-size 100 --name failover --workload sum")[0];
    let p = usize::from(partition_of(&s, batch));
    // A batch on another partition, in flight during the fail-over.
    // Same-partition ones must end SUCCESS too: checked at the end, not
    // waited for here (the batch would end before the cancel).
    let mut same = Vec::new();
    let other = loop {
        let id = s.submit("--runs 1200 --chunk-size 100 --name beside --workload sum")[0];
        if usize::from(partition_of(&s, id)) != p {
            break id;
        }
        same.push(id);
    };
    wait_under_way(&mut s, batch, 6);
    let before = s.partition_status()[p].clone();
    let owner = before.owner.clone().expect("the partition is owned");
    let victim = replica_named(&mut s, &owner, &replicas)
        .unwrap_or_else(|| panic!("partition {p} owned by {owner}, not a running replica"));
    let out = cancel(&s, batch);
    s.kill(victim);
    assert_cancelled_now(&out, batch);
    s.wait_until("the standby took the partition", PATIENCE, |s| {
        let now = &s.partition_status()[p];
        now.epoch > before.epoch && now.owner.as_ref().is_some_and(|o| *o != owner)
    });
    let v = s.wait_for_verdicts(&[batch, other], PATIENCE);
    eprintln!(
        "cancel during a fail-over of p{p:02} ({victim} killed): {}",
        v[0].line
    );
    assert_cancelled_exact(&s, batch);
    assert_success_exact(&s, other);
    s.wait_for_verdicts(&same, PATIENCE);
    for id in &same {
        assert_success_exact(&s, *id);
    }
    s.restart(victim);
    let i = replicas
        .iter()
        .position(|r| *r == victim)
        .expect("a replica");
    wait_ready(&mut s, addrs[i]);
    let sentinel = s.submit("--runs 400 --chunk-size 100 --name sentinel --workload sum")[0];
    s.wait_for_verdicts(&[sentinel], PATIENCE);
    assert_success_exact(&s, sentinel);
    assert_no_failure(&s);
    assert!(s.leftover_csvs().is_empty(), "{:?}", s.leftover_csvs());
}

/// Drill C4: `cancel` and `purge --force` of a running batch at once, each
/// order of starting them, a few times. Whatever commits first, the batch
/// ends purged — only its record left, nothing stuck in the aggregator,
/// still so after the sweepers had time to act — and the cancel said
/// "cancelled" (it came first) or "was purged" (it came second). A purged
/// batch has a line only if it was judged before the purge, and then one
/// CANCELLED line. The batches beside it end SUCCESS.
#[test]
fn cancel_racing_purge_ends_purged() {
    let mut s = Stack::with_env(&[("STALL_DEADLINE_S", "2")]);
    start_pipeline(&mut s, 2, &[("SIMULATION_DELAY_MS", "4")]);
    let env = s.env().to_vec();
    let mut outcomes = Vec::new();
    for round in 0..6 {
        let cancel_first = round % 2 == 0;
        let args = format!("--runs 6000 --chunk-size 200 --seed {round} --name purge-race-{round}");
        let batch = s.submit(&args)[0];
        wait_under_way(&mut s, batch, 2);
        let id = batch.to_string();
        // The second starts up to 0.4 s after the first (cancel connects
        // to RabbitMQ as well, so it takes longer to reach Postgres).
        let spawn = |args: Vec<String>, after: u64| {
            let env = env.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(after));
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                run_cli(&args, &env, PATIENCE)
            })
        };
        let cancel_args = vec!["cancel".to_owned(), id.clone()];
        let purge_args = vec!["purge".to_owned(), "--force".to_owned(), id.clone()];
        let later = random_ms(0, 400);
        let (c, p) = if cancel_first {
            let c = spawn(cancel_args, 0);
            (c, spawn(purge_args, later))
        } else {
            let p = spawn(purge_args, 0);
            (spawn(cancel_args, later), p)
        };
        let (c, p) = (c.join().expect("cancel"), p.join().expect("purge"));
        assert!(p.success(), "purge --force: {p:?}");
        assert!(p.stdout.contains(&format!("purged {id}")), "{p:?}");
        let said = if c.success() {
            assert_cancelled_now(&c, batch);
            "cancelled, then purged"
        } else {
            assert_eq!(c.code, Some(1), "{c:?}");
            assert_eq!(
                c.stdout.trim(),
                format!("not cancelled {id}: the batch was purged"),
                "{c:?}"
            );
            "purged before the cancel"
        };
        outcomes.push(format!(
            "round {round} ({} started first, the other {later} ms later): {said}",
            if cancel_first { "cancel" } else { "purge" }
        ));
        // The record says whether it was judged before the purge.
        let judged = s.scalar(
            "SELECT count(*) FROM purged_batches WHERE id = $1 AND success IS NOT NULL",
            batch,
        ) == 1;
        let lines = s.lines_for(batch);
        if judged {
            assert_eq!(lines.len(), 1, "{lines:?}");
            assert!(lines[0].starts_with("CANCELLED"), "{lines:?}");
        } else {
            assert!(lines.is_empty(), "a line for a purged batch: {lines:?}");
        }
        s.wait_until("the aggregator dropped the batch's state", PATIENCE, |s| {
            !s.batch_csv(batch).exists()
        });
    }
    // The sweepers re-publish what they find every second (stall deadline
    // 2 s): long enough for them to have brought any part of a purged
    // batch back.
    std::thread::sleep(Duration::from_secs(5));
    let sentinel = s.submit("--runs 400 --chunk-size 200 --name sentinel")[0];
    s.wait_for_verdicts(&[sentinel], PATIENCE);
    assert_success_exact(&s, sentinel);
    let raced: Vec<Uuid> = s
        .block_on(
            sqlx::query_scalar("SELECT id FROM purged_batches ORDER BY purged_at")
                .fetch_all(s.pool()),
        )
        .expect("read purge records");
    assert_eq!(raced.len(), 6, "every raced batch purged");
    for id in raced {
        for table in [
            "batches",
            "chunks",
            "batch_results",
            "verdicts",
            "run_results",
        ] {
            let key = if table == "batches" { "id" } else { "batch_id" };
            let sql = format!("SELECT count(*) FROM {table} WHERE {key} = $1");
            assert_eq!(s.scalar(&sql, id), 0, "{id} came back in {table}");
        }
        let lines = s.lines_for(id);
        assert!(lines.len() <= 1, "{id} judged twice: {lines:?}");
    }
    for o in &outcomes {
        eprintln!("cancel racing purge: {o}");
    }
    assert!(s.leftover_csvs().is_empty(), "{:?}", s.leftover_csvs());
    assert_no_failure(&s);
    s.assert_all_alive();
}

/// Drill C5: bad input, one line each. An unknown id exits 1; a finished
/// batch is final, exit 1; a second cancel says so, exit 0; several ids
/// get a line each, in order, and exit 1 if any was refused. `status`
/// shows the cancelled batch, and it purges without `--force`.
#[test]
fn cancel_answers_one_line_per_batch() {
    let mut s = Stack::new();
    start_pipeline(&mut s, 1, &[("SIMULATION_DELAY_MS", "4")]);
    let unknown = Uuid::new_v4();
    let out = cancel(&s, unknown);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(out.stdout, format!("unknown batch {unknown}\n"));

    let done = s.submit("--runs 200 --chunk-size 100 --name done")[0];
    s.wait_for_verdicts(&[done], PATIENCE);
    let out = cancel(&s, done);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("not cancelled {done}: the batch is final: it has its verdict already (SUCCESS)\n")
    );

    let running = s.submit("--runs 20000 --chunk-size 500 --name stopped")[0];
    wait_under_way(&mut s, running, 1);
    let out = s.cli(
        &["cancel", &running.to_string(), "--reason", "by mistake"],
        PATIENCE,
    );
    assert_cancelled_now(&out, running);
    let out = cancel(&s, running);
    assert!(out.success(), "{out:?}");
    assert_eq!(out.stdout, format!("already cancelled {running}\n"));

    let ids = [running, unknown, done].map(|id| id.to_string());
    let mut args = vec!["cancel"];
    args.extend(ids.iter().map(String::as_str));
    let out = s.cli(&args, PATIENCE);
    assert_eq!(out.code, Some(1), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert_eq!(lines[0], format!("already cancelled {running}"));
    assert_eq!(lines[1], format!("unknown batch {unknown}"));
    assert!(lines[2].starts_with(&format!("not cancelled {done}: the batch is final")));

    s.wait_for_verdicts(&[running], PATIENCE);
    assert_cancelled_exact(&s, running);
    let reason = s.scalar(
        "SELECT count(*) FROM batches WHERE id = $1 AND cancel_reason = 'by mistake'",
        running,
    );
    assert_eq!(reason, 1, "the first cancel's reason is kept");
    let out = s.cli(&["status", &running.to_string()], PATIENCE);
    assert!(out.success() && out.stdout.contains("CANCELLED"), "{out:?}");
    let out = s.cli(&["purge", &running.to_string()], PATIENCE);
    assert!(
        out.success(),
        "a cancelled batch purges without --force: {out:?}"
    );
    let out = cancel(&s, running);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("not cancelled {running}: the batch was purged\n")
    );
    assert_no_failure(&s);
    s.assert_all_alive();
}
