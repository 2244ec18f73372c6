//! Composition repository (issue 17): accounts owned by providers (a
//! provider as a customer of other providers) and the on-behalf-of
//! references a composing provider's upstream usage names its consumers by. Functions take a connection
//! so the caller owns the transaction.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};
use tally_domain::composition::OnBehalfOf;
use tally_domain::{AccountId, ProviderId};

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

/// Sets a partner's platform fee on provider-to-provider usage (what it
/// bills accounts other providers own), in percent.
pub async fn set_p2p_fee(
    conn: &mut PgConnection,
    provider: &ProviderId,
    pct: Decimal,
) -> Result<(), CatalogError> {
    if pct < Decimal::ZERO || pct > Decimal::ONE_HUNDRED {
        return Err(CatalogError::InvalidPrice(
            "the provider-to-provider fee must be between 0 and 100 %".into(),
        ));
    }
    let updated = sqlx::query("UPDATE providers SET p2p_fee_pct = $2 WHERE id = $1")
        .bind(provider.as_str())
        .bind(pct)
        .execute(conn)
        .await?;
    if updated.rows_affected() == 0 {
        return Err(CatalogError::UnknownProvider(provider.to_string()));
    }
    Ok(())
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

/// The consumer account each of `references` minted by `provider` names
/// (the others are left out: they are not the provider's to resolve).
pub async fn resolve_references(
    conn: &mut PgConnection,
    provider: &ProviderId,
    references: &[&str],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT token, account_id FROM on_behalf_refs WHERE provider_id = $1 AND token = ANY($2)",
    )
    .bind(provider.as_str())
    .bind(references)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}
