//! The margin report of a composing provider (`/v1/provider/margin…`):
//! per consumer (its own account id, resolved from the references minted
//! for the caller alone), composed SKU and month, the revenue from that
//! consumer beside the upstream cost done on its behalf
//! ([`tally_domain::composition::margin`]); JSON and CSV. A provider sees
//! its own report only: its own lines, its own accounts' invoices.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tally_domain::composition::margin::{margin, MarginRow};
use tally_domain::{spreadsheet, Currency, Period, ProviderId};
use tally_platform::composition;

use crate::auth::ProviderCaller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::finance::invoices::parse_period;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MarginQuery {
    /// Month whose usage counts, as YYYY-MM: the lines of periods starting
    /// in it, and the adjustments of those periods on later invoices
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: String,
}

/// One row: a consumer's revenue from one composed SKU, and the upstream
/// cost done on its behalf attributed to it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MarginRowView {
    /// The month, YYYY-MM
    period: String,
    /// The consumer's account id
    consumer: String,
    /// The composed SKU; null for upstream cost of a consumer billed none
    sku: Option<String>,
    /// ISO 4217
    #[schema(value_type = String)]
    currency: Currency,
    /// What the consumer was billed for it
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    revenue: Decimal,
    /// What the caller is owed of it, after the platform fee
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    revenue_net: Decimal,
    /// The upstream usage done on the consumer's behalf, as the caller's
    /// own invoices bill it
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    upstream_cost: Decimal,
    /// `revenue_net - upstream_cost`
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = tally_platform::openapi::Decimal)]
    margin: Decimal,
}

/// The report of a month.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MarginReport {
    data: Vec<MarginRowView>,
}

async fn rows(
    pool: &PgPool,
    provider: &ProviderId,
    month: &Period,
) -> Result<Vec<MarginRowView>, ApiError> {
    let mut conn = pool.acquire().await?;
    let (revenue, costs) =
        composition::margin_inputs(&mut conn, provider, month.start(), month.end()).await?;
    let rows = margin(&revenue, &costs).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(rows
        .into_iter()
        .map(|r: MarginRow| MarginRowView {
            period: month.label(),
            consumer: r.consumer,
            sku: r.sku,
            currency: r.currency,
            revenue: r.revenue,
            revenue_net: r.revenue_net,
            upstream_cost: r.upstream_cost,
            margin: r.margin,
        })
        .collect())
}

#[utoipa::path(
    get,
    path = "/v1/provider/margin",
    tag = "provider",
    summary = "The caller's margin report of a month: per consumer and composed SKU, revenue beside upstream cost",
    params(MarginQuery),
    responses((status = 200, description = "Rows by consumer, currency and SKU", body = MarginReport)),
    security(("bearer" = [])),
)]
pub async fn get_margin(
    ProviderCaller(provider): ProviderCaller,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<MarginQuery>,
) -> Result<Json<MarginReport>, ApiError> {
    let month = parse_period(&q.period)?;
    Ok(Json(MarginReport {
        data: rows(&pool, &provider, &month).await?,
    }))
}

/// The CSV header of [`export_margin`].
pub const CSV_HEADER: [&str; 8] = [
    "period",
    "consumer",
    "sku",
    "currency",
    "revenue",
    "revenue_net",
    "upstream_cost",
    "margin",
];

#[utoipa::path(
    get,
    path = "/v1/provider/margin.csv",
    tag = "provider",
    summary = "The caller's margin report of a month as CSV",
    params(MarginQuery),
    responses((status = 200, description = "period,consumer,sku,currency,revenue,revenue_net,upstream_cost,margin", content_type = "text/csv", body = String)),
    security(("bearer" = [])),
)]
pub async fn export_margin(
    ProviderCaller(provider): ProviderCaller,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<MarginQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let month = parse_period(&q.period)?;
    let rows = rows(&pool, &provider, &month).await?;
    let csv_error = |e: csv::Error| ApiError::Internal(anyhow::Error::new(e));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER).map_err(csv_error)?;
    for r in &rows {
        // Account ids and SKUs are tenants' text: neutralised.
        w.write_record([
            r.period.clone(),
            spreadsheet::text_cell(&r.consumer).into_owned(),
            spreadsheet::text_cell(r.sku.as_deref().unwrap_or_default()).into_owned(),
            r.currency.code().to_owned(),
            r.revenue.to_string(),
            r.revenue_net.to_string(),
            r.upstream_cost.to_string(),
            r.margin.to_string(),
        ])
        .map_err(csv_error)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e.into_error())))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"margin-{}.csv\"", month.label()),
            ),
        ],
        body,
    ))
}
