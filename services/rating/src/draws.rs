//! The credit ledger's draws of an account as a restatement sees them: read
//! once for all its statements, then kept as each statement rewrites its
//! period's draws, so a period starts from the draws of the earlier periods
//! restated before it without a query per statement. No IO.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};
use tally_domain::money::{checked, MoneyError};

/// One account's draws: per period start, what each grant draws there.
pub type Draws = BTreeMap<DateTime<Utc>, BTreeMap<i64, Decimal>>;

/// What each grant drew in the periods before `start` (grants that drew
/// nothing there are absent).
pub fn drawn_before(
    draws: &Draws,
    start: DateTime<Utc>,
) -> Result<HashMap<i64, Decimal>, MoneyError> {
    let mut out: HashMap<i64, Decimal> = HashMap::new();
    for grants in draws.range(..start).map(|(_, grants)| grants) {
        for (grant, amount) in grants {
            match out.get_mut(grant) {
                Some(sum) => *sum = checked::add(*sum, *amount)?,
                None => {
                    out.insert(*grant, *amount);
                }
            }
        }
    }
    Ok(out)
}

/// What each grant draws in the period starting at `start`.
pub fn drawn_in(draws: &Draws, start: DateTime<Utc>) -> HashMap<i64, Decimal> {
    draws
        .get(&start)
        .map(|grants| grants.iter().map(|(g, a)| (*g, *a)).collect())
        .unwrap_or_default()
}

/// The draws after the period starting at `start` was made to draw exactly
/// `made`, as the ledger stores them: a draw whose amount did not change
/// keeps its stored form (`1.50` stays `1.50` when `1.5` is written).
pub fn record(draws: &mut Draws, start: DateTime<Utc>, made: &[(i64, Decimal)]) {
    let before = draws.remove(&start).unwrap_or_default();
    let now: BTreeMap<i64, Decimal> = made
        .iter()
        .map(|(grant, amount)| match before.get(grant) {
            Some(stored) if stored == amount => (*grant, *stored),
            _ => (*grant, *amount),
        })
        .collect();
    if !now.is_empty() {
        draws.insert(start, now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    fn month(m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, 1, 0, 0, 0).unwrap()
    }

    fn ledger() -> Draws {
        BTreeMap::from([
            (month(1), BTreeMap::from([(1, dec!(2.50)), (2, dec!(1))])),
            (month(2), BTreeMap::from([(1, dec!(3))])),
            (month(3), BTreeMap::from([(2, dec!(4))])),
        ])
    }

    #[test]
    fn a_period_starts_from_the_draws_of_the_periods_before_it() {
        let draws = ledger();
        assert_eq!(drawn_before(&draws, month(1)).unwrap(), HashMap::new());
        assert_eq!(
            drawn_before(&draws, month(3)).unwrap(),
            HashMap::from([(1, dec!(5.50)), (2, dec!(1))])
        );
        assert_eq!(drawn_in(&draws, month(2)), HashMap::from([(1, dec!(3))]));
        assert_eq!(drawn_in(&draws, month(4)), HashMap::new());
    }

    #[test]
    fn rewritten_draws_move_what_later_periods_start_from() {
        let mut draws = ledger();
        record(&mut draws, month(1), &[(2, dec!(1.5))]);
        assert_eq!(
            drawn_before(&draws, month(3)).unwrap(),
            HashMap::from([(1, dec!(3)), (2, dec!(1.5))])
        );
        record(&mut draws, month(2), &[]);
        assert_eq!(
            drawn_before(&draws, month(3)).unwrap(),
            HashMap::from([(2, dec!(1.5))])
        );
        assert!(!draws.contains_key(&month(2)));
    }

    #[test]
    fn an_unchanged_draw_keeps_its_stored_form() {
        let mut draws = ledger();
        record(&mut draws, month(1), &[(1, dec!(2.5)), (2, dec!(1.00))]);
        let january = &draws[&month(1)];
        assert_eq!(january[&1].to_string(), "2.50");
        assert_eq!(january[&2].to_string(), "1");
    }
}
