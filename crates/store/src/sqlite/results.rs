//! What a batch ends with, on SQLite: its aggregate, saved once under its
//! partition's fence, and its verdict, recorded once and printed once.

use super::partitions::holds_in;
use super::{SqliteStore, now};
use crate::error::{from_sqlite, is_foreign_key_violation};
use crate::roles::{Aggregates, Verdicts};
use crate::{Fence, Result, Saved, Uuid, Verdict, VerdictRecord};

impl Aggregates for SqliteStore {
    async fn save_batch_result(
        &self,
        batch_id: Uuid,
        result: &str,
        duplicates_dropped: i64,
        fence: Option<Fence>,
    ) -> Result<Saved> {
        let mut tx = self.begin_immediate().await?;
        if let Some(f) = fence
            && !holds_in(&mut tx, f).await?
        {
            return Ok(Saved::Fenced);
        }
        let inserted = sqlx::query(
            "INSERT INTO batch_results (batch_id, result, duplicates_dropped, created_at)
             VALUES (?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(result)
        .bind(duplicates_dropped)
        .bind(now())
        .execute(&mut *tx)
        .await;
        let inserted = match inserted {
            Ok(done) => done,
            Err(e) if is_foreign_key_violation(&e) => return Ok(Saved::Purged),
            Err(e) => return Err(from_sqlite(e)),
        };
        tx.commit().await.map_err(from_sqlite)?;
        Ok(if inserted.rows_affected() == 1 {
            Saved::Saved
        } else {
            Saved::AlreadySaved
        })
    }

    async fn batch_result(&self, batch_id: Uuid) -> Result<Option<(String, i64)>> {
        sqlx::query_as("SELECT result, duplicates_dropped FROM batch_results WHERE batch_id = ?")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(from_sqlite)
    }
}

impl Verdicts for SqliteStore {
    async fn record_verdict(&self, batch_id: Uuid, verdict: &Verdict) -> Result<VerdictRecord> {
        let inserted = sqlx::query(
            "INSERT INTO verdicts (batch_id, success, reason, line, created_at)
             VALUES (?, ?, ?, ?, ?) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(verdict.success)
        .bind(&verdict.reason)
        .bind(&verdict.line)
        .bind(now())
        .execute(&self.pool)
        .await;
        let inserted = match inserted {
            Ok(done) => done.rows_affected(),
            Err(e) if is_foreign_key_violation(&e) => return Ok(VerdictRecord::Purged),
            Err(e) => return Err(from_sqlite(e)),
        };
        if inserted == 1 {
            return Ok(VerdictRecord::New);
        }
        let (success, reason, line, printed): (bool, String, String, bool) = sqlx::query_as(
            "SELECT success, reason, line, printed FROM verdicts WHERE batch_id = ?",
        )
        .bind(batch_id)
        .fetch_one(&self.pool)
        .await
        .map_err(from_sqlite)?;
        Ok(VerdictRecord::Existing {
            verdict: Verdict {
                success,
                reason,
                line,
            },
            printed,
        })
    }

    async fn mark_verdict_printed(&self, batch_id: Uuid) -> Result<()> {
        sqlx::query("UPDATE verdicts SET printed = 1 WHERE batch_id = ? AND printed = 0")
            .bind(batch_id)
            .execute(&self.pool)
            .await
            .map_err(from_sqlite)?;
        Ok(())
    }

    async fn verdict(&self, batch_id: Uuid) -> Result<Option<Verdict>> {
        let row: Option<(bool, String, String)> =
            sqlx::query_as("SELECT success, reason, line FROM verdicts WHERE batch_id = ?")
                .bind(batch_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(from_sqlite)?;
        Ok(row.map(|(success, reason, line)| Verdict {
            success,
            reason,
            line,
        }))
    }
}
