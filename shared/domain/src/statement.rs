//! Statements: the priced picture of one account-period, computed purely from
//! the period's usage aggregates and their price versions.

use crate::{
    AccountId, Currency, Money, MoneyError, Period, PriceModel, PricingError, ProviderId, Sku,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The platform's own services: always first on a bill.
    FirstParty,
    Partner,
}

impl ProviderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::FirstParty => "first_party",
            ProviderKind::Partner => "partner",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "first_party" => Some(ProviderKind::FirstParty),
            "partner" => Some(ProviderKind::Partner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRef {
    pub id: ProviderId,
    pub name: String,
    pub kind: ProviderKind,
}

impl ProviderRef {
    /// Bill order: the platform first, then partners by name (then id).
    fn bill_order(&self) -> (ProviderKind, &str, &str) {
        (self.kind, self.name.as_str(), self.id.as_str())
    }
}

/// The total quantity of one SKU at one price version in one account-period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageAggregate {
    pub provider: ProviderRef,
    pub sku: Sku,
    pub sku_name: String,
    pub unit: String,
    pub price_id: i64,
    pub price_effective_from: DateTime<Utc>,
    pub model: PriceModel,
    pub quantity: Decimal,
    pub event_count: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    pub provider: ProviderRef,
    pub sku: Sku,
    pub description: String,
    pub unit: String,
    pub price_id: i64,
    pub price_effective_from: DateTime<Utc>,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    #[serde(with = "rust_decimal::serde::str_option")]
    pub unit_price: Option<Decimal>,
    pub event_count: i64,
    /// Rounded once, to the currency's minor unit.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSubtotal {
    pub provider: ProviderRef,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// Versioned snapshot of an account-period, published on `billing.statements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub account_id: AccountId,
    pub period: Period,
    pub currency: Currency,
    /// Grows by one each time rating changes this account-period.
    pub version: i64,
    pub lines: Vec<StatementLine>,
    pub subtotals: Vec<ProviderSubtotal>,
    /// The sum of the rounded lines.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl Statement {
    /// Prices every aggregate and assembles the statement. Deterministic: the
    /// order of `aggregates` does not matter, only their content.
    pub fn compute(
        account_id: AccountId,
        period: Period,
        currency: Currency,
        version: i64,
        mut aggregates: Vec<UsageAggregate>,
    ) -> Result<Statement, StatementError> {
        aggregates.sort_by(|a, b| {
            a.provider
                .bill_order()
                .cmp(&b.provider.bill_order())
                .then_with(|| a.sku.cmp(&b.sku))
                .then_with(|| a.price_effective_from.cmp(&b.price_effective_from))
                .then_with(|| a.price_id.cmp(&b.price_id))
        });
        let mut lines = Vec::with_capacity(aggregates.len());
        for agg in aggregates {
            let exact = agg.model.charge(agg.quantity)?;
            lines.push(StatementLine {
                amount: Money::new(exact, currency).round().amount(),
                unit_price: agg.model.unit_price(),
                provider: agg.provider,
                sku: agg.sku,
                description: agg.sku_name,
                unit: agg.unit,
                price_id: agg.price_id,
                price_effective_from: agg.price_effective_from,
                quantity: agg.quantity.normalize(),
                event_count: agg.event_count,
            });
        }
        let mut subtotals: Vec<ProviderSubtotal> = Vec::new();
        for line in &lines {
            match subtotals.last_mut() {
                Some(last) if last.provider.id == line.provider.id => {
                    last.amount = checked_add(last.amount, line.amount)?;
                }
                _ => subtotals.push(ProviderSubtotal {
                    provider: line.provider.clone(),
                    amount: line.amount,
                }),
            }
        }
        let total = subtotals
            .iter()
            .try_fold(Decimal::ZERO, |acc, s| checked_add(acc, s.amount))?;
        Ok(Statement {
            account_id,
            period,
            currency,
            version,
            lines,
            subtotals,
            total,
        })
    }
}

fn checked_add(a: Decimal, b: Decimal) -> Result<Decimal, MoneyError> {
    a.checked_add(b).ok_or(MoneyError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn provider(id: &str, name: &str, kind: ProviderKind) -> ProviderRef {
        ProviderRef {
            id: ProviderId::parse(id).unwrap(),
            name: name.into(),
            kind,
        }
    }

    fn agg(p: &ProviderRef, sku: &str, price: Decimal, qty: Decimal) -> UsageAggregate {
        UsageAggregate {
            provider: p.clone(),
            sku: Sku::parse(sku).unwrap(),
            sku_name: sku.into(),
            unit: "unit".into(),
            price_id: 1,
            price_effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            model: PriceModel::per_unit(price).unwrap(),
            quantity: qty,
            event_count: 1,
        }
    }

    fn statement(aggs: Vec<UsageAggregate>) -> Statement {
        Statement::compute(
            AccountId::parse("acme").unwrap(),
            Period::parse_month("2026-11").unwrap(),
            Currency::parse("USD").unwrap(),
            1,
            aggs,
        )
        .unwrap()
    }

    #[test]
    fn platform_comes_first_then_partners_by_name() {
        let platform = provider("platform", "Zeta Cloud", ProviderKind::FirstParty);
        let alpha = provider("zz-alpha", "Alpha DB", ProviderKind::Partner);
        let beta = provider("aa-beta", "Beta Queue", ProviderKind::Partner);
        let s = statement(vec![
            agg(&beta, "beta.msgs", dec!(1), dec!(1)),
            agg(&platform, "vm.hours", dec!(1), dec!(1)),
            agg(&alpha, "alpha.gb", dec!(1), dec!(1)),
        ]);
        let order: Vec<_> = s
            .subtotals
            .iter()
            .map(|t| t.provider.name.as_str())
            .collect();
        assert_eq!(order, ["Zeta Cloud", "Alpha DB", "Beta Queue"]);
    }

    #[test]
    fn each_line_is_rounded_once_and_the_total_sums_rounded_lines() {
        let p = provider("platform", "Platform", ProviderKind::FirstParty);
        // 3 × 0.3335 = 1.0005 → 1.00; 1 × 0.005 = 0.005 → 0.01
        let s = statement(vec![
            agg(&p, "a", dec!(0.3335), dec!(3)),
            agg(&p, "b", dec!(0.005), dec!(1)),
        ]);
        let amounts: Vec<_> = s.lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, vec![dec!(1.00), dec!(0.01)]);
        assert_eq!(s.total, dec!(1.01));
        assert_eq!(s.subtotals[0].amount, dec!(1.01));
    }

    proptest! {
        #[test]
        fn statement_does_not_depend_on_aggregate_order(
            qtys in proptest::collection::vec(0u32..100_000, 1..6),
            seed in any::<u64>(),
        ) {
            let p = provider("platform", "Platform", ProviderKind::FirstParty);
            let q = provider("partner", "Partner", ProviderKind::Partner);
            let aggs: Vec<_> = qtys.iter().enumerate().map(|(i, n)| {
                let who = if i % 2 == 0 { &p } else { &q };
                agg(who, &format!("sku{i}"), dec!(0.0137), Decimal::new(i64::from(*n), 3))
            }).collect();
            let mut shuffled = aggs.clone();
            let len = shuffled.len();
            shuffled.rotate_left((seed as usize) % len);
            shuffled.reverse();
            prop_assert_eq!(statement(aggs), statement(shuffled));
        }
    }
}
