//! SIGTERM in the middle of a stream: rating finishes and commits the batch
//! in hand, leaves its group and exits within its deadline; the next
//! instance starts from the last committed batch (it redoes none), and
//! every invoice is exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset};
use std::time::{Duration, Instant};
use tally::up::Service;

const EVENTS: usize = 20_000;
const DEADLINE: Duration = Duration::from_secs(15);

/// The sum of the group's committed offsets over every partition of `topic`.
fn committed_total(h: &Harness, topic: &str) -> i64 {
    let observer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .set("group.id", h.config.group("rating"))
        .create()
        .unwrap();
    let mut list = rdkafka::TopicPartitionList::new();
    for p in 0..h.config.usage_partitions {
        list.add_partition(topic, p);
    }
    observer
        .committed_offsets(list, Duration::from_secs(10))
        .unwrap()
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => o,
            _ => 0,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_commits_the_batch_in_hand_and_the_next_instance_redoes_none() {
    let seeded = Seeded::start(&[Service::Collector, Service::Invoicing, Service::Api]).await;
    let h = &seeded.h;
    let mut rating = Spawned(
        h.command("rating")
            .env(
                "TALLY_SHUTDOWN_TIMEOUT_SECS",
                DEADLINE.as_secs().to_string(),
            )
            .spawn()
            .unwrap(),
    );
    let accounts = create_accounts(&h.pool, 16).await;
    let (batches, expected) = usage_stream(&seeded.keys, seeded.now, &accounts, EVENTS, 100);
    let sender = send_stream(
        &seeded.http,
        &seeded.collector,
        batches,
        Duration::from_millis(20),
    );

    let until = Instant::now() + Duration::from_secs(120);
    while counted(&h.pool).await < (EVENTS / 3) as i64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &rating.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let signalled = Instant::now();
    let exit = tokio::task::spawn_blocking(move || rating.wait().unwrap())
        .await
        .unwrap();
    let stopped_in = signalled.elapsed();
    assert!(exit.success(), "rating exited with {exit}");
    assert!(stopped_in < DEADLINE, "stopped in {stopped_in:?}");
    // Everything it counted is committed, and nothing more: each message of
    // the stream is one event.
    let counted_at_stop = counted(&h.pool).await;
    let topic = h.config.topics().usage_events;
    assert_eq!(committed_total(h, &topic), counted_at_stop);
    assert!(counted_at_stop < EVENTS as i64, "stopped mid-stream");

    // The next instance (in this process, so its metrics are its own).
    let next = h.start(&[Service::Rating]).await;
    let accepted = sender.await.unwrap();
    assert_eq!(accepted, EVENTS as u64);
    assert_exact_invoices(&seeded, &expected, EVENTS, Duration::from_secs(300)).await;
    let metrics = get_text(
        &seeded.http,
        &format!("{}/metrics", next.admin_url().unwrap()),
        "",
    )
    .await;
    let series = "tally_rating_events_total{outcome=\"duplicate\"}";
    let counted_by_next = counter(&metrics, "tally_rating_events_total{outcome=\"counted\"}");
    assert_eq!(counter(&metrics, series), 0.0, "{metrics}");
    assert_eq!(counted_by_next as i64, EVENTS as i64 - counted_at_stop);
    report(&format!(
        "graceful shutdown: {EVENTS} events, SIGTERM at {counted_at_stop} counted; rating exited 0 in \
         {:.1} s (deadline {} s) with all of them committed; the next instance counted the other {} \
         and redid none (0 duplicates)",
        stopped_in.as_secs_f64(),
        DEADLINE.as_secs(),
        counted_by_next
    ));
    next.stop().await.unwrap();
    seeded.running.stop().await.unwrap();
}
