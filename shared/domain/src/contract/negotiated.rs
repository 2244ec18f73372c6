//! A negotiated price book: a contract term that prices one SKU's usage
//! with its own book (any model a price book has: per unit, graduated,
//! volume, package, free units) instead of list, in the contract's
//! currency.
//!
//! The line keeps what list would have billed: the customer's price before
//! the contract is the line's `amount` (its `list_amount` plus the
//! platform's markup, if any), the negotiated amount is the book's charge
//! for the line's quantity (tiers act on it as list pricing's do: a line is
//! the period's usage of one list price version and bound resource), rounded
//! once, and the difference is the line's `discount`, split exactly as a
//! percentage discount's ([`super::pricing::take_off`]): platform-funded,
//! the partner is settled at list; partner-funded, its net falls by it.
//!
//! Precedence: discounts never stack. A usage line priced by a negotiated
//! book is not also percent-discounted; the SKU's other lines (a list
//! book's recurring fee or minimum's true-up) are left to percentage terms.
//! A negotiated book never raises a bill: where it would charge more than
//! the line's price before it, the discount is zero and the line bills its
//! list price (the book is a ceiling, not a surcharge).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::pricing::{take_off, Discounted};
use super::Contract;
use crate::money::checked;
use crate::statement::{LineKind, StatementLine};
use crate::{Currency, MoneyError};

/// What the negotiated book of `contract` (if one prices `line`'s SKU in
/// the period beginning at `start`) does to `line`: None when no
/// negotiated term covers it or it is not a usage line.
pub fn line_price(
    line: &StatementLine,
    contract: &Contract,
    start: DateTime<Utc>,
    currency: Currency,
) -> Result<Option<Discounted>, MoneyError> {
    if line.kind != LineKind::Usage {
        return Ok(None);
    }
    let Some(term) = contract.negotiated_for(&line.provider.id, &line.sku, start) else {
        return Ok(None);
    };
    let Some(book) = &term.price_book else {
        return Ok(None);
    };
    let charged = book
        .charges(line.quantity, currency)
        .map_err(|_| MoneyError::Overflow)?
        .usage;
    let discount = checked::sub(line.amount, currency.round(charged))?.max(Decimal::ZERO);
    take_off(
        discount,
        line.amount,
        line.markup,
        line.platform_fee,
        line.partner_net,
        term.funded_by,
    )
    .map(Some)
}
