//! Test-only builders for small synthetic events, so a test can pin one
//! rule of the model with hand-checkable numbers, and a generator of random
//! valid events for invariant checks.

use crate::event::*;
use crate::rng::RunRng;

pub fn outcome(weight: f64, drop: &str, units: u32) -> Outcome {
    Outcome {
        weight,
        grants: vec![Grant {
            drop: drop.to_string(),
            units: Units::Fixed(units),
        }],
    }
}

/// A solo-only activity with one per-player attempt definition.
pub fn activity(key: &str, seconds: u32, outcomes: Vec<Outcome>) -> Activity {
    Activity {
        key: key.to_string(),
        name: key.to_string(),
        solo: true,
        group: None,
        attempts: vec![AttemptDef {
            name: "a".into(),
            roll: RollScope::PerPlayer,
            seconds,
            variance: 0,
            outcomes,
        }],
        bands: Vec::new(),
    }
}

pub fn rule(activity: &str, accepts: &[&str]) -> TileRule {
    TileRule {
        activity: activity.to_string(),
        accepts: accepts.iter().map(|s| s.to_string()).collect(),
        requires: Vec::new(),
        modifiers: Vec::new(),
    }
}

/// A row of four tiles worth 1..4 points, tile p using `rules[p]` and needing `required[p]`.
pub fn row(rules: [TileRule; 4], required: [u32; 4]) -> Row {
    Row {
        tiles: rules
            .into_iter()
            .zip(required)
            .enumerate()
            .map(|(p, (rule, required))| Tile {
                points: p as u32 + 1,
                required,
                rules: vec![rule],
            })
            .collect(),
    }
}

pub fn same_row(activity: &str, drop: &str) -> Row {
    let r = || rule(activity, &[drop]);
    row([r(), r(), r(), r()], [1; 4])
}

pub fn player(name: &str, skill: f64) -> Player {
    Player {
        name: name.to_string(),
        skill,
        capabilities: Vec::new(),
        sessions: Vec::new(),
    }
}

pub fn team(name: &str, players: Vec<Player>) -> Team {
    Team {
        name: name.to_string(),
        strategy: Strategy::RowUnlocking,
        players,
    }
}

/// Starts Monday 00:00.
pub fn event(
    activities: Vec<Activity>,
    rows: Vec<Row>,
    teams: Vec<Team>,
    threshold: u32,
    duration: u32,
) -> Event {
    Event {
        name: "test".into(),
        start: EventStart {
            day: Weekday::Mon,
            time: TimeOfDay::MIDNIGHT,
        },
        duration_seconds: duration,
        unlock_threshold: threshold,
        activities,
        rows,
        teams,
    }
}

/// One always-online player, skill 1, doing a 10 s activity that drops one
/// `x` per attempt, on `rows` rows whose tiles all accept `x` once.
pub fn ladder(rows: usize, threshold: u32, duration: u32) -> Event {
    event(
        vec![activity("a", 10, vec![outcome(1.0, "x", 1)])],
        (0..rows).map(|_| same_row("a", "x")).collect(),
        vec![team("T", vec![player("p", 1.0)])],
        threshold,
        duration,
    )
}

/// The drop keys random activities grant.
const DROPS: [&str; 4] = ["d0", "d1", "d2", "d3"];
/// The capabilities random players may hold.
const CAPABILITIES: [&str; 3] = ["c0", "c1", "c2"];
/// Every strategy, so random teams cover them all.
const STRATEGIES: [Strategy; 3] = [
    Strategy::RowUnlocking,
    Strategy::Greedy,
    Strategy::ComboUnlocking,
];

/// A random event that passes validation: a few activities, drops and
/// capabilities, 1–3 teams, sessions, modifiers, bands and all strategies.
pub fn random_event(seed: u64) -> Event {
    let mut r = RunRng::new(seed, u64::MAX);
    let activities: Vec<Activity> = (0..r.between(1, 3))
        .map(|a| random_activity(&mut r, a))
        .collect();
    let teams: Vec<Team> = (0..r.between(1, 3))
        .map(|t| random_team(&mut r, t))
        .collect();
    let held = held_capabilities(&teams);
    let rows = (0..r.between(1, 4))
        .map(|_| random_row(&mut r, &activities, &held))
        .collect();
    Event {
        name: format!("random {seed}"),
        start: EventStart {
            day: random_day(&mut r),
            time: random_time(&mut r),
        },
        duration_seconds: r.between(60, 3 * 24 * 3600),
        unlock_threshold: r.between(1, 10),
        activities,
        rows,
        teams,
    }
}

/// Activity `a`: solo and/or group play, 1–2 attempt definitions, maybe a band.
fn random_activity(r: &mut RunRng, a: u32) -> Activity {
    let solo = r.below(3) > 0;
    let group = if !solo || r.below(2) == 0 {
        let min = r.between(1, 2);
        Some(GroupSize {
            min,
            max: r.between(min, 5),
        })
    } else {
        None
    };
    let attempts = (0..r.between(1, 2)).map(|d| random_attempt(r, d)).collect();
    let mut bands = Vec::new();
    if r.below(2) == 0 {
        bands.push(GroupBand {
            min: 2,
            max: 3,
            time: 0.5 + r.unit(),
            probability: 0.5 + r.unit() * 2.0,
        });
    }
    Activity {
        key: format!("a{a}"),
        name: format!("A{a}"),
        solo,
        group,
        attempts,
        bands,
    }
}

