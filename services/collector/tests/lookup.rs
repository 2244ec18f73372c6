//! What the collector checks usage against, remembered at the catalog's
//! generations: read once while nothing changes, read again after any
//! change, against a real database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use std::time::Duration;
use tally_collector::lookup::{Catalog, Lookup};
use tally_domain::{AccountId, Currency, PriceBook, PriceModel, ProviderId, ProviderKind, Sku};
use tally_platform::{catalog, composition};

/// Providers dbco (owns dbco.db.hour, 2 USD a unit) and other, account
/// acme (USD); a lookup that remembers for five minutes.
async fn setup() -> (PgPool, Lookup) {
    let db = tally_platform::db::scratch_database("tally_test");
    tally_platform::db::migrate(&db).await.unwrap();
    let pool = tally_platform::db::connect(&db, 4).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    for p in ["dbco", "other"] {
        let id = ProviderId::parse(p).unwrap();
        catalog::create_provider(&mut conn, &id, p, ProviderKind::Partner)
            .await
            .unwrap();
    }
    let (dbco, sku) = (ProviderId::parse("dbco").unwrap(), db_hour());
    catalog::create_account(&mut conn, &acme(), "Acme", usd())
        .await
        .unwrap();
    catalog::create_sku(&mut conn, &sku, &dbco, "DB hour", "hour")
        .await
        .unwrap();
    catalog::add_price(&mut conn, &sku, usd(), jan(), &per_unit(dec!(2)))
        .await
        .unwrap();
    drop(conn);
    let lookup = Lookup::new(
        pool.clone(),
        Duration::from_secs(5),
        Duration::from_secs(300),
    );
    (pool, lookup)
}

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn acme() -> AccountId {
    AccountId::parse("acme").unwrap()
}

fn db_hour() -> Sku {
    Sku::parse("dbco.db.hour").unwrap()
}

fn per_unit(price: Decimal) -> PriceBook {
    PriceModel::per_unit(price).unwrap().into()
}

fn jan() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

async fn look(lookup: &Lookup) -> Catalog {
    let dbco = ProviderId::parse("dbco").unwrap();
    lookup
        .catalog(&dbco, &["dbco.db.hour"], &["acme"], &[], &[])
        .await
        .unwrap()
}

/// (owner, markup, list price versions, currency of acme, whether a
/// provider owns acme) as the lookup answers.
async fn answer(lookup: &Lookup) -> (String, Decimal, usize, &'static str, bool) {
    let found = look(lookup).await;
    let terms = &found.skus["dbco.db.hour"];
    let account = found.accounts["acme"];
    (
        terms.owner.clone(),
        terms.markup_pct,
        terms.prices.len(),
        account.currency.code(),
        account.provider_owned,
    )
}

async fn sql(pool: &PgPool, statement: &str) {
    sqlx::query(statement).execute(pool).await.unwrap();
}

#[tokio::test]
async fn terms_and_accounts_are_read_once_while_nothing_changes() {
    let (pool, lookup) = setup().await;
    let before = ("dbco".to_owned(), dec!(0), 1, "USD", false);
    assert_eq!(answer(&lookup).await, before);
    // Changed behind the generations' back (their triggers off): a lookup
    // that read the rows again would see them.
    sql(
        &pool,
        "ALTER TABLE skus DISABLE TRIGGER skus_catalog_generation",
    )
    .await;
    sql(
        &pool,
        "ALTER TABLE accounts DISABLE TRIGGER accounts_catalog_generation",
    )
    .await;
    sql(&pool, "UPDATE skus SET markup_pct = 7").await;
    sql(&pool, "UPDATE accounts SET currency = 'EUR'").await;
    assert_eq!(answer(&lookup).await, before);
    assert_eq!(answer(&lookup).await, before);
    sql(
        &pool,
        "ALTER TABLE skus ENABLE TRIGGER skus_catalog_generation",
    )
    .await;
    sql(
        &pool,
        "ALTER TABLE accounts ENABLE TRIGGER accounts_catalog_generation",
    )
    .await;
    // Any change counted reads the rows again, its own and the others'.
    sql(&pool, "UPDATE skus SET markup_pct = 9").await;
    assert_eq!(
        answer(&lookup).await,
        ("dbco".to_owned(), dec!(9), 1, "USD", false)
    );
    sql(&pool, "UPDATE accounts SET name = 'Acme Inc'").await; // not checked: not counted
    sql(&pool, "UPDATE accounts SET currency = 'EUR' WHERE false").await; // counted
    assert_eq!(
        answer(&lookup).await,
        ("dbco".to_owned(), dec!(9), 1, "EUR", false)
    );
}

#[tokio::test]
async fn every_change_ingest_checks_is_seen_by_the_next_lookup() {
    let (pool, lookup) = setup().await;
    assert_eq!(
        answer(&lookup).await,
        ("dbco".to_owned(), dec!(0), 1, "USD", false)
    );
    let mut conn = pool.acquire().await.unwrap();
    catalog::set_markup(&mut conn, &db_hour(), dec!(12.5))
        .await
        .unwrap();
    assert_eq!(answer(&lookup).await.1, dec!(12.5));
    let later = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
    let three = per_unit(dec!(3));
    catalog::add_price(&mut conn, &db_hour(), usd(), later, &three)
        .await
        .unwrap();
    assert_eq!(answer(&lookup).await.2, 2);
    catalog::add_wholesale_price(&mut conn, &db_hour(), usd(), later, &three)
        .await
        .unwrap();
    assert_eq!(look(&lookup).await.skus["dbco.db.hour"].wholesale.len(), 1);
    sql(&pool, "UPDATE skus SET provider_id = 'other'").await;
    assert_eq!(answer(&lookup).await.0, "other");
    composition::set_owner(&mut conn, &acme(), &ProviderId::parse("dbco").unwrap())
        .await
        .unwrap();
    assert!(answer(&lookup).await.4);
    sql(&pool, "UPDATE accounts SET currency = 'EUR'").await;
    assert_eq!(answer(&lookup).await.3, "EUR");
    sql(&pool, "DELETE FROM prices").await;
    assert_eq!(answer(&lookup).await.2, 0);
    sql(&pool, "DELETE FROM skus").await;
    assert!(look(&lookup).await.skus.is_empty());
}

#[tokio::test]
async fn without_the_generations_every_lookup_reads_the_rows() {
    let (pool, lookup) = setup().await;
    sql(&pool, "DELETE FROM catalog_generations").await;
    assert_eq!(answer(&lookup).await.1, dec!(0));
    sql(&pool, "UPDATE skus SET markup_pct = 4").await;
    sql(&pool, "UPDATE accounts SET currency = 'EUR'").await;
    assert_eq!(
        answer(&lookup).await,
        ("dbco".to_owned(), dec!(4), 1, "EUR", false)
    );
}
