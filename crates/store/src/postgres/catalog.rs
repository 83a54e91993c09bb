//! [`Catalog`] on Postgres: the web console's listings and its event
//! library (tables in `migrations/postgres/20261201000007_web_events.sql`).
//!
//! Listings page with `LIMIT/OFFSET` over the `created_at` index and count
//! matches in a second statement that skips the per-chunk aggregation.
//! "The batches of an event" compare snapshots as text: Postgres compares
//! the lengths first, so only same-sized snapshots are read in full.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, get, progress_of};
use crate::catalog::{
    BatchFilter, BatchListing, BatchPage, Catalog, ChunkDetail, ChunkFilter, ChunkPage,
    EventDeletion, EventInfo, EventPage, EventSave, NewEvent, StoredEvent,
};
use crate::error::from_pg;
use crate::{Error, Result, Uuid};

/// The batches a [`BatchFilter`] selects, as `b` joined with its verdict
/// `v`; `$1` name, `$2` verdict word, `$3` event id. A macro so both
/// statements that use it stay `&'static str`.
macro_rules! batches_matching {
    () => {
        "FROM batches AS b LEFT JOIN verdicts AS v ON v.batch_id = b.id
         WHERE ($1::text IS NULL OR strpos(lower(b.name), lower($1)) > 0)
           AND CASE $2::text
                 WHEN 'success' THEN v.success IS TRUE AND b.cancelled_at IS NULL
                 WHEN 'failure' THEN v.success IS FALSE
                 WHEN 'cancelled' THEN b.cancelled_at IS NOT NULL
                 WHEN 'unfinished' THEN v.batch_id IS NULL
                 ELSE true
               END
           AND ($3::uuid IS NULL
                OR b.workload = (SELECT e.workload FROM events AS e WHERE e.id = $3))"
    };
}

/// A batch's chunks a [`ChunkFilter`] selects: `$1` batch, `$2` problems only.
macro_rules! chunks_matching {
    () => {
        "FROM chunks WHERE batch_id = $1
           AND (NOT $2 OR attempts > 1 OR last_error IS NOT NULL OR status = 'failed')"
    };
}

/// An event's columns, `e`, with the number of batches that ran it.
macro_rules! event_columns {
    () => {
        "e.id, e.name, e.teams, e.rows, extract(epoch FROM e.created_at)::float8,
         (SELECT count(*) FROM batches AS b WHERE b.workload = e.workload)"
    };
}

/// SQLSTATE 23000, which the event triggers raise.
const INTEGRITY: &str = "23000";

fn listing(r: &PgRow) -> Result<BatchListing> {
    Ok(BatchListing {
        progress: progress_of(r)?,
        kind: get::<Option<String>>(r, 16)?.unwrap_or_default(),
        event_name: get(r, 17)?,
    })
}

fn event_info(r: &PgRow) -> Result<EventInfo> {
    Ok(EventInfo {
        id: get(r, 0)?,
        name: get(r, 1)?,
        teams: get(r, 2)?,
        rows: get(r, 3)?,
        created_at: get(r, 4)?,
        batches: get(r, 5)?,
    })
}

