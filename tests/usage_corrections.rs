//! Usage corrections end to end (issue 20): a provider cancels and amends
//! events at the collector, in an open period and in a sealed one; rating
//! applies them in order with the usage; the open invoice is restated, the
//! sealed one stays frozen and its corrections land on the next invoice as
//! adjustment lines; finance reads every correction of each invoice's period.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use tally_domain::Period;
use tally_invoicing::lifecycle;

const GRACE_HOURS: i64 = 48;

/// Polls `sql` (one count) until it is `n`, for at most a minute.
async fn until_count(s: &Seeded, sql: &str, n: i64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got: i64 = sqlx::query_scalar(sql).fetch_one(&s.h.pool).await.unwrap();
        if got == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sql}: {got}, not {n}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn correct(s: &Seeded, path: &str, body: Value) -> Value {
    let response = s
        .http
        .post(format!("{}{path}", s.collector))
        .bearer_auth(&s.keys.dbco)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 202, "{path}: {body}");
    body
}

/// (quantity, amount, events, period adjusted) of acme's database lines of
/// the invoice of the period starting at `start`, and its status and total.
async fn invoice(
    s: &Seeded,
    start: DateTime<Utc>,
) -> (
    String,
    Decimal,
    Vec<(Decimal, Decimal, i64, Option<DateTime<Utc>>)>,
) {
    let (id, status, total): (uuid::Uuid, String, Decimal) = sqlx::query_as(
        "SELECT id, status, total FROM invoices WHERE account_id = 'acme' AND period_start = $1",
    )
    .bind(start)
    .fetch_one(&s.h.pool)
    .await
    .unwrap();
    let lines = sqlx::query_as(
        "SELECT quantity, amount, event_count, adjusts_period_start FROM invoice_lines
         WHERE invoice_id = $1 AND sku_id = 'dbco.db.hour' ORDER BY position",
    )
    .bind(id)
    .fetch_all(&s.h.pool)
    .await
    .unwrap();
    (status, total, lines)
}

async fn invoice_id(s: &Seeded, start: DateTime<Utc>) -> uuid::Uuid {
    sqlx::query_scalar("SELECT id FROM invoices WHERE account_id = 'acme' AND period_start = $1")
        .bind(start)
        .fetch_one(&s.h.pool)
        .await
        .unwrap()
}

/// Finance's view of an invoice's corrections: (kind, reason, each change
/// as (event, change, quantity before, quantity after, billed in)).
type Seen = (String, String, Vec<(String, String, Value, Value, String)>);

async fn finance_view(s: &Seeded, start: DateTime<Utc>) -> Vec<Seen> {
    let id = invoice_id(s, start).await;
    let (status, body) = get(
        &s.http,
        &format!("{}/v1/invoices/{id}/usage-corrections", s.invoicing),
        &s.keys.finance,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "applied");
            assert_eq!(c["provider_id"], "dbco");
            assert!(c["requested_by"].as_str().is_some_and(|k| k.len() == 36));
            let changes = c["changes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|ch| {
                    (
                        ch["event_id"].as_str().unwrap().to_owned(),
                        ch["change"].as_str().unwrap().to_owned(),
                        ch["previous"]["quantity"].clone(),
                        ch["current"]["quantity"].clone(),
                        ch["billed_in"].as_str().unwrap().to_owned(),
                    )
                })
                .collect();
            (
                c["kind"].as_str().unwrap().to_owned(),
                c["reason"].as_str().unwrap().to_owned(),
                changes,
            )
        })
        .collect()
}

