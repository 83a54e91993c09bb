//! Cross-site request protection, without server-side state:
//!
//! - every request that changes something (not GET/HEAD/OPTIONS) must come
//!   from this site: a browser's `Sec-Fetch-Site` must say `same-origin`
//!   (or `none`, typed by the user) and its `Origin`, when sent, must be
//!   this host. Clients that send neither (curl, scripts) are not browsers,
//!   and a cross-site attack needs a browser;
//! - every form carries a token equal to the `batchline_csrf` cookie
//!   (double submit): another site can neither read the cookie nor set it,
//!   so it cannot fill in the field. The cookie is random per browser,
//!   HttpOnly and SameSite=Strict; the page renders its value into forms.
//!
//! The API's JSON bodies need `Content-Type: application/json`, which a
//! cross-site form cannot send, and its bearer token is never sent by a
//! browser on its own, so the API needs no form token.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::auth::{Guard, hex};
use crate::error::{ApiError, Error, PageError};

pub const CSRF_COOKIE: &str = "batchline_csrf";
/// The form field that carries the token.
pub const CSRF_FIELD: &str = "csrf";

/// This browser's form token, for rendering forms.
#[derive(Clone, Debug)]
pub struct CsrfToken(pub String);

fn well_formed(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Middleware: refuses cross-site changes; gives every browser a token.
pub async fn protect(
    State(guard): State<Arc<Guard>>,
    jar: CookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    let changes = !matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if changes && let Err(e) = same_site(request.headers()) {
        return if request.uri().path().starts_with("/api/") {
            ApiError(e).into_response()
        } else {
            PageError(e).into_response()
        };
    }
    let existing = jar
        .get(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| well_formed(v));
    let fresh = existing.is_none();
    let token = existing.unwrap_or_else(|| hex(&rand::random::<[u8; 32]>()));
    request.extensions_mut().insert(CsrfToken(token.clone()));
    let response = next.run(request).await;
    if fresh {
        let cookie = guard.cookie(CSRF_COOKIE, token);
        return (jar.add(cookie), response).into_response();
    }
    response
}

/// The request comes from a page of this site (or from no browser at all).
fn same_site(headers: &HeaderMap) -> Result<(), Error> {
    let refuse = || Err(Error::Forbidden("cross-site request refused".into()));
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if let Some(site) = fetch_site
        && !matches!(site, "same-origin" | "none")
    {
        return refuse();
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => refuse(),
    }
}

/// A form whose only field is the token (delete, sign out).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct CsrfForm {
    pub csrf: String,
}

/// Checks a submitted form token against this browser's (constant time).
pub fn verify(expected: &CsrfToken, submitted: &str) -> Result<(), Error> {
    let tag = |key: &str| -> Option<Vec<u8>> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).ok()?;
        mac.update(b"csrf");
        Some(mac.finalize().into_bytes().to_vec())
    };
    let same = match (
        tag(&expected.0),
        Hmac::<Sha256>::new_from_slice(submitted.as_bytes()),
    ) {
        (Some(expected), Ok(mut mac)) => {
            mac.update(b"csrf");
            mac.verify_slice(&expected).is_ok()
        }
        _ => false,
    };
    if same {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "this form has expired or cookies are off: reload the page and send it again".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_this_site_may_change_things() {
        assert!(same_site(&headers(&[])).is_ok());
        assert!(
            same_site(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_ok()
        );
        assert!(same_site(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        for bad in [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
        ] {
            assert!(same_site(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_form_token_must_match_the_cookie() {
        let token = CsrfToken("ab".repeat(32));
        assert!(verify(&token, &"ab".repeat(32)).is_ok());
        assert!(verify(&token, &"ac".repeat(32)).is_err());
        assert!(verify(&token, "").is_err());
        assert!(well_formed(&token.0));
        assert!(!well_formed("<script>"));
    }
}
