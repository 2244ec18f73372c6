//! Admin API: providers, accounts, SKUs, prices and staff keys.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{json, Value};
use sqlx::PgPool;
use tally_domain::composition::statement::SettlementMode;
use tally_domain::input::{check_date, check_text, MAX_NAME, MAX_UNIT};
use tally_domain::{
    AccountId, Aggregation, AnchorDay, Currency, PriceBook, PriceModel, ProviderId, ProviderKind,
    Sku,
};
use tally_platform::auth::{create_key, Principal};
use tally_platform::{catalog, composition, onboarding};

use crate::auth::Admin;
use crate::composition::Audience;
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, ApiQuery, RequestBody};
use crate::openapi;

type Created = (StatusCode, Json<Value>);

fn invalid(e: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidRequest(e.to_string())
}

fn currency(code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code).map_err(|e| ApiError::UnknownCurrency(e.to_string()))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewProvider {
    /// Lowercase letters, digits, `_` and `-`; no dots (a dot ends a
    /// provider's id in its SKU ids)
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    id: String,
    #[schema(max_length = 200)]
    name: String,
    #[schema(schema_with = openapi::provider_kind)]
    kind: String,
    /// The platform's share of this partner's list amounts, in percent.
    #[serde(default, with = "tally_domain::input::exact_option")]
    #[schema(schema_with = openapi::exact_decimal)]
    platform_fee_pct: Option<Decimal>,
    /// The platform's share, in percent, of what this partner bills
    /// accounts that other providers own (provider-to-provider usage);
    /// the same as `platform_fee_pct` when absent.
    #[serde(default, with = "tally_domain::input::exact_option")]
    #[schema(schema_with = openapi::exact_decimal)]
    p2p_fee_pct: Option<Decimal>,
    /// Whether the collector takes this provider's usage records from the
    /// `usage.ingest` Kafka topic (its `tally-provider` header names the
    /// provider); off by default
    #[serde(default)]
    #[schema(default = false)]
    kafka_ingest: bool,
    /// Whether each usage event of this provider must name an active
    /// binding of its account (`resource`), else it is refused `not_bound`;
    /// off by default
    #[serde(default)]
    #[schema(default = false)]
    requires_binding: bool,
    /// How the platform settles with this provider when it is also a
    /// customer (it owns a billing account): `gross` (the default: its
    /// settlement paid in full, its own invoices paid separately) or `net`
    /// (its own invoices netted against its settlement, one payment of the
    /// difference)
    #[schema(pattern = "^(gross|net)$")]
    settlement_mode: Option<String>,
}

impl RequestBody for NewProvider {
    const INEXACT_CODE: Code = Code::InvalidPrice;
}

#[utoipa::path(
    post,
    path = "/v1/admin/providers",
    tag = "admin",
    summary = "Create a provider (returns its API key once)",
    request_body = NewProvider,
    responses((status = 201, description = "Created", body = inline(openapi::ProviderCreated))),
    security(("bearer" = [])),
)]
pub async fn create_provider(
    _: Admin,
    State(pool): State<PgPool>,
    ApiJson(body): ApiJson<NewProvider>,
) -> Result<Created, ApiError> {
    let id = ProviderId::parse(&body.id).map_err(invalid)?;
    check_text("name", &body.name, MAX_NAME)?;
    let kind = ProviderKind::parse(&body.kind)
        .ok_or_else(|| invalid("kind must be first_party or partner"))?;
    let mode = body
        .settlement_mode
        .as_deref()
        .map(SettlementMode::parse)
        .transpose()
        .map_err(invalid)?
        .unwrap_or_default();
    let mut tx = pool.begin().await?;
    let key = onboarding::provider(&mut tx, &id, &body.name, kind, body.platform_fee_pct).await?;
    if mode != SettlementMode::default() {
        catalog::set_settlement_mode(&mut tx, &id, mode).await?;
    }
    if let Some(pct) = body.p2p_fee_pct {
        catalog::set_p2p_fee(&mut tx, &id, pct).await?;
    }
    if body.kafka_ingest {
        catalog::set_kafka_ingest(&mut tx, &id, true).await?;
    }
    if body.requires_binding {
        tally_platform::bindings::set_requires_binding(&mut tx, &id, true).await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id, "name": body.name, "kind": kind,
            "kafka_ingest": body.kafka_ingest, "requires_binding": body.requires_binding,
            "settlement_mode": mode.as_str(), "api_key": key.secret,
        })),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewAccount {
    /// Account id
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    id: String,
    #[schema(max_length = 200)]
    name: String,
    /// ISO 4217
    currency: String,
    /// The day of the month (1 to 28) the account's periods start on;
    /// calendar months by default.
    #[schema(minimum = 1, maximum = 28)]
    billing_anchor_day: Option<u32>,
    /// The provider whose own billing account this is (a provider as a
    /// customer of other providers: it binds their services with it and
    /// its provider key reads its invoices); absent for a customer
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    provider_id: Option<String>,
}

