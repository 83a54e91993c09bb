//! Fair share: who a batch belongs to and what it weighs ([`Share`]), and
//! which chunk the pool is served next ([`pick`]) — shared by both
//! backends, which only read and write the clocks (docs/architecture.md,
//! "Fair share").
//!
//! Start-time fair queuing on two levels, charged in executor seconds:
//! tenants share the pool equally, and the batches of a tenant share what
//! the tenant gets by weight. Each level keeps a virtual clock: a tenant's
//! (or batch's) `vtime` is the virtual time up to which it was served,
//! `vnow` the start of the last service at that level. The next chunk
//! goes to the tenant with the smallest `max(vtime, vnow)`, and inside it
//! to the batch with the smallest `max(vtime, tenant's vnow)`; serving it
//! advances both by the chunk's cost over the weight. The `max` is what
//! makes a batch that arrives, or wakes after waiting, start at the
//! current minimum: it neither bursts past the others nor banks credit
//! while idle. Every waiting batch's start becomes the smallest in turn, so
//! a low weight is served less often, never not at all.
//!
//! A chunk is charged its estimated cost when it is dispatched (so that
//! dispatches in a row interleave) and the difference to its measured cost
//! when it completes ([`correction`]), so shares converge to measured
//! executor time whatever the estimates were.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::{ChunkRef, Uuid};

/// The tenant of a batch submitted without one.
pub const DEFAULT_TENANT: &str = "default";

/// Longest tenant name.
pub const MAX_TENANT_LEN: usize = 64;

/// The smallest and largest weight a batch may have.
pub const WEIGHT_RANGE: (f64, f64) = (0.01, 100.0);

/// Per-run cost assumed for a workload nothing was measured for yet.
pub const UNMEASURED_SECONDS_PER_RUN: f64 = 25e-6;

/// A named weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    Low,
    Normal,
    High,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// Its weight: normal is 1, high four times that, low a quarter.
    pub fn weight(self) -> f64 {
        match self {
            Priority::Low => 0.25,
            Priority::Normal => 1.0,
            Priority::High => 4.0,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
        }
    }

    /// The priority whose weight this is, if any.
    pub fn of_weight(weight: f64) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.weight() == weight)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            "high" => Ok(Priority::High),
            _ => Err(format!(
                "priority {s:?} is not one of high, normal, low (or give a --weight)"
            )),
        }
    }
}

/// Whose a batch is and how much of its tenant's share it gets.
#[derive(Clone, Debug, PartialEq)]
pub struct Share {
    pub tenant: String,
    pub weight: f64,
}

impl Default for Share {
    fn default() -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_owned(),
            weight: Priority::Normal.weight(),
        }
    }
}

impl Share {
    /// From what a person typed: a tenant (empty: the default), and a
    /// priority or a weight (not both; neither: normal). The error is one
    /// line naming the bad value.
    pub fn parse(
        tenant: Option<&str>,
        priority: Option<&str>,
        weight: Option<&str>,
    ) -> Result<Share, String> {
        let tenant = match tenant.map(str::trim).filter(|t| !t.is_empty()) {
            Some(t) => {
                if let Some(problem) = tenant_problem(t) {
                    return Err(problem);
                }
                t.to_owned()
            }
            None => DEFAULT_TENANT.to_owned(),
        };
        let priority = priority.map(str::trim).filter(|p| !p.is_empty());
        let weight = weight.map(str::trim).filter(|w| !w.is_empty());
        let weight = match (priority, weight) {
            (Some(_), Some(_)) => {
                return Err("give a priority or a weight, not both".into());
            }
            (Some(p), None) => p.parse::<Priority>()?.weight(),
            (None, Some(w)) => parse_weight(w)?,
            (None, None) => Priority::Normal.weight(),
        };
        Ok(Share { tenant, weight })
    }

    /// `high`, `normal` or `low` when the weight is one of theirs, else
    /// the weight itself.
    pub fn label(&self) -> String {
        label_of(self.weight)
    }
}

/// `high`, `normal`, `low`, or the weight as a number.
pub fn label_of(weight: f64) -> String {
    match Priority::of_weight(weight) {
        Some(p) => p.as_str().to_owned(),
        None => format!("weight {weight}"),
    }
}

