//! Publishing statements: each rating transaction records the account-periods
//! it restated in `statement_outbox`; once it committed, their new versions go
//! to `billing.statements` and the outbox row is deleted. Rows a failed
//! publish or a crash left behind are published again by the sweep (the
//! newest version of each statement: invoicing keeps the newest).

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use sqlx::PgPool;
use tally_platform::db;
use tally_platform::kafka::{self, Producer};
use tally_platform::statements::{StoredStatement, HEADER, STORED};

use crate::outcome::HeldStatement;

/// Where statements go: the producer, the topic, and the largest body
/// published whole (`TALLY_STATEMENT_MAX_BYTES`).
#[derive(Clone)]
pub struct StatementSink {
    pub producer: Producer,
    pub topic: String,
    pub max_bytes: usize,
}

/// What is sent instead of a statement's body: nothing (the body goes)
/// while it is at most `max_bytes`, else a reference to the version stored
/// in PostgreSQL ([`tally_platform::statements`]).
fn payload(statement: &HeldStatement, max_bytes: usize) -> serde_json::Result<Option<Vec<u8>>> {
    if statement.bytes <= max_bytes {
        return Ok(None);
    }
    serde_json::to_vec(&StoredStatement {
        account_id: statement.account_id.clone(),
        period: statement.period,
        version: statement.version,
        bytes: statement.bytes,
    })
    .map(Some)
}

/// Statement bytes handed to the producer at a time, each chunk's acks
/// awaited before the next is sent (but always one statement): librdkafka
/// copies every payload it is given, and again into its compressed produce
/// requests, so a batch's statements sent at once were held twice more
/// until the broker acked them all (heaptrack of a run at 400 lines a
/// statement: 48 MiB of copies and 30 MiB of requests at rating's peak;
/// BENCHMARKS.md, "Rating's and invoicing's memory at 400 lines").
const PUBLISH_CHUNK_BYTES: usize = 4 << 20;

/// Sends statements (their bodies as stored, with their trace context,
/// `traceparents`, when there is one for each) in chunks of at most
/// [`PUBLISH_CHUNK_BYTES`] of bodies, in order, each decompressed as its
/// chunk goes, waiting for every ack, then deletes the outbox rows that
/// list them. A body larger than the sink's `max_bytes` goes as a reference
/// (counted in `tally_statements_stored_total`, logged with the code
/// `statement_stored`).
#[tracing::instrument(skip_all, fields(count = statements.len()))]
pub async fn publish(
    pool: &PgPool,
    sink: &StatementSink,
    statements: &[HeldStatement],
    traceparents: &[String],
    outbox: &[i64],
) -> anyhow::Result<()> {
    for (from, to) in db::chunks(statements, PUBLISH_CHUNK_BYTES, |s| s.bytes) {
        let traced = if traceparents.len() == statements.len() {
            &traceparents[from..to]
        } else {
            &[]
        };
        send(sink, &statements[from..to], traced).await?;
    }
    if !outbox.is_empty() {
        let mut conn = pool.acquire().await?;
        crate::repo::clear_outbox(&mut conn, outbox).await?;
    }
    metrics::counter!("tally_statements_published_total").increment(statements.len() as u64);
    Ok(())
}

