//! What a contract does to money: a line's discount and who funds it, and a
//! commitment's true-up. Exact: every amount goes through
//! [`crate::money::checked`] and is rounded once, by the currency's rule.
//!
//! A discount `D` keeps each line's split whole (`amount = markup +
//! platform_fee + partner_net`, `markup = amount - list_amount`), so
//! settlements and reconciliation need nothing of their own:
//!
//! | funded by | amount | markup | platform_fee | partner_net |
//! |---|---|---|---|---|
//! | platform | `- D` | `- D` | same | same (settled at list) |
//! | partner (agreed) | `- D` | `- D` | `+ D` | `- D` |

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{Contract, Funder, Term};
use crate::money::checked;
use crate::statement::{LineKind, ProviderKind, ProviderRef, Statement, StatementLine};
use crate::{Currency, MoneyError, ProviderId, Sku};

/// A line's money after its discount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discounted {
    /// `amount × percent / 100`, rounded once.
    pub discount: Decimal,
    pub funded_by: Funder,
    /// What the customer pays: `amount - discount`.
    pub amount: Decimal,
    pub markup: Decimal,
    pub platform_fee: Decimal,
    /// What the provider is owed after the discount.
    pub partner_net: Decimal,
}

/// The discount `term` gives a line of `amount` (the customer's price
/// before it), split as `markup + platform_fee + partner_net`.
pub fn discount(
    amount: Decimal,
    markup: Decimal,
    platform_fee: Decimal,
    partner_net: Decimal,
    term: &Term,
    currency: Currency,
) -> Result<Discounted, MoneyError> {
    let discount = currency.round(checked::div(
        checked::mul(amount, term.percent)?,
        Decimal::ONE_HUNDRED,
    )?);
    take_off(
        discount,
        amount,
        markup,
        platform_fee,
        partner_net,
        term.funded_by,
    )
}

/// A line of `amount` (split as `markup + platform_fee + partner_net`)
/// less a `discount` (rounded already) funded by `funded_by`, split as the
/// table above says.
pub fn take_off(
    discount: Decimal,
    amount: Decimal,
    markup: Decimal,
    platform_fee: Decimal,
    partner_net: Decimal,
    funded_by: Funder,
) -> Result<Discounted, MoneyError> {
    let (platform_fee, partner_net) = match funded_by {
        Funder::Platform => (platform_fee, partner_net),
        Funder::Partner => (
            checked::add(platform_fee, discount)?,
            checked::sub(partner_net, discount)?,
        ),
    };
    Ok(Discounted {
        discount,
        funded_by,
        amount: checked::sub(amount, discount)?,
        markup: checked::sub(markup, discount)?,
        platform_fee,
        partner_net,
    })
}

/// A commitment period's true-up: `max(0, minimum - net_billed)`, where
/// `net_billed` is the account's net spend (after discounts, before
/// credits) in the commitment period.
pub fn true_up(minimum: Decimal, net_billed: Decimal) -> Result<Decimal, MoneyError> {
    Ok(checked::sub(minimum, net_billed)?.max(Decimal::ZERO))
}

/// Who a commitment true-up line is billed under: the platform itself
/// (first-party: it keeps the whole line).
pub fn commitment_provider() -> Result<ProviderRef, MoneyError> {
    Ok(ProviderRef {
        id: ProviderId::parse("contract").map_err(|_| MoneyError::Overflow)?,
        name: "Contract".into(),
        kind: ProviderKind::FirstParty,
    })
}

/// Applies `contract` (the account's contract in force at the period's
/// start, if any) to a statement of the period's own lines, before its
/// adjustments and credits: the usage lines of a SKU with a negotiated
/// price book are priced with it, together ([`super::negotiated::price_lines`]), each
/// other line the contract's terms cover is discounted
/// ([`Contract::term_for`]); then, for each monthly commitment
/// whose commitment period is exactly the billing period, a true-up line
/// bills the shortfall of the period's net spend. Sums up again.
///
/// Commitment periods longer than the billing period (quarter, year) are
/// trued up by [`super::commitments::true_up_windows`], which needs the
/// net spend of their earlier billing periods.
pub fn apply(statement: &mut Statement, contract: &Contract) -> Result<(), MoneyError> {
    let period = statement.period;
    let currency = statement.currency;
    if !contract.in_force_at(period.start()) {
        return Ok(());
    }
    let negotiated =
        super::negotiated::price_lines(&statement.lines, contract, period.start(), currency)?;
    for (line, priced) in statement.lines.iter_mut().zip(negotiated) {
        discount_line(line, priced, contract, period.start(), currency)?;
    }
    let net = checked::sum(statement.lines.iter().map(|l| l.amount))?;
    for c in &contract.commitments {
        if c.window_ending_at(period.end()) != Some((period.start(), period.end())) {
            continue;
        }
        let due = currency.round(true_up(c.minimum, net)?);
        if due.is_zero() {
            continue;
        }
        statement
            .lines
            .push(true_up_line(c.id, c.minimum, due, period.start())?);
    }
    statement.sum_up()
}

/// Discounts `line`: by its negotiated price (`negotiated`, from
/// [`super::negotiated::price_lines`]) when it has one, else by the
/// percentage term that covers it, if any.
fn discount_line(
    line: &mut StatementLine,
    negotiated: Option<Discounted>,
    contract: &Contract,
    start: DateTime<Utc>,
    currency: Currency,
) -> Result<(), MoneyError> {
    if line.amount.is_zero() || line.kind == LineKind::CommitmentTrueUp {
        return Ok(());
    }
    let d = match negotiated {
        Some(d) => d,
        None => {
            let Some(term) = contract.term_for(&line.provider.id, &line.sku, start) else {
                return Ok(());
            };
            discount(
                line.amount,
                line.markup,
                line.platform_fee,
                line.partner_net,
                term,
                currency,
            )?
        }
    };
    line.amount = d.amount;
    line.markup = d.markup;
    line.platform_fee = d.platform_fee;
    line.partner_net = d.partner_net;
    line.discount = d.discount;
    line.discount_funded_by = (!d.discount.is_zero()).then_some(d.funded_by);
    Ok(())
}

pub(super) fn true_up_line(
    commitment: i64,
    minimum: Decimal,
    due: Decimal,
    start: DateTime<Utc>,
) -> Result<StatementLine, MoneyError> {
    Ok(StatementLine {
        kind: LineKind::CommitmentTrueUp,
        provider: commitment_provider()?,
        sku: Sku::parse("contract.commitment").map_err(|_| MoneyError::Overflow)?,
        description: format!("Committed spend true-up (minimum {minimum})"),
        unit: "period".into(),
        price_id: commitment,
        price_effective_from: start,
        quantity: Decimal::ONE,
        unit_price: Some(due),
        event_count: 0,
        amount: due,
        list_amount: due,
        markup: Decimal::ZERO,
        platform_fee: due,
        partner_net: Decimal::ZERO,
        discount: Decimal::ZERO,
        discount_funded_by: None,
        adjusts: None,
        resource: None,
    })
}
