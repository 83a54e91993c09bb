//! [`Id`]: the id in a URL path (`/batches/{id}`, `/api/events/{id}`). A
//! malformed one is answered like any other error of its route: the
//! console's error page, or `{"error": …}` under `/api/` (axum's own
//! `Path` rejection is a bare plain-text line).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use store::Uuid;

use crate::error::{ApiError, Error, PageError};

/// A batch's or an event's id from the path.
#[derive(Clone, Copy, Debug)]
pub struct Id(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        match Path::<Uuid>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(Id(id)),
            Err(_) => {
                let error = Error::NotFound(format!(
                    "no such page: {:?} has no valid id in it (ids look like 0b9a3e1c-…)",
                    parts.uri.path()
                ));
                Err(if parts.uri.path().starts_with("/api/") {
                    ApiError(error).into_response()
                } else {
                    PageError(error).into_response()
                })
            }
        }
    }
}
