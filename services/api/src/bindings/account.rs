//! An account's bindings (`/v1/accounts/{account}/bindings…`): its own
//! customer token provisions, changes, suspends, resumes and deletes them
//! (as the customer); the admin key does the same for any account (as the
//! platform, and may time a move with `at`); finance reads them.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_domain::binding::{Actor, BindingEvent};
use tally_domain::{BindingId, PlanId, ProviderId, ResourceType};
use tally_platform::bindings::{self, Move, NewBinding, Scope};

use super::{binding_id, move_time, BindingDetail, BindingList, BindingView};
use crate::auth::{self, AccountActor, AccountReader};
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, ApiQuery, RequestBody};

/// Only the platform says when a move happened; a customer's is now.
fn timed(by: Actor, at: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, ApiError> {
    if by == Actor::Customer && at.is_some() {
        return Err(ApiError::Refused(
            Code::Forbidden,
            "a customer's move is timed by Tally (now): only the platform gives `at`".into(),
        ));
    }
    move_time(at, Utc::now())
}

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewBindingBody {
    /// The partner whose service this is
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    provider: String,
    /// The provider's kind of resource (`database`): its plans are per resource type
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    resource_type: String,
    /// The customer's name for the resource, shown on the bill (`prod-db`)
    #[schema(max_length = 100)]
    name: String,
    /// One of the provider's plans for the resource type (`dbco.ps-10`), with a version in the account's currency in effect
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    plan: String,
    #[schema(max_length = 100)]
    region: Option<String>,
    /// At most 16, keys and values of at most 100 characters
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// When it was requested (the platform only; now by default)
    at: Option<DateTime<Utc>>,
}

impl RequestBody for NewBindingBody {}

/// The header that makes a creation safe to retry.
const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_IDEMPOTENCY_KEY: usize = 200;

/// The request's `Idempotency-Key`, if any: visible text of at most 200
/// characters.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|k| {
            !k.is_empty()
                && k.chars().count() <= MAX_IDEMPOTENCY_KEY
                && !k.chars().any(char::is_control)
        })
        .ok_or_else(|| {
            ApiError::InvalidRequest(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible characters"
            ))
        })?;
    Ok(Some(key.to_owned()))
}

/// The provider is told (`binding.requested` on `bindings.events` and its
/// webhook) in the transaction that records the binding. With an
/// `Idempotency-Key`, a retry gets the binding the key created (200), not
/// a second one.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/bindings",
    tag = "bindings",
    summary = "Provision a partner's resource for the account (its customer token, admin)",
    params(
        ("account" = String, Path, description = "Account id"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry: the same key on the account answers with the binding it created (1 to 200 visible characters)"),
    ),
    request_body = NewBindingBody,
    responses(
        (status = 201, description = "The binding, requested", body = BindingView),
        (status = 200, description = "The binding this Idempotency-Key created before", body = BindingView),
    ),
    security(("bearer" = [])),
)]
pub async fn create_binding(
    AccountActor(by): AccountActor,
    State(pool): State<PgPool>,
    headers: HeaderMap,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<NewBindingBody>,
) -> Result<(StatusCode, Json<BindingView>), ApiError> {
    let account = auth::account_id(&account)?;
    let at = timed(by, body.at)?;
    let key = idempotency_key(&headers)?;
    let new = NewBinding {
        account,
        provider: ProviderId::parse(&body.provider).map_err(invalid)?,
        resource_type: ResourceType::parse(&body.resource_type).map_err(invalid)?,
        name: body.name,
        plan: PlanId::parse(&body.plan).map_err(|_| {
            ApiError::Refused(Code::UnknownPlan, format!("unknown plan {}", body.plan))
        })?,
        region: body.region,
        tags: body.tags,
    };
    let mut tx = pool.begin().await?;
    let (binding, created) = match key {
        Some(key) => bindings::create_binding_once(&mut tx, new, &key, by, at).await?,
        None => (bindings::create_binding(&mut tx, new, by, at).await?, true),
    };
    tx.commit().await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(binding.into())))
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/bindings",
    tag = "bindings",
    summary = "The account's bindings, oldest first (its customer token, finance, admin)",
    params(("account" = String, Path, description = "Account id")),
    responses((status = 200, description = "Bindings", body = BindingList)),
    security(("bearer" = [])),
)]
pub async fn list_bindings(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<BindingList>, ApiError> {
    let account = auth::account_id(&account)?;
    let mut conn = pool.acquire().await?;
    let found = bindings::list_bindings(&mut conn, &Scope::Account(account)).await?;
    Ok(Json(BindingList::of(found)))
}

#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/bindings/{id}",
    tag = "bindings",
    summary = "One binding with its status and plan histories (its customer token, finance, admin)",
    params(
        ("account" = String, Path, description = "Account id"),
        ("id" = String, Path, description = "Binding id"),
    ),
    responses((status = 200, description = "The binding", body = BindingDetail)),
    security(("bearer" = [])),
)]
pub async fn get_binding(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath((account, id)): ApiPath<(String, String)>,
) -> Result<Json<BindingDetail>, ApiError> {
    let scope = Scope::Account(auth::account_id(&account)?);
    detail(&pool, &scope, &binding_id(&id)?).await.map(Json)
}

