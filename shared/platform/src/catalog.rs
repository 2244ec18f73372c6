//! Catalog repository: providers, accounts, SKUs and price versions.
//! Functions take a connection so the caller owns the transaction.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, Row};
use std::collections::HashMap;
use tally_domain::pricing::resolve::Effective;
use tally_domain::{
    AccountId, Aggregation, AnchorDay, Currency, PriceBook, ProviderId, ProviderKind, ProviderRef,
    Sku,
};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("unknown provider {0}")]
    UnknownProvider(String),
    #[error("unknown sku {0}")]
    UnknownSku(String),
    #[error(transparent)]
    InvalidAggregation(#[from] tally_domain::AggregationError),
    #[error("a price for this sku and currency already takes effect at that time")]
    PriceVersionExists,
    #[error("invalid price: {0}")]
    InvalidPrice(String),
    #[error("{0}")]
    InvalidProviderId(tally_domain::IdError),
    /// A SKU id outside its provider's namespace (`<provider>.<name>`).
    #[error("sku {sku} is not in provider {provider}'s namespace: its SKU ids are `{provider}.<name>`{}", .owner.as_ref().map(|o| format!(" (this one is in provider {o}'s)")).unwrap_or_default())]
    SkuNotInNamespace {
        sku: String,
        provider: String,
        owner: Option<String>,
    },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Maps named constraints to domain errors, in one place.
fn on_constraint(err: sqlx::Error, what: &str) -> CatalogError {
    match crate::db::violated_constraint(&err) {
        Some("providers_pkey" | "accounts_pkey" | "skus_pkey") => {
            CatalogError::AlreadyExists(what.to_owned())
        }
        Some("skus_provider_id_fkey") => CatalogError::UnknownProvider(what.to_owned()),
        Some("prices_sku_id_fkey") => CatalogError::UnknownSku(what.to_owned()),
        Some("prices_version_unique") => CatalogError::PriceVersionExists,
        Some("providers_id_has_no_dot") => {
            CatalogError::InvalidProviderId(tally_domain::IdError::Dotted {
                kind: "provider id",
            })
        }
        _ => CatalogError::Database(err),
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Provider {
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub id: ProviderId,
    pub name: String,
    #[schema(schema_with = crate::openapi::provider_kind)]
    pub kind: ProviderKind,
}

/// Sets a partner's revenue share: the platform's fee in percent of list.
pub async fn set_platform_fee(
    conn: &mut PgConnection,
    provider: &ProviderId,
    pct: Decimal,
) -> Result<(), CatalogError> {
    check_fee("platform fee", pct)?;
    let update = sqlx::query("UPDATE providers SET platform_fee_pct = $2 WHERE id = $1")
        .bind(provider.as_str())
        .bind(pct);
    update_provider(conn, provider, update).await
}

/// Sets a partner's platform fee on provider-to-provider usage (issue 17:
/// what it bills accounts other providers own), in percent.
pub async fn set_p2p_fee(
    conn: &mut PgConnection,
    provider: &ProviderId,
    pct: Decimal,
) -> Result<(), CatalogError> {
    check_fee("provider-to-provider fee", pct)?;
    let update = sqlx::query("UPDATE providers SET p2p_fee_pct = $2 WHERE id = $1")
        .bind(provider.as_str())
        .bind(pct);
    update_provider(conn, provider, update).await
}

/// Sets how the platform settles with a provider (issue 17): gross, or
/// net of its own invoices.
pub async fn set_settlement_mode(
    conn: &mut PgConnection,
    provider: &ProviderId,
    mode: tally_domain::composition::statement::SettlementMode,
) -> Result<(), CatalogError> {
    let update = sqlx::query("UPDATE providers SET settlement_mode = $2 WHERE id = $1")
        .bind(provider.as_str())
        .bind(mode.as_str());
    update_provider(conn, provider, update).await
}

fn check_fee(what: &str, pct: Decimal) -> Result<(), CatalogError> {
    if pct < Decimal::ZERO || pct > Decimal::ONE_HUNDRED {
        return Err(CatalogError::InvalidPrice(format!(
            "{what} must be between 0 and 100 %"
        )));
    }
    Ok(())
}

/// Runs `update` (of one provider's row); `UnknownProvider` when it
/// changed none.
async fn update_provider(
    conn: &mut PgConnection,
    provider: &ProviderId,
    update: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
) -> Result<(), CatalogError> {
    if update.execute(conn).await?.rows_affected() == 0 {
        return Err(CatalogError::UnknownProvider(provider.to_string()));
    }
    Ok(())
}

/// Allows (or stops) a provider's usage records on the `usage.ingest` topic.
pub async fn set_kafka_ingest(
    conn: &mut PgConnection,
    provider: &ProviderId,
    allowed: bool,
) -> Result<(), CatalogError> {
    let update = sqlx::query("UPDATE providers SET kafka_ingest = $2 WHERE id = $1")
        .bind(provider.as_str())
        .bind(allowed);
    update_provider(conn, provider, update).await
}

/// For each existing provider among `providers`, whether it may produce
/// usage to the `usage.ingest` topic.
pub async fn kafka_ingest_of(
    conn: &mut PgConnection,
    providers: &[&str],
) -> Result<HashMap<String, bool>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, kafka_ingest FROM providers WHERE id = ANY($1)")
        .bind(providers)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("kafka_ingest")?)))
        .collect()
}

