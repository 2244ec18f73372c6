//! Whether a provider's usage correction may apply: a cancel or amendment
//! of one counted event, or a backfill replacing its usage of an account in
//! a window. The collector checks what it can when the correction is asked
//! for; rating checks again when it applies it, in order with the usage,
//! and records a correction it cannot apply as refused with the same code.

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::BTreeSet;

use crate::usage::{Change, CorrectionRequest};

/// Why a correction is refused; each has a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("no event with this id was counted for this provider")]
    UnknownEvent,
    #[error("the event was sent by another provider")]
    NotProvidersEvent,
    #[error("the event was cancelled already")]
    AlreadyCancelled,
    #[error("the event is older than the correction window (the ingest window)")]
    OutsideWindow,
    #[error("the backfill's window must start before it ends, and lie within the ingest window")]
    WindowInvalid,
    #[error("a replacement event is timed outside the backfill's window")]
    EventOutsideWindow,
    #[error("a replacement event is for another account than the backfill's")]
    AccountMismatch,
    #[error("a replacement event's id is counted already, outside the window replaced")]
    EventIdTaken,
    #[error("two replacement events have the same id")]
    DuplicateEventId,
    #[error("a correction needs a reason")]
    ReasonMissing,
    #[error("the new values have no price in effect at the event's time")]
    NoPrice,
    #[error("the new values lack the dimension the SKU counts distinct values of")]
    DimensionMissing,
    #[error("the account does not exist")]
    AccountUnknown,
    #[error("the period counts events from before corrections were kept, so its largest, latest or distinct values cannot be recomputed")]
    ValuesUnknown,
    #[error("the correction could not be rated")]
    RatingFailed,
}

impl Refusal {
    pub const ALL: [Refusal; 15] = [
        Refusal::UnknownEvent,
        Refusal::NotProvidersEvent,
        Refusal::AlreadyCancelled,
        Refusal::OutsideWindow,
        Refusal::WindowInvalid,
        Refusal::EventOutsideWindow,
        Refusal::AccountMismatch,
        Refusal::EventIdTaken,
        Refusal::DuplicateEventId,
        Refusal::ReasonMissing,
        Refusal::NoPrice,
        Refusal::DimensionMissing,
        Refusal::AccountUnknown,
        Refusal::ValuesUnknown,
        Refusal::RatingFailed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Refusal::UnknownEvent => "unknown_event",
            Refusal::NotProvidersEvent => "event_not_owned",
            Refusal::AlreadyCancelled => "already_cancelled",
            Refusal::OutsideWindow => "outside_window",
            Refusal::WindowInvalid => "window_invalid",
            Refusal::EventOutsideWindow => "event_outside_window",
            Refusal::AccountMismatch => "account_mismatch",
            Refusal::EventIdTaken => "event_id_taken",
            Refusal::DuplicateEventId => "duplicate_event_id",
            Refusal::ReasonMissing => "reason_missing",
            Refusal::NoPrice => "no_price",
            Refusal::DimensionMissing => "dimension_missing",
            Refusal::AccountUnknown => "account_unknown",
            Refusal::ValuesUnknown => "values_unknown",
            Refusal::RatingFailed => "rating_failed",
        }
    }

    /// The refusal of a correction whose new values rating would
    /// dead-letter with `code` as usage.
    pub fn from_rating_code(code: &str) -> Refusal {
        match code {
            "no_price" => Refusal::NoPrice,
            "dimension_missing" => Refusal::DimensionMissing,
            "account_unknown" => Refusal::AccountUnknown,
            _ => Refusal::RatingFailed,
        }
    }
}

