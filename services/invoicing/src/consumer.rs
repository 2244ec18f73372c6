//! The statement consumer: the newest version of each account-period becomes
//! its draft invoice; the database commits before the Kafka offsets. A
//! statement too large to publish whole comes as a reference and is read
//! from PostgreSQL ([`tally_platform::statements`]).

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

/// Applies statements in one transaction (newest version per account-period
/// first filtered in memory); returns how many invoices changed.
pub async fn apply_statements(pool: &PgPool, statements: &[Statement]) -> anyhow::Result<usize> {
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
        match apply_in_chunks(&mut tx, &newest).await {
            Ok(changed) => {
                tx.commit().await?;
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
/// transaction; returns how many invoices changed.
async fn apply_in_chunks(
    conn: &mut sqlx::PgConnection,
    newest: &[&Statement],
) -> Result<usize, sqlx::Error> {
    let mut changed = 0;
    for (from, to) in db::chunks(newest, APPLY_CHUNK_LINES, |s| s.lines.len()) {
        changed += invoices_repo::apply_statements(&mut *conn, &newest[from..to]).await?;
    }
    Ok(changed)
}

/// The batch's statements, and the references to statements too large to
/// publish whole ([`tally_platform::statements`]); a message that does not
/// parse is counted and skipped.
fn decode(batch: &[OwnedMessage]) -> (Vec<Statement>, Vec<StoredStatement>) {
    let mut whole = Vec::new();
    let mut stored = Vec::new();
    for m in batch {
        match statements::decode(m) {
            Ok(Published::Whole(s)) => whole.push(*s),
            Ok(Published::Stored(r)) => stored.push(r),
            Err(err) => {
                metrics::counter!("tally_statements_invalid_total").increment(1);
                tracing::error!(partition = m.partition(), offset = m.offset(), error = %err, "skipping a statement that does not parse");
            }
        }
    }
    (whole, stored)
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
) -> anyhow::Result<usize> {
    if stored.is_empty() {
        return apply_statements(pool, whole).await;
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
    apply_statements(pool, &all).await
}

pub async fn run(
    pool: PgPool,
    consumer: tally_platform::kafka::Consumer,
    batch_max: usize,
    batch_wait: Duration,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    loop {
        let batch = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            batch = kafka::next_batch(&consumer, batch_max, batch_wait) => batch,
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
            match apply_batch(&pool, &whole, &stored).await {
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
