//! The token check: with `WEB_TOKEN` set, every request but the login page,
//! health checks and static assets must carry it — as a session cookie the
//! login form sets, or as `Authorization: Bearer TOKEN` (the API).
//!
//! The session cookie is stateless, so any replica accepts it and a restart
//! keeps people signed in: `v1.EXPIRY.TAG`, where TAG is an HMAC-SHA256 of
//! the expiry keyed with the token. Changing the token signs everyone out.
//! Every comparison of secrets is constant-time (`Mac::verify_slice`).
//!
//! Wrong tokens are throttled ([`Throttle`]): after a few, the login form
//! refuses every try for a while, unchecked, and each further try (wrong,
//! or made during the wait) doubles the wait up to a minute, so guessing
//! cannot go at the speed of the network.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{ApiError, Error};
use crate::settings::Secret;
use crate::views::layout::SignedIn;

type HmacSha256 = Hmac<Sha256>;

pub const SESSION_COOKIE: &str = "batchline_session";
/// How long a sign-in lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// The token, and what the cookies need to know. Shared by the middlewares.
#[derive(Debug)]
pub struct Guard {
    token: Option<Secret>,
    secure_cookies: bool,
    pub throttle: Throttle,
}

/// Wrong tokens in a row this process may see before it makes people wait.
pub const FREE_TRIES: u32 = 3;
/// The longest wait after wrong tokens.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Wrong sign-ins in a row, and until when the form refuses tries. One per
/// process, for every client: a guesser cannot spread over addresses, and
/// the wait stays short enough (at most [`MAX_WAIT`]) for the person who
/// knows the token.
#[derive(Debug, Default)]
pub struct Throttle {
    state: Mutex<(u32, Option<Instant>)>,
}

impl Throttle {
    /// How long a try at `now` must still wait; `None` when it may go ahead.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state
            .1
            .and_then(|until| until.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }

    /// A wrong token at `now`: past [`FREE_TRIES`], 1 s, 2 s, 4 s, … up to
    /// [`MAX_WAIT`] before the next try.
    pub fn failed(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.0 = state.0.saturating_add(1);
        if state.0 > FREE_TRIES {
            let doublings = (state.0 - FREE_TRIES - 1).min(6);
            state.1 = Some(now + Duration::from_secs(1 << doublings).min(MAX_WAIT));
        }
    }

    /// The right token: the count starts again.
    pub fn succeeded(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = (0, None);
    }
}

impl Guard {
    pub fn new(token: Option<Secret>, secure_cookies: bool) -> Guard {
        Guard {
            token,
            secure_cookies,
            throttle: Throttle::default(),
        }
    }

