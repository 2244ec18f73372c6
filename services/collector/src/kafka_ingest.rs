//! `usage.ingest`: first-party services that already run on Kafka produce
//! their usage CloudEvents straight to a topic instead of POSTing them.
//!
//! A record's value is what an HTTP body would be in structured mode (one
//! CloudEvent, or a JSON array of at most [`MAX_BATCH_EVENTS`] of them); its
//! `tally-provider` header names the provider. In production the topic's
//! ACL decides who may write to it; here a provider's records are taken only
//! while its `kafka_ingest` setting allows it. Each event is checked by
//! exactly the HTTP rules ([`crate::ingest::validate`]) and goes either to
//! `usage.events`, keyed by account, or to `usage.ingest.rejects` with its
//! code and reason. Input offsets are committed only after the broker
//! acknowledged every output of the batch: a crash in between replays the
//! batch, and rating counts a replayed event once (by provider and id).
//!
//! [`MAX_BATCH_EVENTS`]: crate::ingest::MAX_BATCH_EVENTS

use chrono::Utc;
use rdkafka::message::{Headers as _, OwnedMessage};
use rdkafka::Message as _;
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tally_domain::ProviderId;
use tally_platform::{kafka, Config};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::ingest::{accepted_events, events_of, validate};
use crate::lookup::Lookup;
use crate::sink::EventSink;

/// The record header that names the provider whose usage a record holds.
pub const PROVIDER_HEADER: &str = "tally-provider";

/// Records taken from the topic at most at once.
const BATCH_RECORDS: usize = 500;

/// Bytes of records taken at most at once (the batch ends at the record
/// that reaches it): a record may carry a
/// thousand events, and 500 such records (their events parsed and
/// forwarded, all held until the broker acknowledged them) took the
/// collector to 1.2 GiB peak RSS in `tally bench` (1,000,000 events in
/// records of 1,000). 4 MiB is about 13,000 events of the bench's.
const BATCH_BYTES: usize = 4 << 20;

/// The longest a failed batch waits before it is tried again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The collector's consumer of `usage.ingest`.
pub struct KafkaIngest {
    consumer: kafka::Consumer,
    producer: kafka::Producer,
    lookup: Lookup,
    sink: Arc<dyn EventSink>,
    rejects_topic: String,
    max_age: Duration,
    max_future: Duration,
    wait: Duration,
}

/// What one batch of records came to.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct BatchOutcome {
    pub records: usize,
    pub accepted: usize,
    pub rejected: usize,
}

/// A refused event (or a whole record, when `index` is `None`), as written
/// to `usage.ingest.rejects`.
#[derive(Debug, Serialize)]
pub struct Reject {
    pub code: &'static str,
    pub message: String,
    /// The provider the record named, when it named one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The event's `id`, when it has a string one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub source: Source,
    /// The refused event as sent, or the record's value as text when it
    /// is not JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// Where a refused event was read from.
#[derive(Debug, Serialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// The event's position in the record's batch (0 for a single event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
}

/// An event and where it came from: its record, and its index in the
/// record's batch (`None` for a record of one event).
type Placed<'a> = (&'a OwnedMessage, Option<usize>, &'a RawValue);

/// Why a batch must be tried again: nothing of it is committed.
#[derive(Debug, thiserror::Error)]
enum RetryBatch {
    #[error("the catalog cannot be checked right now")]
    Catalog,
    #[error("the broker did not acknowledge every output: {0}")]
    Broker(String),
    #[error(transparent)]
    Other(anyhow::Error),
}

impl From<ApiError> for RetryBatch {
    fn from(err: ApiError) -> Self {
        match err {
            ApiError::CatalogUnavailable => RetryBatch::Catalog,
            other => RetryBatch::Other(anyhow::anyhow!("{other}: {other:?}")),
        }
    }
}

impl KafkaIngest {
    pub fn new(
        config: &Config,
        lookup: Lookup,
        sink: Arc<dyn EventSink>,
    ) -> anyhow::Result<KafkaIngest> {
        let topics = config.topics();
        let consumer = kafka::consumer(config, &config.group("collector-ingest"))?;
        rdkafka::consumer::Consumer::subscribe(&consumer, &[topics.usage_ingest.as_str()])?;
        Ok(KafkaIngest {
            consumer,
            producer: kafka::producer(config)?,
            lookup,
            sink,
            rejects_topic: topics.usage_ingest_rejects,
            max_age: config.ingest_max_age,
            max_future: config.ingest_max_future,
            wait: config.batch_wait,
        })
    }

