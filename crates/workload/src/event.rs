//! The event configuration as users write it (JSON): board, activities,
//! teams, players and their weekly schedules. Plain data with serde; the
//! checks live in `validate`, the fast form in `compile`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A bingo event: what one `bingo` run simulates.
///
/// Every field is part of the config so a run is reproducible from the event
/// JSON stored with its batch, including the start time that sets the phase
/// of the players' weekly schedules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Event {
    pub name: String,
    /// When the event starts on the players' local weekly clock.
    pub start: EventStart,
    /// Length of the event in whole seconds (Spring League: 172,800 = 48 h).
    pub duration_seconds: u32,
    /// Completed points a row needs before the next row unlocks.
    pub unlock_threshold: u32,
    pub activities: Vec<Activity>,
    /// Row 0 first; each row has exactly 4 tiles worth 1, 2, 3 and 4 points.
    pub rows: Vec<Row>,
    /// In output order; a tied run's winner column names the earlier team
    /// (summaries count it as a tie, won by nobody).
    pub teams: Vec<Team>,
}

/// The event's start on the weekly clock the schedules use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EventStart {
    pub day: Weekday,
    pub time: TimeOfDay,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Every day of the week, Monday first (index order).
    pub const ALL: [Weekday; 7] = [
        Weekday::Mon,
        Weekday::Tue,
        Weekday::Wed,
        Weekday::Thu,
        Weekday::Fri,
        Weekday::Sat,
        Weekday::Sun,
    ];

    /// Days since Monday.
    pub fn index(self) -> u32 {
        self as u32
    }
}

/// A local time of day, written `"HH:MM"` in JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDay {
    minutes: u16,
}

impl TimeOfDay {
    pub const MIDNIGHT: TimeOfDay = TimeOfDay { minutes: 0 };

    /// `None` unless `hour < 24` and `minute < 60`.
    pub fn new(hour: u32, minute: u32) -> Option<Self> {
        (hour < 24 && minute < 60).then(|| Self {
            minutes: (hour * 60 + minute) as u16,
        })
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u32 {
        u32::from(self.minutes)
    }

    fn parse(s: &str) -> Option<Self> {
        let (h, m) = s.split_once(':')?;
        if h.is_empty() || h.len() > 2 || m.len() != 2 {
            return None;
        }
        Self::new(h.parse().ok()?, m.parse().ok()?)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("time of day {s:?} is not HH:MM (00:00 to 23:59)"))
        })
    }
}

/// Something players do to earn drops: a boss, a skill, a raid.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Activity {
    /// What tile rules refer to, e.g. `"zulrah"`.
    pub key: String,
    pub name: String,
    /// Whether one player may do it alone.
    pub solo: bool,
    /// Group support; `None` means solo only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupSize>,
    /// All are rolled when one attempt of the activity completes; the attempt
    /// lasts as long as the longest of them (they happen side by side, like
    /// the loot rolls of one raid).
    pub attempts: Vec<AttemptDef>,
    /// Time and probability factors by group size; sizes no band covers get 1 / 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bands: Vec<GroupBand>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GroupSize {
    pub min: u32,
    pub max: u32,
}

/// One roll made when an attempt completes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AttemptDef {
    pub name: String,
    pub roll: RollScope,
    /// Baseline duration in seconds.
    pub seconds: u32,
    /// The duration is `seconds` plus a uniform integer in `[-variance, variance]`.
    #[serde(default)]
    pub variance: u32,
    /// Exactly one is drawn per roll, by weight.
    pub outcomes: Vec<Outcome>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RollScope {
    /// Each member of the group rolls.
    PerPlayer,
    /// The group rolls once.
    PerGroup,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// Relative weight, > 0. Real-valued: `3` and `1` mean 75 % and 25 %.
    pub weight: f64,
    /// Drops this outcome gives; empty means nothing useful dropped.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// A drop key such as `"kill.zulrah"`; tiles accept drops by key.
    pub drop: String,
    pub units: Units,
}

/// Progress units of a grant: `3` or `{"min": 50, "max": 100}` (uniform, inclusive).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum Units {
    Fixed(u32),
    Range { min: u32, max: u32 },
}

impl Units {
    pub fn bounds(self) -> (u32, u32) {
        match self {
            Units::Fixed(n) => (n, n),
            Units::Range { min, max } => (min, max),
        }
    }
}

/// Factors for groups whose size is in `[min, max]`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupBand {
    pub min: u32,
    pub max: u32,
    /// Multiplies the attempt's duration.
    pub time: f64,
    /// Multiplies the weights of outcomes the worked tile accepts.
    pub probability: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub tiles: Vec<Tile>,
}

/// A board square. Its key is `s{points}-r{row}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    pub points: u32,
    /// Progress units needed to complete the tile.
    #[serde(default = "one")]
    pub required: u32,
    /// The ways to work the tile; a drop counts if any rule accepts it.
    pub rules: Vec<TileRule>,
}

fn one() -> u32 {
    1
}

/// One way to work a tile: an activity, the drops it accepts there, who may do it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TileRule {
    /// An [`Activity::key`].
    pub activity: String,
    /// Drop keys that make progress on this tile.
    pub accepts: Vec<String>,
    /// Capabilities a player must all have to work the tile this way.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub modifiers: Vec<Modifier>,
}

/// Applies when a player (or, for the duration and per-group rolls, any group
/// member) has the capability.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Modifier {
    pub capability: String,
    #[serde(default = "one_f64")]
    pub time: f64,
    #[serde(default = "one_f64")]
    pub probability: f64,
}

fn one_f64() -> f64 {
    1.0
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub name: String,
    pub strategy: Strategy,
    /// At most 64.
    pub players: Vec<Player>,
}

/// How a team decides what each player works on and where a drop goes.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// Race to unlock rows: work the cheapest tile set of the furthest row
    /// that reaches the threshold.
    RowUnlocking,
    /// Highest points first, then the fastest tile.
    Greedy,
    /// RowUnlocking, but tiles whose activity is also needed by locked tiles
    /// look more expensive (their drops would be wasted later).
    ComboUnlocking,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Player {
    pub name: String,
    /// Multiplies attempt durations; below 1 is faster.
    pub skill: f64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Weekly sessions in local time; none means always online.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sessions: Vec<Session>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub day: Weekday,
    pub start: TimeOfDay,
    pub minutes: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_of_day_round_trips_and_rejects_nonsense() {
        let t: TimeOfDay = serde_json::from_str("\"09:05\"").unwrap();
        assert_eq!(t.minutes(), 9 * 60 + 5);
        assert_eq!(serde_json::to_string(&t).unwrap(), "\"09:05\"");
        for bad in [
            "\"24:00\"",
            "\"12:60\"",
            "\"12\"",
            "\"1:5\"",
            "\"ab:cd\"",
            "\"123:00\"",
        ] {
            assert!(
                serde_json::from_str::<TimeOfDay>(bad).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn units_accept_a_number_or_a_range() {
        let u: Units = serde_json::from_str("3").unwrap();
        assert_eq!(u, Units::Fixed(3));
        let r: Units = serde_json::from_str(r#"{"min":50,"max":100}"#).unwrap();
        assert_eq!(r.bounds(), (50, 100));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = serde_json::from_str::<Session>(
            r#"{"day":"mon","start":"10:00","minutes":5,"mins":3}"#,
        );
        assert!(e.is_err());
    }
}
