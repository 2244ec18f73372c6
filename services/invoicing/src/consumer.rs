//! The statement consumer: the newest version of each account-period becomes
//! its draft invoice; the database commits before the Kafka offsets. A
//! statement too large to publish whole comes as a reference and is read
//! from PostgreSQL ([`tally_platform::statements`]).

use chrono::{DateTime, Utc};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tally_domain::Statement;
use tally_platform::statements::{self, LoadError, Published, StoredStatement};
use tally_platform::{db, kafka};
use tokio_util::sync::CancellationToken;

use crate::invoices_repo;
use crate::layouts::{Applied, LineLayouts, LAYOUT_BYTES};

/// Applies statements in one transaction (newest version per account-period
/// first filtered in memory); returns how many invoices changed. Every
/// changed draft's lines are read back (no layout is remembered).
pub async fn apply_statements(pool: &PgPool, statements: &[Statement]) -> anyhow::Result<usize> {
    apply_remembering(pool, statements, &mut LineLayouts::new(0)).await
}

/// [`apply_statements`], planning each changed draft's lines from the
/// layout `layouts` remembers of it at the version the draft held; once
/// the transaction commits, the layouts written are remembered and the
/// drafts planned each way counted (`tally_invoicing_layouts_total`).
pub async fn apply_remembering(
    pool: &PgPool,
    statements: &[Statement],
    layouts: &mut LineLayouts,
) -> anyhow::Result<usize> {
    let mut newest: BTreeMap<(String, chrono::DateTime<chrono::Utc>), &Statement> = BTreeMap::new();
    for s in statements {
        let key = (s.account_id.to_string(), s.period.start());
        match newest.get(&key) {
            Some(existing) if existing.version >= s.version => {}
            _ => {
                newest.insert(key, s);
            }
        }
    }
    let newest: Vec<&Statement> = newest.into_values().collect();
    let mut attempt = 0;
    loop {
        let mut tx = pool.begin().await?;
        let mut applied = Applied::default();
        match apply_in_chunks(&mut tx, &newest, layouts, &mut applied).await {
            Ok(changed) => {
                tx.commit().await?;
                metrics::counter!("tally_invoicing_layouts_total", "from" => "memory")
                    .increment(applied.remembered);
                metrics::counter!("tally_invoicing_layouts_total", "from" => "database")
                    .increment(applied.read_back);
                layouts.remember(applied.written);
                return Ok(changed);
            }
            Err(e) if tally_platform::db::is_retryable(&e) && attempt < 5 => {
                attempt += 1;
                tracing::warn!(attempt, error = %e, "retrying invoicing transaction");
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Statement lines written by one call of [`invoices_repo::apply_statements`]
/// at most (but always one statement): sqlx copies every value bound into
/// its arguments and again into its message, so one call for a batch of
/// thousands of statements held two more copies of all their lines
/// (heaptrack: BENCHMARKS.md, "Fewer indexes on counted events, and
/// rating's memory, profiled").
const APPLY_CHUNK_LINES: usize = 4096;

/// Applies `newest` (distinct account-periods, in key order) in chunks of
/// at most [`APPLY_CHUNK_LINES`] lines, in order, in the caller's
/// transaction; returns how many invoices changed, and adds the layouts
/// written to `applied`.
async fn apply_in_chunks(
    conn: &mut sqlx::PgConnection,
    newest: &[&Statement],
    layouts: &mut LineLayouts,
    applied: &mut Applied,
) -> Result<usize, sqlx::Error> {
    let mut changed = 0;
    for (from, to) in db::chunks(newest, APPLY_CHUNK_LINES, |s| s.lines.len()) {
        changed += invoices_repo::apply_statements(&mut *conn, &newest[from..to], layouts, applied)
            .await?;
    }
    Ok(changed)
}

/// The batch's statements, the newest version of each account-period only,
/// and the references to statements too large to publish whole
/// ([`tally_platform::statements`]). Each whole statement's account, period
/// and version are read first (its lines skipped, not built): only the
/// newest version of each account-period in the batch is then read whole,
/// or, if it does not parse, the newest one that does (a busy account's
/// statement comes in many versions a batch: in a profiled backlog at 400
/// lines a statement, building them all was the largest part of
/// invoicing's heap; BENCHMARKS.md, "Rating's and invoicing's memory at
/// 400 lines"). A message read that does not parse is counted and skipped;
/// an older version than one read whole is not read.
fn decode(batch: &[OwnedMessage]) -> (Vec<Statement>, Vec<StoredStatement>) {
    // (version, index in the batch) of each account-period's messages.
    let mut versions: BTreeMap<AccountPeriod, Vec<(i64, usize)>> = BTreeMap::new();
    let mut stored = Vec::new();
    for (i, m) in batch.iter().enumerate() {
        let read = if statements::is_reference(m) {
            statements::decode(m).map(|published| {
                if let Published::Stored(r) = published {
                    stored.push(r);
                }
            })
        } else {
            statements::head(m).map(|head| {
                versions
                    .entry((head.account_id.to_string(), head.period.start()))
                    .or_default()
                    .push((head.version, i));
            })
        };
        if let Err(err) = read {
            invalid(m, &err);
        }
    }
    let mut whole = Vec::with_capacity(versions.len());
    for mut messages in versions.into_values() {
        // Newest first; of equal versions, the first in the batch.
        messages.sort_by_key(|(version, i)| (std::cmp::Reverse(*version), *i));
        for (_, i) in messages {
            match statements::decode(&batch[i]) {
                Ok(Published::Whole(s)) => {
                    whole.push(*s);
                    break;
                }
                Ok(Published::Stored(r)) => {
                    stored.push(r);
                    break;
                }
                Err(err) => invalid(&batch[i], &err),
            }
        }
    }
    (whole, stored)
}

/// Key of one account-period: (account, period start).
type AccountPeriod = (String, DateTime<Utc>);

/// Counts and logs a message of `billing.statements` that does not parse.
fn invalid(m: &OwnedMessage, err: &serde_json::Error) {
    metrics::counter!("tally_statements_invalid_total").increment(1);
    tracing::error!(partition = m.partition(), offset = m.offset(), error = %err, "skipping a statement that does not parse");
}

/// Applies the statements, and those the references name, read from
/// PostgreSQL (each at its stored version, the referenced one or newer).
/// A reference whose statement cannot be read (not stored, or its body does
/// not parse) is counted and skipped like a statement that does not parse;
/// a database error fails the batch (retried).
async fn apply_batch(
    pool: &PgPool,
    whole: &[Statement],
    stored: &[StoredStatement],
    layouts: &mut LineLayouts,
) -> anyhow::Result<usize> {
    if stored.is_empty() {
        return apply_remembering(pool, whole, layouts).await;
    }
    let mut conn = pool.acquire().await?;
    let mut all = whole.to_vec();
    for reference in stored {
        match statements::load_stored(&mut conn, std::slice::from_ref(reference)).await {
            Ok(loaded) => all.extend(loaded),
            Err(LoadError::Database(e)) => return Err(e.into()),
            Err(err) => {
                metrics::counter!("tally_statements_invalid_total").increment(1);
                tracing::error!(error = %err, "skipping a statement reference that cannot be read");
            }
        }
    }
    drop(conn);
    apply_remembering(pool, &all, layouts).await
}

/// A batch of statements ends once its messages hold this many bytes (or
/// `TALLY_BATCH_MAX` messages): a backlog's batches of up to 20,000
/// messages (statements of up to 400 lines) held 42 MiB of messages, and
/// 61 MiB of statements decoded from them, at invoicing's heap peak
/// (heaptrack; BENCHMARKS.md,
/// "Rating's memory where it loads aggregates, invoicing's batch bytes").
pub const BATCH_BYTES: usize = 16 << 20;

/// The next batch of statement messages: at most `batch_max` of them and
/// about [`BATCH_BYTES`] (one more message may pass it), gathered for at
/// most `batch_wait` after the first.
pub async fn next_batch(
    consumer: &tally_platform::kafka::Consumer,
    batch_max: usize,
    batch_wait: Duration,
) -> Result<Vec<OwnedMessage>, rdkafka::error::KafkaError> {
    kafka::next_batch_bytes(consumer, batch_max, BATCH_BYTES, batch_wait).await
}

pub async fn run(
    pool: PgPool,
    consumer: tally_platform::kafka::Consumer,
    batch_max: usize,
    batch_wait: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut layouts = LineLayouts::new(LAYOUT_BYTES);
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            batch = next_batch(&consumer, batch_max, batch_wait) => batch,
        };
        let batch = match batch {
            Ok(b) => b,
            Err(err) => {
                kafka::after_consumer_error(&err).await;
                continue;
            }
        };
        let started = Instant::now();
        let (whole, stored) = decode(&batch);
        let mut backoff = Duration::from_millis(100);
        loop {
            match apply_batch(&pool, &whole, &stored, &mut layouts).await {
                Ok(changed) => {
                    metrics::counter!("tally_statements_applied_total").increment(changed as u64);
                    break;
                }
                Err(err) => {
                    if err
                        .downcast_ref::<sqlx::Error>()
                        .is_some_and(tally_platform::db::is_unavailable)
                    {
                        tracing::warn!(error = %err, "database unavailable; retrying the invoicing batch");
                    } else {
                        tracing::error!(error = %err, "invoicing batch failed; retrying");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return Ok(()),
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        crate::traces::applied(&pool, &batch).await;
        if let Err(err) = kafka::commit_batch(&consumer, &batch) {
            tracing::warn!(error = %err, "offset commit failed after the batch was recorded");
        }
        tracing::debug!(
            statements = whole.len() + stored.len(),
            ms = started.elapsed().as_millis() as u64,
            "statements applied"
        );
        metrics::histogram!("tally_invoicing_batch_seconds")
            .record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};
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

    fn message(offset: i64, payload: Vec<u8>, reference: bool) -> OwnedMessage {
        let mut headers = OwnedHeaders::new();
        if reference {
            headers = headers.insert(Header {
                key: statements::HEADER,
                value: Some(statements::STORED),
            });
        }
        OwnedMessage::new(
            Some(payload),
            None,
            "billing.statements".into(),
            Timestamp::NotAvailable,
            0,
            offset,
            Some(headers),
        )
    }

    fn whole(offset: i64, account: &str, month: &str, version: i64) -> OwnedMessage {
        let body = serde_json::to_vec(&statement(account, month, version)).unwrap();
        message(offset, body, false)
    }

    /// A statement whose head reads but whose body does not (a total
    /// that is no number).
    fn broken(account: &str, month: &str, version: i64) -> Vec<u8> {
        let mut body = serde_json::to_value(statement(account, month, version)).unwrap();
        body["total"] = serde_json::json!("twelve");
        let bytes = serde_json::to_vec(&body).unwrap();
        assert!(statements::head(&message(0, bytes.clone(), false)).is_ok());
        bytes
    }

    #[test]
    fn only_the_newest_version_of_each_statement_in_a_batch_is_read_whole() {
        let reference = StoredStatement::of(&statement("c", "2026-11", 9), 20_000_000);
        let batch = vec![
            whole(0, "a", "2026-11", 1),
            whole(1, "a", "2026-11", 3),
            whole(2, "b", "2026-11", 1),
            // An older version after a newer one (a republish) is left.
            whole(3, "a", "2026-11", 2),
            whole(4, "a", "2026-10", 5),
            message(5, b"{not json".to_vec(), false),
            message(6, serde_json::to_vec(&reference).unwrap(), true),
            // b's newest version reads by its head but not whole: the
            // newest that does (1) is applied.
            message(7, broken("b", "2026-11", 4), false),
        ];
        let (read, stored) = decode(&batch);
        let versions: Vec<(String, String, i64)> = read
            .iter()
            .map(|s| (s.account_id.to_string(), s.period.label(), s.version))
            .collect();
        assert_eq!(
            versions,
            [
                ("a".to_owned(), "2026-10".to_owned(), 5),
                ("a".to_owned(), "2026-11".to_owned(), 3),
                ("b".to_owned(), "2026-11".to_owned(), 1),
            ]
        );
        assert_eq!(read[1], statement("a", "2026-11", 3));
        assert_eq!(stored, [reference]);
    }
}
