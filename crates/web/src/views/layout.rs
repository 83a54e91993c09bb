//! The page shell every page shares: head, navigation, sign-out, and the
//! [`Ctx`] a handler needs to render forms (this browser's CSRF token).
//! Templates are maud: every interpolated value is HTML-escaped.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use maud::{DOCTYPE, Markup, html};

use crate::csrf::{CSRF_FIELD, CsrfToken};

/// Which navigation entry a page belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nav {
    Batches,
    Queue,
    NewBatch,
    Events,
    Compare,
    None,
}

/// What a page needs from the request: the CSRF token for its forms, and
/// whether a sign-out button makes sense.
#[derive(Clone, Debug)]
pub struct Ctx {
    pub csrf: CsrfToken,
    pub signed_in: bool,
}

/// Set by the auth layer for requests that passed the token check.
#[derive(Clone, Copy, Debug)]
pub struct SignedIn;

impl<S: Send + Sync> FromRequestParts<S> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Ctx {
            // The CSRF layer wraps every route; a missing token only means a
            // form posted from this page will be refused.
            csrf: parts
                .extensions
                .get::<CsrfToken>()
                .cloned()
                .unwrap_or_else(|| CsrfToken(String::new())),
            signed_in: parts.extensions.get::<SignedIn>().is_some(),
        })
    }
}

impl Ctx {
    /// The hidden field every state-changing form carries.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name=(CSRF_FIELD) value=(self.csrf.0); }
    }
}

/// A whole page.
pub fn page(ctx: Option<&Ctx>, title: &str, nav: Nav, body: Markup) -> Markup {
    let item = |target: Nav, href: &str, label: &str| {
        html! {
            @if target == nav {
                a.active href=(href) aria-current="page" { (label) }
            } @else {
                a href=(href) { (label) }
            }
        }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · batchline" }
                link rel="stylesheet" href="/assets/style.css";
                link rel="icon" href="/assets/favicon.svg" type="image/svg+xml";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/batches" { "batchline" }
                    nav {
                        (item(Nav::Batches, "/batches", "Batches"))
                        (item(Nav::Queue, "/queue", "Queue"))
                        (item(Nav::NewBatch, "/batches/new", "New batch"))
                        (item(Nav::Events, "/events", "Events"))
                        (item(Nav::Compare, "/compare", "Compare"))
                    }
                    @if let Some(ctx) = ctx.filter(|c| c.signed_in) {
                        form.signout method="post" action="/logout" {
                            (ctx.csrf_field())
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The page an error answers with.
pub fn error_page(status: StatusCode, message: &str) -> Markup {
    let title = status.canonical_reason().unwrap_or("Error");
    page(
        None,
        title,
        Nav::None,
        html! {
            h1 { (status.as_u16()) " " (title) }
            p.error role="alert" { (message) }
            p { a href="/batches" { "Back to the batches" } }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let html = error_page(StatusCode::NOT_FOUND, "<script>alert(1)</script>").into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