/// Sets the platform's markup on a SKU, in percent of its list price.
pub async fn set_markup(
    conn: &mut PgConnection,
    sku: &Sku,
    pct: Decimal,
) -> Result<(), CatalogError> {
    if pct < Decimal::ZERO {
        return Err(CatalogError::InvalidPrice(
            "markup must not be negative".into(),
        ));
    }
    let updated = sqlx::query("UPDATE skus SET markup_pct = $2 WHERE id = $1")
        .bind(sku.as_str())
        .bind(pct)
        .execute(conn)
        .await?
        .rows_affected();
    if updated == 0 {
        return Err(CatalogError::UnknownSku(sku.to_string()));
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$")]
    pub id: AccountId,
    pub name: String,
    /// ISO 4217
    #[schema(value_type = String)]
    pub currency: Currency,
    /// The day of the month the account's billing periods start on.
    #[schema(value_type = u32, minimum = 1, maximum = 28)]
    pub billing_anchor_day: AnchorDay,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = Sku)]
pub struct SkuRecord {
    #[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,127}$")]
    pub id: Sku,
    #[schema(value_type = String)]
    pub provider_id: ProviderId,
    pub name: String,
    pub unit: String,
    #[schema(schema_with = crate::openapi::aggregation)]
    pub aggregation: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aggregation_dimension: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PriceVersion {
    pub id: i64,
    #[schema(value_type = String)]
    pub sku: Sku,
    /// ISO 4217
    #[schema(value_type = String)]
    pub currency: Currency,
    pub effective_from: DateTime<Utc>,
    #[schema(schema_with = crate::openapi::price_book)]
    pub model: PriceBook,
    /// Whom it prices: `list` (every account) or `provider` (a wholesale
    /// version: the accounts that providers own, issue 17)
    #[schema(pattern = "^(list|provider)$")]
    pub audience: String,
}

impl Effective for PriceVersion {
    fn effective_from(&self) -> DateTime<Utc> {
        self.effective_from
    }
}

/// A new provider; its id may not contain a dot ([`ProviderId::parse_new`]).
pub async fn create_provider(
    conn: &mut PgConnection,
    id: &ProviderId,
    name: &str,
    kind: ProviderKind,
) -> Result<(), CatalogError> {
    ProviderId::parse_new(id.as_str()).map_err(CatalogError::InvalidProviderId)?;
    sqlx::query("INSERT INTO providers (id, name, kind) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(name)
        .bind(kind.as_str())
        .execute(conn)
        .await
        .map_err(|e| on_constraint(e, &format!("provider {id}")))?;
    Ok(())
}

pub async fn create_account(
    conn: &mut PgConnection,
    id: &AccountId,
    name: &str,
    currency: Currency,
) -> Result<(), CatalogError> {
    sqlx::query("INSERT INTO accounts (id, name, currency) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(name)
        .bind(currency.code())
        .execute(conn)
        .await
        .map_err(|e| on_constraint(e, &format!("account {id}")))?;
    Ok(())
}

/// A new SKU of `provider`, whose id must be in that provider's namespace
/// (`<provider>.<name>`, [`Sku::namespace_owner`]).
pub async fn create_sku(
    conn: &mut PgConnection,
    sku: &Sku,
    provider: &ProviderId,
    name: &str,
    unit: &str,
) -> Result<(), CatalogError> {
    // Every provider whose id and a dot start the SKU id (more than one
    // only with ids from before provider ids lost their dots).
    let prefixes: Vec<String> =
        sqlx::query_scalar("SELECT id FROM providers WHERE left($1, length(id) + 1) = id || '.'")
            .bind(sku.as_str())
            .fetch_all(&mut *conn)
            .await?;
    let owner = sku.namespace_owner(
        prefixes
            .iter()
            .map(String::as_str)
            .chain([provider.as_str()]),
    );
    if owner != Some(provider.as_str()) {
        return Err(CatalogError::SkuNotInNamespace {
            sku: sku.to_string(),
            provider: provider.to_string(),
            owner: owner.map(str::to_owned),
        });
    }
    sqlx::query("INSERT INTO skus (id, provider_id, name, unit) VALUES ($1, $2, $3, $4)")
        .bind(sku.as_str())
        .bind(provider.as_str())
        .bind(name)
        .bind(unit)
        .execute(conn)
        .await
        .map_err(|e| match on_constraint(e, &format!("sku {sku}")) {
            CatalogError::UnknownProvider(_) => CatalogError::UnknownProvider(provider.to_string()),
            other => other,
        })?;
    Ok(())
}

/// Adds a price version; returns its id.
pub async fn add_price(
    conn: &mut PgConnection,
    sku: &Sku,
    currency: Currency,
    effective_from: DateTime<Utc>,
    model: &PriceBook,
) -> Result<i64, CatalogError> {
    insert_price(conn, sku, currency, effective_from, model, "list").await
}

/// Adds a wholesale price version (issue 17): what accounts that providers
/// own pay, versioned like the list price.
pub async fn add_wholesale_price(
    conn: &mut PgConnection,
    sku: &Sku,
    currency: Currency,
    effective_from: DateTime<Utc>,
    model: &PriceBook,
) -> Result<i64, CatalogError> {
    insert_price(conn, sku, currency, effective_from, model, "provider").await
}

async fn insert_price(
    conn: &mut PgConnection,
    sku: &Sku,
    currency: Currency,
    effective_from: DateTime<Utc>,
    model: &PriceBook,
    audience: &str,
) -> Result<i64, CatalogError> {
    model
        .validate()
        .map_err(|e| CatalogError::InvalidPrice(e.to_string()))?;
    let model_json =
        serde_json::to_value(model).map_err(|e| CatalogError::InvalidPrice(e.to_string()))?;
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO prices (sku_id, currency, effective_from, model, audience)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(sku.as_str())
    .bind(currency.code())
    .bind(effective_from)
    .bind(model_json)
    .bind(audience)
    .fetch_one(conn)
    .await
    .map_err(|e| on_constraint(e, sku.as_str()))?;
    Ok(id)
}

/// Owner of each known SKU among `skus`.
pub async fn sku_owners(
    conn: &mut PgConnection,
    skus: &[&str],
) -> Result<HashMap<String, String>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, provider_id FROM skus WHERE id = ANY($1)")
        .bind(skus)
        .fetch_all(conn)
        .await?;
    rows.into_iter()
        .map(|r| Ok((r.try_get("id")?, r.try_get("provider_id")?)))
        .collect()
}

/// What ingest checks an event against, per SKU: its owner, the
/// platform's markup on it, and its price versions (every currency, oldest
/// first).
#[derive(Debug, Clone)]
pub struct SkuTerms {
    pub owner: String,
    pub markup_pct: Decimal,
    /// List versions, oldest first.
    pub prices: Vec<PriceVersion>,
    /// Wholesale versions (for accounts that providers own), oldest first.
    pub wholesale: Vec<PriceVersion>,
}

impl SkuTerms {
    /// The price version in `currency` that prices usage at `at` of an
    /// account (a provider's own when `provider_owned`), as rating resolves
    /// it ([`tally_domain::composition::price_version`]): wholesale for a
    /// provider's account where a wholesale version is in effect, else list.
    pub fn price_at<'a>(
        &'a self,
        currency: Currency,
        at: DateTime<Utc>,
        provider_owned: bool,
    ) -> Option<&'a PriceVersion> {
        let of = |versions: &'a [PriceVersion]| -> Vec<Dated<'a>> {
            versions
                .iter()
                .filter(|v| v.currency.code() == currency.code())
                .map(Dated)
                .collect()
        };
        let (list, wholesale) = (of(&self.prices), of(&self.wholesale));
        tally_domain::composition::price_version(&list, &wholesale, provider_owned, at).map(|d| d.0)
    }
}

