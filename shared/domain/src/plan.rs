//! Plans: what a provider charges per bound resource besides its usage. A
//! plan (`dbco.ps-10`, per resource type) has effective-dated versions like
//! a price book, one per currency: a base fee per billing period and
//! allowances (quantities of the provider's SKUs included each period).
//!
//! Proration is by the hour. Each hour of the period in which the binding
//! was active at any moment is billed once (a started hour counts whole);
//! when two plans were active in the same hour (a plan change), the hour
//! goes to the later one. A plan version's line is
//! `base fee × its hours / the period's hours`, rounded once when it
//! becomes a statement line. The version billed for an hour is the one in
//! effect at the binding's last active instant in it, so a plan change and
//! a new plan version both split a period into separate lines.
//!
//! Allowances are per resource and per period: the allowance of the plan
//! version the binding ended the period on (its newest plan line) applies
//! in full, to the period's usage of each included SKU, oldest price version
//! first, before that usage is priced ([`apply_allowance`]).

use crate::binding::{BindingStatus, PlanChange, StatusChange};
use crate::pricing::resolve::{self, Effective};
use crate::{Currency, MoneyError, Period, PlanId, Sku};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One version of a plan in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanVersion {
    /// The stored version's id (`plan_versions.id`).
    pub id: i64,
    pub plan: PlanId,
    /// What the bill shows (`PS-10`).
    pub name: String,
    pub currency: Currency,
    pub effective_from: DateTime<Utc>,
    /// Charged per billing period of active time, prorated by the hour.
    #[serde(with = "rust_decimal::serde::str")]
    pub base_fee: Decimal,
    /// Quantities of the provider's SKUs included per period.
    pub allowances: BTreeMap<Sku, Decimal>,
}

