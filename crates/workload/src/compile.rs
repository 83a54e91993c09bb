//! Turns a validated [`Event`] into the flat, index-based [`Model`] the
//! simulation reads: strings become bit masks, nested lists become ranges
//! into flat arrays, and everything a strategy can know in advance (tile
//! time estimates, orders of preference, session windows) is computed once
//! here instead of once per run.

use std::collections::HashMap;
use std::ops::Range;

use crate::event::{Event, RollScope, Strategy};
use crate::validate::TILES_PER_ROW;

/// Largest group size any band table covers (a team has at most 64 players).
pub const MAX_GROUP: usize = 64;

#[derive(Debug)]
pub struct TileC {
    pub row: u32,
    pub points: u32,
    pub required: u32,
    /// Into `Model::rules`, fastest estimate first.
    pub rules: Range<u32>,
    /// Drops any rule of the tile accepts.
    pub accepts: u64,
    /// Activities any rule uses.
    pub activities: u64,
    /// Static estimate in seconds (docs/bingo-model.md): min over rules of
    /// ceil(required / expected accepted units per attempt) × baseline.
    pub estimate: f64,
}

#[derive(Debug)]
pub struct RuleC {
    pub activity: u32,
    pub requires: u64,
    pub accepts: u64,
    pub modifiers: Range<u32>,
    /// Into `Model::def_weights`: per attempt definition of the activity.
    pub weights: u32,
    pub estimate: f64,
}

#[derive(Debug)]
pub struct ActivityC {
    pub solo: bool,
    pub group_min: u32,
    pub group_max: u32,
    pub defs: Range<u32>,
    pub baseline: u32,
    pub variance: u32,
}

impl ActivityC {
    pub fn allows(&self, size: u32) -> bool {
        (self.solo && size == 1) || (self.group_min <= size && size <= self.group_max)
    }

    pub fn groups(&self) -> bool {
        self.group_max >= 2
    }
}

#[derive(Debug)]
pub struct DefC {
    pub per_group: bool,
    pub outcomes: Range<u32>,
}

#[derive(Debug)]
pub struct OutcomeC {
    pub weight: f64,
    /// Drops its grants give, to tell accepted outcomes from the rest.
    pub drops: u64,
    pub grants: Range<u32>,
}

#[derive(Debug)]
pub struct GrantC {
    pub drop: u32,
    pub min: u32,
    pub max: u32,
}

#[derive(Debug)]
pub struct ModC {
    pub capability: u64,
    pub time: f64,
    pub probability: f64,
}

/// Summed outcome weights of one attempt definition, split by whether a rule
/// accepts them, so the scaled total is one multiply-add per roll.
#[derive(Debug, Clone, Copy)]
pub struct DefWeights {
    pub accepted: f64,
    pub rejected: f64,
}

#[derive(Debug)]
pub struct TeamC {
    pub strategy: Strategy,
    pub players: Range<u32>,
}

#[derive(Debug)]
pub struct PlayerC {
    pub skill: f64,
    pub capabilities: u64,
    /// Into `Model::windows`.
    pub windows: Range<u32>,
}

/// Players of one team coming online at one time.
#[derive(Debug, Clone, Copy)]
pub struct Wakeup {
    pub time: u32,
    pub team: u32,
    pub players: u64,
}

