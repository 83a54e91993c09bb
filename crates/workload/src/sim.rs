//! One `bingo` run: a discrete-event loop in whole seconds over attempt
//! completions (a min-heap keyed by end time, team, first player) merged
//! with the players' precomputed session starts. All per-run state lives in
//! [`Scratch`], sized once and reset per run, so the loop never allocates.
//!
//! Players are tracked per team as bit masks: busy (in an attempt), idle
//! (online with nothing they can start; reconsidered at every team event)
//! and parked (their attempt would outlast their session; back at their
//! next session start).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::compile::{DefC, DefWeights, Model};
use crate::rng::RunRng;
use crate::strategy::{self, Board};

/// Marks a row that never unlocked.
const NEVER: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, Default)]
struct TeamState {
    furthest: u32,
    points: u32,
    tiles: u32,
    busy: u64,
    idle: u64,
    parked: u64,
    best: u8,
    best_stale: bool,
    /// Leading complete tiles in the strategy's order (see `strategy::order`).
    done_prefix: u32,
}

#[derive(Debug, Clone, Copy, Default)]
struct InFlight {
    members: u64,
    rule: u32,
}

/// Reusable per-run buffers for one workload (see [`crate::Workload::scratch`]).
/// One per thread; reusing it across runs is what keeps runs allocation-free.
#[derive(Debug, Default)]
pub struct Scratch {
    shape: (usize, usize, usize, usize),
    /// `team * tiles + tile`.
    progress: Vec<u32>,
    done: Vec<bool>,
    /// `team * rows + row`.
    row_points: Vec<u32>,
    unlocked_at: Vec<u32>,
    teams: Vec<TeamState>,
    /// Per player: index of the first online window not yet over.
    cursor: Vec<u32>,
    /// Per player: end of the window they are online in, valid while scheduling.
    session_end: Vec<u32>,
    /// Per player, for attempts that player leads.
    in_flight: Vec<InFlight>,
    /// Per player: the rule picked at the current scheduling point.
    assigned: Vec<u32>,
    heap: BinaryHeap<Reverse<u64>>,
}

impl Scratch {
    pub(crate) fn for_model(m: &Model) -> Self {
        let mut s = Scratch::default();
        s.fit(m);
        s
    }

    /// Resizes the buffers when handed a model of another shape; a no-op
    /// (and no allocation) for the model it was made for.
    fn fit(&mut self, m: &Model) {
        let shape = (
            m.tiles.len(),
            m.rows as usize,
            m.teams.len(),
            m.players.len(),
        );
        if self.shape == shape {
            return;
        }
        let (tiles, rows, teams, players) = shape;
        self.shape = shape;
        self.progress = vec![0; teams * tiles];
        self.done = vec![false; teams * tiles];
        self.row_points = vec![0; teams * rows];
        self.unlocked_at = vec![NEVER; teams * rows];
        self.teams = vec![TeamState::default(); teams];
        self.cursor = vec![0; players];
        self.session_end = vec![0; players];
        self.in_flight = vec![InFlight::default(); players];
        self.assigned = vec![0; players];
        self.heap = BinaryHeap::with_capacity(players);
    }

    fn reset(&mut self, m: &Model) {
        self.fit(m);
        self.progress.fill(0);
        self.done.fill(false);
        self.row_points.fill(0);
        self.unlocked_at.fill(NEVER);
        for t in 0..m.teams.len() {
            self.unlocked_at[t * m.rows as usize] = 0;
        }
        self.teams.fill(TeamState {
            best_stale: true,
            ..TeamState::default()
        });
        for (c, p) in self.cursor.iter_mut().zip(&m.players) {
            *c = p.windows.start;
        }
        self.heap.clear();
    }

    /// Team `team`'s results of the last run: (points, tiles completed, furthest row).
    pub(crate) fn team_result(&self, team: usize) -> (u32, u32, u32) {
        let t = &self.teams[team];
        (t.points, t.tiles, t.furthest)
    }

