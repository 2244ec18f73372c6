//! Contracts API: finance (or an admin) sets a contract for an account;
//! the account reads its own; a provider reads the partner-funded terms
//! that name it and agrees to fund them. A contract without a
//! partner-funded term is signed when created; one with any awaits its
//! partners (`awaiting_partner`: in force nowhere, billing nothing) until
//! finance signs it, which is refused (`partner_not_agreed`) while a
//! partner has not agreed. The rules are `tally_domain::contract`; rating
//! applies signed contracts, so every change here that can change a bill
//! asks rating to restate the account (as a grant does).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tally_domain::contract::{Cadence, Commitment, Contract, ContractError, Funder, Scope, Term};
use tally_domain::input::check_date;
use tally_domain::pricing::PriceBook;
use tally_domain::{Currency, ProviderId, Sku};
use tally_platform::contracts::{self, ContractRepoError, PartnerTerm};

use crate::auth::{self, AccountReader, ProviderCaller, Staff};
use crate::credits::{account_currency, request_restatement};
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, RequestBody};

/// A contract to sign for an account.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContract {
    /// The term's start; in the years 2000 to 9999 (`invalid_date`).
    starts_at: DateTime<Utc>,
    /// The term's end (exclusive), after `starts_at`.
    ends_at: DateTime<Utc>,
    /// Must be the account's billing currency; defaults to it.
    currency: Option<String>,
    /// Whether the account keeps the price versions in force at signature
    /// until the term ends.
    #[serde(default)]
    price_protection: bool,
    #[serde(default)]
    terms: Vec<TermBody>,
    #[serde(default)]
    commitments: Vec<CommitmentBody>,
}

impl RequestBody for NewContract {
    const INEXACT_CODE: Code = Code::InvalidContract;
}

/// A percentage discount (`percent`) or a negotiated price book for one
/// SKU (`price_book`, scope `skus` with that one SKU), effective
/// `[effective_from, effective_to)` inside the contract's term.
///
/// A negotiated price book is in the contract's currency, with any model a
/// price version takes, validated as one (`invalid_price`; no
/// `minimum_charge` or `recurring_fee`). The SKU's usage lines bill it
/// instead of list: the book prices the SKU's whole quantity in the period
/// once, and the lines' discount (their price before the contract less
/// that charge) is shared over them in proportion to their price (largest
/// remainder), each share split as any discount by `funded_by`. It is
/// never also percent-discounted, and a book above list bills list (the
/// discount is never negative).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TermBody {
    /// `all` (every line), `provider` (one provider's lines) or `skus`
    /// (the listed SKUs of one provider).
    #[schema(schema_with = crate::openapi::contract_scope)]
    pub(crate) scope: String,
    /// Required for `provider` and `skus`, refused for `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) provider: Option<String>,
    /// Required (non-empty) for `skus`, refused otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) skus: Vec<String>,
    /// Off the line's amount, more than 0 and at most 100. Give either
    /// `percent` or `price_book`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "tally_domain::input::exact_option"
    )]
    #[schema(value_type = Option<crate::openapi::Decimal>)]
    pub(crate) percent: Option<Decimal>,
    /// A negotiated price book for the term's one SKU, in the contract's
    /// currency: any model a price version takes, validated as one
    /// (`invalid_price`; no `minimum_charge` or `recurring_fee`). The SKU's
    /// usage lines bill it instead of list: the book prices the SKU's whole
    /// period quantity once, and the lines' discount (their price before it
    /// less that charge) is shared over them by price. Never more than list
    /// (a book above list bills list), and never also percent-discounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::price_book)]
    pub(crate) price_book: Option<PriceBook>,
    /// `platform` (the partner is settled at list) or `partner` (its net
    /// falls by the discount once it has agreed; names a provider).
    #[schema(schema_with = crate::openapi::contract_funder)]
    pub(crate) funded_by: String,
    pub(crate) effective_from: DateTime<Utc>,
    pub(crate) effective_to: DateTime<Utc>,
}

/// A minimum spend per commitment period, inside the contract's term.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommitmentBody {
    /// `month`, `quarter` or `year`: the commitment periods' length, from `starts_at`.
    #[schema(schema_with = crate::openapi::contract_cadence)]
    cadence: String,
    /// Positive, with at most the currency's minor units.
    #[serde(with = "tally_domain::input::exact")]
    #[schema(value_type = crate::openapi::Decimal)]
    minimum: Decimal,
    /// On a boundary of the account's billing periods (`invalid_contract`
    /// otherwise), inside the contract's term.
    starts_at: DateTime<Utc>,
    /// On a boundary of the account's billing periods, inside the term. Each
    /// commitment period's true-up (`max(0, minimum - net spend)` over all
    /// its billing periods) is billed on the billing period that ends it.
    ends_at: DateTime<Utc>,
}

