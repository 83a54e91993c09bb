//! The queue as people read it (`batchline queue`, the console's Queue
//! page, `GET /api/queue`): the unfinished batches in the order the pool
//! serves them, with each one's share of the executors now, its measured
//! rate and its estimated time left. Built here from the rows both
//! backends read, with the same [`share::pick`] the dispatcher decides by,
//! so the order shown is the order served.

use serde::Serialize;

use crate::Uuid;
use crate::share::{self, Candidate, Clocks};

/// How far back a batch's runs/s looks.
pub const RATE_WINDOW_S: f64 = 30.0;

/// One unfinished batch, as the backends read it.
#[derive(Clone, Debug, PartialEq)]
pub struct QueueRow {
    pub id: Uuid,
    pub name: String,
    pub tenant: String,
    pub weight: f64,
    pub vtime: f64,
    pub workload: String,
    pub runs: i64,
    pub chunk_size: i32,
    pub created_at: f64,
    /// Chunks not yet dispatched.
    pub waiting: i64,
    /// Dispatched, not yet claimed.
    pub queued: i64,
    pub running: i64,
    /// Runs of its completed chunks.
    pub runs_done: i64,
    /// Runs of the chunks it completed within the last [`RATE_WINDOW_S`].
    pub runs_recent: i64,
    /// Executor seconds measured so far.
    pub used_s: f64,
    pub seconds_per_run: Option<f64>,
}

/// A [`QueueRow`]'s columns in order, as both backends select them.
pub(crate) type QueueTuple = (
    Uuid,
    String,
    String,
    f64,
    f64,
    String,
    i64,
    i32,
    f64,
    i64,
    i64,
    i64,
    i64,
    i64,
    f64,
    Option<f64>,
);

impl From<QueueTuple> for QueueRow {
    fn from(t: QueueTuple) -> Self {
        QueueRow {
            id: t.0,
            name: t.1,
            tenant: t.2,
            weight: t.3,
            vtime: t.4,
            workload: t.5,
            runs: t.6,
            chunk_size: t.7,
            created_at: t.8,
            waiting: t.9,
            queued: t.10,
            running: t.11,
            runs_done: t.12,
            runs_recent: t.13,
            used_s: t.14,
            seconds_per_run: t.15,
        }
    }
}

/// One batch of [`QueueView`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueEntry {
    /// 1 = served next.
    pub position: usize,
    pub id: Uuid,
    pub name: String,
    pub tenant: String,
    /// `high`, `normal`, `low` or `weight W`.
    pub priority: String,
    pub weight: f64,
    pub runs: i64,
    pub runs_done: i64,
    pub chunks_waiting: i64,
    pub chunks_queued: i64,
    pub chunks_running: i64,
    /// Its part of the chunks running now, 0 to 1.
    pub share_now: f64,
    /// Runs/s over the last [`RATE_WINDOW_S`] (or since it was created).
    pub runs_per_s: f64,
    /// Executor seconds it used so far.
    pub executor_s: f64,
    /// Seconds until its last run, at its current rate, or else at its
    /// fair share of the pool and the measured cost of its workload.
    pub left_s: Option<f64>,
}

/// The queue and the pool it runs on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueueView {
    /// Simulation threads of the executors heard from lately.
    pub executor_threads: i64,
    pub chunks_running: i64,
    pub batches: Vec<QueueEntry>,
}

/// Orders `rows` as the dispatcher serves them (batches with nothing
/// left to dispatch after those that have, oldest first) and computes
/// each one's share, rate and time left. `now` and `created_at` are
/// seconds since the Unix epoch.
pub fn build(rows: Vec<QueueRow>, clocks: &Clocks, executor_threads: i64, now: f64) -> QueueView {
    // Each batch with work gets one turn: the order of their next service.
    let mut candidates: Vec<Candidate> = rows
        .iter()
        .map(|r| Candidate {
            waiting: r.waiting.min(1),
            ..candidate(r)
        })
        .collect();
    let mut order = share::pick(
        &mut clocks.clone(),
        &mut candidates,
        share::Budget::chunks(rows.len()),
    );
    let mut rest: Vec<usize> = (0..rows.len()).filter(|i| !order.contains(i)).collect();
    rest.sort_by(|&a, &b| rows[a].created_at.total_cmp(&rows[b].created_at));
    order.extend(rest);

    let chunks_running: i64 = rows.iter().map(|r| r.running).sum();
    let fair = fair_fractions(&rows);
    let batches = order
        .into_iter()
        .enumerate()
        .map(|(pos, i)| {
            let r = &rows[i];
            let window = (now - r.created_at).clamp(1.0, RATE_WINDOW_S);
            let runs_per_s = r.runs_recent as f64 / window;
            let left_runs = (r.runs - r.runs_done).max(0);
            let left_s = if left_runs == 0 {
                Some(0.0)
            } else if runs_per_s > 0.0 {
                Some(left_runs as f64 / runs_per_s)
            } else {
                estimate_s(left_runs, r.seconds_per_run, executor_threads, fair[i])
            };
            QueueEntry {
                position: pos + 1,
                id: r.id,
                name: r.name.clone(),
                tenant: r.tenant.clone(),
                priority: share::label_of(r.weight),
                weight: r.weight,
                runs: r.runs,
                runs_done: r.runs_done,
                chunks_waiting: r.waiting,
                chunks_queued: r.queued,
                chunks_running: r.running,
                share_now: if chunks_running > 0 {
                    r.running as f64 / chunks_running as f64
                } else {
                    0.0
                },
                runs_per_s,
                executor_s: r.used_s,
                left_s,
            }
        })
        .collect();
    QueueView {
        executor_threads,
        chunks_running,
        batches,
    }
}

