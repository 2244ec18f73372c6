//! Three-broker failover: the broker leading partitions of `usage.events`
//! is SIGKILLed in the middle of a stream while providers keep sending.
//! Every POST the collector answered 202 (`acks=all`, replication factor 3,
//! `min.insync.replicas=2`) is billed exactly once.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tally::infra::LocalKafka;
use tally::up::Service;

const EVENTS: usize = 30_000;

/// The test run's three-node cluster (`TALLY_TEST_CLUSTER`, started by
/// `bash deploy/dev.sh test`).
fn cluster() -> LocalKafka {
    let dir = std::env::var("TALLY_TEST_CLUSTER").expect(
        "TALLY_TEST_CLUSTER names the three-node test cluster: run the tests with `bash deploy/dev.sh test`",
    );
    LocalKafka::open(std::path::Path::new(&dir)).unwrap()
}

/// Per partition of `topic`: (leader node id, replica count, in-sync count).
fn partitions(brokers: &str, topic: &str) -> BTreeMap<i32, (i32, usize, usize)> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .unwrap();
    let metadata = client
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    metadata.topics()[0]
        .partitions()
        .iter()
        .map(|p| (p.id(), (p.leader(), p.replicas().len(), p.isr().len())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_broker_killed_mid_stream_loses_no_accepted_event() {
    let cluster = cluster();
    let h = Harness::on(&cluster.bootstrap()).await;
    let seeded = Seeded::start_in(h, &Service::ALL, 60).await;
    let topic = seeded.h.config.topics().usage_events;
    let before = partitions(&cluster.bootstrap(), &topic);
    assert_eq!(before.len(), 4);
    assert!(
        before
            .values()
            .all(|&(_, replicas, isr)| replicas == 3 && isr == 3),
        "usage.events is replicated three times: {before:?}"
    );

    let accounts = create_accounts(&seeded.h.pool, 16).await;
    let (batches, expected) = usage_stream(&seeded.keys, seeded.now, &accounts, EVENTS, 250);
    let started = Instant::now();
    let sender = send_stream(
        &seeded.http,
        &seeded.collector,
        batches,
        Duration::from_millis(10),
    );

    // Once a third of the stream is counted, kill the node that leads the
    // most partitions of usage.events.
    let until = Instant::now() + Duration::from_secs(240);
    while counted(&seeded.h.pool).await < (EVENTS / 3) as i64 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let counted_at_kill = counted(&seeded.h.pool).await;
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for (leader, _, _) in partitions(&cluster.bootstrap(), &topic).values() {
        *led.entry(*leader).or_default() += 1;
    }
    let (&victim, &partitions_led) = led.iter().max_by_key(|(_, n)| **n).unwrap();
    let killed_at = Instant::now();
    cluster.kill(victim as u32).unwrap();

    let accepted = sender.await.unwrap();
    let stream_done = started.elapsed();
    assert_eq!(accepted, EVENTS as u64);
    assert!(
        counted_at_kill < EVENTS as i64,
        "the kill happened mid-stream ({counted_at_kill} counted)"
    );
    assert_exact_invoices(&seeded, &expected, EVENTS, Duration::from_secs(300)).await;
    let billed = killed_at.elapsed();

    // The survivors took over: every partition has a live leader.
    let after = partitions(&cluster.bootstrap(), &topic);
    assert!(
        after.values().all(|&(leader, _, _)| leader != victim),
        "{after:?}"
    );
    report(&format!(
        "broker failover: {EVENTS} events in {} POSTs, node {victim} (leading {partitions_led} of 4 \
         partitions) SIGKILLed at {counted_at_kill} counted; stream sent in {:.1} s, every invoice \
         exact {:.1} s after the kill",
        EVENTS / 250,
        stream_done.as_secs_f64(),
        billed.as_secs_f64()
    ));
    seeded.running.stop().await.unwrap();
    // Put the cluster back for whoever uses it next.
    cluster.restart(victim as u32).await.unwrap();
    cluster.wait_ready(Duration::from_secs(60)).await.unwrap();
}
