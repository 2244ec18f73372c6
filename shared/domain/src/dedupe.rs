//! The dedupe window: how long an event id is remembered, which event times
//! rating still rates, and how the remembered ids (`processed_events`) are
//! laid out in partitions that are dropped whole once they fall out of it.
//!
//! Ingest accepts an event whose `time` lies in `[now - max_age, now +
//! max_future]` ([`DedupeWindow::ingest_bounds`], `time_out_of_window`).
//! The event then waits in Kafka; rating rates it if its time lies in
//! `[now - (max_age + margin), now + max_future + margin]`
//! ([`DedupeWindow::admits`]) at the moment of rating, where `margin` is the
//! time an event may spend in Kafka (and the clocks may disagree); outside
//! it, rating refuses the event (`outside_dedupe_window`) rather than count
//! it without its dedupe row. The ids of events with times at or after the
//! [`DedupeWindow::cutoff`] are always kept.
//!
//! `processed_events` is partitioned by range of event time into
//! partitions [`DedupeWindow::partition_length`] long: at least the whole
//! span rating admits, in days, so that span meets at most two partitions
//! and a dedupe probe by (provider, event id) looks into at most two (three
//! for the short while between a batch creating the next one and the
//! periodic prune dropping the oldest). A partition is
//! dropped once it ends at or before the cutoff ([`DedupeWindow::to_drop`]):
//! every event of its range would be refused by rating, so no id it holds
//! can be needed again.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::time::Duration;

/// The dedupe window, from the configuration (`TALLY_INGEST_MAX_AGE_HOURS`,
/// `TALLY_INGEST_MAX_FUTURE_SECS`, `TALLY_DEDUPE_MARGIN_HOURS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupeWindow {
    max_age: TimeDelta,
    max_future: TimeDelta,
    margin: TimeDelta,
    /// Partitions of this many days (`TALLY_DEDUPE_PARTITION_DAYS`), or
    /// `None`: as long as the whole span rating admits.
    partition_days: Option<u32>,
}

/// Why rating refuses an event (`outside_dedupe_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its time is outside the window at the moment of rating.
    OutsideWindow {
        cutoff: DateTime<Utc>,
        newest: DateTime<Utc>,
    },
    /// Its time is before the oldest partition kept: its id may have been
    /// dropped, whatever the clock says.
    Dropped { kept_from: DateTime<Utc> },
}

/// One partition of `processed_events`: event times in `[start, end)`;
/// `start` is `None` for the partition that begins at the beginning of time
/// (the one the migration filled with the ids kept before partitioning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Option<DateTime<Utc>>,
    pub end: DateTime<Utc>,
}

const DAY: TimeDelta = TimeDelta::days(1);