/// The oldest time an event may have to be corrected: the ingest window
/// (`TALLY_INGEST_MAX_AGE_HOURS`), within which its id is deduped and its
/// values kept.
pub fn oldest_correctable(now: DateTime<Utc>, max_age: std::time::Duration) -> DateTime<Utc> {
    TimeDelta::from_std(max_age)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// A cancel or an amendment of a stored event: `stored` is (cancelled
/// already, its account) when the provider's event is counted.
pub fn check_target(stored: Option<(bool, &str)>, account: &str) -> Result<(), Refusal> {
    match stored {
        None => Err(Refusal::UnknownEvent),
        Some((_, a)) if a != account => Err(Refusal::UnknownEvent),
        Some((true, _)) => Err(Refusal::AlreadyCancelled),
        Some((false, _)) => Ok(()),
    }
}

/// A backfill: a window that starts before it ends; each replacement timed
/// in it, for the backfill's account and provider, ids distinct, and each id
/// new or one of the events it replaces (`replaced`; `taken`: the
/// replacements' ids already counted for the provider).
pub fn check_backfill(
    request: &CorrectionRequest,
    replaced: &BTreeSet<&str>,
    taken: &BTreeSet<&str>,
) -> Result<(), Refusal> {
    let Change::Backfill { start, end, events } = &request.change else {
        return Ok(());
    };
    if start >= end {
        return Err(Refusal::WindowInvalid);
    }
    let mut ids = BTreeSet::new();
    for event in events {
        if event.time < *start || event.time >= *end {
            return Err(Refusal::EventOutsideWindow);
        }
        if event.account_id != request.account_id || event.provider_id != request.provider_id {
            return Err(Refusal::AccountMismatch);
        }
        if !ids.insert(event.event_id.as_str()) {
            return Err(Refusal::DuplicateEventId);
        }
        if taken.contains(event.event_id.as_str()) && !replaced.contains(event.event_id.as_str()) {
            return Err(Refusal::EventIdTaken);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountId, EventId, ProviderId, Quantity, Sku, UsageEvent};

    fn at(day: u32) -> DateTime<Utc> {
        format!("2026-11-{day:02}T00:00:00Z").parse().unwrap()
    }

    fn event(id: &str, account: &str, time: DateTime<Utc>) -> UsageEvent {
        UsageEvent {
            provider_id: ProviderId::parse("dbco").unwrap(),
            event_id: EventId::parse(id).unwrap(),
            account_id: AccountId::parse(account).unwrap(),
            sku: Sku::parse("dbco.db.hour").unwrap(),
            quantity: Quantity::parse("1").unwrap(),
            time,
            received_at: time,
            dimensions: Default::default(),
            resource: None,
            on_behalf_of: None,
        }
    }

    fn backfill(start: u32, end: u32, events: Vec<UsageEvent>) -> CorrectionRequest {
        CorrectionRequest {
            id: "00000000-0000-4000-8000-000000000001".into(),
            provider_id: ProviderId::parse("dbco").unwrap(),
            account_id: AccountId::parse("acme").unwrap(),
            reason: "re-metered".into(),
            requested_by: "key".into(),
            requested_at: at(20),
            change: Change::Backfill {
                start: at(start),
                end: at(end),
                events,
            },
        }
    }

    #[test]
    fn a_cancel_or_amendment_needs_a_counted_event_not_cancelled_yet() {
        assert_eq!(check_target(None, "acme"), Err(Refusal::UnknownEvent));
        assert_eq!(
            check_target(Some((false, "other")), "acme"),
            Err(Refusal::UnknownEvent)
        );
        assert_eq!(
            check_target(Some((true, "acme")), "acme"),
            Err(Refusal::AlreadyCancelled)
        );
        assert_eq!(check_target(Some((false, "acme")), "acme"), Ok(()));
    }

    #[test]
    fn a_backfill_replaces_within_its_window_only() {
        let none = BTreeSet::new();
        let ok = backfill(3, 4, vec![event("n1", "acme", at(3))]);
        assert_eq!(check_backfill(&ok, &none, &none), Ok(()));
        assert_eq!(
            check_backfill(&backfill(4, 4, vec![]), &none, &none),
            Err(Refusal::WindowInvalid)
        );
        assert_eq!(
            check_backfill(
                &backfill(3, 4, vec![event("n1", "acme", at(4))]),
                &none,
                &none
            ),
            Err(Refusal::EventOutsideWindow)
        );
        assert_eq!(
            check_backfill(
                &backfill(3, 4, vec![event("n1", "beta", at(3))]),
                &none,
                &none
            ),
            Err(Refusal::AccountMismatch)
        );
        let twice = backfill(
            3,
            4,
            vec![event("n1", "acme", at(3)), event("n1", "acme", at(3))],
        );
        assert_eq!(
            check_backfill(&twice, &none, &none),
            Err(Refusal::DuplicateEventId)
        );
        // An id counted already may come back only as a replaced event.
        let taken: BTreeSet<&str> = ["n1"].into();
        assert_eq!(
            check_backfill(&ok, &none, &taken),
            Err(Refusal::EventIdTaken)
        );
        assert_eq!(check_backfill(&ok, &taken, &taken), Ok(()));
    }

    #[test]
    fn codes_are_distinct_and_rating_codes_map() {
        let codes: BTreeSet<&str> = Refusal::ALL.iter().map(|r| r.code()).collect();
        assert_eq!(codes.len(), Refusal::ALL.len());
        assert_eq!(Refusal::from_rating_code("no_price"), Refusal::NoPrice);
        assert_eq!(
            Refusal::from_rating_code("amount_overflow"),
            Refusal::RatingFailed
        );
    }

    #[test]
    fn the_correction_window_is_the_ingest_window() {
        let hours = std::time::Duration::from_secs(48 * 3600);
        assert_eq!(oldest_correctable(at(20), hours), at(18));
        assert_eq!(
            oldest_correctable(at(20), std::time::Duration::MAX),
            DateTime::<Utc>::MIN_UTC
        );
    }
}
