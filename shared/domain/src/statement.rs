//! Statements: the priced picture of one account-period, computed purely from
//! the period's usage aggregates and their price versions.

use crate::credits::AppliedCredit;
use crate::money::checked::{add as checked_add, sub as checked_sub};
use crate::plan::PlanFee;
use crate::{
    AccountId, BindingId, Currency, MoneyError, Period, PriceBook, PricingError, ProviderId, Sku,
};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// The platform's own services: always first on a bill.
    FirstParty,
    Partner,
}

impl ProviderKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            ProviderKind::FirstParty => "first_party",
            ProviderKind::Partner => "partner",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "first_party" => Some(ProviderKind::FirstParty),
            "partner" => Some(ProviderKind::Partner),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRef {
    pub id: ProviderId,
    pub name: String,
    pub kind: ProviderKind,
}

impl ProviderRef {
    /// Bill order: the platform first, then partners by name (then id).
    fn bill_order(&self) -> (ProviderKind, &str, &str) {
        (self.kind, self.name.as_str(), self.id.as_str())
    }
}

/// The bound resource a line belongs to: the bill shows it as
/// `prod-db · PS-10` (its name, and the plan it is on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    pub binding: BindingId,
    /// The customer's name for it.
    pub name: String,
    /// The display name of its plan (its newest plan in the period).
    pub plan: String,
}

impl ResourceRef {
    /// `prod-db · PS-10`.
    pub fn label(&self) -> String {
        format!("{} · {}", self.name, self.plan)
    }

    fn bill_order(&self) -> (&str, &str) {
        (self.name.as_str(), self.binding.as_str())
    }
}

/// A bound resource's plan fee for the period, to bill as a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanFeeInput {
    pub provider: ProviderRef,
    pub resource: ResourceRef,
    pub fee: PlanFee,
    /// The platform's share of the provider's list amount, in percent.
    pub platform_fee_pct: Decimal,
}

/// The total quantity of one SKU at one price version in one account-period
/// (of one bound resource, when the usage named one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageAggregate {
    pub provider: ProviderRef,
    pub sku: Sku,
    pub sku_name: String,
    pub unit: String,
    pub price_id: i64,
    pub price_effective_from: DateTime<Utc>,
    pub model: PriceBook,
    pub quantity: Decimal,
    pub event_count: i64,
    /// The platform's markup on this SKU, in percent of the list price.
    pub markup_pct: Decimal,
    /// The platform's share of the provider's list amount, in percent
    /// (100 for first-party providers).
    pub platform_fee_pct: Decimal,
    /// The bound resource the usage belongs to.
    pub resource: Option<ResourceRef>,
    /// How much of `quantity` the resource's plan includes
    /// ([`crate::plan::apply_allowance`]): billed as an allowance line at
    /// no charge; only the rest is priced.
    pub included: Decimal,
}

/// What a statement line bills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineKind {
    /// Usage priced by the version's model.
    #[default]
    Usage,
    /// The version's fixed fee for a period in which the SKU was used.
    RecurringFee,
    /// Brings a period's usage charge up to the version's minimum.
    MinimumTrueUp,
    /// A bound resource's plan fee, prorated by its active hours
    /// (`price_id` is the plan version's id).
    PlanFee,
    /// Usage the resource's plan includes, at no charge.
    Allowance,
    /// Brings the account's net spend of a commitment period up to its
    /// contract's minimum (`price_id` is the commitment's id).
    CommitmentTrueUp,
}

