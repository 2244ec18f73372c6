//! Reconciliation: the identity every month holds in each currency,
//!
//! `invoiced = platform revenue + partner settlements + credits applied`,
//!
//! computed over figures each side reads from its own records (invoice and
//! credit note headers; invoice and credit note lines; the settlements; the
//! invoices' credit lines), and the checks of each invoice against its own
//! lines, credits and the credit ledger.

use rust_decimal::Decimal;

use crate::money::checked::{add, sub};
use crate::MoneyError;

/// One month's figures in one currency, as read from the database.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MonthFigures {
    /// Subtotals (before credits) of the month's issued invoices (finalized,
    /// voided since or not).
    pub subtotals: Decimal,
    /// Subtotals of invoices voided in the month.
    pub voided: Decimal,
    /// Totals of credit notes issued in the month.
    pub credit_notes: Decimal,
    /// Markup and platform fees of the issued invoices' lines, less those
    /// of the invoices voided in the month.
    pub platform_fees: Decimal,
    /// The platform's part of the month's credit notes.
    pub platform_credited: Decimal,
    /// Credits the issued invoices apply, less those of voided ones.
    pub credits_applied: Decimal,
    /// Net payable of every partner's settlement.
    pub partner_settlements: Decimal,
}

/// The two sides of the identity, and how far apart they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `subtotals - voided - credit_notes`.
    pub invoiced: Decimal,
    /// `platform_fees - platform_credited - credits_applied`.
    pub platform_revenue: Decimal,
    pub partner_settlements: Decimal,
    pub credits_applied: Decimal,
    /// `invoiced - (platform_revenue + partner_settlements + credits_applied)`.
    pub difference: Decimal,
}

impl Identity {
    pub fn holds(&self) -> bool {
        self.difference.is_zero()
    }
}

impl MonthFigures {
    /// The identity of the month; an amount beyond `Decimal` is an error.
    pub fn identity(&self) -> Result<Identity, MoneyError> {
        let invoiced = sub(sub(self.subtotals, self.voided)?, self.credit_notes)?;
        let platform_revenue = sub(
            sub(self.platform_fees, self.platform_credited)?,
            self.credits_applied,
        )?;
        let accounted = add(
            add(platform_revenue, self.partner_settlements)?,
            self.credits_applied,
        )?;
        Ok(Identity {
            invoiced,
            platform_revenue,
            partner_settlements: self.partner_settlements,
            credits_applied: self.credits_applied,
            difference: sub(invoiced, accounted)?,
        })
    }
}

/// An issued invoice's header beside what its own records sum to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceFigures {
    pub subtotal: Decimal,
    pub credits_total: Decimal,
    pub total: Decimal,
    /// The sum of its lines' amounts.
    pub lines: Decimal,
    /// The sum of its credit lines.
    pub credits: Decimal,
    /// What the credit ledger drew for its account-period.
    pub drawn: Decimal,
    /// Its lines whose amount is not markup + platform fee + partner net.
    pub split_off: i64,
}

/// What is wrong with invoice `number`, one sentence a problem.
pub fn invoice_problems(number: &str, f: &InvoiceFigures) -> Vec<String> {
    let mut problems = Vec::new();
    if f.lines != f.subtotal {
        problems.push(format!(
            "{number}: subtotal {} but its lines sum to {}",
            f.subtotal, f.lines
        ));
    }
    if f.credits != f.credits_total {
        problems.push(format!(
            "{number}: credits {} but its credit lines sum to {}",
            f.credits_total, f.credits
        ));
    }
    // A subtotal and credits whose difference does not fit are no total either.
    if sub(f.subtotal, f.credits_total) != Ok(f.total) {
        problems.push(format!(
            "{number}: total {} is not {} - {}",
            f.total, f.subtotal, f.credits_total
        ));
    }
    if f.drawn != f.credits {
        problems.push(format!(
            "{number}: the credit ledger drew {} for its period, the invoice applies {}",
            f.drawn, f.credits
        ));
    }
    if f.split_off > 0 {
        problems.push(format!(
            "{number}: {} line(s) whose amount is not markup + platform fee + partner net",
            f.split_off
        ));
    }
    problems
}

