//! What a rating transaction produced: new statement versions (with their
//! stored JSON and outbox rows) to publish once it committed, dead letters,
//! and counts.

use serde::Serialize;
use tally_domain::{Statement, UsageEvent};

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
    pub statements: Vec<Statement>,
    /// Their JSON as stored, one for each (published as is).
    pub bodies: Vec<String>,
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
            bodies: other.bodies,
            outbox: other.outbox,
        });
    }

    /// Adds statements a transaction restated.
    pub fn add(&mut self, restated: Restated) {
        self.statements.extend(restated.statements);
        self.bodies.extend(restated.bodies);
        self.outbox.extend(restated.outbox);
    }

    /// Keeps only the newest version of each account-period's statement
    /// (and its body).
    pub fn keep_newest_statements(&mut self) {
        let mut pairs: Vec<(Statement, Option<String>)> = std::mem::take(&mut self.statements)
            .into_iter()
            .zip(
                std::mem::take(&mut self.bodies)
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat(None)),
            )
            .collect();
        pairs.sort_by(|(a, _), (b, _)| {
            (a.account_id.as_str(), a.period.start(), b.version).cmp(&(
                b.account_id.as_str(),
                b.period.start(),
                a.version,
            ))
        });
        pairs.dedup_by(|(b, _), (a, _)| a.account_id == b.account_id && a.period == b.period);
        // Bodies only when every statement has its own.
        let complete = pairs.iter().all(|(_, body)| body.is_some());
        for (statement, body) in pairs {
            self.statements.push(statement);
            if let Some(body) = body.filter(|_| complete) {
                self.bodies.push(body);
            }
        }
    }
}

/// Statement versions one transaction committed, their JSON as stored, and
/// the outbox row that lists them (deleted once they are on the broker).
#[derive(Debug, Default)]
pub struct Restated {
    pub statements: Vec<Statement>,
    pub bodies: Vec<String>,
    pub outbox: Vec<i64>,
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

    fn outcome(versions: &[(&str, &str, i64)], bodies: bool) -> BatchOutcome {
        let statements: Vec<Statement> = versions
            .iter()
            .map(|(a, m, v)| statement(a, m, *v))
            .collect();
        BatchOutcome {
            bodies: if bodies {
                statements
                    .iter()
                    .map(|s| format!("{}@{}", s.account_id, s.version))
                    .collect()
            } else {
                Vec::new()
            },
            statements,
            ..BatchOutcome::default()
        }
    }

    #[test]
    fn the_newest_version_of_each_statement_is_kept_with_its_body() {
        let mut out = outcome(
            &[
                ("b", "2026-11", 2),
                ("a", "2026-11", 3),
                ("b", "2026-11", 4),
                ("a", "2026-10", 1),
            ],
            true,
        );
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
        assert_eq!(out.bodies, ["a@1", "a@3", "b@4"]);
        // Without a body for each, none: publishing serialises them.
        let mut out = outcome(&[("b", "2026-11", 2), ("b", "2026-11", 4)], false);
        out.keep_newest_statements();
        assert_eq!((out.statements.len(), out.bodies.len()), (1, 0));
    }
}
