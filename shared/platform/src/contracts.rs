//! Contracts repository (tables `contracts`, `contract_terms`,
//! `contract_commitments`). The rules are `tally_domain::contract`: this
//! module loads what they need (the account's other contracts, the
//! catalog's SKUs) and stores what they accept. Functions take a connection
//! so the caller owns the transaction.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use std::collections::BTreeMap;
use tally_domain::contract::{
    Cadence, Commitment, Contract, ContractError, ExistingContract, Funder, Scope, Term,
};
use tally_domain::pricing::PriceBook;
use tally_domain::{AccountId, AnchorDay, Currency, ProviderId, Sku};

use crate::catalog::decode_err;

#[derive(Debug, thiserror::Error)]
pub enum ContractRepoError {
    #[error("account {0} not found")]
    UnknownAccount(String),
    #[error(transparent)]
    Refused(#[from] ContractError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Validates `contract` against the account's other contracts and the
/// catalog, then stores it (ids are assigned: those in `contract` are
/// ignored); returns its id. Locks the account's row so two contracts of
/// one account are never checked side by side. Nothing is stored when it is
/// refused.
pub async fn insert(
    conn: &mut PgConnection,
    account: &AccountId,
    contract: &Contract,
) -> Result<i64, ContractRepoError> {
    let anchor_day: Option<i16> =
        sqlx::query_scalar("SELECT billing_anchor_day FROM accounts WHERE id = $1 FOR UPDATE")
            .bind(account.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(anchor_day) = anchor_day else {
        return Err(ContractRepoError::UnknownAccount(account.to_string()));
    };
    let anchor = u32::try_from(anchor_day)
        .ok()
        .and_then(|day| AnchorDay::new(day).ok())
        .ok_or_else(|| sqlx::Error::Decode(format!("billing anchor day {anchor_day}").into()))?;
    let existing: Vec<ExistingContract> =
        sqlx::query("SELECT id, starts_at, ends_at FROM contracts WHERE account_id = $1")
            .bind(account.as_str())
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(ExistingContract {
                    id: r.try_get("id")?,
                    starts_at: r.try_get("starts_at")?,
                    ends_at: r.try_get("ends_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?;
    let named: Vec<String> = contract
        .terms
        .iter()
        .flat_map(|t| match &t.scope {
            Scope::Skus { skus, .. } => skus.iter().map(|s| s.to_string()).collect(),
            _ => Vec::new(),
        })
        .collect();
    let known: Vec<(String, String)> =
        sqlx::query_as("SELECT id, provider_id FROM skus WHERE id = ANY($1)")
            .bind(&named)
            .fetch_all(&mut *conn)
            .await?;
    // The new contract has no id yet: 0 is none of the stored ones.
    let unsaved = Contract {
        id: 0,
        ..contract.clone()
    };
    unsaved.validate(&existing, |provider, sku| {
        known
            .iter()
            .any(|(s, p)| s == sku.as_str() && p == provider.as_str())
    })?;
    unsaved.check_commitment_periods(anchor)?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO contracts (account_id, starts_at, ends_at, currency, price_protection, signed_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
    )
    .bind(account.as_str())
    .bind(contract.starts_at)
    .bind(contract.ends_at)
    .bind(contract.currency.code())
    .bind(contract.price_protection)
    .bind(contract.signed_at)
    .fetch_one(&mut *conn)
    .await?;
    for term in &contract.terms {
        let (scope, provider, skus) = scope_columns(&term.scope);
        // A term is a percent or a negotiated price book, never both.
        let (percent, book) = match &term.price_book {
            Some(book) => (
                None,
                Some(serde_json::to_value(book).map_err(|e| sqlx::Error::Encode(Box::new(e)))?),
            ),
            None => (Some(term.percent), None),
        };
        sqlx::query(
            "INSERT INTO contract_terms (contract_id, scope, provider_id, skus, percent, price_book,
                 funded_by, effective_from, effective_to)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(scope)
        .bind(provider)
        .bind(skus)
        .bind(percent)
        .bind(book)
        .bind(term.funded_by.as_str())
        .bind(term.effective_from)
        .bind(term.effective_to)
        .execute(&mut *conn)
        .await?;
    }
    for c in &contract.commitments {
        sqlx::query(
            "INSERT INTO contract_commitments (contract_id, cadence, minimum, starts_at, ends_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(c.cadence.as_str())
        .bind(c.minimum)
        .bind(c.starts_at)
        .bind(c.ends_at)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

fn scope_columns(scope: &Scope) -> (&'static str, Option<String>, Vec<String>) {
    match scope {
        Scope::All => ("all", None, Vec::new()),
        Scope::Provider { provider } => ("provider", Some(provider.to_string()), Vec::new()),
        Scope::Skus { provider, skus } => (
            "skus",
            Some(provider.to_string()),
            skus.iter().map(|s| s.to_string()).collect(),
        ),
    }
}

fn term_from_row(r: &PgRow) -> Result<Term, sqlx::Error> {
    let scope: String = r.try_get("scope")?;
    let provider: Option<String> = r.try_get("provider_id")?;
    let provider = provider
        .map(|p| ProviderId::parse(&p).map_err(decode_err))
        .transpose()?;
    let skus: Vec<String> = r.try_get("skus")?;
    let scope = match (scope.as_str(), provider) {
        ("all", None) => Scope::All,
        ("provider", Some(provider)) => Scope::Provider { provider },
        ("skus", Some(provider)) => Scope::Skus {
            provider,
            skus: skus
                .iter()
                .map(|s| Sku::parse(s).map_err(decode_err))
                .collect::<Result<_, _>>()?,
        },
        (other, _) => {
            return Err(sqlx::Error::Decode(
                format!("contract term scope {other:?}").into(),
            ))
        }
    };
    let funded_by: String = r.try_get("funded_by")?;
    let percent: Option<Decimal> = r.try_get("percent")?;
    let book: Option<serde_json::Value> = r.try_get("price_book")?;
    let price_book = book
        .map(serde_json::from_value::<PriceBook>)
        .transpose()
        .map_err(decode_err)?;
    Ok(Term {
        id: r.try_get("id")?,
        scope,
        percent: percent.unwrap_or_default().normalize(),
        price_book,
        funded_by: Funder::parse(&funded_by)
            .ok_or_else(|| sqlx::Error::Decode(format!("funded_by {funded_by:?}").into()))?,
        effective_from: r.try_get("effective_from")?,
        effective_to: r.try_get("effective_to")?,
        partner_agreed_at: r.try_get("partner_agreed_at")?,
    })
}

const TERM_COLUMNS: &str = "t.id, t.contract_id, t.scope, t.provider_id, t.skus, t.percent,
    t.price_book, t.funded_by, t.effective_from, t.effective_to, t.partner_agreed_at";

/// Every contract of an account with its terms and commitments, by start.
pub async fn account_contracts(
    conn: &mut PgConnection,
    account: &AccountId,
) -> Result<Vec<Contract>, sqlx::Error> {
    let accounts = [account.as_str()];
    Ok(contracts_of(conn, &accounts)
        .await?
        .remove(account.as_str())
        .unwrap_or_default())
}

/// The contracts of each of `accounts` that has any, each account's by
/// start, with their terms and commitments: three queries whatever the
/// number of accounts (contracts, then the terms and the commitments of all
/// of them), one when none has a contract.
pub async fn contracts_of(
    conn: &mut PgConnection,
    accounts: &[&str],
) -> Result<std::collections::HashMap<String, Vec<Contract>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT account_id, id, starts_at, ends_at, currency, price_protection, signed_at
         FROM contracts WHERE account_id = ANY($1) ORDER BY account_id, starts_at, id",
    )
    .bind(accounts)
    .fetch_all(&mut *conn)
    .await?;
    let mut contracts: Vec<(String, Contract)> = Vec::with_capacity(rows.len());
    for r in &rows {
        let currency: String = r.try_get("currency")?;
        let contract = Contract {
            id: r.try_get("id")?,
            starts_at: r.try_get("starts_at")?,
            ends_at: r.try_get("ends_at")?,
            currency: Currency::parse(&currency).map_err(decode_err)?,
            price_protection: r.try_get("price_protection")?,
            signed_at: r.try_get("signed_at")?,
            terms: Vec::new(),
            commitments: Vec::new(),
        };
        contracts.push((r.try_get("account_id")?, contract));
    }
    let mut out = std::collections::HashMap::new();
    if contracts.is_empty() {
        return Ok(out);
    }
    let ids: Vec<i64> = contracts.iter().map(|(_, c)| c.id).collect();
    let mut terms: BTreeMap<i64, Vec<Term>> = BTreeMap::new();
    for r in sqlx::query(&format!(
        "SELECT {TERM_COLUMNS} FROM contract_terms t WHERE t.contract_id = ANY($1) ORDER BY t.id"
    ))
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    {
        terms
            .entry(r.try_get("contract_id")?)
            .or_default()
            .push(term_from_row(&r)?);
    }
    let mut commitments: BTreeMap<i64, Vec<Commitment>> = BTreeMap::new();
    for r in sqlx::query(
        "SELECT id, contract_id, cadence, minimum, starts_at, ends_at FROM contract_commitments
         WHERE contract_id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?
    {
        let cadence: String = r.try_get("cadence")?;
        commitments
            .entry(r.try_get("contract_id")?)
            .or_default()
            .push(Commitment {
                id: r.try_get("id")?,
                cadence: Cadence::parse(&cadence)
                    .ok_or_else(|| sqlx::Error::Decode(format!("cadence {cadence:?}").into()))?,
                minimum: r.try_get::<Decimal, _>("minimum")?,
                starts_at: r.try_get("starts_at")?,
                ends_at: r.try_get("ends_at")?,
            });
    }
    for (account, mut c) in contracts {
        c.terms = terms.remove(&c.id).unwrap_or_default();
        c.commitments = commitments.remove(&c.id).unwrap_or_default();
        out.entry(account).or_insert_with(Vec::new).push(c);
    }
    Ok(out)
}

/// A partner-funded term as its provider sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerTerm {
    pub account: AccountId,
    pub contract_id: i64,
    pub term: Term,
}

fn partner_term(r: &PgRow) -> Result<PartnerTerm, sqlx::Error> {
    let account: String = r.try_get("account_id")?;
    Ok(PartnerTerm {
        account: AccountId::parse(&account).map_err(decode_err)?,
        contract_id: r.try_get("contract_id")?,
        term: term_from_row(r)?,
    })
}

/// The partner-funded terms that name `provider`, oldest first.
pub async fn partner_terms(
    conn: &mut PgConnection,
    provider: &ProviderId,
) -> Result<Vec<PartnerTerm>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {TERM_COLUMNS}, c.account_id FROM contract_terms t
         JOIN contracts c ON c.id = t.contract_id
         WHERE t.provider_id = $1 AND t.funded_by = 'partner' ORDER BY t.id"
    ))
    .bind(provider.as_str())
    .fetch_all(conn)
    .await?
    .iter()
    .map(partner_term)
    .collect()
}

/// Records `provider`'s agreement to fund term `id` (the first agreement
/// stands: agreeing again changes nothing). None when the term is not a
/// partner-funded term naming `provider`.
pub async fn agree(
    conn: &mut PgConnection,
    provider: &ProviderId,
    id: i64,
    at: DateTime<Utc>,
) -> Result<Option<PartnerTerm>, sqlx::Error> {
    sqlx::query(
        "UPDATE contract_terms SET partner_agreed_at = COALESCE(partner_agreed_at, $3)
         WHERE id = $1 AND provider_id = $2 AND funded_by = 'partner'",
    )
    .bind(id)
    .bind(provider.as_str())
    .bind(at)
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "SELECT {TERM_COLUMNS}, c.account_id FROM contract_terms t
         JOIN contracts c ON c.id = t.contract_id
         WHERE t.id = $1 AND t.provider_id = $2 AND t.funded_by = 'partner'"
    ))
    .bind(id)
    .bind(provider.as_str())
    .fetch_optional(conn)
    .await?
    .as_ref()
    .map(partner_term)
    .transpose()
}

/// Signs `account`'s contract `id` at `at` ([`Contract::sign`]: refused
/// with `partner_not_agreed` while a partner-funded term is not agreed;
/// signing a signed contract changes nothing). Locks the contract's row, so
/// two signatures are never checked side by side. None when the account
/// has no such contract.
pub async fn sign(
    conn: &mut PgConnection,
    account: &AccountId,
    id: i64,
    at: DateTime<Utc>,
) -> Result<Option<Contract>, ContractRepoError> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT id FROM contracts WHERE id = $1 AND account_id = $2 FOR UPDATE")
            .bind(id)
            .bind(account.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    if found.is_none() {
        return Ok(None);
    }
    let Some(mut contract) = account_contracts(&mut *conn, account)
        .await?
        .into_iter()
        .find(|c| c.id == id)
    else {
        return Ok(None);
    };
    contract.sign(at)?;
    // As stored (to the microsecond), unless it was signed already.
    let stored: Option<DateTime<Utc>> = sqlx::query_scalar(
        "UPDATE contracts SET signed_at = $2 WHERE id = $1 AND signed_at IS NULL
         RETURNING signed_at",
    )
    .bind(id)
    .bind(at)
    .fetch_optional(&mut *conn)
    .await?;
    if stored.is_some() {
        contract.signed_at = stored;
    }
    Ok(Some(contract))
}