/// A price version by reference, for the domain's resolution.
struct Dated<'v>(&'v PriceVersion);

impl Effective for Dated<'_> {
    fn effective_from(&self) -> DateTime<Utc> {
        self.0.effective_from
    }
}

/// The terms of each known SKU among `skus`.
pub async fn sku_terms(
    conn: &mut PgConnection,
    skus: &[&str],
) -> Result<HashMap<String, SkuTerms>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, provider_id, markup_pct FROM skus WHERE id = ANY($1)")
        .bind(skus)
        .fetch_all(&mut *conn)
        .await?;
    let mut terms = rows
        .into_iter()
        .map(|r| {
            Ok((
                r.try_get("id")?,
                SkuTerms {
                    owner: r.try_get("provider_id")?,
                    markup_pct: r.try_get("markup_pct")?,
                    prices: Vec::new(),
                    wholesale: Vec::new(),
                },
            ))
        })
        .collect::<Result<HashMap<String, SkuTerms>, sqlx::Error>>()?;
    let prices = sqlx::query(
        "SELECT id, sku_id, currency, effective_from, model, audience FROM prices
         WHERE sku_id = ANY($1) ORDER BY sku_id, effective_from, id",
    )
    .bind(skus)
    .fetch_all(conn)
    .await?;
    for r in &prices {
        let version = price_from_row(r)?;
        if let Some(t) = terms.get_mut(version.sku.as_str()) {
            if version.audience == "provider" {
                t.wholesale.push(version);
            } else {
                t.prices.push(version);
            }
        }
    }
    Ok(terms)
}

