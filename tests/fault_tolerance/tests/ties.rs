//! The verifier drill for ties, with a tie-heavy event (Spring League with
//! its second team a twin of the first: about a quarter of the runs end
//! level). Three batches are aggregated by the real pipeline while no
//! verifier runs; then one aggregate is left as it is, one is rewritten
//! as a tie-blind build would have summed it (ties handed to the team
//! listed first, in today's format), and one as a build from before tie
//! counts stored it (no tie fields). The verifier, started last, must pass
//! the first and the third and fail the second, naming the tied runs; and
//! `batchline results` shows the tie rate, or says ties were not counted.
// Helpers here are test code: a failed step panics, failing the test.
#![allow(clippy::expect_used)]

mod common;

use std::time::Duration;

use broker::Queue;
use common::*;
use fault_tolerance::{Stack, expected_summary, twins_event};
use serde_json::Value;
use uuid::Uuid;
use workload::WorkloadSpec;

fn stored_json(s: &Stack, id: Uuid) -> Value {
    let json: String = s
        .block_on(
            sqlx::query_scalar("SELECT result FROM batch_results WHERE batch_id = $1")
                .bind(id)
                .fetch_one(s.pool()),
        )
        .expect("read the aggregate");
    serde_json::from_str(&json).expect("the aggregate is JSON")
}

fn store_json(s: &Stack, id: Uuid, value: &Value) {
    s.block_on(
        sqlx::query("UPDATE batch_results SET result = $2 WHERE batch_id = $1")
            .bind(id)
            .bind(value.to_string())
            .execute(s.pool()),
    )
    .expect("rewrite the aggregate");
}

/// The aggregate with every tie given to the team listed first: wins +
/// tiebreaks. `keep_fields` keeps the tie fields at zero (a tie-blind
/// aggregate in today's format); otherwise they go (a build from before
/// tie counts).
fn ties_as_wins(mut v: Value, keep_fields: bool) -> Value {
    let top = v.as_object_mut().expect("an object");
    if keep_fields {
        top.insert("tied_runs".into(), 0.into());
    } else {
        top.remove("tied_runs");
    }
    for t in v["teams"].as_array_mut().expect("teams") {
        let t = t.as_object_mut().expect("a team");
        let breaks = t["tiebreaks"].as_u64().expect("tiebreaks");
        let wins = t["wins"].as_u64().expect("wins");
        t.insert("wins".into(), (wins + breaks).into());
        if keep_fields {
            t.insert("ties".into(), 0.into());
            t.insert("tiebreaks".into(), 0.into());
        } else {
            t.remove("ties");
            t.remove("tiebreaks");
        }
    }
    v
}

#[test]
fn ties_are_verified_and_older_aggregates_still_pass() {
    let mut s = Stack::new();
    s.spawn("executor-1", "executor", &[]);
    s.spawn("aggregator", "aggregator", &[]);
    wait_consumers(&mut s, Queue::Work, 1);
    let event = twins_event("Twins");
    let path = s.dir().join("twins.json");
    std::fs::write(&path, serde_json::to_string(&event).expect("event JSON")).expect("write");
    let ids = s.submit(&format!(
        "--runs 2000 --chunk-size 500 --seed 7 --name twins --count 3 --event {}",
        path.display()
    ));
    let [honest, blind, older] = ids[..] else {
        panic!("three batches expected, got {ids:?}")
    };
    s.wait_until("three aggregates", PATIENCE, |s| {
        ids.iter().all(|id| s.batch_result(*id).is_some())
    });

    // The pipeline's aggregate is the exact in-process one, ties counted.
    let spec = WorkloadSpec::Bingo { event };
    let (seed, runs, _) = s.batch_row(honest);
    let (summary, _) = s.batch_result(honest).expect("aggregate");
    assert_eq!(summary, expected_summary(&spec, seed, runs as u64));
    let tied = summary.tied_runs().expect("ties counted");
    assert!(
        tied * 10 > runs as u64,
        "a tie-heavy event: {tied} tied runs of {runs}"
    );

    store_json(&s, blind, &ties_as_wins(stored_json(&s, blind), true));
    store_json(&s, older, &ties_as_wins(stored_json(&s, older), false));
    let (old, _) = s
        .batch_result(older)
        .expect("an older aggregate still reads");
    assert_eq!(old.tied_runs(), None);
    assert!(!old.counts_ties());

    s.spawn("verifier", "verifier", &[]);
    let verdicts = s.wait_for_verdicts(&ids, PATIENCE);
    assert!(verdicts[0].success, "{:?}", verdicts[0]);
    assert!(!verdicts[1].success, "a tie-blind aggregate must fail");
    let reason = verdicts[1].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("tied runs: aggregate 0, rows "),
        "the reason names the tied runs: {reason}"
    );
    let blind_tied = expected_summary(&spec, s.batch_row(blind).0, runs as u64).tied_runs();
    assert!(
        reason.contains(&format!("rows {}", blind_tied.expect("counted"))),
        "{reason}"
    );
    assert!(verdicts[2].success, "an older aggregate: {:?}", verdicts[2]);
    for id in &ids {
        assert_eq!(s.lines_for(*id).len(), 1, "{:?}", s.lines());
    }

    // `batchline results`: a tie column and the tied runs, or the notice.
    let results = |id: Uuid| {
        let out = s.cli(&["results", &id.to_string()], Duration::from_secs(60));
        assert!(out.success(), "{out:?}");
        out.stdout
    };
    let text = results(honest);
    assert!(text.contains(" tie "), "{text}");
    assert!(
        text.contains(&format!("tied (no winner, top score shared): {tied} runs")),
        "{text}"
    );
    let text = results(older);
    assert!(text.contains("ties not counted"), "{text}");
}
