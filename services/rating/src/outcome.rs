//! What a rating transaction produced: new statement versions (with their
//! outbox rows) to publish once it committed, dead letters, and counts.

use serde::Serialize;
use tally_domain::{AccountId, Period, Statement, UsageEvent};

/// Why an event could not be rated; it goes to `usage.events.dlq`.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Stable code: `account_unknown`, `no_price`, `dimension_missing`,
    /// `outside_dedupe_window`, `malformed_message`, `amount_overflow`,
    /// `rating_failed`, `seal_failed`, `correction_failed` (a usage
    /// correction, as `payload`).
    pub code: &'static str,
    pub reason: String,
    /// The event, when it could be parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<UsageEvent>,
    /// The raw payload, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

impl DeadLetter {
    pub fn for_event(code: &'static str, reason: String, event: &UsageEvent) -> Self {
        Self {
            code,
            reason,
            event: Some(event.clone()),
            payload: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// New statement versions, to publish once the transaction committed.
    pub statements: Vec<HeldStatement>,
    /// The outbox rows listing them, deleted once they are published.
    pub outbox: Vec<i64>,
    pub dead: Vec<DeadLetter>,
    pub counted: usize,
    pub duplicates: usize,
}

impl BatchOutcome {
    /// Adds another run's outcome to this one.
    pub fn merge(&mut self, other: BatchOutcome) {
        self.counted += other.counted;
        self.duplicates += other.duplicates;
        self.dead.extend(other.dead);
        self.add(Restated {
            statements: other.statements,
            outbox: other.outbox,
        });
    }

    /// Adds statements a transaction restated.
    pub fn add(&mut self, restated: Restated) {
        self.statements.extend(restated.statements);
        self.outbox.extend(restated.outbox);
    }

    /// The new statement versions, parsed.
    pub fn statements(&self) -> serde_json::Result<Vec<Statement>> {
        parsed(&self.statements)
    }

    /// Keeps only the newest version of each account-period's statement.
    pub fn keep_newest_statements(&mut self) {
        self.statements.sort_by(|a, b| {
            (a.account_id.as_str(), a.period.start(), b.version).cmp(&(
                b.account_id.as_str(),
                b.period.start(),
                a.version,
            ))
        });
        self.statements
            .dedup_by(|b, a| a.account_id == b.account_id && a.period == b.period);
    }
}

/// Statement versions one transaction committed and the outbox row that
/// lists them (deleted once they are on the broker).
#[derive(Debug, Default)]
pub struct Restated {
    pub statements: Vec<HeldStatement>,
    pub outbox: Vec<i64>,
}

impl Restated {
    /// The statement versions, parsed.
    pub fn statements(&self) -> serde_json::Result<Vec<Statement>> {
        parsed(&self.statements)
    }
}

fn parsed(held: &[HeldStatement]) -> serde_json::Result<Vec<Statement>> {
    held.iter().map(HeldStatement::statement).collect()
}

/// A statement version stored by a rating transaction, held until it is
/// published: what names it, and the body as stored, compressed (LZ4).
/// Held as computed, a batch's statements were rating's heap peak
/// (heaptrack at 400 lines a statement: 73 MiB of 137; BENCHMARKS.md,
/// "Statements held compressed until they are published"), and each was
/// serialised twice, to store it and to publish it.
#[derive(Debug, Clone)]
pub struct HeldStatement {
    pub account_id: AccountId,
    pub period: Period,
    pub version: i64,
    pub sealed: bool,
    /// The body's length in bytes, uncompressed.
    pub bytes: usize,
    packed: Vec<u8>,
}

impl HeldStatement {
    /// `statement`, whose JSON is `body`.
    pub fn new(statement: &Statement, body: &str) -> Self {
        Self {
            account_id: statement.account_id.clone(),
            period: statement.period,
            version: statement.version,
            sealed: statement.sealed,
            bytes: body.len(),
            packed: lz4_flex::block::compress_prepend_size(body.as_bytes()),
        }
    }

    /// `statement`, serialised.
    pub fn of(statement: &Statement) -> serde_json::Result<Self> {
        Ok(Self::new(statement, &serde_json::to_string(statement)?))
    }

    /// Its Kafka key, as [`Statement::key`].
    pub fn key(&self) -> String {
        Statement::key_of(&self.account_id, &self.period)
    }

    /// The body as stored.
    pub fn body(&self) -> std::io::Result<Vec<u8>> {
        lz4_flex::block::decompress_size_prepended(&self.packed)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// The statement, parsed from its body.
    pub fn statement(&self) -> serde_json::Result<Statement> {
        serde_json::from_slice(&self.body().map_err(serde_json::Error::io)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tally_domain::{AccountId, Currency, Period};

    fn statement(account: &str, month: &str, version: i64) -> Statement {
        Statement::compute(
            AccountId::parse(account).unwrap(),
            Period::parse_month(month).unwrap(),
            Currency::parse("USD").unwrap(),
            version,
            Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn the_newest_version_of_each_statement_is_kept() {
        let mut out = BatchOutcome {
            statements: [
                ("b", "2026-11", 2),
                ("a", "2026-11", 3),
                ("b", "2026-11", 4),
                ("a", "2026-10", 1),
                ("a", "2026-11", 2),
            ]
            .iter()
            .map(|(a, m, v)| HeldStatement::of(&statement(a, m, *v)).unwrap())
            .collect(),
            ..BatchOutcome::default()
        };
        out.keep_newest_statements();
        let kept: Vec<(String, String, i64)> = out
            .statements
            .iter()
            .map(|s| (s.account_id.to_string(), s.period.label(), s.version))
            .collect();
        assert_eq!(
            kept,
            [
                ("a".to_owned(), "2026-10".to_owned(), 1),
                ("a".to_owned(), "2026-11".to_owned(), 3),
                ("b".to_owned(), "2026-11".to_owned(), 4)
            ]
        );
    }
}
