//! Claim holders' liveness, which Postgres itself ends with the process.
//!
//! A process that claims chunks ([`crate::Store::hold_claims`]) takes a
//! session-level advisory lock `(HOLDER_LOCK_CLASS, id)` on a connection of
//! its own, kept for as long as it runs, and its claims record `id` as the
//! chunk's holder. When the process dies its connection closes and Postgres
//! releases the lock at once. A claim that finds a chunk running under a
//! live lease tries that lock (`pg_try_advisory_xact_lock`, released at the
//! end of the claim's transaction): if it gets it, the holder is gone and
//! the chunk is taken now, not when the lease runs out.
//!
//! A frozen (SIGSTOP) or partitioned holder keeps its session, and so its
//! lock: it is never trusted to be gone, its chunks wait for the lease as
//! before, and its late commit is fenced by the attempt number. A holder
//! whose own connection broke while it lives on reconnects and takes its
//! lock again; a claim in between may take one of its chunks needlessly,
//! which the fence makes harmless (its work is thrown away, never counted).

use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::task::JoinHandle;

use crate::error::from_pg;
use crate::{Error, Result};

/// The first key of every holder lock: the two-key form keeps batchline's
/// locks apart from other users of advisory locks in the database (sqlx's
/// migration lock uses the one-key form).
pub(super) const HOLDER_LOCK_CLASS: i32 = 0x6274_6c6e; // "btln"

/// How often the holder's connection is checked.
const PING_EVERY: Duration = Duration::from_secs(2);

/// This process's holder lock: its id, and the task that keeps its
/// connection (aborting the task closes the connection, ending the lock).
#[derive(Debug)]
pub(super) struct Holder {
    pub id: i32,
    keeper: JoinHandle<()>,
}

impl Holder {
    /// Takes a fresh holder lock and keeps it.
    pub(super) async fn take(options: PgConnectOptions) -> Result<Holder> {
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(from_pg)?;
        let id = loop {
            // Random ids: a collision only means a dead holder looks alive
            // (its chunks then wait for their lease), never the reverse.
            let id = uuid::Uuid::new_v4().as_u128() as i32;
            if try_lock(&mut conn, id).await? {
                break id;
            }
        };
        let keeper = tokio::spawn(keep(options, conn, id));
        tracing::debug!(holder = id, "claim holder lock taken");
        Ok(Holder { id, keeper })
    }

    pub(super) fn release(&self) {
        self.keeper.abort();
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        self.keeper.abort();
    }
}

async fn try_lock(conn: &mut PgConnection, id: i32) -> Result<bool> {
    sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
        .bind(HOLDER_LOCK_CLASS)
        .bind(id)
        .fetch_one(conn)
        .await
        .map_err(from_pg)
}

/// Holds the connection; when it breaks, connects again and takes the
/// same lock again.
async fn keep(options: PgConnectOptions, mut conn: PgConnection, id: i32) {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        if conn.ping().await.is_ok() {
            continue;
        }
        tracing::warn!(
            holder = id,
            "claim holder connection lost; taking the lock again"
        );
        conn = loop {
            match relock(&options, id).await {
                Ok(conn) => break conn,
                Err(e) => {
                    tracing::warn!(
                        holder = id,
                        error = &e as &dyn std::error::Error,
                        "cannot take the claim holder lock again; retrying"
                    );
                    tokio::time::sleep(PING_EVERY).await;
                }
            }
        };
        tracing::info!(holder = id, "claim holder lock taken again");
    }
}

async fn relock(options: &PgConnectOptions, id: i32) -> Result<PgConnection> {
    let mut conn = PgConnection::connect_with(options).await.map_err(from_pg)?;
    if try_lock(&mut conn, id).await? {
        Ok(conn)
    } else {
        Err(Error::config(format!(
            "claim holder lock {id} is held by another session"
        )))
    }
}