/// A weight a person typed: a number within [`WEIGHT_RANGE`].
pub fn parse_weight(s: &str) -> Result<f64, String> {
    let (lo, hi) = WEIGHT_RANGE;
    match s.trim().parse::<f64>() {
        Ok(w) if w.is_finite() && (lo..=hi).contains(&w) => Ok(w),
        _ => Err(format!(
            "weight {s:?} is not a number from {lo} to {hi} (normal is 1)"
        )),
    }
}

/// Why a tenant name is refused, if it is: 1 to 64 letters, digits, `.`,
/// `_` or `-`, so it reads the same in every table, URL and log line.
pub fn tenant_problem(name: &str) -> Option<String> {
    if name.is_empty() || name.chars().count() > MAX_TENANT_LEN {
        return Some(format!(
            "tenant {name:?} must have 1 to {MAX_TENANT_LEN} characters"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "tenant {name:?} has {c:?}: use letters, digits, '.', '_' or '-'"
        ));
    }
    None
}

/// A tenant's clocks.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TenantClock {
    /// Served up to here (executor seconds, tenants weigh 1).
    pub vtime: f64,
    /// Start of the last service of one of its batches.
    pub vnow: f64,
}

/// Every clock a dispatch reads and moves.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clocks {
    /// Start of the last service of any tenant.
    pub vnow: f64,
    pub tenants: BTreeMap<String, TenantClock>,
}

impl Clocks {
    /// From the `scheduler` row's `vnow` and `(name, vtime, vnow)` rows of
    /// `tenants`, as both backends read them.
    pub(crate) fn from_rows(vnow: f64, tenants: Vec<(String, f64, f64)>) -> Clocks {
        Clocks {
            vnow,
            tenants: tenants
                .into_iter()
                .map(|(n, vtime, vnow)| (n, TenantClock { vtime, vnow }))
                .collect(),
        }
    }
}

/// A batch with chunks waiting to be dispatched.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub batch_id: Uuid,
    pub tenant: String,
    pub weight: f64,
    /// Served up to here (executor seconds over its weight).
    pub vtime: f64,
    /// Chunks not yet dispatched.
    pub waiting: i64,
    /// Estimated executor seconds of its next chunk.
    pub chunk_cost: f64,
    /// Seconds since the Unix epoch: the older batch goes first on a tie.
    pub created_at: f64,
}

/// `(id, tenant, weight, vtime, waiting, runs, chunk_size, created_at,
/// seconds_per_run)`: a candidate as both backends select it.
pub(crate) type CandidateRow = (Uuid, String, f64, f64, i64, i64, i32, f64, Option<f64>);

impl From<CandidateRow> for Candidate {
    fn from((id, tenant, weight, vtime, waiting, runs, size, created, rate): CandidateRow) -> Self {
        Candidate {
            batch_id: id,
            tenant,
            weight,
            vtime,
            waiting,
            chunk_cost: cost_of(i64::from(size).min(runs), rate),
            created_at: created,
        }
    }
}

/// How much one dispatch may send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Budget {
    /// Chunks still wanted in the queue.
    pub chunks: i64,
    /// Estimated executor seconds still wanted in the queue.
    pub seconds: f64,
    /// Most chunks at once.
    pub limit: usize,
}

impl Budget {
    /// Exactly `n` chunks.
    pub fn chunks(n: usize) -> Budget {
        Budget {
            chunks: i64::try_from(n).unwrap_or(i64::MAX),
            seconds: 0.0,
            limit: n,
        }
    }

    /// What a queue holding `queued` chunks of `queued_s` estimated seconds
    /// lacks of `depth` chunks and `ahead_s` seconds — `None` (nothing to
    /// send) while it holds `depth` chunks and at least half of `ahead_s`,
    /// so that cheap chunks go out several at a time rather than one per
    /// dispatch.
    pub fn refill(
        depth: i64,
        ahead_s: f64,
        queued: i64,
        queued_s: f64,
        limit: i64,
    ) -> Option<Budget> {
        if (queued >= depth && queued_s >= ahead_s / 2.0) || limit <= 0 {
            return None;
        }
        Some(Budget {
            chunks: depth - queued,
            seconds: ahead_s - queued_s,
            limit: usize::try_from(limit).unwrap_or(usize::MAX),
        })
    }

