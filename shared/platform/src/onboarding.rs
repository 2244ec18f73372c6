//! Onboarding: a provider or an account is created together with its first
//! API key, in the caller's transaction. The key's secret is returned once.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use tally_domain::{AccountId, Currency, ProviderId, ProviderKind};

use crate::auth::{create_key, NewKey, Principal};
use crate::catalog::{self, CatalogError};

/// A provider (with a partner's revenue share, if given) and its API key.
pub async fn provider(
    conn: &mut PgConnection,
    id: &ProviderId,
    name: &str,
    kind: ProviderKind,
    platform_fee_pct: Option<Decimal>,
) -> Result<NewKey, CatalogError> {
    catalog::create_provider(conn, id, name, kind).await?;
    if let Some(pct) = platform_fee_pct {
        catalog::set_platform_fee(conn, id, pct).await?;
    }
    Ok(create_key(conn, &Principal::Provider(id.clone())).await?)
}

/// A customer account and its customer token.
pub async fn account(
    conn: &mut PgConnection,
    id: &AccountId,
    name: &str,
    currency: Currency,
) -> Result<NewKey, CatalogError> {
    catalog::create_account(conn, id, name, currency).await?;
    Ok(create_key(conn, &Principal::Customer(id.clone())).await?)
}
