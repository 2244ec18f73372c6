//! Finance API for platform credits: grant, list with balances, ledger per
//! account and per grant, void the unused part. Rating applies grants; this
//! module only records them and asks rating to restate the account.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, PgPool, Row};
use tally_domain::credits::{remaining_balance, unused_at_void, GrantStatus};
use tally_domain::input::{check_date, check_text, MAX_NAME, MAX_REASON};
use tally_domain::{AccountId, Currency, ProviderId, Sku};

use crate::auth::{self, AccountReader, Staff};
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, RequestBody};
use tally_invoicing::amounts::{currency_of, fits};

/// Ask for a grant of credits to an account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    #[schema(min_length = 1, max_length = 200)]
    name: String,
    /// `promotional`, `prepaid` or `programme`.
    #[schema(schema_with = crate::openapi::grant_kind)]
    kind: String,
    /// What the customer paid for a prepaid grant (required for `prepaid`, refused otherwise).
    #[serde(default, with = "tally_domain::input::exact_option")]
    #[schema(value_type = Option<crate::openapi::Decimal>)]
    cost_basis: Option<Decimal>,
    /// Positive, with at most the currency's minor units
    #[serde(with = "tally_domain::input::exact")]
    #[schema(value_type = crate::openapi::Decimal)]
    amount: Decimal,
    /// Must be the account's billing currency; defaults to it.
    currency: Option<String>,
    /// Lower numbers are applied first (default 100).
    priority: Option<i32>,
    /// Whole UTC hour; defaults to the start of the current hour; in the
    /// years 2000 to 9999 (`invalid_date`).
    effective_at: Option<DateTime<Utc>>,
    /// Whole UTC hour, after `effective_at`; none means the grant never
    /// expires; in the years 2000 to 9999 (`invalid_date`).
    expires_at: Option<DateTime<Utc>>,
    #[serde(default)]
    eligibility: Option<EligibilityBody>,
    /// At most this much per billing period
    #[serde(default, with = "tally_domain::input::exact_option")]
    #[schema(value_type = Option<crate::openapi::Decimal>)]
    cap_per_period: Option<Decimal>,
}

