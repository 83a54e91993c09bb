//! [`Catalog`]: what the web console reads and keeps beside the pipeline's
//! own tables — a library of saved bingo events, and listings of batches and
//! chunks with filters and paging.
//!
//! The pipeline's stages never use it, so it is a trait of its own next to
//! [`crate::Store`]. Only Postgres implements it (`postgres/catalog.rs`,
//! tables in `migrations/postgres/20261201000007_web_events.sql`): the web
//! console runs against the production store, not the embedded SQLite.
//!
//! Saved events are immutable. A saved event is the exact workload snapshot
//! a batch run from it stores, so "the event a batch ran" is found by
//! comparing snapshots; nothing links the two at submit time.

use std::future::Future;

use serde::Serialize;

use crate::{BatchProgress, Result, Uuid};

/// Which batches a listing shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchFilter {
    /// Case-insensitive substring of the batch name.
    pub name: Option<String>,
    pub verdict: VerdictFilter,
    /// Only batches that ran this saved event.
    pub event: Option<Uuid>,
    pub offset: i64,
    pub limit: i64,
}

/// Batches by verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VerdictFilter {
    #[default]
    Any,
    Success,
    Failure,
    /// No verdict yet.
    Unfinished,
    /// Cancelled by a person (whether its CANCELLED line is out yet or not).
    Cancelled,
}

impl VerdictFilter {
    /// The word the query string and the SQL use.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictFilter::Any => "any",
            VerdictFilter::Success => "success",
            VerdictFilter::Failure => "failure",
            VerdictFilter::Unfinished => "unfinished",
            VerdictFilter::Cancelled => "cancelled",
        }
    }
}

/// One batch in a listing: its progress, and what it runs.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchListing {
    pub progress: BatchProgress,
    /// The workload kind of its snapshot (`bingo`, `sum`).
    pub kind: String,
    /// The name of the bingo event in its snapshot.
    pub event_name: Option<String>,
}

/// A page of batches, newest first, and how many match in all.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchPage {
    pub total: i64,
    pub batches: Vec<BatchListing>,
}

/// Which chunks of a batch a listing shows, by chunk number.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChunkFilter {
    /// Only chunks that were retried, failed or recorded an error.
    pub problems_only: bool,
    pub offset: i64,
    pub limit: i64,
}

/// One chunk as the console shows it (and its API serializes it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChunkDetail {
    pub chunk: i32,
    /// `pending`, `running`, `completed` or `failed`.
    pub status: String,
    pub attempts: i32,
    /// The worker of the last claim.
    pub worker: Option<String>,
    /// The last failed attempt's error (kept after a successful retry).
    pub last_error: Option<String>,
    /// Seconds since the Unix epoch.
    pub updated_at: f64,
    pub completed_at: Option<f64>,
    /// Seconds left on a running chunk's lease (negative once expired).
    pub lease_remaining_s: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ChunkPage {
    pub total: i64,
    pub chunks: Vec<ChunkDetail>,
}

/// An event to save: the workload snapshot batches run from it will store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub id: Uuid,
    pub name: String,
    /// `{"kind":"bingo","event":{…}}`, exactly as `submit` stores it.
    pub workload: String,
    pub teams: i32,
    pub rows: i32,
}

/// A saved event without its body.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventInfo {
    pub id: Uuid,
    pub name: String,
    pub teams: i32,
    pub rows: i32,
    /// Seconds since the Unix epoch.
    pub created_at: f64,
    /// Batches that ran it; an event with any is kept.
    pub batches: i64,
}

/// A saved event with its workload snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    pub info: EventInfo,
    pub workload: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventPage {
    pub total: i64,
    pub events: Vec<EventInfo>,
}

/// What saving an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSave {
    Saved(Uuid),
    /// The same event was saved before, under this id; nothing changed.
    AlreadySaved(Uuid),
}

/// What deleting an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventDeletion {
    Deleted,
    /// A batch ran it: it stays.
    InUse,
    NotFound,
}

/// The web console's queries. Implementation: Postgres.
pub trait Catalog: Clone + Send + Sync + 'static {
    /// One round trip to the database (readiness).
    fn ping(&self) -> impl Future<Output = Result<()>> + Send;

    /// Batches matching `filter`, newest first, with their progress.
    fn list_batches(&self, filter: &BatchFilter) -> impl Future<Output = Result<BatchPage>> + Send;

    /// A batch's chunks matching `filter`, by chunk number.
    fn chunk_details(
        &self,
        batch_id: Uuid,
        filter: ChunkFilter,
    ) -> impl Future<Output = Result<ChunkPage>> + Send;

    /// Saves an event unless the same one is saved already.
    fn save_event(&self, event: &NewEvent) -> impl Future<Output = Result<EventSave>> + Send;

    /// Saved events, newest first.
    fn list_events(
        &self,
        offset: i64,
        limit: i64,
    ) -> impl Future<Output = Result<EventPage>> + Send;

    fn event(&self, id: Uuid) -> impl Future<Output = Result<Option<StoredEvent>>> + Send;

    /// Deletes an event no batch ran.
    fn delete_event(&self, id: Uuid) -> impl Future<Output = Result<EventDeletion>> + Send;

    /// The saved event a batch ran, if its snapshot is one.
    fn batch_event(&self, batch_id: Uuid)
    -> impl Future<Output = Result<Option<EventInfo>>> + Send;
}
