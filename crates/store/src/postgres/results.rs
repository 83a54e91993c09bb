//! What a batch ends with, on Postgres: its aggregate, saved once under
//! its partition's fence, and its verdict, recorded once and printed once.

use super::PgStore;
use super::partitions::column;
use crate::error::{from_pg, is_foreign_key_violation};
use crate::roles::{Aggregates, Partitions, Verdicts};
use crate::{Fence, Result, Saved, Uuid, Verdict, VerdictRecord};

impl Aggregates for PgStore {
    async fn save_batch_result(
        &self,
        batch_id: Uuid,
        result: &str,
        duplicates_dropped: i64,
        fence: Option<Fence>,
    ) -> Result<Saved> {
        let inserted = sqlx::query(
            "INSERT INTO batch_results (batch_id, result, duplicates_dropped)
             SELECT $1, $2, $3
             WHERE $4::int2 IS NULL
                OR EXISTS (SELECT 1 FROM partitions WHERE partition = $4 AND epoch = $5)
             ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(result)
        .bind(duplicates_dropped)
        .bind(fence.map(|f| column(f.partition)))
        .bind(fence.map_or(0, |f| f.epoch))
        .execute(&self.pool)
        .await;
        let inserted = match inserted {
            Ok(done) => done,
            Err(e) if is_foreign_key_violation(&e) => return Ok(Saved::Purged),
            Err(e) => return Err(from_pg(e)),
        };
        if inserted.rows_affected() == 1 {
            return Ok(Saved::Saved);
        }
        match fence {
            Some(f) if !self.holds_partition(f).await? => Ok(Saved::Fenced),
            _ => Ok(Saved::AlreadySaved),
        }
    }

    async fn batch_result(&self, batch_id: Uuid) -> Result<Option<(String, i64)>> {
        sqlx::query_as("SELECT result, duplicates_dropped FROM batch_results WHERE batch_id = $1")
            .bind(batch_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(from_pg)
    }
}

impl Verdicts for PgStore {
    async fn record_verdict(&self, batch_id: Uuid, verdict: &Verdict) -> Result<VerdictRecord> {
        let inserted = sqlx::query(
            "INSERT INTO verdicts (batch_id, success, reason, line)
             VALUES ($1, $2, $3, $4) ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(verdict.success)
        .bind(&verdict.reason)
        .bind(&verdict.line)
        .execute(&self.pool)
        .await;
        let inserted = match inserted {
            Ok(done) => done.rows_affected(),
            Err(e) if is_foreign_key_violation(&e) => return Ok(VerdictRecord::Purged),
            Err(e) => return Err(from_pg(e)),
        };
        if inserted == 1 {
            return Ok(VerdictRecord::New);
        }
        let (success, reason, line, printed): (bool, String, String, bool) = sqlx::query_as(
            "SELECT success, reason, line, printed FROM verdicts WHERE batch_id = $1",
        )
        .bind(batch_id)
        .fetch_one(&self.pool)
        .await
        .map_err(from_pg)?;
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
        sqlx::query("UPDATE verdicts SET printed = true WHERE batch_id = $1 AND NOT printed")
            .bind(batch_id)
            .execute(&self.pool)
            .await
            .map_err(from_pg)?;
        Ok(())
    }

    async fn verdict(&self, batch_id: Uuid) -> Result<Option<Verdict>> {
        let row: Option<(bool, String, String)> =
            sqlx::query_as("SELECT success, reason, line FROM verdicts WHERE batch_id = $1")
                .bind(batch_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(from_pg)?;
        Ok(row.map(|(success, reason, line)| Verdict {
            success,
            reason,
            line,
        }))
    }
}
