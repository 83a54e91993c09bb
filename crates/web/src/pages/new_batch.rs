//! The new-batch form: the built-in event or a saved one, runs, chunk size,
//! seed, count, name, tenant, priority or weight. Sending it submits
//! exactly as `batchline submit` does, then shows the batch (or the list,
//! for several) with its estimated run time. A batch estimated to run for
//! over an hour comes back first with the estimate and a box to tick.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use broker::Broker;
use maud::{Markup, html};
use pipeline::estimate::{Estimate, about, rough};
use pipeline::submit::Submitted;
use serde::Deserialize;
use store::{Catalog, Priority, Store, Uuid};

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
    render(&app, &ctx, &values, &[], None).await
}

/// What sending the form came to.
enum Sent {
    Started(Submitted, Estimate),
    /// Over an hour and not confirmed: nothing was started.
    ToConfirm(Estimate),
}

async fn send<B: Broker, S: Store + Catalog>(
    app: &AppState<B, S>,
    values: &NewBatchForm,
) -> Result<Sent, Error> {
    let req = values.plan(&app.limits)?.request(&app.store).await?;
    let guess = crate::submit::estimate(&app.store, &req).await?;
    if guess.needs_confirmation && !values.confirmed() {
        return Ok(Sent::ToConfirm(guess));
    }
    let done = crate::submit::submit(&app.broker, &app.store, &req).await?;
    Ok(Sent::Started(done, guess))
}

/// `POST /batches`.
pub async fn create<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Form(values): Form<NewBatchForm>,
) -> Result<Response, PageError> {
    csrf::verify(&ctx.csrf, &values.csrf)?;
    match send(&app, &values).await {
        Ok(Sent::Started(done, guess)) => {
            if !done.published {
                tracing::warn!(
                    "some chunks were not published; the executors' sweeper will publish them"
                );
            }
            let to = match done.batches.as_slice() {
                [one] => format!("/batches/{}", one.id),
                _ => "/batches".to_string(),
            };
            Ok(Redirect::to(&format!("{to}?{}", Started::query(&guess))).into_response())
        }
        Ok(Sent::ToConfirm(guess)) => Ok(render(&app, &ctx, &values, &[], Some(&guess))
            .await?
            .into_response()),
        Err(Error::Refused(problems)) => {
            let page = render(&app, &ctx, &values, &problems, None).await?;
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
        Err(e @ Error::BrokerUnavailable(_)) => {
            let page = render(&app, &ctx, &values, &[e.to_string()], None).await?;
            Ok((e.status(), page).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

/// The query string the form's redirect carries after a start, so that
/// the page it lands on says the estimate: numbers only, never text (a
/// link cannot make the console say something it did not).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Started {
    /// Present after a start from the form.
    pub started: Option<u32>,
    /// Estimated seconds; absent when no executor was running.
    pub estimate_s: Option<f64>,
}

impl Started {
    fn query(guess: &Estimate) -> String {
        match guess.seconds {
            Some(s) => format!("started=1&estimate_s={}", s.ceil()),
            None => "started=1".into(),
        }
    }

    /// The note a page shows after a start, if it was one.
    pub fn note(&self) -> Option<Markup> {
        self.started?;
        Some(html! {
            p.note role="status" {
                strong { "Started. " }
                @match self.estimate_s.filter(|s| s.is_finite()) {
                    Some(s) => { "Estimated run time: " (about(s)) " at its fair share of the executors now. " }
                    None => { "No estimate: no executor is running, so it waits for one. " }
                }
                a href="/queue" { "The queue" } " shows where it stands."
            }
        })
    }
}

async fn render<B: Broker, S: Store + Catalog>(
    app: &AppState<B, S>,
    ctx: &Ctx,
    v: &NewBatchForm,
    problems: &[String],
    confirming: Option<&Estimate>,
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
        @if let Some(guess) = confirming {
            div.confirm role="alert" {
                p { strong {
                    @if guess.batches == 1 { "This batch" } @else { "These " (guess.batches) " batches" }
                    " would run for about " span.nowrap { (guess.seconds.map_or_else(String::new, rough)) } "."
                } }
                p.small { "The " (guess.line()) "." }
                p { "Nothing was started. Tick " em { "Start it anyway" } " below and press Start, or make it shorter: fewer runs, or a higher priority." }
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
            label { "Tenant"
                input name="tenant" value=(v.tenant) maxlength=(store::share::MAX_TENANT_LEN) placeholder=(store::share::DEFAULT_TENANT) autocapitalize="none";
                span.hint { "who it is for: tenants share the executors equally; letters, digits, . _ -" }
            }
            div.two {
                label { "Priority"
                    select name="priority" {
                        @for p in Priority::ALL {
                            option value=(p.as_str()) selected[v.priority.trim() == p.as_str()] {
                                (p.as_str()) " (weight " (p.weight()) ")"
                            }
                        }
                    }
                    span.hint { "its part of its tenant's share" }
                }
                label { "Weight"
                    input name="weight" value=(v.weight) inputmode="decimal" placeholder="optional";
                    span.hint { "instead of the priority: 0.01 to 100, normal is 1" }
                }
            }
            @if confirming.is_some() {
                label.check {
                    input type="checkbox" name="confirm" value="yes";
                    span { "Start it anyway: I know it runs for over an hour" }
                }
            }
            button type="submit" { "Start" }
        }
    };
    Ok(page(Some(ctx), "New batch", Nav::NewBatch, body))
}
