//! Composition repository (issue 17): accounts owned by providers (a
//! provider as a customer of other providers) and the on-behalf-of
//! references a composing provider's upstream usage names its consumers by. Functions take a connection
//! so the caller owns the transaction.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashSet};
use tally_domain::composition::margin::{Revenue, UpstreamCost};
use tally_domain::composition::OnBehalfOf;
use tally_domain::{AccountId, Currency, ProviderId};

use crate::catalog::CatalogError;

/// Makes `account` the billing account of `provider`: the provider's key
/// reads its invoices. `UnknownProvider` when there is no such provider.
pub async fn set_owner(
    conn: &mut PgConnection,
    account: &AccountId,
    provider: &ProviderId,
) -> Result<(), CatalogError> {
    let updated = sqlx::query("UPDATE accounts SET owner_provider_id = $2 WHERE id = $1")
        .bind(account.as_str())
        .bind(provider.as_str())
        .execute(conn)
        .await
        .map_err(|e| match crate::db::violated_constraint(&e) {
            Some("accounts_owner_provider_id_fkey") => {
                CatalogError::UnknownProvider(provider.to_string())
            }
            _ => CatalogError::Database(e),
        })?;
    if updated.rows_affected() == 0 {
        return Err(CatalogError::Database(sqlx::Error::RowNotFound));
    }
    Ok(())
}

/// Of `accounts`, those a provider owns.
pub async fn provider_owned(
    conn: &mut PgConnection,
    accounts: &[&str],
) -> Result<HashSet<String>, sqlx::Error> {
    let owned: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM accounts WHERE id = ANY($1) AND owner_provider_id IS NOT NULL",
    )
    .bind(accounts)
    .fetch_all(conn)
    .await?;
    Ok(owned.into_iter().collect())
}

/// The accounts `provider` owns, in id order.
pub async fn accounts_of(
    conn: &mut PgConnection,
    provider: &ProviderId,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM accounts WHERE owner_provider_id = $1 ORDER BY id")
        .bind(provider.as_str())
        .fetch_all(conn)
        .await
}

/// The reference of (`provider`, `account`): the one minted before, or a
/// new random one. `provider` is the composing provider, `account` its
/// consumer.
pub async fn mint_reference(
    conn: &mut PgConnection,
    provider: &ProviderId,
    account: &AccountId,
) -> Result<OnBehalfOf, sqlx::Error> {
    let fresh = OnBehalfOf::from_random(rand::random());
    let token: String = sqlx::query_scalar(
        "INSERT INTO on_behalf_refs (token, provider_id, account_id) VALUES ($1, $2, $3)
         ON CONFLICT ON CONSTRAINT on_behalf_refs_pair_unique
         DO UPDATE SET provider_id = EXCLUDED.provider_id
         RETURNING token",
    )
    .bind(fresh.as_str())
    .bind(provider.as_str())
    .bind(account.as_str())
    .fetch_one(conn)
    .await?;
    OnBehalfOf::parse(&token).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// Of the (reference, account) pairs given, those whose reference was
/// minted by the provider that owns the account: the usage of an account
/// a provider owns may name the consumers of that provider only.
pub async fn valid_references(
    conn: &mut PgConnection,
    pairs: &[(&str, &str)],
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    let tokens: Vec<&str> = pairs.iter().map(|p| p.0).collect();
    let accounts: Vec<&str> = pairs.iter().map(|p| p.1).collect();
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT k.t, k.a FROM UNNEST($1::text[], $2::text[]) AS k(t, a)
         JOIN on_behalf_refs r ON r.token = k.t
         JOIN accounts acc ON acc.id = k.a AND acc.owner_provider_id = r.provider_id",
    )
    .bind(&tokens)
    .bind(&accounts)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// What the margin report of `provider` for the invoices of periods
/// starting in [`from`, `to`) is made of
/// ([`tally_domain::composition::margin`]): the provider's lines on its
/// consumers' invoices, and the upstream usage amounts of its own accounts'
/// invoices with the quantity done on behalf of each of its consumers (its
/// references resolved for it alone). Void invoices are left out. Every
/// line counts in the period its usage belongs to: an adjustment line (late
/// usage of a sealed period, billed on a later invoice) in the period it
/// adjusts, so a sealed period's report takes in its late usage, revenue
/// and cost alike, while its finalized invoices stay as they are; the
/// quantity done on behalf of each consumer (`usage_on_behalf`) is kept by
/// that same period.
pub async fn margin_inputs(
    conn: &mut PgConnection,
    provider: &ProviderId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<(Vec<Revenue>, Vec<UpstreamCost>), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT i.account_id, l.sku_id, i.currency, sum(l.amount) AS amount, sum(l.partner_net) AS net
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         WHERE l.provider_id = $1 AND i.status <> 'void'
           AND COALESCE(l.adjusts_period_start, i.period_start) >= $2
           AND COALESCE(l.adjusts_period_start, i.period_start) < $3
         GROUP BY i.account_id, l.sku_id, i.currency
         ORDER BY i.account_id, l.sku_id, i.currency",
    )
    .bind(provider.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    let mut revenue = Vec::with_capacity(rows.len());
    for r in rows {
        revenue.push(Revenue {
            consumer: r.try_get(0)?,
            sku: r.try_get(1)?,
            currency: currency(r.try_get(2)?)?,
            amount: r.try_get(3)?,
            net: r.try_get(4)?,
        });
    }
    let rows = sqlx::query(
        "SELECT i.account_id, COALESCE(l.adjusts_period_start, i.period_start) AS served,
                l.price_id, i.currency, sum(l.amount) AS amount, sum(l.quantity) AS quantity
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         JOIN accounts a ON a.id = i.account_id AND a.owner_provider_id = $1
         WHERE l.kind = 'usage' AND i.status <> 'void'
           AND COALESCE(l.adjusts_period_start, i.period_start) >= $2
           AND COALESCE(l.adjusts_period_start, i.period_start) < $3
         GROUP BY i.account_id, served, l.price_id, i.currency
         ORDER BY i.account_id, served, l.price_id",
    )
    .bind(provider.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    type Key = (String, DateTime<Utc>, i64);
    let mut costs: BTreeMap<Key, UpstreamCost> = BTreeMap::new();
    for r in rows {
        costs.insert(
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?),
            UpstreamCost {
                currency: currency(r.try_get(3)?)?,
                amount: r.try_get(4)?,
                quantity: r.try_get(5)?,
                on_behalf: BTreeMap::new(),
            },
        );
    }
    let shares: Vec<(String, DateTime<Utc>, i64, String, Decimal)> = sqlx::query_as(
        "SELECT u.account_id, u.period_start, u.price_id, r.account_id, sum(u.quantity)
         FROM usage_on_behalf u
         JOIN on_behalf_refs r ON r.token = u.on_behalf_of AND r.provider_id = $1
         JOIN accounts a ON a.id = u.account_id AND a.owner_provider_id = $1
         WHERE u.period_start >= $2 AND u.period_start < $3
         GROUP BY u.account_id, u.period_start, u.price_id, r.account_id",
    )
    .bind(provider.as_str())
    .bind(from)
    .bind(to)
    .fetch_all(&mut *conn)
    .await?;
    for (account, start, price, consumer, quantity) in shares {
        if let Some(cost) = costs.get_mut(&(account, start, price)) {
            cost.on_behalf.insert(consumer, quantity);
        }
    }
    Ok((revenue, costs.into_values().collect()))
}

fn currency(code: String) -> Result<Currency, sqlx::Error> {
    Currency::parse(&code).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