    fn wants_more(&self, picked: usize) -> bool {
        picked < self.limit && (self.chunks > 0 || self.seconds > 0.0)
    }
}

/// What an executor measured for one attempt of a chunk.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Charge {
    pub batch_id: Uuid,
    pub chunk: i32,
    /// Executor seconds its simulation took.
    pub seconds: f64,
}

/// Picks chunks in the order they are to be served while `budget` wants
/// more, moving the clocks and the candidates' `vtime` and `waiting` as it
/// goes. Returns indexes into `candidates`, one per chunk (repeated for a
/// batch that is served several times).
pub fn pick(clocks: &mut Clocks, candidates: &mut [Candidate], budget: Budget) -> Vec<usize> {
    let mut budget = budget;
    let mut order = Vec::new();
    while budget.wants_more(order.len()) {
        // The tenant first: the smallest start among tenants with work.
        let mut tenant: Option<(f64, &str)> = None;
        for c in candidates.iter().filter(|c| c.waiting > 0) {
            let clock = clocks.tenants.get(&c.tenant).copied().unwrap_or_default();
            let start = clock.vtime.max(clocks.vnow);
            if tenant.is_none_or(|(s, name)| (start, c.tenant.as_str()) < (s, name)) {
                tenant = Some((start, c.tenant.as_str()));
            }
        }
        let Some((tenant_start, name)) = tenant else {
            break;
        };
        let name = name.to_owned();
        let clock = clocks.tenants.entry(name.clone()).or_default();
        // Then the batch inside it.
        let mut best: Option<(f64, usize)> = None;
        for (i, c) in candidates.iter().enumerate() {
            if c.waiting <= 0 || c.tenant != name {
                continue;
            }
            let start = c.vtime.max(clock.vnow);
            let better = match best {
                None => true,
                Some((s, j)) => {
                    let o = &candidates[j];
                    (start, c.created_at, c.batch_id) < (s, o.created_at, o.batch_id)
                }
            };
            if better {
                best = Some((start, i));
            }
        }
        let Some((batch_start, i)) = best else {
            break;
        };
        let c = &mut candidates[i];
        clocks.vnow = tenant_start;
        clock.vtime = tenant_start + c.chunk_cost;
        clock.vnow = batch_start;
        c.vtime = batch_start + c.chunk_cost / c.weight;
        c.waiting -= 1;
        budget.chunks -= 1;
        budget.seconds -= c.chunk_cost;
        order.push(i);
    }
    order
}

/// A dispatch's decision: the order chunks are served in, and how many
/// chunks each served batch gives.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Indexes into the candidates, one per chunk, in the order served.
    pub order: Vec<usize>,
    /// `(candidate, chunks)` for each served batch, by batch id: the order
    /// the backends lock batch rows in.
    pub takes: Vec<(usize, i64)>,
}

impl Plan {
    /// Picks what `budget` wants ([`pick`]).
    pub fn new(clocks: &mut Clocks, candidates: &mut [Candidate], budget: Budget) -> Plan {
        let order = pick(clocks, candidates, budget);
        let mut takes: Vec<(usize, i64)> = Vec::new();
        for &i in &order {
            match takes.iter_mut().find(|(j, _)| *j == i) {
                Some((_, n)) => *n += 1,
                None => takes.push((i, 1)),
            }
        }
        takes.sort_unstable_by_key(|&(i, _)| candidates[i].batch_id);
        Plan { order, takes }
    }

    /// The chunks the backend took for each served batch (`taken[k]` for
    /// `takes[k]`, ascending), in the order served. A batch that gave
    /// fewer than planned (cancelled meanwhile) just gives fewer.
    pub fn in_order(&self, candidates: &[Candidate], taken: &[Vec<i32>]) -> Vec<ChunkRef> {
        let mut next = vec![0usize; taken.len()];
        self.order
            .iter()
            .filter_map(|&i| {
                let k = self.takes.iter().position(|&(j, _)| j == i)?;
                let chunk = *taken.get(k)?.get(next[k])?;
                next[k] += 1;
                Some(ChunkRef {
                    batch_id: candidates[i].batch_id,
                    chunk,
                })
            })
            .collect()
    }
}

