//! Contracts: what an account pays differently from list. A contract has a
//! term (`[starts_at, ends_at)`), a currency, discount terms (each
//! effective-dated inside the term, funded by the platform or the partner)
//! and commitments (a minimum spend per month, quarter or year).
//!
//! This module holds the types and their validation (every refusal has a
//! stable code, [`ContractError::code`]) and the lifecycle (a contract with
//! a partner-funded term awaits the partner's agreement before finance
//! signs it, [`Contract::sign`]); [`pricing`] holds what a contract does to
//! a statement line and the true-up of a commitment period of one billing
//! period; [`commitments`] the true-up of longer ones; [`negotiated`] a
//! negotiated price book's line.

pub mod commitments;
pub mod discounts;
pub mod negotiated;
pub mod pricing;
pub mod progress;

use chrono::{DateTime, Months, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::pricing::PriceBook;
use crate::{Currency, ProviderId, Sku};

/// Who gives up the money a discount takes off the customer's bill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Funder {
    /// The platform: the partner is settled at list.
    Platform,
    /// The partner: its net falls by the discount, once it has agreed.
    Partner,
}

impl Funder {
    pub fn as_str(&self) -> &'static str {
        match self {
            Funder::Platform => "platform",
            Funder::Partner => "partner",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "platform" => Some(Funder::Platform),
            "partner" => Some(Funder::Partner),
            _ => None,
        }
    }
}

/// What a discount term applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Every line of the account.
    All,
    /// Every line of one provider.
    Provider { provider: ProviderId },
    /// The listed SKUs of one provider.
    Skus {
        provider: ProviderId,
        skus: Vec<Sku>,
    },
}

impl Scope {
    /// The provider the scope names, if it names one.
    pub fn provider(&self) -> Option<&ProviderId> {
        match self {
            Scope::All => None,
            Scope::Provider { provider } | Scope::Skus { provider, .. } => Some(provider),
        }
    }

    /// More specific scopes win over broader ones: SKUs, then a provider,
    /// then everything.
    fn specificity(&self) -> u8 {
        match self {
            Scope::All => 0,
            Scope::Provider { .. } => 1,
            Scope::Skus { .. } => 2,
        }
    }

    fn covers(&self, provider: &ProviderId, sku: &Sku) -> bool {
        match self {
            Scope::All => true,
            Scope::Provider { provider: p } => p == provider,
            Scope::Skus { provider: p, skus } => p == provider && skus.contains(sku),
        }
    }
}

/// A percentage discount or a negotiated price book, effective
/// `[effective_from, effective_to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Term {
    pub id: i64,
    /// A negotiated term's scope is [`Scope::Skus`] with its one SKU.
    pub scope: Scope,
    /// Off the line's amount, in percent (0 < percent <= 100); zero for a
    /// negotiated price book term.
    pub percent: Decimal,
    /// A negotiated price book for the term's one SKU, in the contract's
    /// currency: the SKU's usage lines are priced with it instead of list
    /// ([`negotiated`]). None for a percentage discount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_book: Option<PriceBook>,
    pub funded_by: Funder,
    pub effective_from: DateTime<Utc>,
    pub effective_to: DateTime<Utc>,
    /// When the partner agreed to fund the term (partner-funded terms only):
    /// until then the term discounts nothing.
    pub partner_agreed_at: Option<DateTime<Utc>>,
}

impl Term {
    /// The SKU a negotiated price book term prices, if the term is one.
    pub fn negotiated_sku(&self) -> Option<(&ProviderId, &Sku, &PriceBook)> {
        match (&self.scope, &self.price_book) {
            (Scope::Skus { provider, skus }, Some(book)) => {
                skus.first().map(|sku| (provider, sku, book))
            }
            _ => None,
        }
    }

    /// Whether the term discounts a line of `provider`'s `sku` in a period
    /// beginning at `period_start`: the term is in effect at the period's
    /// start, covers the line, and (partner-funded) the partner agreed.
    pub fn applies(&self, provider: &ProviderId, sku: &Sku, period_start: DateTime<Utc>) -> bool {
        self.effective_from <= period_start
            && period_start < self.effective_to
            && self.scope.covers(provider, sku)
            && self.agreed().is_ok()
    }

    /// `partner_not_agreed` for a partner-funded term the partner has not
    /// agreed to.
    pub fn agreed(&self) -> Result<(), ContractError> {
        match (self.funded_by, self.partner_agreed_at) {
            (Funder::Partner, None) => Err(ContractError::PartnerNotAgreed(self.id)),
            _ => Ok(()),
        }
    }
}

/// How long a commitment period is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    Month,
    Quarter,
    Year,
}

impl Cadence {
    pub fn as_str(&self) -> &'static str {
        match self {
            Cadence::Month => "month",
            Cadence::Quarter => "quarter",
            Cadence::Year => "year",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "month" => Some(Cadence::Month),
            "quarter" => Some(Cadence::Quarter),
            "year" => Some(Cadence::Year),
            _ => None,
        }
    }

    fn months(&self) -> Months {
        Months::new(match self {
            Cadence::Month => 1,
            Cadence::Quarter => 3,
            Cadence::Year => 12,
        })
    }
}

