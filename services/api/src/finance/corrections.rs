//! Corrections of finalized invoices, never edits: a void (with its reason)
//! writes an invoice off whole; a credit note gives back part or all of it,
//! line by line. Credit notes are numbered in their own gap-free series
//! (`TLY-CN-2026-000001`) and immutable (the database refuses changes).
//!
//! Each credit note line is split between platform and partner in the
//! proportion of the invoice line it credits, so the partner's settlement
//! gives back the partner's share: the rule, and the limits of what may be
//! credited, are in `tally_domain::corrections`; which statuses may be
//! voided or credited in `tally_domain::invoice`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use tally_domain::corrections::{self, CreditNoteError, CreditableLine};
use tally_domain::input::{check_text, MAX_REASON};
use tally_domain::invoice::{IllegalTransition, InvoiceEvent, InvoiceStatus};
use tally_domain::money::checked;
use tally_domain::{Currency, MoneyError};
use uuid::Uuid;

use crate::auth::{Reader, Staff};
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, ApiQuery, RequestBody};
use crate::finance::invoices::{parse_period, Page};
use tally_invoicing::amounts::currency_of;
use tally_invoicing::invoices_repo::{self, InvoiceSummary};
use tally_invoicing::lifecycle::next_number;

/// The issuer prefix of invoice and credit note numbers (`TALLY_INVOICE_ISSUER`).
#[derive(Debug, Clone)]
pub struct Issuer(pub String);