    /// Takes records until `shutdown`; a batch that fails (PostgreSQL or
    /// the broker out of reach) is tried again, with backoff, before its
    /// offsets are committed.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let idle = Duration::from_millis(500);
        while !shutdown.is_cancelled() {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = kafka::next_batch_within_bytes(&self.consumer, BATCH_RECORDS, BATCH_BYTES, self.wait, idle) => batch,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    kafka::after_consumer_error(&err).await;
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            let mut backoff = Duration::from_millis(200);
            loop {
                match self.ingest(&batch).await {
                    Ok(_) => break,
                    Err(err) => {
                        tracing::warn!(error = %err, records = batch.len(), "a usage.ingest batch will be tried again");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
            if let Err(err) = kafka::commit_batch(&self.consumer, &batch) {
                // The batch is replayed after a rebalance; rating counts
                // its events once.
                tracing::warn!(error = %err, "could not commit usage.ingest offsets");
            }
        }
        Ok(())
    }

    /// Validates and forwards one batch; returns once the broker has
    /// acknowledged every accepted event and every reject.
    async fn ingest(&self, batch: &[OwnedMessage]) -> Result<BatchOutcome, RetryBatch> {
        let now = Utc::now();
        let mut rejects = Vec::new();
        // Each record's provider, when it names one that may use this path.
        let named: Vec<Result<ProviderId, Box<Reject>>> = batch.iter().map(provider_of).collect();
        let providers: Vec<&str> = named
            .iter()
            .filter_map(|p| p.as_ref().ok().map(ProviderId::as_str))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let allowed = if providers.is_empty() {
            HashMap::new()
        } else {
            self.lookup
                .kafka_ingest(&providers)
                .await
                .map_err(ApiError::from)?
        };

        // The events of each provider, with the record and index each came from.
        let mut by_provider: BTreeMap<ProviderId, Vec<Placed>> = BTreeMap::new();
        for (message, provider) in batch.iter().zip(named) {
            let events = match provider.and_then(|p| permitted(message, p, &allowed)) {
                Err(reject) => {
                    rejects.push(*reject);
                    continue;
                }
                Ok(provider) => match message.payload().map(events_of) {
                    Some(Ok(events)) => (provider, events),
                    Some(Err(err)) => {
                        rejects.push(record_reject(
                            message,
                            Some(&provider),
                            err.code(),
                            err.to_string(),
                        ));
                        continue;
                    }
                    None => {
                        rejects.push(record_reject(
                            message,
                            Some(&provider),
                            "malformed",
                            "the record has no value".into(),
                        ));
                        continue;
                    }
                },
            };
            let (provider, events) = events;
            let single = events.len() == 1
                && message.payload().and_then(|p| p.trim_ascii_start().first()) == Some(&b'{');
            let list = by_provider.entry(provider).or_default();
            for (i, event) in events.iter().enumerate() {
                list.push((message, (!single).then_some(i), *event));
            }
        }

        let mut accepted_all = Vec::new();
        let mut traceparents = Vec::new();
        for (provider, events) in &by_provider {
            let raw: Vec<&RawValue> = events.iter().map(|(_, _, e)| *e).collect();
            let outcomes = validate(
                &self.lookup,
                provider,
                &raw,
                now,
                self.max_age,
                self.max_future,
            )
            .await?;
            let accepted = accepted_events(provider, &outcomes, now);
            for ((message, index, event), outcome) in events.iter().zip(&outcomes) {
                match outcome {
                    Ok(_) => traceparents.push(
                        kafka::traceparent_of(*message)
                            .unwrap_or_default()
                            .to_owned(),
                    ),
                    Err(refused) => rejects.push(Reject {
                        code: refused.code,
                        message: refused.message.clone(),
                        provider: Some(provider.to_string()),
                        id: crate::ingest::id_of(event),
                        source: source_of(message, index.or(Some(0))),
                        event: Some((*event).to_owned()),
                        value: None,
                    }),
                }
            }
            accepted_all.extend(accepted);
        }

        let outcome = BatchOutcome {
            records: batch.len(),
            accepted: accepted_all.len(),
            rejected: rejects.len(),
        };
        let traceparents = if traceparents.iter().any(|t| !t.is_empty()) {
            traceparents
        } else {
            Vec::new()
        };
        let payloads = rejects
            .iter()
            .map(|r| {
                serde_json::to_vec(r)
                    .map(|payload| (r.provider.clone().unwrap_or_default(), payload))
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| RetryBatch::Other(e.into()))?;
        let (published, rejected) = tokio::join!(
            async {
                if accepted_all.is_empty() {
                    Ok(())
                } else {
                    self.sink.publish(&accepted_all, &traceparents).await
                }
            },
            kafka::send_all(
                &self.producer,
                payloads.iter().map(|(key, payload)| (
                    self.rejects_topic.as_str(),
                    key.as_str(),
                    payload.as_slice()
                )),
            )
        );
        published.map_err(|e| RetryBatch::Broker(e.to_string()))?;
        rejected.map_err(|e| RetryBatch::Broker(e.to_string()))?;
        for reject in &rejects {
            metrics::counter!("tally_events_rejected_total", "code" => reject.code).increment(1);
        }
        metrics::counter!("tally_events_accepted_total").increment(outcome.accepted as u64);
        metrics::counter!("tally_kafka_ingest_records_total").increment(outcome.records as u64);
        Ok(outcome)
    }
}

/// The provider a record names in its `tally-provider` header.
fn provider_of(message: &OwnedMessage) -> Result<ProviderId, Box<Reject>> {
    let header = message.headers().and_then(|headers| {
        headers
            .iter()
            .find(|h| h.key == PROVIDER_HEADER)
            .map(|h| h.value.unwrap_or_default())
    });
    let Some(value) = header else {
        return Err(Box::new(record_reject(
            message,
            None,
            "provider_missing",
            format!("the record has no {PROVIDER_HEADER} header naming its provider"),
        )));
    };
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| ProviderId::parse(text).ok())
        .ok_or_else(|| {
            Box::new(record_reject(
                message,
                None,
                "provider_unknown",
                format!("the {PROVIDER_HEADER} header does not name a provider"),
            ))
        })
}

/// `provider`, if it exists and may produce to `usage.ingest`.
fn permitted(
    message: &OwnedMessage,
    provider: ProviderId,
    allowed: &HashMap<String, bool>,
) -> Result<ProviderId, Box<Reject>> {
    match allowed.get(provider.as_str()) {
        Some(true) => Ok(provider),
        Some(false) => Err(Box::new(record_reject(
            message,
            Some(&provider),
            "kafka_ingest_not_allowed",
            format!("provider {provider} may not send usage through Kafka; an admin allows it"),
        ))),
        None => Err(Box::new(record_reject(
            message,
            Some(&provider),
            "provider_unknown",
            format!("provider {provider} does not exist"),
        ))),
    }
}

/// A whole record refused: its value is kept as it came (JSON as JSON).
fn record_reject(
    message: &OwnedMessage,
    provider: Option<&ProviderId>,
    code: &'static str,
    reason: String,
) -> Reject {
    let payload = message.payload().unwrap_or_default();
    let json = serde_json::from_slice::<Box<RawValue>>(payload).ok();
    Reject {
        code,
        message: reason,
        provider: provider.map(ProviderId::to_string),
        id: json.as_deref().and_then(crate::ingest::id_of),
        source: source_of(message, None),
        value: json
            .is_none()
            .then(|| String::from_utf8_lossy(payload).into_owned()),
        event: json,
    }
}

fn source_of(message: &OwnedMessage, index: Option<usize>) -> Source {
    Source {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
        index,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders, Timestamp};

    fn record(provider: Option<&str>, value: &[u8]) -> OwnedMessage {
        let headers = provider.map(|p| {
            OwnedHeaders::new().insert(Header {
                key: PROVIDER_HEADER,
                value: Some(p),
            })
        });
        OwnedMessage::new(
            Some(value.to_vec()),
            None,
            "usage.ingest".into(),
            Timestamp::NotAvailable,
            3,
            42,
            headers,
        )
    }

    #[test]
    fn a_record_names_its_provider_in_a_header() {
        let named = provider_of(&record(Some("dbco"), b"{}")).unwrap();
        assert_eq!(named.as_str(), "dbco");
        let missing = provider_of(&record(None, b"{}")).unwrap_err();
        assert_eq!(missing.code, "provider_missing");
        let bad = provider_of(&record(Some("no such id!"), b"{}")).unwrap_err();
        assert_eq!(bad.code, "provider_unknown");
    }

    #[test]
    fn only_an_allowed_provider_passes() {
        let allowed = HashMap::from([("cloud".to_owned(), true), ("dbco".to_owned(), false)]);
        let message = record(Some("x"), b"{}");
        let id = |s: &str| ProviderId::parse(s).unwrap();
        assert!(permitted(&message, id("cloud"), &allowed).is_ok());
        assert_eq!(
            permitted(&message, id("dbco"), &allowed).unwrap_err().code,
            "kafka_ingest_not_allowed"
        );
        assert_eq!(
            permitted(&message, id("ghost"), &allowed).unwrap_err().code,
            "provider_unknown"
        );
    }

    #[test]
    fn a_refused_record_keeps_its_value_and_where_it_came_from() {
        let json = record_reject(
            &record(None, br#"{"id":"e1"}"#),
            None,
            "malformed",
            "x".into(),
        );
        let shown = serde_json::to_value(&json).unwrap();
        assert_eq!(
            shown,
            serde_json::json!({
                "code": "malformed", "message": "x", "id": "e1",
                "source": {"topic": "usage.ingest", "partition": 3, "offset": 42},
                "event": {"id": "e1"}
            })
        );
        let text = record_reject(
            &record(Some("dbco"), b"not json"),
            None,
            "malformed",
            "y".into(),
        );
        let shown = serde_json::to_value(&text).unwrap();
        assert_eq!(shown["value"], "not json");
        assert!(shown.get("event").is_none());
    }
}
