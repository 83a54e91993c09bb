//! Batches side by side — e.g. one event with two strategies, or two
//! seeds: win rates with 95 % confidence intervals and the teams' point
//! histograms overlaid, one line per batch.

use axum::extract::{RawQuery, State};
use broker::Broker;
use maud::{Markup, html};
use store::{Catalog, Store, Uuid};
use workload::Report;

use crate::AppState;
use crate::data::{Comparison, MAX_COMPARED, comparison};
use crate::error::{Error, PageError};
use crate::views::charts::{self, RateBar, Series};
use crate::views::layout::{Ctx, Nav, page};
use crate::views::{format, widgets};

/// The batch ids of `?b=…&b=…` (repeated keys, as a checkbox form sends).
pub fn ids(query: Option<&str>) -> Result<Vec<Uuid>, Error> {
    let mut ids = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        if key == "b" {
            let id = value
                .parse()
                .map_err(|_| Error::BadRequest(format!("b={value:?} is not a batch id")))?;
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}

/// `GET /compare?b=…&b=…`.
pub async fn show<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    RawQuery(query): RawQuery,
) -> Result<Markup, PageError> {
    let ids = ids(query.as_deref())?;
    if ids.len() < 2 {
        let body = html! {
            h1 { "Compare" }
            p { "Pick two to " (MAX_COMPARED) " batches on the " a href="/batches" { "batch list" }
                " (the boxes on the left) and press " em { "Compare selected" } "." }
            @if let [one] = ids.as_slice() {
                p.muted { "Only one batch chosen: " a href=(format!("/batches/{one}")) { (one) } }
            }
        };
        return Ok(page(Some(&ctx), "Compare", Nav::Compare, body));
    }
    let c = comparison(&app.store, &ids).await?;
    Ok(page(Some(&ctx), "Compare", Nav::Compare, render(&c)))
}

fn render(c: &Comparison) -> Markup {
    let legend: Vec<(usize, String)> = c
        .batches
        .iter()
        .enumerate()
        .map(|(i, b)| (i, format!("{} (seed {})", b.status.name, b.seed)))
        .collect();
    // Teams are compared by position: the same event's teams line up.
    let reports: Vec<Option<&workload::BingoReport>> = c
        .batches
        .iter()
        .map(|b| match b.result.as_ref().map(|r| &r.report) {
            Some(Report::Bingo(r)) => Some(r),
            _ => None,
        })
        .collect();
    let teams = reports
        .iter()
        .flatten()
        .map(|r| r.teams.len())
        .max()
        .unwrap_or(0);
    html! {
        h1 { "Compare" }
        div.scroll { table {
            thead { tr { th { "Batch" } th { "Event" } th.num { "Runs" } th.num { "Seed" } th { "Verdict" } } }
            tbody { @for (i, b) in c.batches.iter().enumerate() {
                tr {
                    td { span class=(format!("swatch s{}", i % charts::SERIES)) {}
                        a href=(format!("/batches/{}", b.status.batch_id)) { (b.status.name) } }
                    td { (widgets::event_link(&b.event)) }
                    td.num { (format::count(b.status.runs)) }
                    td.num { (b.seed) }
                    td { (widgets::state_badge(b.status.state)) }
                }
            } }
        } }
        @if teams == 0 {
            p.muted { "None of these batches has a bingo result yet." }
        }
        @for k in 0..teams {
            @let name = reports.iter().flatten().find_map(|r| r.teams.get(k)).map(|t| t.name.clone()).unwrap_or_default();
            section {
                h2 { (name) }
                div.scroll { (charts::rate_bars(&win_bars(c, &reports, k))) }
                @let lines: Vec<Series<'_>> = reports.iter().enumerate().filter_map(|(i, r)| {
                    let r = (*r)?;
                    let t = r.teams.get(k)?;
                    Some(Series { label: legend[i].1.clone(), series: i, hist: &t.points_histogram, runs: r.runs })
                }).collect();
                div.scroll { (charts::overlay(&format!("Points of {name}, share of runs, per batch"), &lines)) }
                (charts::legend(&legend))
            }
        }
    }
}

fn win_bars(
    c: &Comparison,
    reports: &[Option<&workload::BingoReport>],
    team: usize,
) -> Vec<RateBar> {
    c.batches
        .iter()
        .zip(reports)
        .enumerate()
        .filter_map(|(i, (b, r))| {
            let t = r.as_ref()?.teams.get(team)?;
            let (low, high) = b.win_rate_ci95.get(team).copied()?;
            Some(RateBar {
                label: b.status.name.clone(),
                series: i,
                rate: t.win_rate,
                low,
                high,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_from_repeated_keys() {
        let a = Uuid::new_v4();
        let b = Uuid::new_v4();
        let q = format!("b={a}&x=1&b={b}&b={a}");
        assert_eq!(ids(Some(&q)).unwrap(), vec![a, b]);
        assert!(ids(None).unwrap().is_empty());
        assert!(matches!(
            ids(Some("b=%3Cscript%3E")),
            Err(Error::BadRequest(_))
        ));
    }
}