/// A minimum spend per commitment period, from `starts_at` to `ends_at`
/// (a whole number of periods inside the contract's term).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commitment {
    pub id: i64,
    pub cadence: Cadence,
    /// The minimum net spend per commitment period.
    pub minimum: Decimal,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl Commitment {
    /// The commitment periods in order: `[start, end)` windows of the
    /// cadence's length from `starts_at`, up to `ends_at`.
    pub fn windows(&self) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        let mut out = Vec::new();
        let mut start = self.starts_at;
        while start < self.ends_at {
            let Some(end) = start.checked_add_months(self.cadence.months()) else {
                break;
            };
            out.push((start, end.min(self.ends_at)));
            start = end;
        }
        out
    }

    /// The commitment period that ends at `at` (a billing period's end), if
    /// one does: its true-up is billed on that billing period.
    pub fn window_ending_at(&self, at: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        self.windows().into_iter().find(|(_, end)| *end == at)
    }
}

/// Whether a partner's new price version of a SKU that has one already
/// (`replaces`) gives the platform's `notice`: it takes effect no sooner
/// than `notice` after `now`. A SKU's first version changes no account's
/// price and needs none; nor does a first-party provider's.
pub fn gives_notice(
    now: DateTime<Utc>,
    effective_from: DateTime<Utc>,
    notice: chrono::Duration,
    partner: bool,
    replaces: bool,
) -> bool {
    !partner
        || !replaces
        || now
            .checked_add_signed(notice)
            .is_none_or(|due| effective_from >= due)
}

/// An account's contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    pub id: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub currency: Currency,
    /// Whether the account keeps the price versions in force at signature
    /// until the term ends.
    pub price_protection: bool,
    /// When the contract was signed (stored); None while it awaits its
    /// partners' agreement ([`Contract::sign`]): it is then in force
    /// nowhere and bills nothing.
    pub signed_at: Option<DateTime<Utc>>,
    pub terms: Vec<Term>,
    pub commitments: Vec<Commitment>,
}

/// A refusal of a contract, each with its stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("the contract's term must start before it ends")]
    EmptyTerm,
    #[error("the account already has contract {0} in force during this term")]
    Overlaps(i64),
    #[error("term {index} is not inside the contract's term (or starts after it ends)")]
    TermOutsideContract { index: usize },
    #[error("a commitment is not inside the contract's term: {index}")]
    CommitmentOutsideTerm { index: usize },
    #[error("unknown SKU {sku:?} of provider {provider}")]
    UnknownSku { provider: String, sku: String },
    #[error("term {0} is funded by the partner, who has not agreed to it")]
    PartnerNotAgreed(i64),
    #[error("term {index}: invalid negotiated price book: {reason}")]
    InvalidPrice { index: usize, reason: String },
    #[error("invalid contract: {0}")]
    Invalid(String),
}

impl ContractError {
    pub fn code(&self) -> &'static str {
        match self {
            ContractError::EmptyTerm | ContractError::Invalid(_) => "invalid_contract",
            ContractError::Overlaps(_) => "contract_overlaps",
            ContractError::TermOutsideContract { .. } => "term_outside_contract",
            ContractError::CommitmentOutsideTerm { .. } => "commitment_outside_term",
            ContractError::UnknownSku { .. } => "unknown_sku",
            ContractError::PartnerNotAgreed(_) => "partner_not_agreed",
            ContractError::InvalidPrice { .. } => "invalid_price",
        }
    }
}

/// Another contract of the same account, as far as overlap matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExistingContract {
    pub id: i64,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

impl Contract {
    /// Checks a new contract against the account's others (`existing`) and
    /// the catalog (`sku_known(provider, sku)`): the first refusal found, in
    /// the order the term, overlaps, terms, commitments.
    pub fn validate(
        &self,
        existing: &[ExistingContract],
        sku_known: impl Fn(&ProviderId, &Sku) -> bool,
    ) -> Result<(), ContractError> {
        if self.starts_at >= self.ends_at {
            return Err(ContractError::EmptyTerm);
        }
        if let Some(other) = existing
            .iter()
            .find(|c| c.id != self.id && c.starts_at < self.ends_at && self.starts_at < c.ends_at)
        {
            return Err(ContractError::Overlaps(other.id));
        }
        for (index, term) in self.terms.iter().enumerate() {
            if term.effective_from >= term.effective_to
                || term.effective_from < self.starts_at
                || term.effective_to > self.ends_at
            {
                return Err(ContractError::TermOutsideContract { index });
            }
            match &term.price_book {
                Some(book) => validate_book(index, term, book)?,
                None if term.percent <= Decimal::ZERO || term.percent > Decimal::ONE_HUNDRED => {
                    return Err(ContractError::Invalid(format!(
                        "term {index}: percent must be more than 0 and at most 100"
                    )));
                }
                None => {}
            }
            if term.funded_by == Funder::Partner && term.scope.provider().is_none() {
                return Err(ContractError::Invalid(format!(
                    "term {index}: a partner-funded term names its provider"
                )));
            }
            if let Scope::Skus { provider, skus } = &term.scope {
                if skus.is_empty() {
                    return Err(ContractError::Invalid(format!(
                        "term {index}: a SKU scope lists at least one SKU"
                    )));
                }
                if let Some(sku) = skus.iter().find(|s| !sku_known(provider, s)) {
                    return Err(ContractError::UnknownSku {
                        provider: provider.to_string(),
                        sku: sku.to_string(),
                    });
                }
            }
        }
        for (index, c) in self.commitments.iter().enumerate() {
            if c.starts_at >= c.ends_at || c.starts_at < self.starts_at || c.ends_at > self.ends_at
            {
                return Err(ContractError::CommitmentOutsideTerm { index });
            }
            if c.minimum <= Decimal::ZERO {
                return Err(ContractError::Invalid(format!(
                    "commitment {index}: the minimum must be more than 0"
                )));
            }
        }
        Ok(())
    }

