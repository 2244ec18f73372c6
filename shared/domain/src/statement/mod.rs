//! Statements: the priced picture of one account-period, computed purely from
//! the period's usage aggregates and their price versions.

use crate::credits::AppliedCredit;
use crate::money::checked::add as checked_add;
use crate::{AccountId, Currency, MoneyError, Period, PricingError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use economics::{plan_fee_line, usage_lines};

mod adjustment;
mod economics;
mod line;
#[cfg(test)]
mod tests;

pub use adjustment::{adjustment_lines, merge_billed};
pub use economics::check_billable;
pub use line::{
    LineKind, PlanFeeInput, ProviderKind, ProviderRef, ResourceRef, StatementLine, UsageAggregate,
};

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
        Self::key_of(&self.account_id, &self.period)
    }

    /// The key of `account`'s statement of `period`.
    pub fn key_of(account: &AccountId, period: &Period) -> String {
        format!("{account}:{}", period.label())
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
