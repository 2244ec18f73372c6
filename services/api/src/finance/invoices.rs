//! Finance API (`/v1/invoices`).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tally_domain::{InvoiceStatus, Period};
use uuid::Uuid;

use crate::auth::Staff;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use tally_invoicing::invoices_repo::{self, Invoice, InvoiceFilter, InvoiceSummary};

pub fn parse_period(raw: &str) -> Result<Period, ApiError> {
    Period::parse_month(raw).map_err(|e| ApiError::InvalidPeriod(e.to_string()))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    account: Option<String>,
    period: Option<String>,
    status: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// One page of a list; `next_cursor` fetches the next (absent on the last).
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

pub async fn list_invoices(
    _: Staff,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<InvoiceSummary>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    let status = q
        .status
        .as_deref()
        .map(InvoiceStatus::parse)
        .transpose()
        .map_err(|_| ApiError::InvalidRequest("status must be draft, finalized or void".into()))?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|_| ApiError::InvalidRequest("bad cursor".into())))
        .transpose()?;
    let filter = InvoiceFilter {
        account: q.account,
        month: q.period.as_deref().map(parse_period).transpose()?,
        status,
        after,
        limit,
    };
    let mut conn = pool.acquire().await?;
    let data = invoices_repo::list_invoices(&mut conn, &filter).await?;
    let next_cursor = (data.len() as i64 == limit)
        .then(|| data.last().map(|i| i.id.to_string()))
        .flatten();
    Ok(Json(Page { data, next_cursor }))
}

pub async fn get_invoice(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Invoice>, ApiError> {
    let not_found = || ApiError::NotFound(format!("invoice {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    invoices_repo::get_invoice(&mut conn, uuid)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}
