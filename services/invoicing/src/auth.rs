//! Who may call what: the bearer key resolved to a principal, and the checks
//! each route applies.

use axum::http::HeaderMap;
use sqlx::PgPool;
use tally_domain::AccountId;
use tally_platform::auth::{self, Principal};

use crate::error::ApiError;

pub async fn principal(pool: &PgPool, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = auth::bearer(headers).ok_or(ApiError::Unauthorized)?;
    auth::authenticate(pool, token)
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// Finance API: finance and admin keys.
pub async fn require_staff(pool: &PgPool, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let p = principal(pool, headers).await?;
    if p.is_staff() {
        Ok(p)
    } else {
        Err(ApiError::Forbidden)
    }
}

/// Admin API: admin keys only.
pub async fn require_admin(pool: &PgPool, headers: &HeaderMap) -> Result<(), ApiError> {
    match principal(pool, headers).await? {
        Principal::Admin => Ok(()),
        _ => Err(ApiError::Forbidden),
    }
}

/// An account's bill: its own customer token, or staff.
pub async fn require_account(
    pool: &PgPool,
    headers: &HeaderMap,
    account: &str,
) -> Result<(), ApiError> {
    match principal(pool, headers).await? {
        Principal::Admin | Principal::Finance => Ok(()),
        Principal::Customer(own) if own.as_str() == account => Ok(()),
        _ => Err(ApiError::Forbidden),
    }
}

/// Parses an account id from a path, as `not_found` when it cannot exist.
pub fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).map_err(|_| ApiError::NotFound(format!("account {raw}")))
}
