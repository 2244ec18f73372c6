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
    post_db_hours_with(&s.http, &s.collector, &s.keys.dbco, prefix, n, at).await
}

/// [`post_db_hours`] with the client, collector and key passed on their own
/// (for a task that outlives the borrow of [`Seeded`]).
async fn post_db_hours_with(
    http: &reqwest::Client,
    collector: &str,
    key: &str,
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
    let (status, body) = post_events(http, collector, key, &events).await;
    assert_eq!(status, 202, "{body}");
    body["accepted"].as_u64().unwrap() as usize
}

async fn invoice_text(s: &Seeded, id: &str) -> String {
    get_text(
        &s.http,
        &format!("{}/v1/invoices/{id}", s.invoicing),
        &s.keys.finance,
    )
    .await
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
    let s = pipeline().await;
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
                let accepted =
                    post_db_hours_with(&http, &collector, &key, &format!("race-{batch}"), 25, at)
                        .await;
                streamed.fetch_add(accepted, Ordering::SeqCst);
                batch += 1;
            }
        })
    };
    // Some of the stream is in before the seal is asked for.
    streamed_past(&streamed, 100).await;
    invoices_in(&s, closed.start(), 1, "draft").await;
    let producer = tally_platform::kafka::producer(&s.h.config).unwrap();
    let topic = s.h.config.topics().usage_events;
    let written = lifecycle::request_seals(&s.h.pool, &producer, &topic, chrono::Utc::now(), grace)
        .await
        .unwrap();
    assert_eq!(
        written, 1,
        "a marker for acme; umbrella has nothing to close"
    );
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
    streamed_past(&streamed, streamed.load(Ordering::SeqCst) + 100).await;
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
        sqlx::query_scalar("SELECT count(*) FROM counted_events WHERE account_id = 'acme'")
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

async fn post(s: &Seeded, path: &str, body: Value) -> (u16, Value) {
    let response = s
        .http
        .post(format!("{}{path}", s.invoicing))
        .bearer_auth(&s.keys.finance)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// POSTs `body` as finance and checks the answer is the error `expected`
/// (status, code).
async fn refused(s: &Seeded, path: &str, body: Value, expected: (u16, &str)) {
    let (status, answer) = post(s, path, body.clone()).await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (expected.0, Some(expected.1)),
        "{body}: {answer}"
    );
}

/// Waits until `n` invoices of periods starting at `start` are finalized.
async fn finalized(s: &Seeded, start: chrono::DateTime<chrono::Utc>, n: i64) {
    invoices_in(s, start, n, "finalized").await;
}

/// Waits until `n` invoices of periods starting at `start` have `status`.
async fn invoices_in(s: &Seeded, start: chrono::DateTime<chrono::Utc>, n: i64, status: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM invoices WHERE period_start = $1 AND status = $2",
        )
        .bind(start)
        .bind(status)
        .fetch_one(&s.h.pool)
        .await
        .unwrap();
        if done == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {n} finalized"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

async fn invoice_id(s: &Seeded, account: &str, start: chrono::DateTime<chrono::Utc>) -> String {
    let id: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM invoices WHERE account_id = $1 AND period_start = $2")
            .bind(account)
            .bind(start)
            .fetch_one(&s.h.pool)
            .await
            .unwrap();
    id.to_string()
}

