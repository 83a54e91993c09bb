//! Per-run rows on SQLite: the verifier's scan of one batch's rows, and
//! the space they take (the whole database file).

use futures_util::TryStreamExt;

use super::{SqliteStore, get};
use crate::error::from_sqlite;
use crate::roles::Runs;
use crate::{Result, Uuid, outcome};

impl Runs for SqliteStore {
    async fn scan_runs<F>(&self, batch_id: Uuid, runs: std::ops::Range<i64>, mut f: F) -> Result<()>
    where
        F: FnMut(i64, &[i32]) + Send,
    {
        let mut rows = sqlx::query(
            "SELECT run_index, outcome FROM run_results
             WHERE batch_id = ? AND run_index >= ? AND run_index < ?
             ORDER BY run_index",
        )
        .bind(batch_id)
        .bind(runs.start)
        .bind(runs.end)
        .fetch(&self.pool);
        let mut values = Vec::new();
        while let Some(row) = rows.try_next().await.map_err(from_sqlite)? {
            let run: i64 = get(&row, 0)?;
            outcome::decode(get::<&[u8]>(&row, 1)?, &mut values)?;
            f(run, &values);
        }
        Ok(())
    }

    async fn run_rows_bytes(&self) -> Result<i64> {
        // The dbstat table is not always compiled in: pages of the file.
        let (pages, size): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT page_count FROM pragma_page_count()),
                    (SELECT page_size FROM pragma_page_size())",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(pages * size)
    }
}