impl LineKind {
    /// Every kind, in the order they are declared.
    pub const ALL: [LineKind; 6] = [
        LineKind::Usage,
        LineKind::RecurringFee,
        LineKind::MinimumTrueUp,
        LineKind::PlanFee,
        LineKind::Allowance,
        LineKind::CommitmentTrueUp,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            LineKind::Usage => "usage",
            LineKind::RecurringFee => "recurring_fee",
            LineKind::MinimumTrueUp => "minimum_true_up",
            LineKind::PlanFee => "plan_fee",
            LineKind::Allowance => "allowance",
            LineKind::CommitmentTrueUp => "commitment_true_up",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    #[serde(default)]
    pub kind: LineKind,
    pub provider: ProviderRef,
    pub sku: Sku,
    pub description: String,
    pub unit: String,
    pub price_id: i64,
    pub price_effective_from: DateTime<Utc>,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    // `str_option` cannot read back the `null` it writes: leave `None` out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "rust_decimal::serde::str_option"
    )]
    pub unit_price: Option<Decimal>,
    pub event_count: i64,
    /// What the customer pays: list price plus markup less the contract's
    /// `discount`, rounded once to the currency's minor unit.
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
    /// The provider's list price of the line, rounded.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub list_amount: Decimal,
    /// `amount - list_amount`: the platform's markup (less a discount).
    #[serde(default, with = "rust_decimal::serde::str")]
    pub markup: Decimal,
    /// The platform's share of `list_amount`, rounded (plus a
    /// partner-funded discount, which the partner gives up).
    #[serde(default, with = "rust_decimal::serde::str")]
    pub platform_fee: Decimal,
    /// `list_amount - platform_fee`: what the provider is owed.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub partner_net: Decimal,
    /// What the account's contract took off the line
    /// ([`crate::contract::pricing`]); zero without a discount.
    #[serde(
        default,
        skip_serializing_if = "Decimal::is_zero",
        with = "rust_decimal::serde::str"
    )]
    pub discount: Decimal,
    /// Who funds `discount`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount_funded_by: Option<crate::contract::Funder>,
    /// Set on an adjustment line: the sealed period whose late usage it
    /// bills (the difference between that period priced with everything now
    /// known and what was billed for it already).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjusts: Option<Period>,
    /// The bound resource the line belongs to (plan fee, allowance, usage
    /// naming a binding); lines of a provider are grouped by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
}

impl StatementLine {
    /// Within one period's lines, (kind, price or plan version, resource)
    /// names a line.
    fn key(&self) -> (LineKind, i64, Option<&BindingId>) {
        (
            self.kind,
            self.price_id,
            self.resource.as_ref().map(|r| &r.binding),
        )
    }

    fn is_zero(&self) -> bool {
        self.quantity.is_zero()
            && self.event_count == 0
            && [
                self.amount,
                self.list_amount,
                self.markup,
                self.platform_fee,
                self.partner_net,
                self.discount,
            ]
            .iter()
            .all(Decimal::is_zero)
    }

    /// `self + sign * other` (`sign` is 1 or -1), field by field (the numbers only).
    fn combined(&self, other: &StatementLine, sign: i64) -> Result<StatementLine, MoneyError> {
        let signed = Decimal::from(sign);
        let add = |a: Decimal, b: Decimal| {
            b.checked_mul(signed)
                .and_then(|b| a.checked_add(b))
                .ok_or(MoneyError::Overflow)
        };
        let events = other
            .event_count
            .checked_mul(sign)
            .and_then(|e| self.event_count.checked_add(e))
            .ok_or(MoneyError::Overflow)?;
        Ok(StatementLine {
            quantity: add(self.quantity, other.quantity)?.normalize(),
            event_count: events,
            amount: add(self.amount, other.amount)?,
            list_amount: add(self.list_amount, other.list_amount)?,
            markup: add(self.markup, other.markup)?,
            platform_fee: add(self.platform_fee, other.platform_fee)?,
            partner_net: add(self.partner_net, other.partner_net)?,
            discount: add(self.discount, other.discount)?,
            ..self.clone()
        })
    }

    fn negated(&self) -> Result<StatementLine, MoneyError> {
        let zero = StatementLine {
            quantity: Decimal::ZERO,
            event_count: 0,
            amount: Decimal::ZERO,
            list_amount: Decimal::ZERO,
            markup: Decimal::ZERO,
            platform_fee: Decimal::ZERO,
            partner_net: Decimal::ZERO,
            discount: Decimal::ZERO,
            ..self.clone()
        };
        zero.combined(self, -1)
    }
}