impl Effective for PlanVersion {
    fn effective_from(&self) -> DateTime<Utc> {
        self.effective_from
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a plan's base fee must not be negative")]
    NegativeFee,
    #[error("the allowance of {0} must not be negative")]
    NegativeAllowance(Sku),
    #[error("plan {plan} has no {currency} version in effect at {at}")]
    NoVersion {
        plan: PlanId,
        currency: String,
        at: DateTime<Utc>,
    },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

/// Checks a new plan version's terms.
pub fn validate(base_fee: Decimal, allowances: &BTreeMap<Sku, Decimal>) -> Result<(), PlanError> {
    if base_fee.is_sign_negative() && !base_fee.is_zero() {
        return Err(PlanError::NegativeFee);
    }
    for (sku, quantity) in allowances {
        if quantity.is_sign_negative() && !quantity.is_zero() {
            return Err(PlanError::NegativeAllowance(sku.clone()));
        }
    }
    Ok(())
}

/// A stretch of active time under one plan (`to` is `None` while it lasts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveSpan {
    pub from: DateTime<Utc>,
    pub to: Option<DateTime<Utc>>,
    pub plan: PlanId,
}

/// The binding's active time, split at plan changes, from its status
/// history and plan history (each oldest first; the first plan change is
/// its plan at request).
pub fn active_spans(history: &[StatusChange], plans: &[PlanChange]) -> Vec<ActiveSpan> {
    enum Step<'a> {
        Status(BindingStatus),
        Plan(&'a PlanId),
    }
    let mut steps: Vec<(DateTime<Utc>, u8, Step<'_>)> = history
        .iter()
        .map(|c| (c.at, 0, Step::Status(c.to)))
        .chain(plans.iter().map(|p| (p.at, 1, Step::Plan(&p.plan))))
        .collect();
    steps.sort_by_key(|(at, order, _)| (*at, *order));
    let mut spans = Vec::new();
    let mut plan: Option<&PlanId> = None;
    let mut open: Option<(DateTime<Utc>, &PlanId)> = None;
    let mut active = false;
    for (at, _, step) in steps {
        match step {
            Step::Status(status) => active = status == BindingStatus::Active,
            Step::Plan(p) => plan = Some(p),
        }
        let now = plan.filter(|_| active);
        if open.map(|(_, p)| p) != now {
            if let Some((from, p)) = open.take() {
                if at > from {
                    spans.push(ActiveSpan {
                        from,
                        to: Some(at),
                        plan: p.clone(),
                    });
                }
            }
            open = now.map(|p| (at, p));
        }
    }
    if let Some((from, p)) = open {
        spans.push(ActiveSpan {
            from,
            to: None,
            plan: p.clone(),
        });
    }
    spans
}

/// One plan version's fee for a period: its billed hours and the exact
/// (unrounded) prorated amount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFee {
    pub version: PlanVersion,
    pub hours: i64,
    pub period_hours: i64,
    /// `base_fee × hours / period_hours`, unrounded.
    pub exact: Decimal,
    /// The last billed hour's start: the newest line decides the allowance.
    last_hour: DateTime<Utc>,
}

/// The first hour of `period` (its start, truncated to the hour) and its
/// number of hours (at least one): what proration divides by.
pub fn hours_of(period: Period) -> (DateTime<Utc>, i64) {
    let start = period
        .start()
        .duration_trunc(TimeDelta::hours(1))
        .unwrap_or(period.start());
    (start, (period.end() - start).num_hours().max(1))
}

/// The plan fees of a binding's `spans` in `period` (see the module's
/// rules), one per plan version, in the order they were first billed.
/// `versions` holds each plan's versions in the account's currency, oldest first.
pub fn plan_fees(
    spans: &[ActiveSpan],
    versions: &BTreeMap<PlanId, Vec<PlanVersion>>,
    currency: Currency,
    period: Period,
) -> Result<Vec<PlanFee>, PlanError> {
    let hour = TimeDelta::hours(1);
    let (start, period_hours) = hours_of(period);
    let mut fees: Vec<PlanFee> = Vec::new();
    let mut h = start;
    while h < period.end() {
        let h_end = h + hour;
        // The span active latest within this hour.
        let last = spans
            .iter()
            .filter(|s| s.from < h_end && s.to.is_none_or(|to| to > h))
            .map(|s| (s.to.map_or(h_end, |to| to.min(h_end)), s))
            .max_by_key(|(end, s)| (*end, s.from));
        if let Some((end, span)) = last {
            let instant = end - TimeDelta::nanoseconds(1);
            let version = versions
                .get(&span.plan)
                .and_then(|v| resolve::version_at(v, instant))
                .ok_or_else(|| PlanError::NoVersion {
                    plan: span.plan.clone(),
                    currency: currency.code().to_owned(),
                    at: instant,
                })?;
            match fees.iter_mut().find(|f| f.version.id == version.id) {
                Some(fee) => {
                    fee.hours += 1;
                    fee.last_hour = h;
                }
                None => fees.push(PlanFee {
                    version: version.clone(),
                    hours: 1,
                    period_hours,
                    exact: Decimal::ZERO,
                    last_hour: h,
                }),
            }
        }
        h = h_end;
    }
    for fee in &mut fees {
        fee.exact = fee
            .version
            .base_fee
            .checked_mul(Decimal::from(fee.hours))
            .and_then(|x| x.checked_div(Decimal::from(fee.period_hours)))
            .ok_or(MoneyError::Overflow)?;
    }
    Ok(fees)
}

/// The allowance of `sku` in a period with these plan fees: the one of the
/// plan version billed last (zero without plan fees or without that SKU).
pub fn allowance(fees: &[PlanFee], sku: &Sku) -> Decimal {
    fees.iter()
        .max_by_key(|f| f.last_hour)
        .and_then(|f| f.version.allowances.get(sku).copied())
        .unwrap_or(Decimal::ZERO)
}

/// How much of one price version's usage the allowance covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllowanceUse {
    pub included: Decimal,
    pub beyond: Decimal,
}

/// Applies `allowance` to a resource's usage of one SKU in a period, given
/// per price version oldest first: the allowance covers the earliest usage
/// first; what is beyond it is priced as usage.
pub fn apply_allowance(allowance: Decimal, quantities: &[Decimal]) -> Vec<AllowanceUse> {
    let mut left = allowance.max(Decimal::ZERO);
    quantities
        .iter()
        .map(|q| {
            let included = left.min(*q);
            left -= included;
            AllowanceUse {
                included,
                beyond: *q - included,
            }
        })
        .collect()
}

