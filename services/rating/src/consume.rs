//! Consuming `usage.events`: each batch is cut into lanes by partition and
//! into runs of events and seal markers, one transaction per run; then the
//! statements are published, dead letters sent, and offsets committed (only
//! once the batch's effects are durable).

use chrono::{DateTime, Utc};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use std::time::{Duration, Instant};
use tally_domain::usage::{CorrectionRequest, SealMarker, UsageMessage};
use tally_domain::UsageEvent;
use tally_platform::kafka;
use tokio_util::sync::CancellationToken;

use crate::correct::apply_correction_at;
use crate::error::ProcessError;
use crate::outbox;
use crate::outcome::{BatchOutcome, DeadLetter};
use crate::rate::{process_batch_at, process_batch_isolating, Admission};
use crate::seal::{seal, seal_isolating};
use crate::startup::Application;
use crate::traces::BatchTrace;

impl Application {
    /// Retries a batch until it is recorded (or shutdown): offsets are only
    /// committed after its effects are durable, so nothing is skipped.
    pub(crate) async fn handle_until_done(
        &self,
        batch: &[OwnedMessage],
        shutdown: &CancellationToken,
    ) {
        let mut backoff = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            attempt += 1;
            // From the third attempt on, one bad event no longer holds up its batch.
            match self.handle(batch, attempt >= 3).await {
                Ok(()) => return,
                Err(err) => {
                    if database_unavailable(&err) {
                        tracing::warn!(error = %err, messages = batch.len(), "database unavailable; retrying the rating batch");
                    } else {
                        tracing::error!(error = %err, messages = batch.len(), "rating batch failed; retrying");
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    #[tracing::instrument(skip_all, fields(messages = batch.len()))]
    async fn handle(&self, batch: &[OwnedMessage], isolate: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        // Each lane rates its partitions' messages, in their order, in its
        // own transactions, beside the other lanes: an account's events and
        // seal markers are keyed by the account, so they are all in one
        // partition and lanes never share an account.
        let lanes = lanes(batch, self.config.rating_lanes);
        // Every lane runs to its end, even when another fails: a lane is
        // never dropped in the middle of its transaction.
        let rated =
            futures::future::join_all(lanes.iter().map(|lane| self.rate_lane(lane, isolate))).await;
        let mut outcome = BatchOutcome::default();
        let mut dead = Vec::new();
        let mut newest_received = None;
        let mut failed = None;
        for result in rated {
            match result {
                Ok((one, undecodable, newest)) => {
                    outcome.merge(one);
                    dead.extend(undecodable);
                    newest_received = newest_received.max(newest);
                }
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        outcome.keep_newest_statements();
        let rated = started.elapsed();
        let trace = BatchTrace::start(batch, &outcome.statements);
        let published = outbox::publish(
            &self.pool,
            &self.statements,
            &outcome.statements,
            trace.as_ref().map_or(&[][..], |t| &t.traceparents[..]),
            &outcome.outbox,
        )
        .await;
        if let Some(trace) = trace {
            let failure = failed
                .as_ref()
                .map(|e| e.to_string())
                .or_else(|| published.as_ref().err().map(|e| e.to_string()));
            trace.end(failure);
        }
        if let Some(err) = failed {
            // The lanes that committed stay committed, and the retry of the
            // batch finds their events already counted: their statements
            // are published now (or by the sweep). Dead letters and offsets
            // wait for the retry, which finds the same dead letters again.
            if let Err(publish) = published {
                tracing::warn!(error = %publish, "publishing the statements of the lanes that committed failed");
            }
            return Err(err);
        }
        published?;
        dead.extend(outcome.dead);
        self.send_dead_letters(&dead).await?;
        if let Err(err) = kafka::commit_batch(&self.consumer, batch) {
            // The effects are durable; whoever owns the partition now replays
            // from the last committed offset and dedupe drops the repeats.
            tracing::warn!(error = %err, "offset commit failed after the batch was recorded");
        }

        metrics::counter!("tally_rating_events_total", "outcome" => "counted")
            .increment(outcome.counted as u64);
        metrics::counter!("tally_rating_events_total", "outcome" => "duplicate")
            .increment(outcome.duplicates as u64);
        metrics::counter!("tally_rating_events_total", "outcome" => "dead_lettered")
            .increment(dead.len() as u64);
        metrics::histogram!("tally_rating_batch_seconds").record(started.elapsed().as_secs_f64());
        if let Some(newest) = newest_received {
            let lag = chrono::Utc::now() - newest;
            metrics::gauge!("tally_rating_lag_seconds").set(lag.num_milliseconds() as f64 / 1000.0);
        }
        tracing::debug!(
            counted = outcome.counted,
            duplicates = outcome.duplicates,
            dead = dead.len(),
            statements = outcome.statements.len(),
            rated_ms = rated.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "batch rated"
        );
        Ok(())
    }

    /// Rates one lane's messages in order: runs of events, runs of seal
    /// markers. Returns what it did, the messages that do not decode, and
    /// when the newest of its events was received.
    async fn rate_lane(
        &self,
        lane: &[&OwnedMessage],
        isolate: bool,
    ) -> anyhow::Result<(BatchOutcome, Vec<DeadLetter>, Option<DateTime<Utc>>)> {
        let (runs, dead) = decode(lane);
        let mut outcome = BatchOutcome::default();
        let mut newest_received = None;
        for run in &runs {
            match run {
                Run::Events(events) => {
                    let admission = Admission::at(self.config.dedupe_window(), Utc::now());
                    let one = if isolate {
                        process_batch_isolating(&self.pool, events, admission).await?
                    } else {
                        process_batch_at(&self.pool, events, admission).await?
                    };
                    outcome.merge(one);
                    newest_received =
                        newest_received.max(events.iter().map(|e| e.received_at).max());
                }
                Run::Seals(markers) if isolate => {
                    let (sealed, failed) = seal_isolating(&self.pool, markers).await?;
                    outcome.add(sealed);
                    outcome.dead.extend(failed);
                }
                Run::Seals(markers) => {
                    outcome.add(seal(&self.pool, markers).await?);
                }
                Run::Corrections(corrections) => {
                    let admission = Admission::at(self.config.dedupe_window(), Utc::now());
                    for correction in corrections {
                        match apply_correction_at(&self.pool, correction, admission).await {
                            Ok(restated) => outcome.add(restated),
                            // From the third attempt on, a correction that
                            // still fails on its own (while PostgreSQL
                            // answers and the failure is not the code's)
                            // goes to the DLQ, so it cannot stall its
                            // partition.
                            Err(err) if isolate && !err.is_systemic() => {
                                outcome.dead.push(DeadLetter {
                                    code: "correction_failed",
                                    reason: err.to_string(),
                                    event: None,
                                    payload: serde_json::to_string(&UsageMessage::Correction(
                                        correction.clone(),
                                    ))
                                    .ok(),
                                });
                            }
                            Err(err) => return Err(err.into()),
                        }
                    }
                }
            }
        }
        Ok((outcome, dead, newest_received))
    }

    async fn send_dead_letters(&self, dead: &[DeadLetter]) -> anyhow::Result<()> {
        if dead.is_empty() {
            return Ok(());
        }
        let records = dead
            .iter()
            .map(|d| {
                let key = d
                    .event
                    .as_ref()
                    .map(|e| e.account_id.to_string())
                    .unwrap_or_default();
                Ok((key, serde_json::to_vec(d)?))
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        kafka::send_all(
            &self.producer,
            records
                .iter()
                .map(|(k, p)| (self.topics.usage_dlq.as_str(), k.as_str(), p.as_slice())),
        )
        .await?;
        for d in dead {
            tracing::warn!(code = d.code, reason = %d.reason, "event dead-lettered");
        }
        Ok(())
    }
}

/// True when `err` is the database out of reach (not a failure of the batch).
fn database_unavailable(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<ProcessError>() {
        Some(ProcessError::Database(e)) => tally_platform::db::is_unavailable(e),
        Some(_) => false,
        None => err
            .downcast_ref::<sqlx::Error>()
            .is_some_and(tally_platform::db::is_unavailable),
    }
}

/// The batch's messages cut into at most `n` lanes by partition, each in
/// message order; empty lanes are left out.
fn lanes(batch: &[OwnedMessage], n: usize) -> Vec<Vec<&OwnedMessage>> {
    let n = n.max(1);
    let mut lanes: Vec<Vec<&OwnedMessage>> = vec![Vec::new(); n];
    for message in batch {
        lanes[message.partition().unsigned_abs() as usize % n].push(message);
    }
    lanes.retain(|lane| !lane.is_empty());
    lanes
}

/// A run of a batch: usage events, seal markers, or corrections, in
/// message order.
#[derive(Debug)]
enum Run {
    Events(Vec<UsageEvent>),
    Seals(Vec<SealMarker>),
    Corrections(Vec<CorrectionRequest>),
}

/// Splits a batch into runs of usage events, seal markers and corrections,
/// in order (a seal or a correction must see exactly the events before it),
/// and payloads that do not parse.
fn decode(batch: &[&OwnedMessage]) -> (Vec<Run>, Vec<DeadLetter>) {
    let mut runs: Vec<Run> = Vec::new();
    let mut dead = Vec::new();
    for message in batch {
        let payload = message.payload().unwrap_or_default();
        match serde_json::from_slice::<UsageMessage>(payload) {
            Ok(UsageMessage::Usage(event)) => match runs.last_mut() {
                Some(Run::Events(events)) => events.push(event),
                _ => runs.push(Run::Events(vec![event])),
            },
            Ok(UsageMessage::Seal(marker)) => match runs.last_mut() {
                Some(Run::Seals(seals)) => seals.push(marker),
                _ => runs.push(Run::Seals(vec![marker])),
            },
            Ok(UsageMessage::Correction(correction)) => match runs.last_mut() {
                Some(Run::Corrections(corrections)) => corrections.push(correction),
                _ => runs.push(Run::Corrections(vec![correction])),
            },
            Err(err) => dead.push(DeadLetter {
                code: "malformed_message",
                reason: format!(
                    "{} partition {} offset {}: {err}",
                    message.topic(),
                    message.partition(),
                    message.offset()
                ),
                event: None,
                payload: Some(String::from_utf8_lossy(payload).into_owned()),
            }),
        }
    }
    (runs, dead)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedHeaders, Timestamp};

    fn message(partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            Some(format!("{partition}/{offset}").into_bytes()),
            None,
            "usage.events".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            Some(OwnedHeaders::new()),
        )
    }

    fn names(lane: &[&OwnedMessage]) -> Vec<String> {
        lane.iter()
            .map(|m| String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned())
            .collect()
    }

    #[test]
    fn lanes_keep_each_partition_whole_and_in_order() {
        let batch: Vec<OwnedMessage> = [(0, 5), (3, 1), (1, 7), (2, 2), (0, 6), (3, 2), (2, 3)]
            .into_iter()
            .map(|(p, o)| message(p, o))
            .collect();
        let two = lanes(&batch, 2);
        assert_eq!(two.len(), 2);
        assert_eq!(names(&two[0]), ["0/5", "2/2", "0/6", "2/3"]);
        assert_eq!(names(&two[1]), ["3/1", "1/7", "3/2"]);
        // One lane is the batch as it came; empty lanes are left out.
        let one = lanes(&batch, 1);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].len(), 7);
        let five = lanes(&batch, 5);
        assert_eq!(five.len(), 4);
        assert_eq!(five.iter().map(Vec::len).sum::<usize>(), 7);
        assert_eq!(lanes(&batch, 0).len(), 1);
    }
}
