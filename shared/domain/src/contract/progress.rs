//! What a customer sees of a contract on its bill: each commitment's
//! progress in its commitment period, and whether a coming price change
//! applies to the account yet. Pure: the API loads the net spend of each
//! billing period from stored invoice lines (after discounts, before
//! credits, true-up lines excluded) and the true-ups billed; this module
//! decides which commitment periods to show and what each one stands at.
//! It knows nothing of how rating bills a true-up, only what was billed.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::pricing::true_up;
use super::{Commitment, Contract};
use crate::composition::price_version;
use crate::money::checked;
use crate::pricing::resolve::Effective;
use crate::{Currency, MoneyError};

/// One billing period's figures for a commitment, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodSpend {
    /// The billing period's start (its service period, for late usage).
    pub start: DateTime<Utc>,
    /// Net spend of the period: its lines after discounts, before credits,
    /// true-up lines excluded.
    pub net: Decimal,
    /// The commitment's true-up billed on the period (0 when none).
    pub true_up: Decimal,
}

/// Where a commitment period stands relative to the bill shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Standing {
    /// The bill's period is inside it: spend so far.
    InProgress,
    /// It ended at or before the bill's period started: the last one that did.
    Finished,
}

impl Standing {
    pub fn as_str(&self) -> &'static str {
        match self {
            Standing::InProgress => "in_progress",
            Standing::Finished => "finished",
        }
    }
}

/// A commitment period's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub commitment: i64,
    pub standing: Standing,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub minimum: Decimal,
    /// Net spend of the billing periods starting inside the window.
    pub net_spend: Decimal,
    /// `max(0, minimum - net_spend)`, rounded.
    pub remaining: Decimal,
    /// The true-up billed in the window, when one was; else the projected
    /// one (the shortfall if spend stopped here: `remaining`).
    pub true_up: Decimal,
    /// Whether `true_up` was billed (else it is projected).
    pub true_up_billed: bool,
}

/// The progress of `commitment` as a bill of the billing period starting at
/// `bill_start` shows it: the commitment period in progress then (if any)
/// and the last one that finished by then (if any), in that order. `spend`
/// holds the account's billing periods (any order; those outside a window
/// count nothing in it).
pub fn progress(
    commitment: &Commitment,
    spend: &[PeriodSpend],
    bill_start: DateTime<Utc>,
    currency: Currency,
) -> Result<Vec<Progress>, MoneyError> {
    let windows = commitment.windows();
    let current = windows
        .iter()
        .find(|(start, end)| *start <= bill_start && bill_start < *end)
        .map(|w| (*w, Standing::InProgress));
    let finished = windows
        .iter()
        .rev()
        .find(|(_, end)| *end <= bill_start)
        .map(|w| (*w, Standing::Finished));
    current
        .into_iter()
        .chain(finished)
        .map(|((start, end), standing)| {
            let inside: Vec<&PeriodSpend> = spend
                .iter()
                .filter(|p| start <= p.start && p.start < end)
                .collect();
            let net_spend = currency.round(checked::sum(inside.iter().map(|p| p.net))?);
            let billed = checked::sum(inside.iter().map(|p| p.true_up))?;
            let remaining = currency.round(true_up(commitment.minimum, net_spend)?);
            let true_up_billed = !billed.is_zero();
            Ok(Progress {
                commitment: commitment.id,
                standing,
                window_start: start,
                window_end: end,
                minimum: commitment.minimum,
                net_spend,
                remaining,
                true_up: if true_up_billed { billed } else { remaining },
                true_up_billed,
            })
        })
        .collect()
}

/// Until when `contracts` keep the account on its old prices for a price
/// version effective at `effective_from`: the end of the contract that
/// protects its prices then (signed before the change), if one does.
pub fn protected_until(
    contracts: &[Contract],
    effective_from: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    Contract::protected_price_time(contracts, effective_from)?;
    contracts
        .iter()
        .find(|c| c.price_protection && c.in_force_at(effective_from))
        .map(|c| c.ends_at)
}

