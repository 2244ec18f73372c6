//! Commitments in rating against a real PostgreSQL: the billing period that
//! ends a quarter's commitment trues it up over the whole quarter, a month
//! without usage spending 0; that period gets its statement without usage
//! (the once-a-minute check of bound and committed accounts); and a prepaid
//! grant draws the true-up down like any other line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{acme_event, database};

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use tally_domain::contract::{Cadence, Commitment, Contract};
use tally_domain::{AccountId, Currency, PriceModel, ProviderId, ProviderKind, Sku, Statement};
use tally_platform::{catalog, contracts};
use tally_rating::{process_batch, restate_bound_periods, restate_requested};

fn t(year: i32, month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(year, month, day, 0, 0, 0).unwrap()
}

/// `cloud` (first-party, `cloud.vm.hour` at 0.0416 since September), account
/// `acme` in USD with a contract for the fourth quarter of 2026: a quarterly
/// commitment of 300.00.
async fn seed(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let usd = Currency::parse("USD").unwrap();
    let cloud = ProviderId::parse("cloud").unwrap();
    catalog::create_provider(&mut conn, &cloud, "Cloud", ProviderKind::FirstParty)
        .await
        .unwrap();
    let acme = AccountId::parse("acme").unwrap();
    catalog::create_account(&mut conn, &acme, "Acme", usd)
        .await
        .unwrap();
    let sku = Sku::parse("cloud.vm.hour").unwrap();
    catalog::create_sku(&mut conn, &sku, &cloud, "VMs", "hour")
        .await
        .unwrap();
    catalog::add_price(
        &mut conn,
        &sku,
        usd,
        t(2026, 9, 1),
        &PriceModel::per_unit(dec!(0.0416)).unwrap().into(),
    )
    .await
    .unwrap();
    let (start, end) = (t(2026, 10, 1), t(2027, 1, 1));
    contracts::insert(
        &mut conn,
        &acme,
        &Contract {
            id: 0,
            starts_at: start,
            ends_at: end,
            currency: usd,
            price_protection: false,
            signed_at: Some(start),
            terms: vec![],
            commitments: vec![Commitment {
                id: 0,
                cadence: Cadence::Quarter,
                minimum: dec!(300.00),
                starts_at: start,
                ends_at: end,
            }],
        },
    )
    .await
    .unwrap();
}

/// (kind, amount) of each line, and the statement's total.
fn view(s: &Statement) -> (Vec<(&str, Decimal)>, Decimal) {
    let lines = s
        .lines
        .iter()
        .map(|l| (l.kind.as_str(), l.amount))
        .collect();
    (lines, s.total)
}

#[tokio::test]
async fn a_quarters_last_month_without_usage_bills_the_shortfall_of_the_quarter() {
    let pool = database().await;
    seed(&pool).await;
    // October: 1000 hours, 41.60. November and December: nothing.
    let rated = process_batch(
        &pool,
        &[acme_event(
            "cloud",
            "oct",
            "cloud.vm.hour",
            dec!(1000),
            t(2026, 10, 10),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        view(&rated.statements().unwrap()[0]),
        (vec![("usage", dec!(41.60))], dec!(41.60))
    );
    // November ends no commitment period: no statement without usage.
    let opened = restate_bound_periods(&pool, t(2026, 11, 20)).await.unwrap();
    assert!(opened.statements().unwrap().is_empty());
    // December ends the quarter: its statement is opened without usage and
    // bills the quarter's shortfall, 300.00 - (41.60 + 0 + 0) = 258.40.
    let opened = restate_bound_periods(&pool, t(2026, 12, 5)).await.unwrap();
    assert_eq!(opened.statements().unwrap().len(), 1);
    let december = &opened.statements().unwrap()[0];
    assert_eq!(december.period.start(), t(2026, 12, 1));
    assert_eq!(
        view(december),
        (vec![("commitment_true_up", dec!(258.40))], dec!(258.40))
    );
    let again = restate_bound_periods(&pool, t(2026, 12, 6)).await.unwrap();
    assert!(again.statements().unwrap().is_empty());
    // November's usage (its period still open) restates December too:
    // 500 hours, 20.80; the shortfall is now 300.00 - 62.40 = 237.60.
    let rated = process_batch(
        &pool,
        &[acme_event(
            "cloud",
            "nov",
            "cloud.vm.hour",
            dec!(500),
            t(2026, 11, 10),
        )],
    )
    .await
    .unwrap();
    let statements = rated.statements().unwrap();
    let views: Vec<_> = statements.iter().map(view).collect();
    assert_eq!(
        views,
        [
            (vec![("usage", dec!(20.80))], dec!(20.80)),
            (vec![("commitment_true_up", dec!(237.60))], dec!(237.60)),
        ]
    );

    // A prepaid grant of 300.00 from October, the commitment paid ahead:
    // it pays October's and November's usage and December's true-up, so
    // acme pays 0, and the ledger shows each draw: 300.00 in all.
    let grant: i64 = sqlx::query_scalar(
        "INSERT INTO credit_grants (account_id, name, kind, currency, amount, cost_basis, priority,
             effective_at, eligibility, eligible_ids)
         VALUES ('acme', 'prepaid commitment', 'prepaid', 'USD', 300.00, 300.00, 1, $1,
                 'all_usage', '{}') RETURNING id",
    )
    .bind(t(2026, 10, 1))
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO credit_recompute (account_id) VALUES ('acme')")
        .execute(&pool)
        .await
        .unwrap();
    let restated = restate_requested(&pool, 10)
        .await
        .unwrap()
        .statements()
        .unwrap();
    let paid: Vec<(DateTime<Utc>, Decimal, Decimal)> = restated
        .iter()
        .map(|s| (s.period.start(), s.credits_total, s.total))
        .collect();
    assert_eq!(
        paid,
        [
            (t(2026, 10, 1), dec!(41.60), dec!(0)),
            (t(2026, 11, 1), dec!(20.80), dec!(0)),
            (t(2026, 12, 1), dec!(237.60), dec!(0)),
        ]
    );
    let ledger: Vec<(DateTime<Utc>, Decimal)> = sqlx::query_as(
        "SELECT period_start, amount FROM credit_ledger
         WHERE grant_id = $1 AND kind = 'draw' ORDER BY period_start",
    )
    .bind(grant)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        ledger,
        [
            (t(2026, 10, 1), dec!(41.60)),
            (t(2026, 11, 1), dec!(20.80)),
            (t(2026, 12, 1), dec!(237.60))
        ]
    );
}
