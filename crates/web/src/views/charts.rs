//! Charts drawn on the server as inline SVG: no script, no canvas, and each
//! chart says what it shows in its `<title>`, with a `<title>` per bar for
//! the exact numbers. Rate bars are HTML rows around small SVG bars, so
//! their text stays readable on a phone. Colours come from the stylesheet (`.s0` … `.s7`, one
//! per team or batch), so the SVG carries no inline style.

use maud::{Markup, html};

use crate::views::format;

/// Series colours in the stylesheet.
pub const SERIES: usize = 8;
/// Most bars a histogram draws; wider ranges are bucketed.
const MAX_BARS: u32 = 120;

/// The drawing area inside a `W × H` viewBox.
#[derive(Clone, Copy)]
struct Plot {
    w: f64,
    h: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Plot {
    const fn new(w: f64, h: f64) -> Plot {
        Plot {
            w,
            h,
            left: 44.0,
            right: 12.0,
            top: 12.0,
            bottom: 28.0,
        }
    }

    /// Room for wider share labels on the left (charts whose text the
    /// stylesheet enlarges on a phone).
    const fn wide_labels(mut self) -> Plot {
        self.left = 58.0;
        self
    }

    fn inner_w(&self) -> f64 {
        self.w - self.left - self.right
    }

    fn inner_h(&self) -> f64 {
        self.h - self.top - self.bottom
    }

    /// y of a share `v` on a scale up to `max`.
    fn y(&self, v: f64, max: f64) -> f64 {
        self.top + self.inner_h() * (1.0 - v / max.max(f64::MIN_POSITIVE))
    }

    fn base(&self) -> f64 {
        self.top + self.inner_h()
    }

    fn view_box(&self) -> String {
        format!("0 0 {} {}", self.w, self.h)
    }

    /// The natural width: a chart is drawn at its own size and only
    /// shrinks (CSS `max-width: 100%`) where the page is narrower, so its
    /// text keeps one size.
    fn width(&self) -> String {
        n(self.w)
    }

    /// Horizontal grid lines with share labels, 0 to `max`.
    fn share_axis(&self, max: f64) -> Markup {
        let ticks = [0.0, 0.5, 1.0];
        html! {
            @for t in ticks {
                @let y = self.y(max * t, max);
                line.grid x1=(n(self.left)) x2=(n(self.w - self.right)) y1=(n(y)) y2=(n(y)) {}
                text.tick x=(n(self.left - 4.0)) y=(n(y + 4.0)) text-anchor="end" { (tick_percent(max * t, max)) }
            }
        }
    }
}

/// A share axis label: whole percent unless the axis is under 10 %.
fn tick_percent(v: f64, max: f64) -> String {
    if max >= 0.1 {
        format!("{:.0} %", v * 100.0)
    } else {
        format!("{:.1} %", v * 100.0)
    }
}

/// One decimal is plenty for SVG coordinates.
fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// Nice upper bound for a share axis: the next 1, 2 or 5 × 10^k above `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&c| c >= v)
        .unwrap_or(10.0 * mag)
        .min(1.0)
}

/// Counts of a sparse histogram (value, runs) grouped into `width`-wide
/// buckets over `lo..=hi`: (first value of the bucket, runs).
fn buckets(hist: &[(u32, u64)], lo: u32, hi: u32) -> (u32, Vec<(u32, u64)>) {
    let span = hi.saturating_sub(lo) + 1;
    let width = span.div_ceil(MAX_BARS).max(1);
    let mut out: Vec<(u32, u64)> = (0..span.div_ceil(width))
        .map(|i| (lo + i * width, 0))
        .collect();
    for &(v, c) in hist {
        if (lo..=hi).contains(&v) {
            out[((v - lo) / width) as usize].1 += c;
        }
    }
    (width, out)
}

fn bucket_label(start: u32, width: u32) -> String {
    if width == 1 {
        format!("{start} points")
    } else {
        format!("{start}–{} points", start + width - 1)
    }
}

