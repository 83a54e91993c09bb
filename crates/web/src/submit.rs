//! Starting batches from the console: the form and the API's JSON become a
//! [`SubmitRequest`] within the console's [`Limits`], and go through
//! `pipeline::submit::submit`, the code path of `batchline submit` —
//! refused while the broker does not answer ([`submit`]), so that no batch
//! is created that nothing could start. Tenant, priority and weight are
//! read by `Share::parse`, as the command line's; the estimated run time
//! comes from `pipeline::estimate`, and over an hour the batch starts only
//! once confirmed ([`NewBatchForm::confirmed`], [`NewBatchRequest::confirm`]).

use broker::{Broker, Queue};
use serde::Deserialize;
use store::{Catalog, Share, Store, Uuid, chunk_count};
use workload::WorkloadSpec;

use pipeline::estimate::Estimate;
use pipeline::submit::{DEFAULT_CHUNK_SIZE, SubmitRequest, Submitted};

use crate::error::{Error, Result};
use crate::events::event_of;
use crate::seed::SeedIn;
use crate::settings::Limits;
use crate::views::format;

/// What a batch runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The built-in Spring League Bingo.
    Builtin,
    /// The `sum` workload (measures the pipeline itself).
    Sum,
    Saved(Uuid),
}

impl Source {
    /// `builtin`, `sum`, or a saved event's id.
    pub fn parse(text: &str) -> Result<Source> {
        match text.trim() {
            "" | "builtin" => Ok(Source::Builtin),
            "sum" => Ok(Source::Sum),
            id => id.parse().map(Source::Saved).map_err(|_| {
                Error::BadRequest(format!(
                    "event must be \"builtin\", \"sum\" or a saved event's id, not {id:?}"
                ))
            }),
        }
    }
}

/// The form's fields, as typed (so a refused form comes back as it was).
#[derive(Clone, Debug, Deserialize)]
#[serde(default)]
pub struct NewBatchForm {
    pub event: String,
    pub runs: String,
    pub chunk_size: String,
    pub seed: String,
    pub count: String,
    pub name: String,
    /// Empty: the default tenant.
    pub tenant: String,
    /// `high`, `normal` or `low`.
    pub priority: String,
    /// Instead of the priority; empty: none.
    pub weight: String,
    /// `yes` once the person confirmed a run time over an hour.
    pub confirm: String,
    pub csrf: String,
}

impl Default for NewBatchForm {
    fn default() -> Self {
        NewBatchForm {
            event: "builtin".into(),
            runs: "20000".into(),
            chunk_size: DEFAULT_CHUNK_SIZE.to_string(),
            seed: String::new(),
            count: "1".into(),
            name: String::new(),
            tenant: String::new(),
            priority: "normal".into(),
            weight: String::new(),
            confirm: String::new(),
            csrf: String::new(),
        }
    }
}

/// `POST /api/batches`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewBatchRequest {
    /// `builtin` (default), `sum`, or a saved event's id.
    #[serde(default)]
    pub event: Option<String>,
    pub runs: i64,
    #[serde(default)]
    pub chunk_size: Option<i32>,
    /// A number, or a string of one (JSON numbers past 2^53 lose digits).
    #[serde(default)]
    pub seed: Option<SeedIn>,
    #[serde(default)]
    pub count: Option<usize>,
    #[serde(default)]
    pub name: Option<String>,
    /// The default tenant unless given.
    #[serde(default)]
    pub tenant: Option<String>,
    /// `high`, `normal` (default) or `low`.
    #[serde(default)]
    pub priority: Option<String>,
    /// A weight instead of a priority: 0.01 to 100, normal is 1.
    #[serde(default)]
    pub weight: Option<f64>,
    /// Start it even when the estimated run time is over an hour.
    #[serde(default)]
    pub confirm: bool,
}

/// A checked request, before its event is loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub source: Source,
    pub runs: i64,
    pub chunk_size: i32,
    pub seed: Option<i64>,
    pub count: usize,
    pub name: Option<String>,
    pub share: Share,
}

/// A problem of `Share::parse` as a sentence of the console: capitalized,
/// a full stop, and no command-line flags.
fn sentence(problem: &str) -> String {
    let text = problem.replace("--", "");
    let mut chars = text.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with('.') {
        out.push('.');
    }
    out
}

