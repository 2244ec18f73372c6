//! Plans over HTTP: a provider publishes its plans per resource type and
//! their versions (a base fee per period and allowances of its own SKUs),
//! effective now or later like its price versions
//! (`/v1/provider/plans…`); the admin API adds a version at any time
//! (`/v1/admin/plan-versions`: corrections of the past are the platform's).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_domain::input::{check_date, parse_exact};
use tally_domain::plan::PlanVersion;
use tally_domain::{Currency, PlanId, ProviderId, ResourceType, Sku};
use tally_platform::plans::{self, Plan};

use crate::auth::{Admin, ProviderCaller};
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, RequestBody};
use crate::openapi;

/// Clock skew tolerated for "now" between a provider and Tally.
const SKEW: i64 = 60;

/// One version of a plan as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanVersionView {
    pub id: i64,
    /// ISO 4217
    pub currency: String,
    pub effective_from: DateTime<Utc>,
    /// Per billing period of active time, prorated by the hour
    #[schema(value_type = openapi::Decimal)]
    pub base_fee: Decimal,
    /// Quantities of the provider's SKUs included per period, by SKU
    #[schema(value_type = BTreeMap<String, openapi::Decimal>)]
    pub allowances: BTreeMap<String, Decimal>,
}

impl From<PlanVersion> for PlanVersionView {
    fn from(v: PlanVersion) -> Self {
        PlanVersionView {
            id: v.id,
            currency: v.currency.code().to_owned(),
            effective_from: v.effective_from,
            base_fee: v.base_fee,
            allowances: v
                .allowances
                .into_iter()
                .map(|(sku, q)| (sku.to_string(), q))
                .collect(),
        }
    }
}

/// A plan with its versions (by currency, oldest first).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanView {
    pub id: String,
    pub provider: String,
    pub resource_type: String,
    /// What the bill shows (`PS-10`)
    pub name: String,
    pub versions: Vec<PlanVersionView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanList {
    pub data: Vec<PlanView>,
}