/// How many times what ingest checks usage against has changed: the terms
/// of SKUs (owners, markups, price versions) and the accounts (currencies,
/// owners). A change commits with its new number (the triggers of migration
/// `20261203220001_catalog_generations`), so what is read after a number is
/// seen holds every change up to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogGenerations {
    pub skus: i64,
    pub accounts: i64,
}

/// The catalog's generations; `None` when their rows are missing.
pub async fn catalog_generations(
    conn: &mut PgConnection,
) -> Result<Option<CatalogGenerations>, sqlx::Error> {
    let row: Option<(Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT max(generation) FILTER (WHERE subject = 'skus'),
                max(generation) FILTER (WHERE subject = 'accounts')
         FROM catalog_generations",
    )
    .fetch_optional(conn)
    .await?;
    Ok(match row {
        Some((Some(skus), Some(accounts))) => Some(CatalogGenerations { skus, accounts }),
        _ => None,
    })
}

/// An account that exists, as ingest checks usage against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownAccount {
    /// Its billing currency.
    pub currency: Currency,
    /// A provider owns it (it is priced at wholesale versions, issue 17).
    pub provider_owned: bool,
}

/// Each of `accounts` that exists: its billing currency, and whether a
/// provider owns it.
pub async fn existing_accounts(
    conn: &mut PgConnection,
    accounts: &[&str],
) -> Result<HashMap<String, KnownAccount>, sqlx::Error> {
    // A join, not `id = ANY($1)`: `tally bench` found the `= ANY` form the
    // busiest query in PostgreSQL right after it added 3,000 accounts, with
    // PostgreSQL's CPU mostly in `texteq` under `ExecEvalScalarArrayOp` (a
    // plan comparing rows with every element of the array; the plan chosen
    // later, with fresh statistics, used the index). The join is a hash join
    // or an index lookup per id, either way linear.
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT a.id, a.currency, a.owner_provider_id IS NOT NULL
         FROM accounts a JOIN UNNEST($1::text[]) AS t(id) ON a.id = t.id",
    )
    .bind(accounts)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, code, provider_owned)| {
            let currency = Currency::parse(&code).map_err(decode_err)?;
            Ok((
                id,
                KnownAccount {
                    currency,
                    provider_owned,
                },
            ))
        })
        .collect()
}