/// Tenant, priority and weight as the form has them: a weight replaces
/// the priority when that is left at `normal`, and a weight beside another
/// priority is refused as on the command line. Each problem is reported
/// apart, so that every one shows at once.
fn form_share(
    tenant: &str,
    priority: &str,
    weight: &str,
    problems: &mut Vec<String>,
) -> Option<Share> {
    let priority = Some(priority).filter(|p| weight.trim().is_empty() || p.trim() != "normal");
    let tenant_ok = Share::parse(Some(tenant), None, None)
        .map_err(|e| problems.push(sentence(&e)))
        .is_ok();
    let weight_ok = Share::parse(None, priority, Some(weight))
        .map_err(|e| problems.push(sentence(&e)))
        .is_ok();
    if tenant_ok && weight_ok {
        Share::parse(Some(tenant), priority, Some(weight)).ok()
    } else {
        None
    }
}

/// Whether a form's or request's values are a share, as `form_share` says.
fn share_problems(share: &std::result::Result<Share, String>) -> Vec<String> {
    match share {
        Ok(_) => Vec::new(),
        Err(e) => vec![sentence(e)],
    }
}

/// A whole number as typed in the form (`20,000`, `20 000` and `20_000`
/// too), or a problem in the form's words.
fn number<T: std::str::FromStr>(field: &str, text: &str, problems: &mut Vec<String>) -> Option<T> {
    let t = text.trim().replace([',', '_', ' '], "");
    match t.parse() {
        Ok(v) => Some(v),
        Err(_) if t.is_empty() => {
            problems.push(format!("{field}: enter a whole number."));
            None
        }
        Err(_) => {
            problems.push(format!(
                "{field}: enter a whole number, not \"{}\".",
                text.trim()
            ));
            None
        }
    }
}

impl NewBatchForm {
    /// The plan, or every problem of the form at once.
    pub fn plan(&self, limits: &Limits) -> Result<Plan> {
        let mut problems = Vec::new();
        let source = Source::parse(&self.event)
            .map_err(|_| problems.push("Event: choose one from the list.".to_string()))
            .ok();
        let runs = number("Runs per batch", &self.runs, &mut problems);
        let chunk_size = number("Chunk size", &self.chunk_size, &mut problems);
        let seed = match self.seed.trim() {
            "" => Some(None),
            _ => number("Seed", &self.seed, &mut problems).map(Some),
        };
        let count = number("Batches", &self.count, &mut problems);
        let name = Some(self.name.trim().to_string()).filter(|n| !n.is_empty());
        let share = form_share(&self.tenant, &self.priority, &self.weight, &mut problems);
        problems.extend(limit_problems(
            runs,
            chunk_size,
            count,
            name.as_deref(),
            limits,
        ));
        match (source, runs, chunk_size, seed, count, share) {
            (Some(source), Some(runs), Some(chunk_size), Some(seed), Some(count), Some(share))
                if problems.is_empty() =>
            {
                Ok(Plan {
                    source,
                    runs,
                    chunk_size,
                    seed,
                    count,
                    name,
                    share,
                })
            }
            _ => Err(Error::Refused(problems)),
        }
    }

    /// Whether the person confirmed a run time over an hour.
    pub fn confirmed(&self) -> bool {
        matches!(self.confirm.trim(), "yes" | "on" | "true")
    }
}

impl NewBatchRequest {
    pub fn plan(&self, limits: &Limits) -> Result<Plan> {
        let weight = self.weight.map(|w| w.to_string());
        let share = Share::parse(
            self.tenant.as_deref(),
            self.priority.as_deref(),
            weight.as_deref(),
        );
        let plan = Plan {
            source: Source::parse(self.event.as_deref().unwrap_or("builtin"))?,
            runs: self.runs,
            chunk_size: self.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE),
            seed: self.seed.map(|s| s.0),
            count: self.count.unwrap_or(1),
            name: self.name.clone(),
            share: share.clone().unwrap_or_default(),
        };
        plan.checked(limits, share_problems(&share))
    }
}