impl RequestBody for NewGrant {
    const INEXACT_CODE: Code = Code::InvalidAmount;
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[schema(as = Eligibility)]
pub struct EligibilityBody {
    /// `all_usage`, `first_party_only`, `providers` or `skus`.
    #[schema(schema_with = crate::openapi::eligibility_scope)]
    scope: String,
    /// Provider ids or SKUs; required for `providers` and `skus`, refused otherwise
    #[serde(default)]
    ids: Vec<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidBody {
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

impl RequestBody for VoidBody {}

/// A grant with its balance: `amount = drawn + voided_amount + remaining`.
/// Applied in order: priority, earliest expiry, free before prepaid, oldest.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Grant)]
pub struct GrantView {
    id: i64,
    account_id: String,
    name: String,
    #[schema(schema_with = crate::openapi::grant_kind)]
    kind: String,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    #[schema(value_type = Option<crate::openapi::Decimal>)]
    cost_basis: Option<Decimal>,
    /// ISO 4217
    #[schema(value_type = String)]
    currency: Currency,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    amount: Decimal,
    priority: i32,
    effective_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    eligibility: EligibilityBody,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    #[schema(value_type = Option<crate::openapi::Decimal>)]
    cap_per_period: Option<Decimal>,
    /// Drawn by invoices so far (draft invoices included).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    drawn: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    voided_amount: Decimal,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    remaining: Decimal,
    /// `scheduled`, `active`, `depleted`, `expired` or `voided`, as of now.
    #[schema(schema_with = crate::openapi::grant_status)]
    status: GrantStatus,
    voided_at: Option<DateTime<Utc>>,
    void_reason: Option<String>,
    created_at: DateTime<Utc>,
}

/// One movement of a grant's balance; one draw per grant per invoice.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LedgerEntry {
    id: i64,
    grant_id: i64,
    grant_name: String,
    /// `grant`, `draw` or `void`.
    #[schema(schema_with = crate::openapi::ledger_kind)]
    kind: String,
    /// `YYYY-MM` of the invoice a draw belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    period: Option<String>,
    /// Signed: positive for a grant, negative for draws and voids.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    amount: Decimal,
    /// ISO 4217
    #[schema(value_type = String)]
    currency: Currency,
    /// The draw's invoice and its status, when it exists yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    invoice_id: Option<uuid::Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::invoice_status)]
    invoice_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize)]
pub struct List<T> {
    data: Vec<T>,
}

fn credit_error(code: Code, message: impl Into<String>) -> ApiError {
    ApiError::Credit(code, message.into())
}

fn whole_hour(at: DateTime<Utc>) -> bool {
    at.duration_trunc(TimeDelta::hours(1)).ok() == Some(at)
}

const GRANT_COLUMNS: &str = "g.id, g.account_id, g.name, g.kind, g.cost_basis, g.currency, g.amount,
    g.priority, g.effective_at, g.expires_at, g.eligibility, g.eligible_ids, g.cap_per_period,
    g.voided_at, g.voided_amount, g.void_reason, g.created_at,
    COALESCE((SELECT sum(l.amount) FROM credit_ledger l WHERE l.grant_id = g.id AND l.kind = 'draw'), 0) AS drawn";

fn grant_view(r: &PgRow, now: DateTime<Utc>) -> Result<GrantView, sqlx::Error> {
    let amount: Decimal = r.try_get("amount")?;
    let drawn: Decimal = r.try_get("drawn")?;
    let voided_amount: Decimal = r.try_get("voided_amount")?;
    let remaining = fits(remaining_balance(amount, drawn, voided_amount))?;
    let voided_at: Option<DateTime<Utc>> = r.try_get("voided_at")?;
    let effective_at: DateTime<Utc> = r.try_get("effective_at")?;
    let expires_at: Option<DateTime<Utc>> = r.try_get("expires_at")?;
    let currency = currency_of(r, "currency")?;
    let (amount, drawn, voided_amount, remaining) = (
        currency.scaled(amount),
        currency.scaled(drawn),
        currency.scaled(voided_amount),
        currency.scaled(remaining),
    );
    let status = GrantStatus::at(
        now,
        voided_at.is_some(),
        remaining,
        effective_at,
        expires_at,
    );
    Ok(GrantView {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        cost_basis: r
            .try_get::<Option<Decimal>, _>("cost_basis")?
            .map(|c| currency.scaled(c)),
        amount,
        priority: r.try_get("priority")?,
        effective_at,
        expires_at,
        eligibility: EligibilityBody {
            scope: r.try_get("eligibility")?,
            ids: r.try_get("eligible_ids")?,
        },
        cap_per_period: r
            .try_get::<Option<Decimal>, _>("cap_per_period")?
            .map(|c| currency.scaled(c)),
        currency,
        drawn,
        voided_amount,
        remaining,
        status,
        voided_at,
        void_reason: r.try_get("void_reason")?,
        created_at: r.try_get("created_at")?,
    })
}

/// Every grant of an account with its balance, oldest first.
pub async fn account_grants(
    conn: &mut PgConnection,
    account: &str,
    now: DateTime<Utc>,
) -> Result<Vec<GrantView>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM credit_grants g WHERE g.account_id = $1 ORDER BY g.id"
    ))
    .bind(account)
    .fetch_all(conn)
    .await?
    .iter()
    .map(|r| grant_view(r, now))
    .collect()
}

async fn one_grant(
    conn: &mut PgConnection,
    id: i64,
    now: DateTime<Utc>,
) -> Result<Option<GrantView>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {GRANT_COLUMNS} FROM credit_grants g WHERE g.id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(|r| grant_view(&r, now))
    .transpose()
}

/// The remaining balances of an account's usable grants (for the bill).
pub struct Balance {
    pub name: String,
    pub remaining: Decimal,
    pub expires_at: Option<DateTime<Utc>>,
    pub status: GrantStatus,
}

