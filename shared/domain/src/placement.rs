//! Event placement: which period of its account an event is billed in. Usage
//! counts in the period that contains its time while that period is open;
//! once the period is sealed, the usage is late: it is billed on the
//! account's next open period as an adjustment of the sealed one.
//!
//! An account's periods before `sealed_through` are sealed, but for the ones
//! in `open_below`: a period a batch racing a seal opened below it, which
//! stays open (and takes its own usage) until a seal marker closes it.

use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

use crate::{AnchorDay, Period};

/// Where an event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The open period whose statement bills the event.
    pub billed_in: Period,
    /// For late usage, the sealed period it belongs to (and adjusts).
    pub adjusts: Option<Period>,
}

impl Placement {
    /// The period whose aggregates count the usage: its own period, also
    /// when it is late (the adjustment is that period priced again).
    pub fn counted_in(&self) -> Period {
        self.adjusts.unwrap_or(self.billed_in)
    }
}

/// Whether the period starting at `start` is open: not sealed, or open below
/// the seal. Only open periods get new statement versions.
pub fn is_open(
    start: DateTime<Utc>,
    sealed_through: Option<DateTime<Utc>>,
    open_below: &BTreeSet<DateTime<Utc>>,
) -> bool {
    sealed_through.is_none_or(|through| start >= through) || open_below.contains(&start)
}

/// Where an event at `at` goes, for an account with this anchor and seal.
pub fn place(
    at: DateTime<Utc>,
    anchor: AnchorDay,
    sealed_through: Option<DateTime<Utc>>,
    open_below: &BTreeSet<DateTime<Utc>>,
) -> Placement {
    let own = Period::containing(at, anchor);
    match sealed_through {
        Some(through) if !is_open(own.start(), sealed_through, open_below) => Placement {
            billed_in: Period::containing(through, anchor),
            adjusts: Some(own),
        },
        _ => Placement {
            billed_in: own,
            adjusts: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn day(month: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, day, 0, 0, 0).unwrap()
    }

    fn month(label: &str) -> Period {
        Period::parse_month(label).unwrap()
    }

    fn calendar() -> AnchorDay {
        AnchorDay::new(1).unwrap()
    }

    #[test]
    fn usage_of_an_unsealed_account_counts_in_its_own_period() {
        let p = place(day(10, 20), calendar(), None, &BTreeSet::new());
        assert_eq!(p.billed_in, month("2026-10"));
        assert_eq!(p.adjusts, None);
        assert_eq!(p.counted_in(), month("2026-10"));
    }

    #[test]
    fn late_usage_of_a_sealed_period_is_billed_on_the_period_the_seal_opens() {
        let sealed = Some(day(11, 1));
        let p = place(day(9, 30), calendar(), sealed, &BTreeSet::new());
        assert_eq!(p.billed_in, month("2026-11"));
        assert_eq!(p.adjusts, Some(month("2026-09")));
        assert_eq!(p.counted_in(), month("2026-09"));
        // At or after the seal: its own period.
        let p = place(day(11, 1), calendar(), sealed, &BTreeSet::new());
        assert_eq!((p.billed_in, p.adjusts), (month("2026-11"), None));
    }

    #[test]
    fn a_period_open_below_the_seal_takes_its_own_usage() {
        let open: BTreeSet<_> = [day(10, 1)].into();
        let sealed = Some(day(11, 1));
        let p = place(day(10, 31), calendar(), sealed, &open);
        assert_eq!((p.billed_in, p.adjusts), (month("2026-10"), None));
        // The periods before it are sealed still.
        let p = place(day(9, 1), calendar(), sealed, &open);
        assert_eq!(
            (p.billed_in, p.adjusts),
            (month("2026-11"), Some(month("2026-09")))
        );
    }

    #[test]
    fn periods_follow_the_accounts_anchor_day() {
        let anchor = AnchorDay::new(15).unwrap();
        let p = place(day(10, 10), anchor, Some(day(10, 15)), &BTreeSet::new());
        assert_eq!(p.billed_in, Period::new(day(10, 15), day(11, 15)).unwrap());
        assert_eq!(
            p.adjusts,
            Some(Period::new(day(9, 15), day(10, 15)).unwrap())
        );
    }

    #[test]
    fn a_period_is_open_from_the_seal_on_or_when_opened_below_it() {
        let open: BTreeSet<_> = [day(9, 1)].into();
        assert!(is_open(day(9, 1), None, &BTreeSet::new()));
        assert!(is_open(day(11, 1), Some(day(11, 1)), &BTreeSet::new()));
        assert!(!is_open(day(10, 1), Some(day(11, 1)), &BTreeSet::new()));
        assert!(is_open(day(9, 1), Some(day(11, 1)), &open));
        assert!(!is_open(day(10, 1), Some(day(11, 1)), &open));
    }

    proptest! {
        /// An event is billed in an open period; late usage adjusts the
        /// sealed period containing it, and is billed in the period holding
        /// the seal.
        #[test]
        fn every_event_is_billed_in_an_open_period(
            event_hours in 0i64..(24 * 400),
            seal_month in proptest::option::of(1u32..=12),
            anchor in 1u32..=28,
        ) {
            let anchor = AnchorDay::new(anchor).unwrap();
            let at = day(1, 1) + chrono::TimeDelta::hours(event_hours);
            let sealed = seal_month.map(|m| Period::containing(day(m, 20), anchor).start());
            let p = place(at, anchor, sealed, &BTreeSet::new());
            prop_assert!(is_open(p.billed_in.start(), sealed, &BTreeSet::new()));
            prop_assert!(p.counted_in().contains(at));
            match p.adjusts {
                Some(origin) => {
                    prop_assert!(!is_open(origin.start(), sealed, &BTreeSet::new()));
                    prop_assert!(p.billed_in.contains(sealed.unwrap()));
                }
                None => prop_assert!(p.billed_in.contains(at)),
            }
        }
    }
}
