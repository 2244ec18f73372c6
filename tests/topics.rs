//! The topics Tally creates carry the configured partitions, replication,
//! `min.insync.replicas`, retention and largest message; at start Tally refuses a
//! `usage.events` whose partition count is not the configured one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use std::time::Duration;
use tally_platform::Config;

#[tokio::test]
async fn topics_are_made_as_configured_and_a_repartitioned_usage_topic_is_refused() {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let config = Config {
        kafka_brokers: test_kafka(),
        topic_prefix: format!("t{id}."),
        usage_partitions: 4,
        topic_min_insync_replicas: Some(1),
        topic_retention: Some(Duration::from_secs(48 * 3600)),
        ..Config::default()
    };
    tally_platform::kafka::ensure_topics(&config).await.unwrap();
    // Again: the topics exist and fit.
    tally_platform::kafka::ensure_topics(&config).await.unwrap();

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .create()
        .unwrap();
    let topic = config.topics().usage_events;
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    let value = |name: &str| {
        resource
            .get(name)
            .and_then(|e| e.value.clone())
            .unwrap_or_default()
    };
    assert_eq!(value("retention.ms"), "172800000");
    assert_eq!(value("min.insync.replicas"), "1");
    assert_eq!(value("max.message.bytes"), "1048588");

    // billing.statements takes a statement of TALLY_STATEMENT_MAX_BYTES
    // (16 MiB by default) whole, with room for its framing.
    let statements = config.topics().statements;
    let described = admin
        .describe_configs(
            [&ResourceSpecifier::Topic(&statements)],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    assert_eq!(
        resource
            .get("max.message.bytes")
            .and_then(|e| e.value.clone())
            .as_deref(),
        Some("16908288")
    );

    let wider = Config {
        usage_partitions: 8,
        ..config
    };
    let err = tally_platform::kafka::ensure_topics(&wider)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{topic} has 4 partitions but TALLY_USAGE_PARTITIONS is 8: set it to 4 if the topic was \
             made that way; if partitions were added under a running Tally, accounts moved to other \
             partitions and their events lost their order"
        )
    );
}

/// Processes that start together (a rating instance beside a test harness,
/// two instances of a deployment) each find the topics one of them made:
/// the one that finds `billing.statements` already made reads its config,
/// which the broker may not know for a moment. Reading it once made a
/// start fail with "max.message.bytes unknown" (in `.ci/run`, 2026-12-02).
#[tokio::test]
async fn processes_starting_together_each_accept_the_topics_one_of_them_made() {
    for _ in 0..10 {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let config = Config {
            kafka_brokers: test_kafka(),
            topic_prefix: format!("t{id}."),
            ..Config::default()
        };
        let starts: Vec<_> = (0..4)
            .map(|_| {
                let config = config.clone();
                tokio::spawn(async move { tally_platform::kafka::ensure_topics(&config).await })
            })
            .collect();
        for start in starts {
            start.await.unwrap().unwrap();
        }
    }
}
