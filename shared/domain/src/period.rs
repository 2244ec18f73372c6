//! Billing periods: half-open UTC intervals `[start, end)`.

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("a period must start before it ends")]
    Empty,
    #[error("expected a month as YYYY-MM, got {0:?}")]
    BadMonth(String),
    #[error("a billing anchor day is 1 to 28, got {0}")]
    BadAnchorDay(u32),
}

/// The day of the month an account's periods start on: 1 (calendar months,
/// the default) to 28, so every month has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct AnchorDay(u32);

impl AnchorDay {
    pub const CALENDAR: AnchorDay = AnchorDay(1);

    pub fn new(day: u32) -> Result<Self, PeriodError> {
        if (1..=28).contains(&day) {
            Ok(Self(day))
        } else {
            Err(PeriodError::BadAnchorDay(day))
        }
    }

    pub fn day(&self) -> u32 {
        self.0
    }
}

impl Default for AnchorDay {
    fn default() -> Self {
        Self::CALENDAR
    }
}

impl TryFrom<u32> for AnchorDay {
    type Error = PeriodError;
    fn try_from(day: u32) -> Result<Self, PeriodError> {
        AnchorDay::new(day)
    }
}

impl From<AnchorDay> for u32 {
    fn from(day: AnchorDay) -> u32 {
        day.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawPeriod")]
pub struct Period {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

#[derive(Deserialize)]
struct RawPeriod {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TryFrom<RawPeriod> for Period {
    type Error = PeriodError;
    fn try_from(raw: RawPeriod) -> Result<Self, PeriodError> {
        Period::new(raw.start, raw.end)
    }
}

fn month_start(year: i32, month: u32) -> Option<DateTime<Utc>> {
    day_start(year, month, 1)
}

fn day_start(year: i32, month: u32, day: u32) -> Option<DateTime<Utc>> {
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    Some(Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0)?))
}

impl Period {
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, PeriodError> {
        if start < end {
            Ok(Self { start, end })
        } else {
            Err(PeriodError::Empty)
        }
    }

    /// The calendar month (UTC) that contains `at`.
    pub fn month_containing(at: DateTime<Utc>) -> Self {
        // The fallback is only reachable at the very end of chrono's range.
        Self::month(at.year(), at.month()).unwrap_or(Self {
            start: at,
            end: DateTime::<Utc>::MAX_UTC,
        })
    }

    /// The billing period (UTC) containing `at` of an account whose periods
    /// start on `anchor`: from that day of one month to that day of the next.
    pub fn containing(at: DateTime<Utc>, anchor: AnchorDay) -> Self {
        let (mut year, mut month) = (at.year(), at.month());
        if at.day() < anchor.day() {
            (year, month) = if month == 1 {
                (year - 1, 12)
            } else {
                (year, month - 1)
            };
        }
        let (next_year, next_month) = if month == 12 {
            (year + 1, 1)
        } else {
            (year, month + 1)
        };
        match (
            day_start(year, month, anchor.day()),
            day_start(next_year, next_month, anchor.day()),
        ) {
            (Some(start), Some(end)) => Self { start, end },
            // Only reachable at the very ends of chrono's range.
            _ => Self::month_containing(at),
        }
    }

    fn month(year: i32, month: u32) -> Option<Self> {
        let start = month_start(year, month)?;
        let end = if month == 12 {
            month_start(year + 1, 1)?
        } else {
            month_start(year, month + 1)?
        };
        Some(Self { start, end })
    }

    /// Parses `YYYY-MM` as a calendar month in UTC.
    pub fn parse_month(text: &str) -> Result<Self, PeriodError> {
        let bad = || PeriodError::BadMonth(text.to_owned());
        let (y, m) = text.split_once('-').ok_or_else(bad)?;
        if y.len() != 4 || m.len() != 2 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let month: u32 = m.parse().map_err(|_| bad())?;
        Self::month(year, month).ok_or_else(bad)
    }

    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.start <= at && at < self.end
    }

    /// `YYYY-MM` of the period's start: the name of a monthly period.
    pub fn label(&self) -> String {
        format!("{:04}-{:02}", self.start.year(), self.start.month())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start.to_rfc3339(), self.end.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_containing_covers_the_calendar_month() {
        let at = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap();
        let p = Period::month_containing(at);
        assert_eq!(
            p.start(),
            Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(p.end(), Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap());
        assert_eq!(p.label(), "2026-12");
        assert!(p.contains(at));
        assert!(!p.contains(p.end()));
    }

    #[test]
    fn anchored_periods_run_from_the_anchor_day_to_the_next_month_s() {
        let day = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        let anchor = AnchorDay::new(15).unwrap();
        let p = Period::containing(day(2026, 1, 3, 12), anchor);
        assert_eq!(
            (p.start(), p.end()),
            (day(2025, 12, 15, 0), day(2026, 1, 15, 0))
        );
        let p = Period::containing(day(2026, 1, 15, 0), anchor);
        assert_eq!(
            (p.start(), p.end()),
            (day(2026, 1, 15, 0), day(2026, 2, 15, 0))
        );
        let p = Period::containing(day(2026, 12, 31, 23), anchor);
        assert_eq!(
            (p.start(), p.end()),
            (day(2026, 12, 15, 0), day(2027, 1, 15, 0))
        );
        let at = day(2026, 2, 28, 23);
        assert_eq!(
            Period::containing(at, AnchorDay::CALENDAR),
            Period::month_containing(at)
        );
        assert_eq!(AnchorDay::new(29), Err(PeriodError::BadAnchorDay(29)));
        assert_eq!(AnchorDay::new(0), Err(PeriodError::BadAnchorDay(0)));
    }

    #[test]
    fn parse_month_round_trips_and_rejects_junk() {
        assert_eq!(Period::parse_month("2026-02").unwrap().label(), "2026-02");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", ""] {
            assert!(Period::parse_month(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn empty_period_is_refused() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(Period::new(t, t), Err(PeriodError::Empty));
    }
}
