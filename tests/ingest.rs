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
