//! web: `batchline web`, the console — batches with live progress, a
//! batch's results as charts, a form that starts batches, a library of
//! saved events, batches compared side by side — and the same data as JSON
//! under `/api/`.
//!
//! # Layout
//! - [`settings`]: `WebArgs` (clap, env) checked into a `WebConfig`: the
//!   loopback-or-token rule, the token file, the limits.
//! - `auth`, `csrf`: the token check (login cookie or bearer header) and
//!   cross-site request protection, both stateless middlewares.
//! - `data`: what each page shows, loaded once for the page and its JSON
//!   twin; `api`: the JSON endpoints; `pages`: the HTML pages.
//! - `submit`: form and API → `SubmitRequest` within the limits, then
//!   `pipeline::submit::submit`, the code path of `batchline submit`.
//! - `events`, `body`: reading an uploaded event or JSON body, with every
//!   problem's place (line and column, or the field path).
//! - `views`: the maud templates (HTML-escaped), charts drawn as SVG on
//!   the server, the event board; `assets`: CSS, script and icon compiled
//!   into the binary.
//! - `id`: the id in a URL path, refused in the route's own words.
//! - `seed`: seeds in JSON as numbers and as strings (past 2^53).
//! - `stats`: confidence intervals for the comparisons.
//!
//! The console keeps no state of its own: Postgres (through the
//! [`store::Store`] and [`store::Catalog`] traits) has the data, the broker
//! trait publishes, sessions are signed cookies. Restart it or run several.
//! It knows traits, not sqlx or lapin.

mod api;
mod assets;
mod auth;
mod body;
mod csrf;
mod data;
mod error;
mod events;
mod id;
mod pages;
mod seed;
pub mod settings;
mod stats;
mod submit;
mod views;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use broker::Broker;
use store::{Catalog, Store};

pub use error::Error;
pub use settings::{Limits, Secret, SettingsError, WebArgs, WebConfig};

use auth::Guard;

/// What every handler shares: the traits it reaches Postgres and the
/// broker through, and the limits.
#[derive(Clone, Debug)]
pub struct AppState<B, S> {
    pub broker: B,
    pub store: S,
    pub limits: Limits,
}

/// Room for the multipart envelope around an uploaded event.
const FORM_OVERHEAD: usize = 64 * 1024;
/// Any other form or body.
const SMALL_BODY: usize = 64 * 1024;

/// The console's routes and middlewares.
pub fn router<B: Broker, S: Store + Catalog>(config: &WebConfig, broker: B, store: S) -> Router {
    let guard = Arc::new(Guard::new(config.token.clone(), config.secure_cookies));
    let state = AppState {
        broker,
        store,
        limits: config.limits,
    };
    let event_body = DefaultBodyLimit::max(config.limits.max_event_bytes + FORM_OVERHEAD);
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/batches") }))
        .route(
            "/batches",
            get(pages::batches::list::<B, S>).post(pages::new_batch::create::<B, S>),
        )
        .route("/batches/live", get(pages::batches::live::<B, S>))
        .route("/batches/new", get(pages::new_batch::form::<B, S>))
        .route("/queue", get(pages::queue::show::<B, S>))
        .route("/queue/live", get(pages::queue::live::<B, S>))
        .route("/batches/{id}", get(pages::batch::show::<B, S>))
        .route("/batches/{id}/live", get(pages::batch::live_part::<B, S>))
        .route(
            "/batches/{id}/cancel",
            get(pages::cancel::confirm::<B, S>).post(pages::cancel::cancel::<B, S>),
        )
        .route("/batches/{id}/event", get(pages::batch::event::<B, S>))
        .route(
            "/batches/{id}/event.json",
            get(pages::batch::event_json::<B, S>),
        )
        .route(
            "/events",
            get(pages::events::library::<B, S>)
                .post(pages::events::add::<B, S>)
                .layer(event_body),
        )
        .route("/events/builtin", get(pages::events::builtin))
        .route(
            "/events/builtin/event.json",
            get(pages::events::builtin_download),
        )
        .route("/events/{id}", get(pages::events::show::<B, S>))
        .route("/events/{id}/event.json", get(pages::events::json::<B, S>))
        .route(
            "/events/{id}/delete",
            get(pages::events::confirm_delete::<B, S>).post(pages::events::delete::<B, S>),
        )
        .route("/compare", get(pages::compare::show::<B, S>))
        .route("/readyz", get(ready::<B, S>));
    let api = Router::new()
        .route(
            "/api/batches",
            get(api::batches::<B, S>).post(api::submit::<B, S>),
        )
        .route("/api/batches/{id}", get(api::batch::<B, S>))
        .route("/api/batches/{id}/chunks", get(api::chunks::<B, S>))
        .route("/api/batches/{id}/cancel", post(api::cancel::<B, S>))
        .route(
            "/api/events",
            get(api::events::<B, S>)
                .post(api::save_event::<B, S>)
                .layer(event_body),
        )
        .route(
            "/api/events/check",
            post(api::check_event::<B, S>).layer(event_body),
        )
        .route(
            "/api/events/{id}",
            get(api::event::<B, S>).delete(api::delete_event::<B, S>),
        )
        .route("/api/compare", get(api::compare::<B, S>))
        .route("/api/queue", get(api::queue::<B, S>))
        .route("/api/{*rest}", get(api::not_found).post(api::not_found));
    let login = Router::new()
        .route("/login", get(pages::login::show).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .with_state(guard.clone());
    Router::new()
        .merge(pages.merge(api).with_state(state))
        .merge(login)
        .merge(assets::routes())
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            error::PageError(Error::NotFound("no such page".into())).into_response()
        })
        .layer(DefaultBodyLimit::max(SMALL_BODY))
        .layer(middleware::from_fn_with_state(
            guard.clone(),
            auth::require_token,
        ))
        .layer(middleware::from_fn_with_state(guard, csrf::protect))
        .layer(middleware::from_fn(security_headers))
}

/// `GET /readyz`: Postgres answers.
async fn ready<B: Broker, S: Store + Catalog>(State(app): State<AppState<B, S>>) -> Response {
    match app.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: Postgres does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "Postgres does not answer").into_response()
        }
    }
}

/// No framing, no sniffing, no inline script or style, no referrer
/// leaving the site.
async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    );
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "same-origin");
    if !h.contains_key(header::CACHE_CONTROL) {
        set(h, header::CACHE_CONTROL, "no-store");
    }
    response
}

/// Serves the console on `listener` until `shutdown` resolves, then lets
/// requests in flight finish.
pub async fn serve<B: Broker, S: Store + Catalog>(
    config: &WebConfig,
    listener: tokio::net::TcpListener,
    broker: B,
    store: S,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(config, broker, store);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            token = config.token.is_some(),
            "web console listening on http://{addr}/"
        );
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
