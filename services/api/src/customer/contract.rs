//! The contract on a customer's bill (issue 18, item 4): the contract in
//! force at the bill's period, each of its commitments' progress, and the
//! price changes coming for the SKUs the account uses or has bound. The
//! rules are `tally_domain::contract::progress`'s; this module loads what
//! they need from stored invoice lines and the catalog (never from rating),
//! and serves the bill API, the bill page and its CSV, and the account's
//! price changes on their own (`GET /v1/accounts/{account}/price-changes`).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use tally_domain::contract::progress::{self, PeriodSpend, Progress};
use tally_domain::contract::Contract;
use tally_domain::{AccountId, Currency};
use tally_invoicing::invoices_repo::Invoice;
use tally_platform::catalog::{self, PriceVersion};
use tally_platform::contracts;

use crate::auth::{self, AccountReader};
use crate::contracts::{contract_view, ContractView};
use crate::credits::account_currency;
use crate::error::ApiError;
use crate::extract::ApiPath;

/// A commitment period's progress as the bill shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CommitmentProgress {
    pub commitment_id: i64,
    /// month, quarter or year
    pub cadence: String,
    /// `in_progress`: the bill's period is inside it (spend so far);
    /// `finished`: the last commitment period that ended by the bill's period
    #[schema(pattern = "^(in_progress|finished)$")]
    pub standing: String,
    pub period_start: DateTime<Utc>,
    /// Exclusive
    pub period_end: DateTime<Utc>,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub minimum: Decimal,
    /// Net spend of the billing periods in it (after discounts, before
    /// credits, true-up lines excluded; late usage counts in its service
    /// period)
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub net_spend: Decimal,
    /// `max(0, minimum - net_spend)`
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub remaining: Decimal,
    /// The true-up billed in the period, or (not billed yet) the one
    /// projected at the spend so far: `remaining`
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub true_up: Decimal,
    pub true_up_billed: bool,
}

/// A price version of a SKU the account uses or has bound that takes
/// effect for the account in the future, in the account's currency (list,
/// or for an account a provider owns wholesale where there is one): after
/// now, or (its contract protecting its prices now) after the contract's
/// signature, applying to it from the contract's end.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PriceChange {
    pub sku: String,
    pub provider: String,
    pub effective_from: DateTime<Utc>,
    /// The version the account pays now: in force now, or (its contract
    /// protecting its prices now) in force at the contract's signature;
    /// none: the SKU has no price yet
    pub current: Option<PriceVersion>,
    pub new: PriceVersion,
    /// When the account's contract protects its prices at the change: the
    /// contract's end; the change does not apply to the account until then
    pub protected_until: Option<DateTime<Utc>>,
    /// When the account starts paying the new version: `protected_until`,
    /// else `effective_from`
    pub applies_from: DateTime<Utc>,
}

/// The price changes coming to an account, soonest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PriceChangeList {
    pub data: Vec<PriceChange>,
}

/// `GET /v1/accounts/{account}/price-changes`: what the bill's
/// `price_changes` shows, for an account with or without a bill yet.
#[utoipa::path(
    get,
    path = "/v1/accounts/{account}/price-changes",
    tag = "customer",
    summary = "Price changes coming to the account (its customer token, finance, admin): every price version in its currency (list; wholesale for an account a provider owns, where there is one) taking over after now (after its contract's signature while that protects its prices) of a SKU on its three newest invoices or of a provider it has a binding with, and whether its contract protects it until the contract's end",
    params(("account" = String, Path, description = "Account id")),
    responses((status = 200, description = "The changes, soonest first", body = PriceChangeList)),
    security(("bearer" = [])),
)]
pub async fn list_price_changes(
    _: AccountReader,
    State(pool): State<PgPool>,
    ApiPath(account): ApiPath<String>,
) -> Result<Json<PriceChangeList>, ApiError> {
    let account = auth::account_id(&account)?;
    let mut conn = pool.acquire().await?;
    let currency = account_currency(&mut conn, &account).await?;
    let contracts = contracts::account_contracts(&mut conn, &account).await?;
    let data = price_changes(&mut conn, &account, currency, &contracts, Utc::now()).await?;
    Ok(Json(PriceChangeList { data }))
}

/// What a bill shows of the account's contract.
#[derive(Debug, Default)]
pub struct BillContract {
    pub contract: Option<ContractView>,
    pub commitments: Vec<CommitmentProgress>,
    pub price_changes: Vec<PriceChange>,
}

/// The contract part of `invoice`'s bill; price changes as of `now`.
pub async fn load(
    conn: &mut PgConnection,
    account: &AccountId,
    invoice: &Invoice,
    now: DateTime<Utc>,
) -> Result<BillContract, ApiError> {
    let summary = &invoice.summary;
    let currency = summary.currency;
    let contracts = contracts::account_contracts(&mut *conn, account).await?;
    let in_force = progress::in_force(&contracts, summary.period.start).cloned();
    let commitments = match &in_force {
        Some(c) => commitment_progress(&mut *conn, account, c, summary.period.start).await?,
        None => Vec::new(),
    };
    let price_changes = price_changes(&mut *conn, account, currency, &contracts, now).await?;
    Ok(BillContract {
        contract: in_force.map(|c| contract_view(account.as_str(), c)),
        commitments,
        price_changes,
    })
}

