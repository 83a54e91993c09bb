//! Per-run rows on Postgres: the verifier's scan of one batch's partition
//! of `run_results`, and the space they take.

use futures_util::TryStreamExt;

use super::{PgStore, copy_rows, raw};
use crate::error::{Error, from_pg};
use crate::roles::Runs;
use crate::{Result, Uuid, outcome};

impl Runs for PgStore {
    async fn scan_runs<F>(&self, batch_id: Uuid, runs: std::ops::Range<i64>, mut f: F) -> Result<()>
    where
        F: FnMut(i64, &[i32]) + Send,
    {
        // One partition holds the batch's rows (`purge.rs`), read
        // sequentially: a range filter reads the whole partition, which
        // is the batch's own rows only. A custom plan, always: it prunes
        // to that partition when planned, where a cached generic plan
        // would lock every batch's partition at each execution (thousands
        // of locks once many batches are kept). No parallel workers: the
        // verifier already scans one range per core, and extra processes
        // would only compete with it.
        let mut tx = self
            .begin_with(
                "SET LOCAL plan_cache_mode = force_custom_plan;
                 SET LOCAL max_parallel_workers_per_gather = 0",
            )
            .await?;
        {
            // A streamed result: sqlx reads rows off the socket as they are
            // consumed, so memory stays flat whatever the batch size.
            let mut rows = sqlx::query(
                "SELECT run_index, outcome FROM run_results
                 WHERE batch_id = $1 AND run_index >= $2 AND run_index < $3",
            )
            .bind(batch_id)
            .bind(runs.start)
            .bind(runs.end)
            .fetch(&mut *tx);
            let mut values = Vec::new();
            while let Some(row) = rows.try_next().await.map_err(from_pg)? {
                let run = copy_rows::decode_int8(raw(&row, 0)?)?;
                outcome::decode(raw(&row, 1)?, &mut values).map_err(|e| match e {
                    Error::Corrupt(m) => Error::Corrupt(format!("run {run}: {m}")),
                    other => other,
                })?;
                f(run, &values);
            }
        }
        tx.commit().await.map_err(from_pg)?;
        Ok(())
    }

    async fn run_rows_bytes(&self) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::int8
             FROM pg_inherits WHERE inhparent = 'run_results'::regclass",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)
    }
}