/// Runs `tally reconcile --period` against the test database.
fn reconcile_cli(s: &Seeded, month: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["reconcile", "--period", month])
        .env("DATABASE_URL", &s.h.config.database_url)
        .env("KAFKA_BROKERS", &s.h.config.kafka_brokers)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn a_month_with_three_providers_credits_a_late_event_a_void_and_a_credit_note_reconciles() {
    let s = pipeline().await;
    let pool = &s.h.pool;
    let grace = Duration::hours(GRACE_HOURS);
    let open = Period::month_containing(s.now - grace);
    let month = Period::month_containing(open.start() - Duration::days(1));
    tally::admin::set_platform_fee(pool, "dbco", dec!(20))
        .await
        .unwrap();
    tally::admin::set_platform_fee(pool, "queueco", dec!(15))
        .await
        .unwrap();
    tally::admin::set_markup(pool, "queueco.msg.million", dec!(10))
        .await
        .unwrap();
    let initech_token = tally::admin::create_account(pool, "initech", "Initech", "USD")
        .await
        .unwrap();
    let (status, grant) = post(
        &s,
        "/v1/accounts/acme/grants",
        serde_json::json!({"name": "Launch promotion", "kind": "promotional", "amount": "10.00",
                           "effective_at": month.start()}),
    )
    .await;
    assert_eq!(status, 201, "{grant}");

    let at = month.start() + Duration::days(4);
    for (provider, key, events) in [
        (
            "cloud",
            &s.keys.cloud,
            vec![
                ("acme", "cloud.vm.hour", "100"),
                ("umbrella", "cloud.vm.hour", "50"),
            ],
        ),
        (
            "dbco",
            &s.keys.dbco,
            vec![
                ("acme", "dbco.db.hour", "40"),
                ("umbrella", "dbco.db.hour", "10"),
                ("initech", "dbco.db.hour", "5"),
            ],
        ),
        (
            "queueco",
            &s.keys.queueco,
            vec![("acme", "queueco.msg.million", "3")],
        ),
    ] {
        let batch: Vec<Value> = events
            .iter()
            .enumerate()
            .map(|(i, (account, sku, q))| {
                event(&format!("{provider}-{i}"), provider, account, sku, q, at)
            })
            .collect();
        let (status, body) = post_events(&s.http, &s.collector, key, &batch).await;
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (202, Some(batch.len() as u64)),
            "{body}"
        );
    }
    // Rated in full before the seal (a seal only closes what arrived before it).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM counted_events")
            .fetch_one(pool)
            .await
            .unwrap();
        if counted == 6 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The closer closes what has a draft invoice.
    invoices_in(&s, month.start(), 3, "draft").await;
    let producer = tally_platform::kafka::producer(&s.h.config).unwrap();
    let topic = s.h.config.topics().usage_events;
    lifecycle::request_seals(pool, &producer, &topic, chrono::Utc::now(), grace)
        .await
        .unwrap();
    finalized(&s, month.start(), 3).await;

    // A late event: 4 more database hours for acme in the sealed month.
    let (status, _) = post_events(
        &s.http,
        &s.collector,
        &s.keys.dbco,
        &[event("dbco-late", "dbco", "acme", "dbco.db.hour", "4", at)],
    )
    .await;
    assert_eq!(status, 202);

    // Initech's invoice is voided; voiding again or crediting it is refused.
    let initech_invoice = invoice_id(&s, "initech", month.start()).await;
    let (status, body) = post(
        &s,
        &format!("/v1/invoices/{initech_invoice}/void"),
        serde_json::json!({"reason": "duplicate account"}),
    )
    .await;
    assert_eq!(
        (
            status,
            body["status"].as_str(),
            body["void_reason"].as_str()
        ),
        (200, Some("void"), Some("duplicate account")),
        "{body}"
    );
    // Initech's bill page says so, with the reason.
    let page = get_text(
        &s.http,
        &format!(
            "{}/accounts/initech/bill?period={}",
            s.invoicing,
            month.label()
        ),
        &initech_token,
    )
    .await;
    assert!(page.contains(r#"data-testid="status">void<"#), "{page}");
    assert!(page.contains("Voided: duplicate account"), "{page}");
    refused(
        &s,
        &format!("/v1/invoices/{initech_invoice}/void"),
        serde_json::json!({"reason": "again"}),
        (409, "invoice_voided"),
    )
    .await;
    refused(
        &s,
        &format!("/v1/invoices/{initech_invoice}/credit-notes"),
        serde_json::json!({"reason": "x"}),
        (409, "invoice_voided"),
    )
    .await;

    // A partial credit note on acme's database line (position 1: the
    // platform's line first, then DB Co, then Queue Co).
    let acme_invoice = invoice_id(&s, "acme", month.start()).await;
    let notes = format!("/v1/invoices/{acme_invoice}/credit-notes");
    let (status, note) = post(&s, &notes, serde_json::json!({"reason": "outage on day 4", "lines": [{"position": 1, "amount": "2.00"}]})).await;
    assert_eq!(status, 201, "{note}");
    assert_eq!(
        note["number"],
        format!("TLY-CN-{}-000001", chrono::Utc::now().format("%Y"))
    );
    assert_eq!(note["total"], "2.00");
    // DB Co's line: 9.90, of which 7.92 is DB Co's: it gives back 1.60.
    assert_eq!(
        (
            note["lines"][0]["partner_part"].as_str(),
            note["lines"][0]["platform_part"].as_str()
        ),
        (Some("1.60"), Some("0.40"))
    );
    for (body, status, code) in [
        (
            serde_json::json!({"reason": "x", "lines": [{"position": 1, "amount": "8.00"}]}),
            422,
            "credit_exceeds_line",
        ),
        (
            serde_json::json!({"reason": "x", "lines": [{"position": 1, "amount": "0.001"}]}),
            422,
            "invalid_amount",
        ),
        (
            serde_json::json!({"reason": "x", "lines": [{"position": 9}]}),
            422,
            "unknown_line",
        ),
        (serde_json::json!({"reason": " "}), 422, "reason_required"),
        (serde_json::json!({"lines": []}), 400, "invalid_request"),
        (
            serde_json::json!({"reason": "x", "lines": [{"position": 1, "amount": 2}]}),
            400,
            "invalid_request",
        ),
        (
            serde_json::json!({"reason": "x", "memo": "y"}),
            400,
            "invalid_request",
        ),
        // 4.16 left on the platform's line, but only 5.40 - 2.00 of the
        // amount due (credits paid the rest).
        (
            serde_json::json!({"reason": "x", "lines": [{"position": 0}]}),
            422,
            "credit_exceeds_invoice",
        ),
    ] {
        refused(&s, &notes, body, (status, code)).await;
    }
    // A credit note is immutable, in the database too.
    let err = sqlx::query("UPDATE credit_notes SET total = 1")
        .execute(pool)
        .await
        .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23000")
    );

    // Three 0.01 notes on Queue Co's line (1.34, of which 1.04 is Queue
    // Co's): its share of everything credited, rounded once, less what was
    // given back before: 0.01, 0.01, 0.00 (never 0.03 for 0.0233 owed).
    let mut parts = Vec::new();
    for _ in 0..3 {
        let (status, note) = post(
            &s,
            &notes,
            serde_json::json!({"reason": "rounding", "lines": [{"position": 2, "amount": "0.01"}]}),
        )
        .await;
        assert_eq!(status, 201, "{note}");
        parts.push(
            note["lines"][0]["partner_part"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(parts, ["0.01", "0.01", "0.00"]);

    // Umbrella's whole invoice (no lines): its amount due, line by line.
    let umbrella_invoice = invoice_id(&s, "umbrella", month.start()).await;
    let umbrella_notes = format!("/v1/invoices/{umbrella_invoice}/credit-notes");
    let (status, whole) = post(
        &s,
        &umbrella_notes,
        serde_json::json!({"reason": "goodwill"}),
    )
    .await;
    assert_eq!(status, 201, "{whole}");
    let got: Vec<(i64, &str, &str)> = whole["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["line_position"].as_i64().unwrap(),
                l["amount"].as_str().unwrap(),
                l["partner_part"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(whole["total"], "4.20");
    assert_eq!(got, [(0, "1.92", "0.00"), (1, "2.28", "1.82")]);
    refused(
        &s,
        &umbrella_notes,
        serde_json::json!({"reason": "again"}),
        (409, "nothing_to_credit"),
    )
    .await;

    // The month reconciles, per currency, with figures worked out by hand.
    // Its invoices count as issued; the void and the credit notes are
    // corrections of the month they are made in (below).
    // USD: acme 4.16 + 9.90 + 1.34 = 15.40, initech 1.24: 16.64 invoiced.
    // Platform: 4.16 (first party) + 1.98 (20% of 9.90) + 0.12 markup +
    // 0.18 (15% of 1.22) + 0.25 (20% of initech's 1.24) - 10.00 credits =
    // -3.31. Partners: DB Co 7.92 + 0.99, Queue Co 1.04 = 9.95.
    // -3.31 + 9.95 + 10.00 = 16.64.
    let mut conn = pool.acquire().await.unwrap();
    let figures = |report: &tally_api::finance::settlement::Reconciliation| -> Vec<_> {
        report
            .currencies
            .iter()
            .map(|c| {
                (
                    c.currency.to_string(),
                    c.invoices,
                    c.invoiced,
                    c.platform_revenue,
                    c.partner_settlements,
                    c.credits_applied,
                    c.difference,
                )
            })
            .collect()
    };
    let report = tally_api::finance::settlement::reconcile(&mut conn, month)
        .await
        .unwrap();
    assert_eq!(
        figures(&report),
        [
            // EUR (umbrella): 1.915 → 1.92 + 2.28; platform 1.92 + 0.46; DB Co 1.82.
            (
                "EUR".to_owned(),
                1,
                dec!(4.20),
                dec!(2.38),
                dec!(1.82),
                dec!(0),
                dec!(0)
            ),
            (
                "USD".to_owned(),
                2,
                dec!(16.64),
                dec!(-3.31),
                dec!(9.95),
                dec!(10.00),
                dec!(0)
            ),
        ]
    );
    assert!(report.holds(), "{report:?}");
    let (ok, text) = reconcile_cli(&s, &month.label());
    assert!(ok, "{text}");
    // Per currency: the identity and the discount identity.
    assert_eq!(text.matches(" ok\n").count(), 4, "{text}");

    // DB Co's settlement, per SKU and account.
    let dbco_settlement = |m: Period| {
        let (http, url, key) = (
            s.http.clone(),
            format!(
                "{}/v1/settlements?period={}&provider=dbco",
                s.invoicing,
                m.label()
            ),
            s.keys.finance.clone(),
        );
        async move {
            let (status, body) = get(&http, &url, &key).await;
            assert_eq!(status, 200);
            body
        }
    };
    let body = dbco_settlement(month).await;
    let usd = &body["data"][0]["currencies"][1];
    assert_eq!(
        (
            usd["currency"].as_str(),
            usd["gross_list"].as_str(),
            usd["platform_fee"].as_str(),
            usd["credit_notes"].as_str(),
            usd["net_payable"].as_str()
        ),
        (
            Some("USD"),
            Some("11.14"),
            Some("2.23"),
            Some("0.00"),
            Some("8.91")
        )
    );
    let accounts: Vec<&str> = usd["by_account"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(accounts, ["acme", "initech"]);
    assert_eq!(usd["by_sku"][0]["id"], "dbco.db.hour");
    // A provider reads its own settlement only.
    let (status, _) = get(
        &s.http,
        &format!(
            "{}/v1/settlements?period={}&provider=dbco",
            s.invoicing,
            month.label()
        ),
        &s.keys.queueco,
    )
    .await;
    assert_eq!(status, 403);
    let (status, own) = get(
        &s.http,
        &format!("{}/v1/settlements?period={}", s.invoicing, month.label()),
        &s.keys.queueco,
    )
    .await;
    assert_eq!(
        (status, own["data"].as_array().map(Vec::len)),
        (200, Some(1))
    );
    assert_eq!(own["data"][0]["currencies"][0]["net_payable"], "1.04");

    // The late event is on the next month's invoice: 44 hours (10.89) less
    // the 40 billed (9.90) = 0.99, of which 0.20 (2.18 - 1.98) is the
    // platform's fee and 0.79 DB Co's. The corrections belong to the month
    // they were made in: the void takes back initech's 1.24 (platform 0.25,
    // DB Co 0.99), the credit notes 2.03 (platform 0.40 + 0.01, DB Co 1.60,
    // Queue Co 0.02). Once the next month is sealed too, both reconcile.
    let next_close = open.end() + grace + Duration::hours(1);
    invoices_in(&s, open.start(), 1, "draft").await;
    lifecycle::request_seals(pool, &producer, &topic, next_close, grace)
        .await
        .unwrap();
    finalized(&s, open.start(), 1).await;
    // In EUR, umbrella's whole credit note: 4.20, of which 1.92 + 0.46 the
    // platform's and 1.82 DB Co's.
    let adjustment = (1, dec!(0.99), dec!(0.20), dec!(0.79));
    let corrections = (0, dec!(-3.27), dec!(-0.66), dec!(-2.61));
    let eur = (
        "EUR".to_owned(),
        0,
        dec!(-4.20),
        dec!(-2.38),
        dec!(-1.82),
        dec!(0),
        dec!(0),
    );
    let made = Period::month_containing(chrono::Utc::now());
    let usd = |parts: &[(i64, Decimal, Decimal, Decimal)]| {
        let sum = |f: fn(&(i64, Decimal, Decimal, Decimal)) -> Decimal| {
            parts.iter().map(f).sum::<Decimal>()
        };
        (
            "USD".to_owned(),
            parts.iter().map(|p| p.0).sum::<i64>(),
            sum(|p| p.1),
            sum(|p| p.2),
            sum(|p| p.3),
            dec!(0),
            dec!(0),
        )
    };
    let checks: Vec<(Period, Vec<_>)> = if made == open {
        vec![(open, vec![eur, usd(&[adjustment, corrections])])]
    } else {
        // Early in a month the corrections fall in a later month than the
        // adjustment's invoice.
        vec![
            (open, vec![usd(&[adjustment])]),
            (made, vec![eur, usd(&[corrections])]),
        ]
    };
    for (m, want) in checks {
        let report = tally_api::finance::settlement::reconcile(&mut conn, m)
            .await
            .unwrap();
        assert_eq!(figures(&report), want, "{}", m.label());
        assert!(report.holds(), "{report:?}");
    }
    // DB Co gives back its share of the credit notes in the month they
    // were issued: 1.82 in EUR, 1.60 in USD.
    let body = dbco_settlement(made).await;
    let given_back: Vec<(&str, &str)> = body["data"][0]["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["currency"].as_str().unwrap(),
                c["credit_notes"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(given_back, [("EUR", "1.82"), ("USD", "1.60")], "{body}");
    // October's settlement did not change with the corrections.
    let again = dbco_settlement(month).await;
    assert_eq!(again["data"][0]["currencies"][1]["net_payable"], "8.91");

    // A ledger that disagrees with the invoices fails, with the problem named.
    sqlx::query(
        "UPDATE credit_ledger SET amount = amount + 1 WHERE kind = 'draw' AND account_id = 'acme'",
    )
    .execute(pool)
    .await
    .unwrap();
    let (ok, text) = reconcile_cli(&s, &month.label());
    assert!(!ok, "{text}");
    assert!(
        text.contains("the credit ledger drew 11.00 for its period, the invoice applies 10.00"),
        "{text}"
    );

    // Finance exports of the month.
    let csv = get_text(
        &s.http,
        &format!(
            "{}/v1/exports/invoices.csv?period={}",
            s.invoicing,
            month.label()
        ),
        &s.keys.finance,
    )
    .await;
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(
        rows[1].starts_with(&format!("{acme_invoice},TLY-")),
        "{csv}"
    );
    assert!(
        rows[1].contains(",finalized,USD,15.40,10.00,5.40,2.03,"),
        "{csv}"
    );
    assert!(rows[2].contains(",void,USD,1.24,0.00,1.24,0.00,"), "{csv}");
}

/// Waits until the stream has had more than `n` events accepted.
async fn streamed_past(streamed: &AtomicUsize, n: usize) {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while streamed.load(Ordering::SeqCst) <= n {
        assert!(
            tokio::time::Instant::now() < until,
            "the stream stalled at {}",
            streamed.load(Ordering::SeqCst)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