/// What is wrong with the values that could be read, each a sentence in
/// the console's words and naming the limit; a value that could not be
/// read (`None`) was reported already.
fn limit_problems(
    runs: Option<i64>,
    chunk_size: Option<i32>,
    count: Option<usize>,
    name: Option<&str>,
    limits: &Limits,
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(runs) = runs.filter(|r| !(1..=limits.max_runs).contains(r)) {
        problems.push(format!(
            "Runs per batch: between 1 and {}, not {}.",
            format::count(limits.max_runs),
            format::count(runs)
        ));
    }
    match (runs, chunk_size) {
        (_, Some(size)) if size < 1 => {
            problems.push(format!(
                "Chunk size: at least 1, not {}.",
                format::count(i64::from(size))
            ));
        }
        (Some(runs), Some(size)) if runs >= 1 => {
            let chunks = i64::from(chunk_count(runs, size));
            if chunks > limits.max_chunks {
                problems.push(format!(
                    "Chunk size: {} runs in chunks of {} would make {} chunks, and a batch may have at most {}. Choose a chunk size of at least {}.",
                    format::count(runs),
                    format::count(i64::from(size)),
                    format::count(chunks),
                    format::count(limits.max_chunks),
                    format::count((runs + limits.max_chunks - 1) / limits.max_chunks.max(1)),
                ));
            }
        }
        _ => {}
    }
    if let Some(count) = count.filter(|c| !(1..=limits.max_batches).contains(c)) {
        problems.push(format!(
            "Batches: between 1 and {}, not {}.",
            limits.max_batches,
            format::count(count as i64)
        ));
    }
    if let Some(problem) = name.and_then(workload::batch_name_problem) {
        problems.push(format!("Name {problem}."));
    }
    problems
}

impl Plan {
    /// Within the console's limits; each problem says the limit. `more`:
    /// the problems found already.
    fn checked(self, limits: &Limits, more: Vec<String>) -> Result<Plan> {
        let mut problems = limit_problems(
            Some(self.runs),
            Some(self.chunk_size),
            Some(self.count),
            self.name.as_deref(),
            limits,
        );
        problems.extend(more);
        if problems.is_empty() {
            Ok(self)
        } else {
            Err(Error::Refused(problems))
        }
    }

    /// The request `batchline submit` would make, with the event loaded.
    pub async fn request<S: Catalog>(&self, store: &S) -> Result<SubmitRequest> {
        let workload = match self.source {
            Source::Builtin => WorkloadSpec::bingo_default(),
            Source::Sum => WorkloadSpec::Sum,
            Source::Saved(id) => {
                let stored = store.event(id).await?.ok_or_else(|| {
                    Error::Refused(vec![format!(
                        "Event: no saved event {id}; it may have been deleted."
                    )])
                })?;
                let event = event_of(&stored.workload).ok_or_else(|| {
                    Error::Internal(format!("saved event {id} is not a bingo event"))
                })?;
                WorkloadSpec::Bingo { event }
            }
        };
        Ok(SubmitRequest {
            name: self.name.clone(),
            runs: self.runs,
            chunk_size: self.chunk_size,
            seed: self.seed,
            workload,
            count: self.count,
            share: self.share.clone(),
        })
    }
}

/// The run time `req` is estimated to take against the queue now
/// (`pipeline::estimate`).
pub async fn estimate<S: Store>(store: &S, req: &SubmitRequest) -> Result<Estimate> {
    pipeline::estimate::estimate(store, req)
        .await
        .map_err(Error::from)
}

