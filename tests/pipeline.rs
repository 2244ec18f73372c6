//! Usage from the platform and two partners for two accounts, with duplicates,
//! a re-sent batch and invalid events, becomes invoices whose every line and
//! total equals an independent computation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde_json::Value;
use std::collections::BTreeMap;
use tally::up::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn combined_invoice_equals_independent_computation() {
    let Seeded {
        h,
        now,
        keys,
        running,
        collector,
        invoicing,
        http,
    } = Seeded::start(&Service::ALL).await;

    let providers = [
        ("cloud", keys.cloud.as_str(), "cloud.vm.hour"),
        ("dbco", keys.dbco.as_str(), "dbco.db.hour"),
        ("queueco", keys.queueco.as_str(), "queueco.msg.million"),
    ];
    let mut expected = Expected::default();
    let mut batches: Vec<(&str, Vec<Value>)> = Vec::new();
    for (p, (provider, key, sku)) in providers.iter().enumerate() {
        let mut events = Vec::new();
        for i in 0..400usize {
            let account = if i % 2 == 0 { "acme" } else { "umbrella" };
            let quantity = format!("{}.{:03}", (i * 7 + p) % 23, (i * 37) % 1000);
            let time = now - Duration::seconds(60 + ((i * 9_973 + p * 31) % (12 * 86_400)) as i64);
            events.push(event(
                &format!("{provider}-{i}"),
                provider,
                account,
                sku,
                &quantity,
                time,
            ));
            expected.add(account, time, sku, &quantity);
        }
        // The platform's egress SKU too, billed to the USD account only.
        if *provider == "cloud" {
            for i in 0..50usize {
                let time = now - Duration::seconds(120 + (i * 7_919) as i64);
                let quantity = format!("{}.5", i % 9);
                events.push(event(
                    &format!("egress-{i}"),
                    provider,
                    "acme",
                    "cloud.egress.gb",
                    &quantity,
                    time,
                ));
                expected.add("acme", time, "cloud.egress.gb", &quantity);
            }
        }
        for chunk in events.chunks(100) {
            let mut batch = chunk.to_vec();
            batch.push(chunk[0].clone()); // a duplicate inside the batch
            batches.push((key, batch));
        }
    }

    let mut accepted = 0;
    for (key, batch) in &batches {
        let (status, body) = post_events(&http, &collector, key, batch).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["rejected"], 0, "{body}");
        accepted += body["accepted"].as_u64().unwrap();
    }
    assert_eq!(accepted, 3 * 400 + 50 + batches.len() as u64);

    // A client retry re-sends a whole batch: accepted again, billed once.
    let (status, body) = post_events(&http, &collector, batches[0].0, &batches[0].1).await;
    assert_eq!(status, 202);
    assert_eq!(body["accepted"], 101);

    // Invalid events beside a valid one: each refused with its code, the valid one kept.
    let t = now - Duration::minutes(10);
    let mixed = vec![
        event("ok-1", "dbco", "acme", "dbco.db.hour", "2", t),
        event("bad-1", "dbco", "acme", "dbco.nope", "1", t),
        event("bad-2", "dbco", "acme", "cloud.vm.hour", "1", t),
        event("bad-3", "dbco", "ghost", "dbco.db.hour", "1", t),
        event("bad-4", "dbco", "acme", "dbco.db.hour", "-1", t),
        event(
            "bad-5",
            "dbco",
            "acme",
            "dbco.db.hour",
            "1",
            now - Duration::days(90),
        ),
        event("bad-6", "cloud", "acme", "dbco.db.hour", "1", t),
        serde_json::json!({"specversion": "1.0", "id": "bad-7"}),
    ];
    expected.add("acme", t, "dbco.db.hour", "2");
    let (status, body) = post_events(&http, &collector, &keys.dbco, &mixed).await;
    assert_eq!(status, 202, "{body}");
    let codes: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap_or(r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        codes,
        [
            "accepted",
            "unknown_sku",
            "sku_not_owned",
            "account_unknown",
            "quantity_invalid",
            "time_out_of_window",
            "source_mismatch",
            "malformed"
        ]
    );
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(7))
    );

    // Accepted but unpriceable (egress has no EUR price): goes to the DLQ with its reason.
    let (status, body) = post_events(
        &http,
        &collector,
        &keys.cloud,
        &[event(
            "no-price-1",
            "cloud",
            "umbrella",
            "cloud.egress.gb",
            "3",
            t,
        )],
    )
    .await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));

    let totals = expected.totals();
    let bills = wait_for_totals(
        &http,
        &invoicing,
        &keys.finance,
        &totals,
        std::time::Duration::from_secs(90),
    )
    .await;
    assert_eq!(bills.len(), totals.len());
    for ((account, period), bill) in &bills {
        assert_eq!(
            bill["total"].as_str().unwrap(),
            totals[&(account.clone(), period.clone())].to_string()
        );
        assert_eq!(bill["currency"], currency_of(account));
        let want: Vec<(String, String, String, String, i64)> = expected
            .quantities
            .iter()
            .filter(|(k, _)| &k.0 == account && &k.1 == period)
            .map(|(k, q)| {
                let provider = k.2.split('.').next().unwrap().to_owned();
                (
                    provider,
                    k.2.clone(),
                    q.normalize().to_string(),
                    expected.line_amount(k).to_string(),
                    expected.events[k],
                )
            })
            .collect();
        let mut got = bill_lines(bill);
        // The platform first, then partners by name.
        let order: Vec<&str> = bill["sections"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["provider"]["id"].as_str().unwrap())
            .collect();
        let mut sorted = order.clone();
        sorted.sort_by_key(|p| match *p {
            "cloud" => 0,
            "dbco" => 1,
            _ => 2,
        });
        assert_eq!(order, sorted);
        got.sort();
        let mut want = want;
        want.sort();
        assert_eq!(got, want, "lines of {account} {period}");
    }
    let billed_events: i64 = bills.values().flat_map(bill_lines).map(|l| l.4).sum();
    assert_eq!(billed_events, 3 * 400 + 50 + 1);

    // The DLQ holds exactly the unpriceable event, with its reason.
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .set("group.id", format!("{}-dlq-check", h.config.group_prefix))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&h.config.topics().usage_dlq]).unwrap();
    let message = tokio::time::timeout(std::time::Duration::from_secs(30), consumer.recv())
        .await
        .expect("a dead letter")
        .unwrap();
    let dead: Value = serde_json::from_slice(message.payload().unwrap()).unwrap();
    assert_eq!(dead["code"], "no_price");
    assert_eq!(dead["event"]["event_id"], "no-price-1");
    let more = tokio::time::timeout(std::time::Duration::from_secs(2), consumer.recv()).await;
    assert!(more.is_err(), "only one dead letter expected");

    let invoices: BTreeMap<String, i64> = sqlx::query_as::<_, (String, i64)>(
        "SELECT account_id, count(*) FROM invoices GROUP BY account_id",
    )
    .fetch_all(&h.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    let periods_per_account = |a: &str| totals.keys().filter(|k| k.0 == a).count() as i64;
    assert_eq!(invoices.get("acme"), Some(&periods_per_account("acme")));
    assert_eq!(
        invoices.get("umbrella"),
        Some(&periods_per_account("umbrella"))
    );
    running.stop().await.unwrap();
}