    /// The percentage term that discounts a line of `provider`'s `sku` in a
    /// period beginning at `period_start`, if any: discounts never stack;
    /// the most specific scope wins, then the larger percent, then the
    /// oldest term. Negotiated price book terms are [`Contract::negotiated_for`]'s.
    pub fn term_for(
        &self,
        provider: &ProviderId,
        sku: &Sku,
        period_start: DateTime<Utc>,
    ) -> Option<&Term> {
        self.terms
            .iter()
            .filter(|t| t.price_book.is_none() && t.applies(provider, sku, period_start))
            .max_by(|a, b| {
                (a.scope.specificity(), a.percent)
                    .cmp(&(b.scope.specificity(), b.percent))
                    .then_with(|| b.id.cmp(&a.id))
            })
    }

    /// The negotiated price book term that prices the usage lines of
    /// `provider`'s `sku` in a period beginning at `period_start`, if any
    /// (the oldest, should two be in effect at once). It wins over every
    /// percentage term: such a usage line is not also percent-discounted.
    pub fn negotiated_for(
        &self,
        provider: &ProviderId,
        sku: &Sku,
        period_start: DateTime<Utc>,
    ) -> Option<&Term> {
        self.terms
            .iter()
            .filter(|t| t.price_book.is_some() && t.applies(provider, sku, period_start))
            .min_by_key(|t| t.id)
    }

    /// The partner-funded terms the partner has not agreed to yet (ids).
    pub fn awaiting_partner(&self) -> Vec<i64> {
        self.terms
            .iter()
            .filter(|t| t.agreed().is_err())
            .map(|t| t.id)
            .collect()
    }

    /// Signs the contract at `at`: refused with `partner_not_agreed` (the
    /// first such term) while a partner-funded term is not agreed. Signing
    /// a signed contract changes nothing.
    pub fn sign(&mut self, at: DateTime<Utc>) -> Result<(), ContractError> {
        if let Some(id) = self.awaiting_partner().first() {
            return Err(ContractError::PartnerNotAgreed(*id));
        }
        self.signed_at.get_or_insert(at);
        Ok(())
    }

    /// The moment whose price versions price usage at `at`, when a
    /// contract of `contracts` protects the account's prices then: the
    /// signature (the versions in force at it), for usage after it inside
    /// the protecting contract's term. None: usage is priced at its time.
    pub fn protected_price_time(
        contracts: &[Contract],
        at: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        contracts
            .iter()
            .find(|c| c.price_protection && c.in_force_at(at))
            .and_then(|c| c.signed_at)
            .filter(|signed| *signed < at)
    }

    /// Whether the contract is in force at `at`: signed, and `at` inside
    /// its term.
    pub fn in_force_at(&self, at: DateTime<Utc>) -> bool {
        self.signed_at.is_some() && self.starts_at <= at && at < self.ends_at
    }
}

/// A negotiated price book term's own checks: one SKU, and the book valid
/// as any price book (`invalid_price`). It prices usage only: a minimum
/// charge or a recurring fee is refused.
fn validate_book(index: usize, term: &Term, book: &PriceBook) -> Result<(), ContractError> {
    match &term.scope {
        Scope::Skus { skus, .. } if skus.len() == 1 => {}
        _ => {
            return Err(ContractError::Invalid(format!(
                "term {index}: a negotiated price book names one provider and one SKU"
            )))
        }
    }
    if !term.percent.is_zero() {
        return Err(ContractError::Invalid(format!(
            "term {index}: a term has a percent or a price book, not both"
        )));
    }
    let invalid = |reason: String| ContractError::InvalidPrice { index, reason };
    book.validate().map_err(|e| invalid(e.to_string()))?;
    if book.minimum_charge.is_some() || book.recurring_fee.is_some() {
        return Err(invalid(
            "a negotiated price book prices usage: no minimum_charge or recurring_fee".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
