//! Provider API: a provider manages its own SKUs and publishes price
//! versions. It sees and changes only its own catalog; another provider's
//! SKU does not exist for it (404). Versions take effect now or later, never
//! in the past: corrections of the past are finance's (the admin API).

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tally_domain::composition::replaces_a_price;
use tally_domain::contract::gives_notice;
use tally_domain::input::{check_date, check_text, MAX_NAME, MAX_UNIT};
use tally_domain::{Aggregation, Currency, PriceBook, ProviderId, Sku};
use tally_platform::catalog;

use crate::auth::ProviderCaller;
use crate::composition::Audience;
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, ApiQuery, RequestBody};
use crate::openapi;

/// The platform's notice period for a partner's new price of a priced SKU
/// (`TALLY_PRICE_NOTICE_SECS`).
#[derive(Debug, Clone, Copy)]
pub struct PriceNotice(pub std::time::Duration);

/// Clock skew tolerated for "now" between a provider and Tally.
const SKEW: i64 = 60;

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

#[utoipa::path(
    get,
    path = "/v1/provider/skus",
    tag = "provider",
    summary = "The calling provider's SKUs",
    responses((status = 200, description = "SKUs", body = inline(openapi::SkuList))),
    security(("bearer" = [])),
)]
pub async fn list_skus(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
) -> Result<Json<Value>, ApiError> {
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_skus(&mut conn, Some(&me)).await?}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewSku {
    /// `<provider>.<name>`: in the namespace of its provider, the provider whose id and a dot start it (`sku_not_in_namespace`)
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    id: String,
    #[schema(max_length = 200)]
    name: String,
    #[schema(max_length = 64)]
    unit: String,
    /// sum (default), count, max, latest or unique_count.
    #[schema(schema_with = openapi::aggregation)]
    aggregation: Option<String>,
    /// The dimension whose distinct values `unique_count` counts (required for unique_count).
    #[schema(max_length = 200)]
    dimension: Option<String>,
}

impl RequestBody for NewSku {}

/// A SKU id is `<provider>.<name>`: `catalog::create_sku` refuses one in
/// another provider's namespace (`sku_not_in_namespace`).
#[utoipa::path(
    post,
    path = "/v1/provider/skus",
    tag = "provider",
    summary = "Create a SKU of the calling provider",
    request_body = NewSku,
    responses((status = 201, description = "Created", body = inline(openapi::SkuRef))),
    security(("bearer" = [])),
)]
pub async fn create_sku(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewSku>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let sku = Sku::parse(&body.id).map_err(|e| ApiError::InvalidRequest(e.to_string()))?;
    if body.name.trim().is_empty() || body.unit.trim().is_empty() {
        return Err(ApiError::InvalidRequest(
            "name and unit must not be empty".into(),
        ));
    }
    check_text("name", body.name.trim(), MAX_NAME)?;
    check_text("unit", body.unit.trim(), MAX_UNIT)?;
    if let Some(dimension) = &body.dimension {
        check_text("dimension", dimension, MAX_NAME)?;
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

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PricesQuery {
    /// Only the versions of one audience: `list` (every account) or
    /// `provider` (wholesale); both when absent
    audience: Option<Audience>,
}

#[utoipa::path(
    get,
    path = "/v1/provider/skus/{sku}/prices",
    tag = "provider",
    summary = "Price versions of one of the provider's SKUs, list and wholesale, each with its audience",
    params(("sku" = String, Path, description = "SKU id"), PricesQuery),
    responses((status = 200, description = "Versions by currency, audience and effective time", body = inline(openapi::PriceVersionList))),
    security(("bearer" = [])),
)]
pub async fn list_prices(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    ApiPath(sku): ApiPath<String>,
    ApiQuery(q): ApiQuery<PricesQuery>,
) -> Result<Json<Value>, ApiError> {
    let sku = own_sku(&pool, &me, &sku).await?;
    let mut conn = pool.acquire().await?;
    let audience = q.audience.map(Audience::as_str);
    Ok(Json(
        json!({"data": catalog::list_prices(&mut conn, &sku, audience).await?}),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = NewPriceVersion)]
pub struct NewVersion {
    /// ISO 4217
    currency: String,
    /// Now (default) or later; in the years 2000 to 9999 (`invalid_date`)
    effective_from: Option<DateTime<Utc>>,
    #[schema(schema_with = openapi::price_book)]
    price_book: PriceBook,
    /// `list` (every account; the default) or `provider` (a wholesale
    /// version: what accounts that providers own pay)
    #[serde(default)]
    audience: Audience,
}

impl RequestBody for NewVersion {
    const INEXACT_CODE: Code = Code::InvalidPrice;
}

#[utoipa::path(
    post,
    path = "/v1/provider/skus/{sku}/prices",
    tag = "provider",
    summary = "Publish a price version, effective now or later; a partner's new version that replaces a price an account pays (list beside list, wholesale beside any) gives the platform's notice period (`price_notice_too_short`)",
    params(("sku" = String, Path, description = "SKU id")),
    request_body = NewVersion,
    responses((status = 201, description = "Published", body = inline(openapi::PublishedPrice))),
    security(("bearer" = [])),
)]
pub async fn publish_price(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    Extension(PriceNotice(notice)): Extension<PriceNotice>,
    ApiPath(sku): ApiPath<String>,
    ApiJson(body): ApiJson<NewVersion>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let sku = own_sku(&pool, &me, &sku).await?;
    let currency =
        Currency::parse(&body.currency).map_err(|e| ApiError::UnknownCurrency(e.to_string()))?;
    let now = Utc::now();
    let from = body.effective_from.unwrap_or(now);
    check_date("effective_from", from)?;
    if from < now - Duration::seconds(SKEW) {
        return Err(ApiError::EffectiveInPast(format!(
            "a price version takes effect now or later, not at {}; corrections of the past go through finance",
            from.to_rfc3339()
        )));
    }
    let mut conn = pool.acquire().await?;
    let (partner, has_list, has_wholesale): (bool, bool, bool) = sqlx::query_as(
        "SELECT (SELECT kind = 'partner' FROM providers WHERE id = $1),
                EXISTS (SELECT 1 FROM prices WHERE sku_id = $2 AND currency = $3 AND audience = 'list'),
                EXISTS (SELECT 1 FROM prices WHERE sku_id = $2 AND currency = $3 AND audience = 'provider')",
    )
    .bind(me.as_str())
    .bind(sku.as_str())
    .bind(currency.code())
    .fetch_one(&mut *conn)
    .await?;
    let replaces = replaces_a_price(body.audience == Audience::Provider, has_list, has_wholesale);
    let notice = Duration::from_std(notice).unwrap_or(Duration::MAX);
    if !gives_notice(now, from, notice, partner, replaces) {
        return Err(ApiError::Refused(
            Code::PriceNoticeTooShort,
            format!(
                "a new price of a priced SKU takes effect at least {} seconds after it is published (the platform's notice period)",
                notice.num_seconds()
            ),
        ));
    }
    let id = body
        .audience
        .add_price(&mut conn, &sku, currency, from, &body.price_book)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "sku": sku, "currency": currency, "effective_from": from,
                   "price_book": body.price_book, "audience": body.audience.as_str()}),
        ),
    ))
}
