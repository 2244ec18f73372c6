//! Closing periods: invoicing asks rating to seal each account's periods
//! once their grace window is over, and finalizes the invoices whose final
//! (sealed) statement arrived.
//!
//! The seal is a marker on `usage.events` keyed by the account, so it lands
//! in the account's partition after every event accepted before it; rating
//! counts those in the closed periods and bills anything for them after it
//! as an adjustment on the next open period (`../../shared/DESIGN.md`,
//! "Period sealing"). No event can slip between "counted" and "closed".
//!
//! Finalizing gives each invoice the next gap-free number of its issuer and
//! year and freezes it (the database refuses any later change to its
//! amounts, lines or credits; migration `…_finalized_is_frozen`). Safe with
//! several invoicing instances: each takes sealed drafts with
//! `FOR UPDATE SKIP LOCKED`, and the number counter row is locked in the
//! same transaction, so a rollback gives its number back and no number is
//! used twice or skipped.

use chrono::{DateTime, Datelike, Utc};
use sqlx::{PgPool, Row};
use std::time::Duration;
use tally_domain::invoice::{self, InvoiceEvent, InvoiceStatus};
use tally_domain::seal_policy::{self, SealCandidate};
use tally_domain::usage::{SealMarker, UsageMessage};
use tally_domain::{AccountId, AnchorDay};
use tally_platform::kafka;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::invoices_repo;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    pub id: Uuid,
    pub number: String,
}

/// Writes a seal marker for every account with a draft invoice of a period
/// ending at or before `now - grace` that is not sealed yet (nor asked for
/// recently: [`seal_policy::seal_to_request`] decides); returns how many
/// markers were written. An account with
/// nothing to close gets none: its seal stays where it is, so usage that
/// arrives for such a past period is billed in that period (whose invoice
/// the next round closes) rather than as an adjustment — and a period
/// boundary does not flood `usage.events` with markers for idle accounts
/// (`tally bench` saw freshness suffer from those).
pub async fn request_seals(
    pool: &PgPool,
    producer: &tally_platform::kafka::Producer,
    topic: &str,
    now: DateTime<Utc>,
    grace: chrono::TimeDelta,
) -> anyhow::Result<usize> {
    let rows = sqlx::query(
        "SELECT a.id, a.billing_anchor_day, s.sealed_through, r.through AS requested, r.requested_at,
                d.oldest
         FROM (SELECT account_id, min(period_start) AS oldest FROM invoices
               WHERE status = 'draft' AND sealed_at IS NULL GROUP BY account_id) d
         JOIN accounts a ON a.id = d.account_id
         LEFT JOIN account_seals s ON s.account_id = a.id
         LEFT JOIN seal_requests r ON r.account_id = a.id
         ORDER BY a.id",
    )
    .fetch_all(pool)
    .await?;
    let mut markers = Vec::new();
    for r in &rows {
        let day: i16 = r.try_get("billing_anchor_day")?;
        let account = SealCandidate {
            anchor: AnchorDay::new(u32::try_from(day).unwrap_or(0))?,
            oldest_draft: r.try_get("oldest")?,
            sealed_through: r.try_get("sealed_through")?,
            requested_through: r.try_get("requested")?,
            requested_at: r.try_get("requested_at")?,
        };
        if let Some(through) = seal_policy::seal_to_request(now, grace, &account) {
            markers.push(SealMarker {
                account_id: AccountId::parse(r.try_get("id")?)?,
                through,
            });
        }
    }
    if markers.is_empty() {
        return Ok(0);
    }
    let records = markers
        .iter()
        .map(|m| {
            Ok((
                m.account_id.to_string(),
                serde_json::to_vec(&UsageMessage::Seal(m.clone()))?,
            ))
        })
        .collect::<Result<Vec<_>, serde_json::Error>>()?;
    kafka::send_all(
        producer,
        records
            .iter()
            .map(|(k, p)| (topic, k.as_str(), p.as_slice())),
    )
    .await?;
    let accounts: Vec<&str> = markers.iter().map(|m| m.account_id.as_str()).collect();
    let throughs: Vec<DateTime<Utc>> = markers.iter().map(|m| m.through).collect();
    sqlx::query(
        "INSERT INTO seal_requests (account_id, through, requested_at)
         SELECT a, t, $3 FROM UNNEST($1::text[], $2::timestamptz[]) AS u(a, t)
         ON CONFLICT (account_id) DO UPDATE SET through = EXCLUDED.through, requested_at = EXCLUDED.requested_at",
    )
    .bind(&accounts)
    .bind(&throughs)
    .bind(now)
    .execute(pool)
    .await?;
    tracing::info!(accounts = markers.len(), "seal markers written");
    Ok(markers.len())
}

