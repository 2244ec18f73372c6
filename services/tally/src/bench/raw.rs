//! Kafka ingest (`usage.ingest` records until the collector committed past
//! them) and the raw ceilings underneath: rdkafka produce and consume,
//! PostgreSQL COPY.

use anyhow::bail;
use chrono::Utc;
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tally_platform::Config;

use super::workload::Gen;
use super::BenchArgs;

/// Produces events `from..from + count` to `usage.ingest` (records of
/// `batch_size` events of one provider, with the `tally-provider` header)
/// and waits until the collector's consumer group has committed past the
/// last record: events/s from the first record sent.
pub(super) async fn kafka_ingest(
    config: &Config,
    gen: &Gen<'_>,
    from: u64,
    count: u64,
    a: &BenchArgs,
) -> anyhow::Result<f64> {
    use futures::StreamExt;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let topic = config.topics().usage_ingest;
    let size = a.batch_size.max(1) as u64;
    // Records follow the HTTP run's batches (one provider each), cut at
    // `from` and at the end.
    let records: Vec<(usize, String)> = (from / size..(from + count).div_ceil(size))
        .map(|k| gen.batch((k * size).max(from)..((k + 1) * size).min(from + count)))
        .collect();
    let producer = tally_platform::kafka::producer(config)?;
    let t0 = Instant::now();
    let delivered: Vec<Result<(i32, i64), rdkafka::error::KafkaError>> =
        futures::stream::iter(records.iter().enumerate())
            .map(|(k, (provider, body))| {
                let key = k.to_string();
                let producer = &producer;
                let topic = &topic;
                async move {
                    let id = &gen.catalog.provider_ids[*provider];
                    let record = FutureRecord::to(topic)
                        .key(&key)
                        .payload(body.as_bytes())
                        .headers(OwnedHeaders::new().insert(Header {
                            key: tally_collector::kafka_ingest::PROVIDER_HEADER,
                            value: Some(id.as_str()),
                        }));
                    producer
                        .send(record, Duration::from_secs(30))
                        .await
                        .map(|d| (d.partition, d.offset))
                        .map_err(|(e, _)| e)
                }
            })
            .buffer_unordered(a.concurrency.max(1))
            .collect()
            .await;
    let mut end: HashMap<i32, i64> = HashMap::new();
    for d in delivered {
        let (partition, offset) = d?;
        let next = end.entry(partition).or_default();
        *next = (*next).max(offset + 1);
    }
    let watcher: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", config.group("collector-ingest"))
        .create()?;
    let mut wanted = rdkafka::TopicPartitionList::new();
    for partition in end.keys() {
        wanted.add_partition(&topic, *partition);
    }
    let deadline = Instant::now() + Duration::from_secs(600 + count / 1000);
    loop {
        let committed = tokio::task::block_in_place(|| {
            watcher.committed_offsets(wanted.clone(), Duration::from_secs(10))
        })?;
        let done = end.iter().all(|(partition, next)| {
            committed
                .find_partition(&topic, *partition)
                .and_then(|e| e.offset().to_raw())
                .is_some_and(|at| at >= *next)
        });
        if done {
            return Ok(count as f64 / t0.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("the collector did not take every usage.ingest record before the deadline");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raw rdkafka produce and consume of the usage payloads, and raw COPY of
/// the dedupe rows, each of `a.ceiling_events` records: (produce/s,
/// consume/s, COPY rows/s). The producer sends the ingest run's batches
/// with its concurrency, each batch waited for like a POST.
pub(super) async fn ceilings(
    config: &Config,
    pool: &PgPool,
    gen: &Gen<'_>,
    a: &BenchArgs,
) -> anyhow::Result<(f64, f64, f64)> {
    use futures::StreamExt;
    use rdkafka::consumer::Consumer;
    let n = a.ceiling_events;
    let mut raw = config.clone();
    raw.topic_prefix = format!("{}ceiling.", config.topic_prefix);
    tally_platform::kafka::ensure_topics(&raw).await?;
    let topic = raw.topics().usage_events;
    let payloads: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let p = gen.plan(i);
            let account = gen.catalog.accounts[p.account].clone();
            let message = serde_json::json!({
                "kind": "usage",
                "provider_id": gen.catalog.provider_ids[p.provider],
                "event_id": format!("e{i}"),
                "account_id": account,
                "sku": gen.catalog.skus[p.provider][p.sku].0,
                "quantity": Decimal::new(p.quantity, 1).to_string(),
                "time": p.time,
                "received_at": Utc::now(),
            });
            Ok((account, serde_json::to_vec(&message)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let producer = tally_platform::kafka::producer(&raw)?;
    let t0 = Instant::now();
    let sent: Vec<Result<(), rdkafka::error::KafkaError>> =
        futures::stream::iter(payloads.chunks(a.batch_size.max(1)))
            .map(|chunk| {
                tally_platform::kafka::send_all(
                    &producer,
                    chunk
                        .iter()
                        .map(|(k, p)| (topic.as_str(), k.as_str(), p.as_slice())),
                )
            })
            .buffer_unordered(a.concurrency.max(1))
            .collect()
            .await;
    sent.into_iter().collect::<Result<Vec<()>, _>>()?;
    let produce = n as f64 / t0.elapsed().as_secs_f64();

    let consumer = tally_platform::kafka::consumer(&raw, &format!("{}ceiling", raw.group_prefix))?;
    consumer.subscribe(&[&topic])?;
    let mut got = 0u64;
    let mut t0 = None;
    while got < n {
        let batch =
            tally_platform::kafka::next_batch(&consumer, 5000, Duration::from_millis(50)).await?;
        t0.get_or_insert_with(Instant::now);
        got += batch.len() as u64;
    }
    // From the first message on: the group join is not the broker's speed.
    let consume = n as f64 / t0.map_or(1.0, |t| t.elapsed().as_secs_f64());

    sqlx::query("CREATE TABLE bench_copy (LIKE processed_events INCLUDING ALL)")
        .execute(pool)
        .await?;
    let mut text = String::with_capacity(n as usize * 64);
    let stamp = Utc::now().to_rfc3339();
    for i in 0..n {
        let p = gen.plan(i);
        text.push_str(&format!(
            "{}\te{i}\t{}\t{}\t{stamp}\n",
            gen.catalog.provider_ids[p.provider],
            gen.catalog.accounts[p.account],
            p.time.to_rfc3339()
        ));
    }
    let mut conn = pool.acquire().await?;
    let t0 = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY bench_copy (provider_id, event_id, account_id, event_time, processed_at) FROM STDIN",
        )
        .await?;
    for chunk in text.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    let copy_rate = n as f64 / t0.elapsed().as_secs_f64();
    Ok((produce, consume, copy_rate))
}
