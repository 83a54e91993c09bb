//! Batches side by side — e.g. one event with two strategies, or two
//! seeds: win and tie rates with 95 % confidence intervals and the teams'
//! point histograms overlaid, one line per batch. With one batch chosen
//! (the batch page's link), a list to pick the others from.

use axum::extract::{RawQuery, State};
use broker::Broker;
use maud::{Markup, html};
use store::{Catalog, Store, Uuid};
use workload::Report;

use crate::AppState;
use crate::data::{
    BatchQuery, Comparison, EventRef, MAX_COMPARED, batch_detail, batch_list, comparison,
};
use crate::error::{Error, PageError};
use crate::pages::batch::TIED;
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
    let body = match ids.as_slice() {
        [] => html! {
            h1 { "Compare" }
            p { "Pick two to " (MAX_COMPARED) " batches on the " a href="/batches" { "batch list" }
                " (the boxes on the left) and press " em { "Compare selected" } "." }
        },
        [one] => picker(&app.store, *one).await?,
        _ => render(&comparison(&app.store, &ids).await?),
    };
    Ok(page(Some(&ctx), "Compare", Nav::Compare, body))
}

/// One batch chosen: pick the others from its event's batches (or the
/// newest ones), with the chosen one already in.
async fn picker<S: Store + Catalog>(store: &S, id: Uuid) -> Result<Markup, Error> {
    let chosen = batch_detail(store, id).await?;
    let same_event = match &chosen.event {
        EventRef::Saved { id, .. } => Some(*id),
        _ => None,
    };
    let query = BatchQuery {
        event: same_event,
        ..BatchQuery::default()
    };
    let mut list = batch_list(store, &query).await?;
    list.batches.retain(|b| b.status.batch_id != id);
    Ok(html! {
        h1 { "Compare " (chosen.status.name) " with…" }
        @if list.batches.is_empty() {
            p { "There is no other batch "
                @if same_event.is_some() { "of this event " }
                "to compare it with yet. "
                a href=(format!("/batches/new{}", same_event.map(|e| format!("?event={e}")).unwrap_or_default())) { "Start one" }
                ", e.g. with another seed." }
        } @else {
            p.muted { "Tick up to " (MAX_COMPARED - 1) " more "
                @if same_event.is_some() { "of the batches that ran the same event" } @else { "of the newest batches" }
                ", then press Compare." }
            form method="get" action="/compare" {
                input type="hidden" name="b" value=(id);
                div.scroll { table.batches {
                    thead { tr { th {} th { "Batch" } th { "Event" } th.num { "Runs" } th { "Verdict" } } }
                    tbody { @for b in &list.batches {
                        tr {
                            td { input type="checkbox" name="b" value=(b.status.batch_id) aria-label=(format!("compare {}", b.status.name)); }
                            td { a href=(format!("/batches/{}", b.status.batch_id)) { (b.status.name) } }
                            td { (b.event_name.as_deref().unwrap_or(&b.workload)) }
                            td.num { (format::count(b.status.runs)) }
                            td { (widgets::state_badge(b.status.state)) }
                        }
                    } }
                } }
                button type="submit" { "Compare" }
            }
        }
        p { a href=(format!("/batches/{id}")) { "Back to " (chosen.status.name) } }
    })
}

fn render(c: &Comparison) -> Markup {
    let legend: Vec<(usize, String)> = c
        .batches
        .iter()
        .enumerate()
        .map(|(i, b)| (i, format!("{} (seed {})", b.status.name, b.seed.0)))
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
    let left_out: Vec<(&str, &str)> = c
        .batches
        .iter()
        .zip(&reports)
        .filter(|(_, r)| r.is_none())
        .map(|(b, _)| {
            let why = match b.result.as_ref().map(|r| &r.report) {
                Some(Report::Sum(_)) => "a sum batch: no teams, only totals",
                _ => "no result yet",
            };
            (b.status.name.as_str(), why)
        })
        .collect();
    let ties = tie_bars(c, &reports);
    html! {
        h1 { "Compare" }
        div.scroll { table {
            thead { tr { th { "Batch" } th { "Event" } th.num { "Runs" } th.num { "Seed" } th.num { "Tied" } th { "Verdict" } } }
            tbody { @for (i, b) in c.batches.iter().enumerate() {
                tr {
                    td { span class=(charts::series_class("swatch", Some(i))) {}
                        a href=(format!("/batches/{}", b.status.batch_id)) { (b.status.name) } }
                    td { (widgets::event_link(&b.event)) }
                    td.num { (format::count(b.status.runs)) }
                    td.num { (b.seed.0) }
                    td.num { (reports[i].and_then(|r| r.tie_rate).map(format::percent).unwrap_or_else(|| "–".into())) }
                    td { (widgets::state_badge(b.status.state)) }
                }
            } }
        } }
        @if !left_out.is_empty() {
            p.note { "Not in the charts: "
                @for (k, (name, why)) in left_out.iter().enumerate() {
                    @if k > 0 { "; " }
                    strong { (name) } " (" (why) ")"
                }
                "." }
        }
        @if teams == 0 {
            p.muted { "None of these batches has a bingo result yet." }
        }
        @for k in 0..teams {
            @let name = reports.iter().flatten().find_map(|r| r.teams.get(k)).map(|t| t.name.clone()).unwrap_or_default();
            section {
                h2 { (name) }
                p.muted.small { "Win rate per batch (runs it won outright), with 95 % confidence intervals." }
                div.chartbox { (charts::rate_bars(&win_bars(c, &reports, k))) }
                @let lines: Vec<Series<'_>> = reports.iter().enumerate().filter_map(|(i, r)| {
                    let r = (*r)?;
                    let t = r.teams.get(k)?;
                    Some(Series { label: legend[i].1.clone(), series: i, hist: &t.points_histogram, runs: r.runs })
                }).collect();
                div.chartbox { (charts::overlay(&format!("Points of {name}, share of runs, per batch"), &lines)) }
                (charts::legend(&legend))
            }
        }
        @if !ties.is_empty() {
            section {
                h2 { (TIED) }
                p.muted.small { "Share of runs per batch in which two or more teams shared the top score, with 95 % confidence intervals." }
                div.chartbox { (charts::rate_bars(&ties)) }
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
                series: Some(i),
                rate: t.win_rate,
                low,
                high,
            })
        })
        .collect()
}

/// The tied runs' share per batch; empty when no batch had a tied run.
fn tie_bars(c: &Comparison, reports: &[Option<&workload::BingoReport>]) -> Vec<RateBar> {
    let bars: Vec<RateBar> = c
        .batches
        .iter()
        .zip(reports)
        .enumerate()
        .filter_map(|(i, (b, r))| {
            let rate = r.as_ref()?.tie_rate?;
            let (low, high) = b.tie_rate_ci95?;
            Some(RateBar {
                label: b.status.name.clone(),
                series: Some(i),
                rate,
                low,
                high,
            })
        })
        .collect();
    if bars.iter().any(|b| b.rate > 0.0) {
        bars
    } else {
        Vec::new()
    }
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
