//! A composing provider's own account (`/v1/provider/account/…`): the
//! invoices the platform sends it for the upstream services it binds. Only
//! the accounts it owns (`accounts.owner_provider_id`); another account's
//! invoice is `not_found`, as if it did not exist.

use axum::extract::State;
use axum::Json;
use sqlx::PgPool;
use tally_invoicing::invoices_repo::{self, Invoice, InvoiceFilter, InvoiceSummary};
use tally_platform::composition;
use uuid::Uuid;

use crate::auth::ProviderCaller;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::finance::invoices::Page;
use crate::openapi;

/// At most this many invoices per account are listed (a provider's own
/// accounts have one invoice a period).
const LIMIT: i64 = 500;

#[utoipa::path(
    get,
    path = "/v1/provider/account/invoices",
    tag = "provider",
    summary = "The invoices of the caller's own billing accounts (a provider as a customer)",
    responses((status = 200, description = "Its accounts' invoices, by account, in id order", body = inline(openapi::InvoicePage))),
    security(("bearer" = [])),
)]
pub async fn list_invoices(
    ProviderCaller(provider): ProviderCaller,
    State(pool): State<PgPool>,
) -> Result<Json<Page<InvoiceSummary>>, ApiError> {
    let mut conn = pool.acquire().await?;
    let mut data = Vec::new();
    for account in composition::accounts_of(&mut conn, &provider).await? {
        let filter = InvoiceFilter {
            account: Some(account),
            month: None,
            status: None,
            after: None,
            limit: LIMIT,
        };
        data.extend(invoices_repo::list_invoices(&mut conn, &filter).await?);
    }
    Ok(Json(Page {
        data,
        next_cursor: None,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/provider/account/invoices/{id}",
    tag = "provider",
    summary = "One invoice of the caller's own billing accounts",
    params(("id" = String, Path, description = "Invoice id", format = Uuid)),
    responses((status = 200, description = "The invoice", body = inline(openapi::InvoiceRef))),
    security(("bearer" = [])),
)]
pub async fn get_invoice(
    ProviderCaller(provider): ProviderCaller,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Invoice>, ApiError> {
    let not_found = || ApiError::NotFound(format!("invoice {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    let own = composition::accounts_of(&mut conn, &provider).await?;
    invoices_repo::get_invoice(&mut conn, uuid)
        .await?
        .filter(|invoice| own.contains(&invoice.summary.account_id))
        .map(Json)
        .ok_or_else(not_found)
}
