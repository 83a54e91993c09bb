//! Checks an [`Event`] before it is compiled or stored, collecting every
//! problem with its location so a user fixes a file in one pass. The limits
//! here are what `compile` and the simulation rely on (bit masks of 64,
//! 4 tiles per row, bounded points), so a valid event cannot misbehave.

use std::collections::{BTreeSet, HashSet};

use crate::error::{Error, Result};
use crate::event::{Activity, AttemptDef, Event, GroupBand, Player, Row, Team, TileRule, Units};

pub const MAX_ROWS: usize = 100;
pub const MAX_TEAMS: usize = 64;
pub const MAX_PLAYERS_PER_TEAM: usize = 64;
/// Activities, drop keys and capabilities each live in 64-bit masks.
pub const MAX_KEYS: usize = 64;
pub const MAX_DURATION_SECONDS: u32 = 366 * 24 * 3600;
pub const MAX_ATTEMPT_SECONDS: u32 = 7 * 24 * 3600;
pub const MAX_COUNT: u32 = 1_000_000;
/// Bound on skills and factors, so products stay far from overflow.
pub const MAX_FACTOR: f64 = 100.0;
pub const TILES_PER_ROW: usize = 4;

/// Every problem found so far, as "location: what", in the order found.
struct Problems(Vec<String>);

impl Problems {
    fn add(&mut self, at: impl std::fmt::Display, what: impl std::fmt::Display) {
        self.0.push(format!("{at}: {what}"));
    }

    fn check(&mut self, ok: bool, at: impl std::fmt::Display, what: impl std::fmt::Display) {
        if !ok {
            self.add(at, what);
        }
    }

    /// Ok when nothing was found, else every problem in the order found.
    fn into_result(self) -> Result<()> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Error::InvalidEvent { problems: self.0 })
        }
    }

    fn factor(&mut self, value: f64, at: impl std::fmt::Display, name: &str) {
        self.check(
            value.is_finite() && value > 0.0 && value <= MAX_FACTOR,
            at,
            format_args!("{name} {value} must be > 0 and <= {MAX_FACTOR}"),
        );
    }
}

/// Returns every problem found as one [`Error::InvalidEvent`].
pub fn validate(event: &Event) -> Result<()> {
    let mut p = Problems(Vec::new());
    check_settings(&mut p, event);
    let granted = check_activities(&mut p, &event.activities);
    let held = check_teams(&mut p, &event.teams);
    let known = Known {
        activities: &event.activities,
        granted,
        held,
    };
    check_rows(&mut p, &event.rows, &known);
    p.into_result()
}

/// What the board's rules may refer to: the activities, the drops they
/// grant and the capabilities players hold.
struct Known<'a> {
    activities: &'a [Activity],
    granted: HashSet<&'a str>,
    held: HashSet<&'a str>,
}

/// The event's own fields: name, duration and unlock threshold.
fn check_settings(p: &mut Problems, event: &Event) {
    if let Some(problem) = crate::names::name_problem(&event.name) {
        p.add("name", problem);
    }
    p.check(
        (1..=MAX_DURATION_SECONDS).contains(&event.duration_seconds),
        "duration_seconds",
        format_args!(
            "{} must be in 1..={MAX_DURATION_SECONDS}",
            event.duration_seconds
        ),
    );
    p.check(
        (1..=10).contains(&event.unlock_threshold),
        "unlock_threshold",
        format_args!(
            "{} must be in 1..=10 (a row's 4 tiles are worth 10 points)",
            event.unlock_threshold
        ),
    );
}

/// Every activity; returns the drop keys they grant.
fn check_activities<'a>(p: &mut Problems, activities: &'a [Activity]) -> HashSet<&'a str> {
    let mut granted: HashSet<&str> = HashSet::new();
    let mut keys: HashSet<&str> = HashSet::new();
    p.check(
        !activities.is_empty(),
        "activities",
        "at least one activity is needed",
    );
    p.check(
        activities.len() <= MAX_KEYS,
        "activities",
        format_args!("at most {MAX_KEYS} activities"),
    );
    for (ai, a) in activities.iter().enumerate() {
        let at = format!("activities[{ai}] ({})", a.key);
        p.check(!a.key.is_empty(), &at, "key must not be empty");
        p.check(keys.insert(&a.key), &at, "key is defined twice");
        p.check(
            a.solo || a.group.is_some(),
            &at,
            "must allow solo or group play",
        );
        if let Some(g) = a.group {
            p.check(
                g.min >= 1 && g.min <= g.max && g.max as usize <= MAX_PLAYERS_PER_TEAM,
                &at,
                format_args!(
                    "group size {}..={} must satisfy 1 <= min <= max <= 64",
                    g.min, g.max
                ),
            );
        }
        p.check(!a.attempts.is_empty(), &at, "needs at least one attempt");
        for (di, d) in a.attempts.iter().enumerate() {
            check_attempt(
                p,
                &format!("{at}.attempts[{di}] ({})", d.name),
                d,
                &mut granted,
            );
        }
        check_bands(p, &at, &a.bands);
    }
    p.check(
        granted.len() <= MAX_KEYS,
        "activities",
        format_args!("at most {MAX_KEYS} distinct drop keys"),
    );
    granted
}

