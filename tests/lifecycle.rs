//! The invoice lifecycle end to end: a seal races with a stream of events,
//! the closed period is finalized and frozen, and everything that arrived
//! after the seal lands on the next open invoice as an adjustment priced at
//! the price of its own time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tally::up::Service;
use tally_domain::Period;
use tally_invoicing::lifecycle;

const GRACE_HOURS: i64 = 48;

/// Posts `n` one-hour `dbco.db.hour` events for acme at `at`, ids from
/// `prefix`; returns how many were accepted.
async fn post_db_hours(
    s: &Seeded,
    prefix: &str,
    n: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> usize {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            event(
                &format!("{prefix}-{i}"),
                "dbco",
                "acme",
                "dbco.db.hour",
                "1",
                at,
            )
        })
        .collect();
    let (status, body) = post_events(&s.http, &s.collector, &s.keys.dbco, &events).await;
    assert_eq!(status, 202, "{body}");
    body["accepted"].as_u64().unwrap() as usize
}

async fn invoice_text(s: &Seeded, id: &str) -> String {
    s.http
        .get(format!("{}/v1/invoices/{id}", s.invoicing))
        .bearer_auth(&s.keys.finance)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[derive(Debug, sqlx::FromRow)]
struct LineRow {
    price_id: i64,
    quantity: Decimal,
    unit_price: Option<Decimal>,
    amount: Decimal,
    event_count: i64,
    adjusts: Option<chrono::DateTime<chrono::Utc>>,
}

async fn dbco_lines(s: &Seeded, period: Period) -> Vec<LineRow> {
    sqlx::query_as(
        "SELECT l.price_id, l.quantity, l.unit_price, l.amount, l.event_count,
                l.adjusts_period_start AS adjusts
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         WHERE i.account_id = 'acme' AND i.period_start = $1 AND l.sku_id = 'dbco.db.hour'
         ORDER BY l.position",
    )
    .bind(period.start())
    .fetch_all(&s.h.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_seal_racing_with_events_puts_every_event_on_exactly_one_invoice() {
    let s = Seeded::start_with(
        &[Service::Collector, Service::Rating, Service::Invoicing],
        120,
        |c| {
            c.ingest_max_age = std::time::Duration::from_secs(120 * 86_400);
        },
    )
    .await;
    let grace = Duration::hours(GRACE_HOURS);
    // The period a seal now closes, and the open one after it.
    let open = Period::month_containing(s.now - grace);
    let closed = Period::month_containing(open.start() - Duration::days(1));
    // A new price from the open period on: late usage of the closed period
    // keeps the closed period's price.
    tally::admin::set_price(&s.h.pool, "dbco.db.hour", "USD", dec!(0.30), open.start())
        .await
        .unwrap();
    let old_price: i64 = sqlx::query_scalar(
        "SELECT id FROM prices WHERE sku_id = 'dbco.db.hour' AND currency = 'USD' ORDER BY effective_from LIMIT 1",
    )
    .fetch_one(&s.h.pool)
    .await
    .unwrap();
    let at = closed.start() + Duration::days(3);

    let mut accepted = post_db_hours(&s, "before", 150, at).await;
    // Usage of the open period itself, at the new price.
    assert_eq!(
        post_db_hours(&s, "open", 10, open.start() + Duration::hours(1)).await,
        10
    );

    // A stream of events for the closed period, racing with the seal.
    let stop = Arc::new(AtomicBool::new(false));
    let streamed = Arc::new(AtomicUsize::new(0));
    let stream = {
        let (stop, streamed) = (stop.clone(), streamed.clone());
        let (http, collector, key) = (s.http.clone(), s.collector.clone(), s.keys.dbco.clone());
        tokio::spawn(async move {
            let mut batch = 0;
            while !stop.load(Ordering::SeqCst) {
                let events: Vec<Value> = (0..25)
                    .map(|i| {
                        event(
                            &format!("race-{batch}-{i}"),
                            "dbco",
                            "acme",
                            "dbco.db.hour",
                            "1",
                            at,
                        )
                    })
                    .collect();
                let (status, body) = post_events(&http, &collector, &key, &events).await;
                assert_eq!(status, 202, "{body}");
                streamed.fetch_add(
                    body["accepted"].as_u64().unwrap() as usize,
                    Ordering::SeqCst,
                );
                batch += 1;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let producer = tally_platform::kafka::producer(&s.h.config).unwrap();
    let topic = s.h.config.topics().usage_events;
    let written = lifecycle::request_seals(&s.h.pool, &producer, &topic, chrono::Utc::now(), grace)
        .await
        .unwrap();
    assert_eq!(written, 2, "one marker per account (acme and umbrella)");
    // Asked again at once: nothing new to ask.
    assert_eq!(
        lifecycle::request_seals(&s.h.pool, &producer, &topic, chrono::Utc::now(), grace)
            .await
            .unwrap(),
        0
    );

    // The closed invoice is finalized once rating sealed it.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let (id, number) = loop {
        let row: Option<(uuid::Uuid, Option<String>)> = sqlx::query_as(
            "SELECT id, number FROM invoices WHERE account_id = 'acme' AND period_start = $1 AND status = 'finalized'",
        )
        .bind(closed.start())
        .fetch_optional(&s.h.pool)
        .await
        .unwrap();
        if let Some((id, Some(number))) = row {
            break (id, number);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the closed period was never finalized"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let frozen = invoice_text(&s, &id.to_string()).await;
    assert_eq!(
        number,
        format!("TLY-{}-000001", chrono::Utc::now().format("%Y"))
    );

    // More of the stream, then surely-late events after the finalization.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    stream.await.unwrap();
    accepted += streamed.load(Ordering::SeqCst);
    accepted += post_db_hours(&s, "after", 40, at).await;

    // Every accepted event of the closed period is counted exactly once:
    // on the finalized invoice or on the open one's adjustment.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let (own, adjustment) = loop {
        let closed_lines = dbco_lines(&s, closed).await;
        let open_lines = dbco_lines(&s, open).await;
        let own: i64 = closed_lines.iter().map(|l| l.event_count).sum();
        let adjusted: i64 = open_lines
            .iter()
            .filter(|l| l.adjusts.is_some())
            .map(|l| l.event_count)
            .sum();
        if own + adjusted == accepted as i64 {
            break (closed_lines, open_lines);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{own} + {adjusted} counted of {accepted} accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let counted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM processed_events WHERE account_id = 'acme'")
            .fetch_one(&s.h.pool)
            .await
            .unwrap();
    assert_eq!(counted, accepted as i64 + 10, "no event counted twice");

    // The finalized invoice: one line at the old price, unchanged byte for byte.
    assert_eq!(own.len(), 1);
    let billed = own[0].event_count;
    assert!(
        billed >= 150,
        "the events before the seal are on the closed invoice"
    );
    assert_eq!(own[0].quantity, Decimal::from(billed));
    assert_eq!(own[0].price_id, old_price);
    let round = |d: Decimal| {
        d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    };
    assert_eq!(own[0].amount, round(Decimal::from(billed) * dec!(0.2475)));
    assert_eq!(invoice_text(&s, &id.to_string()).await, frozen);

    // The open invoice: its own usage at the new price, then the adjustment
    // for the closed period at the closed period's price.
    let late = accepted as i64 - billed;
    assert!(
        late >= 40,
        "at least the events posted after finalization are late"
    );
    assert_eq!(adjustment.len(), 2, "{adjustment:?}");
    assert_eq!(
        (
            adjustment[0].quantity,
            adjustment[0].unit_price,
            adjustment[0].amount,
            adjustment[0].adjusts
        ),
        (dec!(10), Some(dec!(0.30)), dec!(3.00), None)
    );
    let adj = &adjustment[1];
    assert_eq!(adj.adjusts, Some(closed.start()));
    assert_eq!(adj.price_id, old_price);
    assert_eq!(adj.unit_price, Some(dec!(0.2475)));
    assert_eq!((adj.quantity, adj.event_count), (Decimal::from(late), late));
    // Billed in all: the whole closed period's usage, rounded once, and no more.
    assert_eq!(
        own[0].amount + adj.amount,
        round(Decimal::from(accepted as i64) * dec!(0.2475))
    );
    let (status, bill) = get(
        &s.http,
        &format!(
            "{}/v1/accounts/acme/bill?period={}",
            s.invoicing,
            open.label()
        ),
        &s.keys.finance,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(bill["status"], "draft");
    assert_eq!(bill["total"], (dec!(3.00) + adj.amount).to_string());
    let lines = bill["sections"][0]["lines"].as_array().unwrap();
    assert_eq!(lines[1]["adjusts"]["label"], closed.label());
}