pub async fn get_account(
    conn: &mut PgConnection,
    id: &AccountId,
) -> Result<Option<Account>, sqlx::Error> {
    let row =
        sqlx::query("SELECT id, name, currency, billing_anchor_day FROM accounts WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(conn)
            .await?;
    row.map(|r| account_from_row(&r)).transpose()
}

pub(crate) fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

fn account_from_row(r: &sqlx::postgres::PgRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: AccountId::parse(r.try_get("id")?).map_err(decode_err)?,
        name: r.try_get("name")?,
        currency: Currency::parse(r.try_get("currency")?).map_err(decode_err)?,
        billing_anchor_day: AnchorDay::new(
            u32::try_from(r.try_get::<i16, _>("billing_anchor_day")?).unwrap_or(0),
        )
        .map_err(decode_err)?,
    })
}

/// Sets the day of the month the account's periods start on. Periods
/// already billed keep their bounds; change it only before usage arrives.
pub async fn set_billing_anchor(
    conn: &mut PgConnection,
    id: &AccountId,
    anchor: AnchorDay,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE accounts SET billing_anchor_day = $2 WHERE id = $1")
        .bind(id.as_str())
        .bind(i16::try_from(anchor.day()).unwrap_or(1))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn list_accounts(conn: &mut PgConnection) -> Result<Vec<Account>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, name, currency, billing_anchor_day FROM accounts ORDER BY id")
            .fetch_all(conn)
            .await?;
    rows.iter().map(account_from_row).collect()
}

pub async fn list_providers(conn: &mut PgConnection) -> Result<Vec<Provider>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, name, kind FROM providers ORDER BY kind, name, id")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            Ok(Provider {
                id: ProviderId::parse(r.try_get("id")?).map_err(decode_err)?,
                name: r.try_get("name")?,
                kind: ProviderKind::parse(&kind).ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown provider kind {kind}").into())
                })?,
            })
        })
        .collect()
}

/// SKUs, all or one provider's.
pub async fn list_skus(
    conn: &mut PgConnection,
    provider: Option<&ProviderId>,
) -> Result<Vec<SkuRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, provider_id, name, unit, aggregation, aggregation_dimension FROM skus
         WHERE $1::text IS NULL OR provider_id = $1 ORDER BY id",
    )
    .bind(provider.map(ProviderId::as_str))
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SkuRecord {
                id: Sku::parse(r.try_get("id")?).map_err(decode_err)?,
                provider_id: ProviderId::parse(r.try_get("provider_id")?).map_err(decode_err)?,
                name: r.try_get("name")?,
                unit: r.try_get("unit")?,
                aggregation: r.try_get("aggregation")?,
                aggregation_dimension: r.try_get("aggregation_dimension")?,
            })
        })
        .collect()
}

/// Every price version of the given SKUs in the given currencies, oldest first.
pub async fn price_versions(
    conn: &mut PgConnection,
    skus: &[&str],
    currencies: &[&str],
) -> Result<Vec<PriceVersion>, sqlx::Error> {
    versions_for(conn, skus, currencies, "list").await
}

/// The wholesale price versions (issue 17: for accounts that providers own)
/// of `skus` in `currencies`, like [`price_versions`].
pub async fn wholesale_versions(
    conn: &mut PgConnection,
    skus: &[&str],
    currencies: &[&str],
) -> Result<Vec<PriceVersion>, sqlx::Error> {
    versions_for(conn, skus, currencies, "provider").await
}

async fn versions_for(
    conn: &mut PgConnection,
    skus: &[&str],
    currencies: &[&str],
    audience: &str,
) -> Result<Vec<PriceVersion>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, sku_id, currency, effective_from, model, audience FROM prices
         WHERE sku_id = ANY($1) AND currency = ANY($2) AND audience = $3
         ORDER BY sku_id, currency, effective_from",
    )
    .bind(skus)
    .bind(currencies)
    .bind(audience)
    .fetch_all(conn)
    .await?;
    rows.iter().map(price_from_row).collect()
}

