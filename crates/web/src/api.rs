//! The JSON API under `/api/`: every page's data (the structs of `data`),
//! starting batches and keeping the event library. Errors are
//! `{"error": "…"}` with the status code, plus `line`/`column` for
//! malformed JSON and `problems` for an invalid event. The README lists
//! the endpoints.

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use broker::Broker;
use serde::Serialize;
use serde_json::json;
use store::catalog::{EventDeletion, EventSave};
use store::{Catalog, QueueView, Store, Uuid};

use crate::AppState;
use crate::body::{json_bytes, parse};
use crate::data::{self, BatchQuery, ChunkQuery};
use crate::error::{ApiError, Error};
use crate::events::check;
use crate::id::Id;
use crate::pages::events::PageQuery;
use crate::seed::Seed;
use crate::submit::NewBatchRequest;

type ApiResult<T> = Result<T, ApiError>;

/// Room for a request's JSON besides an event.
const SMALL_BODY: usize = 64 * 1024;

/// `GET /api/batches?name=&verdict=&event=&page=`.
pub async fn batches<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    q: Result<Query<BatchQuery>, QueryRejection>,
) -> ApiResult<Json<data::BatchList>> {
    let q = crate::pages::batches::query(q)?;
    Ok(Json(data::batch_list(&app.store, &q).await?))
}

/// `GET /api/batches/{id}`.
pub async fn batch<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
) -> ApiResult<Json<data::BatchDetail>> {
    Ok(Json(data::batch_detail(&app.store, id).await?))
}

/// `GET /api/batches/{id}/chunks?problems=&offset=&limit=`.
pub async fn chunks<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
    q: Result<Query<ChunkQuery>, QueryRejection>,
) -> ApiResult<Json<data::ChunkList>> {
    let Query(q) = q.map_err(|e| Error::BadRequest(e.body_text()))?;
    Ok(Json(data::chunk_list(&app.store, id, &q).await?))
}

#[derive(Serialize)]
struct Created {
    batch_id: Uuid,
    name: String,
    #[serde(flatten)]
    seed: Seed,
    runs: i64,
    chunks: i32,
}

/// `POST /api/batches`: the same path as `batchline submit`. Estimated
/// to run for over an hour, it starts only with `"confirm": true`;
/// otherwise 409 with the estimate and nothing started.
pub async fn submit<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let bytes = json_bytes(&headers, body, SMALL_BODY).await?;
    let request: NewBatchRequest = parse(&bytes)?;
    let req = request.plan(&app.limits)?.request(&app.store).await?;
    let guess = crate::submit::estimate(&app.store, &req).await?;
    if guess.needs_confirmation && !request.confirm {
        let body = json!({
            "error": format!(
                "not started: it would run for over an hour ({}); send \"confirm\": true to start it anyway",
                guess.line()
            ),
            "estimate": guess,
        });
        return Ok((StatusCode::CONFLICT, Json(body)).into_response());
    }
    let done = crate::submit::submit(&app.broker, &app.store, &req).await?;
    let batches: Vec<Created> = done
        .batches
        .iter()
        .map(|b| Created {
            batch_id: b.id,
            name: b.name.clone(),
            seed: Seed(b.seed),
            runs: b.runs,
            chunks: b.chunks(),
        })
        .collect();
    let body = json!({ "batches": batches, "published": done.published, "estimate": guess });
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/events?page=`.
pub async fn events<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<data::EventList>> {
    Ok(Json(
        data::event_list(&app.store, q.page.unwrap_or(1)).await?,
    ))
}

/// `GET /api/events/{id}`.
pub async fn event<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
) -> ApiResult<Json<data::EventDetail>> {
    Ok(Json(data::event_detail(&app.store, id).await?))
}

/// `POST /api/events/check`: what saving would say, without saving.
pub async fn check_event<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let limit = app.limits.max_event_bytes;
    let bytes = json_bytes(&headers, body, limit).await?;
    let c = check(&bytes, limit).map_err(Error::Event)?;
    Ok(Json(json!({
        "valid": true, "name": c.event.name,
        "teams": c.event.teams.len(), "rows": c.event.rows.len(),
    })))
}

/// `POST /api/events`: 201 with the new id, 200 with the id of the same
/// event saved before.
pub async fn save_event<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let limit = app.limits.max_event_bytes;
    let bytes = json_bytes(&headers, body, limit).await?;
    let c = check(&bytes, limit).map_err(Error::Event)?;
    let (status, id, saved) = match app.store.save_event(&c.to_new()).await? {
        EventSave::Saved(id) => (StatusCode::CREATED, id, true),
        EventSave::AlreadySaved(id) => (StatusCode::OK, id, false),
    };
    Ok((
        status,
        Json(json!({ "id": id, "name": c.event.name, "saved": saved })),
    )
        .into_response())
}

/// `DELETE /api/events/{id}`: 204; 409 when a batch ran it.
pub async fn delete_event<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
) -> ApiResult<StatusCode> {
    match app.store.delete_event(id).await? {
        EventDeletion::Deleted => Ok(StatusCode::NO_CONTENT),
        EventDeletion::InUse => Err(Error::Conflict(format!(
            "event {id} was run by a batch: it stays in the library"
        ))
        .into()),
        EventDeletion::NotFound => Err(Error::NotFound(format!("no saved event {id}")).into()),
    }
}

/// The body of `POST /api/batches/{id}/cancel` (optional).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/batches/{id}/cancel`: 200 `{batch_id, cancelled: true,
/// already, chunks_stopped, chunks_kept}`; 409 when the batch is final,
/// 404 unknown or purged. `Content-Type: application/json`; the body
/// `{"reason": "…"}` is optional.
pub async fn cancel<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    Id(id): Id,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    // JSON only, like every API body (it keeps cross-site forms out), but
    // an empty one means no reason.
    let bytes = json_bytes(&headers, body, SMALL_BODY).await?;
    let request: CancelRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CancelRequest::default()
    } else {
        parse(&bytes)?
    };
    let outcome = crate::pages::cancel::cancel_one(&app, id, &request.reason).await?;
    let (already, stopped, kept) = match outcome {
        store::Cancel::Cancelled { chunks, completed } => (false, Some(chunks), Some(completed)),
        _ => (true, None, None),
    };
    Ok(Json(json!({
        "batch_id": id,
        "cancelled": true,
        "already": already,
        "chunks_stopped": stopped,
        "chunks_kept": kept,
    })))
}

/// `GET /api/queue`: what `batchline queue --json` prints.
pub async fn queue<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
) -> ApiResult<Json<QueueView>> {
    Ok(Json(app.store.queue().await?))
}

/// `GET /api/compare?b=…&b=…`.
pub async fn compare<B: Broker, S: Store + Catalog>(
    State(app): State<AppState<B, S>>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<data::Comparison>> {
    let ids = crate::pages::compare::ids(query.as_deref())?;
    Ok(Json(data::comparison(&app.store, &ids).await?))
}

/// Any other `/api/…` path.
pub async fn not_found() -> ApiError {
    ApiError(Error::NotFound("no such API endpoint".into()))
}
