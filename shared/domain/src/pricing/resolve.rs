//! Price resolution: which price version of a SKU, in the account's
//! currency, applies to an event. An event is priced with the version in
//! effect at its time (`UsageEvent::time`), not when it arrived: a price
//! change never reprices usage that happened before it.

use chrono::{DateTime, Utc};

/// A price version: in effect from a time on, until the next one.
pub trait Effective {
    fn effective_from(&self) -> DateTime<Utc>;
}

/// The version in effect at `at`: of `versions` (one SKU's in one currency,
/// oldest first), the last one effective at or before `at`. None before the
/// first version.
pub fn version_at<V: Effective>(versions: &[V], at: DateTime<Utc>) -> Option<&V> {
    versions.iter().rev().find(|v| v.effective_from() <= at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Version {
        id: i64,
        from: DateTime<Utc>,
    }

    impl Effective for Version {
        fn effective_from(&self) -> DateTime<Utc> {
            self.from
        }
    }

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn versions() -> Vec<Version> {
        vec![
            Version {
                id: 1,
                from: at(1, 0),
            },
            Version {
                id: 2,
                from: at(15, 12),
            },
        ]
    }

    fn id_at(versions: &[Version], when: DateTime<Utc>) -> Option<i64> {
        version_at(versions, when).map(|v| v.id)
    }

    #[test]
    fn an_event_before_the_first_version_has_no_price() {
        assert_eq!(
            id_at(&versions(), at(1, 0) - chrono::TimeDelta::seconds(1)),
            None
        );
        assert_eq!(id_at(&[], at(20, 0)), None);
    }

    #[test]
    fn an_event_is_priced_with_the_version_in_effect_at_its_time() {
        let v = versions();
        assert_eq!(id_at(&v, at(1, 0)), Some(1));
        assert_eq!(id_at(&v, at(15, 11)), Some(1));
        // A version applies from its effective time on, inclusive.
        assert_eq!(id_at(&v, at(15, 12)), Some(2));
        assert_eq!(id_at(&v, at(30, 23)), Some(2));
    }

    proptest! {
        /// The chosen version is the newest one effective at or before the
        /// event's time (the last of those, in order).
        #[test]
        fn the_version_at_a_time_is_the_newest_effective_one(
            mut hours in proptest::collection::vec(0i64..1000, 0..8),
            probe in -10i64..1100,
        ) {
            hours.sort_unstable();
            let base = at(1, 0);
            let versions: Vec<Version> = hours
                .iter()
                .enumerate()
                .map(|(i, h)| Version {
                    id: i64::try_from(i).unwrap(),
                    from: base + chrono::TimeDelta::hours(*h),
                })
                .collect();
            let when = base + chrono::TimeDelta::hours(probe);
            let naive = versions
                .iter()
                .filter(|v| v.from <= when)
                .max_by_key(|v| (v.from, v.id))
                .map(|v| v.id);
            prop_assert_eq!(id_at(&versions, when), naive);
        }
    }
}
