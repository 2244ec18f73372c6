//! Provider to provider (issue 17): a provider's own billing account, as a
//! customer of other providers, read with its provider key.

pub mod account;
pub mod margin;
pub mod references;
pub mod statement;

use serde::Deserialize;
use sqlx::PgConnection;
use tally_domain::{Currency, PriceBook, Sku};
use tally_platform::catalog::{self, CatalogError};

/// Whom a price version is for: every account (`list`, the default) or
/// the accounts that providers own (`provider`: a wholesale price book).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    #[default]
    List,
    Provider,
}

impl Audience {
    pub fn as_str(self) -> &'static str {
        match self {
            Audience::List => "list",
            Audience::Provider => "provider",
        }
    }

    /// Adds a price version for this audience.
    pub async fn add_price(
        self,
        conn: &mut PgConnection,
        sku: &Sku,
        currency: Currency,
        from: chrono::DateTime<chrono::Utc>,
        model: &PriceBook,
    ) -> Result<i64, CatalogError> {
        match self {
            Audience::List => catalog::add_price(conn, sku, currency, from, model).await,
            Audience::Provider => {
                catalog::add_wholesale_price(conn, sku, currency, from, model).await
            }
        }
    }
}
