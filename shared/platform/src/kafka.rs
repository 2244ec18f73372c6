//! Kafka: producers that answer only after `acks=all`, consumers that commit
//! offsets by hand after the database transaction, topic creation.

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
/// commit that fails), and is logged there. A consumer's context also knows
/// whether its group gave it an assignment (readiness).
#[derive(Debug, Clone, Default)]
pub struct Context {
    assigned: Arc<AtomicBool>,
}

impl Context {
    /// True while the consumer holds an assignment from its group.
    pub fn assigned(&self) -> Arc<AtomicBool> {
        self.assigned.clone()
    }
}

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

impl ConsumerContext for Context {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let assigned = matches!(rebalance, Rebalance::Assign(_));
        self.assigned.store(assigned, Ordering::Relaxed);
    }
}

/// The readiness probe of a consumer: assigned by its group.
pub fn assigned(consumer: &Consumer) -> crate::health::Probe {
    crate::health::Probe::Consumer(consumer.client().context().assigned())
}

/// The largest message (and produce batch) Tally's producers send:
/// librdkafka's `message.max.bytes`, set explicitly. Smaller than
/// [`TOPIC_MAX_MESSAGE_BYTES`], so the broker takes every batch the
/// producer builds; larger than any usage message the collector produces
/// (it refuses an event of more than its `MAX_EVENT_BYTES` first).
pub const MAX_MESSAGE_BYTES: usize = 1_000_000;

/// `max.message.bytes` of the usage topics Tally creates (Kafka's default,
/// set explicitly): above [`MAX_MESSAGE_BYTES`]. A topic made by hand needs
/// at least this much.
pub const TOPIC_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// The largest statement body (its JSON) rating publishes whole, by
/// default (`TALLY_STATEMENT_MAX_BYTES`): 16 MiB. A statement line is ~360
/// bytes of JSON with short names and ~510 with long ones (measured by
/// `rating`'s `a_statement_of_ten_thousand_lines_is_published_whole`), so
/// the 10,000 lines (one account using every SKU) are 3.6–5.1 MB:
/// three times that still fits. Larger statements go by reference
/// ([`crate::statements`]).
pub const STATEMENT_MAX_BYTES: usize = 16 * 1024 * 1024;

/// The largest `TALLY_STATEMENT_MAX_BYTES` Tally accepts (librdkafka's own
/// ceiling is 1,000,000,000 bytes; a statement beyond this goes by
/// reference anyway).
pub const STATEMENT_MAX_BYTES_CEILING: usize = 256 * 1024 * 1024;

/// Room for a statement message's key, headers and record framing above
/// its body, and again for a batch's framing above its messages.
const STATEMENT_FRAMING: usize = 64 * 1024;

/// The statements producer's `message.max.bytes`: the largest statement
/// body plus its key, headers and framing.
pub fn statement_message_max_bytes(config: &Config) -> usize {
    config.statement_max_bytes + STATEMENT_FRAMING
}

/// `max.message.bytes` of `billing.statements` (Tally sets it on the topic
/// it creates and checks it on one it finds): above
/// [`statement_message_max_bytes`], so the broker takes every batch the
/// statements producer builds. librdkafka batches a message larger than
/// `batch.size` (1,000,000 bytes) alone and sends a batch uncompressed
/// when compressing would make it larger, so no batch exceeds it.
pub fn statement_topic_max_message_bytes(config: &Config) -> usize {
    statement_message_max_bytes(config) + STATEMENT_FRAMING
}

/// How long a produce may wait in the client before it is reported failed.
pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// A client error without the value of the property librdkafka refused
/// (a misspelt `TALLY_KAFKA_SASL_PASWORD` must not print the password).
fn without_value(err: KafkaError) -> KafkaError {
    match err {
        KafkaError::ClientConfig(code, description, key, value) => {
            let description = if value.is_empty() {
                description
            } else {
                description.replace(&value, "…")
            };
            KafkaError::ClientConfig(code, description, key, "(value not shown)".into())
        }
        other => other,
    }
}

/// Adds the configuration's librdkafka properties (`TALLY_KAFKA_*`: security
/// and anything else) over Tally's defaults.
fn with_properties<'a>(client: &'a mut ClientConfig, config: &Config) -> &'a mut ClientConfig {
    for (property, value) in config.kafka_properties.iter() {
        client.set(property, value);
    }
    client
}

/// An idempotent producer with `acks=all`: a delivered message is durable on the broker.
pub fn producer(config: &Config) -> Result<Producer, KafkaError> {
    producer_with(config, &[])
}

