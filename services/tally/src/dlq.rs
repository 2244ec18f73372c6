//! `tally dlq list|replay`: the dead-letter topic, seen and replayed by an
//! operator. Replaying puts a dead letter's event back on `usage.events`
//! (same key, same event id), after the cause was fixed (a price added, an
//! account created); rating's dedupe makes a replay of an already billed
//! event harmless.

use rdkafka::consumer::Consumer;
use rdkafka::Message;
use serde_json::Value;
use std::time::Duration;
use tally_domain::usage::UsageMessage;
use tally_domain::UsageEvent;
use tally_platform::{kafka, Config};

/// What one pass over the DLQ found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub seen: usize,
    pub replayed: usize,
    /// Dead letters without an event (payloads that never parsed).
    pub unreplayable: usize,
}

/// Reads the DLQ from where the `<group prefix>-dlq-replay` group left off
/// until it is idle for `idle`; replays the events whose code is in `codes`
/// (all when empty) unless `dry_run`, then commits, so each dead letter is
/// replayed once.
pub async fn replay(
    config: &Config,
    codes: &[String],
    dry_run: bool,
    idle: Duration,
) -> anyhow::Result<ReplayReport> {
    let topics = config.topics();
    let consumer: tally_platform::kafka::Consumer =
        kafka::consumer(config, &config.group("dlq-replay"))?;
    consumer.subscribe(&[&topics.usage_dlq])?;
    let producer = kafka::producer(config)?;
    let mut report = ReplayReport::default();
    loop {
        let batch =
            kafka::next_batch_within(&consumer, 1000, Duration::from_millis(200), idle).await?;
        if batch.is_empty() {
            break;
        }
        let mut replay: Vec<(String, Vec<u8>)> = Vec::new();
        for message in &batch {
            report.seen += 1;
            let letter: Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
            let code = letter["code"].as_str().unwrap_or_default();
            let event = serde_json::from_value::<UsageEvent>(letter["event"].clone()).ok();
            println!(
                "{}:{}  {code:<20} {}",
                message.partition(),
                message.offset(),
                letter["reason"].as_str().unwrap_or_default()
            );
            let Some(event) = event else {
                report.unreplayable += 1;
                continue;
            };
            if codes.is_empty() || codes.iter().any(|c| c == code) {
                let key = event.account_id.to_string();
                replay.push((key, serde_json::to_vec(&UsageMessage::Usage(event))?));
            }
        }
        if dry_run {
            report.replayed += replay.len();
            continue;
        }
        kafka::send_all(
            &producer,
            replay
                .iter()
                .map(|(k, p)| (topics.usage_events.as_str(), k.as_str(), p.as_slice())),
        )
        .await?;
        report.replayed += replay.len();
        kafka::commit_batch(&consumer, &batch)?;
    }
    Ok(report)
}
