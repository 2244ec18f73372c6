//! Finalizing invoices: each gets the next gap-free number of its issuer and
//! year, and is frozen (the database refuses any later change to its amounts,
//! lines or credits; migration `…_finalized_is_frozen`).
//!
//! Safe with several invoicing instances: each takes due drafts with
//! `FOR UPDATE SKIP LOCKED`, and the number counter row is locked in the same
//! transaction, so a rollback gives its number back and no number is used
//! twice or skipped.
//!
//! Not scheduled yet: finalizing is only safe once a period is sealed in
//! order with its events (issue "Invoice lifecycle": seal markers on
//! `usage.events`, late usage as adjustments); until then nothing calls it
//! outside tests.

use chrono::{DateTime, Datelike, Utc};
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    pub id: Uuid,
    pub number: String,
}

/// `TLY-2026-000123`: issuer, year of issue, six-digit sequence.
pub fn invoice_number(issuer: &str, year: i32, sequence: i64) -> String {
    format!("{issuer}-{year}-{sequence:06}")
}

/// Finalizes up to `limit` drafts whose period ended at least `grace`
/// before `now`, oldest period first; returns them with their numbers.
pub async fn finalize_due(
    pool: &PgPool,
    issuer: &str,
    now: DateTime<Utc>,
    grace: chrono::Duration,
    limit: i64,
) -> Result<Vec<Finalized>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM invoices
         WHERE status = 'draft' AND period_end <= $1
         ORDER BY period_end, account_id LIMIT $2
         FOR UPDATE SKIP LOCKED",
    )
    .bind(now - grace)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let year = now.year();
    let mut out = Vec::with_capacity(due.len());
    for id in due {
        let sequence: i64 = sqlx::query_scalar(
            "INSERT INTO invoice_number_sequences (issuer, year, last_value) VALUES ($1, $2, 1)
             ON CONFLICT (issuer, year) DO UPDATE
             SET last_value = invoice_number_sequences.last_value + 1
             RETURNING last_value",
        )
        .bind(issuer)
        .bind(year)
        .fetch_one(&mut *tx)
        .await?;
        let number = invoice_number(issuer, year, sequence);
        sqlx::query(
            "UPDATE invoices SET status = 'finalized', number = $2, finalized_at = $3, updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(&number)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        out.push(Finalized { id, number });
    }
    tx.commit().await?;
    Ok(out)
}