/// Rating's producer of statements (and its dead letters): as [`producer`],
/// with messages up to [`statement_message_max_bytes`] and its batches
/// compressed with lz4 (built into librdkafka; a statement's JSON shrinks
/// 6–8 times, measured with `lz4 -1` on a 10,000-line one).
pub fn statements_producer(config: &Config) -> Result<Producer, KafkaError> {
    let max = statement_message_max_bytes(config).to_string();
    producer_with(
        config,
        &[("message.max.bytes", &max), ("compression.codec", "lz4")],
    )
}

fn producer_with(config: &Config, settings: &[(&str, &str)]) -> Result<Producer, KafkaError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("message.max.bytes", MAX_MESSAGE_BYTES.to_string())
        .set(
            "message.timeout.ms",
            PRODUCE_TIMEOUT.as_millis().to_string(),
        );
    for (property, value) in settings {
        client.set(*property, *value);
    }
    with_properties(&mut client, config)
        .create_with_context(Context::default())
        .map_err(without_value)
}

/// Invoicing's consumer of `billing.statements`: as [`consumer`], fetching
/// little at a time. Statements compress well and librdkafka keeps what it
/// fetched decompressed until each message is dropped: with fetches of up
/// to 32 MiB, smaps of invoicing at 400 lines a statement showed 125–245
/// MiB in glibc's arenas, where librdkafka allocates (BENCHMARKS.md,
/// "Invoicing's fetches"). A fetch asks for at most
/// `STATEMENT_FETCH_PARTITION_BYTES` a partition and
/// [`STATEMENT_FETCH_BYTES`] in all (`max.partition.fetch.bytes`,
/// `fetch.max.bytes`), and fetching pauses while the queue holds
/// `STATEMENT_QUEUE_KBYTES` (`queued.max.messages.kbytes`). A statement
/// larger than these still comes whole: the broker returns the first
/// record batch of a fetch's first non-empty partition whatever its size
/// (KIP-74; librdkafka rotates which partition goes first), so a response
/// may hold one of the topic's `max.message.bytes`.
pub fn statements_consumer(config: &Config, group: &str) -> Result<Consumer, KafkaError> {
    let settings = statements_consumer_settings(config);
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    consumer_with(config, group, &settings)
}

/// The librdkafka properties of [`statements_consumer`] over [`consumer`]'s.
/// A `TALLY_KAFKA_*` property is set after them and wins; these keep the
/// client valid beside one: `fetch.max.bytes` is at least a
/// `message.max.bytes` set (librdkafka refuses less), and
/// `receive.message.max.bytes` holds a record batch of the topic's
/// `max.message.bytes` beside a fetch, and a `fetch.max.bytes` set, and
/// never drops below librdkafka's default (100 MB: a batch stored while a
/// larger limit was in force still comes).
fn statements_consumer_settings(config: &Config) -> [(&'static str, String); 4] {
    let set = |property: &str| {
        config
            .kafka_properties
            .iter()
            .find(|(name, _)| *name == property)
            .and_then(|(_, value)| value.parse::<usize>().ok())
    };
    let fetch = STATEMENT_FETCH_BYTES.max(set("message.max.bytes").unwrap_or(0));
    let response = (statement_topic_max_message_bytes(config) + fetch)
        .max(set("fetch.max.bytes").map_or(0, |f| f + 512))
        .max(RECEIVE_DEFAULT_BYTES);
    [
        (
            "max.partition.fetch.bytes",
            STATEMENT_FETCH_PARTITION_BYTES.to_string(),
        ),
        ("fetch.max.bytes", fetch.to_string()),
        (
            "queued.max.messages.kbytes",
            STATEMENT_QUEUE_KBYTES.to_string(),
        ),
        ("receive.message.max.bytes", response.to_string()),
    ]
}

/// What invoicing's consumer asks a partition for in one fetch.
const STATEMENT_FETCH_PARTITION_BYTES: usize = 1024 * 1024;
/// What invoicing's consumer asks for in one fetch, all partitions together.
pub const STATEMENT_FETCH_BYTES: usize = 4 * 1024 * 1024;
/// What invoicing's consumer queues before it pauses fetching.
const STATEMENT_QUEUE_KBYTES: usize = 8 * 1024;
/// librdkafka's default `receive.message.max.bytes`.
const RECEIVE_DEFAULT_BYTES: usize = 100_000_000;

/// A consumer in `group` that never commits on its own.
pub fn consumer(config: &Config, group: &str) -> Result<Consumer, KafkaError> {
    consumer_with(config, group, &[])
}

fn consumer_with(
    config: &Config,
    group: &str,
    settings: &[(&str, &str)],
) -> Result<Consumer, KafkaError> {
    let session = config.kafka_session_timeout.as_millis();
    let mut client = ClientConfig::new();
    client
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
        );
    for (property, value) in settings {
        client.set(*property, *value);
    }
    with_properties(&mut client, config)
        .create_with_context(Context::default())
        .map_err(without_value)
}