#[tokio::test]
async fn cancels_and_amends_restate_an_open_period_and_adjust_a_sealed_one() {
    let s = pipeline().await;
    let pool = &s.h.pool;
    let grace = Duration::hours(GRACE_HOURS);
    let open = Period::month_containing(s.now - grace);
    let month = Period::month_containing(open.start() - Duration::days(1));
    let (in_month, in_open) = (
        month.start() + Duration::days(4),
        open.start() + Duration::hours(1),
    );
    let events = [
        event("a", "dbco", "acme", "dbco.db.hour", "40", in_month),
        event("b", "dbco", "acme", "dbco.db.hour", "10", in_month),
        event("c", "dbco", "acme", "dbco.db.hour", "5", in_month),
        event("d", "dbco", "acme", "dbco.db.hour", "8", in_open),
        event("e", "dbco", "acme", "dbco.db.hour", "3", in_open),
    ];
    let (status, body) = post_events(&s.http, &s.collector, &s.keys.dbco, &events).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (202, Some(5)),
        "{body}"
    );
    until_count(&s, "SELECT count(*) FROM counted_events", 5).await;

    // In the open period: e cancelled, d amended from 8 to 2 hours.
    correct(&s, "/v1/events/e/cancel", json!({"reason": "test traffic"})).await;
    correct(
        &s,
        "/v1/events/d/amend",
        json!({"reason": "meter ran fast", "quantity": "2"}),
    )
    .await;
    until_count(&s, "SELECT count(*) FROM usage_corrections", 2).await;

    // The month is sealed with 55 hours at 0.2475 = 13.6125 → 13.61.
    let producer = tally_platform::kafka::producer(&s.h.config).unwrap();
    let topic = s.h.config.topics().usage_events;
    until_count(
        &s,
        "SELECT count(*) FROM invoices WHERE account_id = 'acme' AND status = 'draft'",
        2,
    )
    .await;
    lifecycle::request_seals(pool, &producer, &topic, Utc::now(), grace)
        .await
        .unwrap();
    until_count(
        &s,
        "SELECT count(*) FROM invoices WHERE account_id = 'acme' AND status = 'finalized'",
        1,
    )
    .await;

    // In the sealed month: b cancelled, c amended from 5 to 1 hour.
    correct(&s, "/v1/events/b/cancel", json!({"reason": "duplicate"})).await;
    correct(
        &s,
        "/v1/events/c/amend",
        json!({"reason": "wrong unit", "quantity": "1"}),
    )
    .await;
    until_count(
        &s,
        "SELECT count(*) FROM usage_corrections WHERE status = 'applied'",
        4,
    )
    .await;
    // The open invoice: d's 2 hours (0.495 → 0.50), and the sealed month 14
    // hours fewer: 41 hours now bill 10.15 (10.1475) where 13.61 was
    // billed, so the adjustment is −3.46 and the month bills 10.15 in all.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let open_invoice = loop {
        let seen = invoice(&s, open.start()).await;
        if seen.2.len() == 2 || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        open_invoice,
        (
            "draft".to_owned(),
            dec!(-2.96),
            vec![
                (dec!(2), dec!(0.50), 1, None),
                (dec!(-14), dec!(-3.46), -1, Some(month.start())),
            ]
        )
    );
    // The sealed invoice is frozen.
    assert_eq!(
        invoice(&s, month.start()).await,
        (
            "finalized".to_owned(),
            dec!(13.61),
            vec![(dec!(55), dec!(13.61), 3, None)]
        )
    );

    // Finance sees every correction of each invoice's period, newest first.
    let billed_open = open
        .start()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    let change = |event: &str, kind: &str, before: Value, after: Value| {
        (
            event.to_owned(),
            kind.to_owned(),
            before,
            after,
            billed_open.clone(),
        )
    };
    let sealed_ones = vec![
        (
            "amend".to_owned(),
            "wrong unit".to_owned(),
            vec![change("c", "amended", json!("5"), json!("1"))],
        ),
        (
            "cancel".to_owned(),
            "duplicate".to_owned(),
            vec![change("b", "cancelled", json!("10"), Value::Null)],
        ),
    ];
    assert_eq!(finance_view(&s, month.start()).await, sealed_ones);
    let mut open_ones = sealed_ones.clone();
    open_ones.extend([
        (
            "amend".to_owned(),
            "meter ran fast".to_owned(),
            vec![change("d", "amended", json!("8"), json!("2"))],
        ),
        (
            "cancel".to_owned(),
            "test traffic".to_owned(),
            vec![change("e", "cancelled", json!("3"), Value::Null)],
        ),
    ]);
    assert_eq!(finance_view(&s, open.start()).await, open_ones);

    // The provider sees its four, applied; a second cancel of b is refused
    // at the collector.
    let (status, mine) = get(
        &s.http,
        &format!("{}/v1/provider/corrections", s.invoicing),
        &s.keys.dbco,
    )
    .await;
    assert_eq!(
        (status, mine["data"].as_array().map(Vec::len)),
        (200, Some(4))
    );
    let response = s
        .http
        .post(format!("{}/v1/events/b/cancel", s.collector))
        .bearer_auth(&s.keys.dbco)
        .json(&json!({"reason": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "already_cancelled");
    s.running.stop().await.unwrap();
}

#[tokio::test]
async fn a_backfill_replaces_a_days_usage_on_the_open_invoice() {
    let s = pipeline().await;
    let open = Period::month_containing(s.now - Duration::hours(GRACE_HOURS));
    let day = open.start();
    let events = [
        event(
            "w1",
            "dbco",
            "acme",
            "dbco.db.hour",
            "6",
            day + Duration::hours(1),
        ),
        event(
            "w2",
            "dbco",
            "acme",
            "dbco.db.hour",
            "4",
            day + Duration::hours(2),
        ),
        event(
            "x",
            "dbco",
            "acme",
            "dbco.db.hour",
            "10",
            day + Duration::hours(30),
        ),
    ];
    let (status, body) = post_events(&s.http, &s.collector, &s.keys.dbco, &events).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (202, Some(3)),
        "{body}"
    );
    until_count(&s, "SELECT count(*) FROM counted_events", 3).await;

    // The first day metered wrongly: w1 was 2 hours, w2 never happened, w3
    // was missed. The open invoice: 2 + 5 + 10 = 17 hours at 0.2475 =
    // 4.2075 → 4.21, three events.
    let answer = correct(
        &s,
        "/v1/backfills",
        json!({"account": "acme", "start": day, "end": day + Duration::days(1),
        "reason": "meter replaced",
        "events": [
            event("w1", "dbco", "acme", "dbco.db.hour", "2", day + Duration::hours(1)),
            event("w3", "dbco", "acme", "dbco.db.hour", "5", day + Duration::hours(3)),
        ]}),
    )
    .await;
    assert_eq!(answer["kind"], "backfill");
    until_count(
        &s,
        "SELECT count(*) FROM usage_corrections WHERE status = 'applied'",
        1,
    )
    .await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let seen = loop {
        let seen = invoice(&s, open.start()).await;
        if seen.1 == dec!(4.21) || tokio::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        seen,
        (
            "draft".to_owned(),
            dec!(4.21),
            vec![(dec!(17), dec!(4.21), 3, None)]
        )
    );
    let billed = open
        .start()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    assert_eq!(
        finance_view(&s, open.start()).await,
        [(
            "backfill".to_owned(),
            "meter replaced".to_owned(),
            vec![
                (
                    "w1".into(),
                    "amended".into(),
                    json!("6"),
                    json!("2"),
                    billed.clone()
                ),
                (
                    "w2".into(),
                    "cancelled".into(),
                    json!("4"),
                    Value::Null,
                    billed.clone()
                ),
                (
                    "w3".into(),
                    "added".into(),
                    Value::Null,
                    json!("5"),
                    billed.clone()
                ),
            ]
        )]
    );
    s.running.stop().await.unwrap();
}