#[derive(Debug)]
pub struct Model {
    pub threshold: u32,
    pub rows: u32,
    pub max_points: u32,
    /// `row * 4 + position`.
    pub tiles: Vec<TileC>,
    /// Per row: positions by points, highest first.
    pub row_by_points: Vec<[u8; TILES_PER_ROW]>,
    pub rules: Vec<RuleC>,
    pub activities: Vec<ActivityC>,
    pub defs: Vec<DefC>,
    pub outcomes: Vec<OutcomeC>,
    pub grants: Vec<GrantC>,
    pub modifiers: Vec<ModC>,
    pub def_weights: Vec<DefWeights>,
    /// `activity * (MAX_GROUP + 1) + size` → (time, probability).
    pub bands: Vec<(f64, f64)>,
    /// Per drop, the tiles accepting it by (points desc, row, position):
    /// the RowUnlocking and ComboUnlocking allocation order.
    pub drop_tiles: Vec<Vec<u32>>,
    /// Per drop, by (points desc, estimate, row, position): Greedy's order.
    pub drop_tiles_greedy: Vec<Vec<u32>>,
    /// All tiles by (points desc, row, position): the "any unlocked row" fallback.
    pub tiles_by_points: Vec<u32>,
    /// All tiles by (points desc, estimate, row, position): Greedy's task order.
    pub tiles_greedy: Vec<u32>,
    /// `tile * (rows + 1) + r`: tiles in rows >= r sharing an activity with
    /// the tile; ComboUnlocking reads it at r = furthest unlocked row + 1.
    pub shared_from: Vec<u16>,
    pub teams: Vec<TeamC>,
    pub team_names: Vec<String>,
    pub players: Vec<PlayerC>,
    /// Online windows `[start, end)` in event seconds, merged and clipped to the event.
    pub windows: Vec<(u32, u32)>,
    /// By time, then team.
    pub wakeups: Vec<Wakeup>,
}

impl Model {
    pub fn band(&self, activity: u32, size: u32) -> (f64, f64) {
        self.bands[activity as usize * (MAX_GROUP + 1) + size as usize]
    }

    pub fn shared_locked(&self, tile: u32, furthest: u32) -> u16 {
        self.shared_from[tile as usize * (self.rows as usize + 1) + furthest as usize + 1]
    }
}

fn bit(map: &HashMap<&str, u32>, key: &str) -> u64 {
    map.get(key).map_or(0, |&i| 1u64 << i)
}

fn range(start: usize, end: usize) -> Range<u32> {
    start as u32..end as u32
}

