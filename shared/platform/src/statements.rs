//! The wire of `billing.statements`. A statement version is published
//! whole (its JSON) when its body is at most `TALLY_STATEMENT_MAX_BYTES`;
//! a larger one is published as a [`StoredStatement`]: a reference, with
//! the header `tally-statement: stored`, to the version rating stored in
//! PostgreSQL in the transaction that made it (the claim-check pattern:
//! the body is durable before the reference is sent). Invoicing reads the
//! body from there ([`load_stored`]). Nothing is refused and no partition
//! waits: a statement of any size reaches its draft invoice.

use chrono::{DateTime, Utc};
use rdkafka::message::Headers as _;
use rdkafka::Message;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use tally_domain::{AccountId, Period, Statement};

/// The header that marks a reference, and its value.
pub const HEADER: &str = "tally-statement";
pub const STORED: &str = "stored";

/// A statement version too large to publish whole: read it from the
/// `statements` table (which holds that version or a newer one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredStatement {
    pub account_id: AccountId,
    pub period: Period,
    pub version: i64,
    /// The size of its body, in bytes (what made it a reference).
    pub bytes: usize,
}

impl StoredStatement {
    pub fn of(statement: &Statement, bytes: usize) -> Self {
        Self {
            account_id: statement.account_id.clone(),
            period: statement.period,
            version: statement.version,
            bytes,
        }
    }
}

/// What a message of `billing.statements` carries.
#[derive(Debug)]
pub enum Published {
    Whole(Box<Statement>),
    Stored(StoredStatement),
}

/// True when a message of `billing.statements` is a reference (it has the
/// header), not a whole statement.
pub fn is_reference<M: Message>(message: &M) -> bool {
    message.headers().is_some_and(|headers| {
        headers
            .iter()
            .any(|h| h.key == HEADER && h.value == Some(STORED.as_bytes()))
    })
}

/// Reads a message of `billing.statements`: a reference when it has the
/// header, else a whole statement.
pub fn decode<M: Message>(message: &M) -> Result<Published, serde_json::Error> {
    let payload = message.payload().unwrap_or_default();
    if is_reference(message) {
        serde_json::from_slice(payload).map(Published::Stored)
    } else {
        serde_json::from_slice(payload).map(|s| Published::Whole(Box::new(s)))
    }
}

/// Which statement version a whole statement's message holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Head {
    pub account_id: AccountId,
    pub period: Period,
    pub version: i64,
}

/// The account, period and version of a whole statement's message, its
/// lines skipped, not built (a message that reads here may still fail
/// [`decode`]).
pub fn head<M: Message>(message: &M) -> Result<Head, serde_json::Error> {
    serde_json::from_slice(message.payload().unwrap_or_default())
}

/// Why a referenced statement could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("statement {account}:{period} is stored at version {found:?}, below the referenced {version}")]
    Missing {
        account: String,
        period: String,
        version: i64,
        found: Option<i64>,
    },
    #[error("stored statement {account}:{period} does not parse: {source}")]
    Body {
        account: String,
        period: String,
        source: serde_json::Error,
    },
}

/// The stored statements `refs` name, each at its stored version (the
/// referenced one or newer: invoicing keeps the newest).
pub async fn load_stored(
    conn: &mut PgConnection,
    refs: &[StoredStatement],
) -> Result<Vec<Statement>, LoadError> {
    if refs.is_empty() {
        return Ok(Vec::new());
    }
    let accounts: Vec<&str> = refs.iter().map(|r| r.account_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = refs.iter().map(|r| r.period.start()).collect();
    let rows: Vec<(String, DateTime<Utc>, i64, String)> = sqlx::query_as(
        "SELECT st.account_id, st.period_start, st.version, st.body::text
         FROM statements st
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, s)
           ON st.account_id = k.a AND st.period_start = k.s",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(conn)
    .await?;
    let mut out = Vec::with_capacity(refs.len());
    for r in refs {
        let row = rows
            .iter()
            .find(|(a, s, _, _)| a == r.account_id.as_str() && *s == r.period.start());
        match row {
            Some((_, _, version, body)) if *version >= r.version => {
                let statement = serde_json::from_str(body).map_err(|source| LoadError::Body {
                    account: r.account_id.to_string(),
                    period: r.period.label(),
                    source,
                })?;
                out.push(statement);
            }
            row => {
                return Err(LoadError::Missing {
                    account: r.account_id.to_string(),
                    period: r.period.label(),
                    version: r.version,
                    found: row.map(|(_, _, v, _)| *v),
                })
            }
        }
    }
    Ok(out)
}
