//! The event library: paste or upload an event, see every problem with its
//! place before saving, save it; view a saved event as its board; download
//! it; delete one no batch ran (after a confirmation page). The built-in
//! Spring League Bingo is shown here too, as a template to start from.

use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use broker::Broker;
use maud::{Markup, html};
use serde::Deserialize;
use store::catalog::{EventDeletion, EventSave};
use store::{Catalog, Store};

use crate::AppState;
use crate::csrf::{self, CSRF_FIELD};
use crate::data::{EventList, event_detail, event_list};
use crate::error::{Error, PageError};
use crate::events::{CheckedEvent, EventProblem, check, line_of};
use crate::id::Id;
use crate::pages::batch::download;
use crate::views::layout::{Ctx, Nav, page};
use crate::views::{board, format, widgets};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PageQuery {
    pub page: Option<i64>,
    /// `builtin`: the add form starts with the built-in event's JSON.
    pub template: Option<String>,
}

/// The built-in event as the add form's starting text.
fn builtin_json() -> Result<String, Error> {
    serde_json::to_string_pretty(&workload::Event::spring_league())
        .map_err(|e| Error::Internal(format!("built-in event to JSON: {e}")))
}

/// `GET /events`.
pub async fn library<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Query(q): Query<PageQuery>,
) -> Result<Markup, PageError> {
    let list = event_list(&app.store, q.page.unwrap_or(1)).await?;
    let text = match q.template.as_deref() {
        Some("builtin") => builtin_json()?,
        _ => String::new(),
    };
    Ok(render(&ctx, &list, &text, None))
}

/// What the add form's check found.
enum Outcome<'a> {
    Problem(&'a EventProblem),
    Valid(&'a CheckedEvent),
}

fn render(ctx: &Ctx, list: &EventList, text: &str, outcome: Option<Outcome<'_>>) -> Markup {
    let body = html! {
        h1 { "Events" }
        section {
            h2 { "Add an event" }
            p.muted { "Paste an event's JSON or choose a file (the format of "
                code { "crates/workload/events/spring-league.json" } "), check it, then save it. "
                "To start from the built-in Spring League Bingo, "
                a href="/events?template=builtin#add-event" { "load it into the box" } " and change what you need; save it under a new name." }
            form.stack #add-event method="post" action="/events" enctype="multipart/form-data" {
                (ctx.csrf_field())
                label { "Event JSON"
                    textarea name="event" rows="14" spellcheck="false" placeholder="{ \"name\": \"My event\", … }" { (text) }
                }
                label { "or a file" input type="file" name="file" accept=".json,application/json"; }
                div.actions {
                    button type="submit" name="action" value="check" { "Check" }
                    button type="submit" name="action" value="save" { "Save" }
                }
            }
            @match outcome {
                Some(Outcome::Problem(p)) => (problem(p, text)),
                Some(Outcome::Valid(c)) => p.ok role="status" { "Valid: " strong { (c.event.name) } ", "
                    (c.event.teams.len()) " teams, " (c.event.rows.len()) " rows, "
                    (c.event.activities.len()) " activities. Save it to run it." },
                None => {}
            }
        }
        section {
            h2 { "Built-in event" }
            p { a href="/events/builtin" { "Spring League Bingo" } " — two teams of four, 20 rows. "
                a href="/batches/new" { "New batch" } " · "
                a href="/events?template=builtin#add-event" { "Use as a template" } " · "
                a href="/events/builtin/event.json" { "Download JSON" } }
        }
        section {
            h2 { "Saved events" }
            (saved(list))
        }
    };
    page(Some(ctx), "Events", Nav::Events, body)
}

/// A refused event: where and why.
fn problem(p: &EventProblem, text: &str) -> Markup {
    match p {
        EventProblem::Json {
            message,
            line,
            column,
        } => html! {
            div.problems role="alert" {
                p { strong { "Not a readable event: line " (line) ", column " (column) } }
                p { code { (message) } }
                @if let Some(l) = line_of(text, *line) {
                    pre.excerpt { (l) "\n" (" ".repeat(column.saturating_sub(1))) "^" }
                }
            }
        },
        EventProblem::Invalid { problems } => widgets::problems(
            &format!(
                "Nothing was saved: the event has {}.",
                format::things(problems.len(), "problem", "problems")
            ),
            problems,
        ),
        other => html! { p.error role="alert" { (other) } },
    }
}

fn saved(list: &EventList) -> Markup {
    html! {
        @if list.events.is_empty() {
            p.empty { "No saved events yet." }
        } @else {
            div.scroll { table.events {
                thead { tr { th { "Event" } th.num { "Teams" } th.num { "Rows" } th { "Saved" } th.num { "Batches" } th {} } }
                tbody { @for e in &list.events {
                    tr {
                        td { a href=(format!("/events/{}", e.id)) { (e.name) } }
                        td.num { (e.teams) } td.num { (e.rows) }
                        td { (format::timestamp(e.created_at)) }
                        td.num { @if e.batches > 0 { a href=(format!("/batches?event={}", e.id)) { (e.batches) } } @else { "0" } }
                        td { a href=(format!("/batches/new?event={}", e.id)) { "New batch" } }
                    }
                } }
            } }
            (widgets::pager(list.page, list.pages, |p| format!("/events?page={p}")))
        }
    }
}

/// The add form's fields.
#[derive(Default)]
struct Upload {
    csrf: String,
    text: Vec<u8>,
    file: Vec<u8>,
    save: bool,
}