/// The problem of a credit note whose total is not the sum of its lines.
pub fn credit_note_problem(number: &str) -> String {
    format!("{number}: its total is not the sum of its lines")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    #[test]
    fn a_month_reconciles_when_every_amount_is_accounted_for() {
        // Invoiced 1,000.00, 100.00 voided and a 50.00 credit note (of which
        // 10.00 was the platform's); lines carry 300.00 of platform fees net
        // of the void, credits paid 20.00, partners are owed 540.00.
        let month = MonthFigures {
            subtotals: dec!(1000.00),
            voided: dec!(100.00),
            credit_notes: dec!(50.00),
            platform_fees: dec!(300.00),
            platform_credited: dec!(10.00),
            credits_applied: dec!(20.00),
            partner_settlements: dec!(560.00),
        };
        let identity = month.identity().unwrap();
        assert_eq!(
            identity,
            Identity {
                invoiced: dec!(850.00),
                platform_revenue: dec!(270.00),
                partner_settlements: dec!(560.00),
                credits_applied: dec!(20.00),
                difference: dec!(0.00),
            }
        );
        assert!(identity.holds());
    }

    #[test]
    fn a_missing_amount_shows_as_the_difference() {
        let month = MonthFigures {
            subtotals: dec!(100.00),
            platform_fees: dec!(20.00),
            partner_settlements: dec!(79.99),
            ..MonthFigures::default()
        };
        let identity = month.identity().unwrap();
        assert_eq!(identity.difference, dec!(0.01));
        assert!(!identity.holds());
    }

    #[test]
    fn an_invoice_is_checked_against_its_own_records() {
        let sound = InvoiceFigures {
            subtotal: dec!(10.00),
            credits_total: dec!(2.00),
            total: dec!(8.00),
            lines: dec!(10.00),
            credits: dec!(2.00),
            drawn: dec!(2.00),
            split_off: 0,
        };
        assert!(invoice_problems("TLY-2026-000001", &sound).is_empty());
        let off = InvoiceFigures {
            lines: dec!(9.00),
            credits: dec!(1.00),
            total: dec!(9.00),
            drawn: dec!(2.00),
            split_off: 2,
            ..sound
        };
        assert_eq!(
            invoice_problems("TLY-2026-000001", &off),
            [
                "TLY-2026-000001: subtotal 10.00 but its lines sum to 9.00",
                "TLY-2026-000001: credits 2.00 but its credit lines sum to 1.00",
                "TLY-2026-000001: total 9.00 is not 10.00 - 2.00",
                "TLY-2026-000001: the credit ledger drew 2.00 for its period, the invoice applies 1.00",
                "TLY-2026-000001: 2 line(s) whose amount is not markup + platform fee + partner net",
            ]
        );
        assert_eq!(
            credit_note_problem("TLY-CN-2026-000001"),
            "TLY-CN-2026-000001: its total is not the sum of its lines"
        );
    }

    #[test]
    fn figures_at_the_decimal_limits_are_an_error_or_a_problem_not_a_panic() {
        let month = MonthFigures {
            subtotals: Decimal::MIN,
            voided: dec!(1),
            ..MonthFigures::default()
        };
        assert_eq!(month.identity(), Err(MoneyError::Overflow));
        let month = MonthFigures {
            platform_fees: Decimal::MAX,
            partner_settlements: dec!(1),
            ..MonthFigures::default()
        };
        assert_eq!(month.identity(), Err(MoneyError::Overflow));
        // A total beside a subtotal and credits whose difference does not fit.
        let figures = InvoiceFigures {
            subtotal: Decimal::MAX,
            credits_total: dec!(-1),
            total: Decimal::MAX,
            lines: Decimal::MAX,
            credits: dec!(-1),
            drawn: dec!(-1),
            split_off: 0,
        };
        assert_eq!(
            invoice_problems("TLY-2026-000001", &figures),
            [format!(
                "TLY-2026-000001: total {} is not {} - -1",
                Decimal::MAX,
                Decimal::MAX
            )]
        );
    }

    proptest! {
        /// Splitting each invoiced line into platform fee, partner net and
        /// credits applied, whatever the amounts, the identity holds.
        #[test]
        fn the_identity_holds_for_any_consistent_month(
            lines in proptest::collection::vec((0i64..100_000, 0i64..100_000, 0i64..100_000), 0..10),
            voided in 0i64..50_000,
            voided_partner in 0i64..50_000,
        ) {
            let cents = |c: i64| Decimal::new(c, 2);
            let fees: Decimal = lines.iter().map(|(f, _, _)| cents(*f)).sum();
            let partner: Decimal = lines.iter().map(|(_, p, _)| cents(*p)).sum();
            let credits: Decimal = lines.iter().map(|(_, _, c)| cents(*c)).sum();
            // Credits pay part of the subtotal: the platform bears them.
            let month = MonthFigures {
                subtotals: fees + partner + cents(voided) + cents(voided_partner),
                voided: cents(voided) + cents(voided_partner),
                credit_notes: Decimal::ZERO,
                platform_fees: fees,
                platform_credited: Decimal::ZERO,
                credits_applied: credits,
                partner_settlements: partner,
            };
            let identity = month.identity().unwrap();
            prop_assert!(identity.holds());
            prop_assert_eq!(
                identity.invoiced,
                identity.platform_revenue + identity.partner_settlements + identity.credits_applied
            );
        }
    }
}