impl Catalog for PgStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(from_pg)?;
        Ok(())
    }

    async fn list_batches(&self, filter: &BatchFilter) -> Result<BatchPage> {
        let name = filter.name.as_deref().filter(|n| !n.is_empty());
        let verdict = filter.verdict.as_str();
        let total: i64 = sqlx::query_scalar(concat!("SELECT count(*) ", batches_matching!()))
            .bind(name)
            .bind(verdict)
            .bind(filter.event)
            .fetch_one(&self.pool)
            .await
            .map_err(from_pg)?;
        let rows = sqlx::query(concat!(
            "SELECT b.id, b.name, b.runs, b.chunks, extract(epoch FROM b.created_at)::float8,
                    coalesce(c.pending, 0)::int4, coalesce(c.running, 0)::int4,
                    coalesce(c.completed, 0)::int4, coalesce(c.failed, 0)::int4,
                    coalesce(c.attempts, 0)::int8,
                    EXISTS (SELECT 1 FROM batch_results AS r WHERE r.batch_id = b.id),
                    b.success, nullif(b.reason, ''), extract(epoch FROM b.verdict_at)::float8,
                    b.cancelled_at IS NOT NULL, coalesce(c.retries, 0)::int8, b.workload::json ->> 'kind', b.workload::json -> 'event' ->> 'name'
             FROM (SELECT b.id, b.name, b.runs, b.chunks, b.created_at, b.workload, b.cancelled_at,
                          v.success, v.reason, v.created_at AS verdict_at ",
            batches_matching!(),
            "     ORDER BY b.created_at DESC, b.id
                  LIMIT $4 OFFSET $5) AS b",
            chunk_counts!(),
            "ORDER BY b.created_at DESC, b.id"
        ))
        .bind(name)
        .bind(verdict)
        .bind(filter.event)
        .bind(filter.limit.max(0))
        .bind(filter.offset.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        let batches = rows.iter().map(listing).collect::<Result<_>>()?;
        Ok(BatchPage { total, batches })
    }

    async fn chunk_details(&self, batch_id: Uuid, filter: ChunkFilter) -> Result<ChunkPage> {
        let total: i64 = sqlx::query_scalar(concat!("SELECT count(*) ", chunks_matching!()))
            .bind(batch_id)
            .bind(filter.problems_only)
            .fetch_one(&self.pool)
            .await
            .map_err(from_pg)?;
        let rows = sqlx::query(concat!(
            "SELECT chunk, status, attempts, worker, last_error,
                    extract(epoch FROM updated_at)::float8,
                    extract(epoch FROM completed_at)::float8,
                    CASE WHEN status = 'running'
                         THEN extract(epoch FROM (lease_until - now()))::float8 END
                    ",
            chunks_matching!(),
            " ORDER BY chunk LIMIT $3 OFFSET $4"
        ))
        .bind(batch_id)
        .bind(filter.problems_only)
        .bind(filter.limit.max(0))
        .bind(filter.offset.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        let chunks = rows
            .iter()
            .map(|r| {
                Ok(ChunkDetail {
                    chunk: get(r, 0)?,
                    status: get(r, 1)?,
                    attempts: get(r, 2)?,
                    worker: get(r, 3)?,
                    last_error: get(r, 4)?,
                    updated_at: get(r, 5)?,
                    completed_at: get(r, 6)?,
                    lease_remaining_s: get(r, 7)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(ChunkPage { total, chunks })
    }

    async fn save_event(&self, event: &NewEvent) -> Result<EventSave> {
        let inserted: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO events (id, name, workload, teams, rows)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT ((md5(workload))) DO NOTHING
             RETURNING id",
        )
        .bind(event.id)
        .bind(&event.name)
        .bind(&event.workload)
        .bind(event.teams)
        .bind(event.rows)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
        if let Some(id) = inserted {
            return Ok(EventSave::Saved(id));
        }
        let existing: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM events WHERE md5(workload) = md5($1) AND workload = $1",
        )
        .bind(&event.workload)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
        existing.map(EventSave::AlreadySaved).ok_or_else(|| {
            Error::Invalid("another saved event has the same MD5 as this one".into())
        })
    }

    async fn list_events(&self, offset: i64, limit: i64) -> Result<EventPage> {
        let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(from_pg)?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM events AS e ORDER BY e.created_at DESC, e.id LIMIT $1 OFFSET $2"
        ))
        .bind(limit.max(0))
        .bind(offset.max(0))
        .fetch_all(&self.pool)
        .await
        .map_err(from_pg)?;
        let events = rows.iter().map(event_info).collect::<Result<_>>()?;
        Ok(EventPage { total, events })
    }

    async fn event(&self, id: Uuid) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            ", e.workload FROM events AS e WHERE e.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
        row.map(|r| {
            Ok(StoredEvent {
                info: event_info(&r)?,
                workload: r.try_get(6).map_err(from_pg)?,
            })
        })
        .transpose()
    }

    async fn delete_event(&self, id: Uuid) -> Result<EventDeletion> {
        match sqlx::query("DELETE FROM events WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
        {
            Ok(done) if done.rows_affected() == 0 => Ok(EventDeletion::NotFound),
            Ok(_) => Ok(EventDeletion::Deleted),
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(INTEGRITY) => {
                Ok(EventDeletion::InUse)
            }
            Err(e) => Err(from_pg(e)),
        }
    }

    async fn batch_event(&self, batch_id: Uuid) -> Result<Option<EventInfo>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            event_columns!(),
            " FROM batches AS x
              JOIN events AS e ON md5(e.workload) = md5(x.workload) AND e.workload = x.workload
              WHERE x.id = $1"
        ))
        .bind(batch_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(from_pg)?;
        row.as_ref().map(event_info).transpose()
    }
}
