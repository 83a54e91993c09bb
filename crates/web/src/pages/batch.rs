//! One batch: its verdict, progress, results as charts, and chunks. The
//! page refreshes itself until the verdict is in; closing it changes
//! nothing, the workers go on. Also the event the batch ran, from its own
//! snapshot (board and JSON download), whether or not it is in the library.
//! While it waits or runs, its place in the queue: tenant, priority, share
//! of the executors, time left.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use broker::Broker;
use maud::{Markup, html};
use pipeline::estimate::about;
use store::{Catalog, QueueEntry, Store, Uuid};
use workload::{BingoReport, Report, SumReport};

use crate::AppState;
use crate::data::{BatchDetail, EventRef, batch_detail};
use crate::error::{Error, PageError};
use crate::id::Id;
use crate::pages::new_batch::Started;
use crate::views::charts::{self, RateBar};
use crate::views::layout::{Ctx, Nav, page};
use crate::views::{board, format, widgets};

/// `GET /batches/{id}`.
pub async fn show<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Id(id): Id,
    started: Result<Query<Started>, QueryRejection>,
) -> Result<Markup, PageError> {
    let d = batch_detail(&app.store, id).await?;
    let queued = in_queue(&app.store, &d).await?;
    let title = d.status.name.clone();
    let note = started.ok().and_then(|Query(s)| s.note());
    let body = html! { @if let Some(n) = note { (n) } (live(&d, queued.as_ref())) };
    Ok(page(Some(&ctx), &title, Nav::Batches, body))
}

/// The batch's entry in the queue while it waits or runs.
async fn in_queue<S: Store>(store: &S, d: &BatchDetail) -> Result<Option<QueueEntry>, Error> {
    if d.status.state.is_final() || d.status.cancelled() {
        return Ok(None);
    }
    let view = store.queue().await?;
    Ok(view.batches.into_iter().find(|b| b.id == d.status.batch_id))
}

/// `GET /batches/{id}/live`: everything below the navigation, for the refresh.
pub async fn live_part<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
) -> Result<Markup, PageError> {
    let d = batch_detail(&app.store, id).await?;
    let queued = in_queue(&app.store, &d).await?;
    Ok(live(&d, queued.as_ref()))
}

fn live(d: &BatchDetail, queued: Option<&QueueEntry>) -> Markup {
    let s = &d.status;
    let refresh = (!s.state.is_final()).then(|| format!("/batches/{}/live", s.batch_id));
    html! {
        div.live #batch data-live=[refresh] data-state=(s.state.as_str()) {
            div.heading {
                h1 { (s.name) }
                (widgets::state_badge(s.state))
            }
            @if let Some(line) = &d.verdict_line {
                p.verdict { code { (line) } }
            } @else if let Some(reason) = &s.reason {
                p.verdict { (reason) }
            }
            (widgets::progress(s))
            (facts(d, queued))
            @match d.result.as_ref().map(|r| &r.report) {
                Some(Report::Bingo(b)) => (bingo(b)),
                Some(Report::Sum(sum)) => (sum_totals(sum)),
                None => p.muted { "The results appear here once the aggregator has every chunk." },
            }
            (chunks(d))
        }
    }
}