/// Attempt definition `d` with 1–3 weighted outcomes.
fn random_attempt(r: &mut RunRng, d: u32) -> AttemptDef {
    let seconds = r.between(1, 900);
    let mut outcomes = Vec::new();
    for o in 0..r.between(1, 3) {
        // The first outcome always grants, so every activity grants something.
        let n_grants = if d == 0 && o == 0 { 1 } else { r.below(3) };
        let grants = (0..n_grants).map(|_| random_grant(r)).collect();
        outcomes.push(Outcome {
            weight: 0.1 + r.unit() * 5.0,
            grants,
        });
    }
    let roll = if r.below(2) == 0 {
        RollScope::PerPlayer
    } else {
        RollScope::PerGroup
    };
    AttemptDef {
        name: format!("d{d}"),
        roll,
        seconds,
        variance: r.between(0, seconds),
        outcomes,
    }
}

/// A few units, fixed or a range, of one of the drops.
fn random_grant(r: &mut RunRng) -> Grant {
    let min = r.between(1, 3);
    let units = if r.below(2) == 0 {
        Units::Fixed(min)
    } else {
        Units::Range {
            min,
            max: r.between(min, 6),
        }
    };
    Grant {
        drop: DROPS[r.below(4) as usize].to_string(),
        units,
    }
}

/// Team `t` of 1–5 players with a random strategy.
fn random_team(r: &mut RunRng, t: u32) -> Team {
    let players = (0..r.between(1, 5)).map(|p| random_player(r, p)).collect();
    Team {
        name: format!("t{t}"),
        strategy: STRATEGIES[r.below(3) as usize],
        players,
    }
}

/// Player `p`: some capabilities, 0–2 weekly sessions, a skill.
fn random_player(r: &mut RunRng, p: u32) -> Player {
    let capabilities = CAPABILITIES
        .iter()
        .filter(|_| r.below(2) == 0)
        .map(|c| c.to_string())
        .collect();
    let sessions = (0..r.below(3))
        .map(|_| Session {
            day: random_day(r),
            start: random_time(r),
            minutes: r.between(1, 600),
        })
        .collect();
    Player {
        name: format!("p{p}"),
        skill: 0.5 + r.unit() * 1.5,
        capabilities,
        sessions,
    }
}

/// A day of the week, uniformly.
fn random_day(r: &mut RunRng) -> Weekday {
    Weekday::ALL[r.below(7) as usize]
}

/// A time of day to the minute (hour drawn first).
fn random_time(r: &mut RunRng) -> TimeOfDay {
    TimeOfDay::new(r.below(24), r.below(60)).unwrap_or(TimeOfDay::MIDNIGHT)
}

/// The capabilities some player holds, so rules only require those.
fn held_capabilities(teams: &[Team]) -> Vec<&'static str> {
    CAPABILITIES
        .iter()
        .copied()
        .filter(|c| {
            teams
                .iter()
                .flat_map(|t| &t.players)
                .any(|p| p.capabilities.iter().any(|x| x == c))
        })
        .collect()
}

/// A row of four tiles worth 1–4 points in shuffled order.
fn random_row(r: &mut RunRng, activities: &[Activity], held: &[&str]) -> Row {
    let mut points = [1, 2, 3, 4];
    for i in (1..4).rev() {
        points.swap(i, r.below(i as u32 + 1) as usize);
    }
    let tiles = points
        .iter()
        .map(|&points| {
            let rules = (0..r.between(1, 2))
                .map(|_| random_rule(r, activities, held))
                .collect();
            Tile {
                points,
                required: r.between(1, 6),
                rules,
            }
        })
        .collect();
    Row { tiles }
}

/// A rule on a random activity accepting one or two drops it grants, and
/// maybe requiring or boosted by a held capability.
fn random_rule(r: &mut RunRng, activities: &[Activity], held: &[&str]) -> TileRule {
    let act = &activities[r.below(activities.len() as u32) as usize];
    let granted: Vec<&String> = act
        .attempts
        .iter()
        .flat_map(|d| &d.outcomes)
        .flat_map(|o| &o.grants)
        .map(|g| &g.drop)
        .collect();
    let mut accepts = vec![granted[r.below(granted.len() as u32) as usize].clone()];
    if r.below(3) == 0 {
        accepts.push(granted[r.below(granted.len() as u32) as usize].clone());
    }
    let requires = if r.below(4) == 0 {
        pick_held(r, held).into_iter().collect()
    } else {
        Vec::new()
    };
    let modifiers = if r.below(3) == 0 {
        pick_held(r, held)
            .map(|capability| Modifier {
                capability,
                time: 0.5 + r.unit(),
                probability: 0.5 + r.unit() * 2.0,
            })
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    TileRule {
        activity: act.key.clone(),
        accepts,
        requires,
        modifiers,
    }
}

/// One of the held capabilities (a draw is made even when none is held).
fn pick_held(r: &mut RunRng, held: &[&str]) -> Option<String> {
    held.get(r.below(held.len().max(1) as u32) as usize)
        .map(|c| c.to_string())
}
