//! Publishing statements: each rating transaction records the account-periods
//! it restated in `statement_outbox`; once it committed, their new versions go
//! to `billing.statements` and the outbox row is deleted. Rows a failed
//! publish or a crash left behind are published again by the sweep (the
//! newest version of each statement: invoicing keeps the newest).

use sqlx::PgPool;
use tally_domain::Statement;

/// Sends statements (their JSON as stored, `bodies`, when there is one for
/// each; with their trace context, `traceparents`, when there is one for
/// each) and waits for every ack, then deletes the outbox rows that list
/// them.
#[tracing::instrument(skip_all, fields(count = statements.len()))]
pub async fn publish(
    pool: &PgPool,
    producer: &tally_platform::kafka::Producer,
    topic: &str,
    statements: &[Statement],
    bodies: &[String],
    traceparents: &[String],
    outbox: &[i64],
) -> anyhow::Result<()> {
    if !statements.is_empty() {
        let keys: Vec<String> = statements.iter().map(Statement::key).collect();
        let serialised;
        let payloads: Vec<&[u8]> = if bodies.len() == statements.len() {
            bodies.iter().map(String::as_bytes).collect()
        } else {
            serialised = statements
                .iter()
                .map(serde_json::to_vec)
                .collect::<Result<Vec<_>, _>>()?;
            serialised.iter().map(Vec::as_slice).collect()
        };
        tally_platform::kafka::send_all_traced(
            producer,
            keys.iter().zip(payloads).enumerate().map(|(i, (k, p))| {
                (
                    topic,
                    k.as_str(),
                    p,
                    traceparents.get(i).map(String::as_str),
                )
            }),
        )
        .await?;
    }
    if !outbox.is_empty() {
        let mut conn = pool.acquire().await?;
        crate::repo::clear_outbox(&mut conn, outbox).await?;
    }
    metrics::counter!("tally_statements_published_total").increment(statements.len() as u64);
    Ok(())
}

/// Statements published (and held in memory) at a time by the sweep.
const SWEEP_CHUNK: usize = 1000;

/// Publishes the statements of every outbox row left behind (after a crash
/// or a failed publish), `SWEEP_CHUNK` statements at a time, then deletes
/// the rows. Returns how many statements it sent.
pub async fn publish_pending(
    pool: &PgPool,
    producer: &tally_platform::kafka::Producer,
    topic: &str,
) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let mut conn = pool.acquire().await?;
        let ids = crate::repo::pending_outbox(&mut conn, SWEEP_CHUNK as i64).await?;
        if ids.is_empty() {
            return Ok(total);
        }
        let keys = crate::repo::outbox_keys(&mut conn, &ids).await?;
        drop(conn);
        for chunk in keys.chunks(SWEEP_CHUNK) {
            let (statements, bodies) = {
                let mut conn = pool.acquire().await?;
                crate::repo::statement_bodies(&mut conn, chunk).await?
            };
            total += statements.len();
            publish(pool, producer, topic, &statements, &bodies, &[], &[]).await?;
        }
        let mut conn = pool.acquire().await?;
        crate::repo::clear_outbox(&mut conn, &ids).await?;
    }
}