impl RequestBody for NewAccount {}

#[utoipa::path(
    post,
    path = "/v1/admin/accounts",
    tag = "admin",
    summary = "Create a customer account, or a provider's own billing account (returns its customer token once)",
    request_body = NewAccount,
    responses((status = 201, description = "Created", body = inline(openapi::AccountCreated))),
    security(("bearer" = [])),
)]
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
    let owner = body
        .provider_id
        .as_deref()
        .map(ProviderId::parse)
        .transpose()
        .map_err(invalid)?;
    let mut tx = pool.begin().await?;
    let key = onboarding::account(&mut tx, &id, &body.name, currency).await?;
    catalog::set_billing_anchor(&mut tx, &id, anchor).await?;
    if let Some(owner) = &owner {
        composition::set_owner(&mut tx, &id, owner).await?;
    }
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"id": id, "name": body.name, "currency": currency,
            "billing_anchor_day": anchor, "provider_id": owner, "api_key": key.secret})),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = AdminNewSku)]
pub struct NewSku {
    /// `<provider>.<name>`: in the namespace of its provider, the provider
    /// whose id and a dot start it (`sku_not_in_namespace`)
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    id: String,
    /// Provider id
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    provider_id: String,
    #[schema(max_length = 200)]
    name: String,
    #[serde(default = "default_unit")]
    #[schema(max_length = 64)]
    unit: String,
    /// The platform's markup on the list price, in percent.
    #[serde(default, with = "tally_domain::input::exact_option")]
    #[schema(schema_with = openapi::exact_decimal)]
    markup_pct: Option<Decimal>,
    /// sum (default), count, max, latest or unique_count.
    #[schema(schema_with = openapi::aggregation)]
    aggregation: Option<String>,
    /// The dimension whose distinct values `unique_count` counts.
    #[schema(max_length = 200)]
    dimension: Option<String>,
}

impl RequestBody for NewSku {
    const INEXACT_CODE: Code = Code::InvalidPrice;
}

fn default_unit() -> String {
    "unit".into()
}

#[utoipa::path(
    post,
    path = "/v1/admin/skus",
    tag = "admin",
    summary = "Create a SKU for any provider",
    request_body = NewSku,
    responses((status = 201, description = "Created", body = inline(openapi::SkuCreated))),
    security(("bearer" = [])),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewPrice {
    #[schema(pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    sku: String,
    /// ISO 4217
    currency: String,
    /// Default: now; in the years 2000 to 9999 (`invalid_date`)
    effective_from: Option<DateTime<Utc>>,
    /// Shorthand for a per-unit price book.
    #[serde(default, with = "tally_domain::input::exact_option")]
    #[schema(schema_with = openapi::exact_decimal)]
    unit_price: Option<Decimal>,
    /// The full price book: model, tiers, free units, minimum, recurring fee.
    #[schema(schema_with = openapi::price_book)]
    price_book: Option<PriceBook>,
    /// `list` (every account; the default) or `provider` (a wholesale
    /// version: what accounts that providers own pay)
    #[serde(default)]
    audience: Audience,
}

