//! The queue: the batches waiting or running, in the order the executors
//! serve them, with tenant, priority, share of the executors now, runs/s
//! and time left, and the pool's size — what `batchline queue` prints. The
//! table refreshes itself while the queue is not empty.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use broker::Broker;
use maud::{Markup, html};
use pipeline::estimate::rough;
use store::{Catalog, QueueView, Store};

use crate::AppState;
use crate::error::PageError;
use crate::pages::new_batch::Started;
use crate::views::format;
use crate::views::layout::{Ctx, Nav, page};

/// `GET /queue`.
pub async fn show<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    started: Result<Query<Started>, QueryRejection>,
) -> Result<Markup, PageError> {
    let view = app.store.queue().await?;
    let note = started.ok().and_then(|Query(s)| s.note());
    let body = html! {
        @if let Some(n) = note { (n) }
        div.heading {
            h1 { "Queue" }
            a.button href="/batches/new" { "New batch" }
        }
        p.muted.small {
            "Batches waiting or running, in the order the executors serve them. "
            "Tenants share the executors equally; inside a tenant, batches share by priority "
            "(high 4, normal 1, low ¼) or weight."
        }
        (table(&view))
    };
    Ok(page(Some(&ctx), "Queue", Nav::Queue, body))
}

/// `GET /queue/live`: the table alone, for the page's refresh.
pub async fn live<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
) -> Result<Markup, PageError> {
    Ok(table(&app.store.queue().await?))
}

fn table(view: &QueueView) -> Markup {
    // An empty queue stays empty until someone submits: no refresh.
    let live = (!view.batches.is_empty()).then_some("/queue/live");
    html! {
        div.live #queue data-live=[live] {
            p.pool {
                @match view.executor_threads {
                    0 => span.error { "No executor is running: nothing runs until one starts." },
                    n => { strong { (format::things(n as usize, "executor thread", "executor threads")) }
                        ", " (format::things(view.chunks_running as usize, "chunk", "chunks")) " running" },
                }
            }
            @if view.batches.is_empty() {
                p.empty { "No batch is waiting or running. " a href="/batches/new" { "Start one." } }
            } @else {
                div.scroll {
                    table.batches.queue {
                        thead { tr {
                            th.num { "#" } th { "Name" } th.opt { "Tenant" } th.opt { "Priority" }
                            th.opt { "Progress" } th.num { "Share" } th.num.opt { "Runs/s" } th.num { "Left" }
                        } }
                        tbody {
                            @for b in &view.batches {
                                @let done = b.runs_done as f64 / b.runs.max(1) as f64;
                                tr data-batch=(b.id) {
                                    td.num { (b.position) }
                                    td.name { a href=(format!("/batches/{}", b.id)) { (b.name) }
                                        div.muted.small {
                                            span.phone { span.nowrap { (b.tenant) } " · " span.nowrap { (b.priority) } " · " span.nowrap { (format::percent(done)) } " of " }
                                            (format::count(b.runs)) " runs" } }
                                    td.opt { (b.tenant) }
                                    td.opt { (b.priority) }
                                    td.opt { span.progress {
                                        progress value=(b.runs_done) max=(b.runs.max(1)) {}
                                        span.num { (format::percent(done)) }
                                    } }
                                    td.num { (format::percent(b.share_now))
                                        div.muted.small { (format::things(b.chunks_running.max(0) as usize, "chunk", "chunks")) } }
                                    td.num.opt { (format::rate(b.runs_per_s)) }
                                    td.num { @match b.left_s { Some(s) => (rough(s)), None => span.muted { "-" } } }
                                }
                            }
                        }
                    }
                }
                p.muted.small { (format::things(view.batches.len(), "batch", "batches")) " · "
                    a href="/api/queue" { "JSON" } }
            }
        }
    }
}