#[utoipa::path(
    get,
    path = "/v1/provider/plans",
    tag = "provider",
    summary = "The calling provider's plans with their versions",
    responses((status = 200, description = "Plans by id", body = PlanList)),
    security(("bearer" = [])),
)]
pub async fn list_plans(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
) -> Result<Json<PlanList>, ApiError> {
    let mut conn = pool.acquire().await?;
    let found = plans::list_plans(&mut conn, &me).await?;
    let ids: Vec<&str> = found.iter().map(|p| p.id.as_str()).collect();
    let mut versions = plans::all_plan_versions(&mut conn, &ids).await?;
    let data = found
        .into_iter()
        .map(|p| PlanView {
            versions: versions
                .remove(&p.id)
                .unwrap_or_default()
                .into_iter()
                .map(PlanVersionView::from)
                .collect(),
            id: p.id.to_string(),
            provider: p.provider.to_string(),
            resource_type: p.resource_type.to_string(),
            name: p.name,
        })
        .collect();
    Ok(Json(PlanList { data }))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewPlan {
    /// `<provider>.<name>`: in the calling provider's namespace (`plan_not_in_namespace`)
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    id: String,
    /// The kind of resource it is for (`database`)
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    resource_type: String,
    /// What the bill shows (`PS-10`)
    #[schema(max_length = 100)]
    name: String,
}

impl RequestBody for NewPlan {}

#[utoipa::path(
    post,
    path = "/v1/provider/plans",
    tag = "provider",
    summary = "Create a plan of the calling provider (its terms come with its versions)",
    request_body = NewPlan,
    responses((status = 201, description = "Created, without versions yet", body = PlanView)),
    security(("bearer" = [])),
)]
pub async fn create_plan(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewPlan>,
) -> Result<(StatusCode, Json<PlanView>), ApiError> {
    let id = PlanId::parse(&body.id).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    if !id.as_str().starts_with(&format!("{me}.")) {
        return Err(ApiError::Refused(
            Code::PlanNotInNamespace,
            format!("plan id {id} must start with {me}. (the calling provider's namespace)"),
        ));
    }
    let plan = Plan {
        id,
        provider: me,
        resource_type: ResourceType::parse(&body.resource_type)
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))?,
        name: body.name,
    };
    let mut conn = pool.acquire().await?;
    plans::create_plan(&mut conn, &plan).await?;
    Ok((
        StatusCode::CREATED,
        Json(PlanView {
            id: plan.id.to_string(),
            provider: plan.provider.to_string(),
            resource_type: plan.resource_type.to_string(),
            name: plan.name,
            versions: Vec::new(),
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewPlanVersion {
    /// ISO 4217: one version line per currency its accounts are billed in
    currency: String,
    /// The provider API: now (default) or later; the admin API: any time
    effective_from: Option<DateTime<Utc>>,
    /// Per billing period of active time, prorated by the hour; not negative
    #[serde(with = "tally_domain::input::exact")]
    #[schema(schema_with = openapi::exact_decimal)]
    base_fee: Decimal,
    /// Quantities of the provider's own SKUs included per period and resource (exact decimals, not negative)
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, openapi::Decimal>)]
    allowances: BTreeMap<String, String>,
}

impl RequestBody for NewPlanVersion {
    const INEXACT_CODE: Code = Code::InvalidPlan;
}

fn allowances(raw: &BTreeMap<String, String>) -> Result<BTreeMap<Sku, Decimal>, ApiError> {
    raw.iter()
        .map(|(sku, quantity)| {
            let parsed =
                Sku::parse(sku).map_err(|e| ApiError::Refused(Code::UnknownSku, e.to_string()))?;
            let quantity = parse_exact(quantity).map_err(|e| {
                ApiError::Refused(Code::InvalidPlan, format!("allowance of {sku}: {e}"))
            })?;
            Ok((parsed, quantity))
        })
        .collect()
}

/// Adds `body` as a version of `plan` from `from` on.
async fn add_version(
    pool: &PgPool,
    plan: &PlanId,
    from: DateTime<Utc>,
    body: &NewPlanVersion,
) -> Result<(StatusCode, Json<PlanVersionView>), ApiError> {
    let currency =
        Currency::parse(&body.currency).map_err(|e| ApiError::UnknownCurrency(e.to_string()))?;
    let allowances = allowances(&body.allowances)?;
    let mut conn = pool.acquire().await?;
    let id = plans::add_plan_version(&mut conn, plan, currency, from, body.base_fee, &allowances)
        .await?;
    let version = PlanVersion {
        id,
        plan: plan.clone(),
        name: String::new(),
        currency,
        effective_from: from,
        base_fee: body.base_fee,
        allowances,
    };
    Ok((StatusCode::CREATED, Json(version.into())))
}

#[utoipa::path(
    post,
    path = "/v1/provider/plans/{plan}/versions",
    tag = "provider",
    summary = "Publish a version of one of the provider's plans, effective now or later",
    params(("plan" = String, Path, description = "Plan id")),
    request_body = NewPlanVersion,
    responses((status = 201, description = "Published", body = PlanVersionView)),
    security(("bearer" = [])),
)]
pub async fn publish_version(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    ApiPath(plan): ApiPath<String>,
    ApiJson(body): ApiJson<NewPlanVersion>,
) -> Result<(StatusCode, Json<PlanVersionView>), ApiError> {
    let plan = own_plan(&pool, &me, &plan).await?;
    let now = Utc::now();
    let from = body.effective_from.unwrap_or(now);
    check_date("effective_from", from)?;
    if from < now - Duration::seconds(SKEW) {
        return Err(ApiError::EffectiveInPast(format!(
            "a plan version takes effect now or later, not at {}; corrections of the past go through the platform",
            from.to_rfc3339()
        )));
    }
    add_version(&pool, &plan, from, &body).await
}

/// The plan, if it exists and is `owner`'s (another's does not exist for it).
async fn own_plan(pool: &PgPool, owner: &ProviderId, raw: &str) -> Result<PlanId, ApiError> {
    let not_found = || ApiError::NotFound(format!("plan {raw}"));
    let id = PlanId::parse(raw).map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    match plans::get_plan(&mut conn, &id).await? {
        Some(plan) if &plan.provider == owner => Ok(id),
        _ => Err(not_found()),
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct AdminPlanVersion {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    plan: String,
    #[serde(flatten)]
    version: NewPlanVersion,
}

impl RequestBody for AdminPlanVersion {
    const INEXACT_CODE: Code = Code::InvalidPlan;
}

#[utoipa::path(
    post,
    path = "/v1/admin/plan-versions",
    tag = "admin",
    summary = "Add a plan version at any time (corrections may be backdated)",
    request_body = AdminPlanVersion,
    responses((status = 201, description = "Created", body = PlanVersionView)),
    security(("bearer" = [])),
)]
pub async fn admin_plan_version(
    _: Admin,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<AdminPlanVersion>,
) -> Result<(StatusCode, Json<PlanVersionView>), ApiError> {
    let plan = PlanId::parse(&body.plan)
        .map_err(|_| ApiError::Refused(Code::UnknownPlan, format!("unknown plan {}", body.plan)))?;
    let from = body.version.effective_from.unwrap_or_else(Utc::now);
    check_date("effective_from", from)?;
    add_version(&pool, &plan, from, &body.version).await
}
