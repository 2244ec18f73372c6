//! Credits in rating against a real PostgreSQL: whatever the batches and the
//! order of events, each grant pays the same per period, no grant draws more
//! than its amount, and no invoice goes below zero; a grant given after the
//! usage was rated is applied when rating restates the account.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{acme_event, database};

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_domain::{
    AccountId, Currency, PriceModel, ProviderId, ProviderKind, Sku, Statement, UsageEvent,
};
use tally_platform::catalog;
use tally_rating::{process_batch, restate_requested};

fn t(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
}

/// A first-party provider with `cloud.vm.hour` (0.0416) and a partner with `dbco.db.hour`
/// (0.2475); account `acme` in USD.
async fn seed(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    for (id, kind) in [
        ("cloud", ProviderKind::FirstParty),
        ("dbco", ProviderKind::Partner),
    ] {
        catalog::create_provider(&mut conn, &ProviderId::parse(id).unwrap(), id, kind)
            .await
            .unwrap();
    }
    catalog::create_account(
        &mut conn,
        &AccountId::parse("acme").unwrap(),
        "Acme",
        Currency::parse("USD").unwrap(),
    )
    .await
    .unwrap();
    for (sku, provider, price) in [
        ("cloud.vm.hour", "cloud", dec!(0.0416)),
        ("dbco.db.hour", "dbco", dec!(0.2475)),
    ] {
        let sku = Sku::parse(sku).unwrap();
        catalog::create_sku(
            &mut conn,
            &sku,
            &ProviderId::parse(provider).unwrap(),
            sku.as_str(),
            "hour",
        )
        .await
        .unwrap();
        catalog::add_price(
            &mut conn,
            &sku,
            Currency::parse("USD").unwrap(),
            t(9, 1, 0),
            &PriceModel::per_unit(price).unwrap().into(),
        )
        .await
        .unwrap();
    }
}

struct NewGrant<'a> {
    name: &'a str,
    amount: Decimal,
    priority: i32,
    effective: DateTime<Utc>,
    expires: Option<DateTime<Utc>>,
    scope: &'a str,
    ids: &'a [&'a str],
}