fn price_from_row(r: &sqlx::postgres::PgRow) -> Result<PriceVersion, sqlx::Error> {
    let model: serde_json::Value = r.try_get("model")?;
    Ok(PriceVersion {
        id: r.try_get("id")?,
        sku: Sku::parse(r.try_get("sku_id")?).map_err(decode_err)?,
        currency: Currency::parse(r.try_get("currency")?).map_err(decode_err)?,
        effective_from: r.try_get("effective_from")?,
        model: serde_json::from_value(model).map_err(decode_err)?,
        audience: r.try_get("audience")?,
    })
}

/// Resolves the provider behind each SKU, with its display name and kind.
pub async fn providers_of_skus(
    conn: &mut PgConnection,
    skus: &[&str],
) -> Result<HashMap<String, (ProviderRef, String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT s.id AS sku, s.name AS sku_name, s.unit, p.id, p.name, p.kind
         FROM skus s JOIN providers p ON p.id = s.provider_id WHERE s.id = ANY($1)",
    )
    .bind(skus)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("kind")?;
            let provider = ProviderRef {
                id: ProviderId::parse(r.try_get("id")?).map_err(decode_err)?,
                name: r.try_get("name")?,
                kind: ProviderKind::parse(&kind)
                    .ok_or_else(|| sqlx::Error::Decode(format!("unknown kind {kind}").into()))?,
            };
            Ok((
                r.try_get::<String, _>("sku")?,
                (provider, r.try_get("sku_name")?, r.try_get("unit")?),
            ))
        })
        .collect()
}

/// Billing currency of each existing account among `accounts`.
pub async fn account_currencies(
    conn: &mut PgConnection,
    accounts: &[&str],
) -> Result<HashMap<String, Currency>, sqlx::Error> {
    let rows = sqlx::query("SELECT id, currency FROM accounts WHERE id = ANY($1)")
        .bind(accounts)
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("id")?,
                Currency::parse(r.try_get("currency")?).map_err(decode_err)?,
            ))
        })
        .collect()
}

/// The price versions of one SKU by currency, oldest first: its list and
/// wholesale versions, or those of one audience (`list`, `provider`).
pub async fn list_prices(
    conn: &mut PgConnection,
    sku: &Sku,
    audience: Option<&str>,
) -> Result<Vec<PriceVersion>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, sku_id, currency, effective_from, model, audience FROM prices
         WHERE sku_id = $1 AND ($2::text IS NULL OR audience = $2)
         ORDER BY currency, audience, effective_from",
    )
    .bind(sku.as_str())
    .bind(audience)
    .fetch_all(conn)
    .await?;
    rows.iter().map(price_from_row).collect()
}

/// Sets how a SKU's usage aggregates over a period.
pub async fn set_aggregation(
    conn: &mut PgConnection,
    sku: &Sku,
    aggregation: &Aggregation,
) -> Result<(), CatalogError> {
    let updated =
        sqlx::query("UPDATE skus SET aggregation = $2, aggregation_dimension = $3 WHERE id = $1")
            .bind(sku.as_str())
            .bind(aggregation.as_str())
            .bind(aggregation.dimension())
            .execute(conn)
            .await?
            .rows_affected();
    if updated == 0 {
        return Err(CatalogError::UnknownSku(sku.to_string()));
    }
    Ok(())
}

/// The aggregation of each known SKU among `skus`.
pub async fn sku_aggregations(
    conn: &mut PgConnection,
    skus: &[&str],
) -> Result<HashMap<String, Aggregation>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT id, aggregation, aggregation_dimension FROM skus WHERE id = ANY($1)")
            .bind(skus)
            .fetch_all(conn)
            .await?;
    rows.iter()
        .map(|r| {
            let kind: String = r.try_get("aggregation")?;
            let dimension: Option<String> = r.try_get("aggregation_dimension")?;
            Ok((
                r.try_get::<String, _>("id")?,
                Aggregation::parse(&kind, dimension.as_deref()).map_err(decode_err)?,
            ))
        })
        .collect()
}