/// `(charged_s, runs, workload, weight, tenant, seconds_per_run)`: what a
/// charge reads of a chunk, its batch and its workload's rate.
pub(crate) type ChargeRow = (Option<f64>, i64, String, f64, String, Option<f64>);

/// What a set of charges changes, summed per row and in the order every
/// backend writes them (batches, chunks, tenants by key — the lock order
/// a dispatch takes too — then rates).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Settlement {
    /// Per batch: (`vtime` change, executor seconds).
    pub batches: BTreeMap<Uuid, (f64, f64)>,
    /// Per chunk: executor seconds to add to its measured cost.
    pub chunks: BTreeMap<(Uuid, i32), f64>,
    /// Per tenant: `vtime` change.
    pub tenants: BTreeMap<String, f64>,
    /// Per workload snapshot: its new seconds per run.
    pub rates: BTreeMap<String, f64>,
}

impl Settlement {
    /// From the charges and, for each, the row its chunk has (`None`:
    /// purged, skipped). A chunk charged twice in one set corrects its
    /// estimate once.
    pub(crate) fn of(charges: &[Charge], rows: &[Option<ChargeRow>]) -> Settlement {
        let mut s = Settlement::default();
        for (c, row) in charges.iter().zip(rows) {
            let Some((charged, runs, workload, weight, tenant, rate)) = row else {
                continue;
            };
            let key = (c.batch_id, c.chunk);
            let estimate = if s.chunks.contains_key(&key) {
                0.0
            } else {
                charged.unwrap_or(0.0)
            };
            let (batch_delta, tenant_delta) = correction(c.seconds, estimate, *weight);
            let b = s.batches.entry(c.batch_id).or_default();
            b.0 += batch_delta;
            b.1 += c.seconds;
            *s.chunks.entry(key).or_default() += c.seconds;
            *s.tenants.entry(tenant.clone()).or_default() += tenant_delta;
            if *runs > 0 {
                let old = s.rates.get(workload).copied().or(*rate);
                s.rates
                    .insert(workload.clone(), next_rate(old, c.seconds / *runs as f64));
            }
        }
        s
    }
}

/// What a completed chunk's measured cost changes in its batch's and
/// tenant's `vtime`, given what its dispatch charged: `(batch, tenant)`.
pub fn correction(measured: f64, charged: f64, weight: f64) -> (f64, f64) {
    let delta = measured - charged;
    (delta / weight, delta)
}

/// The estimated executor seconds of `runs` runs at `seconds_per_run`
/// (unmeasured: [`UNMEASURED_SECONDS_PER_RUN`]).
pub fn cost_of(runs: i64, seconds_per_run: Option<f64>) -> f64 {
    runs.max(0) as f64 * seconds_per_run.unwrap_or(UNMEASURED_SECONDS_PER_RUN)
}