/// One attempt definition and its outcomes; adds the drops it grants to `granted`.
fn check_attempt<'a>(
    p: &mut Problems,
    at: &str,
    d: &'a AttemptDef,
    granted: &mut HashSet<&'a str>,
) {
    p.check(
        (1..=MAX_ATTEMPT_SECONDS).contains(&d.seconds),
        at,
        format_args!("seconds {} must be in 1..={MAX_ATTEMPT_SECONDS}", d.seconds),
    );
    p.check(
        d.variance <= d.seconds,
        at,
        format_args!(
            "variance {} must not exceed seconds {}",
            d.variance, d.seconds
        ),
    );
    p.check(!d.outcomes.is_empty(), at, "needs at least one outcome");
    for (oi, o) in d.outcomes.iter().enumerate() {
        let at = format!("{at}.outcomes[{oi}]");
        p.check(
            o.weight.is_finite() && o.weight > 0.0,
            &at,
            format_args!("weight {} must be positive", o.weight),
        );
        for (gi, g) in o.grants.iter().enumerate() {
            let at = format!("{at}.grants[{gi}]");
            p.check(!g.drop.is_empty(), &at, "drop key must not be empty");
            granted.insert(&g.drop);
            let (min, max) = g.units.bounds();
            let what = match g.units {
                Units::Fixed(_) => format!("units {min} must be in 1..={MAX_COUNT}"),
                Units::Range { .. } => {
                    format!("units {min}..={max} must satisfy 1 <= min <= max <= {MAX_COUNT}")
                }
            };
            p.check(min >= 1 && min <= max && max <= MAX_COUNT, &at, what);
        }
    }
}

/// An activity's group-size bands: sizes, factors, and no overlaps.
fn check_bands(p: &mut Problems, at: &str, bands: &[GroupBand]) {
    for (bi, b) in bands.iter().enumerate() {
        let at = format!("{at}.bands[{bi}]");
        p.check(
            b.min >= 1 && b.min <= b.max,
            &at,
            format_args!("sizes {}..={} must satisfy 1 <= min <= max", b.min, b.max),
        );
        p.factor(b.time, &at, "time");
        p.factor(b.probability, &at, "probability");
        for (bj, other) in bands.iter().enumerate().skip(bi + 1) {
            p.check(
                b.max < other.min || other.max < b.min,
                &at,
                format_args!("overlaps bands[{bj}]"),
            );
        }
    }
}

/// Every team; returns the capabilities their players hold.
fn check_teams<'a>(p: &mut Problems, teams: &'a [Team]) -> HashSet<&'a str> {
    let mut held: HashSet<&str> = HashSet::new();
    p.check(!teams.is_empty(), "teams", "at least one team is needed");
    p.check(
        teams.len() <= MAX_TEAMS,
        "teams",
        format_args!("at most {MAX_TEAMS} teams"),
    );
    let mut team_names = HashSet::new();
    for (ti, t) in teams.iter().enumerate() {
        let at = format!("teams[{ti}] ({})", t.name);
        p.check(!t.name.trim().is_empty(), &at, "name must not be empty");
        p.check(team_names.insert(&t.name), &at, "name is used twice");
        p.check(
            (1..=MAX_PLAYERS_PER_TEAM).contains(&t.players.len()),
            &at,
            format_args!(
                "{} players; a team has 1..={MAX_PLAYERS_PER_TEAM}",
                t.players.len()
            ),
        );
        let mut names = HashSet::new();
        for (pi, pl) in t.players.iter().enumerate() {
            let at = format!("{at}.players[{pi}] ({})", pl.name);
            p.check(
                names.insert(&pl.name),
                &at,
                "name is used twice in the team",
            );
            check_player(p, &at, pl, &mut held);
        }
    }
    p.check(
        held.len() <= MAX_KEYS,
        "teams",
        format_args!("at most {MAX_KEYS} distinct capabilities"),
    );
    held
}