/// A term as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ContractTerm)]
pub struct TermView {
    pub(crate) id: i64,
    #[serde(flatten)]
    pub(crate) body: TermBody,
    /// When the partner agreed to fund the term (partner-funded terms
    /// only); the contract can be signed once every such term is agreed.
    pub(crate) partner_agreed_at: Option<DateTime<Utc>>,
}

/// A commitment as stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ContractCommitment)]
pub struct CommitmentView {
    id: i64,
    #[serde(flatten)]
    body: CommitmentBody,
}

/// A contract with its terms and commitments.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Contract)]
pub struct ContractView {
    pub(crate) id: i64,
    pub(crate) account_id: String,
    pub(crate) starts_at: DateTime<Utc>,
    pub(crate) ends_at: DateTime<Utc>,
    /// ISO 4217
    #[schema(value_type = String)]
    pub(crate) currency: Currency,
    pub(crate) price_protection: bool,
    /// `signed` (in force in its term) or `awaiting_partner` (a
    /// partner-funded term awaits its partner's agreement, then finance
    /// signs it: until then it bills nothing).
    #[schema(schema_with = crate::openapi::contract_status)]
    pub(crate) status: &'static str,
    /// When the contract was signed (null while awaiting its partners): a
    /// protected account keeps the price versions in force then until the
    /// term ends.
    #[schema(required = true)]
    pub(crate) signed_at: Option<DateTime<Utc>>,
    pub(crate) terms: Vec<TermView>,
    pub(crate) commitments: Vec<CommitmentView>,
}

/// An account's contracts, by start.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContractList {
    data: Vec<ContractView>,
}

/// A partner-funded term naming the calling provider.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerTermView {
    account_id: String,
    contract_id: i64,
    term: TermView,
}

/// The calling provider's partner-funded terms, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerTermList {
    data: Vec<PartnerTermView>,
}

fn refused(code: Code, message: impl Into<String>) -> ApiError {
    ApiError::Refused(code, message.into())
}

impl From<ContractError> for ApiError {
    fn from(err: ContractError) -> Self {
        let code = match err {
            ContractError::EmptyTerm | ContractError::Invalid(_) => Code::InvalidContract,
            ContractError::Overlaps(_) => Code::ContractOverlaps,
            ContractError::TermOutsideContract { .. } => Code::TermOutsideContract,
            ContractError::CommitmentOutsideTerm { .. } => Code::CommitmentOutsideTerm,
            ContractError::UnknownSku { .. } => Code::UnknownSku,
            ContractError::PartnerNotAgreed(_) => Code::PartnerNotAgreed,
            ContractError::InvalidPrice { .. } => Code::InvalidPrice,
        };
        refused(code, err.to_string())
    }
}

impl From<ContractRepoError> for ApiError {
    fn from(err: ContractRepoError) -> Self {
        match err {
            ContractRepoError::UnknownAccount(a) => ApiError::NotFound(format!("account {a}")),
            ContractRepoError::Refused(e) => e.into(),
            ContractRepoError::Database(e) => e.into(),
        }
    }
}

fn term_body(term: &Term) -> TermBody {
    let (scope, provider, skus) = match &term.scope {
        Scope::All => ("all", None, Vec::new()),
        Scope::Provider { provider } => ("provider", Some(provider.to_string()), Vec::new()),
        Scope::Skus { provider, skus } => (
            "skus",
            Some(provider.to_string()),
            skus.iter().map(|s| s.to_string()).collect(),
        ),
    };
    TermBody {
        scope: scope.into(),
        provider,
        skus,
        percent: term.price_book.is_none().then(|| term.percent.normalize()),
        price_book: term.price_book.clone(),
        funded_by: term.funded_by.as_str().into(),
        effective_from: term.effective_from,
        effective_to: term.effective_to,
    }
}

fn term_view(term: &Term) -> TermView {
    TermView {
        id: term.id,
        body: term_body(term),
        partner_agreed_at: term.partner_agreed_at,
    }
}

pub(crate) fn contract_view(account: &str, c: Contract) -> ContractView {
    ContractView {
        id: c.id,
        account_id: account.into(),
        starts_at: c.starts_at,
        ends_at: c.ends_at,
        price_protection: c.price_protection,
        status: if c.signed_at.is_some() {
            "signed"
        } else {
            "awaiting_partner"
        },
        signed_at: c.signed_at,
        terms: c.terms.iter().map(term_view).collect(),
        commitments: c
            .commitments
            .iter()
            .map(|m| CommitmentView {
                id: m.id,
                body: CommitmentBody {
                    cadence: m.cadence.as_str().into(),
                    minimum: c.currency.scaled(m.minimum),
                    starts_at: m.starts_at,
                    ends_at: m.ends_at,
                },
            })
            .collect(),
        currency: c.currency,
    }
}

