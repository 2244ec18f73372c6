//! The lines of a statement and what they are made from: providers,
//! resources, line kinds, usage aggregates and plan fee inputs.

use crate::plan::PlanFee;
use crate::{BindingId, MoneyError, Period, PriceBook, ProviderId, Sku};
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
    pub(super) fn bill_order(&self) -> (ProviderKind, &str, &str) {
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

    pub(super) fn bill_order(&self) -> (&str, &str) {
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
    pub(super) fn key(&self) -> (LineKind, i64, Option<&BindingId>) {
        (
            self.kind,
            self.price_id,
            self.resource.as_ref().map(|r| &r.binding),
        )
    }

    pub(super) fn is_zero(&self) -> bool {
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
    pub(super) fn combined(
        &self,
        other: &StatementLine,
        sign: i64,
    ) -> Result<StatementLine, MoneyError> {
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

    pub(super) fn negated(&self) -> Result<StatementLine, MoneyError> {
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
