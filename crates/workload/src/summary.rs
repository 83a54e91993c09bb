//! [`Summary`]: the exact, mergeable aggregate of many runs. Integer counts
//! only (no floats), and exact per-value histograms, so folding runs in any
//! grouping and order gives `==` results: the verifier's recomputation from
//! per-run rows must equal the aggregate merged from chunk summaries.
//!
//! In memory a histogram is dense over its whole range (adding a run never
//! allocates); in JSON it is trimmed to its non-zero span, and it is checked
//! on the way in, since summaries arrive in messages.
//!
//! Ties are an outcome of their own: a run in which two or more teams share
//! the most points is won by none of them. Each team counts its outright
//! wins, its ties, and its *tiebreaks* (tied runs in which it was listed
//! first, so the outcome row's winner column names it). A summary written
//! before ties were counted has no tie fields in its JSON; it still reads,
//! as a summary whose wins include the tiebreaks, and merging it with a
//! newer one gives that older kind (wins + tiebreaks is exactly the older
//! count), so nothing is ever guessed.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sum::MAX_VALUE;
use crate::validate::{MAX_ROWS, MAX_TEAMS, TILES_PER_ROW};

/// Aggregate of a batch's (or a chunk's) runs. Build one with
/// [`crate::Workload::empty_summary`], then [`Summary::add`] or [`Summary::merge`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Summary {
    Bingo(BingoSummary),
    Sum(SumSummary),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(try_from = "BingoRepr", into = "BingoRepr")]
pub struct BingoSummary {
    runs: u64,
    /// Runs won by no team (the top score shared); `None` in a summary
    /// from before ties were counted, whose wins then include tiebreaks.
    tied_runs: Option<u64>,
    rows: u32,
    tiles: u32,
    max_points: u32,
    teams: Vec<TeamTally>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TeamTally {
    /// Runs this team won outright: it alone had the most points (in a
    /// summary without tie counts, also the tied runs it was listed first in).
    pub wins: u64,
    /// Runs in which it shared the most points with another team.
    pub ties: u64,
    /// Those tied runs in which it was listed first among the tied teams.
    pub tiebreaks: u64,
    /// `points[v]`: runs where the team scored v points; length max_points + 1.
    pub points: Vec<u64>,
    /// Tiles completed; length tiles + 1.
    pub tiles: Vec<u64>,
    /// Furthest row unlocked; length rows.
    pub rows: Vec<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(try_from = "SumRepr", into = "SumRepr")]
pub struct SumSummary {
    count: u64,
    sum: i64,
    min: Option<i32>,
    max: Option<i32>,
}

impl Summary {
    pub(crate) fn empty_bingo(teams: usize, rows: u32, tiles: u32, max_points: u32) -> Self {
        let tally = TeamTally {
            wins: 0,
            ties: 0,
            tiebreaks: 0,
            points: vec![0; max_points as usize + 1],
            tiles: vec![0; tiles as usize + 1],
            rows: vec![0; rows as usize],
        };
        Summary::Bingo(BingoSummary {
            runs: 0,
            tied_runs: Some(0),
            rows,
            tiles,
            max_points,
            teams: vec![tally; teams],
        })
    }

    pub(crate) fn empty_sum() -> Self {
        Summary::Sum(SumSummary {
            count: 0,
            sum: 0,
            min: None,
            max: None,
        })
    }

    /// Number of runs folded in.
    pub fn runs(&self) -> u64 {
        match self {
            Summary::Bingo(b) => b.runs,
            Summary::Sum(s) => s.count,
        }
    }

    /// Folds in one run's outcome row (as [`crate::Workload::run`] writes it
    /// and the store keeps it). Rows come back from a database, so every
    /// value is checked: width, ranges, and that the winner is the first
    /// team with the most points. Nothing changes on error.
    pub fn add(&mut self, outcome: &[i32]) -> Result<()> {
        match self {
            Summary::Bingo(b) => b.add(outcome),
            Summary::Sum(s) => s.add(outcome),
        }
    }