fn parse_term(index: usize, body: &TermBody) -> Result<Term, ApiError> {
    let invalid = |what: &str| refused(Code::InvalidContract, format!("terms[{index}]: {what}"));
    let provider = body
        .provider
        .as_deref()
        .map(|p| {
            ProviderId::parse(p)
                .map_err(|e| refused(Code::UnknownProvider, format!("provider {p:?}: {e}")))
        })
        .transpose()?;
    let scope = match (body.scope.as_str(), provider, body.skus.is_empty()) {
        ("all", None, true) => Scope::All,
        ("provider", Some(provider), true) => Scope::Provider { provider },
        ("skus", Some(provider), false) => Scope::Skus {
            provider,
            skus: body
                .skus
                .iter()
                .map(|s| {
                    Sku::parse(s).map_err(|e| refused(Code::UnknownSku, format!("sku {s:?}: {e}")))
                })
                .collect::<Result<_, _>>()?,
        },
        _ => {
            return Err(invalid(
                "scope is all (no provider, no skus), provider (a provider) or skus (a provider and its skus)",
            ))
        }
    };
    check_date("effective_from", body.effective_from)?;
    check_date("effective_to", body.effective_to)?;
    let percent = match (body.percent, &body.price_book) {
        (Some(percent), None) => percent,
        (None, Some(_)) => Decimal::ZERO,
        _ => return Err(invalid("give either percent or price_book")),
    };
    Ok(Term {
        id: 0,
        scope,
        percent,
        price_book: body.price_book.clone(),
        funded_by: Funder::parse(&body.funded_by)
            .ok_or_else(|| invalid("funded_by is platform or partner"))?,
        effective_from: body.effective_from,
        effective_to: body.effective_to,
        partner_agreed_at: None,
    })
}

fn parse_commitment(
    index: usize,
    body: &CommitmentBody,
    currency: Currency,
) -> Result<Commitment, ApiError> {
    let cadence = Cadence::parse(&body.cadence).ok_or_else(|| {
        refused(
            Code::InvalidContract,
            format!("commitments[{index}]: cadence is month, quarter or year"),
        )
    })?;
    if body.minimum <= Decimal::ZERO || currency.round(body.minimum) != body.minimum {
        return Err(refused(
            Code::InvalidAmount,
            format!(
                "commitments[{index}]: minimum must be positive, in {currency} with at most {} decimals",
                currency.minor_units()
            ),
        ));
    }
    check_date("starts_at", body.starts_at)?;
    check_date("ends_at", body.ends_at)?;
    Ok(Commitment {
        id: 0,
        cadence,
        minimum: body.minimum,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
    })
}

/// `POST /v1/accounts/{account}/contracts`
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/contracts",
    tag = "contracts",
    summary = "Set a contract for an account (finance, admin). Without a partner-funded term it is signed now and rating restates the account's open invoices; with one it awaits the partners' agreement (`awaiting_partner`, billing nothing) until signed. Nothing is stored when any part is refused",
    params(("account" = String, Path, description = "Account id")),
    request_body = NewContract,
    responses((status = 201, description = "The contract", body = ContractView)),
    security(("bearer" = [])),
)]
pub async fn create_contract(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
    ApiJson(body): ApiJson<NewContract>,
) -> Result<(StatusCode, Json<ContractView>), ApiError> {
    let account = auth::account_id(&account)?;
    let mut tx = pool.begin().await?;
    let currency = account_currency(&mut tx, &account).await?;
    if let Some(asked) = &body.currency {
        if asked != currency.code() {
            return Err(refused(
                Code::CurrencyMismatch,
                format!("the account is billed in {currency}, not {asked}"),
            ));
        }
    }
    check_date("starts_at", body.starts_at)?;
    check_date("ends_at", body.ends_at)?;
    let mut contract = Contract {
        id: 0,
        starts_at: body.starts_at,
        ends_at: body.ends_at,
        currency,
        price_protection: body.price_protection,
        signed_at: None,
        terms: body
            .terms
            .iter()
            .enumerate()
            .map(|(i, t)| parse_term(i, t))
            .collect::<Result<_, _>>()?,
        commitments: body
            .commitments
            .iter()
            .enumerate()
            .map(|(i, c)| parse_commitment(i, c, currency))
            .collect::<Result<_, _>>()?,
    };
    // Signed now, unless a partner-funded term awaits its partner.
    let signed = contract.sign(Utc::now()).is_ok();
    if signed {
        request_restatement(&mut tx, account.as_str()).await?;
    }
    let id = contracts::insert(&mut tx, &account, &contract).await?;
    let stored = contracts::account_contracts(&mut tx, &account)
        .await?
        .into_iter()
        .find(|c| c.id == id)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("contract {id} vanished")))?;
    tx.commit().await?;
    tracing::info!(contract = id, account = %account, signed, "contract created");
    Ok((
        StatusCode::CREATED,
        Json(contract_view(account.as_str(), stored)),
    ))
}