fn facts(d: &BatchDetail, queued: Option<&QueueEntry>) -> Markup {
    let s = &d.status;
    html! {
        dl.facts {
            dt { "Batch" } dd { code { (s.batch_id) } }
            @if let Some(q) = queued {
                dt { "Queue" } dd {
                    a href="/queue" { "#" (q.position) " in the queue" } " · tenant " (q.tenant) " · " (q.priority)
                    " · " (format::percent(q.share_now)) " of the running chunks"
                    @if let Some(left) = q.left_s { " · " (about(left)) " left" }
                }
            }
            dt { "Event" } dd { (widgets::event_link(&d.event))
                @if !matches!(d.event, EventRef::None) {
                    " · " a href=(format!("/batches/{}/event", s.batch_id)) { "as it ran" } } }
            dt { "Runs" } dd { (format::count(s.runs)) " in " (format::things(s.chunks.max(0) as usize, "chunk", "chunks")) " of " (format::count(i64::from(d.chunk_size))) }
            dt { "Seed" } dd { (d.seed.0) }
            dt { "Started" } dd { (format::timestamp(s.created_at)) }
            dt { "Elapsed" } dd { (format::duration(s.elapsed_s)) }
            dt { "Runs/s" } dd { (format::rate(s.runs_per_s)) }
            dt { "Attempts" } dd { (widgets::attempts(s)) }
            @if let Some(r) = &d.result {
                dt { "Duplicates dropped" } dd { (format::count(r.duplicates_dropped)) }
            }
        }
        p.actions { a href=(format!("/compare?b={}", s.batch_id)) { "Compare with other batches…" }
            " · " a href=(format!("/api/batches/{}", s.batch_id)) { "JSON" }
            @if !s.state.is_final() && !s.cancelled() {
                " · " a.button.danger href=(format!("/batches/{}/cancel", s.batch_id)) { "Cancel…" }
            } }
    }
}

/// The win-rate bars of a report's teams, and a grey bar for its tied
/// runs when there were any: with 95 % intervals.
fn outcome_bars(b: &BingoReport) -> Vec<RateBar> {
    let mut bars: Vec<RateBar> = b
        .teams
        .iter()
        .enumerate()
        .map(|(k, t)| {
            let (low, high) = crate::stats::wilson95(t.wins, b.runs);
            RateBar {
                label: t.name.clone(),
                series: Some(k),
                rate: t.win_rate,
                low,
                high,
            }
        })
        .collect();
    if let (Some(tied), Some(rate)) = (b.tied_runs, b.tie_rate)
        && tied > 0
    {
        let (low, high) = crate::stats::wilson95(tied, b.runs);
        bars.push(RateBar {
            label: TIED.into(),
            series: None,
            rate,
            low,
            high,
        });
    }
    bars
}

/// The tied runs' label in charts and tables.
pub const TIED: &str = "Tied (no winner)";

/// What the tie counts of a report say, in a sentence.
fn ties_note(b: &BingoReport) -> Markup {
    html! {
        @match (b.tied_runs, b.tie_rate) {
            (Some(0), _) => p.muted.small { "No run was tied." },
            (Some(tied), Some(rate)) => p.note {
                strong { (format::count(tied as i64)) " of " (format::count(b.runs as i64)) " runs (" (format::percent(rate)) ") were tied" }
                ": two or more teams shared the top score, so no team won them. "
                "A team's win rate counts only the runs it won alone; its tie rate, the runs it shared."
            },
            _ => p.note { "Ties were not counted for this batch (it was summed by an older version): "
                "its win rates include the tied runs, each given to the team listed first." },
        }
    }
}

