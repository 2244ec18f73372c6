//! Partner settlements, the reconciliation of a month, and the finance CSV
//! exports. A month holds the invoices of the periods that start in it;
//! only finalized invoices count (drafts still change, void ones were
//! written off), with the credit notes issued against them.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use axum::Json;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use tally_domain::Period;
use tally_platform::auth::Principal;

use crate::auth::{principal, require_staff};
use crate::error::ApiError;
use crate::routes::parse_period;

/// One partner's settlement figures for one SKU and account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Usage at the partner's list price.
    #[serde(with = "rust_decimal::serde::str")]
    pub gross_list: Decimal,
    /// The platform's share of the list amount.
    #[serde(with = "rust_decimal::serde::str")]
    pub platform_fee: Decimal,
    /// The partner's share given back by credit notes.
    #[serde(with = "rust_decimal::serde::str")]
    pub credit_notes: Decimal,
    /// What the platform owes the partner: `gross_list - platform_fee - credit_notes`.
    #[serde(with = "rust_decimal::serde::str")]
    pub net_payable: Decimal,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.gross_list += other.gross_list;
        self.platform_fee += other.platform_fee;
        self.credit_notes += other.credit_notes;
        self.net_payable += other.net_payable;
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Keyed {
    pub id: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// A partner's statement in one currency.
#[derive(Debug, Clone, Serialize)]
pub struct CurrencySettlement {
    pub currency: String,
    #[serde(flatten)]
    pub totals: Figures,
    pub by_sku: Vec<Keyed>,
    pub by_account: Vec<Keyed>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settlement {
    pub provider_id: String,
    pub provider_name: String,
    pub period: String,
    pub currencies: Vec<CurrencySettlement>,
}

/// Settlements of every partner (or one) for the invoices of `month`.
pub async fn settlements(
    conn: &mut PgConnection,
    month: Period,
    provider: Option<&str>,
) -> Result<Vec<Settlement>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH billed AS (
             SELECT i.currency, l.provider_id, max(l.provider_name) AS provider_name, l.sku_id,
                    i.account_id, sum(l.list_amount) AS gross_list, sum(l.platform_fee) AS platform_fee,
                    sum(l.partner_net) AS partner_net
             FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE i.status = 'finalized' AND i.period_start >= $1 AND i.period_start < $2
               AND l.provider_kind = 'partner' AND ($3::text IS NULL OR l.provider_id = $3)
             GROUP BY i.currency, l.provider_id, l.sku_id, i.account_id),
         credited AS (
             SELECT i.currency, c.provider_id, c.sku_id, i.account_id, sum(c.partner_part) AS back
             FROM credit_note_lines c JOIN invoices i ON i.id = c.invoice_id
             WHERE i.status = 'finalized' AND i.period_start >= $1 AND i.period_start < $2
               AND ($3::text IS NULL OR c.provider_id = $3)
             GROUP BY i.currency, c.provider_id, c.sku_id, i.account_id)
         SELECT b.*, COALESCE(c.back, 0) AS back
         FROM billed b LEFT JOIN credited c
           ON (c.currency, c.provider_id, c.sku_id, c.account_id) = (b.currency, b.provider_id, b.sku_id, b.account_id)
         ORDER BY b.provider_id, b.currency, b.sku_id, b.account_id",
    )
    .bind(month.start())
    .bind(month.end())
    .bind(provider)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<Settlement> = Vec::new();
    for r in &rows {
        let provider_id: String = r.try_get("provider_id")?;
        let currency: String = r.try_get("currency")?;
        let back: Decimal = r.try_get("back")?;
        let net: Decimal = r.try_get("partner_net")?;
        let figures = Figures {
            gross_list: r.try_get("gross_list")?,
            platform_fee: r.try_get("platform_fee")?,
            credit_notes: back,
            net_payable: net - back,
        };
        if out.last().is_none_or(|s| s.provider_id != provider_id) {
            out.push(Settlement {
                provider_id: provider_id.clone(),
                provider_name: r.try_get("provider_name")?,
                period: month.label(),
                currencies: Vec::new(),
            });
        }
        let Some(settlement) = out.last_mut() else {
            continue;
        };
        if settlement
            .currencies
            .last()
            .is_none_or(|c| c.currency != currency)
        {
            settlement.currencies.push(CurrencySettlement {
                currency: currency.clone(),
                totals: Figures::default(),
                by_sku: Vec::new(),
                by_account: Vec::new(),
            });
        }
        let Some(c) = settlement.currencies.last_mut() else {
            continue;
        };
        c.totals.add(&figures);
        add_keyed(&mut c.by_sku, r.try_get("sku_id")?, &figures);
        add_keyed(&mut c.by_account, r.try_get("account_id")?, &figures);
    }
    for s in &mut out {
        for c in &mut s.currencies {
            c.by_account.sort_by(|a, b| a.id.cmp(&b.id));
        }
    }
    Ok(out)
}

