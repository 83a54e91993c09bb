//! Drill 6: the shared services restarted under a running pipeline —
//! RabbitMQ's application (`rabbitmqctl stop_app` / `start_app`) and the
//! Postgres cluster. Every batch SUCCESS and no worker exited.
//!
//! These touch services every other test (and other people on the machine)
//! use, so the tests of this file run one at a time (`SERIAL`); the other
//! test binaries tolerate the outage because cargo runs test binaries one
//! after another, and other users' clients simply reconnect.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::*;
use fault_tolerance::{Stack, services};

static SERIAL: Mutex<()> = Mutex::new(());

/// Starts a slow pipeline, waits until it is mid-batch, runs `outage`,
/// and checks every batch succeeds with all workers alive.
fn survive(name: &str, outage: impl FnOnce()) {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut s = Stack::new();
    start_pipeline(&mut s, 2, &[("SIMULATION_DELAY_MS", "2")]);
    let ids = s.submit(&format!(
        "--runs 2000 --chunk-size 250 --name {name} --count 3 --workload sum"
    ));
    s.wait_until("a few chunks completed", PATIENCE, |s| {
        s.chunks(ids[0])
            .iter()
            .filter(|c| c.status == "completed")
            .count()
            >= 3
    });
    let total: usize = ids.iter().map(|id| s.chunks(*id).len()).sum();
    let done: usize = ids
        .iter()
        .map(|id| {
            s.chunks(*id)
                .iter()
                .filter(|c| c.status == "completed")
                .count()
        })
        .sum();
    assert!(
        done < total,
        "the outage must start mid-batch (all {total} chunks done already)"
    );
    outage();
    let v = s.wait_for_verdicts(&ids, Duration::from_secs(240));
    assert!(v.iter().all(|v| v.success), "{v:?}");
    for id in &ids {
        s.assert_batch_exact(*id);
        assert_eq!(s.lines_for(*id).len(), 1);
    }
    s.assert_all_alive();
}

#[test]
fn rabbitmq_restarted_mid_batch() {
    survive("rabbit-restart", || {
        services::restart_rabbitmq_app(Duration::from_secs(2))
    });
}

#[test]
fn postgres_restarted_mid_batch() {
    survive("pg-restart", services::restart_postgres);
}
