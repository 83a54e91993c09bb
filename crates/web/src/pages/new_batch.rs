//! The new-batch form: the built-in event or a saved one, runs, chunk size,
//! seed, count, name. Sending it submits exactly as `batchline submit`
//! does, then shows the batch (or the list, for several).

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use broker::Broker;
use maud::{Markup, html};
use serde::Deserialize;
use store::{Catalog, Store, Uuid};

use crate::AppState;
use crate::csrf;
use crate::error::{Error, PageError};
use crate::submit::NewBatchForm;
use crate::views::format;
use crate::views::layout::{Ctx, Nav, page};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Preselect {
    pub event: Option<Uuid>,
}

/// `GET /batches/new`.
pub async fn form<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Query(pre): Query<Preselect>,
) -> Result<Markup, PageError> {
    let mut values = NewBatchForm::default();
    if let Some(id) = pre.event {
        values.event = id.to_string();
    }
    render(&app, &ctx, &values, &[]).await
}

/// `POST /batches`.
pub async fn create<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Form(values): Form<NewBatchForm>,
) -> Result<Response, PageError> {
    csrf::verify(&ctx.csrf, &values.csrf)?;
    let submitted = match values.plan(&app.limits) {
        Ok(plan) => match plan.request(&app.store).await {
            Ok(req) => crate::submit::submit(&app.broker, &app.store, &req).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    match submitted {
        Ok(done) => {
            if !done.published {
                tracing::warn!(
                    "some chunks were not published; the executors' sweeper will publish them"
                );
            }
            let to = match done.batches.as_slice() {
                [one] => format!("/batches/{}", one.id),
                _ => "/batches".to_string(),
            };
            Ok(Redirect::to(&to).into_response())
        }
        Err(Error::Refused(problems)) => {
            let page = render(&app, &ctx, &values, &problems).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e @ Error::BrokerUnavailable(_)) => {
            let page = render(&app, &ctx, &values, &[e.to_string()]).await?;
            Ok((e.status(), page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

async fn render<B: Broker, S: Store + Catalog>(
    app: &AppState<B, S>,
    ctx: &Ctx,
    v: &NewBatchForm,
    problems: &[String],
) -> Result<Markup, PageError> {
    let saved = app.store.list_events(0, 200).await?;
    let limits = &app.limits;
    let option = |value: &str, label: &str| {
        html! { option value=(value) selected[v.event == value] { (label) } }
    };
    let body = html! {
        h1 { "New batch" }
        @if !problems.is_empty() {
            div.problems role="alert" {
                p { strong { "The batch was not started. Please change:" } }
                ul { @for p in problems { li { (p) } } }
            }
        }
        form.stack method="post" action="/batches" {
            (ctx.csrf_field())
            label { "Event"
                select name="event" {
                    (option("builtin", "Spring League Bingo (built-in)"))
                    @for e in &saved.events {
                        (option(&e.id.to_string(), &format!("{} ({} teams, {} rows)", e.name, e.teams, e.rows)))
                    }
                    (option("sum", "sum (measures the pipeline, no event)"))
                }
                span.hint { a href="/events" { "Add an event to the library" } }
            }
            div.two {
                label { "Runs per batch"
                    input name="runs" value=(v.runs) inputmode="numeric" required;
                    span.hint { "at most " (format::count(limits.max_runs)) }
                }
                label { "Chunk size"
                    input name="chunk_size" value=(v.chunk_size) inputmode="numeric" required;
                    span.hint { "runs per chunk; at most " (format::count(limits.max_chunks)) " chunks per batch" }
                }
            }
            div.two {
                label { "Seed"
                    input name="seed" value=(v.seed) inputmode="numeric" placeholder="random";
                    span.hint { "batch i gets seed + i" }
                }
                label { "Batches"
                    input name="count" value=(v.count) inputmode="numeric" required;
                    span.hint { "at most " (limits.max_batches) }
                }
            }
            label { "Name"
                input name="name" value=(v.name) maxlength=(workload::MAX_NAME_CHARS) placeholder="e.g. spring-greedy";
                span.hint { "at most " (workload::MAX_NAME_CHARS) " characters, shown in the verdict line; several batches get -1, -2, …" }
            }
            button type="submit" { "Start" }
        }
    };
    Ok(page(Some(ctx), "New batch", Nav::NewBatch, body))
}
