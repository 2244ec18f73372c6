//! Admin API: providers, accounts, SKUs, prices and staff keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tally_domain::input::{check_date, check_text, MAX_NAME, MAX_UNIT};
use tally_domain::{
    AccountId, Aggregation, AnchorDay, Currency, PriceBook, PriceModel, ProviderId, ProviderKind,
    Sku,
};
use tally_platform::auth::{create_key, Principal};
use tally_platform::{catalog, onboarding};

use crate::auth::Admin;
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiQuery, RequestBody};

type Created = (StatusCode, Json<Value>);

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

fn currency(code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code).map_err(|e| ApiError::UnknownCurrency(e.to_string()))
}

#[derive(Deserialize)]
pub struct NewProvider {
    id: String,
    name: String,
    kind: String,
    /// The platform's share of this partner's list amounts, in percent.
    #[serde(default, with = "tally_domain::input::exact_option")]
    platform_fee_pct: Option<Decimal>,
    /// Whether its usage may come through the `usage.ingest` Kafka topic.
    #[serde(default)]
    kafka_ingest: bool,
}

impl RequestBody for NewProvider {
    const INEXACT_CODE: Code = Code::InvalidPrice;
}

pub async fn create_provider(
    _: Admin,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewProvider>,
) -> Result<Created, ApiError> {
    let id = ProviderId::parse(&body.id).map_err(invalid)?;
    check_text("name", &body.name, MAX_NAME)?;
    let kind = ProviderKind::parse(&body.kind)
        .ok_or_else(|| invalid("kind must be first_party or partner"))?;
    let mut tx = pool.begin().await?;
    let key = onboarding::provider(&mut tx, &id, &body.name, kind, body.platform_fee_pct).await?;
    if body.kafka_ingest {
        catalog::set_kafka_ingest(&mut tx, &id, true).await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id, "name": body.name, "kind": kind,
            "kafka_ingest": body.kafka_ingest, "api_key": key.secret,
        })),
    ))
}

#[derive(Deserialize)]
pub struct NewAccount {
    id: String,
    name: String,
    currency: String,
    /// The day of the month (1 to 28) the account's periods start on;
    /// calendar months by default.
    billing_anchor_day: Option<u32>,
}

impl RequestBody for NewAccount {}

pub async fn create_account(
    _: Admin,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewAccount>,
) -> Result<Created, ApiError> {
    let id = AccountId::parse(&body.id).map_err(invalid)?;
    check_text("name", &body.name, MAX_NAME)?;
    let currency = currency(&body.currency)?;
    let anchor = body
        .billing_anchor_day
        .map(AnchorDay::new)
        .transpose()
        .map_err(invalid)?
        .unwrap_or_default();
    let mut tx = pool.begin().await?;
    let key = onboarding::account(&mut tx, &id, &body.name, currency).await?;
    catalog::set_billing_anchor(&mut tx, &id, anchor).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "name": body.name, "currency": currency,
            "billing_anchor_day": anchor, "api_key": key.secret})),
    ))
}

#[derive(Deserialize)]
pub struct NewSku {
    id: String,
    provider_id: String,
    name: String,
    #[serde(default = "default_unit")]
    unit: String,
    /// The platform's markup on the list price, in percent.
    #[serde(default, with = "tally_domain::input::exact_option")]
    markup_pct: Option<Decimal>,
    /// sum (default), count, max, latest or unique_count.
    aggregation: Option<String>,
    /// The dimension whose distinct values `unique_count` counts.
    dimension: Option<String>,
}

impl RequestBody for NewSku {
    const INEXACT_CODE: Code = Code::InvalidPrice;
}

fn default_unit() -> String {
    "unit".into()
}

pub async fn create_sku(
    _: Admin,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewSku>,
) -> Result<Created, ApiError> {
    let sku = Sku::parse(&body.id).map_err(invalid)?;
    let provider = ProviderId::parse(&body.provider_id).map_err(invalid)?;
    check_text("name", &body.name, MAX_NAME)?;
    check_text("unit", &body.unit, MAX_UNIT)?;
    if let Some(dimension) = &body.dimension {
        check_text("dimension", dimension, MAX_NAME)?;
    }
    let mut tx = pool.begin().await?;
    catalog::create_sku(&mut tx, &sku, &provider, &body.name, &body.unit).await?;
    if let Some(pct) = body.markup_pct {
        catalog::set_markup(&mut tx, &sku, pct).await?;
    }
    let aggregation = Aggregation::parse(
        body.aggregation.as_deref().unwrap_or("sum"),
        body.dimension.as_deref(),
    )
    .map_err(catalog::CatalogError::from)?;
    catalog::set_aggregation(&mut tx, &sku, &aggregation).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": sku, "provider_id": provider, "name": body.name, "unit": body.unit})),
    ))
}

#[derive(Deserialize)]
pub struct NewPrice {
    sku: String,
    currency: String,
    effective_from: Option<DateTime<Utc>>,
    /// Shorthand for a per-unit price book.
    #[serde(default, with = "tally_domain::input::exact_option")]
    unit_price: Option<Decimal>,
    /// The full price book: model, tiers, free units, minimum, recurring fee.
    price_book: Option<PriceBook>,
}

impl RequestBody for NewPrice {
    const INEXACT_CODE: Code = Code::InvalidPrice;
}

pub async fn create_price(
    _: Admin,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewPrice>,
) -> Result<Created, ApiError> {
    let sku = Sku::parse(&body.sku).map_err(invalid)?;
    let currency = currency(&body.currency)?;
    let model = match (body.price_book, body.unit_price) {
        (Some(book), None) => book,
        (None, Some(unit_price)) => PriceBook::new(PriceModel::PerUnit { unit_price }),
        _ => return Err(invalid("give either unit_price or price_book")),
    };
    let from = body.effective_from.unwrap_or_else(Utc::now);
    check_date("effective_from", from)?;
    let mut conn = pool.acquire().await?;
    let id = catalog::add_price(&mut conn, &sku, currency, from, &model).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "sku": sku, "currency": currency, "effective_from": from, "model": model}),
        ),
    ))
}

#[derive(Deserialize)]
pub struct NewKey {
    role: String,
}

impl RequestBody for NewKey {}

pub async fn create_staff_key(
    _: Admin,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewKey>,
) -> Result<Created, ApiError> {
    let principal = match body.role.as_str() {
        "admin" => Principal::Admin,
        "finance" => Principal::Finance,
        _ => return Err(invalid("role must be admin or finance")),
    };
    let mut conn = pool.acquire().await?;
    let key = create_key(&mut conn, &principal).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": key.id, "role": body.role, "api_key": key.secret})),
    ))
}

pub async fn list_providers(_: Admin, State(pool): State<PgPool>) -> Result<Json<Value>, ApiError> {
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_providers(&mut conn).await?}),
    ))
}

pub async fn list_accounts(_: Admin, State(pool): State<PgPool>) -> Result<Json<Value>, ApiError> {
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_accounts(&mut conn).await?}),
    ))
}

#[derive(Deserialize)]
pub struct SkuQuery {
    provider: Option<String>,
}

pub async fn list_skus(
    _: Admin,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<SkuQuery>,
) -> Result<Json<Value>, ApiError> {
    let provider = q
        .provider
        .as_deref()
        .map(ProviderId::parse)
        .transpose()
        .map_err(invalid)?;
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_skus(&mut conn, provider.as_ref()).await?}),
    ))
}