fn add_keyed(list: &mut Vec<Keyed>, id: String, figures: &Figures) {
    match list.iter_mut().find(|k| k.id == id) {
        Some(k) => k.figures.add(figures),
        None => list.push(Keyed {
            id,
            figures: figures.clone(),
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettlementQuery {
    period: String,
    provider: Option<String>,
}

/// `GET /v1/settlements?period=YYYY-MM[&provider=]`: finance sees every
/// partner, a provider only itself.
pub async fn get_settlements(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Query(q): Query<SettlementQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let provider = match principal(&pool, &headers).await? {
        Principal::Admin | Principal::Finance => q.provider,
        Principal::Provider(own) => match q.provider {
            Some(asked) if asked != own.as_str() => return Err(ApiError::Forbidden),
            _ => Some(own.to_string()),
        },
        Principal::Customer(_) => return Err(ApiError::Forbidden),
    };
    let month = parse_period(&q.period)?;
    let mut conn = pool.acquire().await?;
    let data = settlements(&mut conn, month, provider.as_deref()).await?;
    Ok(Json(serde_json::json!({ "data": data })))
}

/// The identity of one month in one currency (DESIGN.md, "It reconciles"):
/// `invoiced = platform_revenue + partner_settlements + credits_applied`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyReconciliation {
    pub currency: String,
    pub invoices: i64,
    /// Invoice subtotals (before credits) less credit notes, from the
    /// invoice and credit note headers.
    #[serde(with = "rust_decimal::serde::str")]
    pub invoiced: Decimal,
    /// Markup and platform fees of the lines (first-party lines whole), less
    /// the platform's part of credit notes, less credits applied.
    #[serde(with = "rust_decimal::serde::str")]
    pub platform_revenue: Decimal,
    /// Net payable of every partner's settlement.
    #[serde(with = "rust_decimal::serde::str")]
    pub partner_settlements: Decimal,
    /// Credits applied on the invoices (their credit lines).
    #[serde(with = "rust_decimal::serde::str")]
    pub credits_applied: Decimal,
    /// `invoiced - (platform_revenue + partner_settlements + credits_applied)`.
    #[serde(with = "rust_decimal::serde::str")]
    pub difference: Decimal,
    /// Credits drawn in rating's credit ledger for these invoices' periods.
    #[serde(with = "rust_decimal::serde::str")]
    pub ledger_draws: Decimal,
    /// Problems found (an invoice whose header disagrees with its lines…).
    pub problems: Vec<String>,
}

impl CurrencyReconciliation {
    pub fn holds(&self) -> bool {
        self.difference.is_zero() && self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Reconciliation {
    pub period: String,
    /// Invoices of the month not finalized yet (left out of the figures).
    pub drafts: i64,
    pub currencies: Vec<CurrencyReconciliation>,
}

impl Reconciliation {
    pub fn holds(&self) -> bool {
        self.currencies.iter().all(CurrencyReconciliation::holds)
    }
}

/// Checks the identity for the invoices of `month`, per currency, each side
/// from its own records: invoice and credit note headers; invoice lines and
/// credit note lines; the settlements; the invoices' credit lines, and the
/// credit ledger beside them.
pub async fn reconcile(
    conn: &mut PgConnection,
    month: Period,
) -> Result<Reconciliation, sqlx::Error> {
    let (start, end) = (month.start(), month.end());
    let drafts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM invoices WHERE status = 'draft' AND period_start >= $1 AND period_start < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;
    let mut by_currency: BTreeMap<String, CurrencyReconciliation> = BTreeMap::new();
    let headers = sqlx::query(
        "SELECT i.currency, count(*) AS invoices, sum(i.subtotal) AS subtotal,
                COALESCE(sum((SELECT sum(n.total) FROM credit_notes n WHERE n.invoice_id = i.id)), 0) AS noted
         FROM invoices i
         WHERE i.status = 'finalized' AND i.period_start >= $1 AND i.period_start < $2
         GROUP BY i.currency",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for r in &headers {
        let currency: String = r.try_get("currency")?;
        let subtotal: Decimal = r.try_get("subtotal")?;
        let noted: Decimal = r.try_get("noted")?;
        by_currency.insert(
            currency.clone(),
            CurrencyReconciliation {
                currency,
                invoices: r.try_get("invoices")?,
                invoiced: subtotal - noted,
                ..CurrencyReconciliation::default()
            },
        );
    }
    let platform = sqlx::query(
        "SELECT i.currency, sum(l.markup + l.platform_fee) AS gross,
                COALESCE(sum((SELECT sum(c.platform_part) FROM credit_note_lines c
                     WHERE c.invoice_id = l.invoice_id AND c.line_position = l.position)), 0) AS back
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         WHERE i.status = 'finalized' AND i.period_start >= $1 AND i.period_start < $2
         GROUP BY i.currency",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let credits = sqlx::query(
        "SELECT i.currency, sum(c.amount) AS applied
         FROM invoice_credits c JOIN invoices i ON i.id = c.invoice_id
         WHERE i.status = 'finalized' AND i.period_start >= $1 AND i.period_start < $2
         GROUP BY i.currency",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    let ledger = sqlx::query(
        "SELECT i.currency, sum(l.amount) AS drawn
         FROM credit_ledger l JOIN invoices i
           ON i.account_id = l.account_id AND i.period_start = l.period_start
         WHERE l.kind = 'draw' AND i.status = 'finalized' AND i.period_start >= $1 AND i.period_start < $2
         GROUP BY i.currency",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for r in &platform {
        let c = entry(&mut by_currency, r.try_get("currency")?);
        let gross: Decimal = r.try_get("gross")?;
        let back: Decimal = r.try_get("back")?;
        c.platform_revenue += gross - back;
    }
    for r in &credits {
        let c = entry(&mut by_currency, r.try_get("currency")?);
        let applied: Decimal = r.try_get("applied")?;
        c.credits_applied += applied;
        c.platform_revenue -= applied;
    }
    for r in &ledger {
        let c = entry(&mut by_currency, r.try_get("currency")?);
        c.ledger_draws = r.try_get("drawn")?;
    }
    for s in settlements(&mut *conn, month, None).await? {
        for cs in s.currencies {
            entry(&mut by_currency, &cs.currency).partner_settlements += cs.totals.net_payable;
        }
    }
    // Invoices whose header disagrees with their own lines or credits.
    let broken = sqlx::query(
        "SELECT i.currency, i.number, i.subtotal, i.credits_total, i.total,
                COALESCE((SELECT sum(amount) FROM invoice_lines WHERE invoice_id = i.id), 0) AS lines,
                COALESCE((SELECT sum(amount) FROM invoice_credits WHERE invoice_id = i.id), 0) AS credits,
                (SELECT count(*) FROM invoice_lines
                  WHERE invoice_id = i.id AND amount <> markup + platform_fee + partner_net) AS split_off,
                (SELECT count(*) FROM credit_notes n WHERE n.invoice_id = i.id
                  AND n.total <> (SELECT sum(amount) FROM credit_note_lines WHERE credit_note_id = n.id)) AS notes_off
         FROM invoices i
         WHERE i.status = 'finalized' AND i.period_start >= $1 AND i.period_start < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for r in &broken {
        let number: Option<String> = r.try_get("number")?;
        let number = number.unwrap_or_default();
        let (subtotal, credits_total, total): (Decimal, Decimal, Decimal) = (
            r.try_get("subtotal")?,
            r.try_get("credits_total")?,
            r.try_get("total")?,
        );
        let (lines, credits): (Decimal, Decimal) = (r.try_get("lines")?, r.try_get("credits")?);
        let (split_off, notes_off): (i64, i64) = (r.try_get("split_off")?, r.try_get("notes_off")?);
        let mut problems = Vec::new();
        if lines != subtotal {
            problems.push(format!(
                "{number}: subtotal {subtotal} but its lines sum to {lines}"
            ));
        }
        if credits != credits_total {
            problems.push(format!(
                "{number}: credits {credits_total} but its credit lines sum to {credits}"
            ));
        }
        if total != subtotal - credits_total {
            problems.push(format!(
                "{number}: total {total} is not {subtotal} - {credits_total}"
            ));
        }
        if split_off > 0 {
            problems.push(format!("{number}: {split_off} line(s) whose amount is not markup + platform fee + partner net"));
        }
        if notes_off > 0 {
            problems.push(format!(
                "{number}: {notes_off} credit note(s) whose total is not the sum of their lines"
            ));
        }
        if !problems.is_empty() {
            entry(&mut by_currency, r.try_get("currency")?)
                .problems
                .extend(problems);
        }
    }
    let mut currencies: Vec<CurrencyReconciliation> = by_currency.into_values().collect();
    for c in &mut currencies {
        c.difference =
            c.invoiced - (c.platform_revenue + c.partner_settlements + c.credits_applied);
        if c.ledger_draws != c.credits_applied {
            c.problems.push(format!(
                "the credit ledger drew {} for these periods, the invoices apply {}",
                c.ledger_draws, c.credits_applied
            ));
        }
    }
    Ok(Reconciliation {
        period: month.label(),
        drafts,
        currencies,
    })
}

fn entry<'a>(
    by: &'a mut BTreeMap<String, CurrencyReconciliation>,
    currency: &str,
) -> &'a mut CurrencyReconciliation {
    by.entry(currency.to_owned())
        .or_insert_with(|| CurrencyReconciliation {
            currency: currency.to_owned(),
            ..CurrencyReconciliation::default()
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodQuery {
    period: String,
}

/// `GET /v1/reconciliation?period=YYYY-MM` (finance).
pub async fn get_reconciliation(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Result<Json<Reconciliation>, ApiError> {
    require_staff(&pool, &headers).await?;
    let month = parse_period(&q.period)?;
    let mut conn = pool.acquire().await?;
    Ok(Json(reconcile(&mut conn, month).await?))
}

fn csv_response(name: &str, body: Vec<u8>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
}

fn csv_error(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e))
}

/// `GET /v1/exports/invoices.csv?period=YYYY-MM` (finance): one row per
/// invoice of the month, any status.
pub async fn export_invoices(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require_staff(&pool, &headers).await?;
    let month = parse_period(&q.period)?;
    let rows = sqlx::query(
        "SELECT i.id, i.number, i.account_id, i.period_start, i.period_end, i.status, i.currency,
                i.subtotal, i.credits_total, i.total,
                COALESCE((SELECT sum(n.total) FROM credit_notes n WHERE n.invoice_id = i.id), 0) AS credit_notes,
                i.finalized_at, i.voided_at, i.void_reason
         FROM invoices i WHERE i.period_start >= $1 AND i.period_start < $2
         ORDER BY i.account_id, i.period_start",
    )
    .bind(month.start())
    .bind(month.end())
    .fetch_all(&pool)
    .await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "invoice_id",
        "number",
        "account_id",
        "period_start",
        "period_end",
        "status",
        "currency",
        "subtotal",
        "credits_total",
        "total",
        "credit_notes",
        "finalized_at",
        "voided_at",
        "void_reason",
    ])
    .map_err(csv_error)?;
    for r in &rows {
        let ts = |name: &str| -> Result<String, sqlx::Error> {
            Ok(r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(name)?
                .map(|t| t.to_rfc3339())
                .unwrap_or_default())
        };
        w.write_record([
            r.try_get::<uuid::Uuid, _>("id")?.to_string(),
            r.try_get::<Option<String>, _>("number")?
                .unwrap_or_default(),
            r.try_get("account_id")?,
            ts("period_start")?,
            ts("period_end")?,
            r.try_get("status")?,
            r.try_get("currency")?,
            r.try_get::<Decimal, _>("subtotal")?.to_string(),
            r.try_get::<Decimal, _>("credits_total")?.to_string(),
            r.try_get::<Decimal, _>("total")?.to_string(),
            r.try_get::<Decimal, _>("credit_notes")?.to_string(),
            ts("finalized_at")?,
            ts("voided_at")?,
            r.try_get::<Option<String>, _>("void_reason")?
                .unwrap_or_default(),
        ])
        .map_err(csv_error)?;
    }
    let body = w.into_inner().map_err(|e| csv_error(e.into_error()))?;
    Ok(csv_response(
        &format!("invoices-{}.csv", month.label()),
        body,
    ))
}

/// `GET /v1/exports/invoice-lines.csv?period=YYYY-MM` (finance): every line
/// of the month's invoices with its split between platform and partner.
pub async fn export_lines(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Query(q): Query<PeriodQuery>,
) -> Result<impl IntoResponse, ApiError> {
    require_staff(&pool, &headers).await?;
    let month = parse_period(&q.period)?;
    let rows = sqlx::query(
        "SELECT i.id, i.number, i.account_id, i.status, l.currency, l.position, l.kind, l.provider_id,
                l.sku_id, l.description, l.quantity, l.unit, l.unit_price, l.amount, l.list_amount,
                l.markup, l.platform_fee, l.partner_net, l.price_id, l.adjusts_period_start
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         WHERE i.period_start >= $1 AND i.period_start < $2
         ORDER BY i.account_id, i.period_start, l.position",
    )
    .bind(month.start())
    .bind(month.end())
    .fetch_all(&pool)
    .await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "invoice_id",
        "number",
        "account_id",
        "status",
        "currency",
        "position",
        "kind",
        "provider_id",
        "sku",
        "description",
        "quantity",
        "unit",
        "unit_price",
        "amount",
        "list_amount",
        "markup",
        "platform_fee",
        "partner_net",
        "price_id",
        "adjusts_period_start",
    ])
    .map_err(csv_error)?;
    for r in &rows {
        let dec = |name: &str| -> Result<String, sqlx::Error> {
            Ok(r.try_get::<Decimal, _>(name)?.to_string())
        };
        w.write_record([
            r.try_get::<uuid::Uuid, _>("id")?.to_string(),
            r.try_get::<Option<String>, _>("number")?
                .unwrap_or_default(),
            r.try_get("account_id")?,
            r.try_get("status")?,
            r.try_get("currency")?,
            r.try_get::<i32, _>("position")?.to_string(),
            r.try_get("kind")?,
            r.try_get("provider_id")?,
            r.try_get("sku_id")?,
            r.try_get("description")?,
            dec("quantity")?,
            r.try_get("unit")?,
            r.try_get::<Option<Decimal>, _>("unit_price")?
                .map(|d| d.to_string())
                .unwrap_or_default(),
            dec("amount")?,
            dec("list_amount")?,
            dec("markup")?,
            dec("platform_fee")?,
            dec("partner_net")?,
            r.try_get::<i64, _>("price_id")?.to_string(),
            r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>("adjusts_period_start")?
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        ])
        .map_err(csv_error)?;
    }
    let body = w.into_inner().map_err(|e| csv_error(e.into_error()))?;
    Ok(csv_response(
        &format!("invoice-lines-{}.csv", month.label()),
        body,
    ))
}
