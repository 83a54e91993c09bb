//! Small pieces several pages show: a batch's state badge and progress,
//! the event it ran, paging links, problem lists.

use maud::{Markup, html};
use pipeline::status::{BatchStatus, State};

use crate::data::EventRef;
use crate::views::format;

/// `SUCCESS`, `FAILURE`, `running`, … as a coloured badge.
pub fn state_badge(state: State) -> Markup {
    let class = match state {
        State::Success => "badge ok",
        State::Failure => "badge bad",
        State::Pending | State::Cancelling | State::Cancelled => "badge idle",
        _ => "badge busy",
    };
    html! { span class=(class) data-state=(state.as_str()) { (state.as_str()) } }
}

/// Chunks done out of all, as a bar and in numbers.
pub fn progress(s: &BatchStatus) -> Markup {
    html! {
        span.progress {
            progress value=(s.completed) max=(s.chunks.max(1)) {}
            span.num { (format::count(i64::from(s.completed))) " / " (format::count(i64::from(s.chunks))) }
        }
    }
}

/// Attempts, with retries when there were any.
pub fn attempts(s: &BatchStatus) -> Markup {
    html! {
        (format::count(s.attempts))
        @if s.retries > 0 {
            span.retries { " (" (s.retries) " " (if s.retries == 1 { "retry" } else { "retries" }) ")" }
        }
    }
}

/// The event a batch ran, linked when it is in the library.
pub fn event_link(event: &EventRef) -> Markup {
    html! {
        @match event {
            EventRef::Saved { id, name } => a href=(format!("/events/{id}")) { (name) },
            EventRef::Builtin { name } => span { (name) span.muted { " (built-in)" } },
            EventRef::Unsaved { name } => span { (name) span.muted { " (not in the library)" } },
            EventRef::None => span.muted { "no event (sum)" },
        }
    }
}

/// "« Newer · page 2 of 5 · Older »" links; `href(page)` builds each link.
pub fn pager(page: i64, pages: i64, href: impl Fn(i64) -> String) -> Markup {
    html! {
        @if pages > 1 {
            nav.pager aria-label="pages" {
                @if page > 1 { a href=(href(page - 1)) rel="prev" { "« Newer" } } @else { span.muted { "« Newer" } }
                span { "page " (page) " of " (pages) }
                @if page < pages { a href=(href(page + 1)) rel="next" { "Older »" } } @else { span.muted { "Older »" } }
            }
        }
    }
}

/// A list of problems, each on its own line.
pub fn problems(title: &str, items: &[String]) -> Markup {
    html! {
        div.problems role="alert" {
            p { strong { (title) } }
            ul { @for p in items { li { code { (p) } } } }
        }
    }
}