pub async fn balances(
    conn: &mut PgConnection,
    account: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Balance>, sqlx::Error> {
    Ok(account_grants(conn, account, now)
        .await?
        .into_iter()
        .filter(|g| g.status.is_spendable())
        .map(|g| Balance {
            name: g.name,
            remaining: g.remaining,
            expires_at: g.expires_at,
            status: g.status,
        })
        .collect())
}

/// Whose ledger: one grant's or one account's.
enum LedgerOf<'a> {
    Grant(i64),
    Account(&'a str),
}

async fn ledger(
    conn: &mut PgConnection,
    of: LedgerOf<'_>,
) -> Result<Vec<LedgerEntry>, sqlx::Error> {
    let (grant, account) = match of {
        LedgerOf::Grant(id) => (Some(id), None),
        LedgerOf::Account(a) => (None, Some(a)),
    };
    let rows = sqlx::query(
        "SELECT l.id, l.grant_id, g.name AS grant_name, l.kind, l.period_start, l.amount, g.currency,
                l.note, l.created_at, l.updated_at, i.id AS invoice_id, i.status AS invoice_status
         FROM credit_ledger l
         JOIN credit_grants g ON g.id = l.grant_id
         LEFT JOIN invoices i ON l.kind = 'draw' AND i.account_id = l.account_id AND i.period_start = l.period_start
         WHERE ($1::bigint IS NULL OR l.grant_id = $1) AND ($2::text IS NULL OR l.account_id = $2)
         ORDER BY l.grant_id, l.kind <> 'grant', l.kind = 'void', l.period_start, l.id",
    )
    .bind(grant)
    .bind(account)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            let amount: Decimal = r.try_get("amount")?;
            let period: Option<DateTime<Utc>> = r.try_get("period_start")?;
            let currency = currency_of(r, "currency")?;
            let signed = if kind == "grant" { amount } else { -amount };
            Ok(LedgerEntry {
                id: r.try_get("id")?,
                grant_id: r.try_get("grant_id")?,
                grant_name: r.try_get("grant_name")?,
                amount: currency.scaled(signed),
                kind,
                period: period.map(|p| p.format("%Y-%m").to_string()),
                currency,
                invoice_id: r.try_get("invoice_id")?,
                invoice_status: r.try_get("invoice_status")?,
                note: r.try_get("note")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            })
        })
        .collect()
}

/// Asks rating to restate the account's open statements (first, so that
/// this row lock is always taken before a grant's).
pub(crate) async fn request_restatement(
    conn: &mut PgConnection,
    account: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO credit_recompute (account_id) VALUES ($1)
         ON CONFLICT (account_id) DO UPDATE SET requested_at = now()",
    )
    .bind(account)
    .execute(conn)
    .await?;
    Ok(())
}

/// The account's billing currency; `not_found` when the account does not exist.
pub(crate) async fn account_currency(
    conn: &mut PgConnection,
    account: &AccountId,
) -> Result<Currency, ApiError> {
    let code: Option<String> = sqlx::query_scalar("SELECT currency FROM accounts WHERE id = $1")
        .bind(account.as_str())
        .fetch_optional(conn)
        .await?;
    let code = code.ok_or_else(|| ApiError::NotFound(format!("account {account}")))?;
    Currency::parse(&code).map_err(|e| ApiError::Internal(e.into()))
}

/// Checks a grant request against the account; returns the scope's ids normalised.
async fn validate(
    conn: &mut PgConnection,
    body: &NewGrant,
    currency: Currency,
    effective_at: DateTime<Utc>,
) -> Result<(String, Vec<String>), ApiError> {
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::InvalidRequest("name must not be empty".into()));
    }
    check_text("name", name, MAX_NAME)?;
    check_date("effective_at", effective_at)?;
    if let Some(expires_at) = body.expires_at {
        check_date("expires_at", expires_at)?;
    }
    match (body.kind.as_str(), body.cost_basis) {
        ("prepaid", Some(c)) if c >= Decimal::ZERO && currency.round(c) == c => {}
        ("prepaid", _) => {
            return Err(credit_error(
                Code::InvalidCostBasis,
                format!(
                    "a prepaid grant needs cost_basis: what the customer paid, in {currency} with at most {} decimals",
                    currency.minor_units()
                ),
            ))
        }
        ("promotional" | "programme", None) => {}
        ("promotional" | "programme", Some(_)) => {
            return Err(credit_error(
                Code::InvalidCostBasis,
                "only prepaid grants have a cost_basis",
            ))
        }
        (other, _) => {
            return Err(credit_error(
                Code::InvalidGrantKind,
                format!("kind {other:?} is not promotional, prepaid or programme"),
            ))
        }
    }
    if body.amount <= Decimal::ZERO || currency.round(body.amount) != body.amount {
        return Err(credit_error(
            Code::InvalidAmount,
            format!(
                "amount must be positive, in {currency} with at most {} decimals",
                currency.minor_units()
            ),
        ));
    }
    if let Some(code) = &body.currency {
        if code != currency.code() {
            return Err(credit_error(
                Code::CurrencyMismatch,
                format!("the account is billed in {currency}, not {code}"),
            ));
        }
    }
    if !whole_hour(effective_at) || body.expires_at.is_some_and(|e| !whole_hour(e)) {
        return Err(credit_error(
            Code::ValidityNotHourAligned,
            "effective_at and expires_at must be whole UTC hours (usage is credited per hour)",
        ));
    }
    if body.expires_at.is_some_and(|e| e <= effective_at) {
        return Err(credit_error(
            Code::InvalidValidity,
            "expires_at must be after effective_at",
        ));
    }
    if body
        .cap_per_period
        .is_some_and(|c| c <= Decimal::ZERO || currency.round(c) != c)
    {
        return Err(credit_error(
            Code::InvalidAmount,
            "cap_per_period must be positive, in the currency's minor units",
        ));
    }
    let scope = body.eligibility.clone().unwrap_or(EligibilityBody {
        scope: "all_usage".into(),
        ids: Vec::new(),
    });
    let mut ids = scope.ids.clone();
    ids.sort();
    ids.dedup();
    match scope.scope.as_str() {
        "all_usage" | "first_party_only" if ids.is_empty() => {}
        "providers" | "skus" if !ids.is_empty() => {
            let table = if scope.scope == "providers" {
                for id in &ids {
                    ProviderId::parse(id).map_err(|e| {
                        credit_error(Code::UnknownProvider, format!("provider {id:?}: {e}"))
                    })?;
                }
                "providers"
            } else {
                for id in &ids {
                    Sku::parse(id)
                        .map_err(|e| credit_error(Code::UnknownSku, format!("sku {id:?}: {e}")))?;
                }
                "skus"
            };
            let known: Vec<String> =
                sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE id = ANY($1)"))
                    .bind(&ids)
                    .fetch_all(&mut *conn)
                    .await?;
            if let Some(missing) = ids.iter().find(|i| !known.contains(i)) {
                let code = if table == "providers" {
                    Code::UnknownProvider
                } else {
                    Code::UnknownSku
                };
                return Err(credit_error(code, format!("{missing} does not exist")));
            }
        }
        _ => {
            return Err(credit_error(
                Code::InvalidEligibility,
                "eligibility.scope is all_usage or first_party_only (without ids), or providers or skus (with ids)",
            ))
        }
    }
    Ok((scope.scope, ids))
}

