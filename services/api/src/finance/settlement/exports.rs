//! The finance CSV exports of a month: invoices and invoice lines.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use rust_decimal::Decimal;
use sqlx::{PgPool, Row};
use tally_domain::spreadsheet;

use super::PeriodQuery;
use crate::auth::Staff;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::finance::invoices::parse_period;
use tally_invoicing::amounts::currency_of;

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

/// A finance export of a month as CSV: the rows of `sql` (bound to the
/// month's start and end), each written by `record` under `header`.
async fn month_csv(
    pool: &PgPool,
    period: &str,
    name: &str,
    sql: &str,
    header: &[&str],
    record: fn(&sqlx::postgres::PgRow) -> Result<Vec<String>, sqlx::Error>,
) -> Result<impl IntoResponse, ApiError> {
    let month = parse_period(period)?;
    let rows = sqlx::query(sql)
        .bind(month.start())
        .bind(month.end())
        .fetch_all(pool)
        .await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(csv_error)?;
    for r in &rows {
        w.write_record(record(r)?).map_err(csv_error)?;
    }
    let body = w.into_inner().map_err(|e| csv_error(e.into_error()))?;
    Ok(csv_response(&format!("{name}-{}.csv", month.label()), body))
}

fn timestamp(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    Ok(r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(name)?
        .map(|t| t.to_rfc3339())
        .unwrap_or_default())
}

/// A text column, neutralised against formula injection
/// ([`tally_domain::spreadsheet`]): every text cell of an export, whoever
/// chose it (a partner's SKU name or unit, finance's void reason).
fn text(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    let value: Option<String> = r.try_get(name)?;
    Ok(value
        .map(|v| spreadsheet::text_cell(&v).into_owned())
        .unwrap_or_default())
}

fn decimal(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    Ok(r.try_get::<Option<Decimal>, _>(name)?
        .map(|d| d.to_string())
        .unwrap_or_default())
}

/// An amount (or a unit price) of the row's `currency`, with its exponent.
fn amount(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    let currency = currency_of(r, "currency")?;
    Ok(r.try_get::<Option<Decimal>, _>(name)?
        .map(|d| currency.scaled(d).to_string())
        .unwrap_or_default())
}

/// `GET /v1/exports/invoices.csv?period=YYYY-MM` (finance): one row per
/// invoice of the month, any status.
#[utoipa::path(
    get,
    path = "/v1/exports/invoices.csv",
    tag = "finance",
    summary = "CSV of the month's invoices, any status (finance, admin)",
    description = "Text cells are neutralised against formula injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`. Numbers Tally formats (amounts, quantities, unit prices) are never prefixed.",
    params(PeriodQuery),
    responses((status = 200, description = "invoice_id,number,account_id,period_start,period_end,status,currency,subtotal,credits_total,total,credit_notes,finalized_at,voided_at,void_reason", content_type = "text/csv", body = String)),
    security(("bearer" = [])),
)]
pub async fn export_invoices(
    _: Staff,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<impl IntoResponse, ApiError> {
    month_csv(
        &pool,
        &q.period,
        "invoices",
        "SELECT i.id, i.number, i.account_id, i.period_start, i.period_end, i.status, i.currency,
                i.subtotal, i.credits_total, i.total,
                COALESCE((SELECT sum(n.total) FROM credit_notes n WHERE n.invoice_id = i.id), 0) AS credit_notes,
                i.finalized_at, i.voided_at, i.void_reason
         FROM invoices i WHERE i.period_start >= $1 AND i.period_start < $2
         ORDER BY i.account_id, i.period_start",
        &[
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
        ],
        |r| {
            Ok(vec![
                r.try_get::<uuid::Uuid, _>("id")?.to_string(),
                text(r, "number")?,
                text(r, "account_id")?,
                timestamp(r, "period_start")?,
                timestamp(r, "period_end")?,
                text(r, "status")?,
                currency_of(r, "currency")?.to_string(),
                amount(r, "subtotal")?,
                amount(r, "credits_total")?,
                amount(r, "total")?,
                amount(r, "credit_notes")?,
                timestamp(r, "finalized_at")?,
                timestamp(r, "voided_at")?,
                text(r, "void_reason")?,
            ])
        },
    )
    .await
}

/// `GET /v1/exports/invoice-lines.csv?period=YYYY-MM` (finance): every line
/// of the month's invoices with its split between platform and partner.
#[utoipa::path(
    get,
    path = "/v1/exports/invoice-lines.csv",
    tag = "finance",
    summary = "CSV of every line of the month's invoices with its platform/partner split (finance, admin)",
    description = "Text cells are neutralised against formula injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`. Numbers Tally formats (amounts, quantities, unit prices) are never prefixed.",
    params(PeriodQuery),
    responses((status = 200, description = "invoice_id,number,account_id,status,currency,position,kind,provider_id,sku,description,quantity,unit,unit_price,amount,list_amount,markup,platform_fee,partner_net,discount,discount_funded_by,price_id,adjusts_period_start,binding_id,resource", content_type = "text/csv", body = String)),
    security(("bearer" = [])),
)]
pub async fn export_lines(
    _: Staff,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<impl IntoResponse, ApiError> {
    month_csv(
        &pool,
        &q.period,
        "invoice-lines",
        "SELECT i.id, i.number, i.account_id, i.status, l.currency,
                (row_number() OVER (PARTITION BY l.invoice_id ORDER BY l.position) - 1)::int
                    AS position,
                l.kind, l.provider_id,
                l.sku_id, l.description, l.quantity, l.unit, l.unit_price, l.amount, l.list_amount,
                l.markup, l.platform_fee, l.partner_net, l.discount, l.discount_funded_by,
                l.price_id, l.adjusts_period_start,
                l.binding_id, l.resource_name || ' · ' || l.resource_plan AS resource
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         WHERE i.period_start >= $1 AND i.period_start < $2
         ORDER BY i.account_id, i.period_start, l.position",
        &[
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
            "discount",
            "discount_funded_by",
            "price_id",
            "adjusts_period_start",
            "binding_id",
            "resource",
        ],
        |r| {
            Ok(vec![
                r.try_get::<uuid::Uuid, _>("id")?.to_string(),
                text(r, "number")?,
                text(r, "account_id")?,
                text(r, "status")?,
                currency_of(r, "currency")?.to_string(),
                r.try_get::<i32, _>("position")?.to_string(),
                text(r, "kind")?,
                text(r, "provider_id")?,
                text(r, "sku_id")?,
                text(r, "description")?,
                decimal(r, "quantity")?,
                text(r, "unit")?,
                amount(r, "unit_price")?,
                amount(r, "amount")?,
                amount(r, "list_amount")?,
                amount(r, "markup")?,
                amount(r, "platform_fee")?,
                amount(r, "partner_net")?,
                amount(r, "discount")?,
                text(r, "discount_funded_by")?,
                r.try_get::<i64, _>("price_id")?.to_string(),
                timestamp(r, "adjusts_period_start")?,
                text(r, "binding_id")?,
                text(r, "resource")?,
            ])
        },
    )
    .await
}
