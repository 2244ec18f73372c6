//! Adjustments of sealed periods: what late usage adds to what a period
//! billed, and what it has billed once they are billed.

use super::StatementLine;
use crate::{MoneyError, Period};

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
