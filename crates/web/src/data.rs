//! What each page shows, loaded once for both the HTML page and its JSON
//! twin under `/api/`: the structs here are the API's response bodies, and
//! the pages render them. Batch progress is [`BatchStatus`], the same
//! object `batchline status --json` prints.

use pipeline::status::{BatchStatus, batch_report, now_s};
use serde::{Deserialize, Serialize};
use store::catalog::{BatchFilter, ChunkDetail, ChunkFilter, EventInfo, VerdictFilter};
use store::{Catalog, Store, Uuid};
use workload::{Report, Summary, WorkloadSpec};

use crate::error::{Error, Result};
use crate::seed::Seed;

/// Batches per page of the list.
pub const BATCHES_PER_PAGE: i64 = 25;
/// Chunks shown on a batch page (the API pages through all of them).
pub const CHUNKS_PER_PAGE: i64 = 100;
/// Events per page of the library.
pub const EVENTS_PER_PAGE: i64 = 50;
/// Batches one comparison may hold.
pub const MAX_COMPARED: usize = 8;

/// The list's filters, as the query string carries them.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct BatchQuery {
    pub name: Option<String>,
    /// `any` (default), `success`, `failure` or `unfinished`.
    pub verdict: Option<String>,
    /// Only the batches of this saved event.
    pub event: Option<Uuid>,
    /// 1-based.
    pub page: Option<i64>,
}

impl BatchQuery {
    pub fn verdict_filter(&self) -> Result<VerdictFilter> {
        Ok(match self.verdict.as_deref().unwrap_or("any") {
            "" | "any" => VerdictFilter::Any,
            "success" => VerdictFilter::Success,
            "failure" => VerdictFilter::Failure,
            "unfinished" => VerdictFilter::Unfinished,
            "cancelled" => VerdictFilter::Cancelled,
            other => {
                return Err(Error::BadRequest(format!(
                    "verdict must be any, success, failure, cancelled or unfinished, not {other:?}"
                )));
            }
        })
    }

    pub fn page(&self) -> i64 {
        self.page.unwrap_or(1).max(1)
    }

    /// The query string of this filter on another page.
    pub fn to_query(&self, page: i64) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if let Some(name) = self.name.as_deref().filter(|n| !n.is_empty()) {
            q.append_pair("name", name);
        }
        if let Some(v) = self
            .verdict
            .as_deref()
            .filter(|v| !v.is_empty() && *v != "any")
        {
            q.append_pair("verdict", v);
        }
        if let Some(e) = self.event {
            q.append_pair("event", &e.to_string());
        }
        if page > 1 {
            q.append_pair("page", &page.to_string());
        }
        q.finish()
    }
}

/// One row of the batch list.
#[derive(Clone, Debug, Serialize)]
pub struct BatchRow {
    #[serde(flatten)]
    pub status: BatchStatus,
    pub workload: String,
    pub event_name: Option<String>,
}

/// Puts the batches of one submission (created in one transaction, so at
/// the same instant) in their order, `name-1`, `name-2`, … `name-10`, as
/// their seeds go; the store gives them newest first, but in no particular
/// order among themselves. The sort is stable, so the rest keep theirs.
fn submission_order(batches: &mut [store::catalog::BatchListing]) {
    fn numbered(name: &str) -> (&str, Option<u64>) {
        match name.rsplit_once('-') {
            Some((stem, n)) => match n.parse() {
                Ok(n) => (stem, Some(n)),
                Err(_) => (name, None),
            },
            None => (name, None),
        }
    }
    batches.sort_by(|a, b| {
        let (a_at, b_at) = (a.progress.created_at, b.progress.created_at);
        b_at.total_cmp(&a_at)
            .then_with(|| numbered(&a.progress.name).cmp(&numbered(&b.progress.name)))
    });
}

/// `GET /api/batches`.
#[derive(Clone, Debug, Serialize)]
pub struct BatchList {
    pub batches: Vec<BatchRow>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
    pub per_page: i64,
}

impl BatchList {
    /// Whether anything on this page may still change.
    pub fn live(&self) -> bool {
        self.batches.iter().any(|b| !b.status.state.is_final())
    }
}