/// What is wrong with the topics Tally finds, or could not create.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("could not create topic {topic}: {code:?}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("{0} does not show in the cluster's metadata (created, but not visible within 10 s)")]
    Missing(String),
    #[error(
        "{topic} has max.message.bytes {found} but Tally publishes statements of up to \
         TALLY_STATEMENT_MAX_BYTES as one message and needs {needed}: raise the topic's \
         max.message.bytes to {needed}, or set TALLY_STATEMENT_MAX_BYTES to {fits} or less \
         (larger statements are then published by reference)"
    )]
    MessageBytes {
        topic: String,
        found: String,
        needed: usize,
        fits: usize,
    },
    #[error(
        "{topic} has {found} partitions but TALLY_USAGE_PARTITIONS is {configured}: set it to \
         {found} if the topic was made that way; if partitions were added under a running Tally, \
         accounts moved to other partitions and their events lost their order"
    )]
    Partitions {
        topic: String,
        found: usize,
        configured: i32,
    },
}

/// Creates the pipeline's topics if they do not exist yet (partitions,
/// replication, `min.insync.replicas` and retention as configured), then
/// checks that `usage.events` has the configured partitions: its key (the
/// account) keeps an account's events and seal markers in order only while
/// the partition count stays the same.
pub async fn ensure_topics(config: &Config) -> Result<(), TopicError> {
    let admin: AdminClient<Context> = with_properties(
        ClientConfig::new().set("bootstrap.servers", &config.kafka_brokers),
        config,
    )
    .create_with_context(Context::default())
    .map_err(without_value)?;
    let topics = config.topics();
    let min_insync = config.topic_min_insync_replicas.map(|n| n.to_string());
    let retention = config.topic_retention.map(|r| r.as_millis().to_string());
    let new_topic = |name, partitions| {
        // -1: the broker's `default.replication.factor` (KIP-464).
        let mut topic = NewTopic::new(
            name,
            partitions,
            TopicReplication::Fixed(config.topic_replication.unwrap_or(-1)),
        );
        if let Some(n) = &min_insync {
            topic = topic.set("min.insync.replicas", n);
        }
        if let Some(ms) = &retention {
            topic = topic.set("retention.ms", ms);
        }
        topic
    };
    let max_message = TOPIC_MAX_MESSAGE_BYTES.to_string();
    let statement_max_message = statement_topic_max_message_bytes(config).to_string();
    let wanted = [
        new_topic(&topics.usage_events, config.usage_partitions)
            .set("max.message.bytes", &max_message),
        new_topic(&topics.usage_dlq, 1).set("max.message.bytes", &max_message),
        new_topic(&topics.usage_ingest, config.usage_partitions)
            .set("max.message.bytes", &max_message),
        new_topic(&topics.usage_ingest_rejects, 1).set("max.message.bytes", &max_message),
        new_topic(&topics.statements, config.usage_partitions)
            .set("max.message.bytes", &statement_max_message),
        new_topic(&topics.binding_events, config.usage_partitions),
    ];
    let results = admin
        .create_topics(
            &wanted,
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30))),
        )
        .await?;
    let mut usage_existed = false;
    let mut statements_existed = false;
    for result in results {
        match result {
            Ok(_) => {}
            Err((topic, RDKafkaErrorCode::TopicAlreadyExists)) => {
                usage_existed |= topic == topics.usage_events;
                statements_existed |= topic == topics.statements;
            }
            Err((topic, code)) => return Err(TopicError::Create { topic, code }),
        }
    }
    if statements_existed {
        check_message_bytes(&admin, &topics.statements, config).await?;
    }
    if !usage_existed {
        return Ok(());
    }
    // A topic another process has just created may not be in the metadata
    // yet: wait for its partitions to show.
    let topic = topics.usage_events.clone();
    let found = tokio::task::spawn_blocking(move || -> Result<usize, KafkaError> {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let found = admin
                .inner()
                .fetch_metadata(Some(&topic), Duration::from_secs(10))?
                .topics()
                .first()
                .map_or(0, |t| t.partitions().len());
            if found > 0 || std::time::Instant::now() > until {
                return Ok(found);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .map_err(|_| KafkaError::Canceled)??;
    if found == 0 {
        return Err(TopicError::Missing(topics.usage_events));
    }
    if found != config.usage_partitions as usize {
        return Err(TopicError::Partitions {
            topic: topics.usage_events,
            found,
            configured: config.usage_partitions,
        });
    }
    Ok(())
}

/// Refuses a `billing.statements` found with a `max.message.bytes` (its
/// own, or the brokers' default) below [`statement_topic_max_message_bytes`]:
/// a statement the producer sends whole would be refused by the broker, and
/// its partition's statements would wait behind it.
async fn check_message_bytes(
    admin: &AdminClient<Context>,
    topic: &str,
    config: &Config,
) -> Result<(), TopicError> {
    // A topic another process has just created may not be known to the
    // broker that answers yet (its config is then missing from the
    // answer): ask again for up to 10 s before calling it unknown.
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        let described = admin
            .describe_configs(
                [&ResourceSpecifier::Topic(topic)],
                &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
            )
            .await?;
        let found = described
            .into_iter()
            .next()
            .and_then(|r| r.ok())
            .and_then(|r| r.get("max.message.bytes").and_then(|e| e.value.clone()))
            .and_then(|v| v.parse::<usize>().ok());
        if found.is_some() || std::time::Instant::now() > until {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let needed = statement_topic_max_message_bytes(config);
    match found {
        Some(found) if found >= needed => Ok(()),
        found => Err(TopicError::MessageBytes {
            topic: topic.to_owned(),
            found: found.map_or("unknown".to_owned(), |f| f.to_string()),
            needed,
            fits: found
                .and_then(|f| f.checked_sub(needed - config.statement_max_bytes))
                .unwrap_or(0),
        }),
    }
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
    first_error(futures::future::join_all(pending).await)
}

/// [`send_all`], each record with the `traceparent` header when it has one.
pub async fn send_all_traced<'a>(
    producer: &Producer,
    records: impl IntoIterator<Item = (&'a str, &'a str, &'a [u8], Option<&'a str>)>,
) -> Result<(), KafkaError> {
    let pending: Vec<_> = records
        .into_iter()
        .map(|(topic, key, payload, traceparent)| {
            let mut record = FutureRecord::to(topic).key(key).payload(payload);
            if let Some(value) = traceparent {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: crate::trace::TRACEPARENT,
                    value: Some(value),
                }));
            }
            producer.send(record, PRODUCE_TIMEOUT)
        })
        .collect();
    first_error(futures::future::join_all(pending).await)
}

