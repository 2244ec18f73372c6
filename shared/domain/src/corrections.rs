//! Credit notes: what a credit note gives back on each line of a finalized
//! invoice, and how each line's credit splits between platform and partner.
//!
//! A whole-invoice note (no lines asked) gives back what is left of the
//! amount due (credits paid the rest), spread over the lines in proportion
//! to what is left to credit on each (largest remainder: the parts sum to
//! it exactly). A line is never credited beyond its amount across all its
//! notes, nor the invoice beyond its amount due. The partner's share of a
//! line's credit is in the invoice line's proportion (`partner_net /
//! amount`), computed on everything credited on the line so far and rounded
//! once, less what earlier notes gave back: many small notes never give back
//! more than the partner earned.

use rust_decimal::Decimal;
use std::collections::BTreeMap;

use crate::money::checked;
use crate::{Currency, Money, MoneyError};

/// An invoice line as a credit note sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditableLine {
    pub position: i32,
    pub amount: Decimal,
    pub partner_net: Decimal,
    /// Credited on it by earlier notes, and the partner's part of that.
    pub credited: Decimal,
    pub partner_credited: Decimal,
}

/// One line of a new credit note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditSplit {
    /// The invoice line it credits.
    pub position: i32,
    pub amount: Decimal,
    pub platform_part: Decimal,
    pub partner_part: Decimal,
}

/// Why a credit note is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditNoteError {
    #[error("the invoice is credited in full")]
    NothingToCredit,
    #[error("the invoice has no line {0}")]
    UnknownLine(i32),
    #[error("line {position}: {amount} is not a positive amount in whole minor units")]
    InvalidAmount { position: i32, amount: Decimal },
    #[error("line {position}: {amount} is more than the {left} left to credit")]
    ExceedsLine {
        position: i32,
        amount: Decimal,
        left: Decimal,
    },
    #[error("{total} more would credit {credited} of an invoice whose amount due is {due}")]
    ExceedsInvoice {
        total: Decimal,
        credited: Decimal,
        due: Decimal,
    },
    #[error(transparent)]
    Money(#[from] MoneyError),
}

impl CreditNoteError {
    /// The stable API code.
    pub fn code(&self) -> &'static str {
        match self {
            CreditNoteError::NothingToCredit => "nothing_to_credit",
            CreditNoteError::UnknownLine(_) => "unknown_line",
            CreditNoteError::InvalidAmount { .. } => "invalid_amount",
            CreditNoteError::ExceedsLine { .. } => "credit_exceeds_line",
            CreditNoteError::ExceedsInvoice { .. } => "credit_exceeds_invoice",
            CreditNoteError::Money(MoneyError::Overflow) => "amount_overflow",
            CreditNoteError::Money(_) => "internal",
        }
    }
}

/// The lines of a new credit note on an invoice whose amount due is `due`,
/// of which earlier notes credited `credited_before`. `lines` are the
/// invoice's lines; `asked` the lines to credit with their amounts (none:
/// what is left on the line), or empty for the whole invoice.
pub fn credit_note(
    currency: Currency,
    due: Decimal,
    credited_before: Decimal,
    lines: &[CreditableLine],
    asked: &[(i32, Option<Decimal>)],
) -> Result<Vec<CreditSplit>, CreditNoteError> {
    let mut lines: BTreeMap<i32, CreditableLine> =
        lines.iter().map(|l| (l.position, l.clone())).collect();
    let requested: Vec<(i32, Option<Decimal>)> = if asked.is_empty() {
        whole_invoice(currency, due, credited_before, &lines)?
    } else {
        asked.to_vec()
    };
    let mut out = Vec::with_capacity(requested.len());
    for (position, amount) in requested {
        let line = lines
            .get_mut(&position)
            .ok_or(CreditNoteError::UnknownLine(position))?;
        let left = checked::sub(line.amount, line.credited)?;
        let amount = amount.unwrap_or(left);
        if amount <= Decimal::ZERO || currency.round(amount) != amount {
            return Err(CreditNoteError::InvalidAmount { position, amount });
        }
        if amount > left {
            return Err(CreditNoteError::ExceedsLine {
                position,
                amount,
                left,
            });
        }
        line.credited = checked::add(line.credited, amount)?;
        let partner_part = if line.amount.is_zero() {
            Decimal::ZERO
        } else {
            let share = checked::div(checked::mul(line.credited, line.partner_net)?, line.amount)?;
            checked::sub(currency.round(share), line.partner_credited)?
        };
        line.partner_credited = checked::add(line.partner_credited, partner_part)?;
        out.push(CreditSplit {
            position,
            amount,
            platform_part: checked::sub(amount, partner_part)?,
            partner_part,
        });
    }
    if out.is_empty() {
        return Err(CreditNoteError::NothingToCredit);
    }
    let total = checked::sum(out.iter().map(|l| l.amount))?;
    let credited = checked::add(credited_before, total)?;
    if credited > due {
        return Err(CreditNoteError::ExceedsInvoice {
            total,
            credited,
            due,
        });
    }
    Ok(out)
}

