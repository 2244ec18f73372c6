//! Traces follow an event's id from the collector to its invoice line:
//! the collector's `collector.accept` span (under the request's
//! `traceparent`), rating's `rating.rate` span in the same trace, the
//! `rating.statement` span that links to it, and invoicing's
//! `invoicing.apply` span under that one, which names the invoice and the
//! line's position. The spans are exported over OTLP/HTTP (JSON) to a
//! receiver inside the test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use axum::routing::post;
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally::up::Service;

/// The trace and span the client's request belongs to.
const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// An OTLP/HTTP receiver: every span it was sent.
async fn receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let spans: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let request: Value = serde_json::from_slice(&body).unwrap();
                for resource in request["resourceSpans"].as_array().into_iter().flatten() {
                    for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                        for span in scope["spans"].as_array().into_iter().flatten() {
                            store.lock().unwrap().push(span.clone());
                        }
                    }
                }
                ([("content-type", "application/json")], "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, spans)
}

/// A span attribute as text (OTLP/JSON writes integers as strings or numbers).
fn attribute(item: &Value, key: &str) -> Option<String> {
    let value = &item["attributes"]
        .as_array()?
        .iter()
        .find(|a| a["key"] == key)?["value"];
    value["stringValue"]
        .as_str()
        .map(str::to_owned)
        .or_else(|| match &value["intValue"] {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
}

fn named<'a>(spans: &'a [Value], name: &str) -> Vec<&'a Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

fn with<'a>(spans: &[&'a Value], key: &str, value: &str) -> Vec<&'a Value> {
    spans
        .iter()
        .copied()
        .filter(|s| attribute(s, key).as_deref() == Some(value))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_is_followed_from_the_collector_to_its_invoice_line() {
    let (otlp, received) = receiver().await;
    std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp);
    std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json");
    let _traces = tally_platform::trace::init("tally-e2e").unwrap();
    assert!(tally_platform::trace::enabled());

    let seeded = Seeded::start(&Service::ALL).await;
    let (h, now) = (&seeded.h, seeded.now);
    let time = now - chrono::Duration::minutes(5);
    let period = time.format("%Y-%m").to_string();
    let events: Vec<Value> = (0..3)
        .map(|i| {
            event(
                &format!("vm-{i}"),
                "cloud",
                "acme",
                "cloud.vm.hour",
                "10",
                time,
            )
        })
        .chain([event(
            "egress-0",
            "cloud",
            "acme",
            "cloud.egress.gb",
            "2",
            time,
        )])
        .collect();
    let response = seeded
        .http
        .post(format!("{}/v1/events", seeded.collector))
        .bearer_auth(&seeded.keys.cloud)
        .header("content-type", "application/cloudevents-batch+json")
        .header("traceparent", format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"))
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    // 3 × 10 h × 0.0416 = 1.248 → 1.25; 2 GB × 0.09 = 0.18.
    let expected = BTreeMap::from([(("acme".to_owned(), period.clone()), "1.43".parse().unwrap())]);
    let bills = wait_for_totals(
        &seeded.http,
        &seeded.invoicing,
        &seeded.keys.finance,
        &expected,
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(bills[&("acme".to_owned(), period.clone())]["total"], "1.43");
    let (invoice, position): (uuid::Uuid, i32) = sqlx::query_as(
        "SELECT i.id, (SELECT count(*) FROM invoice_lines o
                       WHERE o.invoice_id = i.id AND o.position < l.position)::int
         FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id
         WHERE i.account_id = 'acme' AND l.sku_id = 'cloud.egress.gb'",
    )
    .fetch_one(&h.pool)
    .await
    .unwrap();

    // Invoicing applies the statement right after the bill shows it; wait
    // for its span, then for the batch exporter.
    let until = tokio::time::Instant::now() + Duration::from_secs(30);
    let spans = loop {
        tally_platform::trace::flush();
        let spans = received.lock().unwrap().clone();
        let applied = with(
            &named(&spans, "invoicing.apply"),
            "tally.invoice_id",
            &invoice.to_string(),
        );
        if !applied.is_empty() || tokio::time::Instant::now() > until {
            break spans;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // The collector: one request span under the client's, one span per event.
    let ingest = named(&spans, "collector.ingest");
    assert_eq!(ingest.len(), 1);
    assert_eq!(ingest[0]["traceId"], CLIENT_TRACE);
    assert_eq!(ingest[0]["parentSpanId"], CLIENT_SPAN);
    assert_eq!(
        attribute(ingest[0], "tally.events.accepted").as_deref(),
        Some("4")
    );
    let accepted = named(&spans, "collector.accept");
    assert_eq!(accepted.len(), 4);
    let accept = with(&accepted, "tally.event_id", "egress-0");
    assert_eq!(accept.len(), 1);
    let accept = accept[0];
    assert_eq!(accept["traceId"], CLIENT_TRACE);
    assert_eq!(accept["parentSpanId"], ingest[0]["spanId"]);
    assert_eq!(
        attribute(accept, "tally.sku").as_deref(),
        Some("cloud.egress.gb")
    );

    // Rating: the event's span in the same trace, naming its statement.
    let rated = with(&named(&spans, "rating.rate"), "tally.event_id", "egress-0");
    assert_eq!(rated.len(), 1);
    let rate = rated[0];
    assert_eq!(rate["traceId"], CLIENT_TRACE);
    assert_eq!(rate["parentSpanId"], accept["spanId"]);
    let statement = format!("acme:{period}");
    let named_statements = attribute(rate, "tally.statements").unwrap();
    assert!(
        named_statements.starts_with(&format!("{statement} v")),
        "{named_statements}"
    );
    assert_eq!(named(&spans, "rating.rate").len(), 4);

    // The statement's span links to the event's, and invoicing's span is
    // its child, on the invoice, with the event's line.
    let linking: Vec<&Value> = with(
        &named(&spans, "rating.statement"),
        "tally.statement",
        &statement,
    )
    .into_iter()
    .filter(|s| {
        s["links"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|l| l["traceId"] == CLIENT_TRACE && l["spanId"] == rate["spanId"])
    })
    .collect();
    assert_eq!(linking.len(), 1);
    let statement_span = linking[0];
    let applied: Vec<&Value> = named(&spans, "invoicing.apply")
        .into_iter()
        .filter(|s| s["parentSpanId"] == statement_span["spanId"])
        .collect();
    assert_eq!(applied.len(), 1);
    let apply = applied[0];
    assert_eq!(apply["traceId"], statement_span["traceId"]);
    assert_eq!(
        attribute(apply, "tally.invoice_id"),
        Some(invoice.to_string())
    );
    assert_eq!(
        attribute(apply, "tally.statement").as_deref(),
        Some(statement.as_str())
    );
    let lines: Vec<(String, String)> = apply["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "invoice line")
        .map(|e| {
            (
                attribute(e, "tally.sku").unwrap(),
                attribute(e, "tally.line.position").unwrap(),
            )
        })
        .collect();
    assert!(
        lines.contains(&("cloud.egress.gb".to_owned(), position.to_string())),
        "{lines:?}"
    );
}
