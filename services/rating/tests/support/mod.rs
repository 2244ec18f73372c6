//! Shared by rating's tests: a database of its own per test, migrated.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_domain::{AccountId, EventId, ProviderId, Quantity, Sku, UsageEvent};

/// A usage event of `acme` (no dimensions), received when it happened.
pub fn acme_event(
    provider: &str,
    id: &str,
    sku: &str,
    quantity: Decimal,
    time: DateTime<Utc>,
) -> UsageEvent {
    UsageEvent {
        provider_id: ProviderId::parse(provider).unwrap(),
        event_id: EventId::parse(id).unwrap(),
        account_id: AccountId::parse("acme").unwrap(),
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::new(quantity).unwrap(),
        time,
        received_at: time,
        dimensions: BTreeMap::new(),
        resource: None,
        on_behalf_of: None,
    }
}

/// Migrates a new database on the server of `DATABASE_URL` (default: the
/// local PostgreSQL) and connects to it.
pub async fn database() -> PgPool {
    let url = tally_platform::db::scratch_database("tally_rating");
    tally_platform::db::migrate(&url).await.unwrap();
    tally_platform::db::connect(&url, 4).await.unwrap()
}

/// Waits until one session of the test's database waits for a lock.
#[allow(dead_code)] // used by some of the test crates that include this module
pub async fn until_one_waits_for_a_lock(pool: &PgPool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting == 1 {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "no session waited for a lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
