//! A grant's balance, its status, and whether it may pay in a period: the
//! rules behind the credits API's figures and rating's choice of the grants
//! a statement draws on. Allocation itself (which grant pays which charge)
//! is in [`super`].

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use super::Grant;
use crate::money::checked;
use crate::{MoneyError, Period};

/// A grant as stored: its terms and its whole balance history (not yet
/// netted for a period).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredGrant {
    pub terms: Grant,
    /// What was granted.
    pub amount: Decimal,
    /// What a void took back.
    pub voided_amount: Decimal,
    pub voided_at: Option<DateTime<Utc>>,
}

impl StoredGrant {
    /// The grant as it may pay in `period`, having drawn `drawn_before` in
    /// the periods before it and, so far, `drawn_here` in this one;
    /// `earliest` is the start of the oldest period the statement bills
    /// usage of (its own, or a sealed one it adjusts). None when nothing is
    /// left, when its validity window misses `[earliest, period end)`, or
    /// when it was voided before the period began (a voided grant pays only
    /// in periods begun before the void).
    ///
    /// A void takes back everything not drawn, so a voided grant never pays
    /// a period more than it pays it already (`drawn_here`): what a
    /// restatement frees in an earlier period (a higher-priority grant
    /// given afterwards) is voided too, never spent in a later one.
    pub fn usable_in(
        &self,
        period: Period,
        earliest: DateTime<Utc>,
        drawn_before: Decimal,
        drawn_here: Decimal,
    ) -> Result<Option<Grant>, MoneyError> {
        let mut remaining =
            checked::sub(checked::sub(self.amount, self.voided_amount)?, drawn_before)?;
        if self.voided_at.is_some() {
            remaining = remaining.min(drawn_here);
        }
        let overlaps = self.terms.effective_at < period.end()
            && self.terms.expires_at.is_none_or(|e| e > earliest)
            && self.voided_at.is_none_or(|v| v > period.start());
        Ok((remaining > Decimal::ZERO && overlaps).then(|| Grant {
            remaining,
            ..self.terms.clone()
        }))
    }
}

/// What is left of a grant: `amount - drawn - voided_amount`, never below
/// zero (`amount = drawn + voided_amount + remaining`).
pub fn remaining_balance(
    amount: Decimal,
    drawn: Decimal,
    voided_amount: Decimal,
) -> Result<Decimal, MoneyError> {
    Ok(checked::sub(checked::sub(amount, drawn)?, voided_amount)?.max(Decimal::ZERO))
}

/// What a void takes back: everything not drawn yet (draws already made,
/// draft invoices included, stay).
pub fn unused_at_void(amount: Decimal, drawn: Decimal) -> Result<Decimal, MoneyError> {
    Ok(checked::sub(amount, drawn)?.max(Decimal::ZERO))
}

/// A grant's status as of a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GrantStatus {
    /// Not effective yet.
    Scheduled,
    Active,
    /// Nothing left.
    Depleted,
    /// Past its expiry.
    Expired,
    Voided,
}

impl GrantStatus {
    /// The status as of `now`; the first that applies of voided, depleted,
    /// expired, scheduled, active.
    pub fn at(
        now: DateTime<Utc>,
        voided: bool,
        remaining: Decimal,
        effective_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
    ) -> Self {
        if voided {
            GrantStatus::Voided
        } else if remaining.is_zero() {
            GrantStatus::Depleted
        } else if expires_at.is_some_and(|e| e <= now) {
            GrantStatus::Expired
        } else if effective_at > now {
            GrantStatus::Scheduled
        } else {
            GrantStatus::Active
        }
    }

