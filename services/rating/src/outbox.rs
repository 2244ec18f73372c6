//! Publishing statements: after the rating transaction commits, each new
//! version goes to `billing.statements`; `published_version` records what
//! reached the broker, so versions a crash left behind are sent again.

use rdkafka::producer::FutureProducer;
use sqlx::PgPool;
use tally_domain::Statement;

/// Key of a statement message: `<account>:<YYYY-MM>`.
pub fn statement_key(statement: &Statement) -> String {
    format!("{}:{}", statement.account_id, statement.period.label())
}

/// Sends statements and waits for every ack, then records them as published.
#[tracing::instrument(skip_all, fields(count = statements.len()))]
pub async fn publish(
    pool: &PgPool,
    producer: &FutureProducer,
    topic: &str,
    statements: &[Statement],
) -> anyhow::Result<()> {
    if statements.is_empty() {
        return Ok(());
    }
    let keys: Vec<String> = statements.iter().map(statement_key).collect();
    let payloads = statements
        .iter()
        .map(serde_json::to_vec)
        .collect::<Result<Vec<_>, _>>()?;
    tally_platform::kafka::send_all(
        producer,
        keys.iter()
            .zip(&payloads)
            .map(|(k, p)| (topic, k.as_str(), p.as_slice())),
    )
    .await?;
    let mut conn = pool.acquire().await?;
    crate::repo::mark_published(&mut conn, statements).await?;
    metrics::counter!("tally_statements_published_total").increment(statements.len() as u64);
    Ok(())
}

/// Publishes every statement version not yet on the broker (after a crash).
pub async fn publish_pending(
    pool: &PgPool,
    producer: &FutureProducer,
    topic: &str,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let pending = {
            let mut conn = pool.acquire().await?;
            crate::repo::unpublished(&mut conn, 1000).await?
        };
        if pending.is_empty() {
            return Ok(total);
        }
        total += pending.len();
        publish(pool, producer, topic, &pending).await?;
    }
}