async fn commitment_progress(
    conn: &mut PgConnection,
    account: &AccountId,
    contract: &Contract,
    bill_start: DateTime<Utc>,
) -> Result<Vec<CommitmentProgress>, ApiError> {
    let currency = contract.currency;
    // Net spend per service period, and the true-ups billed per period
    // and commitment, of the account's invoices in the contract's currency.
    let rows = sqlx::query(
        "SELECT COALESCE(l.adjusts_period_start, i.period_start) AS start,
                COALESCE(sum(l.amount) FILTER (WHERE l.kind <> 'commitment_true_up'), 0) AS net
         FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id
         WHERE i.account_id = $1 AND i.currency = $2 AND i.status <> 'void'
         GROUP BY 1",
    )
    .bind(account.as_str())
    .bind(currency.code())
    .fetch_all(&mut *conn)
    .await?;
    let mut net: BTreeMap<DateTime<Utc>, Decimal> = BTreeMap::new();
    for r in &rows {
        net.insert(r.try_get("start")?, r.try_get("net")?);
    }
    let true_ups: Vec<(DateTime<Utc>, i64, Decimal)> = sqlx::query_as(
        "SELECT COALESCE(l.adjusts_period_start, i.period_start), l.price_id, sum(l.amount)
         FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id
         WHERE i.account_id = $1 AND i.currency = $2 AND i.status <> 'void'
           AND l.kind = 'commitment_true_up'
         GROUP BY 1, 2",
    )
    .bind(account.as_str())
    .bind(currency.code())
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::new();
    for c in &contract.commitments {
        let mut spend: BTreeMap<DateTime<Utc>, PeriodSpend> = net
            .iter()
            .map(|(start, net)| {
                (
                    *start,
                    PeriodSpend {
                        start: *start,
                        net: *net,
                        true_up: Decimal::ZERO,
                    },
                )
            })
            .collect();
        for (start, _, amount) in true_ups.iter().filter(|(_, id, _)| *id == c.id) {
            spend
                .entry(*start)
                .or_insert(PeriodSpend {
                    start: *start,
                    net: Decimal::ZERO,
                    true_up: Decimal::ZERO,
                })
                .true_up = *amount;
        }
        let spend: Vec<PeriodSpend> = spend.into_values().collect();
        for p in progress::progress(c, &spend, bill_start, currency)? {
            out.push(progress_view(c.cadence.as_str(), p, currency));
        }
    }
    Ok(out)
}

fn progress_view(cadence: &str, p: Progress, currency: Currency) -> CommitmentProgress {
    let s = |amount| currency.scaled(amount);
    CommitmentProgress {
        commitment_id: p.commitment,
        cadence: cadence.into(),
        standing: p.standing.as_str().into(),
        period_start: p.window_start,
        period_end: p.window_end,
        minimum: s(p.minimum),
        net_spend: s(p.net_spend),
        remaining: s(p.remaining),
        true_up: s(p.true_up),
        true_up_billed: p.true_up_billed,
    }
}

/// The SKUs an account uses (on its three newest invoices) or has bound
/// (every SKU of a provider it has a binding with that is not deleted),
/// each with its provider.
async fn watched_skus(
    conn: &mut PgConnection,
    account: &AccountId,
) -> Result<Vec<(String, String)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT s.id, s.provider_id FROM skus s
         WHERE s.id IN (
               SELECT l.sku_id FROM invoice_lines l
               WHERE l.invoice_id IN (SELECT id FROM invoices WHERE account_id = $1
                                      ORDER BY period_start DESC LIMIT 3))
            OR s.provider_id IN (
               SELECT provider_id FROM bindings WHERE account_id = $1 AND status <> 'deleted')
         ORDER BY s.id",
    )
    .bind(account.as_str())
    .fetch_all(conn)
    .await
}

async fn price_changes(
    conn: &mut PgConnection,
    account: &AccountId,
    currency: Currency,
    contracts: &[Contract],
    now: DateTime<Utc>,
) -> Result<Vec<PriceChange>, ApiError> {
    let skus = watched_skus(&mut *conn, account).await?;
    let ids: Vec<&str> = skus.iter().map(|(s, _)| s.as_str()).collect();
    let versions = catalog::price_versions(&mut *conn, &ids, &[currency.code()]).await?;
    let owned: Option<String> =
        sqlx::query_scalar("SELECT owner_provider_id FROM accounts WHERE id = $1")
            .bind(account.as_str())
            .fetch_optional(&mut *conn)
            .await?
            .flatten();
    let wholesale = match owned {
        Some(_) => catalog::wholesale_versions(&mut *conn, &ids, &[currency.code()]).await?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    // A protected account pays the versions in force at its contract's
    // signature: those since are changes still to come for it.
    let priced_at = Contract::protected_price_time(contracts, now).unwrap_or(now);
    for (sku, provider) in &skus {
        let of_sku = |all: &[PriceVersion]| -> Vec<PriceVersion> {
            all.iter()
                .filter(|v| v.sku.as_str() == sku)
                .cloned()
                .collect()
        };
        let (list, wholesale) = (of_sku(&versions), of_sku(&wholesale));
        let (current, coming) = progress::coming(&list, &wholesale, owned.is_some(), priced_at);
        for new in coming {
            let protected_until = progress::protected_until(contracts, new.effective_from);
            out.push(PriceChange {
                sku: sku.clone(),
                provider: provider.clone(),
                effective_from: new.effective_from,
                current: current.cloned(),
                new: new.clone(),
                protected_until,
                applies_from: protected_until.unwrap_or(new.effective_from),
            });
        }
    }
    out.sort_by(|a, b| (a.effective_from, &a.sku).cmp(&(b.effective_from, &b.sku)));
    Ok(out)
}