async fn grant(pool: &PgPool, g: NewGrant<'_>) -> i64 {
    let ids: Vec<String> = g.ids.iter().map(|s| (*s).to_owned()).collect();
    sqlx::query_scalar(
        "INSERT INTO credit_grants (account_id, name, kind, currency, amount, priority, effective_at,
             expires_at, eligibility, eligible_ids)
         VALUES ('acme', $1, 'promotional', 'USD', $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(g.name)
    .bind(g.amount)
    .bind(g.priority)
    .bind(g.effective)
    .bind(g.expires)
    .bind(g.scope)
    .bind(&ids)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Three grants that compete: a first-party promotion expiring mid-October,
/// a partner-only programme credit, and a catch-all that carries into November.
async fn seed_grants(pool: &PgPool) {
    grant(
        pool,
        NewGrant {
            name: "promo",
            amount: dec!(3.00),
            priority: 1,
            effective: t(10, 1, 0),
            expires: Some(t(10, 15, 12)),
            scope: "first_party_only",
            ids: &[],
        },
    )
    .await;
    grant(
        pool,
        NewGrant {
            name: "programme",
            amount: dec!(20.00),
            priority: 2,
            effective: t(10, 1, 0),
            expires: None,
            scope: "providers",
            ids: &["dbco"],
        },
    )
    .await;
    grant(
        pool,
        NewGrant {
            name: "catch-all",
            amount: dec!(25.00),
            priority: 3,
            effective: t(10, 1, 0),
            expires: None,
            scope: "all_usage",
            ids: &[],
        },
    )
    .await;
}

/// What the finance API does after a grant changes: ask rating to restate acme.
async fn request_restatement(pool: &PgPool) {
    sqlx::query("INSERT INTO credit_recompute (account_id) VALUES ('acme')")
        .execute(pool)
        .await
        .unwrap();
}

fn usage(id: usize, sku: &str, quantity: Decimal, time: DateTime<Utc>) -> UsageEvent {
    let provider = if sku == "cloud.vm.hour" {
        "cloud"
    } else {
        "dbco"
    };
    acme_event(provider, &format!("e{id}"), sku, quantity, time)
}

/// October and November usage of both SKUs, spread over days and hours.
fn events() -> Vec<UsageEvent> {
    (0..120)
        .map(|i| {
            let sku = if i % 3 == 0 {
                "dbco.db.hour"
            } else {
                "cloud.vm.hour"
            };
            let month = if i % 4 == 0 { 11 } else { 10 };
            usage(
                i,
                sku,
                Decimal::new(i as i64 % 37 * 25 + 100, 1),
                t(month, 1 + (i as u32 % 28), (i % 24) as u32),
            )
        })
        .collect()
}

/// Voids `grant` at `at` as the finance API does: `unused` taken back.
async fn void(pool: &PgPool, grant: i64, at: DateTime<Utc>, unused: Decimal) {
    sqlx::query(
        "UPDATE credit_grants SET voided_at = $2, voided_amount = $3, void_reason = 'test' WHERE id = $1",
    )
    .bind(grant)
    .bind(at)
    .bind(unused)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO credit_ledger (grant_id, account_id, kind, amount) VALUES ($1, 'acme', 'void', $2)",
    )
    .bind(grant)
    .bind(unused)
    .execute(pool)
    .await
    .unwrap();
}

async fn statements(pool: &PgPool) -> Vec<Statement> {
    let bodies: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT body::jsonb FROM statements WHERE account_id = 'acme' ORDER BY period_start",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    bodies
        .into_iter()
        .map(|b| serde_json::from_value(b).unwrap())
        .collect()
}

/// (grant name, period) → drawn, from the ledger.
async fn draws(pool: &PgPool) -> BTreeMap<(String, DateTime<Utc>), Decimal> {
    let rows: Vec<(String, DateTime<Utc>, Decimal)> = sqlx::query_as(
        "SELECT g.name, l.period_start, l.amount FROM credit_ledger l
         JOIN credit_grants g ON g.id = l.grant_id WHERE l.kind = 'draw'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    rows.into_iter().map(|(g, p, a)| ((g, p), a)).collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 6, ..Default::default() })]

    #[test]
    fn batches_and_order_never_change_what_each_grant_pays(
        cuts in proptest::collection::btree_set(1usize..120, 0..8),
        shuffle in 0u64..1000,
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let reference = database().await;
            seed(&reference).await;
            seed_grants(&reference).await;
            process_batch(&reference, &events()).await.unwrap();

            let split = database().await;
            seed(&split).await;
            seed_grants(&split).await;
            let mut events = events();
            let n = events.len();
            events.rotate_left(shuffle as usize % n);
            if shuffle % 2 == 0 {
                events.reverse();
            }
            let mut start = 0;
            for cut in cuts.iter().copied().chain([n]) {
                process_batch(&split, &events[start..cut]).await.unwrap();
                start = cut;
            }

            let (a, b) = (draws(&reference).await, draws(&split).await);
            assert_eq!(a, b, "each grant pays the same per period");
            let (sa, sb) = (statements(&reference).await, statements(&split).await);
            assert_eq!(sa.len(), 2);
            for (x, y) in sa.iter().zip(&sb) {
                assert_eq!((&x.credits, x.total), (&y.credits, y.total));
                assert!(x.total >= Decimal::ZERO, "an invoice never goes below zero");
                assert_eq!(x.total, x.subtotal - x.credits_total);
            }
            let mut per_grant: BTreeMap<String, Decimal> = BTreeMap::new();
            for ((g, _), amount) in &a {
                *per_grant.entry(g.clone()).or_default() += *amount;
            }
            assert!(per_grant["promo"] <= dec!(3.00));
            assert!(per_grant["programme"] <= dec!(20.00));
            assert_eq!(per_grant["catch-all"], dec!(25.00), "the usage exceeds every grant");
        });
    }
}