/// The price changes coming to an account for one SKU: the version that
/// prices its usage at `since` ([`price_version`]: for an account a
/// provider owns, the wholesale version in effect where there is one, else
/// the list version), and each version that takes over after `since`, in
/// order (each takes over at its own `effective_from`). `list` and
/// `wholesale` are one SKU's versions in one currency, oldest first.
pub fn coming<'v, V: Effective>(
    list: &'v [V],
    wholesale: &'v [V],
    owned_by_provider: bool,
    since: DateTime<Utc>,
) -> (Option<&'v V>, Vec<&'v V>) {
    let at = |t| price_version(list, wholesale, owned_by_provider, t);
    let current = at(since);
    let others: &[V] = if owned_by_provider { wholesale } else { &[] };
    let mut moments: Vec<DateTime<Utc>> = list
        .iter()
        .chain(others)
        .map(Effective::effective_from)
        .filter(|t| *t > since)
        .collect();
    moments.sort();
    moments.dedup();
    let mut last = current;
    let mut out = Vec::new();
    for t in moments {
        if let Some(v) = at(t) {
            if last.is_none_or(|l| !std::ptr::eq(l, v)) {
                out.push(v);
                last = Some(v);
            }
        }
    }
    (current, out)
}

/// The contract in force at `at`, if any.
pub fn in_force(contracts: &[Contract], at: DateTime<Utc>) -> Option<&Contract> {
    contracts.iter().find(|c| c.in_force_at(at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::Cadence;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn month(m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, 1, 0, 0, 0).unwrap()
    }

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn commitment(cadence: Cadence, minimum: Decimal) -> Commitment {
        Commitment {
            id: 4,
            cadence,
            minimum,
            starts_at: month(1),
            ends_at: month(7),
        }
    }

    fn spend(m: u32, net: Decimal, true_up: Decimal) -> PeriodSpend {
        PeriodSpend {
            start: month(m),
            net,
            true_up,
        }
    }

    #[test]
    fn a_monthly_commitment_shows_the_running_month_and_the_last_finished_one() {
        // January 60.00 of 100.00 (true-up 40.00 billed), February 130.50,
        // March 25.25 so far.
        let c = commitment(Cadence::Month, dec!(100.00));
        let spend = [
            spend(1, dec!(60.00), dec!(40.00)),
            spend(2, dec!(130.50), dec!(0)),
            spend(3, dec!(25.25), dec!(0)),
        ];
        let shown = progress(&c, &spend, month(3), usd()).unwrap();
        assert_eq!(
            shown,
            [
                Progress {
                    commitment: 4,
                    standing: Standing::InProgress,
                    window_start: month(3),
                    window_end: month(4),
                    minimum: dec!(100.00),
                    net_spend: dec!(25.25),
                    remaining: dec!(74.75),
                    true_up: dec!(74.75),
                    true_up_billed: false,
                },
                Progress {
                    commitment: 4,
                    standing: Standing::Finished,
                    window_start: month(2),
                    window_end: month(3),
                    minimum: dec!(100.00),
                    net_spend: dec!(130.50),
                    remaining: dec!(0),
                    true_up: dec!(0),
                    true_up_billed: false,
                },
            ]
        );
        // February's bill: January finished short, its true-up billed.
        let shown = progress(&c, &spend, month(2), usd()).unwrap();
        assert_eq!(shown.len(), 2);
        assert_eq!(
            (
                shown[1].window_start,
                shown[1].net_spend,
                shown[1].remaining,
                shown[1].true_up,
                shown[1].true_up_billed
            ),
            (month(1), dec!(60.00), dec!(40.00), dec!(40.00), true)
        );
    }

    #[test]
    fn a_quarterly_commitment_sums_the_months_of_its_quarter_only() {
        // Q1: 100.10 + 200.20 + 50.05 = 350.35 of 1000.00; April's 999.00
        // is the next quarter's.
        let c = commitment(Cadence::Quarter, dec!(1000.00));
        let spend = [
            spend(1, dec!(100.10), dec!(0)),
            spend(2, dec!(200.20), dec!(0)),
            spend(3, dec!(50.05), dec!(0)),
            spend(4, dec!(999.00), dec!(0)),
        ];
        let shown = progress(&c, &spend, month(3), usd()).unwrap();
        assert_eq!(shown.len(), 1, "no quarter finished before March");
        assert_eq!(
            (shown[0].standing, shown[0].window_end, shown[0].net_spend),
            (Standing::InProgress, month(4), dec!(350.35))
        );
        assert_eq!(
            (shown[0].remaining, shown[0].true_up),
            (dec!(649.65), dec!(649.65))
        );
        // May: Q2 in progress at 999.00 (1.00 to go), Q1 finished.
        let shown = progress(&c, &spend, month(5), usd()).unwrap();
        assert_eq!(
            shown
                .iter()
                .map(|p| (p.standing, p.window_start, p.net_spend, p.remaining))
                .collect::<Vec<_>>(),
            [
                (Standing::InProgress, month(4), dec!(999.00), dec!(1.00)),
                (Standing::Finished, month(1), dec!(350.35), dec!(649.65)),
            ]
        );
    }

    #[test]
    fn outside_its_term_a_commitment_shows_the_last_period_only() {
        let c = commitment(Cadence::Month, dec!(10));
        // Before it starts: nothing; after it ends: June, finished.
        let before = Utc.with_ymd_and_hms(2025, 12, 1, 0, 0, 0).unwrap();
        assert_eq!(progress(&c, &[], before, usd()).unwrap(), []);
        let after = progress(&c, &[], month(9), usd()).unwrap();
        assert_eq!(
            after
                .iter()
                .map(|p| (p.standing, p.window_start, p.remaining))
                .collect::<Vec<_>>(),
            [(Standing::Finished, month(6), dec!(10))]
        );
    }

    fn protecting(protects: bool) -> Contract {
        Contract {
            id: 1,
            starts_at: month(1),
            ends_at: month(7),
            currency: usd(),
            price_protection: protects,
            signed_at: Some(month(1)),
            terms: vec![],
            commitments: vec![],
        }
    }

    struct Version(i64, DateTime<Utc>);

    impl Effective for Version {
        fn effective_from(&self) -> DateTime<Utc> {
            self.1
        }
    }

    fn ids(vs: &[&Version]) -> Vec<i64> {
        vs.iter().map(|v| v.0).collect()
    }

    #[test]
    fn coming_versions_follow_the_one_that_prices_usage_now() {
        let list = [
            Version(1, month(1)),
            Version(2, month(3)),
            Version(3, month(5)),
        ];
        let (current, coming) = coming(&list, &[], false, month(3));
        assert_eq!((current.map(|v| v.0), ids(&coming)), (Some(2), vec![3]));
        let before = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).unwrap();
        let (current, coming) = super::coming(&list, &[], false, before);
        assert_eq!((current.map(|v| v.0), ids(&coming)), (None, vec![1, 2, 3]));
    }

    #[test]
    fn an_account_a_provider_owns_follows_the_wholesale_versions_where_there_are_any() {
        // Wholesale from April: the list change of May is not the owned
        // account's; the list change of March is, before it.
        let list = [
            Version(1, month(1)),
            Version(2, month(3)),
            Version(3, month(5)),
        ];
        let wholesale = [Version(10, month(4)), Version(11, month(6))];
        let (current, coming) = coming(&list, &wholesale, true, month(2));
        assert_eq!(
            (current.map(|v| v.0), ids(&coming)),
            (Some(1), vec![2, 10, 11])
        );
        // Not owned: the wholesale versions are not its prices.
        let (current, coming) = super::coming(&list, &wholesale, false, month(2));
        assert_eq!((current.map(|v| v.0), ids(&coming)), (Some(1), vec![2, 3]));
    }

    #[test]
    fn a_price_change_waits_for_the_end_of_a_protecting_contract_only() {
        assert_eq!(
            protected_until(&[protecting(true)], month(3)),
            Some(month(7))
        );
        // After the term, or without protection, it applies from its date.
        assert_eq!(protected_until(&[protecting(true)], month(7)), None);
        assert_eq!(protected_until(&[protecting(false)], month(3)), None);
        assert_eq!(protected_until(&[], month(3)), None);
        assert_eq!(
            in_force(&[protecting(false)], month(6)).map(|c| c.id),
            Some(1)
        );
        assert_eq!(in_force(&[protecting(false)], month(7)), None);
    }
}
