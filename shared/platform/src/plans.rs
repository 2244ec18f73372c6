//! Plans repository: a provider's plans per resource type and their
//! effective-dated versions (tables `plans`, `plan_versions`). The rules
//! (proration, allowances) are `tally_domain::plan`. Functions take a
//! connection so the caller owns the transaction.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};
use std::collections::BTreeMap;
use tally_domain::binding::{check_text, BindingError, MAX_NAME_CHARS};
use tally_domain::plan::{self, PlanError, PlanVersion};
use tally_domain::{Currency, PlanId, ProviderId, ResourceType, Sku};

use crate::catalog::decode_err;

#[derive(Debug, thiserror::Error)]
pub enum PlanRepoError {
    #[error("plan {0} already exists")]
    AlreadyExists(String),
    #[error("unknown plan {0}")]
    UnknownPlan(String),
    #[error("unknown provider {0}")]
    UnknownProvider(String),
    #[error("a version of this plan in this currency already takes effect at that time")]
    VersionExists,
    #[error(
        "sku {sku} is not provider {provider}'s: a plan only includes its own provider's SKUs"
    )]
    ForeignSku { sku: String, provider: String },
    #[error(transparent)]
    InvalidName(#[from] BindingError),
    #[error(transparent)]
    Invalid(#[from] PlanError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn on_constraint(err: sqlx::Error, what: &str) -> PlanRepoError {
    match crate::db::violated_constraint(&err) {
        Some("plans_pkey") => PlanRepoError::AlreadyExists(what.to_owned()),
        Some("plans_provider_id_fkey") => PlanRepoError::UnknownProvider(what.to_owned()),
        Some("plan_versions_plan_id_fkey") => PlanRepoError::UnknownPlan(what.to_owned()),
        Some("plan_versions_unique") => PlanRepoError::VersionExists,
        _ => PlanRepoError::Database(err),
    }
}

/// A plan as published: whose it is, for which resource type, its name.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Plan {
    pub id: PlanId,
    pub provider: ProviderId,
    pub resource_type: ResourceType,
    /// What the bill shows (`PS-10`).
    pub name: String,
}

/// Publishes a new plan (its terms come with its versions).
pub async fn create_plan(conn: &mut PgConnection, plan: &Plan) -> Result<(), PlanRepoError> {
    check_text("name", &plan.name, MAX_NAME_CHARS)?;
    sqlx::query("INSERT INTO plans (id, provider_id, resource_type, name) VALUES ($1, $2, $3, $4)")
        .bind(plan.id.as_str())
        .bind(plan.provider.as_str())
        .bind(plan.resource_type.as_str())
        .bind(&plan.name)
        .execute(conn)
        .await
        .map_err(|e| match on_constraint(e, plan.id.as_str()) {
            PlanRepoError::UnknownProvider(_) => {
                PlanRepoError::UnknownProvider(plan.provider.to_string())
            }
            other => other,
        })?;
    Ok(())
}

pub async fn get_plan(conn: &mut PgConnection, id: &PlanId) -> Result<Option<Plan>, sqlx::Error> {
    let row = sqlx::query("SELECT id, provider_id, resource_type, name FROM plans WHERE id = $1")
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    row.map(|r| plan_from_row(&r)).transpose()
}

/// A provider's plans, by id.
pub async fn list_plans(
    conn: &mut PgConnection,
    provider: &ProviderId,
) -> Result<Vec<Plan>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, provider_id, resource_type, name FROM plans WHERE provider_id = $1 ORDER BY id",
    )
    .bind(provider.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(plan_from_row).collect()
}

fn plan_from_row(r: &sqlx::postgres::PgRow) -> Result<Plan, sqlx::Error> {
    Ok(Plan {
        id: PlanId::parse(r.try_get("id")?).map_err(decode_err)?,
        provider: ProviderId::parse(r.try_get("provider_id")?).map_err(decode_err)?,
        resource_type: ResourceType::parse(r.try_get("resource_type")?).map_err(decode_err)?,
        name: r.try_get("name")?,
    })
}