async fn read_upload(mut form: Multipart, limit: usize) -> Result<Upload, Error> {
    let too_large = || {
        Error::TooLarge(format!(
            "the upload is larger than the {limit}-byte limit for an event"
        ))
    };
    let mut up = Upload::default();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => {
                return Err(Error::BadRequest(format!(
                    "unreadable form: {}",
                    e.body_text()
                )));
            }
        };
        let name = field.name().unwrap_or_default().to_string();
        let bytes = match field.bytes().await {
            Ok(b) => b,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large()),
            Err(e) => {
                return Err(Error::BadRequest(format!(
                    "unreadable form: {}",
                    e.body_text()
                )));
            }
        };
        match name.as_str() {
            CSRF_FIELD => up.csrf = String::from_utf8_lossy(&bytes).into_owned(),
            "event" => up.text = bytes.to_vec(),
            "file" => up.file = bytes.to_vec(),
            "action" => up.save = bytes.as_ref() == b"save",
            _ => {}
        }
    }
    Ok(up)
}

/// `POST /events`: check, or check and save.
pub async fn add<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    form: Multipart,
) -> Result<Response, PageError> {
    let limit = app.limits.max_event_bytes;
    let up = read_upload(form, limit).await?;
    csrf::verify(&ctx.csrf, &up.csrf)?;
    // A chosen file wins over the text box; either way the text box shows it.
    let bytes = if up.file.is_empty() { up.text } else { up.file };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let list = event_list(&app.store, 1).await?;
    let checked = match check(&bytes, limit) {
        Ok(c) => c,
        Err(p) => {
            let shown = if matches!(p, EventProblem::TooLarge { .. }) {
                ""
            } else {
                &text
            };
            let page = render(&ctx, &list, shown, Some(Outcome::Problem(&p)));
            return Ok((p.status(), page).into_response());
        }
    };
    if !up.save {
        return Ok(render(&ctx, &list, &text, Some(Outcome::Valid(&checked))).into_response());
    }
    let id = match app.store.save_event(&checked.to_new()).await? {
        EventSave::Saved(id) | EventSave::AlreadySaved(id) => id,
    };
    Ok(Redirect::to(&format!("/events/{id}")).into_response())
}

/// `GET /events/{id}`.
pub async fn show<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Id(id): Id,
) -> Result<Markup, PageError> {
    let d = event_detail(&app.store, id).await?;
    let s = &d.summary;
    let body = html! {
        (board::event(&d.event, &format!("/events/{id}/event.json")))
        section {
            h2 { "Runs" }
            p.actions {
                a.button href=(format!("/batches/new?event={id}")) { "New batch from this event" }
                " "
                @if s.batches > 0 {
                    a href=(format!("/batches?event={id}")) { (s.batches) " batch(es) ran it" }
                    span.muted { " — so it can no longer change or be deleted." }
                } @else {
                    a.button.danger href=(format!("/events/{id}/delete")) { "Delete…" }
                }
            }
            p.muted.small { "Saved " (format::timestamp(s.created_at)) ". Saved events never change: to change one, save the edited JSON as a new event." }
        }
    };
    Ok(page(Some(&ctx), &d.event.name, Nav::Events, body))
}

/// `GET /events/builtin`: the built-in event as its board.
pub async fn builtin(ctx: Ctx) -> Markup {
    let event = workload::Event::spring_league();
    let body = html! {
        p.muted { "Built into batchline; batches run it unless they name another event. "
            a.button href="/batches/new" { "New batch from this event" } " "
            a href="/events?template=builtin#add-event" { "Use as a template" } }
        (board::event(&event, "/events/builtin/event.json"))
    };
    page(Some(&ctx), &event.name, Nav::Events, body)
}

/// `GET /events/builtin/event.json`.
pub async fn builtin_download() -> Result<Response, PageError> {
    Ok(download(&workload::Event::spring_league())?)
}

/// `GET /events/{id}/delete`: are you sure?
pub async fn confirm_delete<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Id(id): Id,
) -> Result<Markup, PageError> {
    let d = event_detail(&app.store, id).await?;
    let body = html! {
        h1 { "Delete " (d.event.name) "?" }
        @if d.summary.batches > 0 {
            p { (format::things(d.summary.batches as usize, "batch", "batches")) " ran it: it stays in the library." }
        } @else {
            p { "It goes from the library for good. No batch ran it, so nothing else changes." }
            form.inline method="post" action=(format!("/events/{id}/delete")) {
                (ctx.csrf_field())
                button.danger type="submit" { "Delete it" }
                " "
                a href=(format!("/events/{id}")) { "Keep it" }
            }
        }
    };
    Ok(page(Some(&ctx), "Delete event", Nav::Events, body))
}

/// `GET /events/{id}/event.json`.
pub async fn json<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
) -> Result<Response, PageError> {
    Ok(download(&event_detail(&app.store, id).await?.event)?)
}

/// `POST /events/{id}/delete`.
pub async fn delete<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    ctx: Ctx,
    Id(id): Id,
    axum::Form(form): axum::Form<csrf::CsrfForm>,
) -> Result<Response, PageError> {
    csrf::verify(&ctx.csrf, &form.csrf)?;
    match app.store.delete_event(id).await? {
        EventDeletion::Deleted => Ok(Redirect::to("/events").into_response()),
        EventDeletion::InUse => Err(Error::Conflict(format!(
            "event {id} was run by a batch: it stays in the library"
        ))
        .into()),
        EventDeletion::NotFound => Err(Error::NotFound(format!("no saved event {id}")).into()),
    }
}