/// One player's skill, capabilities and sessions; adds its capabilities to `held`.
fn check_player<'a>(p: &mut Problems, at: &str, pl: &'a Player, held: &mut HashSet<&'a str>) {
    p.factor(pl.skill, at, "skill");
    for c in &pl.capabilities {
        p.check(!c.is_empty(), at, "capability must not be empty");
        held.insert(c);
    }
    for (si, s) in pl.sessions.iter().enumerate() {
        p.check(
            (1..=1440).contains(&s.minutes),
            format_args!("{at}.sessions[{si}]"),
            format_args!("minutes {} must be in 1..=1440", s.minutes),
        );
    }
}

/// The board: row count, each row's four tiles, and their rules.
fn check_rows(p: &mut Problems, rows: &[Row], known: &Known) {
    p.check(
        (1..=MAX_ROWS).contains(&rows.len()),
        "rows",
        format_args!("{} rows; an event has 1..={MAX_ROWS}", rows.len()),
    );
    for (ri, row) in rows.iter().enumerate() {
        let at = format!("rows[{ri}]");
        let points: BTreeSet<u32> = row.tiles.iter().map(|t| t.points).collect();
        p.check(
            row.tiles.len() == TILES_PER_ROW && points == BTreeSet::from([1, 2, 3, 4]),
            &at,
            "must have exactly 4 tiles worth 1, 2, 3 and 4 points",
        );
        for (ki, tile) in row.tiles.iter().enumerate() {
            let at = format!("{at}.tiles[{ki}] (s{}-r{ri})", tile.points);
            p.check(
                (1..=MAX_COUNT).contains(&tile.required),
                &at,
                format_args!("required {} must be in 1..={MAX_COUNT}", tile.required),
            );
            p.check(!tile.rules.is_empty(), &at, "needs at least one rule");
            for (ui, rule) in tile.rules.iter().enumerate() {
                check_rule(p, &format!("{at}.rules[{ui}]"), rule, known);
            }
        }
    }
}