/// A team's points histogram: share of runs per score, with the mean.
pub fn histogram(series: usize, team: &str, hist: &[(u32, u64)], runs: u64, mean: f64) -> Markup {
    let plot = Plot::new(520.0, 200.0).wide_labels();
    let (lo, hi) = match (hist.first(), hist.last()) {
        (Some(a), Some(b)) => (a.0, b.0),
        _ => (0, 0),
    };
    let (width, bars) = buckets(hist, lo, hi);
    let total = runs.max(1) as f64;
    let top = nice_max(bars.iter().map(|b| b.1).max().unwrap_or(0) as f64 / total);
    let step = plot.inner_w() / bars.len().max(1) as f64;
    let x_of = |v: f64| plot.left + (v - f64::from(lo)) / f64::from(width) * step;
    let label = format!("Points of {team} over {} runs", format::count(runs as i64));
    html! {
        svg.chart.histogram width=(plot.width()) viewBox=(plot.view_box()) role="img" aria-label=(label) {
            title { (label) }
            (plot.share_axis(top))
            @for (start, count) in &bars {
                @let share = *count as f64 / total;
                @let x = x_of(f64::from(*start));
                @let y = plot.y(share, top);
                rect class=(format!("bar s{}", series % SERIES)) x=(n(x + 0.5)) y=(n(y))
                    width=(n((step - 1.0).max(0.5))) height=(n(plot.base() - y)) {
                    title { (bucket_label(*start, width)) ": " (format::count(*count as i64)) " runs (" (format::percent(share)) ")" }
                }
            }
            @if runs > 0 {
                @let mx = x_of(mean) + step / 2.0;
                line.mean x1=(n(mx)) x2=(n(mx)) y1=(n(plot.top)) y2=(n(plot.base())) {}
                text.tick x=(n(mx + 4.0)) y=(n(plot.top + 10.0)) { "mean " (format!("{mean:.1}")) }
            }
            line.axis x1=(n(plot.left)) x2=(n(plot.w - plot.right)) y1=(n(plot.base())) y2=(n(plot.base())) {}
            @for v in x_ticks(lo, hi) {
                text.tick x=(n(x_of(f64::from(v)) + step / 2.0)) y=(n(plot.h - 8.0)) text-anchor="middle" { (v) }
            }
        }
    }
}

/// Up to five evenly spaced values from `lo` to `hi`.
fn x_ticks(lo: u32, hi: u32) -> Vec<u32> {
    let span = hi - lo;
    let mut ticks: Vec<u32> = (0..=4).map(|i| lo + span * i / 4).collect();
    ticks.dedup();
    ticks
}

/// One bar group per row: the share of runs in which each team unlocked it.
pub fn row_reach(teams: &[(&str, &[f64])]) -> Markup {
    let plot = Plot::new(1000.0, 220.0).wide_labels();
    let rows = teams.iter().map(|t| t.1.len()).max().unwrap_or(0);
    let group = plot.inner_w() / rows.max(1) as f64;
    let bar = (group - 4.0) / teams.len().max(1) as f64;
    html! {
        svg.chart.rowreach width=(plot.width()) viewBox=(plot.view_box()) role="img" aria-label="Share of runs in which each row unlocked, per team" {
            title { "Share of runs in which each row unlocked, per team" }
            (plot.share_axis(1.0))
            @for r in 0..rows {
                @for (k, (name, rates)) in teams.iter().enumerate() {
                    @let rate = rates.get(r).copied().unwrap_or(0.0);
                    @let y = plot.y(rate, 1.0);
                    rect class=(format!("bar s{}", k % SERIES)) x=(n(plot.left + group * r as f64 + 2.0 + bar * k as f64))
                        y=(n(y)) width=(n((bar - 0.5).max(0.5))) height=(n(plot.base() - y)) {
                        title { (name) ", row " (r + 1) ": " (format::percent(rate)) }
                    }
                }
                text.tick x=(n(plot.left + group * (r as f64 + 0.5))) y=(n(plot.h - 8.0)) text-anchor="middle" { (r + 1) }
            }
            line.axis x1=(n(plot.left)) x2=(n(plot.w - plot.right)) y1=(n(plot.base())) y2=(n(plot.base())) {}
        }
    }
}

/// A share with its 95 % confidence interval, as one bar of a chart.
#[derive(Clone, Debug)]
pub struct RateBar {
    pub label: String,
    /// The team's or batch's colour; `None` for tied runs (grey).
    pub series: Option<usize>,
    pub rate: f64,
    pub low: f64,
    pub high: f64,
}

/// `bar s3`, or `bar tie` for the tied runs' grey.
pub fn series_class(base: &str, series: Option<usize>) -> String {
    match series {
        Some(k) => format!("{base} s{}", k % SERIES),
        None => format!("{base} tie"),
    }
}

/// Horizontal bars with confidence whiskers (win and tie rates). Names and
/// numbers are HTML text, so they keep the page's size on any screen; each
/// bar is a small SVG stretched to its column (the stylesheet sizes it,
/// since the console allows no inline style).
pub fn rate_bars(bars: &[RateBar]) -> Markup {
    // In the bar's own 0..100 × 0..10 box.
    let x = |v: f64| n(100.0 * v.clamp(0.0, 1.0));
    html! {
        div.rates role="list" aria-label="Rates with 95 % confidence intervals" {
            @for b in bars {
                @let detail = format!("{}: {} (95 % CI {} – {})", b.label, format::percent(b.rate), format::percent(b.low), format::percent(b.high));
                div.rate role="listitem" title=(detail) {
                    span.label { (b.label) }
                    svg.bar viewBox="0 0 100 10" preserveAspectRatio="none" aria-hidden="true" {
                        rect.track x="0" y="0" width="100" height="10" {}
                        @for t in [25.0, 50.0, 75.0] {
                            line.gridline x1=(n(t)) x2=(n(t)) y1="0" y2="10" vector-effect="non-scaling-stroke" {}
                        }
                        rect class=(series_class("bar", b.series)) x="0" y="1" width=(x(b.rate)) height="8" {}
                        line.whisker x1=(x(b.low)) x2=(x(b.high)) y1="5" y2="5" vector-effect="non-scaling-stroke" {}
                        line.whisker x1=(x(b.low)) x2=(x(b.low)) y1="2" y2="8" vector-effect="non-scaling-stroke" {}
                        line.whisker x1=(x(b.high)) x2=(x(b.high)) y1="2" y2="8" vector-effect="non-scaling-stroke" {}
                    }
                    span.value { (format::percent(b.rate)) span.sr { " (95 % CI " (format::percent(b.low)) " – " (format::percent(b.high)) ")" } }
                }
            }
        }
    }
}