/// Compiles an event that [`crate::validate::validate`] accepted.
pub fn compile(event: &Event) -> Model {
    let activity_ix: HashMap<&str, u32> = event
        .activities
        .iter()
        .enumerate()
        .map(|(i, a)| (a.key.as_str(), i as u32))
        .collect();
    let mut drop_ix: HashMap<&str, u32> = HashMap::new();
    for g in event
        .activities
        .iter()
        .flat_map(|a| &a.attempts)
        .flat_map(|d| &d.outcomes)
        .flat_map(|o| &o.grants)
    {
        let next = drop_ix.len() as u32;
        drop_ix.entry(g.drop.as_str()).or_insert(next);
    }
    let mut cap_ix: HashMap<&str, u32> = HashMap::new();
    for c in event
        .teams
        .iter()
        .flat_map(|t| &t.players)
        .flat_map(|p| &p.capabilities)
    {
        let next = cap_ix.len() as u32;
        cap_ix.entry(c.as_str()).or_insert(next);
    }

    let mut activities = Vec::new();
    let mut defs = Vec::new();
    let mut outcomes = Vec::new();
    let mut grants = Vec::new();
    let mut bands = Vec::new();
    for a in &event.activities {
        let defs_start = defs.len();
        for d in &a.attempts {
            let out_start = outcomes.len();
            for o in &d.outcomes {
                let g_start = grants.len();
                let mut drops = 0;
                for g in &o.grants {
                    let (min, max) = g.units.bounds();
                    let drop = drop_ix.get(g.drop.as_str()).copied().unwrap_or(0);
                    drops |= 1u64 << drop;
                    grants.push(GrantC { drop, min, max });
                }
                outcomes.push(OutcomeC {
                    weight: o.weight,
                    drops,
                    grants: range(g_start, grants.len()),
                });
            }
            defs.push(DefC {
                per_group: d.roll == RollScope::PerGroup,
                outcomes: range(out_start, outcomes.len()),
            });
        }
        let (group_min, group_max) = a.group.map_or((u32::MAX, 0), |g| (g.min, g.max));
        activities.push(ActivityC {
            solo: a.solo,
            group_min,
            group_max,
            defs: range(defs_start, defs.len()),
            // The definitions are rolled together, so the attempt lasts as
            // long as the longest of them.
            baseline: a.attempts.iter().map(|d| d.seconds).max().unwrap_or(1),
            variance: a.attempts.iter().map(|d| d.variance).max().unwrap_or(0),
        });
        for size in 0..=MAX_GROUP as u32 {
            let b = a.bands.iter().find(|b| b.min <= size && size <= b.max);
            bands.push(b.map_or((1.0, 1.0), |b| (b.time, b.probability)));
        }
    }

    let mut tiles = Vec::new();
    let mut rules: Vec<RuleC> = Vec::new();
    let mut modifiers = Vec::new();
    let mut def_weights = Vec::new();
    let mut row_by_points = Vec::new();
    for (r, row) in event.rows.iter().enumerate() {
        let mut order: [u8; TILES_PER_ROW] = [0, 1, 2, 3];
        order.sort_by_key(|&p| std::cmp::Reverse(row.tiles[p as usize].points));
        row_by_points.push(order);
        for tile in &row.tiles {
            let rules_start = rules.len();
            let (mut accepts, mut acts) = (0u64, 0u64);
            for rule in &tile.rules {
                let activity = activity_ix
                    .get(rule.activity.as_str())
                    .copied()
                    .unwrap_or(0);
                let act = &activities[activity as usize];
                let accept_mask = rule.accepts.iter().fold(0, |m, d| m | bit(&drop_ix, d));
                let requires = rule.requires.iter().fold(0, |m, c| m | bit(&cap_ix, c));
                let mod_start = modifiers.len();
                for m in &rule.modifiers {
                    modifiers.push(ModC {
                        capability: bit(&cap_ix, &m.capability),
                        time: m.time,
                        probability: m.probability,
                    });
                }
                let weights = def_weights.len() as u32;
                let mut expected_units = 0.0;
                for d in &defs[act.defs.start as usize..act.defs.end as usize] {
                    let mut w = DefWeights {
                        accepted: 0.0,
                        rejected: 0.0,
                    };
                    let (mut units, mut total) = (0.0, 0.0);
                    for o in &outcomes[d.outcomes.start as usize..d.outcomes.end as usize] {
                        total += o.weight;
                        if o.drops & accept_mask != 0 {
                            w.accepted += o.weight;
                        } else {
                            w.rejected += o.weight;
                        }
                        let accepted_units: f64 = grants
                            [o.grants.start as usize..o.grants.end as usize]
                            .iter()
                            .filter(|g| accept_mask & (1 << g.drop) != 0)
                            .map(|g| (f64::from(g.min) + f64::from(g.max)) / 2.0)
                            .sum();
                        units += o.weight * accepted_units;
                    }
                    expected_units += units / total;
                    def_weights.push(w);
                }
                let estimate = if expected_units > 0.0 {
                    (f64::from(tile.required) / expected_units).ceil() * f64::from(act.baseline)
                } else {
                    f64::INFINITY
                };
                accepts |= accept_mask;
                acts |= 1u64 << activity;
                rules.push(RuleC {
                    activity,
                    requires,
                    accepts: accept_mask,
                    modifiers: range(mod_start, modifiers.len()),
                    weights,
                    estimate,
                });
            }
            // Fastest rule first, so "the first rule a player qualifies for"
            // is the best one; the sort is stable, so config order breaks ties.
            rules[rules_start..].sort_by(|a, b| a.estimate.total_cmp(&b.estimate));
            let estimate = rules[rules_start..]
                .first()
                .map_or(f64::INFINITY, |r| r.estimate);
            tiles.push(TileC {
                row: r as u32,
                points: tile.points,
                required: tile.required,
                rules: range(rules_start, rules.len()),
                accepts,
                activities: acts,
                estimate,
            });
        }
    }

    let n_tiles = tiles.len();
    let by_points = |a: &u32, b: &u32| {
        let (ta, tb) = (&tiles[*a as usize], &tiles[*b as usize]);
        tb.points.cmp(&ta.points).then(a.cmp(b))
    };
    let greedy = |a: &u32, b: &u32| {
        let (ta, tb) = (&tiles[*a as usize], &tiles[*b as usize]);
        tb.points
            .cmp(&ta.points)
            .then(ta.estimate.total_cmp(&tb.estimate))
            .then(a.cmp(b))
    };
    let mut tiles_by_points: Vec<u32> = (0..n_tiles as u32).collect();
    tiles_by_points.sort_by(by_points);
    let mut tiles_greedy = tiles_by_points.clone();
    tiles_greedy.sort_by(greedy);
    let n_drops = drop_ix.len();
    let drop_tiles: Vec<Vec<u32>> = (0..n_drops)
        .map(|d| {
            tiles_by_points
                .iter()
                .copied()
                .filter(|&t| tiles[t as usize].accepts & (1 << d) != 0)
                .collect()
        })
        .collect();
    let drop_tiles_greedy: Vec<Vec<u32>> = (0..n_drops)
        .map(|d| {
            tiles_greedy
                .iter()
                .copied()
                .filter(|&t| tiles[t as usize].accepts & (1 << d) != 0)
                .collect()
        })
        .collect();

    let n_rows = event.rows.len();
    let mut shared_from = vec![0u16; n_tiles * (n_rows + 1)];
    for a in 0..n_tiles {
        for r in (0..n_rows).rev() {
            let in_row = (r * TILES_PER_ROW..(r + 1) * TILES_PER_ROW)
                .filter(|&b| b != a && tiles[a].activities & tiles[b].activities != 0)
                .count() as u16;
            shared_from[a * (n_rows + 1) + r] = shared_from[a * (n_rows + 1) + r + 1] + in_row;
        }
    }

    let start_minute = event.start.day.index() * 1440 + event.start.time.minutes();
    let mut teams = Vec::new();
    let mut players = Vec::new();
    let mut windows = Vec::new();
    let mut wakeups: Vec<Wakeup> = Vec::new();
    for (ti, t) in event.teams.iter().enumerate() {
        let first = players.len();
        for (pi, p) in t.players.iter().enumerate() {
            let w_start = windows.len();
            windows.extend(online_windows(
                &p.sessions,
                start_minute,
                event.duration_seconds,
            ));
            for &(start, _) in &windows[w_start..] {
                wakeups.push(Wakeup {
                    time: start,
                    team: ti as u32,
                    players: 1 << pi,
                });
            }
            players.push(PlayerC {
                skill: p.skill,
                capabilities: p.capabilities.iter().fold(0, |m, c| m | bit(&cap_ix, c)),
                windows: range(w_start, windows.len()),
            });
        }
        teams.push(TeamC {
            strategy: t.strategy,
            players: range(first, players.len()),
        });
    }
    wakeups.sort_by_key(|w| (w.time, w.team));
    wakeups.dedup_by(|later, earlier| {
        let same = later.time == earlier.time && later.team == earlier.team;
        if same {
            earlier.players |= later.players;
        }
        same
    });

    Model {
        threshold: event.unlock_threshold,
        rows: n_rows as u32,
        max_points: tiles.iter().map(|t| t.points).sum(),
        tiles,
        row_by_points,
        rules,
        activities,
        defs,
        outcomes,
        grants,
        modifiers,
        def_weights,
        bands,
        drop_tiles,
        drop_tiles_greedy,
        tiles_by_points,
        tiles_greedy,
        shared_from,
        teams,
        team_names: event.teams.iter().map(|t| t.name.clone()).collect(),
        players,
        windows,
        wakeups,
    }
}