/// One tile rule: its activity exists and grants what the rule accepts,
/// and its capabilities are held by some player.
fn check_rule(p: &mut Problems, at: &str, rule: &TileRule, known: &Known) {
    let Some(activity) = known.activities.iter().find(|a| a.key == rule.activity) else {
        p.add(
            at,
            format_args!("activity {:?} is not defined", rule.activity),
        );
        return;
    };
    p.check(!rule.accepts.is_empty(), at, "accepts no drops");
    for d in &rule.accepts {
        p.check(
            known.granted.contains(d.as_str()),
            at,
            format_args!("accepts {d:?}, which no activity grants"),
        );
    }
    let own_drop = activity
        .attempts
        .iter()
        .flat_map(|a| &a.outcomes)
        .flat_map(|o| &o.grants)
        .any(|g| rule.accepts.contains(&g.drop));
    p.check(
        own_drop,
        at,
        format_args!(
            "activity {:?} grants none of the drops the rule accepts",
            rule.activity
        ),
    );
    for c in &rule.requires {
        p.check(
            known.held.contains(c.as_str()),
            at,
            format_args!("requires {c:?}, which no player has"),
        );
    }
    for (mi, m) in rule.modifiers.iter().enumerate() {
        let at = format!("{at}.modifiers[{mi}]");
        p.check(
            known.held.contains(m.capability.as_str()),
            &at,
            format_args!("capability {:?} is held by no player", m.capability),
        );
        p.factor(m.time, &at, "time");
        p.factor(m.probability, &at, "probability");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{GroupBand, Modifier, Session, TimeOfDay, Weekday};
    use crate::testkit::{ladder, rule};

    /// The problems `mutate` introduces into an otherwise valid event.
    fn problems(mutate: impl FnOnce(&mut Event)) -> Vec<String> {
        let mut ev = ladder(2, 5, 100);
        mutate(&mut ev);
        match validate(&ev) {
            Ok(()) => Vec::new(),
            Err(Error::InvalidEvent { problems }) => problems,
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    fn assert_problem(mutate: impl FnOnce(&mut Event), expected: &str) {
        let found = problems(mutate);
        assert!(
            found.iter().any(|p| p.contains(expected)),
            "expected {expected:?} in {found:?}"
        );
    }

    #[test]
    fn valid_events_pass() {
        assert!(problems(|_| {}).is_empty());
        validate(&Event::spring_league()).unwrap();
    }

    #[test]
    fn each_rule_of_the_config_is_checked_with_its_location() {
        assert_problem(
            |e| e.unlock_threshold = 0,
            "unlock_threshold: 0 must be in 1..=10",
        );
        assert_problem(|e| e.unlock_threshold = 11, "unlock_threshold: 11");
        assert_problem(|e| e.duration_seconds = 0, "duration_seconds: 0");
        assert_problem(|e| e.rows.clear(), "rows: 0 rows");
        assert_problem(
            |e| {
                e.rows[1].tiles.pop();
            },
            "rows[1]: must have exactly 4 tiles",
        );
        assert_problem(
            |e| e.rows[0].tiles[0].points = 4,
            "rows[0]: must have exactly 4 tiles worth 1, 2, 3 and 4",
        );
        assert_problem(
            |e| e.rows[0].tiles[2].required = 0,
            "rows[0].tiles[2] (s3-r0): required 0",
        );
        assert_problem(
            |e| e.rows[0].tiles[1].rules.clear(),
            "rows[0].tiles[1] (s2-r0): needs at least one rule",
        );
        assert_problem(
            |e| e.rows[1].tiles[3].rules[0].activity = "zulrahh".into(),
            r#"rows[1].tiles[3] (s4-r1).rules[0]: activity "zulrahh" is not defined"#,
        );
        assert_problem(
            |e| e.rows[0].tiles[0].rules[0] = rule("a", &["nope"]),
            r#"accepts "nope", which no activity grants"#,
        );
        assert_problem(
            |e| e.rows[0].tiles[0].rules[0].requires = vec!["ds2".into()],
            r#"requires "ds2", which no player has"#,
        );
        assert_problem(
            |e| {
                e.rows[0].tiles[0].rules[0].modifiers = vec![Modifier {
                    capability: "dhl".into(),
                    time: 0.9,
                    probability: 1.0,
                }]
            },
            r#"capability "dhl" is held by no player"#,
        );
        assert_problem(
            |e| e.activities[0].attempts[0].outcomes[0].weight = 0.0,
            "weight 0 must be positive",
        );
        assert_problem(
            |e| e.activities[0].attempts[0].outcomes[0].weight = f64::NAN,
            "must be positive",
        );
        assert_problem(
            |e| e.activities[0].attempts[0].seconds = 0,
            "activities[0] (a).attempts[0] (a): seconds 0",
        );
        assert_problem(
            |e| e.activities[0].attempts[0].variance = 11,
            "variance 11 must not exceed seconds 10",
        );
        assert_problem(
            |e| e.activities[0].attempts.clear(),
            "needs at least one attempt",
        );
        assert_problem(
            |e| e.activities[0].solo = false,
            "must allow solo or group play",
        );
        assert_problem(
            |e| e.activities[0].group = Some(crate::event::GroupSize { min: 3, max: 2 }),
            "group size 3..=2",
        );
        assert_problem(
            |e| {
                e.activities[0].bands = vec![
                    GroupBand {
                        min: 1,
                        max: 3,
                        time: 1.0,
                        probability: 1.0,
                    },
                    GroupBand {
                        min: 3,
                        max: 4,
                        time: 1.0,
                        probability: 1.0,
                    },
                ]
            },
            "bands[0]: overlaps bands[1]",
        );
        assert_problem(
            |e| {
                e.activities[0].bands = vec![GroupBand {
                    min: 1,
                    max: 1,
                    time: -1.0,
                    probability: 1.0,
                }]
            },
            "time -1 must be > 0",
        );
        assert_problem(
            |e| e.activities.push(e.activities[0].clone()),
            "activities[1] (a): key is defined twice",
        );
        assert_problem(
            |e| e.teams[0].players[0].skill = 0.0,
            "teams[0] (T).players[0] (p): skill 0",
        );
        assert_problem(|e| e.teams[0].players.clear(), "0 players");
        assert_problem(
            |e| e.teams.push(e.teams[0].clone()),
            "teams[1] (T): name is used twice",
        );
        assert_problem(|e| e.teams.clear(), "teams: at least one team");
        assert_problem(
            |e| {
                e.teams[0].players[0].sessions = vec![Session {
                    day: Weekday::Mon,
                    start: TimeOfDay::MIDNIGHT,
                    minutes: 0,
                }]
            },
            "sessions[0]: minutes 0",
        );
    }

    #[test]
    fn all_problems_are_reported_at_once() {
        let found = problems(|e| {
            e.unlock_threshold = 0;
            e.teams[0].players[0].skill = -1.0;
        });
        assert_eq!(found.len(), 2, "{found:?}");
        let err = Error::InvalidEvent { problems: found };
        assert!(
            err.to_string()
                .starts_with("invalid event: unlock_threshold"),
            "{err}"
        );
    }
}
