//! Signing in and out when the console has a token: the form checks the
//! token once and sets the session cookie (see `auth`).

use std::sync::Arc;
use std::time::Instant;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use maud::{Markup, html};
use serde::Deserialize;

use crate::auth::{Guard, SESSION_COOKIE, safe_next};
use crate::csrf;
use crate::error::PageError;
use crate::views::layout::{Ctx, Nav, page};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Next {
    pub next: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LoginForm {
    pub token: String,
    pub next: String,
    pub csrf: String,
}

fn form(ctx: &Ctx, next: &str, error: Option<&str>) -> Markup {
    let body = html! {
        div.login {
            h1 { "Sign in" }
            p.muted { "This console asks for its token (WEB_TOKEN)." }
            @if let Some(e) = error { p.error role="alert" { (e) } }
            form.stack method="post" action="/login" {
                (ctx.csrf_field())
                input type="hidden" name="next" value=(next);
                label { "Token" input type="password" name="token" autocomplete="current-password" required autofocus; }
                button type="submit" { "Sign in" }
            }
        }
    };
    page(Some(ctx), "Sign in", Nav::None, body)
}

/// `GET /login`.
pub async fn show(State(guard): State<Arc<Guard>>, ctx: Ctx, Query(q): Query<Next>) -> Response {
    let next = safe_next(q.next.as_deref());
    if !guard.enabled() {
        return Redirect::to(next).into_response();
    }
    form(&ctx, next, None).into_response()
}

/// `POST /login`.
pub async fn submit(
    State(guard): State<Arc<Guard>>,
    ctx: Ctx,
    jar: CookieJar,
    Form(f): Form<LoginForm>,
) -> Result<Response, PageError> {
    csrf::verify(&ctx.csrf, &f.csrf)?;
    let next = safe_next(Some(&f.next));
    let now = pipeline::status::now_s() as u64;
    let at = Instant::now();
    if let Some(wait) = guard.throttle.wait(at) {
        // Not even checked, so a guess during the wait tells nothing; and
        // it counts as one more wrong try, so hammering only waits longer.
        guard.throttle.failed(at);
        let wait = guard.throttle.wait(at).unwrap_or(wait);
        let secs = wait.as_secs_f64().ceil() as u64;
        let message = format!("Too many wrong tokens: try again in {secs} s.");
        let page = form(&ctx, next, Some(&message));
        return Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            page,
        )
            .into_response());
    }
    match guard.session_cookie(now) {
        Some(cookie) if guard.is_token(f.token.trim()) => {
            guard.throttle.succeeded();
            Ok((jar.add(cookie), Redirect::to(next)).into_response())
        }
        Some(_) => {
            guard.throttle.failed(at);
            tracing::info!("sign-in refused: wrong token");
            let page = form(&ctx, next, Some("That is not the token."));
            Ok((StatusCode::UNAUTHORIZED, page).into_response())
        }
        None => Ok(Redirect::to(next).into_response()),
    }
}

/// `POST /logout`.
pub async fn logout(
    ctx: Ctx,
    jar: CookieJar,
    Form(f): Form<csrf::CsrfForm>,
) -> Result<Response, PageError> {
    csrf::verify(&ctx.csrf, &f.csrf)?;
    let gone = Cookie::build(SESSION_COOKIE).path("/").build();
    Ok((jar.remove(gone), Redirect::to("/login")).into_response())
}
