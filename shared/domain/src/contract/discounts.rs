//! Discounts in reconciliation (issue 18, item 4): a month's discounts as
//! their own category beside list value and markup. From
//! [`super::pricing`]'s table, every line keeps `amount = list_amount +
//! markup` with `markup` already less the discount `D`, so over any set of
//! lines, exactly:
//!
//! `list + markups_before_discounts - discounts = billed before credits`
//!
//! where `markups_before_discounts = Σ (markup + D)` and `billed` is the
//! lines' amounts (the invoices' subtotals).

use rust_decimal::Decimal;

use crate::money::checked;
use crate::MoneyError;

/// A month's line figures in one currency (issued invoices' lines, less
/// those of invoices voided in the month), and what they were billed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscountFigures {
    /// `Σ list_amount`: the providers' list prices.
    pub list: Decimal,
    /// `Σ (markup + discount)`: the platform's markup before discounts.
    pub markups: Decimal,
    /// Discounts the platform funds (the partner settled at list).
    pub platform_funded: Decimal,
    /// Discounts partners fund (their net lower by as much).
    pub partner_funded: Decimal,
    /// Invoice subtotals less those voided in the month.
    pub billed: Decimal,
}

/// The discount identity's sides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiscountIdentity {
    /// `platform_funded + partner_funded`.
    pub discounts: Decimal,
    /// `list + markups - discounts`: what the lines bill after discounts.
    pub after_discounts: Decimal,
    /// `billed - after_discounts`: zero when it holds.
    pub difference: Decimal,
}

impl DiscountFigures {
    pub fn identity(&self) -> Result<DiscountIdentity, MoneyError> {
        let discounts = checked::add(self.platform_funded, self.partner_funded)?;
        let after_discounts = checked::sub(checked::add(self.list, self.markups)?, discounts)?;
        Ok(DiscountIdentity {
            discounts,
            after_discounts,
            difference: checked::sub(self.billed, after_discounts)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::pricing::discount;
    use crate::contract::{Funder, Scope, Term};
    use crate::Currency;
    use chrono::{TimeZone, Utc};
    use rust_decimal_macros::dec;

    fn term(percent: Decimal, funded_by: Funder) -> Term {
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        Term {
            id: 1,
            scope: Scope::All,
            percent,
            price_book: None,
            funded_by,
            effective_from: at,
            effective_to: at,
            partner_agreed_at: Some(at),
        }
    }

    #[test]
    fn list_plus_markup_less_discounts_is_what_the_lines_bill() {
        let usd = Currency::parse("USD").unwrap();
        // Line 1: list 20.00, markup 2.00 (22.00), 10% platform-funded: 2.20.
        // Line 2: list 33.33, no markup, 15% partner-funded: 5.00 (4.9995).
        // Line 3: first-party 7.00, no discount.
        let one = discount(
            dec!(22.00),
            dec!(2.00),
            dec!(4.00),
            dec!(16.00),
            &term(dec!(10), Funder::Platform),
            usd,
        )
        .unwrap();
        let two = discount(
            dec!(33.33),
            dec!(0),
            dec!(6.67),
            dec!(26.66),
            &term(dec!(15), Funder::Partner),
            usd,
        )
        .unwrap();
        assert_eq!(
            (one.discount, one.amount, one.markup),
            (dec!(2.20), dec!(19.80), dec!(-0.20))
        );
        assert_eq!(
            (two.discount, two.amount, two.markup),
            (dec!(5.00), dec!(28.33), dec!(-5.00))
        );
        let figures = DiscountFigures {
            list: dec!(20.00) + dec!(33.33) + dec!(7.00),
            markups: (one.markup + one.discount) + (two.markup + two.discount),
            platform_funded: one.discount,
            partner_funded: two.discount,
            billed: one.amount + two.amount + dec!(7.00),
        };
        assert_eq!(figures.markups, dec!(2.00));
        assert_eq!(
            figures.identity().unwrap(),
            DiscountIdentity {
                discounts: dec!(7.20),
                after_discounts: dec!(55.13),
                difference: dec!(0),
            }
        );
        // A subtotal a cent off the lines shows as the difference.
        let off = DiscountFigures {
            billed: dec!(55.14),
            ..figures
        };
        assert_eq!(off.identity().unwrap().difference, dec!(0.01));
    }
}