/// One batch's histogram of one team, for [`overlay`].
#[derive(Clone, Debug)]
pub struct Series<'a> {
    pub label: String,
    pub series: usize,
    pub hist: &'a [(u32, u64)],
    pub runs: u64,
}

/// Several histograms of the same quantity as lines on one scale.
pub fn overlay(title: &str, lines: &[Series<'_>]) -> Markup {
    // Narrow enough to shrink onto a phone whole: the peak is never
    // scrolled out of sight.
    let plot = Plot::new(640.0, 220.0).wide_labels();
    let lo = lines
        .iter()
        .filter_map(|s| s.hist.first())
        .map(|p| p.0)
        .min()
        .unwrap_or(0);
    let hi = lines
        .iter()
        .filter_map(|s| s.hist.last())
        .map(|p| p.0)
        .max()
        .unwrap_or(0);
    let shaped: Vec<(u32, Vec<(u32, f64)>)> = lines
        .iter()
        .map(|s| {
            let (width, b) = buckets(s.hist, lo, hi);
            let total = s.runs.max(1) as f64;
            (
                width,
                b.into_iter().map(|(v, c)| (v, c as f64 / total)).collect(),
            )
        })
        .collect();
    let top = nice_max(
        shaped
            .iter()
            .flat_map(|(_, b)| b.iter().map(|p| p.1))
            .fold(0.0, f64::max),
    );
    let span = f64::from(hi - lo).max(1.0);
    let x_of = |v: u32, width: u32| {
        plot.left
            + plot.inner_w() * (f64::from(v - lo) + f64::from(width) / 2.0)
                / (span + f64::from(width))
    };
    html! {
        svg.chart.overlay width=(plot.width()) viewBox=(plot.view_box()) role="img" aria-label=(title) {
            title { (title) }
            (plot.share_axis(top))
            @for (s, (width, points)) in lines.iter().zip(&shaped) {
                @let path: Vec<String> = points.iter().map(|(v, share)| format!("{},{}", n(x_of(*v, *width)), n(plot.y(*share, top)))).collect();
                polyline class=(format!("line s{}", s.series % SERIES)) points=(path.join(" ")) {
                    title { (s.label) }
                }
            }
            line.axis x1=(n(plot.left)) x2=(n(plot.w - plot.right)) y1=(n(plot.base())) y2=(n(plot.base())) {}
            @for v in x_ticks(lo, hi) {
                text.tick x=(n(x_of(v, 1))) y=(n(plot.h - 8.0)) text-anchor="middle" { (v) }
            }
        }
    }
}

/// A colour key: one swatch per series.
pub fn legend(items: &[(usize, String)]) -> Markup {
    html! {
        ul.legend {
            @for (series, label) in items {
                li { span class=(series_class("swatch", Some(*series))) {} (label) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_ranges_are_bucketed() {
        let (w, b) = buckets(&[(0, 1), (5, 2), (6, 3)], 0, 6);
        assert_eq!((w, b.len()), (1, 7));
        assert_eq!(b[5], (5, 2));
        let hist: Vec<(u32, u64)> = (0..=300).map(|v| (v, 1)).collect();
        let (w, b) = buckets(&hist, 0, 300);
        assert_eq!(w, 3);
        assert!(b.len() as u32 <= MAX_BARS);
        assert_eq!(b.iter().map(|x| x.1).sum::<u64>(), 301);
    }

    #[test]
    fn axes_round_up() {
        assert_eq!(nice_max(0.13), 0.2);
        assert_eq!(nice_max(0.04), 0.05);
        assert_eq!(nice_max(0.9), 1.0);
        assert_eq!(nice_max(0.0), 1.0);
    }

    #[test]
    fn a_histogram_draws_one_bar_per_score_and_escapes_names() {
        let svg = histogram(0, "<b>team</b>", &[(3, 2), (4, 6), (7, 2)], 10, 4.6).into_string();
        assert_eq!(svg.matches("<rect class=\"bar s0\"").count(), 5);
        assert!(svg.contains("&lt;b&gt;team"), "{svg}");
        assert!(svg.contains("4 points: 6 runs (60.0 %)"), "{svg}");
    }
}
