//! SQL of invoices and their lines. Functions take the caller's connection.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use tally_domain::{Period, Statement};
use uuid::Uuid;

/// Upserts the draft invoice of a statement's account-period. Only a newer
/// statement version changes a draft; finalized invoices are never touched.
/// Returns whether the invoice changed.
pub async fn apply_statement(conn: &mut PgConnection, s: &Statement) -> Result<bool, sqlx::Error> {
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO invoices (id, account_id, period_start, period_end, currency, statement_version,
             subtotal, credits_total, total)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (account_id, period_start) DO UPDATE
         SET statement_version = EXCLUDED.statement_version, subtotal = EXCLUDED.subtotal,
             credits_total = EXCLUDED.credits_total, total = EXCLUDED.total,
             period_end = EXCLUDED.period_end, currency = EXCLUDED.currency, updated_at = now()
         WHERE invoices.statement_version < EXCLUDED.statement_version AND invoices.status = 'draft'
         RETURNING id",
    )
    .bind(Uuid::now_v7())
    .bind(s.account_id.as_str())
    .bind(s.period.start())
    .bind(s.period.end())
    .bind(s.currency.code())
    .bind(s.version)
    .bind(s.subtotal)
    .bind(s.credits_total)
    .bind(s.total)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(id) = id else {
        return Ok(false);
    };
    sqlx::query("DELETE FROM invoice_lines WHERE invoice_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM invoice_credits WHERE invoice_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    if !s.credits.is_empty() {
        let line_json = s
            .credits
            .iter()
            .map(|c| serde_json::to_value(&c.lines))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO invoice_credits (invoice_id, position, grant_id, name, kind, amount, lines)
             SELECT $1, t.* FROM UNNEST($2::int[], $3::bigint[], $4::text[], $5::text[], $6::numeric[], $7::jsonb[]) AS t",
        )
        .bind(id)
        .bind((0..s.credits.len()).map(|i| i32::try_from(i).unwrap_or(i32::MAX)).collect::<Vec<_>>())
        .bind(s.credits.iter().map(|c| c.grant_id).collect::<Vec<_>>())
        .bind(s.credits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>())
        .bind(s.credits.iter().map(|c| c.kind.as_str()).collect::<Vec<_>>())
        .bind(s.credits.iter().map(|c| c.amount).collect::<Vec<_>>())
        .bind(&line_json)
        .execute(&mut *conn)
        .await?;
    }
    let lines = &s.lines;
    let text =
        |f: fn(&tally_domain::StatementLine) -> &str| lines.iter().map(f).collect::<Vec<_>>();
    let num =
        |f: fn(&tally_domain::StatementLine) -> Decimal| lines.iter().map(f).collect::<Vec<_>>();
    let positions: Vec<i32> = (0..lines.len())
        .map(|i| i32::try_from(i).unwrap_or(i32::MAX))
        .collect();
    sqlx::query(
        "INSERT INTO invoice_lines (invoice_id, position, kind, provider_id, provider_name, provider_kind,
             sku_id, description, unit, quantity, unit_price, amount, list_amount, markup, platform_fee,
             partner_net, price_id, price_effective_from, event_count, currency)
         SELECT $1, t.*, $20 FROM UNNEST($2::int[], $3::text[], $4::text[], $5::text[], $6::text[],
             $7::text[], $8::text[], $9::text[], $10::numeric[], $11::numeric[], $12::numeric[],
             $13::numeric[], $14::numeric[], $15::numeric[], $16::numeric[], $17::bigint[],
             $18::timestamptz[], $19::bigint[]) AS t",
    )
    .bind(id)
    .bind(&positions)
    .bind(text(|l| l.kind.as_str()))
    .bind(text(|l| l.provider.id.as_str()))
    .bind(text(|l| l.provider.name.as_str()))
    .bind(text(|l| l.provider.kind.as_str()))
    .bind(text(|l| l.sku.as_str()))
    .bind(text(|l| l.description.as_str()))
    .bind(text(|l| l.unit.as_str()))
    .bind(num(|l| l.quantity))
    .bind(lines.iter().map(|l| l.unit_price).collect::<Vec<_>>())
    .bind(num(|l| l.amount))
    .bind(num(|l| l.list_amount))
    .bind(num(|l| l.markup))
    .bind(num(|l| l.platform_fee))
    .bind(num(|l| l.partner_net))
    .bind(lines.iter().map(|l| l.price_id).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.price_effective_from).collect::<Vec<_>>())
    .bind(lines.iter().map(|l| l.event_count).collect::<Vec<_>>())
    .bind(s.currency.code())
    .execute(&mut *conn)
    .await?;
    Ok(true)
}

