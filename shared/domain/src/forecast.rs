//! What a customer sees next of a bound resource (issue 16, item 5): its
//! cost so far this period and a forecast of the whole period at the
//! current rate. The rule:
//!
//! - **so far** = the plan fees of its active time up to `now` (prorated by
//!   the hour as on the invoice: [`crate::plan::plan_fees`] of the active
//!   spans cut at `now`, a started hour counting whole) + its usage billed so
//!   far (the draft invoice's usage lines of the resource: beyond its
//!   allowance);
//! - **forecast** = the plan fees of the period as the binding stands (an
//!   active binding stays active on its plan to the period's end; a
//!   suspended or deleted one accrues nothing more) + its usage so far ×
//!   the period's hours / the hours elapsed (started hours, at least one):
//!   usage goes on at the rate it had.
//!
//! Both are exact until rounded once, by the currency's rule. Before the
//! period both are its plan fees as they stand and no usage; after it, the
//! period's plan fees and usage (nothing is left to forecast).

use crate::money::checked;
use crate::plan::{hours_of, plan_fees, ActiveSpan, PlanError, PlanVersion};
use crate::{Currency, Period, PlanId};
use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

/// A resource's cost so far this period and its forecast for the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outlook {
    pub so_far: Decimal,
    pub forecast: Decimal,
}

/// The spans cut at `now`: what was active up to then.
fn until(spans: &[ActiveSpan], now: DateTime<Utc>) -> Vec<ActiveSpan> {
    spans
        .iter()
        .filter(|s| s.from < now)
        .map(|s| ActiveSpan {
            from: s.from,
            to: Some(s.to.map_or(now, |to| to.min(now))),
            plan: s.plan.clone(),
        })
        .collect()
}

fn fees_total(
    spans: &[ActiveSpan],
    versions: &BTreeMap<PlanId, Vec<PlanVersion>>,
    currency: Currency,
    period: Period,
) -> Result<Decimal, PlanError> {
    let fees = plan_fees(spans, versions, currency, period)?;
    Ok(checked::sum(fees.iter().map(|f| f.exact))?)
}