fn candidate(r: &QueueRow) -> Candidate {
    Candidate {
        batch_id: r.id,
        tenant: r.tenant.clone(),
        weight: r.weight,
        vtime: r.vtime,
        waiting: r.waiting,
        chunk_cost: share::cost_of(i64::from(r.chunk_size).min(r.runs), r.seconds_per_run),
        created_at: r.created_at,
    }
}

/// Each row's fair fraction of the pool while all of them have work:
/// an equal part per tenant, split by weight among its batches.
fn fair_fractions(rows: &[QueueRow]) -> Vec<f64> {
    rows.iter()
        .map(|r| fraction_with(rows, &r.tenant, r.weight, false))
        .collect()
}

/// The fair fraction of the pool a batch of `tenant` with `weight` gets
/// beside `rows`; `joining` when it is not one of them (a batch about to
/// be submitted).
pub fn fraction_with(rows: &[QueueRow], tenant: &str, weight: f64, joining: bool) -> f64 {
    let mut tenants: Vec<&str> = rows.iter().map(|r| r.tenant.as_str()).collect();
    if joining {
        tenants.push(tenant);
    }
    tenants.sort_unstable();
    tenants.dedup();
    let in_tenant: f64 = rows
        .iter()
        .filter(|r| r.tenant == tenant)
        .map(|r| r.weight)
        .sum::<f64>()
        + if joining { weight } else { 0.0 };
    if in_tenant <= 0.0 || tenants.is_empty() {
        return 1.0;
    }
    (weight / in_tenant) / tenants.len() as f64
}

/// Seconds `runs` runs take at `fraction` of a pool of `threads`
/// simulation threads; `None` without executors.
pub fn estimate_s(
    runs: i64,
    seconds_per_run: Option<f64>,
    threads: i64,
    fraction: f64,
) -> Option<f64> {
    if threads <= 0 || fraction <= 0.0 {
        return None;
    }
    Some(share::cost_of(runs, seconds_per_run) / (threads as f64 * fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u128, tenant: &str, weight: f64, waiting: i64) -> QueueRow {
        QueueRow {
            id: Uuid::from_u128(n),
            name: format!("b{n}"),
            tenant: tenant.into(),
            weight,
            vtime: 0.0,
            workload: "{}".into(),
            runs: 1_000_000,
            chunk_size: 10_000,
            created_at: n as f64,
            waiting,
            queued: 0,
            running: 1,
            runs_done: 0,
            runs_recent: 0,
            used_s: 0.0,
            seconds_per_run: Some(1e-5),
        }
    }

    #[test]
    fn the_order_shown_is_the_order_served() {
        let mut rows = vec![
            row(1, "t", 1.0, 50),
            row(2, "t", 1.0, 50),
            row(3, "t", 1.0, 0),
        ];
        rows[0].vtime = 5.0; // served more than the second so far
        let view = build(rows, &Clocks::default(), 2, 100.0);
        let names: Vec<&str> = view.batches.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["b2", "b1", "b3"]);
        assert_eq!(view.batches[0].position, 1);
        assert_eq!(view.chunks_running, 3);
        assert!((view.batches[0].share_now - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn time_left_from_the_rate_or_else_the_fair_share() {
        let mut rows = vec![row(1, "t", 1.0, 50), row(2, "u", 1.0, 50)];
        rows[0].runs_recent = 300_000; // 10,000 runs/s over 30 s
        rows[0].runs_done = 500_000;
        let view = build(rows, &Clocks::default(), 2, 1_000.0);
        let by_name = |n: &str| view.batches.iter().find(|b| b.name == n).unwrap().clone();
        assert_eq!(by_name("b1").left_s, Some(50.0));
        // 10 s of work, half of a 2-thread pool: 10 s.
        assert!((by_name("b2").left_s.unwrap() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_joining_batch_gets_its_part_of_its_tenant() {
        let rows = vec![
            row(1, "a", 1.0, 5),
            row(2, "a", 1.0, 5),
            row(3, "b", 1.0, 5),
        ];
        // Tenant a (with the newcomer) gets half; the newcomer weighs 2 of 4.
        assert!((fraction_with(&rows, "a", 2.0, true) - 0.25).abs() < 1e-12);
        // A new tenant: a third of the pool.
        assert!((fraction_with(&rows, "c", 1.0, true) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(estimate_s(100, Some(0.1), 0, 0.5), None);
    }
}