impl RequestBody for NewPrice {
    const INEXACT_CODE: Code = Code::InvalidPrice;
}

#[utoipa::path(
    post,
    path = "/v1/admin/prices",
    tag = "admin",
    summary = "Add a price version at any time (finance corrections may be backdated)",
    request_body = NewPrice,
    responses((status = 201, description = "Created", body = inline(openapi::PriceVersionRef))),
    security(("bearer" = [])),
)]
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
    let id = body
        .audience
        .add_price(&mut conn, &sku, currency, from, &model)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": id, "sku": sku, "currency": currency, "effective_from": from,
                   "model": model, "audience": body.audience.as_str()}),
        ),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct NewKey {
    #[schema(schema_with = openapi::staff_role)]
    role: String,
}

impl RequestBody for NewKey {}

#[utoipa::path(
    post,
    path = "/v1/admin/keys",
    tag = "admin",
    summary = "Create a finance or admin key (returned once)",
    request_body = NewKey,
    responses((status = 201, description = "Created", body = inline(openapi::KeyCreated))),
    security(("bearer" = [])),
)]
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

#[derive(Deserialize, utoipa::ToSchema)]
pub struct SettlementModeChange {
    /// `gross`: the provider's settlement paid in full, its own invoices
    /// paid separately; `net`: its own invoices of the month netted against
    /// its settlement, one payment of the difference
    #[schema(pattern = "^(gross|net)$")]
    mode: String,
}

impl RequestBody for SettlementModeChange {}

#[utoipa::path(
    post,
    path = "/v1/admin/providers/{id}/settlement-mode",
    tag = "admin",
    summary = "Set how the platform settles with a provider that is also its customer: gross or net of its own invoices",
    params(("id" = String, Path, description = "Provider id")),
    request_body = SettlementModeChange,
    responses((status = 200, description = "The provider's mode", body = inline(openapi::ProviderSettlementMode))),
    security(("bearer" = [])),
)]
pub async fn set_settlement_mode(
    _: Admin,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SettlementModeChange>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("provider {id}"));
    let provider = ProviderId::parse(&id).map_err(|_| not_found())?;
    let mode = SettlementMode::parse(&body.mode).map_err(invalid)?;
    let mut conn = pool.acquire().await?;
    catalog::set_settlement_mode(&mut conn, &provider, mode)
        .await
        .map_err(|e| match e {
            catalog::CatalogError::UnknownProvider(_) => not_found(),
            other => other.into(),
        })?;
    Ok(Json(
        json!({"id": provider, "settlement_mode": mode.as_str()}),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/admin/providers",
    tag = "admin",
    summary = "List providers",
    responses((status = 200, description = "Providers", body = inline(openapi::ProviderList))),
    security(("bearer" = [])),
)]
pub async fn list_providers(_: Admin, State(pool): State<PgPool>) -> Result<Json<Value>, ApiError> {
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_providers(&mut conn).await?}),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/admin/accounts",
    tag = "admin",
    summary = "List accounts",
    responses((status = 200, description = "Accounts", body = inline(openapi::AccountList))),
    security(("bearer" = [])),
)]
pub async fn list_accounts(_: Admin, State(pool): State<PgPool>) -> Result<Json<Value>, ApiError> {
    let mut conn = pool.acquire().await?;
    Ok(Json(
        json!({"data": catalog::list_accounts(&mut conn).await?}),
    ))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SkuQuery {
    #[param(pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    /// Provider id
    provider: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/skus",
    tag = "admin",
    summary = "List SKUs",
    params(SkuQuery),
    responses((status = 200, description = "SKUs", body = inline(openapi::SkuList))),
    security(("bearer" = [])),
)]
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
