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

/// A random event that passes validation: a few activities, drops and
/// capabilities, 1–3 teams, sessions, modifiers, bands and all strategies.
pub fn random_event(seed: u64) -> Event {
    let mut r = RunRng::new(seed, u64::MAX);
    let drops = ["d0", "d1", "d2", "d3"];
    let caps = ["c0", "c1", "c2"];
    let n_act = r.between(1, 3) as usize;
    let mut activities = Vec::new();
    for a in 0..n_act {
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
        let mut attempts = Vec::new();
        for d in 0..r.between(1, 2) {
            let seconds = r.between(1, 900);
            let mut outcomes = Vec::new();
            for o in 0..r.between(1, 3) {
                let mut grants = Vec::new();
                // The first outcome always grants, so every activity grants something.
                for _ in 0..(if d == 0 && o == 0 { 1 } else { r.below(3) }) {
                    let min = r.between(1, 3);
                    let units = if r.below(2) == 0 {
                        Units::Fixed(min)
                    } else {
                        Units::Range {
                            min,
                            max: r.between(min, 6),
                        }
                    };
                    grants.push(Grant {
                        drop: drops[r.below(4) as usize].to_string(),
                        units,
                    });
                }
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
            attempts.push(AttemptDef {
                name: format!("d{d}"),
                roll,
                seconds,
                variance: r.between(0, seconds),
                outcomes,
            });
        }
        let mut bands = Vec::new();
        if r.below(2) == 0 {
            bands.push(GroupBand {
                min: 2,
                max: 3,
                time: 0.5 + r.unit(),
                probability: 0.5 + r.unit() * 2.0,
            });
        }
        activities.push(Activity {
            key: format!("a{a}"),
            name: format!("A{a}"),
            solo,
            group,
            attempts,
            bands,
        });
    }
    let days = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];
    let strategies = [
        Strategy::RowUnlocking,
        Strategy::Greedy,
        Strategy::ComboUnlocking,
    ];
    let mut teams = Vec::new();
    for t in 0..r.between(1, 3) {
        let mut players = Vec::new();
        for p in 0..r.between(1, 5) {
            let capabilities = caps
                .iter()
                .filter(|_| r.below(2) == 0)
                .map(|c| c.to_string())
                .collect();
            let sessions = (0..r.below(3))
                .map(|_| Session {
                    day: days[r.below(7) as usize],
                    start: TimeOfDay::new(r.below(24), r.below(60)).unwrap_or(TimeOfDay::MIDNIGHT),
                    minutes: r.between(1, 600),
                })
                .collect();
            players.push(Player {
                name: format!("p{p}"),
                skill: 0.5 + r.unit() * 1.5,
                capabilities,
                sessions,
            });
        }
        teams.push(Team {
            name: format!("t{t}"),
            strategy: strategies[r.below(3) as usize],
            players,
        });
    }
    let held: Vec<&str> = caps
        .iter()
        .copied()
        .filter(|c| {
            teams
                .iter()
                .flat_map(|t| &t.players)
                .any(|p| p.capabilities.iter().any(|x| x == c))
        })
        .collect();
    let mut rows = Vec::new();
    for _ in 0..r.between(1, 4) {
        let mut points = [1, 2, 3, 4];
        for i in (1..4).rev() {
            points.swap(i, r.below(i as u32 + 1) as usize);
        }
        let tiles = points
            .iter()
            .map(|&points| {
                let rules = (0..r.between(1, 2))
                    .map(|_| {
                        let act = &activities[r.below(n_act as u32) as usize];
                        let granted: Vec<&String> = act
                            .attempts
                            .iter()
                            .flat_map(|d| &d.outcomes)
                            .flat_map(|o| &o.grants)
                            .map(|g| &g.drop)
                            .collect();
                        let mut accepts =
                            vec![granted[r.below(granted.len() as u32) as usize].clone()];
                        if r.below(3) == 0 {
                            accepts.push(granted[r.below(granted.len() as u32) as usize].clone());
                        }
                        let pick = |r: &mut RunRng| {
                            held.get(r.below(held.len().max(1) as u32) as usize)
                                .map(|c| c.to_string())
                        };
                        let requires = if r.below(4) == 0 {
                            pick(&mut r).into_iter().collect()
                        } else {
                            Vec::new()
                        };
                        let modifiers = if r.below(3) == 0 {
                            pick(&mut r)
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
                    })
                    .collect();
                Tile {
                    points,
                    required: r.between(1, 6),
                    rules,
                }
            })
            .collect();
        rows.push(Row { tiles });
    }
    Event {
        name: format!("random {seed}"),
        start: EventStart {
            day: days[r.below(7) as usize],
            time: TimeOfDay::new(r.below(24), r.below(60)).unwrap_or(TimeOfDay::MIDNIGHT),
        },
        duration_seconds: r.between(60, 3 * 24 * 3600),
        unlock_threshold: r.between(1, 10),
        activities,
        rows,
        teams,
    }
}