    /// `scheduled`, `active`, `depleted`, `expired` or `voided`.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Scheduled => "scheduled",
            GrantStatus::Active => "active",
            GrantStatus::Depleted => "depleted",
            GrantStatus::Expired => "expired",
            GrantStatus::Voided => "voided",
        }
    }

    /// A balance the customer can still spend (shown on the bill).
    pub fn is_spendable(self) -> bool {
        matches!(self, GrantStatus::Active | GrantStatus::Scheduled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credits::{Eligibility, GrantKind};
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn day(month: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()
    }

    fn november() -> Period {
        Period::parse_month("2026-11").unwrap()
    }

    fn stored(amount: Decimal) -> StoredGrant {
        StoredGrant {
            terms: Grant {
                id: 7,
                name: "welcome".into(),
                kind: GrantKind::Promotional,
                priority: 0,
                effective_at: day(10, 1),
                expires_at: Some(day(12, 1)),
                eligibility: Eligibility::AllUsage,
                remaining: amount,
                cap_per_period: None,
            },
            amount,
            voided_amount: Decimal::ZERO,
            voided_at: None,
        }
    }

    #[test]
    fn a_grant_pays_what_is_left_after_earlier_periods_and_its_void() {
        let mut g = stored(dec!(100.00));
        let usable = g
            .usable_in(november(), november().start(), dec!(30.00), dec!(5.00))
            .unwrap();
        assert_eq!(usable.map(|u| u.remaining), Some(dec!(70.00)));
        // Voided with 50.00 drawn: 30.00 before November, 20.00 in it.
        g.voided_amount = dec!(50.00);
        g.voided_at = Some(day(11, 10));
        let usable = g
            .usable_in(november(), november().start(), dec!(30.00), dec!(20.00))
            .unwrap();
        assert_eq!(usable.map(|u| u.remaining), Some(dec!(20.00)));
        // Spent: none.
        assert_eq!(
            g.usable_in(november(), november().start(), dec!(50.00), dec!(0.00))
                .unwrap(),
            None
        );
    }

    #[test]
    fn a_voided_grant_never_pays_a_period_more_than_it_does_already() {
        let mut g = stored(dec!(10.00));
        g.voided_amount = dec!(3.76);
        g.voided_at = Some(day(11, 15));
        // Drawn at the void: 4.16 before November, 2.08 in it. A
        // restatement lowers the earlier draws to 1.16: the 3.00 it frees
        // is not November's to spend.
        let usable = g
            .usable_in(november(), november().start(), dec!(1.16), dec!(2.08))
            .unwrap();
        assert_eq!(usable.map(|u| u.remaining), Some(dec!(2.08)));
        // A period that has drawn nothing from it gets nothing.
        assert_eq!(
            g.usable_in(november(), november().start(), dec!(1.16), Decimal::ZERO)
                .unwrap(),
            None
        );
        // A grant not voided is not capped by what the period drew.
        g.voided_at = None;
        g.voided_amount = Decimal::ZERO;
        let usable = g
            .usable_in(november(), november().start(), dec!(1.16), Decimal::ZERO)
            .unwrap();
        assert_eq!(usable.map(|u| u.remaining), Some(dec!(8.84)));
    }

    #[test]
    fn a_grant_voided_before_a_period_began_pays_nothing_in_it() {
        let mut g = stored(dec!(100.00));
        g.voided_at = Some(day(11, 1));
        assert_eq!(
            g.usable_in(november(), november().start(), Decimal::ZERO, Decimal::ZERO)
                .unwrap(),
            None
        );
        // Voided a second later, it still pays what it paid November then.
        g.voided_at = Some(day(11, 1) + chrono::TimeDelta::seconds(1));
        assert!(g
            .usable_in(november(), november().start(), Decimal::ZERO, dec!(1.00))
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_grant_pays_in_periods_its_window_overlaps_including_adjusted_ones() {
        let g = stored(dec!(10));
        // Expired on 1 December: not for December…
        let december = Period::parse_month("2026-12").unwrap();
        assert_eq!(
            g.usable_in(december, december.start(), Decimal::ZERO, Decimal::ZERO)
                .unwrap(),
            None
        );
        // …unless the statement adjusts November's usage.
        assert!(g
            .usable_in(december, day(11, 1), Decimal::ZERO, Decimal::ZERO)
            .unwrap()
            .is_some());
        // Effective from 1 October: not for September.
        let september = Period::parse_month("2026-09").unwrap();
        assert_eq!(
            g.usable_in(september, september.start(), Decimal::ZERO, Decimal::ZERO)
                .unwrap(),
            None
        );
    }

    #[test]
    fn the_balance_is_what_neither_draws_nor_a_void_took() {
        assert_eq!(
            remaining_balance(dec!(100.00), dec!(30.00), dec!(20.00)).unwrap(),
            dec!(50.00)
        );
        assert_eq!(
            remaining_balance(dec!(100.00), dec!(90.00), dec!(20.00)).unwrap(),
            dec!(0)
        );
        assert_eq!(
            unused_at_void(dec!(100.00), dec!(30.00)).unwrap(),
            dec!(70.00)
        );
        assert_eq!(unused_at_void(dec!(100.00), dec!(130.00)).unwrap(), dec!(0));
    }

    #[test]
    fn a_balance_at_the_decimal_limits_is_an_error_not_a_panic() {
        // A negative draw (a restatement that gave back) on a grant at the limit.
        assert_eq!(
            remaining_balance(Decimal::MAX, dec!(-1), Decimal::ZERO),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            remaining_balance(Decimal::MAX, dec!(1), Decimal::ZERO),
            Ok(Decimal::MAX - dec!(1))
        );
        assert_eq!(
            unused_at_void(Decimal::MIN, dec!(1)),
            Err(MoneyError::Overflow)
        );
        let g = stored(Decimal::MAX);
        assert_eq!(
            g.usable_in(november(), november().start(), dec!(-1), Decimal::ZERO),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            g.usable_in(november(), november().start(), Decimal::MAX, Decimal::ZERO)
                .map(|u| u.is_none()),
            Ok(true)
        );
    }

    #[test]
    fn a_grants_status_is_the_first_that_applies() {
        let now = day(11, 15);
        let s = |voided, remaining, effective, expires| {
            GrantStatus::at(now, voided, remaining, effective, expires).as_str()
        };
        assert_eq!(s(true, dec!(5), day(10, 1), None), "voided");
        assert_eq!(s(false, dec!(0), day(10, 1), None), "depleted");
        assert_eq!(s(false, dec!(5), day(10, 1), Some(now)), "expired");
        assert_eq!(s(false, dec!(5), day(12, 1), None), "scheduled");
        assert_eq!(s(false, dec!(5), now, Some(day(12, 1))), "active");
        assert!(GrantStatus::Active.is_spendable());
        assert!(GrantStatus::Scheduled.is_spendable());
        for s in [
            GrantStatus::Depleted,
            GrantStatus::Expired,
            GrantStatus::Voided,
        ] {
            assert!(!s.is_spendable());
        }
    }

    proptest! {
        /// Drawn, voided and remaining never add up to more than the grant,
        /// and a usable grant never has more than the balance left.
        #[test]
        fn a_grant_never_pays_more_than_it_holds(
            amount in 0i64..100_000,
            drawn in 0i64..100_000,
            voided in 0i64..100_000,
        ) {
            let (amount, drawn, voided) = (
                Decimal::new(amount, 2),
                Decimal::new(drawn, 2),
                Decimal::new(voided, 2),
            );
            let remaining = remaining_balance(amount, drawn, voided).unwrap();
            prop_assert!(remaining >= Decimal::ZERO);
            prop_assert!(remaining <= amount);
            let mut g = stored(amount);
            g.voided_amount = voided;
            if let Some(usable) = g.usable_in(november(), november().start(), drawn, Decimal::ZERO).unwrap() {
                prop_assert_eq!(usable.remaining, remaining);
                prop_assert!(usable.remaining > Decimal::ZERO);
            } else {
                prop_assert_eq!(remaining, Decimal::ZERO);
            }
        }
    }
}
