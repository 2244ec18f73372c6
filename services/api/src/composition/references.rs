//! On-behalf-of references (`/v1/provider/references`): a composing
//! provider asks the platform for the opaque reference of one of its
//! consumers, to hand to an upstream provider, whose usage then names it in
//! `onbehalfof`. The same (provider, consumer) always gets the same
//! reference; it tells the upstream provider nothing about the consumer.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tally_domain::AccountId;
use tally_platform::composition;

use crate::auth::ProviderCaller;
use crate::error::ApiError;
use crate::extract::{ApiJson, RequestBody};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewReference {
    /// The consumer: an account the caller bills
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    account: String,
}

impl RequestBody for NewReference {}

/// A consumer's reference.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Reference {
    account: String,
    /// `obo_` and 32 lowercase hex digits: what upstream usage names in
    /// `onbehalfof`
    #[schema(pattern = "^obo_[0-9a-f]{32}$")]
    reference: String,
}

#[utoipa::path(
    post,
    path = "/v1/provider/references",
    tag = "provider",
    summary = "The on-behalf-of reference of one of the caller's consumers (minted once)",
    request_body = NewReference,
    responses((status = 200, description = "The reference", body = Reference)),
    security(("bearer" = [])),
)]
pub async fn mint(
    ProviderCaller(provider): ProviderCaller,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewReference>,
) -> Result<Json<Reference>, ApiError> {
    let not_found = || ApiError::NotFound(format!("account {}", body.account));
    let account = AccountId::parse(&body.account).map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    let reference = composition::mint_reference(&mut conn, &provider, &account)
        .await
        .map_err(|e| match tally_platform::db::violated_constraint(&e) {
            Some("on_behalf_refs_account_id_fkey") => not_found(),
            _ => e.into(),
        })?;
    Ok(Json(Reference {
        account: account.to_string(),
        reference: reference.to_string(),
    }))
}
