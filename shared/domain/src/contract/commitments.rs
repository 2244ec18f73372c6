//! Commitment periods longer than a billing period (a quarter, a year):
//! which billing periods they span, what they have spent, and the true-up
//! billed on the billing period that ends one. ([`super::pricing::apply`]
//! trues up a commitment period that is exactly one billing period.)
//!
//! **Net spend** of a commitment period is the sum, over every billing
//! period inside it, of that period's own lines as priced with everything
//! known now (after discounts, before credits, without true-up lines and
//! without the adjustment lines it bills for earlier periods). Late usage
//! of a billing period counts in its own period (the one it adjusts), never
//! in the period whose invoice bills the adjustment: that is what priced
//! "with everything known" means, and it equals what was billed for the
//! period plus every adjustment of it. A billing period without usage
//! spends 0. When late usage of a period inside a commitment period whose
//! true-up was already billed arrives, the true-up is priced again and the
//! difference is billed as an adjustment of the billing period that ended
//! the commitment period ([`window_ends_to_adjust`]).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;

use super::pricing::{true_up, true_up_line};
use super::{Commitment, Contract, ContractError};
use crate::money::checked;
use crate::statement::{LineKind, Statement, StatementLine};
use crate::{AnchorDay, MoneyError, Period};

/// The billing periods of an account whose periods start on `anchor` from
/// `start` up to `end`, in order (the last one ends at or after `end`).
pub fn billing_periods(start: DateTime<Utc>, end: DateTime<Utc>, anchor: AnchorDay) -> Vec<Period> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        let period = Period::containing(at, anchor);
        at = period.end();
        out.push(period);
    }
    out
}

/// Whether `at` is where a billing period of `anchor` starts.
fn on_boundary(at: DateTime<Utc>, anchor: AnchorDay) -> bool {
    Period::containing(at, anchor).start() == at
}

impl Contract {
    /// Every commitment starts and ends where the account's billing periods
    /// (starting on `anchor`) do, so each commitment period is a whole
    /// number of billing periods: `invalid_contract` otherwise.
    pub fn check_commitment_periods(&self, anchor: AnchorDay) -> Result<(), ContractError> {
        for (index, c) in self.commitments.iter().enumerate() {
            if !on_boundary(c.starts_at, anchor) || !on_boundary(c.ends_at, anchor) {
                return Err(ContractError::Invalid(format!(
                    "commitment {index}: starts_at and ends_at must fall on billing period \
                     boundaries (the account's periods start on day {} of the month, 00:00 UTC)",
                    anchor.day()
                )));
            }
        }
        Ok(())
    }
}

/// The commitments of `contract` whose commitment period ends with
/// `period` and began before it (longer than one billing period), with
/// that commitment period.
fn ending_with(
    contract: &Contract,
    period: Period,
) -> impl Iterator<Item = (&Commitment, (DateTime<Utc>, DateTime<Utc>))> {
    contract.commitments.iter().filter_map(move |c| {
        c.window_ending_at(period.end())
            .filter(|(start, _)| *start < period.start())
            .map(|w| (c, w))
    })
}

/// The earlier billing periods whose net spend the statement of `period`
/// needs: those of each commitment period ending with `period` that began
/// before it, oldest first, each once. None when the contract is not in
/// force at the period's start.
pub fn earlier_periods(contract: &Contract, period: Period, anchor: AnchorDay) -> Vec<Period> {
    if !contract.in_force_at(period.start()) {
        return Vec::new();
    }
    let mut out: Vec<Period> = ending_with(contract, period)
        .flat_map(|(_, (start, _))| billing_periods(start, period.start(), anchor))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A billing period's net spend: its own lines (not the adjustments it
/// bills), after discounts, before credits, without true-up lines.
pub fn net_spend(lines: &[StatementLine]) -> Result<Decimal, MoneyError> {
    checked::sum(
        lines
            .iter()
            .filter(|l| l.adjusts.is_none() && l.kind != LineKind::CommitmentTrueUp)
            .map(|l| l.amount),
    )
}

/// Trues up each commitment of `contract` whose commitment period ends
/// with the statement's period and began before it: `max(0, minimum -
/// net spend)` over the commitment period, where `earlier` holds the net
/// spend of its earlier billing periods by start ([`net_spend`]; a period
/// not in it spent 0) and the statement's own lines are the last period's.
/// Call after [`super::pricing::apply`] and before adjustments and credits.
/// Sums up again.
pub fn true_up_windows(
    statement: &mut Statement,
    contract: &Contract,
    earlier: &BTreeMap<DateTime<Utc>, Decimal>,
) -> Result<(), MoneyError> {
    let period = statement.period;
    if !contract.in_force_at(period.start()) {
        return Ok(());
    }
    let own = net_spend(&statement.lines)?;
    let mut due_lines = Vec::new();
    for (c, (start, _)) in ending_with(contract, period) {
        let before = checked::sum(
            earlier
                .range(start..period.start())
                .map(|(_, spent)| *spent),
        )?;
        let spent = checked::add(before, own)?;
        let due = statement.currency.round(true_up(c.minimum, spent)?);
        if !due.is_zero() {
            due_lines.push(true_up_line(c.id, c.minimum, due, period.start())?);
        }
    }
    if due_lines.is_empty() {
        return Ok(());
    }
    statement.lines.extend(due_lines);
    statement.sum_up()
}

/// The sealed billing periods whose true-up late usage of `origin` changes:
/// for each commitment period of `contract` that holds `origin` and ends
/// after it, the billing period ending it, when that ends by `billed_in`
/// (the start of the period billing the late usage). Their statements are
/// final, so the change is billed as their adjustment, like late usage.
pub fn window_ends_to_adjust(
    contract: &Contract,
    origin: Period,
    billed_in: DateTime<Utc>,
    anchor: AnchorDay,
) -> Vec<Period> {
    contract
        .commitments
        .iter()
        .flat_map(Commitment::windows)
        .filter(|(start, end)| *start <= origin.start() && origin.end() < *end && *end <= billed_in)
        .filter_map(|(start, end)| billing_periods(start, end, anchor).pop())
        .filter(|last| last.end() <= billed_in && contract.in_force_at(last.start()))
        .collect()
}

/// Whether a commitment period of `contract` ends with `period` (the
/// contract in force at its start): its statement bills the true-up, so the
/// period gets one even without usage.
pub fn ends_a_commitment_period(contract: &Contract, period: Period) -> bool {
    contract.in_force_at(period.start())
        && contract
            .commitments
            .iter()
            .any(|c| c.window_ending_at(period.end()).is_some())
}