/// `POST /v1/accounts/{account}/grants`
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/grants",
    tag = "credits",
    summary = "Grant credits to an account (finance, admin); rating restates the account's open invoices",
    params(("account" = String, Path, description = "Account id")),
    request_body = NewGrant,
    responses((status = 201, description = "The grant", body = GrantView)),
    security(("bearer" = [])),
)]
pub async fn create_grant(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<NewGrant>,
) -> Result<(StatusCode, Json<GrantView>), ApiError> {
    let account = auth::account_id(&account)?;
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let currency = account_currency(&mut tx, &account).await?;
    let effective_at = body
        .effective_at
        .unwrap_or_else(|| now.duration_trunc(TimeDelta::hours(1)).unwrap_or(now));
    let (scope, ids) = validate(&mut tx, &body, currency, effective_at).await?;
    request_restatement(&mut tx, account.as_str()).await?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO credit_grants (account_id, name, kind, cost_basis, currency, amount, priority,
             effective_at, expires_at, eligibility, eligible_ids, cap_per_period)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
    )
    .bind(account.as_str())
    .bind(body.name.trim())
    .bind(&body.kind)
    .bind(body.cost_basis)
    .bind(currency.code())
    .bind(body.amount)
    .bind(body.priority.unwrap_or(100))
    .bind(effective_at)
    .bind(body.expires_at)
    .bind(&scope)
    .bind(&ids)
    .bind(body.cap_per_period)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO credit_ledger (grant_id, account_id, kind, amount) VALUES ($1, $2, 'grant', $3)",
    )
    .bind(id)
    .bind(account.as_str())
    .bind(body.amount)
    .execute(&mut *tx)
    .await?;
    let view = one_grant(&mut tx, id, now)
        .await?
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("grant {id} vanished")))?;
    tx.commit().await?;
    tracing::info!(grant = id, account = %account, amount = %body.amount, "credit granted");
    Ok((StatusCode::CREATED, Json(view)))
}

