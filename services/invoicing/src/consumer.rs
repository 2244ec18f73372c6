//! The statement consumer: the newest version of each account-period becomes
//! its draft invoice; the database commits before the Kafka offsets.

use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tally_domain::Statement;
use tally_platform::kafka;
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
        match invoices_repo::apply_statements(&mut tx, &newest).await {
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

fn decode(batch: &[OwnedMessage]) -> Vec<Statement> {
    batch
        .iter()
        .filter_map(|m| match serde_json::from_slice::<Statement>(m.payload().unwrap_or_default()) {
            Ok(s) => Some(s),
            Err(err) => {
                metrics::counter!("tally_statements_invalid_total").increment(1);
                tracing::error!(partition = m.partition(), offset = m.offset(), error = %err, "skipping a statement that does not parse");
                None
            }
        })
        .collect()
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
        let statements = decode(&batch);
        let mut backoff = Duration::from_millis(100);
        loop {
            match apply_statements(&pool, &statements).await {
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
            statements = statements.len(),
            ms = started.elapsed().as_millis() as u64,
            "statements applied"
        );
        metrics::histogram!("tally_invoicing_batch_seconds")
            .record(started.elapsed().as_secs_f64());
    }
}
