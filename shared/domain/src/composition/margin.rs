//! The margin report of a composing provider (issue 17): per consumer,
//! composed SKU and period, the revenue from that consumer beside the cost
//! of the upstream usage done on its behalf.
//!
//! The cost is read from the composing provider's own invoices, never
//! re-rated: each upstream usage amount (per account, period the usage
//! belongs to and price version, over its bound resources; late usage's
//! adjustment lines count in the period they adjust, beside that period's
//! finalized lines) is split among the consumers by the
//! quantity done on behalf of each ([`Money::split`], largest remainder,
//! so the parts and the part done on nobody's behalf sum to the invoiced
//! amount). A consumer's cost is then split among its composed SKUs in
//! proportion to their revenue (a consumer with cost and no revenue gets a
//! row without SKU).

use rust_decimal::Decimal;
use std::collections::BTreeMap;

use crate::money::{checked, Money, MoneyError};
use crate::Currency;

/// What a consumer was billed for one composed SKU in the period (the
/// composing provider's invoice lines on the consumer's invoices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revenue {
    pub consumer: String,
    pub sku: String,
    pub currency: Currency,
    /// Billed to the consumer.
    pub amount: Decimal,
    /// What the composing provider is owed of it (after the platform fee).
    pub net: Decimal,
}

/// One upstream usage amount of the composing provider's own invoices:
/// (account, period start, price version) with its invoiced amount and
/// quantity, and the quantity done on behalf of each consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamCost {
    pub currency: Currency,
    pub amount: Decimal,
    pub quantity: Decimal,
    /// Consumer → quantity done on its behalf.
    pub on_behalf: BTreeMap<String, Decimal>,
}

/// Revenue and net revenue per composed SKU.
type BySku = BTreeMap<String, (Decimal, Decimal)>;

/// A row of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarginRow {
    pub consumer: String,
    /// `None`: upstream cost of a consumer not billed any composed SKU in
    /// that currency.
    pub sku: Option<String>,
    pub currency: Currency,
    pub revenue: Decimal,
    pub revenue_net: Decimal,
    pub upstream_cost: Decimal,
    /// `revenue_net - upstream_cost`.
    pub margin: Decimal,
}

/// The report's rows, by consumer, currency and SKU.
pub fn margin(revenue: &[Revenue], costs: &[UpstreamCost]) -> Result<Vec<MarginRow>, MoneyError> {
    // Each consumer's upstream cost, per currency.
    let mut cost: BTreeMap<(String, &'static str), (Currency, Decimal)> = BTreeMap::new();
    for c in costs {
        let attributed = checked::sum(c.on_behalf.values().copied())?;
        let unattributed = checked::sub(c.quantity, attributed)?.max(Decimal::ZERO);
        let mut weights: Vec<Decimal> = c.on_behalf.values().copied().collect();
        weights.push(unattributed);
        let parts = Money::new(c.amount, c.currency).split(&weights)?;
        for (consumer, part) in c.on_behalf.keys().zip(parts) {
            let entry = cost
                .entry((consumer.clone(), c.currency.code()))
                .or_insert((c.currency, Decimal::ZERO));
            entry.1 = checked::add(entry.1, part.amount())?;
        }
    }
    // Revenue per (consumer, currency, sku).
    let mut billed: BTreeMap<(String, &'static str), (Currency, BySku)> = BTreeMap::new();
    for r in revenue {
        let (_, skus) = billed
            .entry((r.consumer.clone(), r.currency.code()))
            .or_insert((r.currency, BTreeMap::new()));
        let entry = skus.entry(r.sku.clone()).or_default();
        entry.0 = checked::add(entry.0, r.amount)?;
        entry.1 = checked::add(entry.1, r.net)?;
    }
    let mut keys: Vec<(String, &'static str)> = billed.keys().chain(cost.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    let mut rows = Vec::new();
    for key in keys {
        let (currency, total_cost) = match (cost.get(&key), billed.get(&key)) {
            (Some((c, amount)), _) => (*c, *amount),
            (None, Some((c, _))) => (*c, Decimal::ZERO),
            (None, None) => continue,
        };
        let Some((_, skus)) = billed.get(&key) else {
            rows.push(MarginRow {
                consumer: key.0.clone(),
                sku: None,
                currency,
                revenue: currency.scaled(Decimal::ZERO),
                revenue_net: currency.scaled(Decimal::ZERO),
                upstream_cost: currency.scaled(total_cost),
                margin: currency.scaled(checked::sub(Decimal::ZERO, total_cost)?),
            });
            continue;
        };
        let weights: Vec<Decimal> = skus.values().map(|(amount, _)| *amount).collect();
        let shares = Money::new(total_cost, currency).split(&weights)?;
        for ((sku, (amount, net)), share) in skus.iter().zip(shares) {
            rows.push(MarginRow {
                consumer: key.0.clone(),
                sku: Some(sku.clone()),
                currency,
                revenue: currency.scaled(*amount),
                revenue_net: currency.scaled(*net),
                upstream_cost: currency.scaled(share.amount()),
                margin: currency.scaled(checked::sub(*net, share.amount())?),
            });
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn revenue(consumer: &str, sku: &str, amount: Decimal, net: Decimal) -> Revenue {
        Revenue {
            consumer: consumer.into(),
            sku: sku.into(),
            currency: usd(),
            amount,
            net,
        }
    }

    #[test]
    fn upstream_cost_is_split_by_quantity_on_behalf_and_then_by_revenue() {
        // 10.00 for 30 units: 20 for acme, 9 for initech, 1 for nobody.
        let costs = [UpstreamCost {
            currency: usd(),
            amount: dec!(10.00),
            quantity: dec!(30),
            on_behalf: [("acme".into(), dec!(20)), ("initech".into(), dec!(9))].into(),
        }];
        let billed = [
            revenue("acme", "c.app", dec!(9.00), dec!(8.10)),
            revenue("acme", "c.extra", dec!(3.00), dec!(2.70)),
            revenue("globex", "c.app", dec!(1.00), dec!(0.90)),
        ];
        let rows = margin(&billed, &costs).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| {
                (
                    r.consumer.as_str(),
                    r.sku.as_deref(),
                    r.revenue,
                    r.revenue_net,
                    r.upstream_cost,
                    r.margin,
                )
            })
            .collect();
        // acme: 20/30 of 10.00 = 6.67 (6.666… rounds up by largest
        // remainder), split 9:3 = 5.00 + 1.67 (5.0025, 1.6675: the larger
        // remainder takes the cent); initech 9/30 = 3.00; nobody 0.33.
        assert_eq!(
            got,
            [
                (
                    "acme",
                    Some("c.app"),
                    dec!(9.00),
                    dec!(8.10),
                    dec!(5.00),
                    dec!(3.10)
                ),
                (
                    "acme",
                    Some("c.extra"),
                    dec!(3.00),
                    dec!(2.70),
                    dec!(1.67),
                    dec!(1.03)
                ),
                (
                    "globex",
                    Some("c.app"),
                    dec!(1.00),
                    dec!(0.90),
                    dec!(0.00),
                    dec!(0.90)
                ),
                (
                    "initech",
                    None,
                    dec!(0.00),
                    dec!(0.00),
                    dec!(3.00),
                    dec!(-3.00)
                ),
            ]
        );
    }
}
