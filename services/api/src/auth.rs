//! Who may call what. [`authenticate`] resolves the bearer key of every
//! request of the API before anything else reads it (401 `unauthorized`
//! otherwise); the caller extractors below then admit the roles of a route
//! (403 `forbidden` otherwise). A handler takes its caller extractor first,
//! before its path, query and body, so that a caller who may not use a
//! route learns nothing about what the route expects.

use axum::extract::{FromRequestParts, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use sqlx::PgPool;
use tally_domain::{AccountId, ProviderId};
use tally_platform::auth::{self, Principal};

use crate::error::ApiError;

async fn principal(pool: &PgPool, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = auth::bearer(headers).ok_or(ApiError::Unauthorized)?;
    auth::authenticate(pool, token)
        .await?
        .ok_or(ApiError::Unauthorized)
}

/// Middleware of every route that takes a bearer key: authenticates the
/// key and hands the [`Caller`] to the route.
pub async fn authenticate(
    State(pool): State<PgPool>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let caller = principal(&pool, request.headers()).await?;
    request.extensions_mut().insert(Caller(caller));
    Ok(next.run(request).await)
}

/// Any authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        // Absent only on a route without `authenticate`: nobody gets in.
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or(ApiError::Unauthorized)
    }
}

async fn caller<S: Send + Sync>(parts: &mut Parts, state: &S) -> Result<Principal, ApiError> {
    Ok(Caller::from_request_parts(parts, state).await?.0)
}

/// Finance API: finance and admin keys.
pub struct Staff(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match caller(parts, state).await? {
            p if p.is_staff() => Ok(Staff(p)),
            _ => Err(ApiError::Forbidden),
        }
    }
}

/// Admin API: admin keys only.
pub struct Admin;

impl<S: Send + Sync> FromRequestParts<S> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match caller(parts, state).await? {
            Principal::Admin => Ok(Admin),
            _ => Err(ApiError::Forbidden),
        }
    }
}

/// Provider API: a provider's key, as its provider.
pub struct ProviderCaller(pub ProviderId);

impl<S: Send + Sync> FromRequestParts<S> for ProviderCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match caller(parts, state).await? {
            Principal::Provider(id) => Ok(ProviderCaller(id)),
            _ => Err(ApiError::Forbidden),
        }
    }
}

/// Staff (`None`) or a customer (`Some` of its own account): readers of
/// bills and credit notes.
pub struct Reader(pub Option<AccountId>);

impl<S: Send + Sync> FromRequestParts<S> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match caller(parts, state).await? {
            Principal::Admin | Principal::Finance => Ok(Reader(None)),
            Principal::Customer(own) => Ok(Reader(Some(own))),
            Principal::Provider(_) => Err(ApiError::Forbidden),
        }
    }
}

/// An account's own routes (`/v1/accounts/{account}/…`): its own customer
/// token, or staff.
pub struct AccountReader;

impl<S: Send + Sync> FromRequestParts<S> for AccountReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Reader(own) = Reader::from_request_parts(parts, state).await?;
        let Some(own) = own else {
            return Ok(AccountReader);
        };
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::Forbidden)?;
        match params.iter().find(|(name, _)| *name == "account") {
            Some((_, account)) if account == own.as_str() => Ok(AccountReader),
            _ => Err(ApiError::Forbidden),
        }
    }
}

/// Parses an account id from a path, as `not_found` when it cannot exist.
pub fn account_id(raw: &str) -> Result<AccountId, ApiError> {
    AccountId::parse(raw).map_err(|_| ApiError::NotFound(format!("account {raw}")))
}

/// Who may change an account's bindings: the account's own customer token
/// (as the customer) or the admin key (as the platform). Finance reads
/// bindings but does not provision them.
pub struct AccountActor(pub tally_domain::binding::Actor);

impl<S: Send + Sync> FromRequestParts<S> for AccountActor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        use tally_domain::binding::Actor;
        match caller(parts, state).await? {
            Principal::Admin => Ok(AccountActor(Actor::Platform)),
            Principal::Customer(own) => {
                let params = RawPathParams::from_request_parts(parts, state)
                    .await
                    .map_err(|_| ApiError::Forbidden)?;
                match params.iter().find(|(name, _)| *name == "account") {
                    Some((_, account)) if account == own.as_str() => {
                        Ok(AccountActor(Actor::Customer))
                    }
                    _ => Err(ApiError::Forbidden),
                }
            }
            Principal::Finance | Principal::Provider(_) => Err(ApiError::Forbidden),
        }
    }
}
