//! Provider API: a provider manages its own SKUs and publishes price
//! versions. It sees and changes only its own catalog; another provider's
//! SKU does not exist for it (404). Versions take effect now or later, never
//! in the past: corrections of the past are finance's (the admin API).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tally_domain::{Aggregation, Currency, PriceBook, ProviderId, Sku};
use tally_platform::auth::Principal;
use tally_platform::catalog;

use crate::error::ApiError;

/// Clock skew tolerated for "now" between a provider and Tally.
const SKEW: i64 = 60;

async fn provider(pool: &PgPool, headers: &HeaderMap) -> Result<ProviderId, ApiError> {
    match crate::auth::principal(pool, headers).await? {
        Principal::Provider(id) => Ok(id),
        _ => Err(ApiError::Forbidden),
    }
}

/// The SKU, if it exists and belongs to `owner`.
async fn own_sku(pool: &PgPool, owner: &ProviderId, raw: &str) -> Result<Sku, ApiError> {
    let not_found = || ApiError::NotFound(format!("sku {raw}"));
    let sku = Sku::parse(raw).map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    let owners = catalog::sku_owners(&mut conn, &[sku.as_str()]).await?;
    match owners.get(sku.as_str()) {
        Some(o) if o == owner.as_str() => Ok(sku),
        _ => Err(not_found()),
    }
}

pub async fn list_skus(
    State(pool): State<PgPool>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let me = provider(&pool, &headers).await?;
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_skus(&mut conn, Some(&me)).await?}),
    ))
}

#[derive(Deserialize)]
pub struct NewSku {
    id: String,
    name: String,
    unit: String,
    /// sum (default), count, max, latest or unique_count.
    aggregation: Option<String>,
    /// The dimension whose distinct values `unique_count` counts.
    dimension: Option<String>,
}

pub async fn create_sku(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Json(body): Json<NewSku>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let me = provider(&pool, &headers).await?;
    let sku = Sku::parse(&body.id).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    if !sku.as_str().starts_with(&format!("{me}.")) {
        return Err(ApiError::InvalidRequest(format!(
            "a SKU id starts with its provider's id and a dot: {me}.…"
        )));
    }
    if body.name.trim().is_empty() || body.unit.trim().is_empty() {
        return Err(ApiError::InvalidRequest(
            "name and unit must not be empty".into(),
        ));
    }
    let aggregation = Aggregation::parse(
        body.aggregation.as_deref().unwrap_or("sum"),
        body.dimension.as_deref(),
    )
    .map_err(catalog::CatalogError::from)?;
    let mut tx = pool.begin().await?;
    catalog::create_sku(&mut tx, &sku, &me, body.name.trim(), body.unit.trim()).await?;
    catalog::set_aggregation(&mut tx, &sku, &aggregation).await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": sku, "provider_id": me, "name": body.name.trim(), "unit": body.unit.trim(),
            "aggregation": aggregation.as_str(), "dimension": aggregation.dimension(),
        })),
    ))
}

pub async fn list_prices(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Path(sku): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let me = provider(&pool, &headers).await?;
    let sku = own_sku(&pool, &me, &sku).await?;
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_prices(&mut conn, &sku).await?}),
    ))
}

#[derive(Deserialize)]
pub struct NewVersion {
    currency: String,
    /// Defaults to now; never in the past.
    effective_from: Option<DateTime<Utc>>,
    price_book: PriceBook,
}

pub async fn publish_price(
    State(pool): State<PgPool>,
    headers: HeaderMap,
    Path(sku): Path<String>,
    Json(body): Json<NewVersion>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let me = provider(&pool, &headers).await?;
    let sku = own_sku(&pool, &me, &sku).await?;
    let currency =
        Currency::parse(&body.currency).map_err(|e| ApiError::UnknownCurrency(e.to_string()))?;
    let now = Utc::now();
    let from = body.effective_from.unwrap_or(now);
    if from < now - Duration::seconds(SKEW) {
        return Err(ApiError::EffectiveInPast(format!(
            "a price version takes effect now or later, not at {}; corrections of the past go through finance",
            from.to_rfc3339()
        )));
    }
    let mut conn = pool.acquire().await?;
    let id = catalog::add_price(&mut conn, &sku, currency, from, &body.price_book).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "sku": sku, "currency": currency, "effective_from": from, "price_book": body.price_book}),
        ),
    ))
}