/// A player's online windows in event seconds: each weekly session placed
/// relative to the event's start (so the start sets the schedule's phase),
/// repeated every week the event spans, clipped to the event and merged
/// where they touch. No sessions means online throughout.
pub fn online_windows(
    sessions: &[crate::event::Session],
    start_minute: u32,
    duration: u32,
) -> Vec<(u32, u32)> {
    const WEEK: i64 = 7 * 1440 * 60;
    let duration = i64::from(duration);
    if sessions.is_empty() {
        return vec![(0, duration as u32)];
    }
    let mut raw: Vec<(i64, i64)> = Vec::new();
    for s in sessions {
        let weekly = i64::from(s.day.index() * 1440 + s.start.minutes()) * 60;
        // Offset of the session's most recent occurrence at or before the start.
        let first = (weekly - i64::from(start_minute) * 60).rem_euclid(WEEK) - WEEK;
        let mut begin = first;
        while begin < duration {
            let end = begin + i64::from(s.minutes) * 60;
            if end > 0 {
                raw.push((begin.max(0), end.min(duration)));
            }
            begin += WEEK;
        }
    }
    raw.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (b, e) in raw {
        let (b, e) = (b as u32, e as u32);
        match merged.last_mut() {
            Some(last) if b <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((b, e)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Session, TimeOfDay, Weekday};

    fn s(day: Weekday, h: u32, m: u32, minutes: u32) -> Session {
        Session {
            day,
            start: TimeOfDay::new(h, m).unwrap(),
            minutes,
        }
    }

    #[test]
    fn windows_follow_the_start_phase() {
        // Event starts Friday 18:00 and lasts 48 h.
        let start = 4 * 1440 + 18 * 60;
        let w = online_windows(
            &[s(Weekday::Fri, 20, 0, 180), s(Weekday::Mon, 18, 0, 120)],
            start,
            48 * 3600,
        );
        assert_eq!(w, vec![(2 * 3600, 5 * 3600)]);
        // A session already running at the start is clipped to begin at 0.
        let w = online_windows(&[s(Weekday::Fri, 17, 0, 120)], start, 48 * 3600);
        assert_eq!(w, vec![(0, 3600)]);
        // A session that runs past the end is clipped to the end.
        let w = online_windows(&[s(Weekday::Sun, 17, 0, 120)], start, 48 * 3600);
        assert_eq!(w, vec![(47 * 3600, 48 * 3600)]);
        // Across midnight and across the week boundary (Sun 23:00 → Mon 01:00).
        let w = online_windows(&[s(Weekday::Sun, 23, 0, 120)], 0, 3 * 3600);
        assert_eq!(w, vec![(0, 3600)]);
    }

    #[test]
    fn windows_repeat_weekly_and_merge() {
        let w = online_windows(
            &[s(Weekday::Mon, 0, 0, 60), s(Weekday::Mon, 1, 0, 60)],
            0,
            8 * 24 * 3600,
        );
        assert_eq!(w, vec![(0, 7200), (7 * 86400, 7 * 86400 + 7200)]);
        assert_eq!(online_windows(&[], 123, 500), vec![(0, 500)]);
    }

    #[test]
    fn spring_league_estimates_match_the_formula() {
        let m = compile(&crate::spring_league::spring_league());
        // Row 0, position 2: Runecraft, 1 essence per 60 s attempt.
        assert_eq!(m.tiles[2].estimate, 60.0);
        // Row 3, position 3: 500 arrows at 75 expected per 120 s attempt → 7 attempts.
        assert_eq!(m.tiles[15].estimate, 7.0 * 120.0);
        // Row 12, position 3: Vorkath ×2, (5·1 + 1·3)/6 = 4/3 per attempt → 2 attempts of 180 s.
        assert_eq!(m.tiles[51].estimate, 2.0 * 180.0);
        assert_eq!(m.max_points, 200);
        // Wed 18:00 start: Carol (Alpha) and Henry (Beta) are online from the first second.
        let first: Vec<(u32, u32, u64)> = m
            .wakeups
            .iter()
            .take(2)
            .map(|w| (w.time, w.team, w.players))
            .collect();
        assert_eq!(first, vec![(0, 0, 0b0100), (0, 1, 0b1000)]);
    }
}