/// What a whole-invoice note credits on each line: what is left of the
/// amount due, spread over the lines in proportion to what is left on each.
fn whole_invoice(
    currency: Currency,
    due: Decimal,
    credited_before: Decimal,
    lines: &BTreeMap<i32, CreditableLine>,
) -> Result<Vec<(i32, Option<Decimal>)>, CreditNoteError> {
    let mut open: Vec<(i32, Decimal)> = Vec::with_capacity(lines.len());
    for (position, line) in lines {
        let left = checked::sub(line.amount, line.credited)?;
        if left > Decimal::ZERO {
            open.push((*position, left));
        }
    }
    let weights: Vec<Decimal> = open.iter().map(|(_, left)| *left).collect();
    let target = checked::sub(due, credited_before)?.min(checked::sum(weights.iter().copied())?);
    if open.is_empty() || target <= Decimal::ZERO {
        return Err(CreditNoteError::NothingToCredit);
    }
    let parts = Money::new(target, currency).split(&weights)?;
    Ok(open
        .iter()
        .zip(parts)
        .filter(|(_, part)| !part.is_zero())
        .map(|((position, _), part)| (*position, Some(part.amount())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn line(position: i32, amount: Decimal, partner_net: Decimal) -> CreditableLine {
        CreditableLine {
            position,
            amount,
            partner_net,
            credited: Decimal::ZERO,
            partner_credited: Decimal::ZERO,
        }
    }

    fn parts(splits: &[CreditSplit]) -> Vec<(i32, Decimal, Decimal, Decimal)> {
        splits
            .iter()
            .map(|s| (s.position, s.amount, s.platform_part, s.partner_part))
            .collect()
    }

    #[test]
    fn a_line_credit_splits_in_the_invoice_lines_proportion() {
        // A partner line: 100.00 of which the partner nets 80.00.
        let lines = [
            line(0, dec!(100.00), dec!(80.00)),
            line(1, dec!(50.00), dec!(0)),
        ];
        let note = credit_note(
            usd(),
            dec!(150.00),
            dec!(0),
            &lines,
            &[(0, Some(dec!(25.00)))],
        )
        .unwrap();
        assert_eq!(parts(&note), [(0, dec!(25.00), dec!(5.00), dec!(20.00))]);
        // No amount: what is left on the line; first-party lines go to the platform.
        let note = credit_note(usd(), dec!(150.00), dec!(0), &lines, &[(1, None)]).unwrap();
        assert_eq!(parts(&note), [(1, dec!(50.00), dec!(50.00), dec!(0))]);
    }

    #[test]
    fn many_small_notes_never_give_the_partner_more_than_it_earned() {
        // 10.00 with 6.67 to the partner, credited in three notes of 3.33,
        // 3.33 and 3.34: the partner gets back 6.67 in all, not 3 × 2.22.
        let mut l = line(0, dec!(10.00), dec!(6.67));
        let mut partner_back = Decimal::ZERO;
        let mut credited_before = Decimal::ZERO;
        for amount in [dec!(3.33), dec!(3.33), dec!(3.34)] {
            let note = credit_note(
                usd(),
                dec!(10.00),
                credited_before,
                std::slice::from_ref(&l),
                &[(0, Some(amount))],
            )
            .unwrap();
            l.credited += note[0].amount;
            l.partner_credited += note[0].partner_part;
            partner_back += note[0].partner_part;
            credited_before += note[0].amount;
        }
        assert_eq!(partner_back, dec!(6.67));
        assert_eq!(l.credited, dec!(10.00));
    }

    #[test]
    fn a_whole_invoice_note_spreads_the_amount_due_over_what_is_left() {
        // Lines of 60.00 and 40.00; credits paid 10.00, so 90.00 is due.
        let lines = [
            line(0, dec!(60.00), dec!(30.00)),
            line(1, dec!(40.00), dec!(0)),
        ];
        let note = credit_note(usd(), dec!(90.00), dec!(0), &lines, &[]).unwrap();
        assert_eq!(
            parts(&note),
            [
                (0, dec!(54.00), dec!(27.00), dec!(27.00)),
                (1, dec!(36.00), dec!(36.00), dec!(0))
            ]
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let lines = [line(0, dec!(10.00), dec!(0))];
        let refused = |asked: &[(i32, Option<Decimal>)], before| {
            credit_note(usd(), dec!(10.00), before, &lines, asked).unwrap_err()
        };
        assert_eq!(
            refused(&[(3, None)], dec!(0)),
            CreditNoteError::UnknownLine(3)
        );
        assert_eq!(
            refused(&[(0, Some(dec!(0.001)))], dec!(0)),
            CreditNoteError::InvalidAmount {
                position: 0,
                amount: dec!(0.001)
            }
        );
        assert_eq!(
            refused(&[(0, Some(dec!(-1)))], dec!(0)).code(),
            "invalid_amount"
        );
        assert_eq!(
            refused(&[(0, Some(dec!(10.01)))], dec!(0)),
            CreditNoteError::ExceedsLine {
                position: 0,
                amount: dec!(10.01),
                left: dec!(10.00)
            }
        );
        assert_eq!(
            refused(&[(0, Some(dec!(5.00)))], dec!(6.00)),
            CreditNoteError::ExceedsInvoice {
                total: dec!(5.00),
                credited: dec!(11.00),
                due: dec!(10.00)
            }
        );
        assert_eq!(refused(&[], dec!(10.00)), CreditNoteError::NothingToCredit);
        assert_eq!(refused(&[], dec!(10.00)).code(), "nothing_to_credit");
    }

    #[test]
    fn a_note_at_the_decimal_limits_is_an_error_not_a_panic() {
        let overflow = CreditNoteError::Money(MoneyError::Overflow);
        // The partner's share of a whole line at the limit: MAX × MAX / MAX.
        let huge = [line(0, Decimal::MAX, Decimal::MAX)];
        let err = credit_note(usd(), Decimal::MAX, dec!(0), &huge, &[(0, None)]).unwrap_err();
        assert_eq!(err, overflow);
        assert_eq!(err.code(), "amount_overflow");
        // A whole-invoice note over two lines whose sum does not fit.
        let two = [
            line(0, Decimal::MAX, dec!(0)),
            line(1, Decimal::MAX, dec!(0)),
        ];
        assert_eq!(
            credit_note(usd(), Decimal::MAX, dec!(0), &two, &[]),
            Err(overflow.clone())
        );
        // Credited before at the limit, and one more note.
        let small = [line(0, dec!(1.00), dec!(0))];
        assert_eq!(
            credit_note(usd(), Decimal::MAX, Decimal::MAX, &small, &[(0, None)]),
            Err(overflow)
        );
        // Within the limits, a line at MAX credits exactly.
        let note = credit_note(usd(), Decimal::MAX, dec!(0), &two[..1], &[(0, None)]).unwrap();
        assert_eq!(parts(&note), [(0, Decimal::MAX, Decimal::MAX, dec!(0))]);
    }

    proptest! {
        /// Every credit note line splits exactly into platform and partner
        /// parts, and a whole-invoice note credits exactly the amount due.
        #[test]
        fn a_whole_invoice_note_credits_the_amount_due_split_exactly(
            amounts in proptest::collection::vec((1i64..100_000, 0u8..=100), 1..6),
            credits in 0i64..50_000,
        ) {
            let lines: Vec<CreditableLine> = amounts
                .iter()
                .zip(0..)
                .map(|((cents, share), position)| {
                    let amount = Decimal::new(*cents, 2);
                    let partner = usd().round(amount * Decimal::from(*share) / dec!(100));
                    line(position, amount, partner)
                })
                .collect();
            let subtotal: Decimal = lines.iter().map(|l| l.amount).sum();
            let due = (subtotal - Decimal::new(credits, 2)).max(Decimal::ZERO);
            match credit_note(usd(), due, Decimal::ZERO, &lines, &[]) {
                Ok(note) => {
                    let total: Decimal = note.iter().map(|l| l.amount).sum();
                    prop_assert_eq!(total, due);
                    for l in &note {
                        prop_assert_eq!(l.platform_part + l.partner_part, l.amount);
                    }
                }
                Err(e) => {
                    prop_assert_eq!(e, CreditNoteError::NothingToCredit);
                    prop_assert_eq!(due, Decimal::ZERO);
                }
            }
        }
    }
}