    /// Whether requests need the token at all.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    fn mac(&self, label: &[u8]) -> Option<HmacSha256> {
        let token = self.token.as_ref()?;
        let mut mac = HmacSha256::new_from_slice(token.expose().as_bytes()).ok()?;
        mac.update(label);
        Some(mac)
    }

    /// Whether `provided` is the token (constant time).
    pub fn is_token(&self, provided: &str) -> bool {
        // HMAC both under the provided string: equal keys give equal tags.
        let Some(expected) = self.mac(b"token").map(|m| m.finalize().into_bytes()) else {
            return false;
        };
        HmacSha256::new_from_slice(provided.as_bytes())
            .map(|mut m| {
                m.update(b"token");
                m.verify_slice(&expected).is_ok()
            })
            .unwrap_or(false)
    }

    /// A new session cookie valid for [`SESSION_TTL`] from `now_s`.
    pub fn session_cookie(&self, now_s: u64) -> Option<Cookie<'static>> {
        let expiry = now_s + SESSION_TTL.as_secs();
        let mut mac = self.mac(b"session:")?;
        mac.update(expiry.to_string().as_bytes());
        let tag = hex(&mac.finalize().into_bytes());
        Some(self.cookie(SESSION_COOKIE, format!("v1.{expiry}.{tag}")))
    }

    /// Whether a session cookie's value is ours and not expired at `now_s`.
    pub fn session_valid(&self, value: &str, now_s: u64) -> bool {
        let mut parts = value.splitn(3, '.');
        let (Some("v1"), Some(expiry), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let (Ok(at), Some(tag)) = (expiry.parse::<u64>(), unhex(tag)) else {
            return false;
        };
        let Some(mut mac) = self.mac(b"session:") else {
            return false;
        };
        mac.update(expiry.as_bytes());
        at > now_s && mac.verify_slice(&tag).is_ok()
    }

    fn bearer_valid(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|t| self.is_token(t.trim()))
    }

    /// An HttpOnly, SameSite=Strict cookie for the whole console, kept
    /// until the browser closes (a session's end is in its signed value).
    pub fn cookie(&self, name: &'static str, value: String) -> Cookie<'static> {
        Cookie::build((name, value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure_cookies)
            .build()
    }
}

/// Paths anyone may reach: signing in, health checks, styles and scripts.
fn is_public(path: &str) -> bool {
    matches!(path, "/login" | "/healthz" | "/readyz") || path.starts_with("/assets/")
}

/// Middleware: lets a request through only with the token (when one is set).
pub async fn require_token(
    State(guard): State<Arc<Guard>>,
    jar: CookieJar,
    mut request: Request,
    next: Next,
) -> Response {
    if !guard.enabled() {
        return next.run(request).await;
    }
    let now = pipeline::status::now_s() as u64;
    if jar
        .get(SESSION_COOKIE)
        .is_some_and(|c| guard.session_valid(c.value(), now))
    {
        request.extensions_mut().insert(SignedIn);
        return next.run(request).await;
    }
    let path = request.uri().path();
    if is_public(path) || guard.bearer_valid(request.headers()) {
        return next.run(request).await;
    }
    if path.starts_with("/api/") {
        let mut response = ApiError(Error::Unauthorized).into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let back = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let next_param: String = form_urlencoded::byte_serialize(back.as_bytes()).collect();
    Redirect::to(&format!("/login?next={next_param}")).into_response()
}

/// Where to go after signing in: only a path on this site, never another
/// origin (`//evil.example` or `https://…`).
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(Some(Secret::new("0123456789abcdef-token")), false)
    }

    #[test]
    fn the_token_and_only_the_token_passes() {
        let g = guard();
        assert!(g.is_token("0123456789abcdef-token"));
        assert!(!g.is_token("0123456789abcdef-tokem"));
        assert!(!g.is_token(""));
        assert!(!Guard::new(None, false).is_token("anything"));
    }

    #[test]
    fn session_cookies_expire_and_cannot_be_forged() {
        let g = guard();
        let cookie = g.session_cookie(1_000).unwrap();
        assert!(cookie.http_only().unwrap_or(false));
        assert_eq!(cookie.same_site(), Some(SameSite::Strict));
        let value = cookie.value();
        assert!(g.session_valid(value, 1_000));
        assert!(!g.session_valid(value, 1_000 + SESSION_TTL.as_secs()));
        // A later expiry with the old tag, another token, garbage: refused.
        let forged = value.replacen(
            &(1_000 + SESSION_TTL.as_secs()).to_string(),
            &(9_000_000_000u64).to_string(),
            1,
        );
        assert!(!g.session_valid(&forged, 1_000));
        let other = Guard::new(Some(Secret::new("another-token-0123456")), false);
        assert!(!other.session_valid(value, 1_000));
        for junk in ["", "v1", "v1.x.y", "v2.99999999999.00", "v1.99999999999.zz"] {
            assert!(!g.session_valid(junk, 1_000), "{junk}");
        }
    }

    #[test]
    fn wrong_tokens_past_the_free_tries_make_the_next_try_wait() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..FREE_TRIES {
            t.failed(now);
            assert_eq!(t.wait(now), None);
        }
        t.failed(now);
        assert_eq!(t.wait(now), Some(Duration::from_secs(1)));
        assert_eq!(t.wait(now + Duration::from_secs(1)), None);
        t.failed(now);
        assert_eq!(t.wait(now), Some(Duration::from_secs(2)));
        for _ in 0..20 {
            t.failed(now);
        }
        assert_eq!(t.wait(now), Some(MAX_WAIT));
        t.succeeded();
        assert_eq!(t.wait(now), None);
    }

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/batches?verdict=failure")),
            "/batches?verdict=failure"
        );
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "evil"] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