/// Submits `req` as `batchline submit` does, once the broker answers:
/// while it is unreachable (the console started without it, or it went
/// away) the batch is refused with [`Error::BrokerUnavailable`] before
/// anything is written.
pub async fn submit<B: Broker, S: Store>(
    broker: &B,
    store: &S,
    req: &SubmitRequest,
) -> Result<Submitted> {
    match broker.queue_exists(Queue::Work).await {
        Ok(_) => {}
        Err(e) if e.can_be_retried() => return Err(Error::BrokerUnavailable(e)),
        Err(e) => return Err(Error::Internal(e.to_string())),
    }
    pipeline::submit::submit(broker, store, req)
        .await
        .map_err(Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_event_bytes: 1 << 20,
        max_runs: 1_000_000,
        max_chunks: 1_000,
        max_batches: 5,
    };

    fn form(runs: &str, chunk: &str, count: &str) -> NewBatchForm {
        NewBatchForm {
            runs: runs.into(),
            chunk_size: chunk.into(),
            count: count.into(),
            ..NewBatchForm::default()
        }
    }

    fn refused(r: Result<Plan>) -> Vec<String> {
        match r {
            Err(Error::Refused(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_good_form_becomes_a_plan() {
        let plan = NewBatchForm {
            seed: " 42 ".into(),
            name: " spring ".into(),
            ..form("20,000", "1000", "2")
        }
        .plan(&LIMITS)
        .unwrap();
        assert_eq!(
            plan,
            Plan {
                source: Source::Builtin,
                runs: 20_000,
                chunk_size: 1_000,
                seed: Some(42),
                count: 2,
                name: Some("spring".into()),
                share: Share::default(),
            }
        );
    }

    #[test]
    fn tenant_priority_and_weight_are_read_like_the_command_line() {
        let plan = NewBatchForm {
            tenant: " acme ".into(),
            priority: "high".into(),
            ..form("100", "10", "1")
        }
        .plan(&LIMITS)
        .unwrap();
        assert_eq!(
            (plan.share.tenant.as_str(), plan.share.weight),
            ("acme", 4.0)
        );
        // A weight replaces the priority left at normal.
        let plan = NewBatchForm {
            weight: "2.5".into(),
            ..form("100", "10", "1")
        }
        .plan(&LIMITS)
        .unwrap();
        assert_eq!(plan.share.weight, 2.5);
        // Every problem at once, in the form's words.
        let m = refused(
            NewBatchForm {
                tenant: "a b".into(),
                priority: "high".into(),
                weight: "2".into(),
                ..form("100", "10", "1")
            }
            .plan(&LIMITS),
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with("Tenant \"a b\" has ' '"), "{m:?}");
        assert_eq!(m[1], "Give a priority or a weight, not both.");
        let m = refused(
            NewBatchForm {
                priority: "urgent".into(),
                ..form("100", "10", "1")
            }
            .plan(&LIMITS),
        );
        assert!(
            m[0].starts_with("Priority \"urgent\" is not one of high, normal, low"),
            "{m:?}"
        );
        assert!(m.iter().all(|p| !p.contains("--")), "{m:?}");
        let m = refused(
            NewBatchForm {
                weight: "1000".into(),
                ..form("100", "10", "1")
            }
            .plan(&LIMITS),
        );
        assert_eq!(
            m,
            ["Weight \"1000\" is not a number from 0.01 to 100 (normal is 1)."]
        );
    }

    #[test]
    fn limits_are_named_in_the_refusal() {
        let m = refused(form("2000000", "10000", "1").plan(&LIMITS));
        assert_eq!(
            m,
            ["Runs per batch: between 1 and 1,000,000, not 2,000,000."]
        );
        let m = refused(form("100000", "10", "1").plan(&LIMITS));
        assert_eq!(
            m,
            [
                "Chunk size: 100,000 runs in chunks of 10 would make 10,000 chunks, and a batch may have at most 1,000. Choose a chunk size of at least 100."
            ]
        );
        let m = refused(form("100", "10", "6").plan(&LIMITS));
        assert_eq!(m, ["Batches: between 1 and 5, not 6."]);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        // Unreadable fields and out-of-range ones together.
        let m = refused(
            NewBatchForm {
                seed: "s".into(),
                name: "[x]".into(),
                ..form("lots", "0", "6")
            }
            .plan(&LIMITS),
        );
        assert_eq!(m.len(), 5, "{m:?}");
        assert!(
            m[0].starts_with("Runs per batch: enter a whole number"),
            "{m:?}"
        );
        assert!(m.iter().all(|p| !p.contains("--")), "{m:?}");
        let m = refused(form("0", "0", "0").plan(&LIMITS));
        assert_eq!(m.len(), 3, "{m:?}");
    }

    #[test]
    fn sources() {
        assert_eq!(Source::parse("").unwrap(), Source::Builtin);
        assert_eq!(Source::parse("sum").unwrap(), Source::Sum);
        let id = Uuid::new_v4();
        assert_eq!(Source::parse(&id.to_string()).unwrap(), Source::Saved(id));
        assert!(Source::parse("<script>").is_err());
    }
}
