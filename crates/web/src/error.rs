//! [`Error`]: everything a request can fail with, and how it answers — as a
//! JSON object under `/api/` ([`ApiError`]) and as an HTML page elsewhere
//! ([`PageError`]). Each carries the status code and a one-line message;
//! store and submit failures are logged, and the client sees no internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::events::EventProblem;
use crate::views::layout;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("sign in first: the console needs its token")]
    Unauthorized,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    /// A request body that is not the JSON expected, and where.
    #[error("line {line}, column {column}: {message}")]
    Json {
        message: String,
        line: usize,
        column: usize,
    },
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A bad event: malformed JSON (with line and column) or invalid content.
    #[error("{0}")]
    Event(EventProblem),
    /// Submit refused the request (bad values, invalid workload): every
    /// problem found, each a sentence.
    #[error("{}", .0.join(" "))]
    Refused(Vec<String>),
    #[error("the database is unavailable, try again shortly")]
    Unavailable(#[source] store::Error),
    /// New batches need RabbitMQ (`broker::UNREACHABLE`).
    #[error("{}", broker::UNREACHABLE)]
    BrokerUnavailable(#[source] broker::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        if e.can_be_retried() {
            Error::Unavailable(e)
        } else {
            Error::Internal(e.to_string())
        }
    }
}

impl From<pipeline::Error> for Error {
    fn from(e: pipeline::Error) -> Self {
        match e {
            pipeline::Error::Invalid(m) => Error::Refused(vec![m]),
            pipeline::Error::Workload(w) => Error::Refused(vec![w.to_string()]),
            pipeline::Error::Store(s) => Error::from(s),
            pipeline::Error::Broker(b) if b.can_be_retried() => Error::BrokerUnavailable(b),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Unauthorized => StatusCode::UNAUTHORIZED,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Json { .. } => StatusCode::BAD_REQUEST,
            Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Event(p) => p.status(),
            Error::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::Unavailable(_) | Error::BrokerUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn log(&self) {
        match self {
            Error::Unavailable(e) => {
                tracing::warn!(error = %e, "request failed: database unavailable")
            }
            Error::BrokerUnavailable(e) => {
                tracing::warn!(error = %e, "new batch refused: RabbitMQ unreachable")
            }
            Error::Internal(e) => tracing::error!(error = %e, "request failed"),
            _ => {}
        }
    }

    /// What the client may see: internals stay in the log.
    fn public_message(&self) -> String {
        match self {
            Error::Internal(_) => "internal error (the server log has the details)".into(),
            other => other.to_string(),
        }
    }
}

/// An [`Error`] answered as JSON: `{"error": "…"}`, plus `line` and
/// `column` for malformed JSON and `problems` for an invalid event.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        ApiError(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let mut body = json!({ "error": e.public_message() });
        match &e {
            Error::Event(problem) => problem.add_details(&mut body),
            Error::Refused(problems) => body["problems"] = json!(problems),
            Error::Json { line, column, .. } => {
                body["line"] = json!(line);
                body["column"] = json!(column);
            }
            _ => {}
        }
        (e.status(), Json(body)).into_response()
    }
}

/// An [`Error`] answered as an HTML page.
#[derive(Debug)]
pub struct PageError(pub Error);

impl<E: Into<Error>> From<E> for PageError {
    fn from(e: E) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        e.log();
        let status = e.status();
        let page = layout::error_page(status, &e.public_message());
        (status, page).into_response()
    }
}