    /// Adds `other`'s runs to this one. Errors, changing nothing, when the
    /// two come from different workloads (kind, team count, board size).
    pub fn merge(&mut self, other: &Summary) -> Result<()> {
        match (self, other) {
            (Summary::Bingo(a), Summary::Bingo(b)) => a.merge(b),
            (Summary::Sum(a), Summary::Sum(b)) => a.merge(b),
            (a, b) => Err(Error::ShapeMismatch {
                ours: a.shape(),
                theirs: b.shape(),
            }),
        }
    }

    /// What must match for two summaries to merge, in words.
    pub fn shape(&self) -> String {
        match self {
            Summary::Bingo(b) => b.shape(),
            Summary::Sum(_) => "sum".to_string(),
        }
    }

    /// Bingo runs won by no team (the top score shared); `None` for a sum
    /// summary and for one written before ties were counted.
    pub fn tied_runs(&self) -> Option<u64> {
        self.as_bingo().and_then(|b| b.tied_runs)
    }

    /// False only for a bingo summary written before ties were counted.
    pub fn counts_ties(&self) -> bool {
        self.as_bingo().is_none_or(|b| b.tied_runs.is_some())
    }

    /// This summary as a build from before tie counts would have summed
    /// the same runs (what a stored aggregate of that age is compared with).
    pub fn without_tie_counts(mut self) -> Summary {
        if let Summary::Bingo(b) = &mut self {
            b.without_tie_counts();
        }
        self
    }

    /// Whether this is a bingo summary of exactly this board and team count.
    pub(crate) fn is_bingo_of(&self, teams: usize, rows: u32, tiles: u32, max_points: u32) -> bool {
        self.as_bingo().is_some_and(|b| {
            b.teams.len() == teams && (b.rows, b.tiles, b.max_points) == (rows, tiles, max_points)
        })
    }

    pub(crate) fn as_bingo(&self) -> Option<&BingoSummary> {
        match self {
            Summary::Bingo(b) => Some(b),
            Summary::Sum(_) => None,
        }
    }

    pub(crate) fn as_sum(&self) -> Option<&SumSummary> {
        match self {
            Summary::Sum(s) => Some(s),
            Summary::Bingo(_) => None,
        }
    }
}

fn range_check(field: impl FnOnce() -> String, value: i32, min: i64, max: i64) -> Result<u32> {
    if (min..=max).contains(&i64::from(value)) {
        Ok(value as u32)
    } else {
        Err(Error::OutcomeRange {
            field: field(),
            value,
            min,
            max,
        })
    }
}

fn add_counts(into: &mut [u64], from: &[u64]) -> Result<()> {
    for (a, b) in into.iter_mut().zip(from) {
        *a = a.checked_add(*b).ok_or(Error::Overflow)?;
    }
    Ok(())
}

impl BingoSummary {
    pub(crate) fn runs(&self) -> u64 {
        self.runs
    }

    pub(crate) fn teams(&self) -> &[TeamTally] {
        &self.teams
    }

    /// Runs won by no team; `None` when this summary predates tie counts.
    pub(crate) fn tied_runs(&self) -> Option<u64> {
        self.tied_runs
    }

    /// The same summary as one written before ties were counted: tiebreaks
    /// become wins, tie counts are dropped.
    fn without_tie_counts(&mut self) {
        if self.tied_runs.take().is_none() {
            return;
        }
        for t in &mut self.teams {
            t.wins += t.tiebreaks;
            (t.ties, t.tiebreaks) = (0, 0);
        }
    }

    fn shape(&self) -> String {
        format!(
            "bingo with {} teams, {} rows, {} tiles, {} points",
            self.teams.len(),
            self.rows,
            self.tiles,
            self.max_points
        )
    }

