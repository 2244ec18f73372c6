//! Why a rating transaction failed, what that means for the batch (retry,
//! dead-letter, wait), and the transaction runner that retries it.

use sqlx::{PgConnection, PgPool};
use tally_domain::statement::StatementError;
use tally_domain::{MoneyError, PricingError};

/// The SQLSTATE of the database's refusal to change a sealed statement.
pub const SEALED: &str = "TY001";

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A concurrent transaction stored a statement this one restated.
    #[error("a concurrent transaction restated a statement of this run first")]
    Conflict,
    /// Event times from `from` through `through` have no dedupe partition
    /// yet: the batch is rated again once they are made.
    #[error("no dedupe partition for event times from {from} through {through}")]
    Uncovered {
        from: chrono::DateTime<chrono::Utc>,
        through: chrono::DateTime<chrono::Utc>,
    },
    #[error("statement of {account} {period}: {source}")]
    Statement {
        account: String,
        period: String,
        source: StatementError,
    },
}

impl ProcessError {
    /// Worth running again at once: a serialization failure or deadlock, or
    /// a batch that met a statement a concurrent seal just closed (SQLSTATE
    /// TY001; run again, it sees the seal).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessError::Database(e) => {
                tally_platform::db::is_retryable(e)
                    || e.as_database_error().and_then(|d| d.code()).as_deref() == Some(SEALED)
            }
            ProcessError::Conflict => true,
            ProcessError::Statement { .. } | ProcessError::Uncovered { .. } => false,
        }
    }

    /// The dead-letter code of an event that fails on its own with this
    /// error: `amount_overflow` when a charge does not fit in an amount
    /// (the period's usage at its price is beyond what Tally can bill),
    /// `rating_failed` for anything else.
    pub fn dead_letter_code(&self) -> &'static str {
        match self {
            ProcessError::Statement {
                source:
                    StatementError::Pricing(PricingError::Overflow)
                    | StatementError::Money(MoneyError::Overflow),
                ..
            } => "amount_overflow",
            _ => "rating_failed",
        }
    }

    /// A failure of the code, the schema or the database, not of an event:
    /// SQLSTATE class 42 (e.g. an undefined column or a type mismatch, as
    /// when a binary runs against a database it was not built for) or 0A, a
    /// column the code expects missing, or a database that cannot be reached
    /// or timed out ([`tally_platform::db::is_unavailable`]). No event is
    /// dead-lettered for it: the batch is retried.
    pub fn is_systemic(&self) -> bool {
        match self {
            ProcessError::Database(sqlx::Error::ColumnNotFound(_)) => true,
            ProcessError::Database(e) if tally_platform::db::is_unavailable(e) => true,
            ProcessError::Database(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| code.starts_with("42") || code.starts_with("0A")),
            // Made before the batch is rated again; should it still be
            // missing, the batch waits rather than dead-lettering.
            ProcessError::Uncovered { .. } => true,
            ProcessError::Conflict | ProcessError::Statement { .. } => false,
        }
    }
}

/// Runs `work` on `input` in a transaction and commits it. A retryable
/// failure (a deadlock, a serialization failure, a sealed statement met)
/// rolls back and runs it again, up to five more times.
pub(crate) async fn in_transaction<A: ?Sized + Sync, T>(
    pool: &PgPool,
    what: &'static str,
    input: &A,
    work: impl for<'c> Fn(
        &'c mut PgConnection,
        &'c A,
    ) -> futures::future::BoxFuture<'c, Result<T, ProcessError>>,
) -> Result<T, ProcessError> {
    let mut attempt = 0;
    loop {
        let mut tx = pool.begin().await?;
        match work(&mut tx, input).await {
            Ok(done) => {
                tx.commit().await?;
                return Ok(done);
            }
            Err(err) if err.is_retryable() && attempt < 5 => {
                attempt += 1;
                tracing::warn!(attempt, error = %err, "retrying {what}");
            }
            Err(err) => return Err(err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overflowing_charge_is_dead_lettered_with_its_own_code() {
        let failed = |source| ProcessError::Statement {
            account: "acme".into(),
            period: "2026-11-01T00:00:00+00:00".into(),
            source,
        };
        assert_eq!(
            failed(StatementError::Pricing(PricingError::Overflow)).dead_letter_code(),
            "amount_overflow"
        );
        assert_eq!(
            failed(StatementError::Money(MoneyError::Overflow)).dead_letter_code(),
            "amount_overflow"
        );
        assert_eq!(
            failed(StatementError::Pricing(PricingError::NoTiers)).dead_letter_code(),
            "rating_failed"
        );
        assert_eq!(ProcessError::Conflict.dead_letter_code(), "rating_failed");
    }
}
