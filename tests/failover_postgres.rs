//! PostgreSQL outages, each on a PostgreSQL of the test's own (so the
//! outage touches no other test):
//! - stopped (immediate mode, as a crash would) while rating holds a
//!   backlog, for ten times the pools' acquire timeout: rating's retries
//!   reach its event-by-event pass while the database is still down. Every
//!   service recovers by itself, nothing is dead-lettered (an unreachable
//!   database condemns no event), and every invoice is exact;
//! - stopped for a minute while providers keep sending: the collector
//!   accepts every valid event throughout (Kafka is the buffer), and every
//!   invoice is exact once the database is back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::time::{Duration, Instant};
use tally::up::Service;

/// Polls `url` until it answers `status` (within a minute); its body.
async fn wait_for_status(http: &reqwest::Client, url: &str, status: u16) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let response = http.get(url).send().await.unwrap();
        if response.status().as_u16() == status {
            return response.json().await.unwrap();
        }
        assert!(Instant::now() < until, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many dead letters the run's DLQ holds.
fn dead_letters(h: &Harness) -> i64 {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .create()
        .unwrap();
    let (low, high) = client
        .fetch_watermarks(&h.config.topics().usage_dlq, 0, Duration::from_secs(10))
        .unwrap();
    high - low
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_under_a_backlog_recovers_with_nothing_dead_lettered() {
    const EVENTS: usize = 30_000;
    // The services' pools give up waiting for a connection after 2 s, and
    // the database stays down for ten times that: rating's third attempt
    // at a batch (event by event) starts after about three timeouts.
    const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
    const OUTAGE: Duration = Duration::from_secs(20);
    let pg = PrivatePostgres::start().await;
    let mut h = Harness::with(&test_kafka(), &pg.server()).await;
    // Rating rates the backlog in small batches, so the outage finds it busy.
    h.config.batch_max = 500;
    h.config.db_acquire_timeout = ACQUIRE_TIMEOUT;
    let seeded = Seeded::start_in(
        h,
        &[Service::Collector, Service::Invoicing, Service::Api],
        60,
    )
    .await;
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
    let readyz = format!("{}/readyz", rating.admin_url().unwrap());
    assert_eq!(
        wait_for_status(&seeded.http, &readyz, 200).await["ready"],
        true
    );
    pg.crash().await;
    let stopped = Instant::now();
    // Not ready while the database is out of reach…
    let body = wait_for_status(&seeded.http, &readyz, 503).await;
    assert_eq!(body["ready"], false);
    assert!(
        body["checks"]["rating.database"]["error"].is_string(),
        "{body}"
    );
    assert_eq!(body["checks"]["rating.kafka"], "ok", "{body}");
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    pg.restart().await;
    let restarted = Instant::now();
    // …and ready again once it answers.
    assert_eq!(
        wait_for_status(&seeded.http, &readyz, 200).await["ready"],
        true
    );

    assert_exact_invoices(&seeded, &expected, EVENTS, Duration::from_secs(300)).await;
    let recovered = restarted.elapsed();
    assert_eq!(counted(&seeded.h.pool).await, EVENTS as i64);
    assert_eq!(
        dead_letters(&seeded.h),
        0,
        "dead letters after a database outage"
    );
    report(&format!(
        "postgres outage under a backlog: {EVENTS} events accepted, PostgreSQL stopped (immediate) at \
         {counted_at_stop} counted for {} s (pool timeout {} s); every invoice exact {:.1} s after it \
         started again, 0 dead letters",
        OUTAGE.as_secs(),
        ACQUIRE_TIMEOUT.as_secs(),
        recovered.as_secs_f64()
    ));
    rating.stop().await.unwrap();
    seeded.running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_accepts_every_valid_event_while_postgres_is_down_for_a_minute() {
    const EVENTS: usize = 24_000;
    const OUTAGE: Duration = Duration::from_secs(60);
    let pg = PrivatePostgres::start().await;
    let h = Harness::with(&test_kafka(), &pg.server()).await;
    let seeded = Seeded::start_in(h, &Service::ALL, 60).await;
    let accounts = create_accounts(&seeded.h.pool, 16).await;
    let (mut batches, expected) = usage_stream(&seeded.keys, seeded.now, &accounts, EVENTS, 100);
    // The first round (every provider, every account) while PostgreSQL
    // answers: what the collector checks the rest against.
    let rest = batches.split_off(3);
    let accepted = send_stream(&seeded.http, &seeded.collector, batches, Duration::ZERO)
        .await
        .unwrap();

    pg.crash().await;
    let stopped = Instant::now();
    // The rest, paced over the outage: every POST answered 202.
    let pace = OUTAGE / rest.len() as u32;
    let sent_during = rest.len();
    let accepted = accepted
        + send_stream(&seeded.http, &seeded.collector, rest, pace)
            .await
            .unwrap();
    assert_eq!(accepted, EVENTS as u64);
    tokio::time::sleep(OUTAGE.saturating_sub(stopped.elapsed())).await;
    let outage = stopped.elapsed();
    pg.restart().await;
    let restarted = Instant::now();

    assert_exact_invoices(&seeded, &expected, EVENTS, Duration::from_secs(300)).await;
    assert_eq!(dead_letters(&seeded.h), 0);
    report(&format!(
        "postgres outage under ingest: {sent_during} POSTs ({} events) all answered 202 during a {:.0} s \
         outage; every invoice exact {:.1} s after PostgreSQL started again",
        EVENTS - 300,
        outage.as_secs_f64(),
        restarted.elapsed().as_secs_f64()
    ));
    seeded.running.stop().await.unwrap();
}
