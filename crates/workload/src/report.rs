//! [`Report`]: what a [`Summary`] means to a reader: rates, means and exact
//! percentiles, as data (serde) and as a table (`Display`) for
//! `batchline results`. Floats appear only here, derived from the exact counts.

use std::fmt;

use serde::Serialize;

use crate::summary::{Summary, TeamTally};

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Report {
    Bingo(BingoReport),
    Sum(SumReport),
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct BingoReport {
    pub runs: u64,
    /// Runs won by no team: two or more shared the most points. `None` for
    /// a batch summed before ties were counted (its wins include ties).
    pub tied_runs: Option<u64>,
    pub tie_rate: Option<f64>,
    pub teams: Vec<TeamReport>,
}

/// One team over all runs. With no runs every number is 0.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct TeamReport {
    pub name: String,
    /// Runs it won outright, alone with the most points.
    pub wins: u64,
    pub win_rate: f64,
    /// Runs in which it shared the most points; `None` when not counted.
    pub ties: Option<u64>,
    pub tie_rate: Option<f64>,
    pub points: Stats,
    pub tiles: Stats,
    /// Furthest row unlocked (0-based).
    pub row: Stats,
    /// (points, runs) for every score that occurred, ascending.
    pub points_histogram: Vec<(u32, u64)>,
    /// `row_reach_rate[r]`: share of runs in which row r unlocked.
    pub row_reach_rate: Vec<f64>,
}

/// Percentiles are exact nearest-rank values: the smallest value with at
/// least that share of runs at or below it.
#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    pub mean: f64,
    pub min: u32,
    pub max: u32,
    pub p50: u32,
    pub p95: u32,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq)]
pub struct SumReport {
    pub count: u64,
    pub sum: i64,
    pub min: Option<i32>,
    pub max: Option<i32>,
    pub mean: Option<f64>,
}

impl Stats {
    fn of(counts: &[u64], runs: u64) -> Stats {
        if runs == 0 {
            return Stats {
                mean: 0.0,
                min: 0,
                max: 0,
                p50: 0,
                p95: 0,
            };
        }
        let total: u128 = counts
            .iter()
            .enumerate()
            .map(|(v, &c)| v as u128 * u128::from(c))
            .sum();
        let min = counts.iter().position(|&c| c > 0).unwrap_or(0) as u32;
        let max = counts.iter().rposition(|&c| c > 0).unwrap_or(0) as u32;
        Stats {
            mean: total as f64 / runs as f64,
            min,
            max,
            p50: rank(counts, runs, 50),
            p95: rank(counts, runs, 95),
        }
    }
}

/// Nearest-rank percentile over a histogram, in integers.
fn rank(counts: &[u64], runs: u64, percent: u64) -> u32 {
    let target = (u128::from(runs) * u128::from(percent))
        .div_ceil(100)
        .max(1);
    let mut seen = 0u128;
    for (v, &c) in counts.iter().enumerate() {
        seen += u128::from(c);
        if seen >= target {
            return v as u32;
        }
    }
    counts.len().saturating_sub(1) as u32
}

/// `n` as a share of `runs`; 0 with no runs.
fn share(n: u64, runs: u64) -> f64 {
    if runs == 0 {
        0.0
    } else {
        n as f64 / runs as f64
    }
}

fn team_report(name: String, t: &TeamTally, runs: u64, ties_counted: bool) -> TeamReport {
    let rate = |n: u64| share(n, runs);
    let ties = ties_counted.then_some(t.ties);
    let mut reached = 0u64;
    let mut row_reach_rate: Vec<f64> = t
        .rows
        .iter()
        .rev()
        .map(|&c| {
            reached += c;
            rate(reached)
        })
        .collect();
    row_reach_rate.reverse();
    TeamReport {
        name,
        wins: t.wins,
        win_rate: rate(t.wins),
        ties,
        tie_rate: ties.map(rate),
        points: Stats::of(&t.points, runs),
        tiles: Stats::of(&t.tiles, runs),
        row: Stats::of(&t.rows, runs),
        points_histogram: t
            .points
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(v, &c)| (v as u32, c))
            .collect(),
        row_reach_rate,
    }
}

impl Summary {
    /// The report, teams named "team 1", "team 2", …; see [`Report::with_team_names`].
    pub fn report(&self) -> Report {
        if let Some(b) = self.as_bingo() {
            let counted = b.tied_runs().is_some();
            let teams = b
                .teams()
                .iter()
                .enumerate()
                .map(|(k, t)| team_report(format!("team {}", k + 1), t, b.runs(), counted))
                .collect();
            return Report::Bingo(BingoReport {
                runs: b.runs(),
                tied_runs: b.tied_runs(),
                tie_rate: b.tied_runs().map(|n| share(n, b.runs())),
                teams,
            });
        }
        let (count, sum, min, max) = self.as_sum().map_or((0, 0, None, None), |s| s.parts());
        let mean = (count > 0).then(|| sum as f64 / count as f64);
        Report::Sum(SumReport {
            count,
            sum,
            min,
            max,
            mean,
        })
    }
}

impl Report {
    /// Names the teams, in order (from [`crate::Workload::team_names`]).
    pub fn with_team_names(mut self, names: &[String]) -> Report {
        if let Report::Bingo(b) = &mut self {
            for (t, n) in b.teams.iter_mut().zip(names) {
                t.name.clone_from(n);
            }
        }
        self
    }
}

