//! An event as people plan it: the board (rows × four tiles, each with its
//! activity, points, required count and capability modifiers), the teams
//! with their players and weekly schedules, and the activities.

use std::collections::{BTreeSet, HashMap};

use maud::{Markup, html};
use workload::Event;
use workload::event::{Activity, Team, Tile};

use crate::views::format;

/// The whole event; `download` is where its JSON is.
pub fn event(e: &Event, download: &str) -> Markup {
    let activities: HashMap<&str, &Activity> =
        e.activities.iter().map(|a| (a.key.as_str(), a)).collect();
    html! {
        div.heading {
            h1 { (e.name) }
            a.button href=(download) download { "Download JSON" }
        }
        dl.facts {
            dt { "Starts" } dd { (format!("{:?}", e.start.day)) " " (e.start.time) " (players' local time)" }
            dt { "Lasts" } dd { (format::span(u64::from(e.duration_seconds))) }
            dt { "Next row unlocks at" } dd { (e.unlock_threshold) " points of a row" }
            dt { "Board" } dd { (e.rows.len()) " rows × 4 tiles" }
            dt { "Teams" } dd { (e.teams.len()) }
        }
        section {
            h2 { "Board" }
            div.board {
                @for (r, row) in e.rows.iter().enumerate() {
                    div.row {
                        div.rowlabel { "row " (r + 1) }
                        @for tile in &row.tiles { (tile_card(tile, &activities)) }
                    }
                }
            }
        }
        section {
            h2 { "Teams" }
            div.teams { @for t in &e.teams { (team(t)) } }
        }
        section {
            h2 { "Activities" }
            div.scroll { table {
                thead { tr { th { "Activity" } th { "Who" } th { "Attempts" } th { "Drops" } } }
                tbody { @for a in &e.activities {
                    tr {
                        td { (a.name) " " code.muted { (a.key) } }
                        td { (who(a)) }
                        td { @for d in &a.attempts {
                            div { (d.name) ": " (d.seconds) " ± " (d.variance) " s" }
                        } }
                        td { (drops(a).into_iter().collect::<Vec<_>>().join(", ")) }
                    }
                } }
            } }
        }
    }
}

fn who(a: &Activity) -> String {
    match (a.solo, a.group) {
        (true, Some(g)) => format!("solo or groups of {}–{}", g.min, g.max),
        (false, Some(g)) => format!("groups of {}–{}", g.min, g.max),
        (true, None) => "solo".into(),
        (false, None) => "nobody".into(),
    }
}

/// Every drop key an activity can grant.
fn drops(a: &Activity) -> BTreeSet<&str> {
    a.attempts
        .iter()
        .flat_map(|d| &d.outcomes)
        .flat_map(|o| &o.grants)
        .map(|g| g.drop.as_str())
        .collect()
}

fn tile_card(tile: &Tile, activities: &HashMap<&str, &Activity>) -> Markup {
    html! {
        div class=(format!("tile p{}", tile.points.min(4))) {
            div.points { (tile.points) " pt" }
            @for rule in &tile.rules {
                @let activity = activities.get(rule.activity.as_str());
                @let all = activity.map(|a| drops(a)).unwrap_or_default();
                div.rule {
                    strong { (activity.map(|a| a.name.as_str()).unwrap_or(rule.activity.as_str())) }
                    @if tile.required > 1 { span.req { " ×" (tile.required) } }
                    @if rule.accepts.iter().map(String::as_str).collect::<BTreeSet<_>>() != all {
                        div.small { "only " (rule.accepts.join(", ")) }
                    }
                    @if !rule.requires.is_empty() {
                        div.small.needs { "needs " (rule.requires.join(", ")) }
                    }
                    @for m in &rule.modifiers {
                        div.small.modifier { (m.capability) ":"
                            @if m.time != 1.0 { " time " (format::factor(m.time)) }
                            @if m.probability != 1.0 { " chance " (format::factor(m.probability)) } }
                    }
                }
            }
        }
    }
}

fn team(t: &Team) -> Markup {
    html! {
        div.team {
            h3 { (t.name) " " span.muted.small { (format!("{:?}", t.strategy)) } }
            div.scroll { table {
                thead { tr { th { "Player" } th.num { "Skill" } th { "Capabilities" } th { "Online (weekly, local time)" } } }
                tbody { @for p in &t.players {
                    tr {
                        td { (p.name) }
                        td.num { (format::factor(p.skill)) }
                        td { (p.capabilities.join(", ")) }
                        td { @if p.sessions.is_empty() { span.muted { "always" } }
                            @for s in &p.sessions {
                                div { (format!("{:?}", s.day)) " " (s.start) " for " (format::span(u64::from(s.minutes) * 60)) }
                            } }
                    }
                } }
            } }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spring_league_draws_every_tile_and_player() {
        let e = Event::spring_league();
        let html = event(&e, "/x.json").into_string();
        assert_eq!(html.matches("class=\"tile ").count(), e.rows.len() * 4);
        let players: usize = e.teams.iter().map(|t| t.players.len()).sum();
        assert!(players > 0);
        for t in &e.teams {
            for p in &t.players {
                assert!(html.contains(&p.name), "{}", p.name);
            }
        }
        assert!(html.contains("dhl: time ×0.88"), "modifiers shown");
        assert!(html.contains("needs ds2"), "requirements shown");
    }
}