/// The outlook of a resource active in `spans` (see the module's rule),
/// with `usage_so_far` billed for it so far in `period`, at `now`.
pub fn outlook(
    spans: &[ActiveSpan],
    versions: &BTreeMap<PlanId, Vec<PlanVersion>>,
    currency: Currency,
    period: Period,
    now: DateTime<Utc>,
    usage_so_far: Decimal,
) -> Result<Outlook, PlanError> {
    let (start, period_hours) = hours_of(period);
    let upto = now.clamp(start, period.end());
    let elapsed = upto - start;
    let mut elapsed_hours = elapsed.num_hours();
    if elapsed > TimeDelta::hours(elapsed_hours) {
        elapsed_hours += 1;
    }
    let elapsed_hours = elapsed_hours.clamp(1, period_hours);
    let fees_forecast = fees_total(spans, versions, currency, period)?;
    let fees_so_far = if now >= period.end() {
        fees_forecast
    } else {
        fees_total(&until(spans, now), versions, currency, period)?
    };
    let usage_forecast = if now <= period.start() {
        Decimal::ZERO
    } else {
        checked::div(
            checked::mul(usage_so_far, Decimal::from(period_hours))?,
            Decimal::from(elapsed_hours),
        )?
    };
    Ok(Outlook {
        so_far: currency.round(checked::add(fees_so_far, usage_so_far)?),
        forecast: currency.round(checked::add(fees_forecast, usage_forecast)?),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn t(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
            .unwrap()
    }

    fn plan(id: &str) -> PlanId {
        PlanId::parse(id).unwrap()
    }

    /// PS-10 at 72.00 and PS-20 at 144.00 a period, in USD, from Nov 1.
    fn versions() -> BTreeMap<PlanId, Vec<PlanVersion>> {
        [("dbco.ps-10", dec!(72)), ("dbco.ps-20", dec!(144))]
            .into_iter()
            .enumerate()
            .map(|(i, (id, fee))| {
                let version = PlanVersion {
                    id: i64::try_from(i).unwrap(),
                    plan: plan(id),
                    name: id.into(),
                    currency: Currency::parse("USD").unwrap(),
                    effective_from: t(1, 0, 0),
                    base_fee: fee,
                    allowances: BTreeMap::new(),
                };
                (plan(id), vec![version])
            })
            .collect()
    }

    fn span(from: DateTime<Utc>, to: Option<DateTime<Utc>>, id: &str) -> ActiveSpan {
        ActiveSpan {
            from,
            to,
            plan: plan(id),
        }
    }

    fn at(spans: &[ActiveSpan], now: DateTime<Utc>, usage: Decimal) -> Outlook {
        let usd = Currency::parse("USD").unwrap();
        let november = Period::month_containing(t(1, 0, 0));
        outlook(spans, &versions(), usd, november, now, usage).unwrap()
    }

    #[test]
    fn an_active_resource_runs_on_to_the_periods_end_at_its_current_rate() {
        // Active on PS-10 (72.00 over 720 h: 0.10 an hour) since Nov 1;
        // on Nov 7 at 00:00, 144 h in, with 12.00 of usage billed.
        let spans = [span(t(1, 0, 0), None, "dbco.ps-10")];
        let o = at(&spans, t(7, 0, 0), dec!(12));
        // 144 h × 0.10 + 12.00; 72.00 + 12.00 × 720 / 144.
        assert_eq!(
            o,
            Outlook {
                so_far: dec!(26.40),
                forecast: dec!(132.00)
            }
        );
        // A started hour counts whole: at 00:01 the 145th hour is billed,
        // and usage is spread over 145 hours: 12 × 720 / 145 = 59.586…
        let o = at(&spans, t(7, 0, 1), dec!(12));
        assert_eq!(
            o,
            Outlook {
                so_far: dec!(26.50),
                forecast: dec!(131.59)
            }
        );
    }

    #[test]
    fn a_suspended_or_deleted_resource_accrues_no_more_plan_fee() {
        // PS-10 from Nov 1 12:00, PS-20 from Nov 3 00:00, suspended Nov 5
        // 06:30: 36 h at 0.10, 55 h at 0.20 (the started hour counts).
        let spans = [
            span(t(1, 12, 0), Some(t(3, 0, 0)), "dbco.ps-10"),
            span(t(3, 0, 0), Some(t(5, 6, 30)), "dbco.ps-20"),
        ];
        let o = at(&spans, t(10, 0, 0), dec!(0));
        assert_eq!(
            o,
            Outlook {
                so_far: dec!(14.60),
                forecast: dec!(14.60)
            }
        );
        // Before the suspension the open span still runs to the period's end.
        let live = [
            span(t(1, 12, 0), Some(t(3, 0, 0)), "dbco.ps-10"),
            span(t(3, 0, 0), None, "dbco.ps-20"),
        ];
        let o = at(&live, t(4, 0, 0), dec!(0));
        // So far: 36 h × 0.10 + 24 h × 0.20; forecast: 3.60 + 672 h × 0.20.
        assert_eq!(
            o,
            Outlook {
                so_far: dec!(8.40),
                forecast: dec!(138.00)
            }
        );
    }

    #[test]
    fn after_the_period_nothing_is_left_to_forecast_and_before_it_no_usage() {
        let spans = [span(t(1, 0, 0), None, "dbco.ps-10")];
        let december = Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap();
        let o = at(&spans, december, dec!(5.55));
        assert_eq!(
            o,
            Outlook {
                so_far: dec!(77.55),
                forecast: dec!(77.55)
            }
        );
        let october = Utc.with_ymd_and_hms(2026, 10, 30, 0, 0, 0).unwrap();
        let o = at(&spans, october, dec!(0));
        assert_eq!(
            o,
            Outlook {
                so_far: dec!(0.00),
                forecast: dec!(72.00)
            }
        );
    }

    #[test]
    fn an_overflowing_usage_is_an_error_not_a_panic() {
        let spans = [span(t(1, 0, 0), None, "dbco.ps-10")];
        let usd = Currency::parse("USD").unwrap();
        let november = Period::month_containing(t(1, 0, 0));
        let err = outlook(&spans, &versions(), usd, november, t(2, 0, 0), Decimal::MAX);
        assert!(matches!(err, Err(PlanError::Money(_))));
    }
}