fn bingo(b: &BingoReport) -> Markup {
    let bars = outcome_bars(b);
    let reach: Vec<(&str, &[f64])> = b
        .teams
        .iter()
        .map(|t| (t.name.as_str(), t.row_reach_rate.as_slice()))
        .collect();
    let legend: Vec<(usize, String)> = b
        .teams
        .iter()
        .enumerate()
        .map(|(k, t)| (k, t.name.clone()))
        .collect();
    let rows = b
        .teams
        .iter()
        .map(|t| t.row_reach_rate.len())
        .max()
        .unwrap_or(0);
    let all_reached = b.runs > 0
        && b.teams
            .iter()
            .all(|t| t.row_reach_rate.iter().all(|&r| r >= 1.0));
    html! {
        section {
            h2 { "Who wins" }
            div.chartbox { (charts::rate_bars(&bars)) }
            p.muted.small { "Bars: share of the " (format::count(b.runs as i64)) " runs each team won outright"
                @if bars.len() > b.teams.len() { ", and share tied" }
                "; whiskers: 95 % confidence interval." }
            (ties_note(b))
        }
        section {
            h2 { "Points and tiles" }
            div.scroll { table.results {
                thead {
                    tr { th { "Team" } th.num { "Win rate" } th.num { "Tie rate" } th.num { "Mean" } th.num { "p50" } th.num { "p95" } th.num { "Min" } th.num { "Max" }
                         th.num { "Tiles (mean)" } th.num { "Tiles p50 / p95" } th.num { "Tiles min / max" } }
                }
                tbody { @for (k, t) in b.teams.iter().enumerate() {
                    tr {
                        td { span class=(charts::series_class("swatch", Some(k))) {} (t.name) }
                        td.num { (format::percent(t.win_rate)) }
                        td.num { (t.tie_rate.map(format::percent).unwrap_or_else(|| "–".into())) }
                        td.num { (format!("{:.1}", t.points.mean)) }
                        td.num { (t.points.p50) } td.num { (t.points.p95) }
                        td.num { (t.points.min) } td.num { (t.points.max) }
                        td.num { (format!("{:.1}", t.tiles.mean)) }
                        td.num { (t.tiles.p50) " / " (t.tiles.p95) }
                        td.num { (t.tiles.min) " / " (t.tiles.max) }
                    }
                } }
            } }
        }
        section {
            h2 { "Points per team" }
            div.charts {
                @for (k, t) in b.teams.iter().enumerate() {
                    figure {
                        figcaption { span class=(charts::series_class("swatch", Some(k))) {} (t.name) }
                        div.chartbox { (charts::histogram(k, &t.name, &t.points_histogram, b.runs, t.points.mean)) }
                    }
                }
            }
        }
        section {
            h2 { "How far each team got" }
            @if all_reached {
                p.rowreach-all { "Every team unlocked all " (rows) " rows in every run." }
            } @else {
                p.muted.small { "Share of runs in which the team unlocked each row." }
                div.scroll { (charts::row_reach(&reach)) }
                (charts::legend(&legend))
            }
        }
    }
}

fn sum_totals(s: &SumReport) -> Markup {
    let opt = |v: Option<i32>| {
        v.map(|v| format::count(i64::from(v)))
            .unwrap_or_else(|| "–".into())
    };
    html! {
        section {
            h2 { "Totals" }
            dl.facts {
                dt { "Values" } dd { (format::count(s.count as i64)) }
                dt { "Sum" } dd { (format::count(s.sum)) }
                dt { "Min" } dd { (opt(s.min)) }
                dt { "Max" } dd { (opt(s.max)) }
                dt { "Mean" } dd { (s.mean.map(|m| format!("{m:.3}")).unwrap_or_else(|| "–".into())) }
            }
        }
    }
}

fn chunks(d: &BatchDetail) -> Markup {
    let id = d.status.batch_id;
    html! {
        section {
            h2 { "Chunks" }
            div.scroll { table.chunks {
                thead { tr { th.num { "Chunk" } th { "Status" } th.num { "Attempts" } th { "Worker" } th { "Last error" } th { "Completed" } } }
                tbody { @for c in &d.chunks {
                    tr class=(format!("chunk {}", c.status)) {
                        td.num { (c.chunk) }
                        td { (c.status)
                            @if let Some(left) = c.lease_remaining_s { span.muted.small { " (lease " (format!("{left:.0}")) " s)" } } }
                        td.num { (c.attempts) }
                        td { @if let Some(w) = &c.worker { code { (w) } } }
                        td.error { @if let Some(e) = &c.last_error { (e) } }
                        td { @if let Some(t) = c.completed_at { (format::timestamp(t)) } }
                    }
                } }
            } }
            p.muted.small {
                "Showing " (d.chunks.len()) " of " (format::count(d.chunks_total)) " chunks. All of them: "
                a href=(format!("/api/batches/{id}/chunks?limit=1000")) { "JSON" }
                "; only retried or failed ones: "
                a href=(format!("/api/batches/{id}/chunks?problems=true")) { "JSON" } "."
            }
        }
    }
}

