//! What a run records beside its speeds: its knobs (the shape of the load,
//! so a sweep's results file says what each line measured) and the
//! database's figures read before and after the throughput run.

use anyhow::bail;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};
use tally_platform::Config;

use super::BenchArgs;

/// The shape of a run's load, and how many instances of rating and
/// invoicing served it (a results line without them: one of each, no churn).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    pub accounts: usize,
    pub providers: usize,
    pub skus_per_provider: usize,
    /// All providers' SKUs together.
    pub skus: usize,
    pub zipf: f64,
    pub lines: usize,
    pub contracts_percent: u32,
    pub commitment: Decimal,
    pub grants: bool,
    pub history_months: u32,
    pub history_events: u64,
    pub events: u64,
    #[serde(default = "one")]
    pub rating_instances: usize,
    #[serde(default = "one")]
    pub invoicing_instances: usize,
    /// Instances left and joined during the throughput run (`--churn`).
    #[serde(default)]
    pub churn: bool,
}

fn one() -> usize {
    1
}

impl Default for Knobs {
    fn default() -> Knobs {
        Knobs {
            accounts: 0,
            providers: 0,
            skus_per_provider: 0,
            skus: 0,
            zipf: 0.0,
            lines: 0,
            contracts_percent: 0,
            commitment: Decimal::ZERO,
            grants: false,
            history_months: 0,
            history_events: 0,
            events: 0,
            rating_instances: 1,
            invoicing_instances: 1,
            churn: false,
        }
    }
}

impl Knobs {
    pub(super) fn of(a: &BenchArgs) -> Knobs {
        Knobs {
            accounts: a.accounts,
            providers: a.providers,
            skus_per_provider: a.skus,
            skus: a.providers * a.skus,
            zipf: a.zipf,
            lines: a.lines,
            contracts_percent: a.contracts,
            commitment: a.commitment,
            grants: a.grants,
            history_months: a.history_months,
            history_events: a.history_events,
            events: a.events,
            rating_instances: a.rating_instances,
            invoicing_instances: a.invoicing_instances,
            churn: a.churn,
        }
    }
}

/// Bytes on disk of each table of the bench database (with its indexes
/// and TOAST; a partitioned table with its partitions).
pub(super) async fn table_sizes(pool: &PgPool) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text,
                sum(pg_total_relation_size(c.oid))::bigint
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r'
         GROUP BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// The statements rating has published on `billing.statements` so far
/// (every version, as the database stored its body): (messages, bytes of
/// their payloads). Read from the start of the topic to its end as it is
/// now, by a group of the bench's own.
pub(super) async fn published_statements(config: &Config) -> anyhow::Result<(u64, u64)> {
    use rdkafka::consumer::Consumer;
    use rdkafka::Message;
    let topic = config.topics().statements;
    let consumer = tally_platform::kafka::consumer(
        config,
        &format!("{}-statement-bytes", config.group_prefix),
    )?;
    let wait = Duration::from_secs(10);
    let metadata = tokio::task::block_in_place(|| consumer.fetch_metadata(Some(&topic), wait))?;
    let mut end: HashMap<i32, i64> = HashMap::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        let (_, high) = tokio::task::block_in_place(|| {
            consumer.fetch_watermarks(&topic, partition.id(), wait)
        })?;
        if high > 0 {
            end.insert(partition.id(), high);
        }
    }
    consumer.subscribe(&[&topic])?;
    let (mut messages, mut bytes) = (0u64, 0u64);
    let deadline = Instant::now() + Duration::from_secs(300);
    while !end.is_empty() {
        if Instant::now() > deadline {
            bail!("billing.statements was not read to its end within 300 s");
        }
        let batch = tally_platform::kafka::next_batch_within(
            &consumer,
            5000,
            Duration::from_millis(50),
            Duration::from_secs(1),
        )
        .await?;
        for m in batch {
            let Some(last) = end.get(&m.partition()).copied() else {
                continue;
            };
            if m.offset() < last {
                messages += 1;
                bytes += m.payload().map_or(0, <[u8]>::len) as u64;
            }
            if m.offset() + 1 >= last {
                end.remove(&m.partition());
            }
        }
    }
    Ok((messages, bytes))
}
