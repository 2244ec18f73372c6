//! Kafka: producers that answer only after `acks=all`, consumers that commit
//! offsets by hand after the database transaction, topic creation.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer as _, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

use crate::config::Config;

/// Tally's producers.
pub type Producer = FutureProducer<Context>;
/// Tally's consumers.
pub type Consumer = StreamConsumer<Context>;

/// What Tally's Kafka clients do with librdkafka's own reports. A broker
/// connection that fails or drops, or every broker out of reach for a while,
/// is something librdkafka recovers from by itself (it reconnects, and the
/// metadata moves partitions to new leaders): logged as a warning. What it
/// cannot recover from surfaces where Tally uses the client (a produce or a
/// commit that fails), and is logged there.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context;

/// A librdkafka report of a connection it will make again by itself.
fn is_transient(facility: &str, message: &str) -> bool {
    matches!(facility, "FAIL" | "BROKERFAIL" | "CONNECT" | "ERROR")
        && [
            "Connect to",
            "Connection refused",
            "Disconnected",
            "brokers are down",
            "Broker transport failure",
            "timed out",
            "Connection reset",
        ]
        .iter()
        .any(|m| message.contains(m))
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
                if !is_transient(facility, message) =>
            {
                tracing::error!(target: "librdkafka", facility, "{message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", facility, "{message}")
            }
            _ => tracing::warn!(target: "librdkafka", facility, "{message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        // The log callback has already reported a transient one as a warning.
        if is_transient_error(&error) {
            tracing::debug!(target: "librdkafka", error = %error, "{reason}");
        } else {
            tracing::error!(target: "librdkafka", error = %error, "{reason}");
        }
    }
}

/// A broker out of reach for now: librdkafka reconnects by itself.
pub fn is_transient_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::Resolve
        )
    )
}

/// What a consumer loop does with an error from `recv`: while a broker is
/// out of reach librdkafka reports it on every poll, so the loop waits a
/// moment instead of spinning (logged at debug: the client's own warning
/// already said it), and warns of anything else.
pub async fn after_consumer_error(error: &KafkaError) {
    if is_transient_error(error) {
        tracing::debug!(error = %error, "consumer waiting for a broker");
    } else {
        tracing::warn!(error = %error, "consumer error");
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
}

impl ConsumerContext for Context {}

/// How long a produce may wait in the client before it is reported failed.
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// An idempotent producer with `acks=all`: a delivered message is durable on the broker.
pub fn producer(config: &Config) -> Result<Producer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set(
            "message.timeout.ms",
            PRODUCE_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(Context)
}

/// A consumer in `group` that never commits on its own.
pub fn consumer(config: &Config, group: &str) -> Result<Consumer, KafkaError> {
    let session = config.kafka_session_timeout.as_millis();
    ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        // A consumer waits at most 50 ms for more data before answering
        // (the default 500 ms shows up directly in freshness).
        .set("fetch.wait.max.ms", "50")
        // Prefetch up to 16 MiB, not librdkafka's 64 MiB + 100,000 messages
        // per partition: bounded memory, batches still full.
        .set("queued.max.messages.kbytes", "16384")
        .set("queued.min.messages", "20000")
        // When a partition's fetch fills that queue, librdkafka pauses
        // fetching for `fetch.queue.backoff.ms` (1 s by default), which
        // shows up directly in freshness. Retry after 10 ms instead.
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", session.to_string())
        .set("heartbeat.interval.ms", (session / 4).max(100).to_string())
        // A batch retried while PostgreSQL is down keeps the consumer from
        // polling: it stays in its group for up to this long (librdkafka's
        // and Kafka's default) before its partitions move to another member.
        .set(
            "max.poll.interval.ms",
            config.kafka_max_poll_interval.as_millis().to_string(),
        )
        .create_with_context(Context)
}

/// Creates the pipeline's topics if they do not exist yet.
pub async fn ensure_topics(config: &Config) -> Result<(), KafkaError> {
    let admin: AdminClient<Context> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .create_with_context(Context)?;
    let topics = config.topics();
    // -1: the broker's `default.replication.factor` (KIP-464).
    let replication = || TopicReplication::Fixed(config.topic_replication.unwrap_or(-1));
    let wanted = [
        NewTopic::new(&topics.usage_events, config.usage_partitions, replication()),
        NewTopic::new(&topics.usage_dlq, 1, replication()),
        NewTopic::new(&topics.statements, config.usage_partitions, replication()),
    ];
    let results = admin
        .create_topics(
            &wanted,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code)).inspect_err(|_| {
                    tracing::error!(%topic, ?code, "could not create topic");
                })
            }
        }
    }
    Ok(())
}

/// Sends every record and waits until the broker acknowledged each one.
/// Returns the first failure, if any.
pub async fn send_all<'a>(
    producer: &Producer,
    records: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8])>,
) -> Result<(), KafkaError> {
    let pending: Vec<_> = records
        .into_iter()
        .map(|(topic, key, payload)| {
            producer.send(
                FutureRecord::to(topic).key(key).payload(payload),
                PRODUCE_TIMEOUT,
            )
        })
        .collect();
    let mut first_error = None;
    for outcome in futures::future::join_all(pending).await {
        if let Err((err, _)) = outcome {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Waits for one message, then gathers more until `max` or `wait` elapsed.
///
/// Cancelling this future after its first message arrived drops messages
/// that were taken from the consumer: only cancel it when the consumer stops
/// (or nothing after the dropped messages is committed). To wake up
/// periodically, use [`next_batch_within`] instead of racing a timer.
pub async fn next_batch(
    consumer: &Consumer,
    max: usize,
    wait: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    let first = consumer.recv().await?.detach();
    gather(consumer, first, max, wait).await
}

/// Like [`next_batch`], but returns an empty batch when no message arrives
/// within `idle`.
pub async fn next_batch_within(
    consumer: &Consumer,
    max: usize,
    wait: Duration,
    idle: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    match tokio::time::timeout(idle, consumer.recv()).await {
        Ok(first) => gather(consumer, first?.detach(), max, wait).await,
        Err(_) => Ok(Vec::new()),
    }
}

async fn gather(
    consumer: &Consumer,
    first: OwnedMessage,
    max: usize,
    wait: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    let mut batch = vec![first];
    let deadline = Instant::now() + wait;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => batch.push(message.detach()),
            Ok(Err(err)) => {
                if !is_transient_error(&err) {
                    tracing::warn!(error = %err, "consumer error while gathering a batch");
                }
                break;
            }
            Err(_) => break,
        }
    }
    Ok(batch)
}

/// Commits, per partition, the offset after the last message of `batch`.
pub fn commit_batch(consumer: &Consumer, batch: &[OwnedMessage]) -> Result<(), KafkaError> {
    let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
    for m in batch {
        let entry = next.entry((m.topic(), m.partition())).or_insert(0);
        *entry = (*entry).max(m.offset() + 1);
    }
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in next {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    }
    consumer.commit(&list, CommitMode::Sync)
}