/// A bound resource as its period's bill needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundResource {
    pub binding: crate::binding::Binding,
    pub history: Vec<StatusChange>,
    pub plans: Vec<PlanChange>,
    pub provider: crate::ProviderRef,
    /// The provider's platform fee, in percent of its list amounts.
    pub platform_fee_pct: Decimal,
    /// The display name of the binding's current plan.
    pub plan_name: String,
}

/// The plan fees of `resources` in `period`, and their allowances applied
/// to `aggregates` (each aggregate of a resource gets its `resource` plan
/// name and `included` quantity; per resource and SKU the allowance covers
/// the oldest price version's usage first). `versions` holds the plans'
/// versions in `currency`, oldest first.
pub fn bill_resources(
    period: Period,
    currency: Currency,
    resources: &[BoundResource],
    versions: &BTreeMap<PlanId, Vec<PlanVersion>>,
    aggregates: &mut [crate::UsageAggregate],
) -> Result<Vec<crate::PlanFeeInput>, PlanError> {
    let mut inputs = Vec::new();
    for bound in resources {
        let spans = active_spans(&bound.history, &bound.plans);
        let fees = plan_fees(&spans, versions, currency, period)?;
        let plan_name = fees
            .iter()
            .max_by_key(|f| f.last_hour)
            .map_or(bound.plan_name.clone(), |f| f.version.name.clone());
        let resource = crate::ResourceRef {
            binding: bound.binding.id.clone(),
            name: bound.binding.name.clone(),
            plan: plan_name,
        };
        let mut own: Vec<&mut crate::UsageAggregate> = aggregates
            .iter_mut()
            .filter(|a| {
                a.resource
                    .as_ref()
                    .is_some_and(|r| r.binding == bound.binding.id)
            })
            .collect();
        own.sort_by(|a, b| {
            (&a.sku, a.price_effective_from, a.price_id).cmp(&(
                &b.sku,
                b.price_effective_from,
                b.price_id,
            ))
        });
        let mut start = 0;
        while start < own.len() {
            let sku = own[start].sku.clone();
            let end = start + own[start..].iter().take_while(|a| a.sku == sku).count();
            let quantities: Vec<Decimal> = own[start..end].iter().map(|a| a.quantity).collect();
            let uses = apply_allowance(allowance(&fees, &sku), &quantities);
            for (agg, used) in own[start..end].iter_mut().zip(uses) {
                agg.included = used.included;
                agg.resource = Some(resource.clone());
            }
            start = end;
        }
        inputs.extend(fees.into_iter().map(|fee| crate::PlanFeeInput {
            provider: bound.provider.clone(),
            resource: resource.clone(),
            fee,
            platform_fee_pct: bound.platform_fee_pct,
        }));
    }
    Ok(inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding::Actor;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
            .unwrap()
    }

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn plan(id: &str) -> PlanId {
        PlanId::parse(id).unwrap()
    }

    fn version(id: i64, p: &str, from: DateTime<Utc>, fee: Decimal) -> PlanVersion {
        PlanVersion {
            id,
            plan: plan(p),
            name: p.to_uppercase(),
            currency: usd(),
            effective_from: from,
            base_fee: fee,
            allowances: BTreeMap::from([(Sku::parse("dbco.storage-gb").unwrap(), dec!(10))]),
        }
    }

    fn status(at: DateTime<Utc>, to: BindingStatus) -> StatusChange {
        StatusChange {
            at,
            from: None,
            to,
            by: Actor::Provider,
            message: None,
        }
    }

    fn november() -> Period {
        Period::parse_month("2026-11").unwrap()
    }

    fn versions(list: Vec<PlanVersion>) -> BTreeMap<PlanId, Vec<PlanVersion>> {
        let mut map: BTreeMap<PlanId, Vec<PlanVersion>> = BTreeMap::new();
        for v in list {
            map.entry(v.plan.clone()).or_default().push(v);
        }
        map
    }

    #[test]
    fn spans_follow_activity_and_plan_changes() {
        use BindingStatus as S;
        let history = [
            status(at(1, 0, 0), S::Requested),
            status(at(2, 0, 0), S::Active),
            status(at(10, 0, 0), S::Suspended),
            status(at(12, 0, 0), S::Active),
            status(at(20, 0, 0), S::Deleted),
        ];
        let plans = [
            PlanChange {
                at: at(1, 0, 0),
                plan: plan("ps-10"),
            },
            PlanChange {
                at: at(5, 0, 0),
                plan: plan("ps-20"),
            },
            PlanChange {
                at: at(11, 0, 0),
                plan: plan("ps-10"),
            },
        ];
        let spans = active_spans(&history, &plans);
        let view: Vec<_> = spans
            .iter()
            .map(|s| (s.from, s.to, s.plan.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                (at(2, 0, 0), Some(at(5, 0, 0)), "ps-10"),
                (at(5, 0, 0), Some(at(10, 0, 0)), "ps-20"),
                (at(12, 0, 0), Some(at(20, 0, 0)), "ps-10"),
            ]
        );
    }

    #[test]
    fn a_whole_month_on_one_plan_is_the_whole_fee() {
        let spans = [ActiveSpan {
            from: at(1, 0, 0),
            to: None,
            plan: plan("ps-10"),
        }];
        let fees = plan_fees(
            &spans,
            &versions(vec![version(1, "ps-10", at(1, 0, 0), dec!(39))]),
            usd(),
            november(),
        )
        .unwrap();
        assert_eq!(fees.len(), 1);
        assert_eq!((fees[0].hours, fees[0].period_hours), (720, 720));
        assert_eq!(fees[0].exact, dec!(39));
    }

    #[test]
    fn started_hours_count_once_and_a_plan_change_gives_the_hour_to_the_new_plan() {
        // ps-10 active 02 10:37 → 05 14:05, then ps-20 until 09 00:00.
        let spans = [
            ActiveSpan {
                from: at(2, 10, 37),
                to: Some(at(5, 14, 5)),
                plan: plan("ps-10"),
            },
            ActiveSpan {
                from: at(5, 14, 5),
                to: Some(at(9, 0, 0)),
                plan: plan("ps-20"),
            },
        ];
        let fees = plan_fees(
            &spans,
            &versions(vec![
                version(1, "ps-10", at(1, 0, 0), dec!(39)),
                version(2, "ps-20", at(1, 0, 0), dec!(72)),
            ]),
            usd(),
            november(),
        )
        .unwrap();
        // ps-10: from the hour starting 02 10:00 to the one starting 05 13:00:
        // 14 h on the 2nd, 24 + 24 on the 3rd and 4th, 14 h on the 5th = 76.
        // ps-20: from 05 14:00 (the changeover hour) to 09 00:00 = 10 + 72 = 82.
        let view: Vec<_> = fees
            .iter()
            .map(|f| (f.version.id, f.hours, f.exact))
            .collect();
        assert_eq!(
            view,
            [
                (1, 76, dec!(39) * dec!(76) / dec!(720)),
                (2, 82, dec!(72) * dec!(82) / dec!(720)),
            ]
        );
        assert_eq!(usd().round(fees[0].exact), dec!(4.12)); // 4.1166…
        assert_eq!(usd().round(fees[1].exact), dec!(8.20));
    }

    #[test]
    fn a_new_plan_version_mid_period_splits_the_line() {
        let spans = [ActiveSpan {
            from: at(1, 0, 0),
            to: None,
            plan: plan("ps-10"),
        }];
        let fees = plan_fees(
            &spans,
            &versions(vec![
                version(1, "ps-10", at(1, 0, 0), dec!(30)),
                version(2, "ps-10", at(16, 0, 0), dec!(60)),
            ]),
            usd(),
            november(),
        )
        .unwrap();
        let view: Vec<_> = fees
            .iter()
            .map(|f| (f.version.id, f.hours, f.exact))
            .collect();
        assert_eq!(view, [(1, 360, dec!(15)), (2, 360, dec!(30))]);
    }

    #[test]
    fn a_plan_without_a_version_in_effect_is_an_error() {
        let spans = [ActiveSpan {
            from: at(1, 0, 0),
            to: None,
            plan: plan("ps-10"),
        }];
        let err = plan_fees(
            &spans,
            &versions(vec![version(1, "ps-10", at(3, 0, 0), dec!(30))]),
            usd(),
            november(),
        );
        assert!(matches!(err, Err(PlanError::NoVersion { .. })));
    }

    #[test]
    fn the_allowance_is_the_last_plans_and_covers_the_earliest_usage_first() {
        let sku = Sku::parse("dbco.storage-gb").unwrap();
        let spans = [
            ActiveSpan {
                from: at(1, 0, 0),
                to: Some(at(10, 0, 0)),
                plan: plan("ps-10"),
            },
            ActiveSpan {
                from: at(10, 0, 0),
                to: None,
                plan: plan("ps-20"),
            },
        ];
        let mut big = version(2, "ps-20", at(1, 0, 0), dec!(72));
        big.allowances.insert(sku.clone(), dec!(25));
        let fees = plan_fees(
            &spans,
            &versions(vec![version(1, "ps-10", at(1, 0, 0), dec!(39)), big]),
            usd(),
            november(),
        )
        .unwrap();
        assert_eq!(allowance(&fees, &sku), dec!(25));
        assert_eq!(
            allowance(&fees, &Sku::parse("dbco.reads").unwrap()),
            dec!(0)
        );
        assert_eq!(allowance(&[], &sku), dec!(0));
        assert_eq!(
            apply_allowance(dec!(25), &[dec!(20), dec!(10), dec!(3)]),
            [
                AllowanceUse {
                    included: dec!(20),
                    beyond: dec!(0)
                },
                AllowanceUse {
                    included: dec!(5),
                    beyond: dec!(5)
                },
                AllowanceUse {
                    included: dec!(0),
                    beyond: dec!(3)
                },
            ]
        );
    }

    #[test]
    fn plan_terms_are_checked() {
        let sku = Sku::parse("dbco.reads").unwrap();
        assert_eq!(
            validate(dec!(-1), &BTreeMap::new()),
            Err(PlanError::NegativeFee)
        );
        assert_eq!(
            validate(dec!(1), &BTreeMap::from([(sku.clone(), dec!(-1))])),
            Err(PlanError::NegativeAllowance(sku))
        );
        assert_eq!(validate(dec!(0), &BTreeMap::new()), Ok(()));
    }

    proptest! {
        #[test]
        fn billed_hours_never_exceed_the_period_and_cover_every_active_hour(
            cuts in proptest::collection::vec(0i64..(30 * 24 * 60), 0..8),
        ) {
            // Alternate active/inactive stretches between sorted cut minutes,
            // with alternating plans.
            let mut cuts = cuts;
            cuts.sort_unstable();
            cuts.dedup();
            let start = at(1, 0, 0);
            let mut spans = Vec::new();
            for (i, pair) in cuts.chunks(2).enumerate() {
                let from = start + TimeDelta::minutes(pair[0]);
                let to = pair.get(1).map(|m| start + TimeDelta::minutes(*m));
                spans.push(ActiveSpan { from, to, plan: plan(if i % 2 == 0 { "a" } else { "b" }) });
            }
            let list = versions(vec![version(1, "a", start, dec!(100)), version(2, "b", start, dec!(50))]);
            let fees = plan_fees(&spans, &list, usd(), november()).unwrap();
            let hours: i64 = fees.iter().map(|f| f.hours).sum();
            prop_assert!(hours <= 720);
            // Every hour touched by a span is billed exactly once.
            let mut touched = std::collections::BTreeSet::new();
            for s in &spans {
                let mut h = s.from.duration_trunc(TimeDelta::hours(1)).unwrap();
                let end = s.to.unwrap_or(november().end());
                while h < end {
                    touched.insert(h);
                    h += TimeDelta::hours(1);
                }
            }
            prop_assert_eq!(hours, touched.len() as i64);
            let total: Decimal = fees.iter().map(|f| f.exact).sum();
            prop_assert!(total <= dec!(100));
        }
    }
}
