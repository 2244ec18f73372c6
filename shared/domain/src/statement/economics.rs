//! Making lines: usage, allowances, recurring fees, minimum true-ups and
//! plan fees, each split between customer, platform and provider.

use super::{
    LineKind, PlanFeeInput, ProviderKind, ProviderRef, StatementError, StatementLine,
    UsageAggregate,
};
use crate::money::checked::{add as checked_add, sub as checked_sub};
use crate::{Currency, MoneyError, PriceBook};
use rust_decimal::Decimal;

/// Whether `quantity` of a SKU, priced by `book` under the platform's
/// `markup_pct`, can be billed on its own: every line it makes (usage,
/// recurring fee, minimum true-up) and their split compute without
/// overflowing, for any platform fee. The collector refuses at ingest
/// (`amount_overflow`) an event that fails this, rather than accept usage
/// rating could only dead-letter. Usage whose period total overflows,
/// though each event fits, still fails in rating (dead-lettered
/// `amount_overflow`).
pub fn check_billable(
    book: &PriceBook,
    quantity: Decimal,
    markup_pct: Decimal,
    currency: Currency,
) -> Result<(), StatementError> {
    let charges = book.charges(quantity, currency)?;
    let mut total = Decimal::ZERO;
    for exact in [
        Some(charges.usage),
        charges.recurring_fee,
        charges.minimum_true_up,
    ]
    .into_iter()
    .flatten()
    {
        let line = Economics::of(exact, markup_pct, Decimal::ONE_HUNDRED, currency)?;
        total = checked_add(total, line.amount)?;
    }
    Ok(())
}

/// The platform's share of a provider's lines, in percent.
fn fee_pct(provider: &ProviderRef, platform_fee_pct: Decimal) -> Decimal {
    match provider.kind {
        ProviderKind::FirstParty => Decimal::ONE_HUNDRED,
        ProviderKind::Partner => platform_fee_pct,
    }
}

/// A resource's plan fee line: `base fee × hours / period hours`, rounded once.
pub(super) fn plan_fee_line(
    input: PlanFeeInput,
    currency: Currency,
) -> Result<StatementLine, MoneyError> {
    let fee = &input.fee;
    let economics = Economics::of(
        fee.exact,
        Decimal::ZERO,
        fee_pct(&input.provider, input.platform_fee_pct),
        currency,
    )?;
    Ok(StatementLine {
        kind: LineKind::PlanFee,
        provider: input.provider,
        // A plan fee has no SKU of its own: the plan's id names it.
        sku: fee.version.plan.as_sku(),
        description: format!(
            "{} plan — {} of {} hours",
            fee.version.name, fee.hours, fee.period_hours
        ),
        unit: "hour".into(),
        price_id: fee.version.id,
        price_effective_from: fee.version.effective_from,
        quantity: Decimal::from(fee.hours),
        unit_price: None,
        event_count: 0,
        amount: economics.amount,
        list_amount: economics.list_amount,
        markup: economics.markup,
        platform_fee: economics.platform_fee,
        partner_net: economics.partner_net,
        discount: Decimal::ZERO,
        discount_funded_by: None,
        adjusts: None,
        resource: Some(input.resource),
    })
}

/// The lines of one aggregate: the allowance used (if any), the usage
/// beyond it, and the version's recurring fee and minimum true-up.
pub(super) fn usage_lines(
    agg: UsageAggregate,
    currency: Currency,
    lines: &mut Vec<StatementLine>,
) -> Result<(), StatementError> {
    let included = agg.included.min(agg.quantity).max(Decimal::ZERO);
    let beyond = agg
        .quantity
        .checked_sub(included)
        .ok_or(MoneyError::Overflow)?;
    let charges = agg.model.charges(beyond, currency)?;
    let usage = agg.model.model.unit_price();
    let mut parts = Vec::with_capacity(4);
    if !included.is_zero() {
        parts.push((
            LineKind::Allowance,
            included.normalize(),
            Some(Decimal::ZERO),
            Decimal::ZERO,
        ));
    }
    parts.push((LineKind::Usage, beyond.normalize(), usage, charges.usage));
    if let Some(fee) = charges.recurring_fee {
        parts.push((LineKind::RecurringFee, Decimal::ONE, Some(fee), fee));
    }
    if let Some(true_up) = charges.minimum_true_up {
        parts.push((
            LineKind::MinimumTrueUp,
            Decimal::ONE,
            Some(true_up),
            true_up,
        ));
    }
    let fee_pct = fee_pct(&agg.provider, agg.platform_fee_pct);
    for (kind, quantity, unit_price, exact) in parts {
        let economics = Economics::of(exact, agg.markup_pct, fee_pct, currency)?;
        let (description, unit) = match kind {
            LineKind::Usage => (agg.sku_name.clone(), agg.unit.clone()),
            LineKind::Allowance => (
                format!(
                    "{} — included in {}",
                    agg.sku_name,
                    agg.resource
                        .as_ref()
                        .map_or("the plan", |r| r.plan.as_str())
                ),
                agg.unit.clone(),
            ),
            LineKind::RecurringFee => {
                (format!("{} — recurring fee", agg.sku_name), "period".into())
            }
            LineKind::MinimumTrueUp | LineKind::PlanFee | LineKind::CommitmentTrueUp => (
                format!("{} — minimum charge true-up", agg.sku_name),
                "period".into(),
            ),
        };
        lines.push(StatementLine {
            kind,
            provider: agg.provider.clone(),
            sku: agg.sku.clone(),
            description,
            unit,
            price_id: agg.price_id,
            price_effective_from: agg.price_effective_from,
            quantity,
            unit_price,
            event_count: if kind == LineKind::Usage {
                agg.event_count
            } else {
                0
            },
            amount: economics.amount,
            list_amount: economics.list_amount,
            markup: economics.markup,
            platform_fee: economics.platform_fee,
            partner_net: economics.partner_net,
            discount: Decimal::ZERO,
            discount_funded_by: None,
            adjusts: None,
            resource: agg.resource.clone(),
        });
    }
    Ok(())
}

/// The split of one line between customer, platform and provider.
struct Economics {
    amount: Decimal,
    list_amount: Decimal,
    markup: Decimal,
    platform_fee: Decimal,
    partner_net: Decimal,
}

impl Economics {
    /// `fee_pct`: the platform's share of the list amount (100 for
    /// first-party lines).
    fn of(
        exact_list: Decimal,
        markup_pct: Decimal,
        fee_pct: Decimal,
        currency: Currency,
    ) -> Result<Self, MoneyError> {
        let hundred = Decimal::ONE_HUNDRED;
        let with_markup = hundred
            .checked_add(markup_pct)
            .and_then(|factor| exact_list.checked_mul(factor))
            .and_then(|x| x.checked_div(hundred))
            .ok_or(MoneyError::Overflow)?;
        let amount = currency.round(with_markup);
        let list_amount = currency.round(exact_list);
        let platform_fee = currency.round(
            list_amount
                .checked_mul(fee_pct)
                .and_then(|x| x.checked_div(hundred))
                .ok_or(MoneyError::Overflow)?,
        );
        Ok(Self {
            amount,
            list_amount,
            markup: checked_sub(amount, list_amount)?,
            platform_fee,
            partner_net: checked_sub(list_amount, platform_fee)?,
        })
    }
}
