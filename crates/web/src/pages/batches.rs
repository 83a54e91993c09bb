//! The batch list: newest first, filtered by name and verdict, paged; the
//! table refreshes itself while a batch on it is unfinished.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use broker::Broker;
use maud::{Markup, html};
use store::{Catalog, Store};

use crate::AppState;
use crate::data::{BatchList, BatchQuery, batch_list};
use crate::error::{Error, PageError};
use crate::pages::new_batch::Started;
use crate::views::layout::{Ctx, Nav, page};
use crate::views::{format, widgets};

pub fn query(q: Result<Query<BatchQuery>, QueryRejection>) -> Result<BatchQuery, Error> {
    q.map(|Query(q)| q)
        .map_err(|e| Error::BadRequest(e.body_text()))
}

/// `GET /batches`.
pub async fn list<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    q: Result<Query<BatchQuery>, QueryRejection>,
    started: Result<Query<Started>, QueryRejection>,
) -> Result<Markup, PageError> {
    let q = query(q)?;
    let note = started.ok().and_then(|Query(s)| s.note());
    let list = batch_list(&app.store, &q).await?;
    let verdict = q
        .verdict
        .clone()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "any".into());
    let body = html! {
        @if let Some(n) = note { (n) }
        div.heading {
            h1 { "Batches" }
            a.button href="/batches/new" { "New batch" }
        }
        form.filters method="get" action="/batches" {
            label { "Name" input type="search" name="name" value=(q.name.clone().unwrap_or_default()) placeholder="part of a name"; }
            label { "Verdict"
                select name="verdict" {
                    @for (value, label) in [("any", "any"), ("success", "SUCCESS"), ("failure", "FAILURE"), ("cancelled", "CANCELLED"), ("unfinished", "not yet")] {
                        option value=(value) selected[verdict == value] { (label) }
                    }
                }
            }
            @if let Some(e) = q.event { input type="hidden" name="event" value=(e); }
            button type="submit" { "Filter" }
            @if q != BatchQuery::default() { a href="/batches" { "clear" } }
        }
        form method="get" action="/compare" {
            (table(&list, &q))
            @if !list.batches.is_empty() {
                p.actions { button type="submit" { "Compare selected" } }
            }
        }
        (widgets::pager(list.page, list.pages, |p| format!("/batches?{}", q.to_query(p))))
    };
    Ok(page(Some(&ctx), "Batches", Nav::Batches, body))
}

/// `GET /batches/live`: the table alone, for the page's refresh.
pub async fn live<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    q: Result<Query<BatchQuery>, QueryRejection>,
) -> Result<Markup, PageError> {
    let q = query(q)?;
    let list = batch_list(&app.store, &q).await?;
    Ok(table(&list, &q))
}

fn table(list: &BatchList, q: &BatchQuery) -> Markup {
    let live = list
        .live()
        .then(|| format!("/batches/live?{}", q.to_query(list.page)));
    html! {
        div.live #batches data-live=[live] {
            @if list.batches.is_empty() {
                p.empty { "No batches" @if *q != BatchQuery::default() { " match these filters" } ". "
                    a href="/batches/new" { "Start one." } }
            } @else {
                div.scroll {
                    table.batches {
                        thead { tr {
                            th { span.sr { "compare" } }
                            th { "Name" } th.opt { "Event" } th { "Progress" } th.num.opt { "Runs/s" }
                            th.num.opt { "Elapsed" } th.num.opt { "Attempts" } th { "Verdict" }
                        } }
                        tbody {
                            @for b in &list.batches {
                                @let s = &b.status;
                                tr data-batch=(s.batch_id) {
                                    td { input type="checkbox" name="b" value=(s.batch_id) aria-label=(format!("compare {}", s.name)); }
                                    td.name { a href=(format!("/batches/{}", s.batch_id)) { (s.name) }
                                        div.muted.small { (format::count(s.runs)) " runs · " (format::timestamp(s.created_at)) } }
                                    td.opt { @match &b.event_name { Some(n) => (n), None => span.muted { (b.workload) } } }
                                    td { (widgets::progress(s)) }
                                    td.num.opt { (format::rate(s.runs_per_s)) }
                                    td.num.opt { (format::duration(s.elapsed_s)) }
                                    td.num.opt { (widgets::attempts(s)) }
                                    td { (widgets::state_badge(s.state))
                                        @if let Some(r) = &s.reason { div.reason { (r) } } }
                                }
                            }
                        }
                    }
                }
                p.muted.small { (format::count(list.total)) " batches" }
            }
        }
    }
}
