//! Customer bill API (`/v1/accounts/{id}/bill`): an account's invoice for a
//! period, as JSON, with each bound resource's status, cost so far and
//! forecast (`resources`, see [`super::outlook`]), and its contract, commitments'
//! progress and coming price changes ([`super::contract`]).

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use sqlx::PgPool;
use tally_invoicing::invoices_repo;

use super::contract;
use super::outlook::{self, Bill};

use crate::auth::{self, AccountReader};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::finance::invoices::parse_period;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BillQuery {
    /// YYYY-MM
    #[param(required = true, value_type = String, pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/bill",
    tag = "customer",
    summary = "An account's bill for a period (its customer token, finance, admin)",
    params(("account" = String, Path, description = "Account id"), BillQuery),
    responses((status = 200, description = "The invoice and its bound resources' outlook", body = Bill)),
    security(("bearer" = [])),
)]
pub async fn get_bill(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
    ApiQuery(q): ApiQuery<BillQuery>,
) -> Result<Json<Bill>, ApiError> {
    let period = parse_period(
        q.period
            .as_deref()
            .ok_or_else(|| ApiError::InvalidPeriod("period=YYYY-MM is required".into()))?,
    )?;
    let account = auth::account_id(&account)?;
    let mut conn = pool.acquire().await?;
    let invoice = invoices_repo::find_by_account_period(&mut conn, account.as_str(), period)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("bill of {account} for {}", period.label())))?;
    let now = chrono::Utc::now();
    let resources = outlook::outlooks(&mut conn, &account, &invoice, now).await?;
    let contract::BillContract {
        contract,
        commitments,
        price_changes,
    } = contract::load(&mut conn, &account, &invoice, now).await?;
    Ok(Json(Bill {
        invoice,
        resources,
        contract,
        commitments,
        price_changes,
    }))
}