/// Sends these statements (and their trace context, when there is one for
/// each), and waits for every ack.
async fn send(
    sink: &StatementSink,
    statements: &[HeldStatement],
    traceparents: &[String],
) -> anyhow::Result<()> {
    let keys: Vec<String> = statements.iter().map(HeldStatement::key).collect();
    let references = statements
        .iter()
        .map(|s| payload(s, sink.max_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    // Only the bodies that go whole are decompressed.
    let bodies = statements
        .iter()
        .zip(&references)
        .map(|(s, r)| match r {
            None => s.body(),
            Some(_) => Ok(Vec::new()),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let pending: Vec<_> = statements
        .iter()
        .enumerate()
        .map(|(i, statement)| {
            let mut headers = OwnedHeaders::new();
            if let Some(value) = traceparents.get(i) {
                headers = headers.insert(Header {
                    key: tally_platform::trace::TRACEPARENT,
                    value: Some(value.as_str()),
                });
            }
            let payload = match &references[i] {
                Some(reference) => {
                    tracing::warn!(
                        code = "statement_stored",
                        account = %statement.account_id,
                        period = %statement.period.label(),
                        version = statement.version,
                        bytes = statement.bytes,
                        max_bytes = sink.max_bytes,
                        "statement larger than TALLY_STATEMENT_MAX_BYTES: published by reference"
                    );
                    headers = headers.insert(Header {
                        key: HEADER,
                        value: Some(STORED),
                    });
                    reference.as_slice()
                }
                None => bodies[i].as_slice(),
            };
            let record = FutureRecord::to(&sink.topic)
                .key(keys[i].as_str())
                .payload(payload)
                .headers(headers);
            sink.producer.send(record, kafka::PRODUCE_TIMEOUT)
        })
        .collect();
    kafka::wait_all(pending).await?;
    let stored = references.iter().filter(|r| r.is_some()).count();
    metrics::counter!("tally_statements_stored_total").increment(stored as u64);
    Ok(())
}

/// Statements published (and held in memory) at a time by the sweep.
const SWEEP_CHUNK: usize = 1000;

/// Publishes the statements of every outbox row left behind (after a crash
/// or a failed publish), `SWEEP_CHUNK` statements at a time, then deletes
/// the rows. Returns how many statements it sent.
pub async fn publish_pending(pool: &PgPool, sink: &StatementSink) -> anyhow::Result<usize> {
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
            let statements = {
                let mut conn = pool.acquire().await?;
                crate::repo::statement_bodies(&mut conn, chunk).await?
            };
            total += statements.len();
            publish(pool, sink, &statements, &[], &[]).await?;
        }
        let mut conn = pool.acquire().await?;
        crate::repo::clear_outbox(&mut conn, &ids).await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal::Decimal;
    use rust_decimal_macros::dec;
    use tally_domain::{
        AccountId, Currency, Period, PriceModel, ProviderId, ProviderKind, ProviderRef, Sku,
        Statement, UsageAggregate,
    };

    /// One account using every SKU of 4 providers × 2,500 (the issue's
    /// 10,000): ids and names as `tally bench` makes them (`p1.sku42`,
    /// `SKU 42`), or `long` ones as a real catalog has them.
    fn ten_thousand_lines(long: bool) -> Statement {
        let mut aggregates = Vec::new();
        for p in 0..4_i64 {
            let provider = ProviderRef {
                id: ProviderId::parse(&if long {
                    format!("partner-provider-{p}")
                } else {
                    format!("p{p}")
                })
                .unwrap(),
                name: if long {
                    format!("Partner Provider Number {p} Incorporated")
                } else {
                    format!("Provider {p}")
                },
                kind: if p == 0 {
                    ProviderKind::FirstParty
                } else {
                    ProviderKind::Partner
                },
            };
            for s in 0..2_500_i64 {
                let (sku, name, unit) = if long {
                    (
                        format!("{}.compute.instance-type-{s}.hours", provider.id),
                        format!("Compute instance type {s}, on-demand, per hour, us-east-1"),
                        "instance-hour",
                    )
                } else {
                    (
                        format!("{}.sku{s}", provider.id),
                        format!("SKU {s}"),
                        "unit",
                    )
                };
                aggregates.push(UsageAggregate {
                    provider: provider.clone(),
                    sku: Sku::parse(&sku).unwrap(),
                    sku_name: name,
                    unit: unit.into(),
                    price_id: 100_000 + p * 2_500 + s,
                    price_effective_from: chrono::Utc
                        .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
                        .unwrap(),
                    model: PriceModel::per_unit(Decimal::new(1_237 + 311 * p + 97 * s, 5))
                        .unwrap()
                        .into(),
                    quantity: Decimal::new(12_345 + s, 1),
                    event_count: 1,
                    markup_pct: dec!(5),
                    platform_fee_pct: if p == 0 { dec!(100) } else { dec!(20) },
                    resource: None,
                    included: Decimal::ZERO,
                });
            }
        }
        Statement::compute(
            AccountId::parse("a0").unwrap(),
            Period::parse_month("2026-11").unwrap(),
            Currency::parse("USD").unwrap(),
            1,
            aggregates,
        )
        .unwrap()
    }

    /// The sizes behind `TALLY_STATEMENT_MAX_BYTES`' default (run with
    /// `--nocapture` to see them): a 10,000-line statement is published
    /// whole with room to spare, and goes by reference under a smaller
    /// limit.
    #[test]
    fn a_statement_of_ten_thousand_lines_is_published_whole() {
        for long in [false, true] {
            let statement = ten_thousand_lines(long);
            assert_eq!(statement.lines.len(), 10_000);
            let body = serde_json::to_vec(&statement).unwrap();
            let per_line = body.len() / statement.lines.len();
            println!(
                "{} names: {} bytes for 10,000 lines, {per_line} bytes a line",
                if long { "long" } else { "bench" },
                body.len()
            );
            assert!((300..600).contains(&per_line), "{per_line} bytes a line");
            // Three times the scale fits the default.
            assert!(
                3 * body.len() <= kafka::STATEMENT_MAX_BYTES,
                "{}",
                body.len()
            );
            let held = HeldStatement::of(&statement).unwrap();
            assert_eq!(held.bytes, body.len());
            assert_eq!(held.body().unwrap(), body);
            assert_eq!(payload(&held, kafka::STATEMENT_MAX_BYTES).unwrap(), None);
            let reference = payload(&held, body.len() - 1)
                .unwrap()
                .expect("a reference");
            let read: StoredStatement = serde_json::from_slice(&reference).unwrap();
            assert_eq!(read, StoredStatement::of(&statement, body.len()));
            assert_eq!((read.account_id.as_str(), read.version), ("a0", 1));
        }
    }
}