/// How a workload's measured seconds per run follow new chunks: a moving
/// average, so a machine that slows down is seen within a few chunks.
pub fn next_rate(old: Option<f64>, measured: f64) -> f64 {
    match old {
        Some(old) if old.is_finite() && old > 0.0 => 0.7 * old + 0.3 * measured,
        _ => measured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(n: u128, tenant: &str, weight: f64, waiting: i64) -> Candidate {
        Candidate {
            batch_id: Uuid::from_u128(n),
            tenant: tenant.into(),
            weight,
            vtime: 0.0,
            waiting,
            chunk_cost: 1.0,
            created_at: n as f64,
        }
    }

    fn served(order: &[usize], of: usize) -> usize {
        order.iter().filter(|&&i| i == of).count()
    }

    #[test]
    fn equal_batches_alternate() {
        let mut clocks = Clocks::default();
        let mut c = vec![batch(1, "t", 1.0, 100), batch(2, "t", 1.0, 100)];
        let order = pick(&mut clocks, &mut c, Budget::chunks(10));
        assert_eq!(order, vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
    }

    #[test]
    fn weights_two_to_one_get_two_to_one() {
        let mut clocks = Clocks::default();
        let mut c = vec![batch(1, "t", 2.0, 1000), batch(2, "t", 1.0, 1000)];
        let order = pick(&mut clocks, &mut c, Budget::chunks(300));
        assert_eq!((served(&order, 0), served(&order, 1)), (200, 100));
    }

    #[test]
    fn cost_not_chunks_is_shared() {
        // A batch whose chunks cost nine times as much gets a ninth of the chunks.
        let mut clocks = Clocks::default();
        let mut c = vec![batch(1, "t", 1.0, 1000), batch(2, "t", 1.0, 1000)];
        c[0].chunk_cost = 9.0;
        let order = pick(&mut clocks, &mut c, Budget::chunks(100));
        assert_eq!((served(&order, 0), served(&order, 1)), (10, 90));
    }

    #[test]
    fn tenants_share_before_batches() {
        // Tenant a has three batches, b one: b still gets half.
        let mut clocks = Clocks::default();
        let mut c = vec![
            batch(1, "a", 1.0, 100),
            batch(2, "a", 1.0, 100),
            batch(3, "a", 1.0, 100),
            batch(4, "b", 1.0, 100),
        ];
        let order = pick(&mut clocks, &mut c, Budget::chunks(60));
        assert_eq!(served(&order, 3), 30);
        assert_eq!(
            served(&order, 0) + served(&order, 1) + served(&order, 2),
            30
        );
    }

    #[test]
    fn a_newcomer_starts_at_the_current_minimum() {
        let mut clocks = Clocks::default();
        let mut c = vec![batch(1, "t", 1.0, 1000)];
        pick(&mut clocks, &mut c, Budget::chunks(500));
        // It arrives after 500 chunks of the other: no 500-chunk burst.
        c.push(batch(2, "t", 1.0, 1000));
        let order = pick(&mut clocks, &mut c, Budget::chunks(10));
        assert_eq!(served(&order, 1), 5);
        assert!(
            order[..2].contains(&1),
            "the newcomer waits at most one turn"
        );
    }

    #[test]
    fn an_idle_batch_banks_no_credit() {
        let mut clocks = Clocks::default();
        let mut c = vec![batch(1, "t", 1.0, 1000), batch(2, "t", 1.0, 0)];
        pick(&mut clocks, &mut c, Budget::chunks(100));
        c[1].waiting = 1000;
        let order = pick(&mut clocks, &mut c, Budget::chunks(10));
        assert_eq!(served(&order, 1), 5);
    }

    #[test]
    fn low_weight_is_never_starved() {
        let mut clocks = Clocks::default();
        let mut c = vec![
            batch(1, "t", Priority::High.weight(), 10_000),
            batch(2, "t", Priority::Low.weight(), 10_000),
        ];
        let order = pick(&mut clocks, &mut c, Budget::chunks(170));
        assert_eq!((served(&order, 0), served(&order, 1)), (160, 10));
    }

    #[test]
    fn stops_when_nothing_waits() {
        let mut clocks = Clocks::default();
        let mut c = vec![batch(1, "t", 1.0, 2), batch(2, "u", 1.0, 1)];
        assert_eq!(pick(&mut clocks, &mut c, Budget::chunks(10)).len(), 3);
        assert!(pick(&mut clocks, &mut c, Budget::chunks(10)).is_empty());
    }

    #[test]
    fn a_plan_takes_rows_in_batch_order_and_serves_in_pick_order() {
        let mut clocks = Clocks::default();
        let mut c = vec![batch(2, "t", 1.0, 10), batch(1, "t", 1.0, 10)];
        let plan = Plan::new(&mut clocks, &mut c, Budget::chunks(3));
        assert_eq!(plan.order, vec![1, 0, 1]);
        assert_eq!(plan.takes, vec![(1, 2), (0, 1)]);
        let chunks = plan.in_order(&c, &[vec![0, 1], vec![7]]);
        let got: Vec<(u128, i32)> = chunks
            .iter()
            .map(|r| (r.batch_id.as_u128(), r.chunk))
            .collect();
        assert_eq!(got, vec![(1, 0), (2, 7), (1, 1)]);
    }

    #[test]
    fn share_parses_what_people_type() {
        assert_eq!(Share::parse(None, None, None).unwrap(), Share::default());
        let s = Share::parse(Some("team-a"), Some("HIGH"), None).unwrap();
        assert_eq!((s.tenant.as_str(), s.weight), ("team-a", 4.0));
        assert_eq!(Share::parse(None, None, Some("2")).unwrap().weight, 2.0);
        assert_eq!(
            Share::parse(None, None, Some("2")).unwrap().label(),
            "weight 2"
        );
        assert_eq!(
            Share::parse(None, Some("low"), None).unwrap().label(),
            "low"
        );
        for bad in [
            Share::parse(None, Some("urgent"), None),
            Share::parse(None, None, Some("0")),
            Share::parse(None, None, Some("-1")),
            Share::parse(None, None, Some("NaN")),
            Share::parse(None, None, Some("1000")),
            Share::parse(None, Some("high"), Some("2")),
            Share::parse(Some("a b"), None, None),
            Share::parse(Some(&"x".repeat(65)), None, None),
        ] {
            let e = bad.unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_refill_waits_for_half_the_seconds_and_sends_cheap_chunks_together() {
        // Full: two chunks and more than half a second queued.
        assert_eq!(Budget::refill(2, 0.5, 2, 0.3, 100), None);
        // Two cheap chunks of 30 ms: too little work queued.
        let b = Budget::refill(2, 0.5, 2, 0.06, 100).unwrap();
        let mut clocks = Clocks::default();
        let mut c = vec![batch(1, "t", 1.0, 100)];
        c[0].chunk_cost = 0.03;
        // 0.44 s wanted at 30 ms a chunk: 15 chunks in one dispatch.
        assert_eq!(pick(&mut clocks, &mut c, b).len(), 15);
        // Costly chunks: the chunk count decides.
        let b = Budget::refill(2, 0.5, 0, 0.0, 100).unwrap();
        let mut c = vec![batch(1, "t", 1.0, 100)];
        assert_eq!(pick(&mut clocks, &mut c, b).len(), 2);
        assert_eq!(Budget::refill(2, 0.5, 0, 0.0, 0), None);
    }

    #[test]
    fn a_settlement_sums_per_row_and_corrects_an_estimate_once() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let charge = |batch_id, chunk, seconds| Charge {
            batch_id,
            chunk,
            seconds,
        };
        let row = |charged, weight: f64, tenant: &str| -> Option<ChargeRow> {
            Some((charged, 10, "w".into(), weight, tenant.into(), None))
        };
        let s = Settlement::of(
            &[
                charge(a, 0, 1.0),
                charge(a, 0, 1.0),
                charge(b, 3, 0.5),
                charge(b, 4, 9.0),
            ],
            &[
                row(Some(0.5), 2.0, "t"),
                row(Some(0.5), 2.0, "t"),
                row(None, 1.0, "u"),
                None,
            ],
        );
        // a: 2 s measured, 0.5 estimated once, weight 2.
        assert_eq!(s.batches[&a], (0.75, 2.0));
        assert_eq!(s.batches[&b], (0.5, 0.5));
        assert_eq!(s.chunks[&(a, 0)], 2.0);
        assert!(!s.chunks.contains_key(&(b, 4)), "purged: skipped");
        assert_eq!((s.tenants["t"], s.tenants["u"]), (1.5, 0.5));
        // 0.1, 0.1 and 0.05 s per run, averaged in order.
        assert!((s.rates["w"] - (0.7 * (0.7 * 0.1 + 0.3 * 0.1) + 0.3 * 0.05)).abs() < 1e-12);
    }

    #[test]
    fn corrections_move_toward_measured_time() {
        assert_eq!(correction(3.0, 1.0, 2.0), (1.0, 2.0));
        assert_eq!(next_rate(None, 2.0), 2.0);
        assert!((next_rate(Some(1.0), 2.0) - 1.3).abs() < 1e-12);
        assert_eq!(cost_of(10, Some(0.5)), 5.0);
    }
}
