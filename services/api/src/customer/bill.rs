//! Customer bill API (`/v1/accounts/{id}/bill`): an account's invoice for a
//! period, as JSON.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use sqlx::PgPool;
use tally_invoicing::invoices_repo::{self, Invoice};

use crate::auth::{self, AccountReader};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::finance::invoices::parse_period;

#[derive(Debug, Deserialize)]
pub struct BillQuery {
    period: Option<String>,
}

pub async fn get_bill(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
    ApiQuery(q): ApiQuery<BillQuery>,
) -> Result<Json<Invoice>, ApiError> {
    let period = parse_period(
        q.period
            .as_deref()
            .ok_or_else(|| ApiError::InvalidPeriod("period=YYYY-MM is required".into()))?,
    )?;
    let account = auth::account_id(&account)?;
    let mut conn = pool.acquire().await?;
    invoices_repo::find_by_account_period(&mut conn, account.as_str(), period)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("bill of {account} for {}", period.label())))
}