    /// Team `team`'s tiles left incomplete by the last run.
    pub(crate) fn open_tiles(&self, team: usize) -> impl Iterator<Item = usize> + '_ {
        let tiles = self.shape.0;
        self.done[team * tiles..(team + 1) * tiles]
            .iter()
            .enumerate()
            .filter(|(_, d)| !**d)
            .map(|(i, _)| i)
    }

    /// When each of team `team`'s rows unlocked in the last run (seconds), `None` if never.
    pub(crate) fn unlock_times(&self, team: usize) -> impl Iterator<Item = Option<u32>> + '_ {
        let rows = self.shape.1;
        self.unlocked_at[team * rows..(team + 1) * rows]
            .iter()
            .map(|&t| (t != NEVER).then_some(t))
    }
}

fn bits(mut mask: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        (mask != 0).then(|| {
            let b = mask.trailing_zeros();
            mask &= mask - 1;
            b
        })
    })
}

/// The lowest `n` set bits of `mask`.
fn lowest(mask: u64, n: u32) -> u64 {
    let mut rest = mask;
    for _ in 0..n {
        rest &= rest.wrapping_sub(1);
    }
    mask & !rest
}

/// Runs one simulation into `s`; read it back with [`Scratch::team_result`].
pub(crate) fn run(m: &Model, seed: u64, run_index: u64, s: &mut Scratch) {
    s.reset(m);
    let mut sim = Sim {
        m,
        s,
        rng: RunRng::new(seed, run_index),
    };
    sim.run();
}

struct Sim<'a> {
    m: &'a Model,
    s: &'a mut Scratch,
    rng: RunRng,
}

