//! Where accepted events go: the real Kafka producer in production, a test
//! double in the crate's HTTP tests.

use futures::future::BoxFuture;
use tally_domain::usage::{CorrectionRequest, UsageMessage, UsageMessageRef};
use tally_domain::UsageEvent;
use tally_platform::kafka;

/// Publishing failed: nothing about the events is guaranteed.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("the broker did not acknowledge every event: {0}")]
    Broker(String),
    #[error("could not serialize an event: {0}")]
    Serialize(#[from] serde_json::Error),
    /// Checked before anything is sent: nothing was published.
    #[error("a message of {0} bytes is over the producer's limit of {max}", max = kafka::MAX_MESSAGE_BYTES)]
    TooLarge(usize),
}

/// Publishes accepted usage events; returns only once every one is durable.
/// `traceparents` is empty, or holds each event's trace context (empty
/// for an event without one).
pub trait EventSink: Send + Sync + 'static {
    fn publish<'a>(
        &'a self,
        events: &'a [UsageEvent],
        traceparents: &'a [String],
    ) -> BoxFuture<'a, Result<(), SinkError>>;

    /// Publishes a usage correction (keyed by its account, so it follows
    /// the account's usage); returns once it is durable.
    fn publish_correction<'a>(
        &'a self,
        correction: &'a CorrectionRequest,
    ) -> BoxFuture<'a, Result<(), SinkError>>;
}

/// `usage.events` on Kafka: key = account id, payload = the `UsageMessage`
/// JSON; idempotent producer with `acks=all`, waiting for every ack.
pub struct KafkaSink {
    producer: tally_platform::kafka::Producer,
    topic: String,
}

impl KafkaSink {
    pub fn new(producer: tally_platform::kafka::Producer, topic: String) -> Self {
        Self { producer, topic }
    }
}

impl EventSink for KafkaSink {
    fn publish<'a>(
        &'a self,
        events: &'a [UsageEvent],
        traceparents: &'a [String],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let records = events
                .iter()
                .map(|e| {
                    let payload = serde_json::to_vec(&UsageMessageRef::Usage(e))?;
                    Ok((e.account_id.to_string(), payload))
                })
                .collect::<Result<Vec<(String, Vec<u8>)>, SinkError>>()?;
            // All or nothing where Tally decides: a message the producer
            // would refuse fails the publish before any is sent (ingest
            // refuses such an event first: `event_too_large`).
            if let Some((key, payload)) = records
                .iter()
                .find(|(key, payload)| key.len() + payload.len() > kafka::MAX_MESSAGE_BYTES)
            {
                return Err(SinkError::TooLarge(key.len() + payload.len()));
            }
            kafka::send_all_traced(
                &self.producer,
                records.iter().enumerate().map(|(i, (key, payload))| {
                    (
                        self.topic.as_str(),
                        key.as_str(),
                        payload.as_slice(),
                        traceparents
                            .get(i)
                            .map(String::as_str)
                            .filter(|t| !t.is_empty()),
                    )
                }),
            )
            .await
            .map_err(|e| SinkError::Broker(e.to_string()))
        })
    }

    fn publish_correction<'a>(
        &'a self,
        correction: &'a CorrectionRequest,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            let payload = serde_json::to_vec(&UsageMessage::Correction(correction.clone()))?;
            let key = correction.account_id.as_str();
            if key.len() + payload.len() > kafka::MAX_MESSAGE_BYTES {
                return Err(SinkError::TooLarge(key.len() + payload.len()));
            }
            kafka::send_all_traced(
                &self.producer,
                std::iter::once((self.topic.as_str(), key, payload.as_slice(), None)),
            )
            .await
            .map_err(|e| SinkError::Broker(e.to_string()))
        })
    }
}
