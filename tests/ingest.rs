//! Request-level answers of the collector: size limits, content types,
//! bodies that are not events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use tally::up::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_stable_codes() {
    let Seeded {
        now,
        keys,
        running,
        collector,
        http,
        invoicing: _,
        h: _h,
    } = Seeded::start(&[Service::Collector]).await;
    let url = format!("{collector}/v1/events");
    let one = event("e1", "dbco", "acme", "dbco.db.hour", "1", now);

    let send = |body: Vec<u8>, content_type: &'static str| {
        let http = http.clone();
        let url = url.clone();
        let key = keys.dbco.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body: serde_json::Value = r.json().await.unwrap();
            (
                status,
                body["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        }
    };
    let batch = |n: usize| serde_json::to_vec(&vec![one.clone(); n]).unwrap();
    const BATCH: &str = "application/cloudevents-batch+json";

    assert_eq!(
        send(batch(1001), BATCH).await,
        (413, "batch_too_large".into())
    );
    let mut huge = one.clone();
    huge["data"]["dimensions"] = serde_json::json!({"pad": "x".repeat(1_100_000)});
    assert_eq!(
        send(
            serde_json::to_vec(&huge).unwrap(),
            "application/cloudevents+json"
        )
        .await,
        (413, "payload_too_large".into())
    );
    assert_eq!(
        send(batch(1), "text/plain").await,
        (415, "unsupported_media_type".into())
    );
    assert_eq!(
        send(b"{not json".to_vec(), BATCH).await,
        (400, "malformed".into())
    );
    assert_eq!(send(b"42".to_vec(), BATCH).await, (400, "malformed".into()));
    assert_eq!(
        send(b"[]".to_vec(), BATCH).await,
        (400, "invalid_request".into())
    );

    // A single structured event (not a batch) is accepted too.
    let r = http
        .post(&url)
        .bearer_auth(&keys.dbco)
        .header("content-type", "application/cloudevents+json")
        .json(&one)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["rejected"].as_u64()),
        (Some(1), Some(0))
    );
    running.stop().await.unwrap();
}

/// An event under the body limit but too large for the broker is refused on
/// its own (`event_too_large`), before anything is produced; its siblings
/// are accepted and billed exactly once, a retry of the batch included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_too_large_for_the_broker_is_refused_alone() {
    let s = Seeded::start(&[
        Service::Collector,
        Service::Rating,
        Service::Invoicing,
        Service::Api,
    ])
    .await;
    let mut big = event("big", "dbco", "acme", "dbco.db.hour", "5", s.now);
    // About 1 MB: under the 1 MiB body limit, over the producer's
    // message.max.bytes (1,000,000).
    big["data"]["dimensions"] = serde_json::json!({"pad": "x".repeat(1_010_000)});
    let batch = [
        event("small-1", "dbco", "acme", "dbco.db.hour", "1", s.now),
        big,
        event("small-2", "dbco", "acme", "dbco.db.hour", "2", s.now),
    ];
    assert!(serde_json::to_vec(&batch).unwrap().len() < 1024 * 1024);
    for attempt in 0..2 {
        let (status, body) = post_events(&s.http, &s.collector, &s.keys.dbco, &batch).await;
        assert_eq!(status, 202, "attempt {attempt}: {body}");
        let verdicts: Vec<(&str, &str)> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap(),
                    r["code"].as_str().unwrap_or(r["status"].as_str().unwrap()),
                )
            })
            .collect();
        assert_eq!(
            verdicts,
            [
                ("small-1", "accepted"),
                ("big", "event_too_large"),
                ("small-2", "accepted")
            ],
            "attempt {attempt}"
        );
    }
    let period = chrono::Utc::now().format("%Y-%m").to_string();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let lines = loop {
        let (_, bill) = get(
            &s.http,
            &format!("{}/v1/accounts/acme/bill?period={period}", s.invoicing),
            &s.keys.finance,
        )
        .await;
        let lines: Vec<_> = bill_lines(&bill)
            .into_iter()
            .filter(|l| l.1 == "dbco.db.hour")
            .collect();
        if !lines.is_empty() || tokio::time::Instant::now() > until {
            break lines;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    // Everything sent is rated: a second copy, if any, is counted by now.
    wait_until_rated(&s.h, std::time::Duration::from_secs(60)).await;
    assert_eq!(counted(&s.h.pool).await, 2);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!((lines[0].2.as_str(), lines[0].4), ("3", 2), "{lines:?}");
    s.running.stop().await.unwrap();
}