impl Sim<'_> {
    fn run(&mut self) {
        let mut next_wake = 0;
        loop {
            let completion = self.s.heap.peek().map(|r| r.0);
            let wake = self.m.wakeups.get(next_wake).copied();
            // Completions at a time come before session starts at that time.
            let wake = match (completion, wake) {
                (None, None) => break,
                (Some(key), w) if w.is_none_or(|w| key >> 16 <= u64::from(w.time)) => {
                    self.s.heap.pop();
                    self.complete(key);
                    continue;
                }
                (_, w) => w,
            };
            if let Some(w) = wake {
                next_wake += 1;
                let team = w.team as usize;
                let ts = &mut self.s.teams[team];
                ts.parked &= !w.players;
                let candidates = (w.players & !ts.busy) | ts.idle;
                ts.idle = 0;
                self.schedule(team, w.time, candidates);
            }
        }
    }

    fn complete(&mut self, key: u64) {
        let t = (key >> 16) as u32;
        let team = ((key >> 8) & 0xff) as usize;
        let lead = self.m.teams[team].players.start as usize + (key & 0xff) as usize;
        let InFlight { members, rule } = self.s.in_flight[lead];
        self.roll(team, t, members, rule);
        let ts = &mut self.s.teams[team];
        ts.busy &= !members;
        let candidates = members | ts.idle;
        ts.idle = 0;
        self.schedule(team, t, candidates);
    }

    /// End of the online window player `p` is in at `t`, if online.
    fn window_end(&mut self, p: usize, t: u32) -> Option<u32> {
        let range = &self.m.players[p].windows;
        let mut c = self.s.cursor[p];
        while c < range.end && self.m.windows[c as usize].1 <= t {
            c += 1;
        }
        self.s.cursor[p] = c;
        let (start, end) = *self.m.windows.get(c as usize).filter(|_| c < range.end)?;
        (start <= t).then_some(end)
    }

    fn board(&self, team: usize) -> Board<'_> {
        let n = self.m.tiles.len();
        let ts = &self.s.teams[team];
        Board {
            furthest: ts.furthest,
            done: &self.s.done[team * n..(team + 1) * n],
            done_prefix: ts.done_prefix as usize,
        }
    }

    /// Gives each online candidate a rule, groups players with the same rule
    /// and starts their attempts.
    fn schedule(&mut self, team: usize, t: u32, candidates: u64) {
        let base = self.m.teams[team].players.start as usize;
        let mut online = 0u64;
        for b in bits(candidates) {
            if let Some(end) = self.window_end(base + b as usize, t) {
                self.s.session_end[base + b as usize] = end;
                online |= 1 << b;
            }
        }
        if online == 0 {
            return;
        }
        let strategy = self.m.teams[team].strategy;
        if self.s.teams[team].best_stale {
            let best = strategy::best_set(self.m, strategy, self.board(team));
            let ts = &mut self.s.teams[team];
            ts.best = best;
            ts.best_stale = false;
        }
        let best = self.s.teams[team].best;
        let mut waiting = 0u64;
        for b in bits(online) {
            let p = base + b as usize;
            let caps = self.m.players[p].capabilities;
            match strategy::pick_rule(self.m, strategy, self.board(team), best, caps) {
                Some(rule) => {
                    self.s.assigned[p] = rule;
                    waiting |= 1 << b;
                }
                None => self.s.teams[team].idle |= 1 << b,
            }
        }
        while waiting != 0 {
            let rule = self.s.assigned[base + waiting.trailing_zeros() as usize];
            let same = bits(waiting)
                .filter(|&b| self.s.assigned[base + b as usize] == rule)
                .fold(0u64, |m, b| m | 1 << b);
            waiting &= !same;
            let act = &self.m.activities[self.m.rules[rule as usize].activity as usize];
            let (solo, max) = (act.solo, act.group_max);
            if act.groups() && (same.count_ones() >= 2 || !solo) {
                let mut rest = same;
                while rest != 0 {
                    let chunk = lowest(rest, max.min(rest.count_ones()));
                    rest &= !chunk;
                    if act.allows(chunk.count_ones()) {
                        self.start(team, t, chunk, rule);
                    } else if solo {
                        for b in bits(chunk) {
                            self.start(team, t, 1 << b, rule);
                        }
                    } else {
                        self.s.teams[team].idle |= chunk;
                    }
                }
            } else {
                for b in bits(same) {
                    self.start(team, t, 1 << b, rule);
                }
            }
        }
    }

    /// Starts one attempt unless it cannot finish within its members'
    /// sessions: members whose session ends first drop out (parked) and the
    /// rest try again with the same duration roll.
    fn start(&mut self, team: usize, t: u32, mut members: u64, rule: u32) {
        let base = self.m.teams[team].players.start as usize;
        let act = &self.m.activities[self.m.rules[rule as usize].activity as usize];
        let variance = act.variance;
        let raw = i64::from(act.baseline) + i64::from(self.rng.between(0, 2 * variance))
            - i64::from(variance);
        let raw = raw.max(1) as f64;
        loop {
            let n = members.count_ones();
            if n == 0 {
                return;
            }
            if !act.allows(n) {
                self.s.teams[team].idle |= members;
                return;
            }
            let end = u64::from(t) + self.duration(base, raw, members, rule);
            let fits = bits(members)
                .filter(|&b| u64::from(self.s.session_end[base + b as usize]) >= end)
                .fold(0u64, |m, b| m | 1 << b);
            if fits == members {
                let lead = members.trailing_zeros();
                self.s.in_flight[base + lead as usize] = InFlight { members, rule };
                self.s.teams[team].busy |= members;
                self.s
                    .heap
                    .push(Reverse(end << 16 | (team as u64) << 8 | u64::from(lead)));
                return;
            }
            self.s.teams[team].parked |= members & !fits;
            members = fits;
        }
    }

    /// raw × slowest skill × group band × time modifiers any member has, floored, ≥ 1 s.
    fn duration(&self, base: usize, raw: f64, members: u64, rule: u32) -> u64 {
        let r = &self.m.rules[rule as usize];
        let (mut skill, mut caps) = (0.0f64, 0u64);
        for b in bits(members) {
            let p = &self.m.players[base + b as usize];
            skill = skill.max(p.skill);
            caps |= p.capabilities;
        }
        let (band_time, _) = self.m.band(r.activity, members.count_ones());
        let mut x = raw * skill * band_time;
        for md in &self.m.modifiers[r.modifiers.start as usize..r.modifiers.end as usize] {
            if caps & md.capability != 0 {
                x *= md.time;
            }
        }
        // x > 0, so the truncating cast floors (and avoids a libm call).
        (x as u64).max(1)
    }

    fn probability(&self, rule: u32, band: f64, caps: u64) -> f64 {
        let r = &self.m.rules[rule as usize];
        self.m.modifiers[r.modifiers.start as usize..r.modifiers.end as usize]
            .iter()
            .filter(|md| caps & md.capability != 0)
            .fold(band, |f, md| f * md.probability)
    }

    /// Rolls every attempt definition of the activity (per player or per
    /// group) and hands out the grants in roll order.
    fn roll(&mut self, team: usize, t: u32, members: u64, rule: u32) {
        let m = self.m;
        let base = m.teams[team].players.start as usize;
        let r = &m.rules[rule as usize];
        let act = &m.activities[r.activity as usize];
        let (_, band) = m.band(r.activity, members.count_ones());
        let group_caps =
            bits(members).fold(0, |c, b| c | m.players[base + b as usize].capabilities);
        for (k, def) in m.defs[act.defs.start as usize..act.defs.end as usize]
            .iter()
            .enumerate()
        {
            let w = m.def_weights[r.weights as usize + k];
            if def.per_group {
                let f = self.probability(rule, band, group_caps);
                self.roll_def(team, t, def, r.accepts, w, f);
            } else {
                for b in bits(members) {
                    let f = self.probability(rule, band, m.players[base + b as usize].capabilities);
                    self.roll_def(team, t, def, r.accepts, w, f);
                }
            }
        }
    }

    /// Draws one outcome, weights of accepted outcomes scaled by `factor`.
    fn roll_def(
        &mut self,
        team: usize,
        t: u32,
        def: &DefC,
        accepts: u64,
        w: DefWeights,
        factor: f64,
    ) {
        let m = self.m;
        let outcomes = &m.outcomes[def.outcomes.start as usize..def.outcomes.end as usize];
        let mut u = self.rng.unit() * (w.accepted * factor + w.rejected);
        // Rounding can leave u a hair above the last weight: that is the last outcome.
        let mut chosen = &outcomes[outcomes.len() - 1];
        for o in outcomes {
            let weight = if o.drops & accepts != 0 {
                o.weight * factor
            } else {
                o.weight
            };
            if u < weight {
                chosen = o;
                break;
            }
            u -= weight;
        }
        for g in &m.grants[chosen.grants.start as usize..chosen.grants.end as usize] {
            let units = self.rng.between(g.min, g.max);
            self.grant(team, t, g.drop, units);
        }
    }

    /// Puts a grant whole on the tile the strategy picks; overflow is lost.
    fn grant(&mut self, team: usize, t: u32, drop: u32, units: u32) {
        let m = self.m;
        let Some(tile) = strategy::target_tile(m, m.teams[team].strategy, self.board(team), drop)
        else {
            return;
        };
        let n = m.tiles.len();
        let i = team * n + tile as usize;
        let tc = &m.tiles[tile as usize];
        self.s.progress[i] = self.s.progress[i].saturating_add(units);
        if self.s.progress[i] < tc.required {
            return;
        }
        self.s.done[i] = true;
        let rows = m.rows as usize;
        let row_i = team * rows + tc.row as usize;
        self.s.row_points[row_i] += tc.points;
        let row_points = self.s.row_points[row_i];
        let ts = &mut self.s.teams[team];
        ts.points += tc.points;
        ts.tiles += 1;
        ts.best_stale = true;
        let order = strategy::order(m, m.teams[team].strategy);
        let done = &self.s.done[team * n..(team + 1) * n];
        while order
            .get(ts.done_prefix as usize)
            .is_some_and(|&t| done[t as usize])
        {
            ts.done_prefix += 1;
        }
        if tc.row == ts.furthest && row_points >= m.threshold && ts.furthest + 1 < m.rows {
            ts.furthest += 1;
            self.s.unlocked_at[team * rows + ts.furthest as usize] = t;
        }
    }
}

#[cfg(test)]
#[path = "sim_tests.rs"]
mod tests;