/// `GET /batches/{id}/event`: the event from the batch's own snapshot.
pub async fn event<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Id(id): Id,
) -> Result<Markup, PageError> {
    let (batch, event) = snapshot(&app.store, id).await?;
    let body = html! {
        p.muted { "The event batch " a href=(format!("/batches/{id}")) { (batch) } " ran, from its own snapshot." }
        (board::event(&event, &format!("/batches/{id}/event.json")))
    };
    Ok(page(Some(&ctx), &event.name, Nav::Batches, body))
}

/// `GET /batches/{id}/event.json`.
pub async fn event_json<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
) -> Result<Response, PageError> {
    let (_, event) = snapshot(&app.store, id).await?;
    Ok(download(&event)?)
}

async fn snapshot<S: Store>(store: &S, id: Uuid) -> Result<(String, workload::Event), Error> {
    let batch = store
        .batch(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no batch {id}")))?;
    let event = crate::events::event_of(&batch.workload)
        .ok_or_else(|| Error::NotFound(format!("batch {id} runs no event (sum workload)")))?;
    Ok((batch.name, event))
}

/// An event as a JSON file to save, named after it.
pub fn download(event: &workload::Event) -> Result<Response, Error> {
    let json = serde_json::to_string_pretty(event)
        .map_err(|e| Error::Internal(format!("event to JSON: {e}")))?;
    let file: String = event
        .name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let file = file.trim_matches('-');
    let file = if file.is_empty() { "event" } else { file };
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{file}.json\""),
            ),
        ],
        json,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use workload::Summary;

    use super::*;

    /// A 2-team, 3-row report of these outcome rows.
    fn report(rows: &[[i32; 7]]) -> BingoReport {
        let spec = workload::WorkloadSpec::bingo_default();
        let mut s = workload::Workload::new(&spec).unwrap().empty_summary();
        // The built-in event's board: 20 rows, 80 tiles, 200 points.
        for r in rows {
            s.add(r).unwrap();
        }
        match s.report() {
            workload::Report::Bingo(b) => b,
            other => panic!("a bingo report, not {other:?}"),
        }
    }

    #[test]
    fn rows_always_reached_are_said_not_drawn() {
        let all = bingo(&report(&[[0, 200, 80, 19, 150, 70, 19]])).into_string();
        assert!(
            all.contains("Every team unlocked all 20 rows in every run."),
            "{all}"
        );
        assert!(!all.contains("svg class=\"chart rowreach\""), "{all}");
        let some = bingo(&report(&[[0, 200, 80, 19, 150, 70, 12]])).into_string();
        assert!(some.contains("rowreach"), "{some}");
    }

    #[test]
    fn ties_get_a_bar_a_column_and_a_sentence() {
        let tied = bingo(&report(&[
            [0, 120, 40, 10, 120, 40, 10],
            [1, 100, 30, 9, 120, 40, 10],
        ]))
        .into_string();
        assert!(tied.contains("Tied (no winner)"), "{tied}");
        assert!(tied.contains("1 of 2 runs (50.0 %) were tied"), "{tied}");
        assert!(tied.contains("Tie rate"), "{tied}");
        // An aggregate from before tie counts: the rates say so.
        let older: Summary = {
            let mut s = workload::Workload::new(&workload::WorkloadSpec::bingo_default())
                .unwrap()
                .empty_summary();
            s.add(&[0, 120, 40, 10, 120, 40, 10]).unwrap();
            s.without_tie_counts()
        };
        let workload::Report::Bingo(b) = older.report() else {
            panic!("bingo")
        };
        let page = bingo(&b).into_string();
        assert!(
            page.contains("Ties were not counted for this batch"),
            "{page}"
        );
        assert!(!page.contains("Tied (no winner)"), "{page}");
    }
}