pub async fn batch_list<S: Catalog>(store: &S, query: &BatchQuery) -> Result<BatchList> {
    let page = query.page();
    let filter = BatchFilter {
        name: query.name.clone().filter(|n| !n.trim().is_empty()),
        verdict: query.verdict_filter()?,
        event: query.event,
        offset: (page - 1).saturating_mul(BATCHES_PER_PAGE),
        limit: BATCHES_PER_PAGE,
    };
    let mut found = store.list_batches(&filter).await?;
    submission_order(&mut found.batches);
    let now = now_s();
    Ok(BatchList {
        batches: found
            .batches
            .into_iter()
            .map(|b| BatchRow {
                status: BatchStatus::new(&b.progress, now),
                workload: b.kind,
                event_name: b.event_name,
            })
            .collect(),
        total: found.total,
        page,
        pages: (found.total + BATCHES_PER_PAGE - 1) / BATCHES_PER_PAGE,
        per_page: BATCHES_PER_PAGE,
    })
}

/// Which event a batch ran.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventRef {
    /// A saved event of the library.
    Saved { id: Uuid, name: String },
    /// The built-in Spring League Bingo.
    Builtin { name: String },
    /// An event that is not in the library (e.g. `submit --event FILE`);
    /// the batch's snapshot still has it.
    Unsaved { name: String },
    /// The `sum` workload runs no event.
    None,
}

/// A batch's aggregate, read out.
#[derive(Clone, Debug, Serialize)]
pub struct BatchResult {
    pub report: Report,
    pub duplicates_dropped: i64,
}

/// `GET /api/batches/{id}`.
#[derive(Clone, Debug, Serialize)]
pub struct BatchDetail {
    #[serde(flatten)]
    pub status: BatchStatus,
    #[serde(flatten)]
    pub seed: Seed,
    pub chunk_size: i32,
    pub workload: String,
    pub event: EventRef,
    /// The verifier's line.
    pub verdict_line: Option<String>,
    pub result: Option<BatchResult>,
    /// The first chunks, by number (`/api/batches/{id}/chunks` pages through all).
    pub chunks: Vec<ChunkDetail>,
    pub chunks_total: i64,
}

fn not_found(id: Uuid) -> Error {
    Error::NotFound(format!("no batch {id}"))
}

pub async fn batch_detail<S: Store + Catalog>(store: &S, id: Uuid) -> Result<BatchDetail> {
    let batch = store.batch(id).await?.ok_or_else(|| not_found(id))?;
    let progress = store
        .progress(Some(id), 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| not_found(id))?;
    let spec: Option<WorkloadSpec> = serde_json::from_str(&batch.workload).ok();
    let builtin = spec.as_ref() == Some(&WorkloadSpec::bingo_default());
    let event = match (store.batch_event(id).await?, &spec) {
        (Some(saved), _) => EventRef::Saved {
            id: saved.id,
            name: saved.name,
        },
        (None, Some(WorkloadSpec::Bingo { event })) if builtin => EventRef::Builtin {
            name: event.name.clone(),
        },
        (None, Some(WorkloadSpec::Bingo { event })) => EventRef::Unsaved {
            name: event.name.clone(),
        },
        _ => EventRef::None,
    };
    let result = match store.batch_result(id).await? {
        Some((json, duplicates_dropped)) => {
            let summary: Summary = serde_json::from_str(&json)
                .map_err(|e| Error::Internal(format!("batch {id}: stored aggregate: {e}")))?;
            Some(BatchResult {
                report: batch_report(&batch.workload, &summary),
                duplicates_dropped,
            })
        }
        None => None,
    };
    let chunks = store
        .chunk_details(
            id,
            ChunkFilter {
                problems_only: false,
                offset: 0,
                limit: CHUNKS_PER_PAGE,
            },
        )
        .await?;
    Ok(BatchDetail {
        status: BatchStatus::new(&progress, now_s()),
        seed: Seed(batch.seed),
        chunk_size: batch.chunk_size,
        workload: spec
            .as_ref()
            .map(|s| s.name())
            .unwrap_or("unknown")
            .to_string(),
        event,
        verdict_line: store.verdict(id).await?.map(|v| v.line),
        result,
        chunks: chunks.chunks,
        chunks_total: chunks.total,
    })
}