/// Waits until every pending send is acknowledged (or failed). Returns the
/// first failure, if any.
pub async fn wait_all<F, T, M>(pending: Vec<F>) -> Result<(), KafkaError>
where
    F: std::future::Future<Output = Result<T, (KafkaError, M)>>,
{
    first_error(futures::future::join_all(pending).await)
}

fn first_error<T, M>(outcomes: Vec<Result<T, (KafkaError, M)>>) -> Result<(), KafkaError> {
    outcomes
        .into_iter()
        .find_map(|outcome| outcome.err())
        .map_or(Ok(()), |(err, _)| Err(err))
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
    next_batch_bytes(consumer, max, usize::MAX, wait).await
}

/// Like [`next_batch`], and the batch also ends once its payloads hold
/// `max_bytes` or more (it always holds one message): messages as large as
/// statements are bounded by what they hold, not only by their count.
pub async fn next_batch_bytes(
    consumer: &Consumer,
    max: usize,
    max_bytes: usize,
    wait: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    let first = consumer.recv().await?.detach();
    gather(consumer, first, max, max_bytes, wait).await
}

/// Like [`next_batch`], but returns an empty batch when no message arrives
/// within `idle`.
pub async fn next_batch_within(
    consumer: &Consumer,
    max: usize,
    wait: Duration,
    idle: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    next_batch_within_bytes(consumer, max, usize::MAX, wait, idle).await
}

/// Like [`next_batch_within`], and the batch also ends once its payloads
/// hold `max_bytes` or more: records of many events each (the collector's
/// `usage.ingest`) are bounded by what they hold, not only by their count.
pub async fn next_batch_within_bytes(
    consumer: &Consumer,
    max: usize,
    max_bytes: usize,
    wait: Duration,
    idle: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    match tokio::time::timeout(idle, consumer.recv()).await {
        Ok(first) => gather(consumer, first?.detach(), max, max_bytes, wait).await,
        Err(_) => Ok(Vec::new()),
    }
}

/// Whether a batch of `len` messages whose payloads hold `bytes` is full.
fn batch_full(len: usize, bytes: usize, max: usize, max_bytes: usize) -> bool {
    len >= max || bytes >= max_bytes
}