/// `POST /v1/accounts/{account}/contracts/{id}/sign`
#[utoipa::path(
    post,
    path = "/v1/accounts/{account}/contracts/{id}/sign",
    tag = "contracts",
    summary = "Sign a contract awaiting its partners (finance, admin): refused with 409 `partner_not_agreed` (nothing changes) while a partner-funded term is not agreed; then it is in force, a protected account keeps the price versions in force now, and rating restates the account's open invoices. Signing a signed contract changes nothing",
    params(
        ("account" = String, Path, description = "Account id"),
        ("id" = String, Path, description = "Contract id"),
    ),
    responses((status = 200, description = "The signed contract", body = ContractView)),
    security(("bearer" = [])),
)]
pub async fn sign_contract(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath((account, id)): ApiPath<(String, String)>,
) -> Result<Json<ContractView>, ApiError> {
    let account = auth::account_id(&account)?;
    let not_found = || ApiError::NotFound(format!("contract {id} of account {account}"));
    let contract_id: i64 = id.parse().map_err(|_| not_found())?;
    let mut tx = pool.begin().await?;
    account_currency(&mut tx, &account).await?;
    request_restatement(&mut tx, account.as_str()).await?;
    let signed = contracts::sign(&mut tx, &account, contract_id, Utc::now())
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    tracing::info!(contract = contract_id, account = %account, "contract signed");
    Ok(Json(contract_view(account.as_str(), signed)))
}

/// `GET /v1/accounts/{account}/contracts`: staff, or the account's own key.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/contracts",
    tag = "contracts",
    summary = "The account's contracts with their terms and commitments (finance, admin, the account's own key)",
    params(("account" = String, Path, description = "Account id")),
    responses((status = 200, description = "Contracts, by start", body = ContractList)),
    security(("bearer" = [])),
)]
pub async fn list_contracts(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<ContractList>, ApiError> {
    let account = auth::account_id(&account)?;
    let mut conn = pool.acquire().await?;
    account_currency(&mut conn, &account).await?;
    let data = contracts::account_contracts(&mut conn, &account)
        .await?
        .into_iter()
        .map(|c| contract_view(account.as_str(), c))
        .collect();
    Ok(Json(ContractList { data }))
}

fn partner_view(t: PartnerTerm) -> PartnerTermView {
    PartnerTermView {
        account_id: t.account.to_string(),
        contract_id: t.contract_id,
        term: term_view(&t.term),
    }
}

/// `GET /v1/provider/contract-terms`
#[utoipa::path(
    get,
    path = "/v1/provider/contract-terms",
    tag = "provider",
    summary = "The partner-funded contract terms naming the calling provider, oldest first",
    responses((status = 200, description = "Terms", body = PartnerTermList)),
    security(("bearer" = [])),
)]
pub async fn list_partner_terms(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
) -> Result<Json<PartnerTermList>, ApiError> {
    let mut conn = pool.acquire().await?;
    let data = contracts::partner_terms(&mut conn, &me)
        .await?
        .into_iter()
        .map(partner_view)
        .collect();
    Ok(Json(PartnerTermList { data }))
}

/// `POST /v1/provider/contract-terms/{id}/agree`
#[utoipa::path(
    post,
    path = "/v1/provider/contract-terms/{id}/agree",
    tag = "provider",
    summary = "Agree to fund a partner-funded term naming the calling provider: once finance signs its contract (or at once, if it is signed), its net falls by the discount; the account is restated. Agreeing again changes nothing",
    params(("id" = String, Path, description = "Term id")),
    responses((status = 200, description = "The term", body = PartnerTermView)),
    security(("bearer" = [])),
)]
pub async fn agree_to_term(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PartnerTermView>, ApiError> {
    let not_found = || ApiError::NotFound(format!("contract term {id}"));
    let term_id: i64 = id.parse().map_err(|_| not_found())?;
    let mut tx = pool.begin().await?;
    let account: Option<String> = sqlx::query_scalar(
        "SELECT c.account_id FROM contract_terms t JOIN contracts c ON c.id = t.contract_id
         WHERE t.id = $1 AND t.provider_id = $2 AND t.funded_by = 'partner'",
    )
    .bind(term_id)
    .bind(me.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let account = account.ok_or_else(not_found)?;
    request_restatement(&mut tx, &account).await?;
    let term = contracts::agree(&mut tx, &me, term_id, Utc::now())
        .await?
        .ok_or_else(not_found)?;
    tx.commit().await?;
    tracing::info!(term = term_id, provider = %me, "partner agreed to fund a contract term");
    Ok(Json(partner_view(term)))
}
