//! Shared by the invoicing tests and the API's (`services/api/tests/support`):
//! a fresh database per test, a small catalog, statements built by hand.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{TimeZone, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tally_domain::statement::ProviderSubtotal;
use tally_domain::{
    AccountId, Currency, Period, ProviderId, ProviderKind, ProviderRef, Sku, Statement,
    StatementLine,
};
use tally_platform::catalog;

/// Migrates a new database of its own and connects to it.
pub async fn fresh_pool() -> PgPool {
    let url = tally_platform::db::scratch_database("tally_test");
    tally_platform::db::migrate(&url).await.unwrap();
    tally_platform::db::connect(&url, 8).await.unwrap()
}

/// Accounts (all USD) to invoice; statements only need the account to exist.
pub async fn create_accounts(pool: &PgPool, ids: &[&str]) {
    let mut conn = pool.acquire().await.unwrap();
    for id in ids {
        catalog::create_account(
            &mut conn,
            &AccountId::parse(id).unwrap(),
            id,
            Currency::parse("USD").unwrap(),
        )
        .await
        .unwrap();
    }
}

pub fn cloud() -> ProviderRef {
    ProviderRef {
        id: ProviderId::parse("cloud").unwrap(),
        name: "Cloud".into(),
        kind: ProviderKind::FirstParty,
    }
}

pub fn dbco() -> ProviderRef {
    ProviderRef {
        id: ProviderId::parse("dbco").unwrap(),
        name: "DB Co".into(),
        kind: ProviderKind::Partner,
    }
}

/// A usage line of `quantity` × `unit_price`, rounded to cents.
pub fn line(
    provider: &ProviderRef,
    sku: &str,
    quantity: Decimal,
    unit_price: Decimal,
) -> StatementLine {
    let amount = (quantity * unit_price).round_dp(2);
    StatementLine {
        kind: Default::default(),
        provider: provider.clone(),
        sku: Sku::parse(sku).unwrap(),
        description: format!("{sku} usage"),
        unit: "hour".into(),
        price_id: 7,
        price_effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        quantity,
        unit_price: Some(unit_price),
        event_count: 3,
        amount,
        list_amount: amount,
        markup: Decimal::ZERO,
        platform_fee: amount,
        partner_net: Decimal::ZERO,
        discount: Decimal::ZERO,
        discount_funded_by: None,
        adjusts: None,
        resource: None,
    }
}

/// A statement whose subtotals and total are the sums of `lines`.
pub fn statement(account: &str, month: &str, version: i64, lines: Vec<StatementLine>) -> Statement {
    let mut subtotals: Vec<ProviderSubtotal> = Vec::new();
    for l in &lines {
        match subtotals.last_mut() {
            Some(s) if s.provider.id == l.provider.id => s.amount += l.amount,
            _ => subtotals.push(ProviderSubtotal {
                provider: l.provider.clone(),
                amount: l.amount,
            }),
        }
    }
    Statement {
        account_id: AccountId::parse(account).unwrap(),
        period: Period::parse_month(month).unwrap(),
        currency: Currency::parse("USD").unwrap(),
        version,
        subtotal: lines.iter().map(|l| l.amount).sum(),
        credits: Vec::new(),
        credits_total: rust_decimal::Decimal::ZERO,
        total: lines.iter().map(|l| l.amount).sum(),
        lines,
        subtotals,
        sealed: false,
    }
}

/// acme's statement of November 2026, version 2: two cloud lines and a
/// dbco line (2.50 + 3.30 + 0.90).
pub fn acme_v2() -> Statement {
    statement(
        "acme",
        "2026-11",
        2,
        vec![
            line(&cloud(), "cloud.vm", Decimal::from(10), Decimal::new(25, 2)),
            line(
                &cloud(),
                "cloud.disk",
                Decimal::from(3),
                Decimal::new(110, 2),
            ),
            line(
                &dbco(),
                "dbco.db.hour",
                Decimal::new(45, 1),
                Decimal::new(20, 2),
            ),
        ],
    )
}

/// (sku, quantity, amount) of [`acme_v2`]'s lines, in bill order.
pub fn acme_v2_rows() -> Vec<(String, String, String)> {
    [
        ("cloud.vm", "10", "2.50"),
        ("cloud.disk", "3", "3.30"),
        ("dbco.db.hour", "4.5", "0.90"),
    ]
    .map(|(sku, quantity, amount)| (sku.into(), quantity.into(), amount.into()))
    .into()
}