/// Finalizes up to `limit` drafts whose final statement arrived (sealed),
/// oldest period first; returns them with their numbers.
pub async fn finalize_sealed(
    pool: &PgPool,
    issuer: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<Finalized>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let due: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM invoices
         WHERE status = 'draft' AND sealed_at IS NOT NULL
         ORDER BY period_end, account_id LIMIT $1
         FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    let year = now.year();
    // Taken as drafts: each one moves to the same status.
    let status = InvoiceStatus::Draft
        .transition(InvoiceEvent::Finalize)
        .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
    invoices_repo::number_lines(&mut tx, &due).await?;
    let mut out = Vec::with_capacity(due.len());
    for id in due {
        let number = next_number(&mut tx, issuer, year).await?;
        sqlx::query(
            "UPDATE invoices SET status = $4, number = $2, finalized_at = $3, updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(&number)
        .bind(now)
        .bind(status.as_str())
        .execute(&mut *tx)
        .await?;
        out.push(Finalized { id, number });
    }
    tx.commit().await?;
    Ok(out)
}

/// The next number of `issuer`'s series in `year`, taken in the caller's
/// transaction (its row stays locked until the transaction ends).
pub async fn next_number(
    conn: &mut sqlx::PgConnection,
    issuer: &str,
    year: i32,
) -> Result<String, sqlx::Error> {
    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO invoice_number_sequences (issuer, year, last_value) VALUES ($1, $2, 1)
         ON CONFLICT (issuer, year) DO UPDATE
         SET last_value = invoice_number_sequences.last_value + 1
         RETURNING last_value",
    )
    .bind(issuer)
    .bind(year)
    .fetch_one(conn)
    .await?;
    Ok(invoice::number(issuer, year, sequence))
}

const FINALIZE_EVERY: Duration = Duration::from_secs(1);

/// The closing loop of one invoicing instance: seal requests every
/// `close_every` (if set), finalization of sealed drafts every second.
pub async fn run(
    pool: PgPool,
    producer: tally_platform::kafka::Producer,
    topic: String,
    issuer: String,
    grace: Duration,
    close_every: Option<Duration>,
    shutdown: CancellationToken,
) {
    let grace = chrono::TimeDelta::from_std(grace).unwrap_or(chrono::TimeDelta::hours(48));
    let mut last_close: Option<std::time::Instant> = None;
    loop {
        if let Some(every) = close_every {
            if last_close.is_none_or(|t| t.elapsed() >= every) {
                last_close = Some(std::time::Instant::now());
                if let Err(err) = request_seals(&pool, &producer, &topic, Utc::now(), grace).await {
                    tracing::warn!(error = %err, "seal requests failed");
                }
            }
        }
        loop {
            match finalize_sealed(&pool, &issuer, Utc::now(), 100).await {
                Ok(done) if done.is_empty() => break,
                Ok(done) => {
                    metrics::counter!("tally_invoices_finalized_total")
                        .increment(done.len() as u64);
                    tracing::info!(invoices = done.len(), "invoices finalized");
                }
                Err(err) => {
                    tracing::warn!(error = %err, "finalizing failed");
                    break;
                }
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(FINALIZE_EVERY) => {}
        }
    }
}