/// `GET /v1/accounts/{account}/grants`: staff, or the account's own key.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/grants",
    tag = "credits",
    summary = "The account's grants with balances (finance, admin, the account's own key)",
    params(("account" = String, Path, description = "Account id")),
    responses((status = 200, description = "Grants, oldest first", body = inline(crate::openapi::GrantList))),
    security(("bearer" = [])),
)]
pub async fn list_grants(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<List<GrantView>>, ApiError> {
    let account = auth::account_id(&account)?;
    let mut conn = pool.acquire().await?;
    account_currency(&mut conn, &account).await?;
    let data = account_grants(&mut conn, account.as_str(), Utc::now()).await?;
    Ok(Json(List { data }))
}

/// `GET /v1/accounts/{account}/credit-ledger`: staff, or the account's own key.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/credit-ledger",
    tag = "credits",
    summary = "The account's credit ledger: grants, one draw per grant per invoice, voids (finance, admin, the account's own key)",
    params(("account" = String, Path, description = "Account id")),
    responses((status = 200, description = "Entries by grant", body = inline(crate::openapi::LedgerList))),
    security(("bearer" = [])),
)]
pub async fn account_ledger(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<List<LedgerEntry>>, ApiError> {
    let account = auth::account_id(&account)?;
    let mut conn = pool.acquire().await?;
    account_currency(&mut conn, &account).await?;
    let data = ledger(&mut conn, LedgerOf::Account(account.as_str())).await?;
    Ok(Json(List { data }))
}

fn grant_id(raw: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .map_err(|_| ApiError::NotFound(format!("grant {raw}")))
}

/// `GET /v1/grants/{id}`
#[utoipa::path(
    get,
    path = "/v1/grants/{id}",
    tag = "credits",
    summary = "One grant with its balance (finance, admin)",
    params(("id" = String, Path, description = "Grant id", format = Uuid)),
    responses((status = 200, description = "The grant", body = GrantView)),
    security(("bearer" = [])),
)]
pub async fn get_grant(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<GrantView>, ApiError> {
    let id = grant_id(&id)?;
    let mut conn = pool.acquire().await?;
    one_grant(&mut conn, id, Utc::now())
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("grant {id}")))
}

/// `GET /v1/grants/{id}/ledger`
#[utoipa::path(
    get,
    path = "/v1/grants/{id}/ledger",
    tag = "credits",
    summary = "One grant's ledger (finance, admin)",
    params(("id" = String, Path, description = "Grant id", format = Uuid)),
    responses((status = 200, description = "Entries", body = inline(crate::openapi::LedgerList))),
    security(("bearer" = [])),
)]
pub async fn grant_ledger(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<List<LedgerEntry>>, ApiError> {
    let id = grant_id(&id)?;
    let mut conn = pool.acquire().await?;
    if one_grant(&mut conn, id, Utc::now()).await?.is_none() {
        return Err(ApiError::NotFound(format!("grant {id}")));
    }
    let data = ledger(&mut conn, LedgerOf::Grant(id)).await?;
    Ok(Json(List { data }))
}

/// `POST /v1/grants/{id}/void`: takes back what the grant has not paid yet.
/// Draws already made (draft invoices included) stay; the grant pays for
/// nothing more (rating voids whatever a later restatement frees).
#[utoipa::path(
    post,
    path = "/v1/grants/{id}/void",
    tag = "credits",
    summary = "Void the unused part of a grant (finance, admin); draws already made stay",
    params(("id" = String, Path, description = "Grant id", format = Uuid)),
    request_body = VoidBody,
    responses((status = 200, description = "The voided grant", body = GrantView)),
    security(("bearer" = [])),
)]
pub async fn void_grant(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<VoidBody>,
) -> Result<Json<GrantView>, ApiError> {
    let id = grant_id(&id)?;
    let reason = body.reason.trim();
    if reason.is_empty() {
        return Err(ApiError::InvalidRequest("reason must not be empty".into()));
    }
    check_text("reason", reason, MAX_REASON)?;
    let now = Utc::now();
    let mut tx = pool.begin().await?;
    let account: Option<String> =
        sqlx::query_scalar("SELECT account_id FROM credit_grants WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let account = account.ok_or_else(|| ApiError::NotFound(format!("grant {id}")))?;
    request_restatement(&mut tx, &account).await?;
    // Waits for a rating transaction drawing on this grant to finish.
    let (amount, voided_at): (Decimal, Option<DateTime<Utc>>) =
        sqlx::query_as("SELECT amount, voided_at FROM credit_grants WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    if voided_at.is_some() {
        return Err(credit_error(
            Code::GrantVoided,
            format!("grant {id} is already voided"),
        ));
    }
    let drawn: Decimal = sqlx::query_scalar(
        "SELECT COALESCE(sum(amount), 0) FROM credit_ledger WHERE grant_id = $1 AND kind = 'draw'",
    )
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let unused = fits(unused_at_void(amount, drawn))?;
    sqlx::query(
        "UPDATE credit_grants SET voided_at = $2, voided_amount = $3, void_reason = $4 WHERE id = $1",
    )
    .bind(id)
    .bind(now)
    .bind(unused)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO credit_ledger (grant_id, account_id, kind, amount, note) VALUES ($1, $2, 'void', $3, $4)",
    )
    .bind(id)
    .bind(&account)
    .bind(unused)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    let view = one_grant(&mut tx, id, now)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("grant {id}")))?;
    tx.commit().await?;
    tracing::info!(grant = id, account = %account, unused = %unused, "grant voided");
    Ok(Json(view))
}
