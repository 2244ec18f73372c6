//! Composition repository (issue 17): accounts owned by providers (a
//! provider as a customer of other providers). Functions take a connection
//! so the caller owns the transaction.

use sqlx::PgConnection;
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