/// `GET /api/batches/{id}/chunks`.
#[derive(Clone, Debug, Serialize)]
pub struct ChunkList {
    pub chunks: Vec<ChunkDetail>,
    pub total: i64,
}

/// The chunk listing's query string.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ChunkQuery {
    pub problems: bool,
    pub offset: i64,
    pub limit: Option<i64>,
}

pub async fn chunk_list<S: Store + Catalog>(
    store: &S,
    id: Uuid,
    q: &ChunkQuery,
) -> Result<ChunkList> {
    store.batch(id).await?.ok_or_else(|| not_found(id))?;
    let page = store
        .chunk_details(
            id,
            ChunkFilter {
                problems_only: q.problems,
                offset: q.offset.max(0),
                limit: q.limit.unwrap_or(CHUNKS_PER_PAGE).clamp(1, 1_000),
            },
        )
        .await?;
    Ok(ChunkList {
        chunks: page.chunks,
        total: page.total,
    })
}

/// `GET /api/events`.
#[derive(Clone, Debug, Serialize)]
pub struct EventList {
    pub events: Vec<EventInfo>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
}

pub async fn event_list<S: Catalog>(store: &S, page: i64) -> Result<EventList> {
    let page = page.max(1);
    let found = store
        .list_events((page - 1).saturating_mul(EVENTS_PER_PAGE), EVENTS_PER_PAGE)
        .await?;
    Ok(EventList {
        events: found.events,
        total: found.total,
        page,
        pages: (found.total + EVENTS_PER_PAGE - 1) / EVENTS_PER_PAGE,
    })
}

/// `GET /api/events/{id}`: the summary and the event itself.
#[derive(Clone, Debug, Serialize)]
pub struct EventDetail {
    #[serde(flatten)]
    pub summary: EventInfo,
    pub event: workload::Event,
}

pub async fn event_detail<S: Catalog>(store: &S, id: Uuid) -> Result<EventDetail> {
    let stored = store
        .event(id)
        .await?
        .ok_or_else(|| Error::NotFound(format!("no saved event {id}")))?;
    let event = crate::events::event_of(&stored.workload)
        .ok_or_else(|| Error::Internal(format!("saved event {id} is not a bingo event")))?;
    Ok(EventDetail {
        summary: stored.info,
        event,
    })
}

/// Two or more batches side by side.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    pub batches: Vec<Compared>,
}

/// One batch of a comparison.
#[derive(Clone, Debug, Serialize)]
pub struct Compared {
    #[serde(flatten)]
    pub status: BatchStatus,
    #[serde(flatten)]
    pub seed: Seed,
    pub event: EventRef,
    pub result: Option<BatchResult>,
    /// Per team of a bingo result: the win rate's 95 % Wilson interval.
    pub win_rate_ci95: Vec<(f64, f64)>,
    /// The share of tied runs' 95 % Wilson interval, when ties were counted.
    pub tie_rate_ci95: Option<(f64, f64)>,
}

pub async fn comparison<S: Store + Catalog>(store: &S, ids: &[Uuid]) -> Result<Comparison> {
    if ids.len() > MAX_COMPARED {
        return Err(Error::BadRequest(format!(
            "compare at most {MAX_COMPARED} batches at once, not {}",
            ids.len()
        )));
    }
    let mut batches = Vec::with_capacity(ids.len());
    for id in ids {
        let d = batch_detail(store, *id).await?;
        let (win_rate_ci95, tie_rate_ci95) = match d.result.as_ref().map(|r| &r.report) {
            Some(Report::Bingo(b)) => (
                b.teams
                    .iter()
                    .map(|t| crate::stats::wilson95(t.wins, b.runs))
                    .collect(),
                b.tied_runs.map(|n| crate::stats::wilson95(n, b.runs)),
            ),
            _ => (Vec::new(), None),
        };
        batches.push(Compared {
            status: d.status,
            seed: d.seed,
            event: d.event,
            result: d.result,
            win_rate_ci95,
            tie_rate_ci95,
        });
    }
    Ok(Comparison { batches })
}