#[derive(Debug, Clone, Serialize)]
pub struct PeriodView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub label: String,
}

impl PeriodView {
    fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        let label = Period::new(start, end)
            .map(|p| p.label())
            .unwrap_or_default();
        Self { start, end, label }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct InvoiceSummary {
    pub id: Uuid,
    pub number: Option<String>,
    pub account_id: String,
    pub period: PeriodView,
    pub status: String,
    pub currency: String,
    pub statement_version: i64,
    /// The sum of the lines, before credits.
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub credits_total: Decimal,
    /// Amount due: `subtotal - credits_total`.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProviderView {
    pub id: String,
    pub name: String,
    pub kind: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineView {
    pub kind: String,
    pub sku: String,
    pub price_id: i64,
    pub description: String,
    pub unit: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub unit_price: Option<Decimal>,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub list_amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub markup: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub platform_fee: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    pub partner_net: Decimal,
    pub price_effective_from: DateTime<Utc>,
    pub event_count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub provider: ProviderView,
    pub lines: Vec<LineView>,
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
}

/// A credit line: what one grant paid on the invoice.
#[derive(Debug, Clone, Serialize)]
pub struct CreditView {
    pub grant_id: i64,
    pub name: String,
    pub kind: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// An invoice with its lines grouped per provider (the platform first),
/// then the credits applied.
#[derive(Debug, Clone, Serialize)]
pub struct Invoice {
    #[serde(flatten)]
    pub summary: InvoiceSummary,
    pub sections: Vec<Section>,
    pub credits: Vec<CreditView>,
}

const SUMMARY_COLUMNS: &str =
    "id, number, account_id, period_start, period_end, status, currency, \
     statement_version, subtotal, credits_total, total, created_at, updated_at";

fn summary(r: &PgRow) -> Result<InvoiceSummary, sqlx::Error> {
    Ok(InvoiceSummary {
        id: r.try_get("id")?,
        number: r.try_get("number")?,
        account_id: r.try_get("account_id")?,
        period: PeriodView::new(r.try_get("period_start")?, r.try_get("period_end")?),
        status: r.try_get("status")?,
        currency: r.try_get("currency")?,
        statement_version: r.try_get("statement_version")?,
        subtotal: r.try_get("subtotal")?,
        credits_total: r.try_get("credits_total")?,
        total: r.try_get("total")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn with_sections(
    conn: &mut PgConnection,
    summary: InvoiceSummary,
) -> Result<Invoice, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT provider_id, provider_name, provider_kind, kind, sku_id, price_id, description, unit,
                quantity, unit_price, amount, list_amount, markup, platform_fee, partner_net,
                price_effective_from, event_count
         FROM invoice_lines WHERE invoice_id = $1 ORDER BY position",
    )
    .bind(summary.id)
    .fetch_all(&mut *conn)
    .await?;
    let mut sections: Vec<Section> = Vec::new();
    for r in rows {
        let provider_id: String = r.try_get("provider_id")?;
        let line = LineView {
            kind: r.try_get("kind")?,
            sku: r.try_get("sku_id")?,
            price_id: r.try_get("price_id")?,
            description: r.try_get("description")?,
            unit: r.try_get("unit")?,
            quantity: r.try_get("quantity")?,
            unit_price: r.try_get("unit_price")?,
            amount: r.try_get("amount")?,
            list_amount: r.try_get("list_amount")?,
            markup: r.try_get("markup")?,
            platform_fee: r.try_get("platform_fee")?,
            partner_net: r.try_get("partner_net")?,
            price_effective_from: r.try_get("price_effective_from")?,
            event_count: r.try_get("event_count")?,
        };
        match sections.last_mut() {
            Some(s) if s.provider.id == provider_id => {
                s.subtotal += line.amount;
                s.lines.push(line);
            }
            _ => sections.push(Section {
                provider: ProviderView {
                    id: provider_id,
                    name: r.try_get("provider_name")?,
                    kind: r.try_get("provider_kind")?,
                },
                subtotal: line.amount,
                lines: vec![line],
            }),
        }
    }
    let credits = sqlx::query(
        "SELECT grant_id, name, kind, amount FROM invoice_credits WHERE invoice_id = $1 ORDER BY position",
    )
    .bind(summary.id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| {
        Ok(CreditView {
            grant_id: r.try_get("grant_id")?,
            name: r.try_get("name")?,
            kind: r.try_get("kind")?,
            amount: r.try_get("amount")?,
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Invoice {
        summary,
        sections,
        credits,
    })
}

pub async fn get_invoice(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<Invoice>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM invoices WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(Some(with_sections(conn, summary(&r)?).await?)),
        None => Ok(None),
    }
}

pub async fn find_by_account_period(
    conn: &mut PgConnection,
    account: &str,
    period_start: DateTime<Utc>,
) -> Result<Option<Invoice>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM invoices WHERE account_id = $1 AND period_start = $2"
    ))
    .bind(account)
    .bind(period_start)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some(r) => Ok(Some(with_sections(conn, summary(&r)?).await?)),
        None => Ok(None),
    }
}

#[derive(Debug, Default, Clone)]
pub struct InvoiceFilter {
    pub account: Option<String>,
    pub period_start: Option<DateTime<Utc>>,
    pub status: Option<String>,
    /// Return invoices with an id greater than this (keyset pagination).
    pub after: Option<Uuid>,
    pub limit: i64,
}

/// Invoices in id order (ids are time-ordered UUID v7).
pub async fn list_invoices(
    conn: &mut PgConnection,
    f: &InvoiceFilter,
) -> Result<Vec<InvoiceSummary>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {SUMMARY_COLUMNS} FROM invoices
         WHERE ($1::text IS NULL OR account_id = $1)
           AND ($2::timestamptz IS NULL OR period_start = $2)
           AND ($3::text IS NULL OR status = $3)
           AND ($4::uuid IS NULL OR id > $4)
         ORDER BY id LIMIT $5"
    ))
    .bind(f.account.as_deref())
    .bind(f.period_start)
    .bind(f.status.as_deref())
    .bind(f.after)
    .bind(f.limit)
    .fetch_all(conn)
    .await?;
    rows.iter().map(summary).collect()
}

/// The periods an account has invoices for, newest first.
pub async fn account_periods(
    conn: &mut PgConnection,
    account: &str,
) -> Result<Vec<PeriodView>, sqlx::Error> {
    let rows: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
        "SELECT period_start, period_end FROM invoices WHERE account_id = $1 ORDER BY period_start DESC",
    )
    .bind(account)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(s, e)| PeriodView::new(s, e))
        .collect())
}

/// Quantity per day and price version of an account-period (from rating's hourly roll-up).
pub async fn daily_usage(
    conn: &mut PgConnection,
    account: &str,
    period_start: DateTime<Utc>,
) -> Result<Vec<(chrono::NaiveDate, i64, Decimal)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT (hour AT TIME ZONE 'UTC')::date AS day, price_id, sum(quantity) AS quantity
         FROM usage_hourly WHERE account_id = $1 AND period_start = $2
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(account)
    .bind(period_start)
    .fetch_all(conn)
    .await
}