    fn same_shape(&self, other: &BingoSummary) -> bool {
        self.teams.len() == other.teams.len()
            && (self.rows, self.tiles, self.max_points)
                == (other.rows, other.tiles, other.max_points)
    }

    fn add(&mut self, outcome: &[i32]) -> Result<()> {
        let n = self.teams.len();
        let expected = 1 + 3 * n;
        if outcome.len() != expected {
            return Err(Error::OutcomeWidth {
                expected,
                got: outcome.len(),
            });
        }
        let winner = range_check(|| "winner".to_string(), outcome[0], 0, n as i64 - 1)? as usize;
        let mut parsed = [(0u32, 0u32, 0u32); MAX_TEAMS];
        for (k, slot) in parsed.iter_mut().enumerate().take(n) {
            let v = &outcome[1 + 3 * k..4 + 3 * k];
            *slot = (
                range_check(
                    || format!("team {k} points"),
                    v[0],
                    0,
                    i64::from(self.max_points),
                )?,
                range_check(|| format!("team {k} tiles"), v[1], 0, i64::from(self.tiles))?,
                range_check(
                    || format!("team {k} row"),
                    v[2],
                    0,
                    i64::from(self.rows) - 1,
                )?,
            );
        }
        let best = parsed[..n].iter().map(|p| p.0).max().unwrap_or(0);
        let first_best = parsed[..n].iter().position(|p| p.0 == best).unwrap_or(0);
        if winner != first_best {
            return Err(Error::WrongWinner {
                winner: outcome[0],
                reason: format!("team {first_best} is the first with the most points ({best})"),
            });
        }
        self.runs = self.runs.checked_add(1).ok_or(Error::Overflow)?;
        let sharing = parsed[..n].iter().filter(|p| p.0 == best).count();
        match &mut self.tied_runs {
            Some(tied) if sharing > 1 => {
                *tied += 1;
                self.teams[winner].tiebreaks += 1;
                for (tally, p) in self.teams.iter_mut().zip(&parsed[..n]) {
                    if p.0 == best {
                        tally.ties += 1;
                    }
                }
            }
            _ => self.teams[winner].wins += 1,
        }
        for (tally, &(points, tiles, row)) in self.teams.iter_mut().zip(&parsed[..n]) {
            tally.points[points as usize] += 1;
            tally.tiles[tiles as usize] += 1;
            tally.rows[row as usize] += 1;
        }
        Ok(())
    }

    fn merge(&mut self, other: &BingoSummary) -> Result<()> {
        if !self.same_shape(other) {
            return Err(Error::ShapeMismatch {
                ours: self.shape(),
                theirs: other.shape(),
            });
        }
        let runs = self.runs.checked_add(other.runs).ok_or(Error::Overflow)?;
        // Check every counter before touching any, so an error changes nothing.
        for (a, b) in self.teams.iter().zip(&other.teams) {
            let fits =
                |x: &[u64], y: &[u64]| x.iter().zip(y).all(|(p, q)| p.checked_add(*q).is_some());
            if !(fits(&a.points, &b.points) && fits(&a.tiles, &b.tiles) && fits(&a.rows, &b.rows)) {
                return Err(Error::Overflow);
            }
        }
        self.runs = runs;
        // Either side without tie counts makes the result one without them:
        // wins plus tiebreaks is exactly what such a summary counts as wins.
        match (&mut self.tied_runs, other.tied_runs) {
            (Some(a), Some(b)) => *a += b,
            _ => self.without_tie_counts(),
        }
        let counted = self.tied_runs.is_some();
        for (a, b) in self.teams.iter_mut().zip(&other.teams) {
            if counted {
                a.wins += b.wins;
                a.ties += b.ties;
                a.tiebreaks += b.tiebreaks;
            } else {
                a.wins += b.wins + b.tiebreaks;
            }
            add_counts(&mut a.points, &b.points)?;
            add_counts(&mut a.tiles, &b.tiles)?;
            add_counts(&mut a.rows, &b.rows)?;
        }
        Ok(())
    }
}

impl SumSummary {
    pub(crate) fn parts(&self) -> (u64, i64, Option<i32>, Option<i32>) {
        (self.count, self.sum, self.min, self.max)
    }

