//! The seal policy: when an account's periods close. Invoicing asks for a
//! seal (a marker on the account's partition) once a period with a draft
//! invoice ended a grace window ago; rating, on a marker, closes every open
//! period of the account before the marker's `through`.

use chrono::{DateTime, TimeDelta, Utc};

use crate::{AnchorDay, Period};

/// A seal marker that rating has not applied within this long is sent again
/// (a marker is idempotent: one that does not move the seal changes nothing).
pub const RESEND_AFTER: TimeDelta = TimeDelta::minutes(10);

/// What invoicing knows of an account with draft invoices not sealed yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealCandidate {
    pub anchor: AnchorDay,
    /// The start of its oldest draft invoice's period not sealed yet.
    pub oldest_draft: DateTime<Utc>,
    /// How far rating sealed it.
    pub sealed_through: Option<DateTime<Utc>>,
    /// The last seal asked for, and when.
    pub requested_through: Option<DateTime<Utc>>,
    pub requested_at: Option<DateTime<Utc>>,
}

/// The `through` of the seal marker to write for this account now, if any.
///
/// Every period that ended `grace` ago or earlier closes. Nothing is asked
/// when its oldest draft is not that old; nor when it is sealed that far and
/// has no draft below the seal (one a batch racing the seal opened, which a
/// marker closes; or one whose final statement is on its way, for which a
/// marker changes nothing); nor when that seal was asked for less than
/// [`RESEND_AFTER`] ago. The marker never moves the seal back.
pub fn seal_to_request(
    now: DateTime<Utc>,
    grace: TimeDelta,
    account: &SealCandidate,
) -> Option<DateTime<Utc>> {
    let through = Period::containing(now - grace, account.anchor).start();
    let oldest = account.oldest_draft;
    if oldest >= through {
        return None;
    }
    let sealed = account.sealed_through;
    if sealed.is_some_and(|s| s >= through && oldest >= s) {
        return None;
    }
    let through = sealed.map_or(through, |s| s.max(through));
    if account.requested_through.is_some_and(|q| q >= through)
        && account
            .requested_at
            .is_some_and(|at| now - at < RESEND_AFTER)
    {
        return None;
    }
    Some(through)
}

/// How rating applies an account's seal markers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closing {
    /// Every open period starting before this closes: the furthest of the
    /// markers and the seal (a marker that does not move the seal, a
    /// redelivery or a duplicate, still closes a period a concurrent batch
    /// opened below it).
    pub through: DateTime<Utc>,
    /// Whether the markers move the seal forward.
    pub advances: bool,
}

/// How markers asking to seal through `wanted` close an account sealed
/// through `sealed_through`.
pub fn closing(sealed_through: Option<DateTime<Utc>>, wanted: DateTime<Utc>) -> Closing {
    Closing {
        through: sealed_through.map_or(wanted, |s| s.max(wanted)),
        advances: sealed_through.is_none_or(|s| s < wanted),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn day(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
    }

    fn grace() -> TimeDelta {
        TimeDelta::hours(48)
    }

    fn candidate(oldest: DateTime<Utc>) -> SealCandidate {
        SealCandidate {
            anchor: AnchorDay::new(1).unwrap(),
            oldest_draft: oldest,
            sealed_through: None,
            requested_through: None,
            requested_at: None,
        }
    }

    #[test]
    fn a_period_closes_once_its_grace_window_is_over() {
        let october = candidate(day(10, 1, 0));
        // 2 November 23:00: October ended 47 hours ago.
        assert_eq!(seal_to_request(day(11, 2, 23), grace(), &october), None);
        assert_eq!(
            seal_to_request(day(11, 3, 0), grace(), &october),
            Some(day(11, 1, 0))
        );
        // A draft of the current period only: nothing to close.
        assert_eq!(
            seal_to_request(day(11, 20, 0), grace(), &candidate(day(11, 1, 0))),
            None
        );
    }

    #[test]
    fn a_sealed_account_gets_a_marker_only_for_a_draft_below_its_seal() {
        let mut account = candidate(day(11, 1, 0));
        account.sealed_through = Some(day(11, 1, 0));
        assert_eq!(seal_to_request(day(11, 20, 0), grace(), &account), None);
        // A draft a racing batch opened below the seal: closed again.
        account.oldest_draft = day(10, 1, 0);
        assert_eq!(
            seal_to_request(day(11, 20, 0), grace(), &account),
            Some(day(11, 1, 0))
        );
        // Never behind the seal.
        account.sealed_through = Some(day(12, 1, 0));
        assert_eq!(
            seal_to_request(day(11, 20, 0), grace(), &account),
            Some(day(12, 1, 0))
        );
    }

    #[test]
    fn a_marker_asked_for_is_sent_again_only_after_ten_minutes() {
        let mut account = candidate(day(10, 1, 0));
        let now = day(11, 5, 0);
        account.requested_through = Some(day(11, 1, 0));
        account.requested_at = Some(now - TimeDelta::minutes(9));
        assert_eq!(seal_to_request(now, grace(), &account), None);
        account.requested_at = Some(now - TimeDelta::minutes(10));
        assert_eq!(seal_to_request(now, grace(), &account), Some(day(11, 1, 0)));
        // A request for less than is due now does not count.
        account.requested_through = Some(day(10, 1, 0));
        account.requested_at = Some(now);
        assert_eq!(seal_to_request(now, grace(), &account), Some(day(11, 1, 0)));
    }

    #[test]
    fn markers_close_through_the_furthest_of_them_and_the_seal() {
        assert_eq!(
            closing(None, day(11, 1, 0)),
            Closing {
                through: day(11, 1, 0),
                advances: true
            }
        );
        assert_eq!(
            closing(Some(day(10, 1, 0)), day(11, 1, 0)),
            Closing {
                through: day(11, 1, 0),
                advances: true
            }
        );
        // A redelivered marker: the seal stays, its periods close again.
        assert_eq!(
            closing(Some(day(11, 1, 0)), day(10, 1, 0)),
            Closing {
                through: day(11, 1, 0),
                advances: false
            }
        );
        assert!(!closing(Some(day(11, 1, 0)), day(11, 1, 0)).advances);
    }

    proptest! {
        /// A marker is only asked for a period that ended a grace window
        /// ago, never behind the seal, and on a period boundary.
        #[test]
        fn a_requested_seal_is_past_the_grace_window_and_the_seal(
            now_hours in 0i64..(24 * 365),
            oldest_month in 1u32..=12,
            sealed_month in proptest::option::of(1u32..=12),
        ) {
            let anchor = AnchorDay::new(1).unwrap();
            let now = day(1, 1, 0) + TimeDelta::hours(now_hours);
            let account = SealCandidate {
                sealed_through: sealed_month.map(|m| day(m, 1, 0)),
                ..candidate(day(oldest_month, 1, 0))
            };
            if let Some(through) = seal_to_request(now, grace(), &account) {
                prop_assert!(account.oldest_draft < through);
                prop_assert!(account.sealed_through.is_none_or(|s| s <= through));
                prop_assert_eq!(Period::containing(through, anchor).start(), through);
                let due = Period::containing(now - grace(), anchor).start();
                prop_assert!(through >= due);
            }
        }
    }
}
