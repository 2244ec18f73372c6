//! PostgreSQL stops (immediate mode, as a crash would) while rating holds a
//! backlog, for many times the pools' acquire timeout, then starts again:
//! rating's retries reach its event-by-event pass while the database is
//! still down. Every service recovers by itself, nothing is dead-lettered
//! (an unreachable database condemns no event), and every invoice is exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};
use tally::infra::{self, postgres};
use tally::up::Service;

const EVENTS: usize = 30_000;
/// The services' pools give up waiting for a connection after this long…
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// …and the database stays down for ten times that: rating's third attempt
/// at a batch (event by event) starts after about three timeouts.
const OUTAGE: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_stream_recovers_with_nothing_dead_lettered() {
    // A PostgreSQL of its own, so the outage touches no other test.
    let dir = std::env::temp_dir().join(format!("tally-pg-{}", uuid::Uuid::new_v4().simple()));
    let port = infra::free_port().unwrap();
    postgres::start_private_postgres(&dir, port).await.unwrap();
    let server = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let h = Harness::with(&test_kafka(), &server).await;
    // Rating rates the backlog in small batches, so the outage finds it busy.
    let mut h = h;
    h.config.batch_max = 500;
    h.config.db_acquire_timeout = ACQUIRE_TIMEOUT;
    let seeded = Seeded::start_in(h, &[Service::Collector, Service::Invoicing], 60).await;
    let accounts = create_accounts(&seeded.h.pool, 16).await;
    let (batches, expected) = usage_stream(&seeded.keys, seeded.now, &accounts, EVENTS, 500);
    // The whole stream is accepted first: rating starts on a backlog.
    let accepted = send_stream(&seeded.http, &seeded.collector, batches, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(accepted, EVENTS as u64);
    let rating = seeded.h.start(&[Service::Rating]).await;

    let until = Instant::now() + Duration::from_secs(120);
    while counted(&seeded.h.pool).await < (EVENTS / 10) as i64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let counted_at_stop = counted(&seeded.h.pool).await;
    assert!(counted_at_stop < EVENTS as i64, "rating holds a backlog");
    postgres::stop_private_postgres(&dir, "immediate")
        .await
        .unwrap();
    tokio::time::sleep(OUTAGE).await;
    postgres::start_private_postgres(&dir, port).await.unwrap();
    let restarted = Instant::now();

    assert_exact_invoices(&seeded, &expected, EVENTS, Duration::from_secs(300)).await;
    let recovered = restarted.elapsed();
    assert_eq!(counted(&seeded.h.pool).await, EVENTS as i64);

    // Nothing reached the dead-letter topic.
    let dlq: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &seeded.h.config.kafka_brokers)
        .create()
        .unwrap();
    let (low, high) = dlq
        .fetch_watermarks(
            &seeded.h.config.topics().usage_dlq,
            0,
            Duration::from_secs(10),
        )
        .unwrap();
    assert_eq!(high - low, 0, "dead letters after a database outage");
    println!(
        "postgres outage: {EVENTS} events accepted, PostgreSQL stopped (immediate) at {counted_at_stop} \
         counted for {} s; every invoice exact {:.1} s after it started again, 0 dead letters",
        OUTAGE.as_secs(),
        recovered.as_secs_f64()
    );
    rating.stop().await.unwrap();
    seeded.running.stop().await.unwrap();
    postgres::stop_private_postgres(&dir, "fast").await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
