//! Two rating instances share the group; one is SIGKILLed in the middle of
//! a stream. The survivor takes over the dead one's partitions within the
//! session timeout plus a batch, and every invoice is exact. And a rating
//! process of its own counts its events in its `/metrics`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tally::up::Service;

const EVENTS: usize = 30_000;
/// The session timeout `Harness::spawn` gives each rating process.
const SESSION: Duration = Duration::from_secs(6);

/// The partitions of a member's assignment (Kafka's consumer protocol:
/// version, then an array of (topic, [partition])).
fn assigned(bytes: &[u8]) -> BTreeSet<i32> {
    let int = |at: usize, n: usize| -> i64 {
        bytes[at..at + n]
            .iter()
            .fold(0i64, |acc, b| (acc << 8) | i64::from(*b))
    };
    let mut at = 2; // version
    let mut partitions = BTreeSet::new();
    let topics = int(at, 4);
    at += 4;
    for _ in 0..topics {
        let name = int(at, 2) as usize;
        at += 2 + name;
        let count = int(at, 4);
        at += 4;
        for _ in 0..count {
            partitions.insert(int(at, 4) as i32);
            at += 4;
        }
    }
    partitions
}

/// The group's members, by member id, with their partitions.
fn members(client: &BaseConsumer, group: &str) -> BTreeMap<String, BTreeSet<i32>> {
    let list = client
        .fetch_group_list(Some(group), Duration::from_secs(5))
        .unwrap();
    list.groups()
        .iter()
        .flat_map(|g| g.members())
        .map(|m| {
            (
                m.id().to_owned(),
                m.assignment().map(assigned).unwrap_or_default(),
            )
        })
        .collect()
}

/// The group's committed offset of each of `partitions`.
fn committed(client: &BaseConsumer, topic: &str, partitions: &BTreeSet<i32>) -> BTreeMap<i32, i64> {
    let mut list = TopicPartitionList::new();
    for p in partitions {
        list.add_partition(topic, *p);
    }
    client
        .committed_offsets(list, Duration::from_secs(5))
        .unwrap()
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.partition(), offset)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_takes_over_a_killed_rating_instance_within_the_session_timeout() {
    let seeded = Seeded::start(&[Service::Collector, Service::Invoicing, Service::Api]).await;
    let h = &seeded.h;
    let topic = h.config.topics().usage_events;
    let group = h.config.group("rating");
    // Without joining it, this client reads the group's members and offsets.
    let observer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let mut first = h.spawn("rating");
    let mut second = h.spawn("rating");

    // 40 accounts reach all four partitions; the stream runs ~40 s.
    let accounts = create_accounts(&h.pool, 40).await;
    let (batches, expected) = usage_stream(&seeded.keys, seeded.now, &accounts, EVENTS, 100);
    let sender = send_stream(
        &seeded.http,
        &seeded.collector,
        batches,
        Duration::from_millis(100),
    );

    // Both instances hold partitions and a third of the stream is counted.
    let until = Instant::now() + Duration::from_secs(120);
    let before = loop {
        let m = members(&observer, &group);
        let holding = m.values().filter(|p| !p.is_empty()).count();
        if (holding == 2 && counted(&h.pool).await >= (EVENTS / 3) as i64) || Instant::now() > until
        {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(before.len(), 2, "two instances in the group: {before:?}");
    let counted_at_kill = counted(&h.pool).await;

    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let killed_at = Instant::now();
    // The dead member is the one that leaves the group; its partitions are
    // taken over once the survivor commits past where it stopped.
    let (victim_partitions, survivor) = loop {
        let now = members(&observer, &group);
        if now.len() == 1 {
            let survivor = now.keys().next().unwrap().clone();
            let victim = before
                .iter()
                .find(|(id, _)| **id != survivor)
                .map(|(_, p)| p.clone())
                .unwrap();
            break (victim, survivor);
        }
        assert!(
            killed_at.elapsed() < SESSION + Duration::from_secs(30),
            "the dead member never left the group"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rebalanced = killed_at.elapsed();
    let stopped_at = committed(&observer, &topic, &victim_partitions);
    let taken_over = loop {
        let now = committed(&observer, &topic, &victim_partitions);
        if now.iter().all(|(p, o)| *o > stopped_at[p]) {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < SESSION + Duration::from_secs(30),
            "no batch committed on {victim_partitions:?} since the kill: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        members(&observer, &group)[&survivor].len() == 4,
        "the survivor holds every partition"
    );

    let accepted = sender.await.unwrap();
    assert_eq!(accepted, EVENTS as u64);
    assert!(counted_at_kill < EVENTS as i64, "killed mid-stream");
    assert_exact_invoices(&seeded, &expected, EVENTS, Duration::from_secs(300)).await;
    report(&format!(
        "rating takeover: {EVENTS} events, one of two instances SIGKILLed at {counted_at_kill} counted \
         (it held partitions {victim_partitions:?}); the group rebalanced after {:.1} s and the \
         survivor committed a batch on every one of them {:.1} s after the kill (session timeout {} s)",
        rebalanced.as_secs_f64(),
        taken_over.as_secs_f64(),
        SESSION.as_secs()
    ));
    assert!(
        taken_over <= SESSION + Duration::from_secs(10),
        "takeover took {taken_over:?}"
    );
    second.kill().unwrap();
    second.wait().unwrap();
    seeded.running.stop().await.unwrap();
}

/// A rating process of its own counts its events in its `/metrics` from
/// the first batch on, read for the first time only after them (before
/// rating installed the recorder when built, such a process dropped every
/// count made before `/metrics` was first read: those counts never show).
#[tokio::test]
async fn a_rating_process_of_its_own_counts_its_events_in_its_metrics() {
    let seeded = Seeded::start(&[Service::Collector]).await;
    let h = &seeded.h;
    let admin = format!("127.0.0.1:{}", tally::infra::free_port().unwrap());
    let mut command = h.command("rating");
    command.env("TALLY_ADMIN_ADDR", &admin);
    let _rating = Spawned(command.spawn().unwrap());

    let accounts = create_accounts(&h.pool, 4).await;
    let (batches, _) = usage_stream(&seeded.keys, seeded.now, &accounts, 600, 100);
    let sent = send_stream(&seeded.http, &seeded.collector, batches, Duration::ZERO);
    assert_eq!(sent.await.unwrap(), 600);
    let until = Instant::now() + Duration::from_secs(120);
    while counted(&h.pool).await < 600 && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counted(&h.pool).await, 600);

    // Rating adds to its counters once a batch is published, just after
    // its rows commit: read until the count is there or the time is up.
    let until = Instant::now() + Duration::from_secs(30);
    let (metrics, counted_here) = loop {
        let metrics = seeded
            .http
            .get(format!("http://{admin}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counted_here = counter(&metrics, "tally_rating_events_total{outcome=\"counted\"}");
        if counted_here >= 600.0 || Instant::now() > until {
            break (metrics, counted_here);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(counted_here, 600.0, "{metrics}");
}
