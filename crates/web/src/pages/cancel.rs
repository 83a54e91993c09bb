//! Cancelling a batch from the console: the batch page links here, this
//! page asks for a confirmation (and, optionally, a reason), and its form
//! — with the CSRF token — cancels through the same library call as
//! `batchline cancel` (`pipeline::cancel::cancel`), then shows the batch.

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use broker::Broker;
use maud::{Markup, html};
use serde::Deserialize;
use store::{Cancel, Catalog, Store, Uuid};

use crate::AppState;
use crate::csrf;
use crate::data::batch_detail;
use crate::error::{Error, PageError};
use crate::id::Id;
use crate::views::layout::{Ctx, Nav, page};
use crate::views::{format, widgets};

/// Longest reason kept with a cancel.
pub const MAX_REASON_CHARS: usize = 200;

/// `GET /batches/{id}/cancel`: the confirmation.
pub async fn confirm<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Id(id): Id,
) -> Result<Markup, PageError> {
    let d = batch_detail(&app.store, id).await?;
    let s = &d.status;
    let body = html! {
        div.heading { h1 { "Cancel " (s.name) "?" } (widgets::state_badge(s.state)) }
        @if s.state.is_final() || s.cancelled() {
            p { "This batch is " (s.state.as_str()) ": there is nothing to cancel." }
            p.actions { a href=(format!("/batches/{id}")) { "Back to the batch" } }
        } @else {
            p { (widgets::progress(s)) " — " (format::count(s.runs_done)) " of " (format::count(s.runs)) " runs done." }
            p { "Cancelling stops the batch for good: no chunk starts again, the chunks running now stop within about a second, "
                "and what was done is kept, checked by the verifier and labelled "
                code { "CANCELLED" } ". It cannot be undone." }
            form method="post" action=(format!("/batches/{id}/cancel")) {
                (ctx.csrf_field())
                label for="reason" { "Reason (optional)" }
                input #reason type="text" name="reason" maxlength=(MAX_REASON_CHARS) placeholder="submitted by mistake";
                p.actions {
                    button.danger type="submit" { "Cancel the batch" }
                    " "
                    a href=(format!("/batches/{id}")) { "Keep it running" }
                }
            }
        }
    };
    Ok(page(
        Some(&ctx),
        &format!("Cancel {}", s.name),
        Nav::Batches,
        body,
    ))
}

/// The cancel form.
#[derive(Debug, Deserialize)]
pub struct CancelForm {
    /// Missing is refused by the token check (403), not the form parser.
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub reason: String,
}

/// `POST /batches/{id}/cancel`.
pub async fn cancel<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Id(id): Id,
    axum::Form(form): axum::Form<CancelForm>,
) -> Result<Response, PageError> {
    csrf::verify(&ctx.csrf, &form.csrf)?;
    cancel_one(&app, id, &form.reason).await?;
    Ok(Redirect::to(&format!("/batches/{id}")).into_response())
}

/// Cancels one batch for the page and the API: `Ok` when it is cancelled
/// now or was before, the console's error (409 final, 404 unknown or
/// purged, 400 a reason too long) otherwise.
pub async fn cancel_one<B: Broker, S: Store + Catalog>(
    app: &AppState<B, S>,
    id: Uuid,
    reason: &str,
) -> Result<Cancel, Error> {
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(Error::BadRequest(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        )));
    }
    let done = pipeline::cancel::cancel(&app.store, Some(&app.broker), &[id], reason).await?;
    let outcome = done
        .into_iter()
        .next()
        .map(|(_, outcome)| outcome)
        .unwrap_or(Cancel::Unknown);
    match outcome {
        Cancel::Cancelled { .. } | Cancel::AlreadyCancelled => Ok(outcome),
        Cancel::Final { why } => Err(Error::Conflict(format!(
            "batch {id} is final, nothing to cancel: {why}"
        ))),
        Cancel::Unknown => Err(Error::NotFound(format!("no batch {id}"))),
        Cancel::Purged => Err(Error::NotFound(format!("batch {id} was purged"))),
    }
}