async fn gather(
    consumer: &Consumer,
    first: OwnedMessage,
    max: usize,
    max_bytes: usize,
    wait: Duration,
) -> Result<Vec<OwnedMessage>, KafkaError> {
    let mut bytes = first.payload().map_or(0, <[u8]>::len);
    let mut batch = vec![first];
    let deadline = Instant::now() + wait;
    while !batch_full(batch.len(), bytes, max, max_bytes) {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => {
                let message = message.detach();
                bytes = bytes.saturating_add(message.payload().map_or(0, <[u8]>::len));
                batch.push(message);
            }
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

/// The `traceparent` header of a consumed message, when it has a valid one.
pub fn traceparent_of<M: Message>(message: &M) -> Option<&str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == crate::trace::TRACEPARENT)
        .and_then(|h| std::str::from_utf8(h.value?).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaProperties;

    #[test]
    fn a_batch_is_full_at_its_count_or_its_bytes() {
        // 500 records of 300 KB each held 150 MB (and their 500,000 events
        // forwarded) in the collector's usage.ingest batches.
        assert!(!batch_full(1, 300_000, 500, 4 << 20));
        assert!(!batch_full(13, 13 * 300_000, 500, 4 << 20));
        assert!(batch_full(14, 14 * 300_000, 500, 4 << 20));
        assert!(batch_full(500, 500, 500, 4 << 20));
        assert!(!batch_full(499, 499, 500, usize::MAX));
    }

    #[tokio::test]
    async fn statement_clients_are_sized_from_the_statement_limit() {
        let default = Config::default();
        assert_eq!(statement_message_max_bytes(&default), 16_842_752);
        assert_eq!(statement_topic_max_message_bytes(&default), 16_908_288);
        // librdkafka takes the settings (it checks fetch sizes against each
        // other when the client is made), at the default, a small limit and
        // the ceiling.
        for max in [STATEMENT_MAX_BYTES, 50_000, STATEMENT_MAX_BYTES_CEILING] {
            let config = Config {
                statement_max_bytes: max,
                ..Config::default()
            };
            assert!(statements_producer(&config).is_ok(), "{max}");
            assert!(statements_consumer(&config, "g").is_ok(), "{max}");
        }
    }

    #[tokio::test]
    async fn invoicing_fetches_little_and_receives_the_largest_statement() {
        let settings = |max, vars: &[(&str, &str)]| {
            let config = Config {
                statement_max_bytes: max,
                kafka_properties: KafkaProperties::from_vars(
                    vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
                )
                .unwrap(),
                ..Config::default()
            };
            // librdkafka takes them beside the operator's properties.
            assert!(statements_consumer(&config, "g").is_ok(), "{vars:?}");
            statements_consumer_settings(&config).to_vec()
        };
        let expected = |fetch: &str, receive: &str| {
            vec![
                ("max.partition.fetch.bytes", "1048576".to_owned()),
                ("fetch.max.bytes", fetch.to_owned()),
                ("queued.max.messages.kbytes", "8192".to_owned()),
                ("receive.message.max.bytes", receive.to_owned()),
            ]
        };
        // librdkafka's default holds 16 MiB + 128 KiB of batch and a fetch.
        assert_eq!(
            settings(STATEMENT_MAX_BYTES, &[]),
            expected("4194304", "100000000")
        );
        // The ceiling's batch (256 MiB + 128 KiB) and a fetch do not fit it.
        assert_eq!(
            settings(STATEMENT_MAX_BYTES_CEILING, &[]),
            expected("4194304", "272760832")
        );
        // An operator's message.max.bytes and fetch.max.bytes.
        assert_eq!(
            settings(
                STATEMENT_MAX_BYTES,
                &[("TALLY_KAFKA_MESSAGE_MAX_BYTES", "10000000")]
            ),
            expected("10000000", "100000000")
        );
        assert_eq!(
            settings(
                STATEMENT_MAX_BYTES,
                &[("TALLY_KAFKA_FETCH_MAX_BYTES", "200000000")]
            ),
            expected("4194304", "200000512")
        );
    }

    #[test]
    fn a_refused_property_does_not_show_its_value() {
        let config = Config {
            kafka_properties: KafkaProperties::from_vars(
                [(
                    "TALLY_KAFKA_SASL_PASWORD".to_owned(),
                    "s3cret-value".to_owned(),
                )]
                .into_iter(),
            )
            .unwrap(),
            ..Config::default()
        };
        let err = producer(&config)
            .err()
            .expect("librdkafka refuses the property");
        let shown = err.to_string();
        assert!(shown.contains("sasl.pasword"), "{shown}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }
}