    fn add(&mut self, outcome: &[i32]) -> Result<()> {
        if outcome.len() != 1 {
            return Err(Error::OutcomeWidth {
                expected: 1,
                got: outcome.len(),
            });
        }
        let v = range_check(|| "value".to_string(), outcome[0], 0, i64::from(MAX_VALUE))? as i32;
        let count = self.count.checked_add(1).ok_or(Error::Overflow)?;
        let sum = self.sum.checked_add(i64::from(v)).ok_or(Error::Overflow)?;
        (self.count, self.sum) = (count, sum);
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
        Ok(())
    }

    fn merge(&mut self, other: &SumSummary) -> Result<()> {
        let count = self.count.checked_add(other.count).ok_or(Error::Overflow)?;
        let sum = self.sum.checked_add(other.sum).ok_or(Error::Overflow)?;
        (self.count, self.sum) = (count, sum);
        self.min = match (self.min, other.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, other.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        Ok(())
    }
}

/// A histogram in JSON: counts of the values `from`, `from + 1`, …; zero
/// counts at both ends trimmed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct Span {
    from: u32,
    counts: Vec<u64>,
}

impl Span {
    fn trim(dense: &[u64]) -> Span {
        let Some(first) = dense.iter().position(|&c| c != 0) else {
            return Span {
                from: 0,
                counts: Vec::new(),
            };
        };
        let last = dense.iter().rposition(|&c| c != 0).unwrap_or(first);
        Span {
            from: first as u32,
            counts: dense[first..=last].to_vec(),
        }
    }