/// Adds a version of `plan` in `currency` from `effective_from` on; its
/// allowances must name SKUs of the plan's provider. Returns its id.
pub async fn add_plan_version(
    conn: &mut PgConnection,
    plan: &PlanId,
    currency: Currency,
    effective_from: DateTime<Utc>,
    base_fee: Decimal,
    allowances: &BTreeMap<Sku, Decimal>,
) -> Result<i64, PlanRepoError> {
    plan::validate(base_fee, allowances)?;
    let owner = get_plan(&mut *conn, plan)
        .await?
        .ok_or_else(|| PlanRepoError::UnknownPlan(plan.to_string()))?
        .provider;
    let skus: Vec<&str> = allowances.keys().map(Sku::as_str).collect();
    let owners = crate::catalog::sku_owners(&mut *conn, &skus).await?;
    for sku in &skus {
        if owners.get(*sku).map(String::as_str) != Some(owner.as_str()) {
            return Err(PlanRepoError::ForeignSku {
                sku: (*sku).to_owned(),
                provider: owner.to_string(),
            });
        }
    }
    let allowances_json: serde_json::Map<String, serde_json::Value> = allowances
        .iter()
        .map(|(sku, q)| (sku.to_string(), serde_json::Value::String(q.to_string())))
        .collect();
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO plan_versions (plan_id, currency, effective_from, base_fee, allowances)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(plan.as_str())
    .bind(currency.code())
    .bind(effective_from)
    .bind(base_fee)
    .bind(serde_json::Value::Object(allowances_json))
    .fetch_one(conn)
    .await
    .map_err(|e| on_constraint(e, plan.as_str()))?;
    Ok(id)
}

/// Every version of the given plans in `currency`, oldest first, by plan.
pub async fn plan_versions(
    conn: &mut PgConnection,
    plans: &[&str],
    currency: Currency,
) -> Result<BTreeMap<PlanId, Vec<PlanVersion>>, sqlx::Error> {
    versions(conn, plans, Some(currency)).await
}

/// Every version of the given plans in every currency, by plan, each
/// plan's by currency and then oldest first (what the provider API lists).
pub async fn all_plan_versions(
    conn: &mut PgConnection,
    plans: &[&str],
) -> Result<BTreeMap<PlanId, Vec<PlanVersion>>, sqlx::Error> {
    versions(conn, plans, None).await
}

async fn versions(
    conn: &mut PgConnection,
    plans: &[&str],
    currency: Option<Currency>,
) -> Result<BTreeMap<PlanId, Vec<PlanVersion>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT v.id, v.plan_id, p.name, v.currency, v.effective_from, v.base_fee, v.allowances
         FROM plan_versions v JOIN plans p ON p.id = v.plan_id
         WHERE v.plan_id = ANY($1) AND ($2::text IS NULL OR v.currency = $2)
         ORDER BY v.plan_id, v.currency, v.effective_from",
    )
    .bind(plans)
    .bind(currency.map(|c| c.code()))
    .fetch_all(conn)
    .await?;
    let mut out: BTreeMap<PlanId, Vec<PlanVersion>> = BTreeMap::new();
    for r in &rows {
        let version = version_from_row(r)?;
        out.entry(version.plan.clone()).or_default().push(version);
    }
    Ok(out)
}

fn version_from_row(r: &sqlx::postgres::PgRow) -> Result<PlanVersion, sqlx::Error> {
    let allowances: BTreeMap<String, String> =
        serde_json::from_value(r.try_get("allowances")?).map_err(decode_err)?;
    let allowances = allowances
        .into_iter()
        .map(|(sku, q)| {
            Ok((
                Sku::parse(&sku).map_err(decode_err)?,
                q.parse::<Decimal>().map_err(decode_err)?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(PlanVersion {
        id: r.try_get("id")?,
        plan: PlanId::parse(r.try_get("plan_id")?).map_err(decode_err)?,
        name: r.try_get("name")?,
        currency: Currency::parse(r.try_get("currency")?).map_err(decode_err)?,
        effective_from: r.try_get("effective_from")?,
        base_fee: r.try_get("base_fee")?,
        allowances,
    })
}