#[tokio::test]
async fn a_grant_given_after_rating_is_applied_when_the_account_is_restated() {
    let pool = database().await;
    seed(&pool).await;
    // 100 h of VM on Oct 2 (4.16) and 100 h of DB on Nov 3 (24.75).
    process_batch(
        &pool,
        &[
            usage(1, "cloud.vm.hour", dec!(100), t(10, 2, 5)),
            usage(2, "dbco.db.hour", dec!(100), t(11, 3, 5)),
        ],
    )
    .await
    .unwrap();
    assert!(restate_requested(&pool, 10)
        .await
        .unwrap()
        .statements()
        .unwrap()
        .is_empty());
    grant(
        &pool,
        NewGrant {
            name: "late",
            amount: dec!(10.00),
            priority: 1,
            effective: t(10, 1, 0),
            expires: None,
            scope: "all_usage",
            ids: &[],
        },
    )
    .await;
    request_restatement(&pool).await;
    let restated = restate_requested(&pool, 10)
        .await
        .unwrap()
        .statements()
        .unwrap();
    assert_eq!(restated.len(), 2, "both periods restated");
    let s = statements(&pool).await;
    // October takes 4.16; November gets the remaining 5.84.
    assert_eq!(
        (
            s[0].credits_total,
            s[0].total,
            s[1].credits_total,
            s[1].total
        ),
        (dec!(4.16), dec!(0.00), dec!(5.84), dec!(18.91))
    );
    assert_eq!(s[0].version, 2);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM credit_recompute")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0, "the request is taken with the restatement");

    // Usage added to October later takes balance from November, not beyond the grant.
    process_batch(&pool, &[usage(3, "cloud.vm.hour", dec!(50), t(10, 20, 5))])
        .await
        .unwrap();
    let s = statements(&pool).await;
    assert_eq!(
        (s[0].credits_total, s[1].credits_total),
        (dec!(6.24), dec!(3.76))
    );
    let drawn: Decimal =
        sqlx::query_scalar("SELECT sum(amount) FROM credit_ledger WHERE kind = 'draw'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(drawn, dec!(10.00));
}

/// A voided grant keeps paying the period its void fell in only what it
/// paid at the void: credit a restatement frees in an earlier period is
/// voided, not spent on that period's usage.
#[tokio::test]
async fn credit_freed_before_a_void_is_not_spent_in_the_voids_period() {
    let pool = database().await;
    seed(&pool).await;
    let voided = grant(
        &pool,
        NewGrant {
            name: "voided",
            amount: dec!(10.00),
            priority: 5,
            effective: t(10, 1, 0),
            expires: None,
            scope: "all_usage",
            ids: &[],
        },
    )
    .await;
    // October 4.16 (100 h) and November 2.08 (50 h), both paid by the grant.
    process_batch(
        &pool,
        &[
            usage(1, "cloud.vm.hour", dec!(100), t(10, 2, 5)),
            usage(2, "cloud.vm.hour", dec!(50), t(11, 2, 5)),
        ],
    )
    .await
    .unwrap();
    // Voided on Nov 15 as the finance API does: the unused 3.76 taken back.
    void(&pool, voided, t(11, 15, 0), dec!(3.76)).await;
    // November usage after the void (100 h, 4.16): not covered.
    process_batch(&pool, &[usage(3, "cloud.vm.hour", dec!(100), t(11, 20, 5))])
        .await
        .unwrap();
    // A higher-priority grant for October only takes 3.00 of October's usage.
    grant(
        &pool,
        NewGrant {
            name: "first",
            amount: dec!(3.00),
            priority: 1,
            effective: t(10, 1, 0),
            expires: Some(t(11, 1, 0)),
            scope: "all_usage",
            ids: &[],
        },
    )
    .await;
    request_restatement(&pool).await;
    restate_requested(&pool, 10).await.unwrap();
    let s = statements(&pool).await;
    let credits = |i: usize| {
        s[i].credits
            .iter()
            .map(|c| (c.name.clone(), c.amount))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        credits(0),
        [
            ("first".to_owned(), dec!(3.00)),
            ("voided".to_owned(), dec!(1.16))
        ]
    );
    // November: 6.24 of usage, the grant still pays only its 2.08.
    assert_eq!(credits(1), [("voided".to_owned(), dec!(2.08))]);
    assert_eq!(s[1].total, dec!(4.16));
    let voided_amount: Decimal =
        sqlx::query_scalar("SELECT voided_amount FROM credit_grants WHERE id = $1")
            .bind(voided)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        voided_amount,
        dec!(6.76),
        "10.00 = 1.16 + 2.08 drawn + 6.76 voided"
    );
}

#[tokio::test]
async fn a_voided_grant_never_regains_a_balance() {
    let pool = database().await;
    seed(&pool).await;
    let voided = grant(
        &pool,
        NewGrant {
            name: "voided",
            amount: dec!(10.00),
            priority: 5,
            effective: t(10, 1, 0),
            expires: None,
            scope: "all_usage",
            ids: &[],
        },
    )
    .await;
    // 100 h of VM on Oct 2: 4.16, all paid by the grant.
    process_batch(&pool, &[usage(1, "cloud.vm.hour", dec!(100), t(10, 2, 5))])
        .await
        .unwrap();
    // Voided as the finance API does, on Nov 15 (a fixed time: the test
    // must not depend on today's date): the unused 5.84 taken back.
    void(&pool, voided, t(11, 15, 0), dec!(5.84)).await;
    // December usage, in a period that begins after the void.
    process_batch(&pool, &[usage(2, "cloud.vm.hour", dec!(100), t(12, 2, 5))])
        .await
        .unwrap();
    // A higher-priority grant given afterwards takes over October's usage.
    grant(
        &pool,
        NewGrant {
            name: "first",
            amount: dec!(3.00),
            priority: 1,
            effective: t(10, 1, 0),
            expires: None,
            scope: "all_usage",
            ids: &[],
        },
    )
    .await;
    request_restatement(&pool).await;
    restate_requested(&pool, 10).await.unwrap();
    let s = statements(&pool).await;
    assert_eq!(
        s[0].credits
            .iter()
            .map(|c| (c.name.as_str(), c.amount))
            .collect::<Vec<_>>(),
        [("first", dec!(3.00)), ("voided", dec!(1.16))]
    );
    assert!(
        s[1].credits.is_empty(),
        "the 3.00 October no longer needs is not spent in December: {:?}",
        s[1].credits
    );
    let (voided_amount, void_entry): (Decimal, Decimal) = sqlx::query_as(
        "SELECT g.voided_amount, l.amount FROM credit_grants g
         JOIN credit_ledger l ON l.grant_id = g.id AND l.kind = 'void' WHERE g.id = $1",
    )
    .bind(voided)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (voided_amount, void_entry),
        (dec!(8.84), dec!(8.84)),
        "10.00 = 1.16 drawn + 8.84 voided, nothing left"
    );
}