/// The adjustment lines of a sealed period `origin`: what its lines
/// (`current`, priced with every event now known) add to what was billed
/// for it already (`billed`), line by line; lines that did not change are
/// left out, a line billed but gone now (a minimum true-up that late usage
/// made unnecessary) comes back negative.
pub fn adjustment_lines(
    origin: Period,
    current: &[StatementLine],
    billed: &[StatementLine],
) -> Result<Vec<StatementLine>, MoneyError> {
    let mut out = Vec::new();
    for line in current {
        let diff = match billed.iter().find(|b| b.key() == line.key()) {
            Some(b) => line.combined(b, -1)?,
            None => line.clone(),
        };
        if !diff.is_zero() {
            out.push(StatementLine {
                adjusts: Some(origin),
                ..diff
            });
        }
    }
    for b in billed {
        if !current.iter().any(|line| line.key() == b.key()) && !b.is_zero() {
            out.push(StatementLine {
                adjusts: Some(origin),
                ..b.negated()?
            });
        }
    }
    Ok(out)
}

/// What has been billed for a period after `adjustments` of it were billed
/// on top of `billed`: the inverse of [`adjustment_lines`].
pub fn merge_billed(
    billed: &[StatementLine],
    adjustments: &[StatementLine],
) -> Result<Vec<StatementLine>, MoneyError> {
    let mut out: Vec<StatementLine> = billed.to_vec();
    for adj in adjustments {
        match out.iter_mut().find(|b| b.key() == adj.key()) {
            Some(b) => *b = b.combined(adj, 1)?,
            None => out.push(StatementLine {
                adjusts: None,
                ..adj.clone()
            }),
        }
    }
    out.retain(|line| !line.is_zero());
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderSubtotal {
    pub provider: ProviderRef,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// Versioned snapshot of an account-period, published on `billing.statements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub account_id: AccountId,
    pub period: Period,
    pub currency: Currency,
    /// Grows by one each time rating changes this account-period.
    pub version: i64,
    pub lines: Vec<StatementLine>,
    pub subtotals: Vec<ProviderSubtotal>,
    /// The sum of the rounded lines, before credits.
    #[serde(with = "rust_decimal::serde::str")]
    pub subtotal: Decimal,
    /// Credits applied, one per grant that paid something, in the order
    /// they were applied.
    #[serde(default)]
    pub credits: Vec<AppliedCredit>,
    /// The sum of `credits`.
    #[serde(default, with = "rust_decimal::serde::str")]
    pub credits_total: Decimal,
    /// What the customer owes: `subtotal - credits_total`.
    #[serde(with = "rust_decimal::serde::str")]
    pub total: Decimal,
    /// The final statement of a sealed period: invoicing finalizes on it,
    /// and rating never changes the period again.
    #[serde(default)]
    pub sealed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatementError {
    #[error(transparent)]
    Pricing(#[from] PricingError),
    #[error(transparent)]
    Money(#[from] MoneyError),
    #[error(transparent)]
    Plan(#[from] crate::plan::PlanError),
}

impl Statement {
    /// `<account>:<YYYY-MM>`: the statement's Kafka key, one per account-period.
    pub fn key(&self) -> String {
        format!("{}:{}", self.account_id, self.period.label())
    }

    /// Prices every aggregate and assembles the statement. Deterministic: the
    /// order of `aggregates` does not matter, only their content.
    pub fn compute(
        account_id: AccountId,
        period: Period,
        currency: Currency,
        version: i64,
        aggregates: Vec<UsageAggregate>,
    ) -> Result<Statement, StatementError> {
        Self::compute_with_plans(
            account_id,
            period,
            currency,
            version,
            aggregates,
            Vec::new(),
        )
    }

    /// [`Statement::compute`] with the plan fees of the account's bound
    /// resources. Within each provider, lines without a resource come
    /// first (as before bindings), then each resource's lines (by name):
    /// its plan fees, then per SKU the allowance used and the usage beyond
    /// it. Deterministic: the order of the inputs does not matter.
    pub fn compute_with_plans(
        account_id: AccountId,
        period: Period,
        currency: Currency,
        version: i64,
        mut aggregates: Vec<UsageAggregate>,
        mut plan_fees: Vec<PlanFeeInput>,
    ) -> Result<Statement, StatementError> {
        aggregates.sort_by(|a, b| {
            a.provider
                .bill_order()
                .cmp(&b.provider.bill_order())
                .then_with(|| a.sku.cmp(&b.sku))
                .then_with(|| a.price_effective_from.cmp(&b.price_effective_from))
                .then_with(|| a.price_id.cmp(&b.price_id))
        });
        plan_fees.sort_by(|a, b| {
            a.provider
                .bill_order()
                .cmp(&b.provider.bill_order())
                .then_with(|| a.resource.bill_order().cmp(&b.resource.bill_order()))
                .then_with(|| {
                    (a.fee.version.effective_from, a.fee.version.id)
                        .cmp(&(b.fee.version.effective_from, b.fee.version.id))
                })
        });
        let mut lines = Vec::with_capacity(aggregates.len() + plan_fees.len());
        for input in plan_fees {
            lines.push(plan_fee_line(input, currency)?);
        }
        for agg in aggregates {
            usage_lines(agg, currency, &mut lines)?;
        }
        // Stable: each group keeps the order its lines were made in.
        lines.sort_by(|a, b| {
            (
                a.provider.bill_order(),
                a.resource.as_ref().map(ResourceRef::bill_order),
            )
                .cmp(&(
                    b.provider.bill_order(),
                    b.resource.as_ref().map(ResourceRef::bill_order),
                ))
        });
        let mut statement = Statement {
            account_id,
            period,
            currency,
            version,
            lines,
            subtotals: Vec::new(),
            subtotal: Decimal::ZERO,
            credits: Vec::new(),
            credits_total: Decimal::ZERO,
            total: Decimal::ZERO,
            sealed: false,
        };
        statement.sum_up()?;
        Ok(statement)
    }

    /// Appends adjustment lines (late usage of sealed periods) after the
    /// period's own lines, and sums up again. Call before applying credits.
    pub fn add_adjustments(&mut self, lines: Vec<StatementLine>) -> Result<(), MoneyError> {
        self.lines.extend(lines);
        self.sum_up()
    }

    /// Subtotals per provider in bill order, and the totals (no credits).
    pub(crate) fn sum_up(&mut self) -> Result<(), MoneyError> {
        let mut by_provider: std::collections::BTreeMap<
            (ProviderKind, &str, &str),
            ProviderSubtotal,
        > = std::collections::BTreeMap::new();
        for line in &self.lines {
            let entry = by_provider
                .entry(line.provider.bill_order())
                .or_insert_with(|| ProviderSubtotal {
                    provider: line.provider.clone(),
                    amount: Decimal::ZERO,
                });
            entry.amount = checked_add(entry.amount, line.amount)?;
        }
        self.subtotals = by_provider.into_values().collect();
        self.subtotal = self
            .subtotals
            .iter()
            .try_fold(Decimal::ZERO, |acc, s| checked_add(acc, s.amount))?;
        self.total = self.subtotal;
        Ok(())
    }
}

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
fn plan_fee_line(input: PlanFeeInput, currency: Currency) -> Result<StatementLine, MoneyError> {
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
fn usage_lines(
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{PriceModel, Quantity};
    use chrono::TimeZone;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn provider(id: &str, name: &str, kind: ProviderKind) -> ProviderRef {
        ProviderRef {
            id: ProviderId::parse(id).unwrap(),
            name: name.into(),
            kind,
        }
    }

    fn agg(p: &ProviderRef, sku: &str, price: Decimal, qty: Decimal) -> UsageAggregate {
        UsageAggregate {
            provider: p.clone(),
            sku: Sku::parse(sku).unwrap(),
            sku_name: sku.into(),
            unit: "unit".into(),
            price_id: 1,
            price_effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            model: PriceModel::per_unit(price).unwrap().into(),
            quantity: qty,
            event_count: 1,
            markup_pct: Decimal::ZERO,
            platform_fee_pct: dec!(20),
            resource: None,
            included: Decimal::ZERO,
        }
    }

    fn statement(aggs: Vec<UsageAggregate>) -> Statement {
        Statement::compute(
            AccountId::parse("acme").unwrap(),
            Period::parse_month("2026-11").unwrap(),
            Currency::parse("USD").unwrap(),
            1,
            aggs,
        )
        .unwrap()
    }

    #[test]
    fn platform_comes_first_then_partners_by_name() {
        let platform = provider("platform", "Zeta Cloud", ProviderKind::FirstParty);
        let alpha = provider("zz-alpha", "Alpha DB", ProviderKind::Partner);
        let beta = provider("aa-beta", "Beta Queue", ProviderKind::Partner);
        let s = statement(vec![
            agg(&beta, "beta.msgs", dec!(1), dec!(1)),
            agg(&platform, "vm.hours", dec!(1), dec!(1)),
            agg(&alpha, "alpha.gb", dec!(1), dec!(1)),
        ]);
        let order: Vec<_> = s
            .subtotals
            .iter()
            .map(|t| t.provider.name.as_str())
            .collect();
        assert_eq!(order, ["Zeta Cloud", "Alpha DB", "Beta Queue"]);
    }

    #[test]
    fn each_line_is_rounded_once_and_the_total_sums_rounded_lines() {
        let p = provider("platform", "Platform", ProviderKind::FirstParty);
        // 3 × 0.3335 = 1.0005 → 1.00; 1 × 0.005 = 0.005 → 0.01
        let s = statement(vec![
            agg(&p, "a", dec!(0.3335), dec!(3)),
            agg(&p, "b", dec!(0.005), dec!(1)),
        ]);
        let amounts: Vec<_> = s.lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, vec![dec!(1.00), dec!(0.01)]);
        assert_eq!(s.total, dec!(1.01));
        assert_eq!(s.subtotals[0].amount, dec!(1.01));
    }

    #[test]
    fn partner_lines_split_into_list_markup_fee_and_net() {
        let partner = provider("dbco", "DB Co", ProviderKind::Partner);
        let mut a = agg(&partner, "db.hour", dec!(0.2475), dec!(10));
        a.markup_pct = dec!(10);
        a.model = PriceBook {
            minimum_charge: Some(dec!(5)),
            recurring_fee: Some(dec!(1.50)),
            ..a.model
        };
        let s = statement(vec![a]);
        let view: Vec<_> = s
            .lines
            .iter()
            .map(|l| {
                (
                    l.kind,
                    l.amount,
                    l.list_amount,
                    l.markup,
                    l.platform_fee,
                    l.partner_net,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                // 2.475 list; ×1.1 = 2.7225 → 2.72; fee 20% of 2.48 = 0.496 → 0.50
                (
                    LineKind::Usage,
                    dec!(2.72),
                    dec!(2.48),
                    dec!(0.24),
                    dec!(0.50),
                    dec!(1.98)
                ),
                (
                    LineKind::RecurringFee,
                    dec!(1.65),
                    dec!(1.50),
                    dec!(0.15),
                    dec!(0.30),
                    dec!(1.20)
                ),
                // 5 - 2.48 (the usage line as billed) = 2.52 list, so list
                // usage and true-up make exactly the 5.00 minimum (2.525 →
                // 2.53 made 5.01); ×1.1 = 2.772 → 2.77; fee 0.504 → 0.50
                (
                    LineKind::MinimumTrueUp,
                    dec!(2.77),
                    dec!(2.52),
                    dec!(0.25),
                    dec!(0.50),
                    dec!(2.02)
                ),
            ]
        );
        assert_eq!(s.total, dec!(7.14));
    }

    #[test]
    fn a_statement_with_tiered_lines_survives_a_json_round_trip() {
        let p = provider("dbco", "DB Co", ProviderKind::Partner);
        let mut a = agg(&p, "tiered", dec!(1), dec!(10));
        a.model = PriceBook::new(PriceModel::Volume {
            tiers: vec![crate::pricing::Tier {
                up_to: None,
                unit_price: dec!(1),
                flat_fee: Decimal::ZERO,
            }],
        });
        let s = statement(vec![a]);
        assert_eq!(s.lines[0].unit_price, None);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Statement>(&json).unwrap(), s);
    }

    #[test]
    fn first_party_lines_are_all_platform_revenue() {
        let platform = provider("cloud", "Cloud", ProviderKind::FirstParty);
        let s = statement(vec![agg(&platform, "vm", dec!(1), dec!(3))]);
        let l = &s.lines[0];
        assert_eq!((l.platform_fee, l.partner_net), (dec!(3), dec!(0)));
    }

    #[test]
    fn adjustments_bill_the_difference_and_merge_back_to_the_whole() {
        let partner = provider("dbco", "DB Co", ProviderKind::Partner);
        let origin = Period::parse_month("2026-10").unwrap();
        // Billed: 10 units at 0.2475 under a 5.00 minimum (a true-up line).
        let mut small = agg(&partner, "db", dec!(0.2475), dec!(10));
        small.model.minimum_charge = Some(dec!(5));
        let billed = statement(vec![small.clone()]).lines;
        assert_eq!(billed.len(), 2);
        // Late usage: 20 more units lift usage above the minimum.
        let mut big = small;
        big.quantity = dec!(30);
        big.event_count = 3;
        let current = statement(vec![big]).lines;
        assert_eq!(current.len(), 1);
        let adj = adjustment_lines(origin, &current, &billed).unwrap();
        let got: Vec<_> = adj
            .iter()
            .map(|l| {
                (
                    l.kind,
                    l.quantity,
                    l.event_count,
                    l.amount,
                    l.partner_net,
                    l.adjusts,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                // 7.425 → 7.43 billed now, 2.475 → 2.48 before: 4.95 more.
                (
                    LineKind::Usage,
                    dec!(20),
                    2,
                    dec!(4.95),
                    dec!(3.96),
                    Some(origin)
                ),
                // The true-up (5 - 2.48 as billed = 2.52) is no longer due.
                (
                    LineKind::MinimumTrueUp,
                    dec!(-1),
                    0,
                    dec!(-2.52),
                    dec!(-2.02),
                    Some(origin)
                ),
            ]
        );
        let merged = merge_billed(&billed, &adj).unwrap();
        assert_eq!(merged.len(), 1);
        assert_eq!(
            (
                merged[0].quantity,
                merged[0].amount,
                merged[0].partner_net,
                merged[0].adjusts
            ),
            (
                current[0].quantity,
                current[0].amount,
                current[0].partner_net,
                None
            )
        );
        // Nothing new: no adjustment.
        assert!(adjustment_lines(origin, &current, &merged)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_charge_that_overflows_is_an_error_not_a_panic() {
        let p = provider("dbco", "DB Co", ProviderKind::Partner);
        let compute = |a: UsageAggregate| {
            Statement::compute(
                AccountId::parse("acme").unwrap(),
                Period::parse_month("2026-11").unwrap(),
                Currency::parse("USD").unwrap(),
                1,
                vec![a],
            )
        };
        // The largest quantity at a price whose product does not fit.
        let huge = agg(&p, "db", dec!(100_000_000_000_000), Quantity::MAX);
        assert_eq!(
            compute(huge),
            Err(StatementError::Pricing(PricingError::Overflow))
        );
        // A price that fits, under a markup that does not.
        let mut marked_up = agg(&p, "db", dec!(1), dec!(1));
        marked_up.markup_pct = Decimal::MAX;
        assert_eq!(
            compute(marked_up),
            Err(StatementError::Money(MoneyError::Overflow))
        );
        // A list amount that fits, but not with a 10 % markup on top.
        let mut near_max = agg(&p, "db", Decimal::MAX, dec!(1));
        near_max.markup_pct = dec!(10);
        assert_eq!(
            compute(near_max),
            Err(StatementError::Money(MoneyError::Overflow))
        );
    }

    #[test]
    fn an_event_is_billable_when_its_charge_fits_on_its_own() {
        let usd = Currency::parse("USD").unwrap();
        let book: PriceBook = PriceModel::per_unit(dec!(100_000_000_000_000))
            .unwrap()
            .into();
        assert_eq!(check_billable(&book, dec!(2.5), dec!(10), usd), Ok(()));
        assert_eq!(
            check_billable(&book, Quantity::MAX, Decimal::ZERO, usd),
            Err(StatementError::Pricing(PricingError::Overflow))
        );
        // 1e26 a unit fits, but not under a 1,000 % markup.
        let costly: PriceBook =
            PriceModel::per_unit(Decimal::from_i128_with_scale(10_i128.pow(26), 0))
                .unwrap()
                .into();
        assert_eq!(check_billable(&costly, dec!(1), Decimal::ZERO, usd), Ok(()));
        assert_eq!(
            check_billable(&costly, dec!(1), dec!(1000), usd),
            Err(StatementError::Money(MoneyError::Overflow))
        );
    }

    #[test]
    fn an_adjustment_that_overflows_is_an_error_not_a_panic() {
        let p = provider("dbco", "DB Co", ProviderKind::Partner);
        let origin = Period::parse_month("2026-10").unwrap();
        let mut current = statement(vec![agg(&p, "db", dec!(1), dec!(1))]).lines;
        current[0].amount = Decimal::MAX;
        let mut billed = current.clone();
        billed[0].amount = dec!(-1);
        assert_eq!(
            adjustment_lines(origin, &current, &billed),
            Err(MoneyError::Overflow)
        );
        let mut adjustment = current.clone();
        adjustment[0].adjusts = Some(origin);
        assert_eq!(
            merge_billed(&current, &adjustment),
            Err(MoneyError::Overflow)
        );
    }

    /// A month of a bound database (activated Nov 2 10:37 on PS-10, moved
    /// to PS-20 Nov 5 14:05, suspended Nov 9, deleted Nov 20) and 30 GB of
    /// its storage, beside unbound first-party usage. Expected amounts are
    /// worked out by hand below, not by the code under test.
    #[test]
    fn a_bound_resources_lines_are_grouped_with_prorated_fees_and_allowance() {
        use crate::binding::{Actor, BindingStatus as S, PlanChange, StatusChange};
        use crate::plan::{active_spans, allowance, apply_allowance, plan_fees, PlanVersion};
        use crate::{BindingId, PlanId};
        use std::collections::BTreeMap;
        let t = |d, h, m| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
        let usd = Currency::parse("USD").unwrap();
        let storage = Sku::parse("dbco.storage-gb").unwrap();
        let version = |id, plan: &str, name: &str, fee, gb| PlanVersion {
            id,
            plan: PlanId::parse(plan).unwrap(),
            name: name.into(),
            currency: usd,
            effective_from: t(1, 0, 0),
            base_fee: fee,
            allowances: BTreeMap::from([(storage.clone(), gb)]),
        };
        let mut versions = BTreeMap::new();
        versions.insert(
            PlanId::parse("dbco.ps-10").unwrap(),
            vec![version(1, "dbco.ps-10", "PS-10", dec!(39), dec!(10))],
        );
        versions.insert(
            PlanId::parse("dbco.ps-20").unwrap(),
            vec![version(2, "dbco.ps-20", "PS-20", dec!(72), dec!(25))],
        );
        let change = |at, to| StatusChange {
            at,
            from: None,
            to,
            by: Actor::Provider,
            message: None,
        };
        let history = [
            change(t(2, 0, 0), S::Requested),
            change(t(2, 10, 37), S::Active),
            change(t(9, 0, 0), S::Suspended),
            change(t(20, 8, 30), S::Deleted),
        ];
        let plans = [
            PlanChange {
                at: t(2, 0, 0),
                plan: PlanId::parse("dbco.ps-10").unwrap(),
            },
            PlanChange {
                at: t(5, 14, 5),
                plan: PlanId::parse("dbco.ps-20").unwrap(),
            },
        ];
        let november = Period::parse_month("2026-11").unwrap();
        let fees = plan_fees(&active_spans(&history, &plans), &versions, usd, november).unwrap();
        let dbco = provider("dbco", "DB Co", ProviderKind::Partner);
        let resource = ResourceRef {
            binding: BindingId::parse("bnd_1").unwrap(),
            name: "prod-db".into(),
            plan: "PS-20".into(),
        };
        let mut used = agg(&dbco, "dbco.storage-gb", dec!(0.50), dec!(30));
        used.resource = Some(resource.clone());
        used.included = apply_allowance(allowance(&fees, &storage), &[dec!(30)])[0].included;
        let platform = provider("platform", "Platform", ProviderKind::FirstParty);
        let inputs = fees
            .into_iter()
            .map(|fee| PlanFeeInput {
                provider: dbco.clone(),
                resource: resource.clone(),
                fee,
                platform_fee_pct: dec!(20),
            })
            .collect();
        let s = Statement::compute_with_plans(
            AccountId::parse("acme").unwrap(),
            november,
            usd,
            1,
            vec![used, agg(&platform, "vm.hours", dec!(0.10), dec!(10))],
            inputs,
        )
        .unwrap();
        let view: Vec<_> = s
            .lines
            .iter()
            .map(|l| {
                (
                    l.kind.as_str(),
                    l.resource.as_ref().map(ResourceRef::label),
                    l.quantity,
                    l.amount,
                    l.platform_fee,
                )
            })
            .collect();
        let db = Some("prod-db · PS-20".to_owned());
        // PS-10: hours from the one starting Nov 2 10:00 through the one
        // starting Nov 5 13:00: 14 + 24 + 24 + 14 = 76; 39 × 76 / 720 =
        // 4.1166… → 4.12 (platform 20 %: 0.824 → 0.82). PS-20: Nov 5 14:00
        // (the changeover hour goes to the new plan) to the suspension on
        // Nov 9 00:00: 10 + 72 = 82 h; 72 × 82 / 720 = 8.20 (1.64).
        // Storage: 25 GB included by PS-20 (the plan it ended on), 5 GB
        // beyond at 0.50 = 2.50 (0.50).
        assert_eq!(
            view,
            [
                ("usage", None, dec!(10), dec!(1.00), dec!(1.00)),
                ("plan_fee", db.clone(), dec!(76), dec!(4.12), dec!(0.82)),
                ("plan_fee", db.clone(), dec!(82), dec!(8.20), dec!(1.64)),
                ("allowance", db.clone(), dec!(25), dec!(0), dec!(0)),
                ("usage", db.clone(), dec!(5), dec!(2.50), dec!(0.50)),
            ]
        );
        assert_eq!(s.total, dec!(15.82));
        assert_eq!(s.lines[1].description, "PS-10 plan — 76 of 720 hours");
        assert_eq!(
            s.lines[3].description,
            "dbco.storage-gb — included in PS-20"
        );
        let subtotals: Vec<_> = s.subtotals.iter().map(|t| t.amount).collect();
        assert_eq!(subtotals, [dec!(1.00), dec!(14.82)]);
    }

    #[test]
    fn statements_without_resources_serialize_as_before() {
        let p = provider("platform", "Platform", ProviderKind::FirstParty);
        let s = statement(vec![agg(&p, "a", dec!(1), dec!(1))]);
        let json = serde_json::to_value(&s).unwrap();
        assert!(json["lines"][0].get("resource").is_none());
        assert_eq!(json["lines"][0]["kind"], "usage");
    }

    proptest! {
        #[test]
        fn statement_does_not_depend_on_aggregate_order(
            qtys in proptest::collection::vec(0u32..100_000, 1..6),
            seed in any::<u64>(),
        ) {
            let p = provider("platform", "Platform", ProviderKind::FirstParty);
            let q = provider("partner", "Partner", ProviderKind::Partner);
            let aggs: Vec<_> = qtys.iter().enumerate().map(|(i, n)| {
                let who = if i % 2 == 0 { &p } else { &q };
                agg(who, &format!("sku{i}"), dec!(0.0137), Decimal::new(i64::from(*n), 3))
            }).collect();
            let mut shuffled = aggs.clone();
            let len = shuffled.len();
            shuffled.rotate_left((seed as usize) % len);
            shuffled.reverse();
            prop_assert_eq!(statement(aggs), statement(shuffled));
        }
    }
}