    /// Dense counts over `0..len`, checking the span fits and sums to `runs`.
    fn expand(&self, len: usize, runs: u64, what: &str) -> Result<Vec<u64>, String> {
        let from = self.from as usize;
        if from + self.counts.len() > len {
            return Err(format!("{what} histogram reaches past {}", len - 1));
        }
        let mut total = 0u64;
        for &c in &self.counts {
            total = total
                .checked_add(c)
                .ok_or_else(|| format!("{what} histogram overflows"))?;
        }
        if total != runs {
            return Err(format!(
                "{what} histogram counts {total} runs, summary says {runs}"
            ));
        }
        let mut dense = vec![0; len];
        dense[from..from + self.counts.len()].copy_from_slice(&self.counts);
        Ok(dense)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamRepr {
    wins: u64,
    /// Absent in summaries written before ties were counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ties: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tiebreaks: Option<u64>,
    points: Span,
    tiles: Span,
    rows: Span,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BingoRepr {
    runs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tied_runs: Option<u64>,
    rows: u32,
    tiles: u32,
    max_points: u32,
    teams: Vec<TeamRepr>,
}

impl From<BingoSummary> for BingoRepr {
    fn from(b: BingoSummary) -> Self {
        let counted = b.tied_runs.is_some();
        BingoRepr {
            runs: b.runs,
            tied_runs: b.tied_runs,
            rows: b.rows,
            tiles: b.tiles,
            max_points: b.max_points,
            teams: b
                .teams
                .iter()
                .map(|t| TeamRepr {
                    wins: t.wins,
                    ties: counted.then_some(t.ties),
                    tiebreaks: counted.then_some(t.tiebreaks),
                    points: Span::trim(&t.points),
                    tiles: Span::trim(&t.tiles),
                    rows: Span::trim(&t.rows),
                })
                .collect(),
        }
    }
}

impl TryFrom<BingoRepr> for BingoSummary {
    type Error = String;

    fn try_from(r: BingoRepr) -> Result<Self, String> {
        // Bounds first: they size the dense histograms allocated below.
        let rows_ok = (1..=MAX_ROWS as u32).contains(&r.rows);
        let tiles_ok = r.tiles == r.rows * TILES_PER_ROW as u32;
        let points_ok = r.max_points == r.rows * 10;
        if !(rows_ok && tiles_ok && points_ok) {
            return Err(format!(
                "bad board size: {} rows, {} tiles, {} points",
                r.rows, r.tiles, r.max_points
            ));
        }
        if r.teams.is_empty() || r.teams.len() > MAX_TEAMS {
            return Err(format!("{} teams; expected 1..={MAX_TEAMS}", r.teams.len()));
        }
        let mut wins = 0u64;
        let mut tiebreaks = 0u64;
        let mut teams = Vec::with_capacity(r.teams.len());
        for (k, t) in r.teams.iter().enumerate() {
            wins = wins.checked_add(t.wins).ok_or("wins overflow")?;
            let (ties, breaks) = match (r.tied_runs, t.ties, t.tiebreaks) {
                (Some(tied), Some(ties), Some(breaks)) if breaks <= ties && ties <= tied => {
                    (ties, breaks)
                }
                (None, None, None) => (0, 0),
                _ => return Err(format!("team {k}'s tie counts do not fit the summary's")),
            };
            tiebreaks = tiebreaks.checked_add(breaks).ok_or("tiebreaks overflow")?;
            teams.push(TeamTally {
                wins: t.wins,
                ties,
                tiebreaks: breaks,
                points: t.points.expand(
                    r.max_points as usize + 1,
                    r.runs,
                    &format!("team {k} points"),
                )?,
                tiles: t
                    .tiles
                    .expand(r.tiles as usize + 1, r.runs, &format!("team {k} tiles"))?,
                rows: t
                    .rows
                    .expand(r.rows as usize, r.runs, &format!("team {k} rows"))?,
            });
        }
        let tied = r.tied_runs.unwrap_or(0);
        if wins.checked_add(tied) != Some(r.runs) {
            return Err(format!(
                "wins add up to {wins} and ties to {tied}, summary counts {} runs",
                r.runs
            ));
        }
        // Every tied run is some team's tiebreak and two or more teams' tie.
        let ties: u128 = teams.iter().map(|t| u128::from(t.ties)).sum();
        if tiebreaks != tied || ties < 2 * u128::from(tied) {
            return Err(format!(
                "{tied} tied runs do not fit {tiebreaks} tiebreaks and {ties} team ties"
            ));
        }
        Ok(BingoSummary {
            runs: r.runs,
            tied_runs: r.tied_runs,
            rows: r.rows,
            tiles: r.tiles,
            max_points: r.max_points,
            teams,
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SumRepr {
    count: u64,
    sum: i64,
    min: Option<i32>,
    max: Option<i32>,
}

impl From<SumSummary> for SumRepr {
    fn from(s: SumSummary) -> Self {
        SumRepr {
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
        }
    }
}

impl TryFrom<SumRepr> for SumSummary {
    type Error = String;

    fn try_from(r: SumRepr) -> Result<Self, String> {
        let consistent = match (r.count, r.min, r.max) {
            (0, None, None) => r.sum == 0,
            (n, Some(lo), Some(hi)) if n > 0 => {
                let n = i128::from(n);
                0 <= lo
                    && lo <= hi
                    && hi <= MAX_VALUE
                    && (n * i128::from(lo)..=n * i128::from(hi)).contains(&i128::from(r.sum))
            }
            _ => false,
        };
        if !consistent {
            return Err(format!(
                "count {} sum {} min {:?} max {:?} do not fit together",
                r.count, r.sum, r.min, r.max
            ));
        }
        Ok(SumSummary {
            count: r.count,
            sum: r.sum,
            min: r.min,
            max: r.max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn bingo() -> Summary {
        Summary::empty_bingo(2, 3, 12, 30)
    }

    /// A valid 2-team outcome row from arbitrary small numbers.
    fn row(a: (u32, u32, u32), b: (u32, u32, u32)) -> Vec<i32> {
        let winner = if b.0 > a.0 { 1 } else { 0 };
        vec![
            winner, a.0 as i32, a.1 as i32, a.2 as i32, b.0 as i32, b.1 as i32, b.2 as i32,
        ]
    }

    fn team() -> impl Strategy<Value = (u32, u32, u32)> {
        (0u32..=30, 0u32..=12, 0u32..3)
    }

    /// A valid outcome row of any number of teams: the winner column names
    /// the first team with the most points.
    fn row_of(teams: &[(u32, u32, u32)]) -> Vec<i32> {
        let best = teams.iter().map(|t| t.0).max().unwrap_or(0);
        let winner = teams.iter().position(|t| t.0 == best).unwrap_or(0);
        let mut out = vec![winner as i32];
        for t in teams {
            out.extend([t.0 as i32, t.1 as i32, t.2 as i32]);
        }
        out
    }

    /// Three teams scoring 0..=2 points: most runs have a shared top score.
    fn tie_heavy_rows() -> impl Strategy<Value = Vec<Vec<i32>>> {
        prop::collection::vec(
            prop::collection::vec((0u32..=2, 0u32..=12, 0u32..3), 3).prop_map(|t| row_of(&t)),
            0..80,
        )
    }

    /// The JSON a build from before tie counts wrote for `s`: no tie
    /// fields, tiebreaks counted as wins.
    fn older_json(s: &Summary) -> String {
        let mut v: serde_json::Value = serde_json::to_value(s).unwrap();
        v.as_object_mut().unwrap().remove("tied_runs");
        for t in v["teams"].as_array_mut().unwrap() {
            let t = t.as_object_mut().unwrap();
            let breaks = t.remove("tiebreaks").unwrap().as_u64().unwrap();
            t.remove("ties");
            let wins = t["wins"].as_u64().unwrap();
            t.insert("wins".into(), (wins + breaks).into());
        }
        v.to_string()
    }

    fn tallies(s: &Summary) -> (&[TeamTally], Option<u64>) {
        let b = s.as_bingo().unwrap();
        (b.teams(), b.tied_runs())
    }

    fn fold(rows: &[Vec<i32>], mut s: Summary) -> Summary {
        for r in rows {
            s.add(r).unwrap();
        }
        s
    }

    proptest! {
        #[test]
        fn merging_split_parts_equals_adding_all(
            rows in prop::collection::vec((team(), team()).prop_map(|(a, b)| row(a, b)), 0..60),
            cut in 0usize..60,
        ) {
            let cut = cut.min(rows.len());
            let all = fold(&rows, bingo());
            let mut left = fold(&rows[..cut], bingo());
            let right = fold(&rows[cut..], bingo());
            left.merge(&right).unwrap();
            prop_assert_eq!(&left, &all);
            // Order does not matter either.
            let mut flipped = fold(&rows[cut..], bingo());
            flipped.merge(&fold(&rows[..cut], bingo())).unwrap();
            prop_assert_eq!(&flipped, &all);
            let mut reversed = rows.clone();
            reversed.reverse();
            prop_assert_eq!(&fold(&reversed, bingo()), &all);
            // And it survives JSON unchanged.
            let back: Summary = serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
            prop_assert_eq!(&back, &all);
            prop_assert_eq!(all.runs(), rows.len() as u64);
        }

        #[test]
        fn ties_are_counted_exactly(rows in tie_heavy_rows(), cut in 0usize..80) {
            let three = || Summary::empty_bingo(3, 3, 12, 30);
            let all = fold(&rows, three());
            let (teams, tied) = tallies(&all);
            // Counted straight from the rows: who has the top score, alone or not.
            let mut wins = [0u64; 3];
            let mut ties = [0u64; 3];
            let mut breaks = [0u64; 3];
            let mut tied_runs = 0;
            for r in &rows {
                let points = [r[1], r[4], r[7]];
                let best = *points.iter().max().unwrap();
                let top: Vec<usize> = (0..3).filter(|&k| points[k] == best).collect();
                if top.len() == 1 {
                    wins[top[0]] += 1;
                } else {
                    tied_runs += 1;
                    breaks[top[0]] += 1;
                    for k in top {
                        ties[k] += 1;
                    }
                }
            }
            prop_assert_eq!(tied, Some(tied_runs));
            for k in 0..3 {
                prop_assert_eq!((teams[k].wins, teams[k].ties, teams[k].tiebreaks), (wins[k], ties[k], breaks[k]));
            }
            prop_assert_eq!(wins.iter().sum::<u64>() + tied_runs, rows.len() as u64);
            // Merging parts, in either order, and JSON keep them exactly.
            let cut = cut.min(rows.len());
            let mut left = fold(&rows[..cut], three());
            left.merge(&fold(&rows[cut..], three())).unwrap();
            prop_assert_eq!(&left, &all);
            let mut right = fold(&rows[cut..], three());
            right.merge(&fold(&rows[..cut], three())).unwrap();
            prop_assert_eq!(&right, &all);
            let back: Summary = serde_json::from_str(&serde_json::to_string(&all).unwrap()).unwrap();
            prop_assert_eq!(&back, &all);
        }

        #[test]
        fn summaries_from_before_tie_counts_read_and_merge_exactly(rows in tie_heavy_rows(), cut in 0usize..80) {
            let three = || Summary::empty_bingo(3, 3, 12, 30);
            let cut = cut.min(rows.len());
            let all = fold(&rows, three());
            let older: Summary = serde_json::from_str(&older_json(&all)).unwrap();
            let (teams, tied) = tallies(&older);
            prop_assert_eq!(tied, None);
            // Its wins are the winner column's count, as the older build's were.
            for (k, t) in teams.iter().enumerate() {
                let named = rows.iter().filter(|r| r[0] == k as i32).count() as u64;
                prop_assert_eq!(t.wins, named);
            }
            // It writes back as it was read.
            let value = |json: &str| serde_json::from_str::<serde_json::Value>(json).unwrap();
            prop_assert_eq!(value(&serde_json::to_string(&older).unwrap()), value(&older_json(&all)));
            // An older part merged with a newer one, either way round, is the older kind of the whole.
            let old_left: Summary = serde_json::from_str(&older_json(&fold(&rows[..cut], three()))).unwrap();
            let mut merged = old_left.clone();
            merged.merge(&fold(&rows[cut..], three())).unwrap();
            prop_assert_eq!(&merged, &older);
            let mut merged = fold(&rows[cut..], three());
            merged.merge(&old_left).unwrap();
            prop_assert_eq!(&merged, &older);
        }

        #[test]
        fn sum_merge_is_exact(values in prop::collection::vec(0i32..=999, 0..80), cut in 0usize..80) {
            let cut = cut.min(values.len());
            let f = |vs: &[i32]| {
                let mut s = Summary::empty_sum();
                for &v in vs {
                    s.add(&[v]).unwrap();
                }
                s
            };
            let mut left = f(&values[..cut]);
            left.merge(&f(&values[cut..])).unwrap();
            prop_assert_eq!(&left, &f(&values));
            let back: Summary = serde_json::from_str(&serde_json::to_string(&left).unwrap()).unwrap();
            prop_assert_eq!(back, left);
        }
    }

    #[test]
    fn add_rejects_bad_rows_and_changes_nothing() {
        let mut s = bingo();
        let before = s.clone();
        assert!(matches!(
            s.add(&[0, 1, 1, 0]),
            Err(Error::OutcomeWidth {
                expected: 7,
                got: 4
            })
        ));
        assert!(matches!(
            s.add(&[2, 1, 1, 0, 1, 1, 0]),
            Err(Error::OutcomeRange { .. })
        ));
        assert!(matches!(
            s.add(&[0, 31, 1, 0, 1, 1, 0]),
            Err(Error::OutcomeRange { .. })
        ));
        assert!(matches!(
            s.add(&[0, 5, 13, 0, 1, 1, 0]),
            Err(Error::OutcomeRange { .. })
        ));
        assert!(matches!(
            s.add(&[0, 5, 1, 3, 1, 1, 0]),
            Err(Error::OutcomeRange { .. })
        ));
        assert!(matches!(
            s.add(&[0, -1, 1, 0, 1, 1, 0]),
            Err(Error::OutcomeRange { .. })
        ));
        // Beta has more points, or a tie's winner column names the first team.
        assert!(matches!(
            s.add(&[0, 5, 1, 0, 6, 1, 0]),
            Err(Error::WrongWinner { .. })
        ));
        assert!(matches!(
            s.add(&[1, 5, 1, 0, 5, 1, 0]),
            Err(Error::WrongWinner { .. })
        ));
        assert_eq!(s, before);
        s.add(&[0, 5, 1, 0, 5, 1, 0]).unwrap();
        assert_eq!(s.runs(), 1);
        let (teams, tied) = tallies(&s);
        assert_eq!(tied, Some(1));
        assert_eq!(
            (teams[0].wins, teams[0].ties, teams[0].tiebreaks),
            (0, 1, 1)
        );
        assert_eq!(
            (teams[1].wins, teams[1].ties, teams[1].tiebreaks),
            (0, 1, 0)
        );
        let mut sum = Summary::empty_sum();
        assert!(sum.add(&[1000]).is_err());
        assert!(sum.add(&[-1]).is_err());
        assert!(sum.add(&[1, 2]).is_err());
    }

    #[test]
    fn merge_rejects_other_shapes() {
        let mut s = bingo();
        assert!(matches!(
            s.merge(&Summary::empty_sum()),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            s.merge(&Summary::empty_bingo(3, 3, 12, 30)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            s.merge(&Summary::empty_bingo(2, 4, 16, 40)),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            Summary::empty_sum().merge(&s),
            Err(Error::ShapeMismatch { .. })
        ));
    }

    #[test]
    fn json_is_compact_and_checked_on_the_way_in() {
        let mut s = bingo();
        s.add(&row((12, 5, 1), (20, 8, 2))).unwrap();
        s.add(&row((13, 5, 1), (20, 9, 2))).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(
            json.contains(r#""points":{"from":12,"counts":[1,1]}"#),
            "{json}"
        );
        let tampered = json.replace(r#""wins":2"#, r#""wins":3"#);
        assert!(serde_json::from_str::<Summary>(&tampered).is_err());
        // Tie counts that cannot come from any rows are refused too.
        assert!(json.contains(r#""tied_runs":0"#), "{json}");
        let tampered = json.replace(r#""tied_runs":0"#, r#""tied_runs":1"#);
        assert!(serde_json::from_str::<Summary>(&tampered).is_err());
        let tampered = json.replacen(r#""ties":0"#, r#""ties":1"#, 1);
        assert!(serde_json::from_str::<Summary>(&tampered).is_err());
        let half_old = json.replacen(r#""ties":0,"#, "", 1);
        assert!(serde_json::from_str::<Summary>(&half_old).is_err());
        let tampered = json.replace(r#""from":12"#, r#""from":30"#);
        assert!(serde_json::from_str::<Summary>(&tampered).is_err());
        let huge = json.replace(r#""rows":3"#, r#""rows":4000000"#);
        assert!(serde_json::from_str::<Summary>(&huge).is_err());
        let bad_sum = r#"{"kind":"sum","count":2,"sum":5000,"min":1,"max":999}"#;
        assert!(serde_json::from_str::<Summary>(bad_sum).is_err());
        let ok_sum = r#"{"kind":"sum","count":2,"sum":1000,"min":1,"max":999}"#;
        assert_eq!(serde_json::from_str::<Summary>(ok_sum).unwrap().runs(), 2);
    }
}