fn pct(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// Rows 1.. with the share of runs that unlocked them, equal neighbours
/// joined (`1-12:100.0% 13:99.5% 14-19:0.0%`).
fn reach_runs(rates: &[f64]) -> String {
    let mut parts = Vec::new();
    let mut r = 1;
    while r < rates.len() {
        let mut end = r;
        while end + 1 < rates.len() && rates[end + 1] == rates[r] {
            end += 1;
        }
        let rows = if end == r {
            r.to_string()
        } else {
            format!("{r}-{end}")
        };
        parts.push(format!("{rows}:{}", pct(rates[r])));
        r = end + 1;
    }
    if parts.is_empty() {
        "(one row only)".to_string()
    } else {
        parts.join(" ")
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Report::Sum(s) => {
                write!(f, "runs {}  sum {}", s.count, s.sum)?;
                if let (Some(min), Some(max), Some(mean)) = (s.min, s.max, s.mean) {
                    write!(f, "  min {min}  max {max}  mean {mean:.3}")?;
                }
                Ok(())
            }
            Report::Bingo(b) => {
                writeln!(f, "{} runs", b.runs)?;
                if b.runs == 0 {
                    return Ok(());
                }
                let w = b
                    .teams
                    .iter()
                    .map(|t| t.name.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                writeln!(
                    f,
                    "{:w$}  {:>6} {:>6}  {:>7} {:>4} {:>4} {:>4} {:>4}  {:>6} {:>4} {:>4}  {:>5} {:>4} {:>4}",
                    "team",
                    "win",
                    "tie",
                    "points",
                    "p50",
                    "p95",
                    "min",
                    "max",
                    "tiles",
                    "min",
                    "max",
                    "row",
                    "min",
                    "max"
                )?;
                for t in &b.teams {
                    writeln!(
                        f,
                        "{:w$}  {:>6} {:>6}  {:>7.2} {:>4} {:>4} {:>4} {:>4}  {:>6.2} {:>4} {:>4}  {:>5.2} {:>4} {:>4}",
                        t.name,
                        pct(t.win_rate),
                        t.tie_rate.map_or_else(|| "-".to_string(), pct),
                        t.points.mean,
                        t.points.p50,
                        t.points.p95,
                        t.points.min,
                        t.points.max,
                        t.tiles.mean,
                        t.tiles.min,
                        t.tiles.max,
                        t.row.mean,
                        t.row.min,
                        t.row.max,
                    )?;
                }
                match (b.tied_runs, b.tie_rate) {
                    (Some(n), Some(rate)) => writeln!(
                        f,
                        "tied (no winner, top score shared): {n} runs, {}",
                        pct(rate)
                    )?,
                    _ => writeln!(
                        f,
                        "ties not counted (summed by an older version; wins include ties, given to the team listed first)"
                    )?,
                }
                writeln!(f, "rows unlocked (share of runs, from row 1):")?;
                for t in &b.teams {
                    writeln!(f, "  {:w$}  {}", t.name, reach_runs(&t.row_reach_rate))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut counts = vec![1u64; 11];
        counts[0] = 0;
        assert_eq!(rank(&counts, 10, 50), 5);
        assert_eq!(rank(&counts, 10, 95), 10);
        let s = Stats::of(&counts, 10);
        assert_eq!((s.min, s.max, s.mean), (1, 10, 5.5));
    }

    #[test]
    fn report_reads_the_summary() {
        let mut s = Summary::empty_bingo(2, 3, 12, 30);
        s.add(&[1, 4, 2, 0, 9, 4, 2]).unwrap();
        s.add(&[0, 7, 3, 1, 5, 2, 1]).unwrap();
        s.add(&[0, 6, 3, 1, 6, 2, 1]).unwrap();
        let r = s
            .report()
            .with_team_names(&["Alpha".to_string(), "Beta".to_string()]);
        let Report::Bingo(b) = &r else {
            panic!("bingo report expected")
        };
        assert_eq!(b.teams[0].name, "Alpha");
        assert_eq!(b.runs, 3);
        assert_eq!((b.teams[0].wins, b.teams[1].wins), (1, 1));
        assert_eq!(b.teams[1].ties, Some(1));
        assert_eq!((b.tied_runs, b.tie_rate), (Some(1), Some(1.0 / 3.0)));
        assert_eq!(b.teams[1].points.p50, 6);
        assert_eq!(b.teams[1].points.p95, 9);
        assert_eq!(b.teams[1].row_reach_rate, vec![1.0, 1.0, 1.0 / 3.0]);
        assert_eq!(b.teams[0].points_histogram, vec![(4, 1), (6, 1), (7, 1)]);
        assert_eq!(
            reach_runs(&[1.0, 1.0, 1.0, 0.5, 0.0, 0.0]),
            "1-2:100.0% 3:50.0% 4-5:0.0%"
        );
        let text = r.to_string();
        assert!(text.contains("Alpha") && text.contains("33.3%"), "{text}");
        assert!(
            text.contains("tied (no winner, top score shared): 1 runs, 33.3%"),
            "{text}"
        );
        let mut sum = Summary::empty_sum();
        sum.add(&[3]).unwrap();
        sum.add(&[5]).unwrap();
        assert_eq!(
            sum.report().to_string(),
            "runs 2  sum 8  min 3  max 5  mean 4.000"
        );
    }
}