/// The binding `id` as `scope` sees it, with its histories.
pub(super) async fn detail(
    pool: &PgPool,
    scope: &Scope,
    id: &BindingId,
) -> Result<BindingDetail, ApiError> {
    let mut conn = pool.acquire().await?;
    let binding = bindings::get_binding(&mut conn, scope, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("binding {id}")))?;
    let history = bindings::status_history(&mut conn, id).await?;
    let plans = bindings::plan_history(&mut conn, id).await?;
    Ok(BindingDetail::new(binding, history, plans))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct PlanChangeBody {
    /// Another plan of the same provider and resource type
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    plan: String,
    /// When the change takes effect (the platform only; now by default)
    at: Option<DateTime<Utc>>,
}

impl RequestBody for PlanChangeBody {}

/// From the change on, the new plan's fee accrues (each prorated by the
/// hour) and its allowance applies; the provider is told
/// (`binding.plan_changed`).
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/bindings/{id}/plan",
    tag = "bindings",
    summary = "Move a binding to another plan (its customer token, admin)",
    params(
        ("account" = String, Path, description = "Account id"),
        ("id" = String, Path, description = "Binding id"),
    ),
    request_body = PlanChangeBody,
    responses((status = 200, description = "The binding on its new plan", body = BindingView)),
    security(("bearer" = [])),
)]
pub async fn change_plan(
    AccountActor(by): AccountActor,
    State(pool): State<PgPool>,
    ApiPath((account, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<PlanChangeBody>,
) -> Result<Json<BindingView>, ApiError> {
    let scope = Scope::Account(auth::account_id(&account)?);
    let id = binding_id(&id)?;
    let at = timed(by, body.at)?;
    let plan = PlanId::parse(&body.plan)
        .map_err(|_| ApiError::Refused(Code::UnknownPlan, format!("unknown plan {}", body.plan)))?;
    let mut tx = pool.begin().await?;
    let binding = bindings::change_plan(&mut tx, &scope, &id, &plan, by, at).await?;
    tx.commit().await?;
    Ok(Json(binding.into()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MoveQuery {
    /// When the move happened (the platform only; now by default)
    at: Option<DateTime<Utc>>,
}

/// Applies the customer's or the platform's `event` to binding `id`.
async fn customer_move(
    pool: &PgPool,
    by: Actor,
    account: &str,
    id: &str,
    event: BindingEvent,
    at: Option<DateTime<Utc>>,
) -> Result<Json<BindingView>, ApiError> {
    let scope = Scope::Account(auth::account_id(account)?);
    let id = binding_id(id)?;
    let mv = Move {
        event,
        by,
        at: timed(by, at)?,
        message: None,
        provider_resource_id: None,
    };
    let mut tx = pool.begin().await?;
    let (binding, _) = bindings::apply_move(&mut tx, &scope, &id, mv).await?;
    tx.commit().await?;
    Ok(Json(binding.into()))
}

/// No plan fee accrues while suspended; usage still counts (what the
/// provider meters then is its call). A second suspend changes nothing.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/bindings/{id}/suspend",
    tag = "bindings",
    summary = "Suspend an active binding (its customer token, admin)",
    params(
        ("account" = String, Path, description = "Account id"),
        ("id" = String, Path, description = "Binding id"),
        MoveQuery,
    ),
    responses((status = 200, description = "The binding", body = BindingView)),
    security(("bearer" = [])),
)]
pub async fn suspend(
    AccountActor(by): AccountActor,
    State(pool): State<PgPool>,
    ApiPath((account, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<MoveQuery>,
) -> Result<Json<BindingView>, ApiError> {
    customer_move(&pool, by, &account, &id, BindingEvent::Suspend, q.at).await
}

#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/bindings/{id}/resume",
    tag = "bindings",
    summary = "Resume a suspended binding (its customer token, admin)",
    params(
        ("account" = String, Path, description = "Account id"),
        ("id" = String, Path, description = "Binding id"),
        MoveQuery,
    ),
    responses((status = 200, description = "The binding, active", body = BindingView)),
    security(("bearer" = [])),
)]
pub async fn resume(
    AccountActor(by): AccountActor,
    State(pool): State<PgPool>,
    ApiPath((account, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<MoveQuery>,
) -> Result<Json<BindingView>, ApiError> {
    customer_move(&pool, by, &account, &id, BindingEvent::Resume, q.at).await
}

/// Deleted is final: usage timed from then on is refused `not_bound`, and
/// the binding's plan fee stops.
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/bindings/{id}/delete",
    tag = "bindings",
    summary = "Delete a binding (its customer token, admin)",
    params(
        ("account" = String, Path, description = "Account id"),
        ("id" = String, Path, description = "Binding id"),
        MoveQuery,
    ),
    responses((status = 200, description = "The binding, deleted", body = BindingView)),
    security(("bearer" = [])),
)]
pub async fn delete(
    AccountActor(by): AccountActor,
    State(pool): State<PgPool>,
    ApiPath((account, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<MoveQuery>,
) -> Result<Json<BindingView>, ApiError> {
    customer_move(&pool, by, &account, &id, BindingEvent::Delete, q.at).await
}
