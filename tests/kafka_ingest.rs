//! `usage.ingest`: usage produced straight to Kafka is checked by the HTTP
//! rules, billed once (across paths too), and what is refused lands on
//! `usage.ingest.rejects` with its code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration as StdDuration;
use tally::up::Service;
use tally_collector::kafka_ingest::PROVIDER_HEADER;

async fn produce(producer: &FutureProducer, topic: &str, provider: Option<&str>, value: &[u8]) {
    let mut record = FutureRecord::to(topic).key("k").payload(value);
    if let Some(provider) = provider {
        record = record.headers(OwnedHeaders::new().insert(Header {
            key: PROVIDER_HEADER,
            value: Some(provider),
        }));
    }
    producer
        .send(record, StdDuration::from_secs(10))
        .await
        .unwrap();
}

/// The whole pipeline, the first-party platform (`cloud`) allowed to
/// produce to `usage.ingest` (the partners are not).
async fn start() -> Seeded {
    let seeded = Seeded::start(&[
        Service::Collector,
        Service::Rating,
        Service::Invoicing,
        Service::Api,
    ])
    .await;
    tally::admin::set_kafka_ingest(&seeded.h.pool, "cloud", true)
        .await
        .unwrap();
    seeded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_from_the_ingest_topic_is_billed_once_and_refusals_have_codes() {
    let Seeded {
        h,
        now,
        keys,
        running,
        collector,
        invoicing,
        http,
    } = start().await;
    let t = now - Duration::minutes(5);
    let topics = h.config.topics();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .create()
        .unwrap();

    // One event alone, the same event again over HTTP (billed once), and a
    // batch with a good event and one of an unknown SKU.
    let single = event("k1", "cloud", "acme", "cloud.vm.hour", "10", t);
    produce(
        &producer,
        &topics.usage_ingest,
        Some("cloud"),
        &serde_json::to_vec(&single).unwrap(),
    )
    .await;
    let (status, _) = post_events(
        &http,
        &collector,
        &keys.cloud,
        std::slice::from_ref(&single),
    )
    .await;
    assert_eq!(status, 202);
    let batch = json!([
        event("k2", "cloud", "umbrella", "cloud.vm.hour", "5", t),
        event("k3", "cloud", "acme", "cloud.nope", "1", t),
        single,
    ]);
    produce(
        &producer,
        &topics.usage_ingest,
        Some("cloud"),
        &serde_json::to_vec(&batch).unwrap(),
    )
    .await;
    // A partner without the setting, a record naming no provider, and a
    // value that is not JSON: each refused whole.
    let partner = event("p1", "dbco", "acme", "dbco.db.hour", "2", t);
    produce(
        &producer,
        &topics.usage_ingest,
        Some("dbco"),
        &serde_json::to_vec(&partner).unwrap(),
    )
    .await;
    produce(
        &producer,
        &topics.usage_ingest,
        None,
        &serde_json::to_vec(&partner).unwrap(),
    )
    .await;
    produce(&producer, &topics.usage_ingest, Some("cloud"), b"not json").await;

    let period = t.format("%Y-%m").to_string();
    // 10 × 0.0416 = 0.416 → 0.42 (acme, USD); 5 × 0.0383 = 0.1915 → 0.19 (umbrella, EUR).
    let expected: BTreeMap<_, _> = [
        (("acme".to_owned(), period.clone()), dec!(0.42)),
        (("umbrella".to_owned(), period.clone()), dec!(0.19)),
    ]
    .into_iter()
    .collect();
    let bills = wait_for_totals(
        &http,
        &invoicing,
        &keys.finance,
        &expected,
        StdDuration::from_secs(60),
    )
    .await;
    for (key, total) in &expected {
        assert_eq!(bills[key]["total"], total.to_string(), "{key:?}");
    }
    let acme = bill_lines(&bills[&("acme".to_owned(), period.clone())]);
    assert_eq!(
        acme,
        vec![(
            "cloud".into(),
            "cloud.vm.hour".into(),
            "10".into(),
            "0.42".into(),
            1
        )]
    );

    // The rejects topic holds exactly the four refusals, each with its code
    // and where it was read from.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .set(
            "group.id",
            format!("{}-rejects-check", h.config.group_prefix),
        )
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&topics.usage_ingest_rejects]).unwrap();
    let mut rejects = Vec::new();
    while rejects.len() < 4 {
        let message = tokio::time::timeout(StdDuration::from_secs(30), consumer.recv())
            .await
            .expect("four rejects")
            .unwrap();
        rejects.push(serde_json::from_slice::<Value>(message.payload().unwrap()).unwrap());
    }
    let more = tokio::time::timeout(StdDuration::from_secs(2), consumer.recv()).await;
    assert!(more.is_err(), "only four rejects expected");
    let mut seen: Vec<(String, Value, Value, Value)> = rejects
        .iter()
        .map(|r| {
            (
                r["code"].as_str().unwrap().to_owned(),
                r["provider"].clone(),
                r["id"].clone(),
                r["source"]["index"].clone(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        seen,
        vec![
            (
                "kafka_ingest_not_allowed".into(),
                json!("dbco"),
                json!("p1"),
                Value::Null
            ),
            ("malformed".into(), json!("cloud"), Value::Null, Value::Null),
            (
                "provider_missing".into(),
                Value::Null,
                json!("p1"),
                Value::Null
            ),
            ("unknown_sku".into(), json!("cloud"), json!("k3"), json!(1)),
        ]
    );
    let malformed = rejects.iter().find(|r| r["code"] == "malformed").unwrap();
    assert_eq!(malformed["value"], "not json");
    assert_eq!(malformed["source"]["topic"], json!(topics.usage_ingest));

    // Nothing else was billed: the unknown SKU, the partner's refused event.
    assert_eq!(counted(&h.pool).await, 2);
    running.stop().await.unwrap();
}

/// The same usage through every path: an HTTP batch, HTTP binary mode,
/// `usage.ingest` (a batch record and a single one) and `tally import`,
/// with duplicates across the paths, bills exactly what it would through
/// one path, each event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_bills_the_same_usage_once() {
    let Seeded {
        h,
        now,
        keys,
        running,
        collector,
        invoicing,
        http,
    } = start().await;
    let t = now - Duration::minutes(5);
    // Event i is i + 1 hours of cloud.vm.hour for acme.
    let e = |i: usize| {
        event(
            &format!("p{i}"),
            "cloud",
            "acme",
            "cloud.vm.hour",
            &(i + 1).to_string(),
            t,
        )
    };
    let topics = h.config.topics();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .create()
        .unwrap();

    // HTTP batch: 0..10, and 15 (also sent through Kafka).
    let batch: Vec<Value> = (0..10).chain([15]).map(e).collect();
    let (status, body) = post_events(&http, &collector, &keys.cloud, &batch).await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(11)));
    // HTTP binary mode, one request per event: 10..15.
    for i in 10..15 {
        let r = http
            .post(format!("{collector}/v1/events"))
            .bearer_auth(&keys.cloud)
            .header("ce-specversion", "1.0")
            .header("ce-id", format!("p{i}"))
            .header("ce-source", "cloud")
            .header("ce-type", "com.tally.usage")
            .header("ce-subject", "acme")
            .header("ce-time", t.to_rfc3339())
            .header("content-type", "application/json")
            .body(json!({"sku": "cloud.vm.hour", "quantity": (i + 1).to_string()}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202, "binary p{i}");
    }
    // usage.ingest: a batch of 15..25 with 10 and 0 again, then 25 alone.
    let record: Vec<Value> = (15..25).chain([10, 0]).map(e).collect();
    produce(
        &producer,
        &topics.usage_ingest,
        Some("cloud"),
        &serde_json::to_vec(&record).unwrap(),
    )
    .await;
    produce(
        &producer,
        &topics.usage_ingest,
        Some("cloud"),
        &serde_json::to_vec(&e(25)).unwrap(),
    )
    .await;
    // tally import: 26..36, with 25 and 12 again.
    let dir = std::env::temp_dir().join(format!("tally-paths-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("usage.ndjson");
    let lines: Vec<String> = (26..36).chain([25, 12]).map(|i| e(i).to_string()).collect();
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let report = dir.join("refused.csv");
    let out = h
        .tally(&[
            "import",
            "--provider",
            "cloud",
            "--report",
            report.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).unwrap();

    // 36 events of 1..=36 hours: 666 hours × 0.0416 = 27.7056 → 27.71.
    let period = t.format("%Y-%m").to_string();
    let key = ("acme".to_owned(), period);
    let expected = BTreeMap::from([(key.clone(), dec!(27.71))]);
    let bills = wait_for_totals(
        &http,
        &invoicing,
        &keys.finance,
        &expected,
        StdDuration::from_secs(60),
    )
    .await;
    assert_eq!(
        bill_lines(&bills[&key]),
        vec![(
            "cloud".into(),
            "cloud.vm.hour".into(),
            "666".into(),
            "27.71".into(),
            36
        )]
    );
    // Every duplicate has been through the collector and rating by now.
    let ingest = &topics.usage_ingest;
    wait_until_committed(&h, "collector-ingest", ingest, StdDuration::from_secs(60)).await;
    wait_until_rated(&h, StdDuration::from_secs(60)).await;
    assert_eq!(counted(&h.pool).await, 36);
    running.stop().await.unwrap();
}

/// The provider settings an operator sets from the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_a_providers_ingest_and_binding_settings() {
    let h = Harness::new().await;
    seed_catalog(&h.pool, chrono::Utc::now()).await;
    let run = |args: &[&str]| {
        let out = h
            .tally(args)
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let settings = || async {
        sqlx::query_as::<_, (bool, bool)>(
            "SELECT kafka_ingest, requires_binding FROM providers WHERE id = 'dbco'",
        )
        .fetch_one(&h.pool)
        .await
        .unwrap()
    };
    assert_eq!(settings().await, (false, false));
    let (ok, out, _) = run(&[
        "set-kafka-ingest",
        "--provider",
        "dbco",
        "--allowed",
        "true",
    ]);
    assert!(ok);
    assert_eq!(out, "usage.ingest takes records of provider dbco\n");
    let (ok, out, _) = run(&[
        "set-requires-binding",
        "--provider",
        "dbco",
        "--required",
        "true",
    ]);
    assert!(ok);
    assert_eq!(
        out,
        "provider dbco requires a binding for each usage event\n"
    );
    assert_eq!(settings().await, (true, true));
    let (ok, _, err) = run(&[
        "set-requires-binding",
        "--provider",
        "ghost",
        "--required",
        "true",
    ]);
    assert!(!ok);
    assert!(err.contains("provider ghost does not exist"), "{err}");
    let (ok, _, err) = run(&[
        "set-kafka-ingest",
        "--provider",
        "ghost",
        "--allowed",
        "false",
    ]);
    assert!(!ok);
    assert!(err.contains("ghost"), "{err}");
}
