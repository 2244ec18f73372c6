//! What a contract does to money: a line's discount and who funds it, and a
//! commitment's true-up. Exact: every amount goes through
//! [`crate::money::checked`] and is rounded once, by the currency's rule.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Funder, Term};
use crate::money::checked;
use crate::{Currency, MoneyError};

/// A line's money before and after its discount.
///
/// Invariants: `net = amount_before - discount`; a platform-funded
/// discount leaves `partner_net` as it was (the partner is settled at
/// list); a partner-funded one lowers it by the whole discount, so the
/// platform's share (`net - partner_net`) does not change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discounted {
    /// What the customer pays before the discount (list plus markup).
    pub amount_before: Decimal,
    /// `amount_before × percent / 100`, rounded once.
    pub discount: Decimal,
    pub funded_by: Funder,
    /// What the customer pays: `amount_before - discount`.
    pub net: Decimal,
    /// What the provider is owed after the discount.
    pub partner_net: Decimal,
}

/// The discount `term` gives a line whose customer amount is `amount` and
/// whose provider is owed `partner_net`.
pub fn discount(
    amount: Decimal,
    partner_net: Decimal,
    term: &Term,
    currency: Currency,
) -> Result<Discounted, MoneyError> {
    let discount = currency.round(checked::div(
        checked::mul(amount, term.percent)?,
        Decimal::ONE_HUNDRED,
    )?);
    let net = checked::sub(amount, discount)?;
    let partner_net = match term.funded_by {
        Funder::Platform => partner_net,
        Funder::Partner => checked::sub(partner_net, discount)?,
    };
    Ok(Discounted {
        amount_before: amount,
        discount,
        funded_by: term.funded_by,
        net,
        partner_net,
    })
}

/// A commitment period's true-up: `max(0, minimum - net_billed)`, where
/// `net_billed` is the account's net usage (after discounts, before
/// credits) billed in the commitment period.
pub fn true_up(minimum: Decimal, net_billed: Decimal) -> Result<Decimal, MoneyError> {
    Ok(checked::sub(minimum, net_billed)?.max(Decimal::ZERO))
}