fn refused(code: Code, message: impl Into<String>) -> ApiError {
    ApiError::Refused(code, message.into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {
    reason: String,
}

impl RequestBody for VoidRequest {}

/// `POST /v1/invoices/{id}/void`: finance writes off a finalized invoice.
pub async fn void_invoice(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<VoidRequest>,
) -> Result<Json<InvoiceSummary>, ApiError> {
    let reason = request.reason.trim();
    if reason.is_empty() {
        return Err(refused(Code::ReasonRequired, "a void needs a reason"));
    }
    check_text("reason", reason, MAX_REASON)?;
    let mut tx = pool.begin().await?;
    let voided = match lock_invoice(&mut tx, id)
        .await?
        .status
        .transition(InvoiceEvent::Void)
    {
        Ok(voided) => voided,
        Err(IllegalTransition {
            from: InvoiceStatus::Void,
            ..
        }) => {
            return Err(refused(
                Code::InvoiceVoided,
                format!("invoice {id} is void already"),
            ))
        }
        Err(_) => {
            return Err(refused(
                Code::InvoiceNotFinalized,
                format!("invoice {id} is a draft: it changes with usage until it is finalized"),
            ))
        }
    };
    let notes: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_notes WHERE invoice_id = $1")
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
    if notes > 0 {
        return Err(refused(
            Code::InvoiceHasCreditNotes,
            format!("invoice {id} has {notes} credit note(s): credit the rest instead of voiding"),
        ));
    }
    sqlx::query(
        "UPDATE invoices SET status = $3, voided_at = now(), void_reason = $2, updated_at = now()
         WHERE id = $1",
    )
    .bind(id)
    .bind(reason)
    .bind(voided.as_str())
    .execute(&mut *tx)
    .await?;
    let invoice = invoices_repo::get_invoice(&mut tx, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("invoice {id}")))?;
    tx.commit().await?;
    tracing::info!(invoice = %id, "invoice voided");
    Ok(Json(invoice.summary))
}

struct Locked {
    status: InvoiceStatus,
    account: String,
    currency: Currency,
    total: Decimal,
}

async fn lock_invoice(conn: &mut PgConnection, id: Uuid) -> Result<Locked, ApiError> {
    let row = sqlx::query(
        "SELECT status, account_id, currency, total FROM invoices WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("invoice {id}")))?;
    Ok(Locked {
        status: InvoiceStatus::parse(row.try_get("status")?)
            .map_err(|e| ApiError::Internal(e.into()))?,
        account: row.try_get("account_id")?,
        currency: currency_of(&row, "currency")?,
        total: row.try_get("total")?,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCreditNote {
    reason: String,
    /// Lines to credit; none: the whole invoice (what is left of its amount
    /// due, spread over the lines in proportion to what is left on each).
    #[serde(default)]
    lines: Vec<NewCreditNoteLine>,
}

impl RequestBody for NewCreditNote {
    const INEXACT_CODE: Code = Code::InvalidAmount;
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCreditNoteLine {
    /// The invoice line's `position`.
    position: i32,
    /// Defaults to what is left to credit on the line.
    #[serde(default, with = "tally_domain::input::exact_option")]
    amount: Option<Decimal>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreditNoteLine {
    pub line_position: i32,
    pub provider_id: String,
    pub sku: String,
    pub description: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub platform_part: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub partner_part: Decimal,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreditNote {
    pub id: Uuid,
    pub number: String,
    pub invoice_id: Uuid,
    pub account_id: String,
    pub currency: Currency,
    pub reason: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub lines: Vec<CreditNoteLine>,
}

impl CreditNote {
    /// Its amounts with the currency's exponent, as the API shows them.
    fn scaled(mut self) -> Self {
        let c = self.currency;
        self.total = c.scaled(self.total);
        for l in &mut self.lines {
            l.amount = c.scaled(l.amount);
            l.platform_part = c.scaled(l.platform_part);
            l.partner_part = c.scaled(l.partner_part);
        }
        self
    }
}

/// What a credit note line repeats of the invoice line it credits.
struct Described {
    provider_id: String,
    sku: String,
    description: String,
}

/// The API's refusal of a credit note ([`corrections::credit_note`]).
fn credit_note_refused(id: Uuid, currency: Currency, e: CreditNoteError) -> ApiError {
    let code = match &e {
        CreditNoteError::NothingToCredit => Code::NothingToCredit,
        CreditNoteError::UnknownLine(_) => Code::UnknownLine,
        CreditNoteError::InvalidAmount { .. } => Code::InvalidAmount,
        CreditNoteError::ExceedsLine { .. } => Code::CreditExceedsLine,
        CreditNoteError::ExceedsInvoice { .. } => Code::CreditExceedsInvoice,
        CreditNoteError::Money(MoneyError::Overflow) => Code::AmountOverflow,
        CreditNoteError::Money(_) => Code::Internal,
    };
    debug_assert_eq!(code.as_str(), e.code());
    match e {
        CreditNoteError::NothingToCredit => {
            refused(code, format!("invoice {id} is credited in full"))
        }
        CreditNoteError::UnknownLine(position) => {
            refused(code, format!("invoice {id} has no line {position}"))
        }
        CreditNoteError::InvalidAmount { position, amount } => refused(
            code,
            format!(
                "line {position}: {amount} is not a positive amount in whole {} minor units",
                currency.code()
            ),
        ),
        CreditNoteError::ExceedsLine { .. } | CreditNoteError::ExceedsInvoice { .. } => {
            refused(code, e.to_string())
        }
        CreditNoteError::Money(e) => e.into(),
    }
}

/// `POST /v1/invoices/{id}/credit-notes`: finance credits a finalized
/// invoice, whole (no lines: what is left of the amount due, spread over the
/// lines) or per line, partial amounts allowed. Never more than a line's
/// amount across all its credit notes, nor more than the invoice's amount
/// due.
pub async fn create_credit_note(
    _: Staff,
    State(pool): State<PgPool>,
    Extension(issuer): Extension<Issuer>,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(request): ApiJson<NewCreditNote>,
) -> Result<(StatusCode, Json<CreditNote>), ApiError> {
    let reason = request.reason.trim().to_owned();
    if reason.is_empty() {
        return Err(refused(
            Code::ReasonRequired,
            "a credit note needs a reason",
        ));
    }
    check_text("reason", &reason, MAX_REASON)?;
    let mut tx = pool.begin().await?;
    let invoice = lock_invoice(&mut tx, id).await?;
    match invoice.status.transition(InvoiceEvent::Credit) {
        Ok(_) => {}
        Err(IllegalTransition {
            from: InvoiceStatus::Void,
            ..
        }) => {
            return Err(refused(
                Code::InvoiceVoided,
                format!("invoice {id} is void"),
            ))
        }
        Err(_) => {
            return Err(refused(
                Code::InvoiceNotFinalized,
                format!("invoice {id} is a draft: only finalized invoices are credited"),
            ))
        }
    }
    let currency = invoice.currency;
    let rows = sqlx::query(
        "SELECT l.position, l.provider_id, l.sku_id, l.description, l.amount, l.partner_net,
                COALESCE(c.amount, 0) AS credited, COALESCE(c.partner_part, 0) AS partner_credited
         FROM invoice_lines l
         LEFT JOIN (SELECT line_position, sum(amount) AS amount, sum(partner_part) AS partner_part
                    FROM credit_note_lines WHERE invoice_id = $1 GROUP BY line_position) c
           ON c.line_position = l.position
         WHERE l.invoice_id = $1 ORDER BY l.position",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let mut described: BTreeMap<i32, Described> = BTreeMap::new();
    let mut creditable = Vec::with_capacity(rows.len());
    for r in &rows {
        let position: i32 = r.try_get("position")?;
        described.insert(
            position,
            Described {
                provider_id: r.try_get("provider_id")?,
                sku: r.try_get("sku_id")?,
                description: r.try_get("description")?,
            },
        );
        creditable.push(CreditableLine {
            position,
            amount: r.try_get("amount")?,
            partner_net: r.try_get("partner_net")?,
            credited: r.try_get("credited")?,
            partner_credited: r.try_get("partner_credited")?,
        });
    }
    let credited_before: Decimal = sqlx::query_scalar(
        "SELECT COALESCE(sum(total), 0) FROM credit_notes WHERE invoice_id = $1",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let asked: Vec<(i32, Option<Decimal>)> = request
        .lines
        .iter()
        .map(|l| (l.position, l.amount))
        .collect();
    let splits = corrections::credit_note(
        currency,
        invoice.total,
        credited_before,
        &creditable,
        &asked,
    )
    .map_err(|e| credit_note_refused(id, currency, e))?;
    let mut out: Vec<CreditNoteLine> = Vec::with_capacity(splits.len());
    for split in splits {
        // Every split credits a line of the invoice.
        let Some(line) = described.get(&split.position) else {
            return Err(credit_note_refused(
                id,
                currency,
                CreditNoteError::UnknownLine(split.position),
            ));
        };
        out.push(CreditNoteLine {
            line_position: split.position,
            provider_id: line.provider_id.clone(),
            sku: line.sku.clone(),
            description: line.description.clone(),
            amount: split.amount,
            platform_part: split.platform_part,
            partner_part: split.partner_part,
        });
    }
    let total = checked::sum(out.iter().map(|l| l.amount))?;
    let now = Utc::now();
    let number = next_number(&mut tx, &format!("{}-CN", issuer.0), now.year()).await?;
    let note_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO credit_notes (id, number, invoice_id, account_id, currency, reason, total, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(note_id)
    .bind(&number)
    .bind(id)
    .bind(&invoice.account)
    .bind(invoice.currency.code())
    .bind(&reason)
    .bind(total)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    for (position, line) in out.iter().enumerate() {
        sqlx::query(
            "INSERT INTO credit_note_lines (credit_note_id, position, invoice_id, line_position,
                 provider_id, sku_id, description, amount, platform_part, partner_part)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(note_id)
        .bind(i32::try_from(position).unwrap_or(i32::MAX))
        .bind(id)
        .bind(line.line_position)
        .bind(&line.provider_id)
        .bind(&line.sku)
        .bind(&line.description)
        .bind(line.amount)
        .bind(line.platform_part)
        .bind(line.partner_part)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    tracing::info!(invoice = %id, number, "credit note issued");
    Ok((
        StatusCode::CREATED,
        Json(
            CreditNote {
                id: note_id,
                number,
                invoice_id: id,
                account_id: invoice.account,
                currency: invoice.currency,
                reason,
                total,
                created_at: now,
                lines: out,
            }
            .scaled(),
        ),
    ))
}

/// Credit notes with their lines, oldest first.
async fn load_notes(
    conn: &mut PgConnection,
    filter: &NoteFilter,
) -> Result<Vec<CreditNote>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT n.id, n.number, n.invoice_id, n.account_id, n.currency, n.reason, n.total, n.created_at
         FROM credit_notes n JOIN invoices i ON i.id = n.invoice_id
         WHERE ($1::uuid IS NULL OR n.id = $1)
           AND ($2::uuid IS NULL OR n.invoice_id = $2)
           AND ($3::text IS NULL OR n.account_id = $3)
           AND ($4::timestamptz IS NULL OR (i.period_start >= $4 AND i.period_start < $5))
           AND ($6::uuid IS NULL OR n.id > $6)
         ORDER BY n.id LIMIT $7",
    )
    .bind(filter.id)
    .bind(filter.invoice)
    .bind(filter.account.as_deref())
    .bind(filter.month.map(|m| m.start()))
    .bind(filter.month.map(|m| m.end()))
    .bind(filter.after)
    .bind(filter.limit)
    .fetch_all(&mut *conn)
    .await?;
    let mut notes = Vec::with_capacity(rows.len());
    for r in rows {
        let id: Uuid = r.try_get("id")?;
        let lines = sqlx::query(
            "SELECT line_position, provider_id, sku_id, description, amount, platform_part, partner_part
             FROM credit_note_lines WHERE credit_note_id = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|l| {
            Ok(CreditNoteLine {
                line_position: l.try_get("line_position")?,
                provider_id: l.try_get("provider_id")?,
                sku: l.try_get("sku_id")?,
                description: l.try_get("description")?,
                amount: l.try_get("amount")?,
                platform_part: l.try_get("platform_part")?,
                partner_part: l.try_get("partner_part")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        notes.push(
            CreditNote {
                id,
                number: r.try_get("number")?,
                invoice_id: r.try_get("invoice_id")?,
                account_id: r.try_get("account_id")?,
                currency: currency_of(&r, "currency")?,
                reason: r.try_get("reason")?,
                total: r.try_get("total")?,
                created_at: r.try_get("created_at")?,
                lines,
            }
            .scaled(),
        );
    }
    Ok(notes)
}

#[derive(Debug, Default)]
struct NoteFilter {
    id: Option<Uuid>,
    invoice: Option<Uuid>,
    account: Option<String>,
    month: Option<tally_domain::Period>,
    after: Option<Uuid>,
    limit: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoteQuery {
    account: Option<String>,
    period: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/credit-notes?account=&period=YYYY-MM&cursor=&limit=`.
/// Staff see every credit note; a customer only its own account's.
pub async fn list_credit_notes(
    Reader(own): Reader,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<NoteQuery>,
) -> Result<Json<Page<CreditNote>>, ApiError> {
    let own = own.map(|a| a.to_string());
    if let (Some(own), Some(asked)) = (&own, &q.account) {
        if own != asked {
            return Err(ApiError::Forbidden);
        }
    }
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    let filter = NoteFilter {
        account: own.or(q.account),
        month: q.period.as_deref().map(parse_period).transpose()?,
        after: q
            .cursor
            .as_deref()
            .map(|c| Uuid::parse_str(c).map_err(|_| ApiError::InvalidRequest("bad cursor".into())))
            .transpose()?,
        limit,
        ..NoteFilter::default()
    };
    let mut conn = pool.acquire().await?;
    let data = load_notes(&mut conn, &filter).await?;
    let next_cursor = (data.len() as i64 == limit)
        .then(|| data.last().map(|n| n.id.to_string()))
        .flatten();
    Ok(Json(Page { data, next_cursor }))
}

/// `GET /v1/credit-notes/{id}`.
pub async fn get_credit_note(
    Reader(own): Reader,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<CreditNote>, ApiError> {
    let own = own.map(|a| a.to_string());
    let mut conn = pool.acquire().await?;
    let filter = NoteFilter {
        id: Some(id),
        account: own,
        limit: 1,
        ..NoteFilter::default()
    };
    load_notes(&mut conn, &filter)
        .await?
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("credit note {id}")))
}

/// `GET /v1/invoices/{id}/credit-notes`.
pub async fn invoice_credit_notes(
    Reader(own): Reader,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Page<CreditNote>>, ApiError> {
    let own = own.map(|a| a.to_string());
    let mut conn = pool.acquire().await?;
    let filter = NoteFilter {
        invoice: Some(id),
        account: own,
        limit: 500,
        ..NoteFilter::default()
    };
    let data = load_notes(&mut conn, &filter).await?;
    Ok(Json(Page {
        data,
        next_cursor: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_credit_note_that_overflows_is_refused_with_amount_overflow() {
        let usd = Currency::parse("USD").unwrap();
        let refusal = |e| credit_note_refused(Uuid::nil(), usd, e).code();
        assert_eq!(
            refusal(CreditNoteError::Money(MoneyError::Overflow)),
            Code::AmountOverflow
        );
        assert_eq!(
            Code::AmountOverflow.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            refusal(CreditNoteError::Money(MoneyError::EmptySplit)),
            Code::Internal
        );
        assert_eq!(refusal(CreditNoteError::UnknownLine(4)), Code::UnknownLine);
    }
}
