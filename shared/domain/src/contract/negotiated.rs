//! A negotiated price book: a contract term that prices one SKU's usage
//! with its own book (any model a price book has: per unit, graduated,
//! volume, package, free units) instead of list, in the contract's
//! currency.
//!
//! A negotiated SKU ignores list prices, so its usage lines of the period
//! are priced together: a statement has one usage line per list price
//! version and bound resource of a SKU, but the book's tiers act once on
//! the SKU's whole period quantity (the sum of those lines' quantities,
//! every bound resource of the account included: the customer negotiated a
//! price for the SKU, not per resource). The book's charge for it, rounded
//! once, is what the customer pays for the SKU's usage; the discount, the
//! lines' price before the contract (`amount`: `list_amount` plus the
//! platform's markup) less that charge, is spread over the lines in
//! proportion to their price before the contract, by largest remainder
//! ([`crate::Money::split`]: ties to the earlier line, in statement order),
//! so the shares sum exactly to it. Each line keeps its own `list_amount`;
//! its `discount` is its share, split exactly as a percentage discount's
//! ([`super::pricing::take_off`]): platform-funded, the partner is settled
//! at list; partner-funded, its net falls by it. Every line is discounted
//! at the same rate, so no line's negotiated amount is negative nor above
//! its price before the contract (splitting by tiers consumed in line
//! order could be: a volume book's price falls as the quantity grows).
//!
//! Precedence: discounts never stack. A usage line priced by a negotiated
//! book is not also percent-discounted; the SKU's other lines (a list
//! book's recurring fee or minimum's true-up) are left to percentage terms.
//! A negotiated book never raises a bill: where it would charge more than
//! the SKU's lines' price before it, the discount is zero and the lines
//! bill their list price (the book is a ceiling, not a surcharge).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

use super::pricing::{take_off, Discounted};
use super::Contract;
use crate::money::checked;
use crate::statement::{LineKind, StatementLine};
use crate::{Currency, Money, MoneyError, ProviderId, Sku};

/// What the negotiated books of `contract` do to `lines` (a statement's own
/// lines of the period beginning at `start`): per line, in order, None when
/// no negotiated term prices it (not a usage line, or its SKU has no
/// negotiated book in force), else its price ([`Discounted`], a zero
/// discount when the book is above list).
pub fn price_lines(
    lines: &[StatementLine],
    contract: &Contract,
    start: DateTime<Utc>,
    currency: Currency,
) -> Result<Vec<Option<Discounted>>, MoneyError> {
    let mut out = vec![None; lines.len()];
    // Each negotiated SKU's usage lines, by their index, in statement order.
    let mut skus: BTreeMap<(&ProviderId, &Sku), Vec<usize>> = BTreeMap::new();
    for (index, line) in lines.iter().enumerate() {
        if line.kind == LineKind::Usage && line.adjusts.is_none() {
            skus.entry((&line.provider.id, &line.sku))
                .or_default()
                .push(index);
        }
    }
    for ((provider, sku), indices) in skus {
        let Some(term) = contract.negotiated_for(provider, sku, start) else {
            continue;
        };
        let Some(book) = &term.price_book else {
            continue;
        };
        let quantity = checked::sum(indices.iter().map(|i| lines[*i].quantity))?;
        let before = checked::sum(indices.iter().map(|i| lines[*i].amount))?;
        let charged = book
            .charges(quantity, currency)
            .map_err(|_| MoneyError::Overflow)?
            .usage;
        let discount = checked::sub(before, currency.round(charged))?.max(Decimal::ZERO);
        let weights: Vec<Decimal> = indices.iter().map(|i| lines[*i].amount).collect();
        let shares = Money::new(discount, currency).split(&weights)?;
        for (index, share) in indices.into_iter().zip(shares) {
            let line = &lines[index];
            out[index] = Some(take_off(
                share.amount(),
                line.amount,
                line.markup,
                line.platform_fee,
                line.partner_net,
                term.funded_by,
            )?);
        }
    }
    Ok(out)
}