fn delta(d: Duration) -> TimeDelta {
    // Beyond `TimeDelta::MAX` (some 292 million years) is the same as it.
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

fn minus(at: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    at.checked_sub_signed(d).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn plus(at: DateTime<Utc>, d: TimeDelta) -> DateTime<Utc> {
    at.checked_add_signed(d).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl DedupeWindow {
    pub fn new(max_age: Duration, max_future: Duration, margin: Duration) -> Self {
        Self {
            max_age: delta(max_age),
            max_future: delta(max_future),
            margin: delta(margin),
            partition_days: None,
        }
    }

    /// The same window with partitions `days` long (`0`: as long as the
    /// span rating admits, the default). Shorter partitions keep less
    /// (the window plus one partition) but a probe by (provider, event id)
    /// looks into every partition kept: with 1-day partitions and the
    /// default window, 43 instead of 2.
    pub fn with_partition_days(self, days: u32) -> Self {
        Self {
            partition_days: (days > 0).then_some(days),
            ..self
        }
    }

    /// The oldest and newest event times ingest accepts at `now`
    /// (`time_out_of_window` outside them).
    pub fn ingest_bounds(&self, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        (minus(now, self.max_age), plus(now, self.max_future))
    }

    /// The oldest event time rating rates at `now`: `now - (max_age +
    /// margin)`. An id whose event time is at or after it is remembered;
    /// this is the window corrections of an event by id can rely on.
    pub fn cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        minus(minus(now, self.max_age), self.margin)
    }

    /// The newest event time rating rates at `now`: `now + max_future + margin`.
    pub fn newest(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        plus(plus(now, self.max_future), self.margin)
    }

    /// Whether rating at `now` rates an event of `time`; otherwise it
    /// refuses it (`outside_dedupe_window`).
    pub fn admits(&self, time: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.cutoff(now) <= time && time <= self.newest(now)
    }

    /// Whether rating refuses an event of `time`: outside the window at
    /// `now` (`None`: no clock, e.g. rating's tests with fixed times), or
    /// older than `kept_from`, the start of the oldest partition kept
    /// (`None`: it starts at the beginning of time).
    pub fn refusal(
        &self,
        time: DateTime<Utc>,
        now: Option<DateTime<Utc>>,
        kept_from: Option<DateTime<Utc>>,
    ) -> Option<Refusal> {
        if let Some(now) = now.filter(|now| !self.admits(time, *now)) {
            return Some(Refusal::OutsideWindow {
                cutoff: self.cutoff(now),
                newest: self.newest(now),
            });
        }
        match kept_from {
            Some(kept_from) if time < kept_from => Some(Refusal::Dropped { kept_from }),
            _ => None,
        }
    }

    /// How long a partition of `processed_events` is: the days configured
    /// ([`Self::with_partition_days`]), or else the span rating admits
    /// (`max_age + max_future + 2 × margin`) rounded up to whole days, so
    /// that span meets at most two partitions.
    pub fn partition_length(&self) -> TimeDelta {
        if let Some(days) = self.partition_days {
            return TimeDelta::days(i64::from(days));
        }
        let span = self
            .max_age
            .checked_add(&self.max_future)
            .and_then(|s| s.checked_add(&self.margin))
            .and_then(|s| s.checked_add(&self.margin))
            .unwrap_or(TimeDelta::MAX);
        let days = span.num_days() + i64::from(span.num_seconds() % 86_400 != 0 || span.is_zero());
        TimeDelta::try_days(days).unwrap_or(TimeDelta::MAX)
    }

    /// The partitions to create so that every time from `from` through
    /// `through` has one, each [`Self::partition_length`] long: the first
    /// starts where the newest one ends (`last_end`), or at the start of the
    /// day of `from` when there is none or it ends before that day (times
    /// before `from` need none: the prune passes the cutoff, and drops every
    /// partition ending before it).
    pub fn to_create(
        &self,
        last_end: Option<DateTime<Utc>>,
        from: DateTime<Utc>,
        through: DateTime<Utc>,
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let length = self.partition_length();
        let first_day = from.duration_trunc(DAY).unwrap_or(from);
        let mut start = last_end.map_or(first_day, |end| end.max(first_day));
        let mut create = Vec::new();
        while start <= through {
            let end = plus(start, length);
            if end == start {
                break;
            }
            create.push((start, end));
            start = end;
        }
        create
    }

    /// Of `partitions`, those to drop at `now`: every one that ends at or
    /// before the cutoff (rating refuses every time it holds).
    pub fn to_drop(&self, partitions: &[Span], now: DateTime<Utc>) -> Vec<Span> {
        let cutoff = self.cutoff(now);
        partitions
            .iter()
            .filter(|p| p.end <= cutoff)
            .copied()
            .collect()
    }

    /// How far ahead the periodic prune keeps partitions: through the newest
    /// time rating admits, so a batch seldom has to create one.
    pub fn ahead(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        self.newest(now)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;

    fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
    }

    /// 35 days, 5 minutes, 3 days: the defaults.
    fn window() -> DedupeWindow {
        DedupeWindow::new(
            Duration::from_secs(35 * 86_400),
            Duration::from_secs(300),
            Duration::from_secs(3 * 86_400),
        )
    }

    #[test]
    fn rating_admits_the_ingest_window_and_the_margin_either_side() {
        let w = window();
        let now = at(12, 1, 12);
        assert_eq!(
            w.ingest_bounds(now),
            (at(10, 27, 12), now + TimeDelta::minutes(5))
        );
        assert_eq!(w.cutoff(now), at(10, 24, 12));
        assert_eq!(w.newest(now), at(12, 4, 12) + TimeDelta::minutes(5));
        assert!(w.admits(at(10, 24, 12), now));
        assert!(!w.admits(at(10, 24, 12) - TimeDelta::seconds(1), now));
        assert!(w.admits(at(12, 4, 12) + TimeDelta::minutes(5), now));
        assert!(!w.admits(at(12, 4, 12) + TimeDelta::minutes(6), now));
        // Whatever ingest accepted is still rated a margin later.
        let (oldest, newest) = w.ingest_bounds(now);
        let later = now + TimeDelta::days(3);
        assert!(w.admits(oldest, later) && w.admits(newest, later));
    }

    #[test]
    fn an_event_is_refused_outside_the_window_or_before_the_partitions_kept() {
        let w = window();
        let now = at(12, 1, 12);
        let window_refusal = Some(Refusal::OutsideWindow {
            cutoff: w.cutoff(now),
            newest: w.newest(now),
        });
        let old = at(10, 20, 0);
        assert_eq!(w.refusal(old, Some(now), None), window_refusal);
        assert_eq!(w.refusal(old, None, None), None);
        // No clock: only the partitions kept bound it.
        let kept_from = Some(at(11, 1, 0));
        assert_eq!(
            w.refusal(old, None, kept_from),
            Some(Refusal::Dropped {
                kept_from: at(11, 1, 0)
            })
        );
        assert_eq!(w.refusal(at(11, 1, 0), None, kept_from), None);
        // Inside the window but dropped (a shorter window pruned it).
        assert_eq!(
            w.refusal(at(10, 30, 0), Some(now), kept_from),
            Some(Refusal::Dropped {
                kept_from: at(11, 1, 0)
            })
        );
        assert_eq!(w.refusal(at(11, 30, 0), Some(now), kept_from), None);
    }

    #[test]
    fn a_partition_spans_everything_rating_admits_in_whole_days() {
        // 35 d + 5 min + 6 d, rounded up.
        assert_eq!(window().partition_length(), TimeDelta::days(42));
        let exact = DedupeWindow::new(
            Duration::from_secs(2 * 86_400),
            Duration::ZERO,
            Duration::from_secs(86_400),
        );
        assert_eq!(exact.partition_length(), TimeDelta::days(4));
        let zero = DedupeWindow::new(Duration::ZERO, Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.partition_length(), TimeDelta::days(1));
        let huge = DedupeWindow::new(Duration::MAX, Duration::MAX, Duration::MAX);
        assert!(huge.partition_length() > TimeDelta::days(1_000_000));
        assert!(
            huge.to_create(Some(at(12, 1, 0)), at(12, 1, 0), at(12, 2, 0))
                .len()
                == 1
        );
    }

    #[test]
    fn partitions_are_created_end_to_end_through_the_time_asked() {
        let w = window();
        assert_eq!(
            w.to_create(Some(at(12, 1, 0)), at(1, 1, 0), at(11, 30, 0)),
            []
        );
        assert_eq!(
            w.to_create(Some(at(12, 1, 0)), at(1, 1, 0), at(12, 1, 0)),
            [(at(12, 1, 0), at(12, 1, 0) + TimeDelta::days(42))]
        );
        let three = w.to_create(Some(at(1, 1, 0)), at(1, 1, 0), at(4, 1, 0));
        assert_eq!(three.len(), 3);
        assert_eq!(three[0].0, at(1, 1, 0));
        assert!(three.windows(2).all(|p| p[0].1 == p[1].0));
        assert!(three[2].1 > at(4, 1, 0));
        // Far behind `from` (nothing kept for weeks): from its day.
        assert_eq!(
            w.to_create(Some(at(1, 1, 0)), at(11, 1, 7), at(12, 1, 7)),
            [(at(11, 1, 0), at(11, 1, 0) + TimeDelta::days(42))]
        );
        // None yet: from the start of the day of `from`.
        assert_eq!(
            w.to_create(None, at(11, 1, 7), at(12, 1, 7)),
            [(at(11, 1, 0), at(11, 1, 0) + TimeDelta::days(42))]
        );
    }

    #[test]
    fn a_partition_is_dropped_once_it_ends_at_the_cutoff() {
        let w = window();
        let parts = [
            Span {
                start: None,
                end: at(10, 1, 0),
            },
            Span {
                start: Some(at(10, 1, 0)),
                end: at(11, 12, 0),
            },
        ];
        let first_gone = at(10, 1, 0) + TimeDelta::days(38);
        assert_eq!(w.to_drop(&parts, first_gone - TimeDelta::seconds(1)), []);
        assert_eq!(w.to_drop(&parts, first_gone), [parts[0]]);
        assert_eq!(
            w.to_drop(&parts, at(11, 12, 0) + TimeDelta::days(38)),
            parts
        );
    }

    /// Day after day of traffic, pruned once a day: never more than two
    /// partitions, and every admitted time has one.
    #[test]
    fn partitions_stay_few_over_months_of_traffic() {
        assert_eq!(partitions_kept_over_400_days(window()), 2);
    }

    /// Partitions by day keep the window and less than a day more: pruned
    /// at midnight, rating admits from 38 days back to 3 days and 5 minutes
    /// ahead, which meets 42 days.
    #[test]
    fn partitions_by_day_keep_the_window_and_a_day() {
        let by_day = window().with_partition_days(1);
        assert_eq!(by_day.partition_length(), TimeDelta::days(1));
        assert_eq!(
            by_day.to_create(None, at(11, 1, 7), at(11, 3, 7)),
            [
                (at(11, 1, 0), at(11, 2, 0)),
                (at(11, 2, 0), at(11, 3, 0)),
                (at(11, 3, 0), at(11, 4, 0))
            ]
        );
        assert_eq!(partitions_kept_over_400_days(by_day), 42);
        assert_eq!(window().with_partition_days(0), window());
    }

    /// The most partitions kept while 400 days pass, pruned once a day;
    /// every admitted time always has one.
    fn partitions_kept_over_400_days(w: DedupeWindow) -> usize {
        let mut parts: Vec<Span> = Vec::new();
        let start = at(1, 1, 0);
        let mut most = 0;
        for day in 0..400 {
            let now = start + TimeDelta::days(day);
            let last = parts.last().map(|p| p.end);
            for (s, e) in w.to_create(last, w.cutoff(now), w.ahead(now)) {
                parts.push(Span {
                    start: Some(s),
                    end: e,
                });
            }
            let gone = w.to_drop(&parts, now);
            parts.retain(|p| !gone.contains(p));
            most = most.max(parts.len());
            assert!(parts[0].start.unwrap() <= w.cutoff(now));
            assert!(parts.last().unwrap().end > w.newest(now));
        }
        most
    }
}
