//! `POST /v1/events` over real HTTP against a real database, with the broker
//! replaced by an in-memory sink (the end-to-end tests with a real broker
//! live in the workspace's tests/).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{Duration as Age, Utc};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tally_collector::ingest::IngestState;
use tally_collector::lookup::Lookup;
use tally_collector::{router, EventSink, SinkError};
use tally_domain::{AccountId, Currency, ProviderId, ProviderKind, Sku, UsageEvent};
use tally_platform::auth::{create_key, Principal};
use tally_platform::catalog;

/// Remembers what was published; fails every publish when `down`.
#[derive(Default)]
struct MemorySink {
    published: Mutex<Vec<UsageEvent>>,
    corrections: Mutex<Vec<tally_domain::usage::CorrectionRequest>>,
    down: bool,
}

impl EventSink for MemorySink {
    fn publish<'a>(
        &'a self,
        events: &'a [UsageEvent],
        _traceparents: &'a [String],
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.down {
                return Err(SinkError::Broker("broker down".into()));
            }
            self.published.lock().unwrap().extend_from_slice(events);
            Ok(())
        })
    }

    fn publish_correction<'a>(
        &'a self,
        correction: &'a tally_domain::usage::CorrectionRequest,
    ) -> BoxFuture<'a, Result<(), SinkError>> {
        Box::pin(async move {
            if self.down {
                return Err(SinkError::Broker("broker down".into()));
            }
            self.corrections.lock().unwrap().push(correction.clone());
            Ok(())
        })
    }
}

struct Setup {
    url: String,
    pool: PgPool,
    sink: Arc<MemorySink>,
    dbco_key: String,
    customer_key: String,
    http: reqwest::Client,
}

/// A fresh database with providers dbco (owns dbco.db.hour) and other
/// (owns other.gb), account acme; a collector on a free port.
async fn setup(down: bool) -> Setup {
    let db = tally_platform::db::scratch_database("tally_test");
    tally_platform::db::migrate(&db).await.unwrap();
    let pool = tally_platform::db::connect(&db, 4).await.unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let dbco = ProviderId::parse("dbco").unwrap();
    let other = ProviderId::parse("other").unwrap();
    let acme = AccountId::parse("acme").unwrap();
    for p in [&dbco, &other] {
        catalog::create_provider(&mut conn, p, p.as_str(), ProviderKind::Partner)
            .await
            .unwrap();
    }
    catalog::create_account(&mut conn, &acme, "Acme", Currency::parse("USD").unwrap())
        .await
        .unwrap();
    for (sku, owner) in [("dbco.db.hour", &dbco), ("other.gb", &other)] {
        catalog::create_sku(&mut conn, &Sku::parse(sku).unwrap(), owner, sku, "unit")
            .await
            .unwrap();
    }
    let dbco_key = create_key(&mut conn, &Principal::Provider(dbco))
        .await
        .unwrap()
        .secret;
    let customer_key = create_key(&mut conn, &Principal::Customer(acme))
        .await
        .unwrap()
        .secret;
    drop(conn);
    let sink = Arc::new(MemorySink {
        down,
        ..MemorySink::default()
    });
    let url = serve(pool.clone(), sink.clone()).await;
    Setup {
        url,
        pool,
        sink,
        dbco_key,
        customer_key,
        http: reqwest::Client::new(),
    }
}

async fn serve(pool: PgPool, sink: Arc<MemorySink>) -> String {
    let state = Arc::new(IngestState {
        lookup: Lookup::new(pool, Duration::from_millis(500), Duration::from_secs(300)),
        sink,
        max_age: Duration::from_secs(7 * 24 * 3600),
        max_future: Duration::from_secs(300),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router(state)).await });
    format!("http://{addr}/v1/events")
}

fn event(id: &str, subject: &str, sku: &str) -> Value {
    json!({
        "specversion": "1.0", "id": id, "source": "dbco", "type": "com.tally.usage",
        "subject": subject, "time": (Utc::now() - Age::minutes(5)).to_rfc3339(),
        "data": {"sku": sku, "quantity": "2.5"}
    })
}

const BATCH: &str = "application/cloudevents-batch+json";

impl Setup {
    async fn post(&self, key: Option<&str>, content_type: &str, body: Vec<u8>) -> (u16, Value) {
        let mut request = self
            .http
            .post(&self.url)
            .header("content-type", content_type)
            .body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The ids of the events published so far, in order.
    fn published_ids(&self) -> Vec<String> {
        self.sink
            .published
            .lock()
            .unwrap()
            .iter()
            .map(|e| e.event_id.to_string())
            .collect()
    }

    async fn post_batch(&self, events: &[Value]) -> (u16, Value) {
        let body = serde_json::to_vec(events).unwrap();
        self.post(Some(&self.dbco_key), BATCH, body).await
    }
}

fn response_schema() -> jsonschema::Validator {
    let path = format!(
        "{}/../../schemas/collector-response.schema.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap()
}

/// Each event's (id, code), or (id, `accepted`), in request order.
fn verdicts(answer: &Value) -> Vec<(&str, &str)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap(),
                r["code"].as_str().unwrap_or(r["status"].as_str().unwrap()),
            )
        })
        .collect()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test]
async fn requests_without_a_provider_key_are_refused() {
    let s = setup(false).await;
    let body = serde_json::to_vec(&[event("e1", "acme", "dbco.db.hour")]).unwrap();

    let (status, answer) = s.post(None, BATCH, body.clone()).await;
    assert_eq!((status, error_code(&answer)), (401, "unauthorized"));
    let (status, answer) = s.post(Some("tly_nope"), BATCH, body.clone()).await;
    assert_eq!((status, error_code(&answer)), (401, "unauthorized"));
    let (status, answer) = s.post(Some(&s.customer_key), BATCH, body).await;
    assert_eq!((status, error_code(&answer)), (403, "forbidden"));
    assert!(s.sink.published.lock().unwrap().is_empty());
}

/// Issue 14, item 6: a caller without a key learns nothing about the body
/// (401 before any parsing), and the router's own answers are JSON too.
#[tokio::test]
async fn without_a_key_nothing_is_read_and_every_answer_is_json() {
    let s = setup(false).await;
    for (content_type, body) in [
        ("text/plain", b"{oops".to_vec()),
        (BATCH, b"{oops".to_vec()),
        (BATCH, b"[]".to_vec()),
    ] {
        let (status, answer) = s.post(None, content_type, body).await;
        assert_eq!((status, error_code(&answer)), (401, "unauthorized"));
    }
    let base = s.url.trim_end_matches("/v1/events");
    for (method, path, expected) in [
        ("GET", "/v1/events", (405, "method_not_allowed")),
        ("PUT", "/v1/events", (405, "method_not_allowed")),
        ("GET", "/v1/nothing-here", (404, "unknown_route")),
        ("POST", "/v1/event", (404, "unknown_route")),
    ] {
        let response = s
            .http
            .request(method.parse().unwrap(), format!("{base}{path}"))
            .bearer_auth(&s.dbco_key)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, content_type.as_str(), error_code(&answer)),
            (expected.0, "application/json", expected.1),
            "{method} {path}"
        );
    }
    assert!(s.sink.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn malformed_requests_get_request_level_codes() {
    let s = setup(false).await;
    let one = event("e1", "acme", "dbco.db.hour");
    let (status, answer) = s.post_batch(&vec![one.clone(); 1001]).await;
    assert_eq!((status, error_code(&answer)), (413, "batch_too_large"));

    let mut huge = one.clone();
    huge["data"]["dimensions"] = json!({"pad": "x".repeat(1_100_000)});
    let (status, answer) = s
        .post(
            Some(&s.dbco_key),
            BATCH,
            serde_json::to_vec(&[huge]).unwrap(),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (413, "payload_too_large"));

    let body = serde_json::to_vec(&one).unwrap();
    let (status, answer) = s.post(Some(&s.dbco_key), "text/plain", body).await;
    assert_eq!(
        (status, error_code(&answer)),
        (415, "unsupported_media_type")
    );

    let (status, answer) = s.post(Some(&s.dbco_key), BATCH, b"{oops".to_vec()).await;
    assert_eq!((status, error_code(&answer)), (400, "malformed"));
    let (status, answer) = s.post(Some(&s.dbco_key), BATCH, b"\"x\"".to_vec()).await;
    assert_eq!((status, error_code(&answer)), (400, "malformed"));
    let (status, answer) = s.post(Some(&s.dbco_key), BATCH, b"[]".to_vec()).await;
    assert_eq!((status, error_code(&answer)), (400, "invalid_request"));
    assert!(s.sink.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_event_gets_its_own_verdict_in_request_order() {
    let s = setup(false).await;
    let mut too_old = event("e5", "acme", "dbco.db.hour");
    too_old["time"] = json!((Utc::now() - Age::days(30)).to_rfc3339());
    let mut foreign = event("e6", "acme", "dbco.db.hour");
    foreign["source"] = json!("other");
    let batch = [
        event("e1", "acme", "dbco.db.hour"),
        event("e2", "acme", "nope.sku"),
        event("e3", "acme", "other.gb"),
        event("e4", "ghost", "dbco.db.hour"),
        too_old,
        foreign,
        json!("not an event"),
        event("e1", "acme", "dbco.db.hour"),
    ];
    let (status, answer) = s.post_batch(&batch).await;
    assert_eq!(status, 202, "{answer}");
    assert!(response_schema().is_valid(&answer), "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(6))
    );
    let verdicts: Vec<(Value, &str)> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(r["index"], i);
            (
                r["id"].clone(),
                r["code"].as_str().unwrap_or(r["status"].as_str().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (json!("e1"), "accepted"),
            (json!("e2"), "unknown_sku"),
            (json!("e3"), "sku_not_owned"),
            (json!("e4"), "account_unknown"),
            (json!("e5"), "time_out_of_window"),
            (json!("e6"), "source_mismatch"),
            (Value::Null, "malformed"),
            (json!("e1"), "accepted"),
        ]
    );
    let published = s.sink.published.lock().unwrap().clone();
    assert_eq!(published.len(), 2);
    assert!(published.iter().all(|e| e.event_id.as_str() == "e1"
        && e.account_id.as_str() == "acme"
        && e.provider_id.as_str() == "dbco"
        && e.quantity.value().to_string() == "2.5"
        && e.received_at >= e.time));
}

#[tokio::test]
async fn a_request_whose_events_are_all_rejected_is_still_accepted() {
    let s = setup(false).await;
    let (status, answer) = s.post_batch(&[event("e1", "acme", "nope.sku")]).await;
    assert_eq!(status, 202);
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(s.sink.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_single_event_body_is_one_event() {
    let s = setup(false).await;
    let body = serde_json::to_vec(&event("solo", "acme", "dbco.db.hour")).unwrap();
    let (status, answer) = s
        .post(Some(&s.dbco_key), "application/cloudevents+json", body)
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["results"][0]["status"], "accepted");
    assert_eq!(s.sink.published.lock().unwrap().len(), 1);
}

/// POSTs one event in binary content mode: attributes in `ce-*` headers,
/// the data as the body.
async fn post_binary(s: &Setup, attributes: &[(&str, &str)], data: Value) -> (u16, Value) {
    let mut request = s
        .http
        .post(&s.url)
        .bearer_auth(&s.dbco_key)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&data).unwrap());
    for (name, value) in attributes {
        request = request.header(format!("ce-{name}"), *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_binary_mode_event_is_one_event() {
    let s = setup(false).await;
    let time = (Utc::now() - Age::minutes(5)).to_rfc3339();
    let attributes = [
        ("specversion", "1.0"),
        ("id", "bin%2D1"),
        ("source", "dbco"),
        ("type", "com.tally.usage"),
        ("subject", "acme"),
        ("time", time.as_str()),
    ];
    let (status, answer) = post_binary(
        &s,
        &attributes,
        json!({"sku": "dbco.db.hour", "quantity": "4"}),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["results"][0]["id"], "bin-1");
    let published = s.sink.published.lock().unwrap().clone();
    assert_eq!(published.len(), 1);
    assert_eq!(
        (
            published[0].event_id.as_str(),
            published[0].account_id.as_str(),
            published[0].sku.as_str(),
            published[0].quantity.value().to_string()
        ),
        ("bin-1", "acme", "dbco.db.hour", "4".to_owned())
    );
}

#[tokio::test]
async fn a_refused_single_event_gets_a_4xx_with_its_code() {
    let s = setup(false).await;
    // Structured mode: one object.
    let body = serde_json::to_vec(&event("solo", "acme", "other.gb")).unwrap();
    let (status, answer) = s
        .post(Some(&s.dbco_key), "application/cloudevents+json", body)
        .await;
    assert_eq!((status, error_code(&answer)), (422, "sku_not_owned"));
    // Binary mode.
    let time = (Utc::now() - Age::minutes(5)).to_rfc3339();
    let (status, answer) = post_binary(
        &s,
        &[
            ("specversion", "1.0"),
            ("id", "bin-2"),
            ("source", "dbco"),
            ("type", "com.tally.usage"),
            ("subject", "nobody"),
            ("time", time.as_str()),
        ],
        json!({"sku": "dbco.db.hour", "quantity": "1"}),
    )
    .await;
    assert_eq!((status, error_code(&answer)), (422, "account_unknown"));
    let (status, answer) = post_binary(
        &s,
        &[("specversion", "1.0"), ("id", "bin-3"), ("source", "dbco")],
        json!({"sku": "dbco.db.hour", "quantity": "1"}),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    // A batch of one still answers per event.
    let (status, answer) = s.post_batch(&[event("solo", "acme", "other.gb")]).await;
    assert_eq!(status, 202);
    assert_eq!(answer["results"][0]["code"], "sku_not_owned");
    assert!(s.sink.published.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_unacknowledged_publish_fails_the_whole_request() {
    let s = setup(true).await;
    let (status, answer) = s.post_batch(&[event("e1", "acme", "dbco.db.hour")]).await;
    assert_eq!((status, error_code(&answer)), (503, "broker_unavailable"));
}

/// POSTs one event of dbco; returns (status, body, Retry-After).
async fn post_one(s: &Setup, key: &str, id: &str, account: &str) -> (u16, Value, Option<String>) {
    let response = s
        .http
        .post(&s.url)
        .bearer_auth(key)
        .json(&event(id, account, "dbco.db.hour"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let retry = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, response.json().await.unwrap(), retry)
}

#[tokio::test]
async fn usage_checked_against_what_was_read_before_is_accepted_while_the_database_is_out_of_reach()
{
    let s = setup(false).await;
    assert_eq!(post_one(&s, &s.dbco_key, "before", "acme").await.0, 202);
    catalog::create_account(
        &mut s.pool.acquire().await.unwrap(),
        &AccountId::parse("globex").unwrap(),
        "Globex",
        Currency::parse("USD").unwrap(),
    )
    .await
    .unwrap();
    s.pool.close().await; // every question to PostgreSQL now fails at once

    let (status, body, _) = post_one(&s, &s.dbco_key, "during", "acme").await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (202, Some(1)),
        "{body}"
    );
    // globex exists, but this collector never read it: it cannot decide.
    let (status, body, retry) = post_one(&s, &s.dbco_key, "undecided", "globex").await;
    assert_eq!(
        (status, body["error"]["code"].as_str(), retry.as_deref()),
        (503, Some("catalog_unavailable"), Some("5"))
    );
    // Neither can it for a key it has not seen.
    let (status, body, _) = post_one(&s, &s.customer_key, "who", "acme").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("catalog_unavailable"))
    );
    let published = s.published_ids();
    assert_eq!(published, ["before", "during"]);
}

#[tokio::test]
async fn a_revoked_key_stops_at_once_and_is_not_remembered() {
    let s = setup(false).await;
    assert_eq!(post_one(&s, &s.dbco_key, "a", "acme").await.0, 202);
    sqlx::query("UPDATE api_keys SET revoked_at = now()")
        .execute(&s.pool)
        .await
        .unwrap();
    assert_eq!(post_one(&s, &s.dbco_key, "b", "acme").await.0, 401);
    s.pool.close().await;
    assert_eq!(post_one(&s, &s.dbco_key, "c", "acme").await.0, 503);
    assert_eq!(s.sink.published.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_lock_held_on_accounts_does_not_hold_posts() {
    let s = setup(false).await;
    assert_eq!(post_one(&s, &s.dbco_key, "a", "acme").await.0, 202);
    let mut locker = s.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locker)
        .await
        .unwrap();
    // The collector waits 500 ms for PostgreSQL, then answers from what it
    // read before; before the fix the POST waited for the lock.
    let answered = tokio::time::timeout(
        Duration::from_secs(10),
        post_one(&s, &s.dbco_key, "b", "acme"),
    )
    .await
    .expect("answered while the lock is held");
    assert_eq!(answered.0, 202);
    locker.rollback().await.unwrap();
    assert_eq!(s.sink.published.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn events_rating_could_not_bill_are_refused_one_by_one() {
    let s = setup(false).await;
    // 100 trillion dollars a unit: a quadrillion units (the largest quantity)
    // is more than any amount can hold; 2.5 units are billable.
    let mut conn = s.pool.acquire().await.unwrap();
    catalog::add_price(
        &mut conn,
        &Sku::parse("dbco.db.hour").unwrap(),
        Currency::parse("USD").unwrap(),
        Utc::now() - Age::days(1),
        &tally_domain::PriceModel::per_unit(rust_decimal::Decimal::from(100_000_000_000_000_i64))
            .unwrap()
            .into(),
    )
    .await
    .unwrap();
    drop(conn);
    let mut nul_value = event("nul-value", "acme", "dbco.db.hour");
    nul_value["data"]["dimensions"] = json!({"region": "eu\u{0}west"});
    let mut nul_key = event("nul-key", "acme", "dbco.db.hour");
    nul_key["data"]["dimensions"] = json!({"re\u{0}gion": "eu"});
    let mut huge = event("huge", "acme", "dbco.db.hour");
    huge["data"]["quantity"] = json!("1000000000000000");
    let mut fine = event("fine", "acme", "dbco.db.hour");
    fine["data"]["dimensions"] = json!({"region": "eu-west"});
    let batch = [
        event("first", "acme", "dbco.db.hour"),
        nul_value,
        nul_key,
        huge,
        fine,
    ];
    let (status, answer) = s.post_batch(&batch).await;
    assert_eq!(status, 202, "{answer}");
    assert!(response_schema().is_valid(&answer), "{answer}");
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let verdicts = verdicts(&answer);
    assert_eq!(
        verdicts,
        [
            ("first", "accepted"),
            ("nul-value", "dimension_invalid"),
            ("nul-key", "dimension_invalid"),
            ("huge", "amount_overflow"),
            ("fine", "accepted"),
        ]
    );
    assert_eq!(
        answer["results"][3]["message"],
        "1000000000000000 units of dbco.db.hour cannot be billed at its USD price: the charge overflows"
    );
    let published = s.published_ids();
    assert_eq!(published, ["first", "fine"]);
}

/// The overflow check prices an event as rating will: an account a provider
/// owns at the SKU's wholesale version (issue 17), every other account at
/// its list version. A quadrillion units at 0.10 (list) is billable; at
/// 100 trillion a unit (wholesale) it is not.
#[tokio::test]
async fn the_overflow_check_prices_a_providers_own_account_at_wholesale() {
    let s = setup(false).await;
    let mut conn = s.pool.acquire().await.unwrap();
    let sku = Sku::parse("dbco.db.hour").unwrap();
    let usd = Currency::parse("USD").unwrap();
    let since = Utc::now() - Age::days(1);
    let per_unit = |price: rust_decimal::Decimal| -> tally_domain::PriceBook {
        tally_domain::PriceModel::per_unit(price).unwrap().into()
    };
    catalog::add_price(
        &mut conn,
        &sku,
        usd,
        since,
        &per_unit("0.10".parse().unwrap()),
    )
    .await
    .unwrap();
    catalog::add_wholesale_price(
        &mut conn,
        &sku,
        usd,
        since,
        &per_unit(rust_decimal::Decimal::from(100_000_000_000_000_i64)),
    )
    .await
    .unwrap();
    let owned = AccountId::parse("other-billing").unwrap();
    catalog::create_account(&mut conn, &owned, "Other (billing)", usd)
        .await
        .unwrap();
    tally_platform::composition::set_owner(&mut conn, &owned, &ProviderId::parse("other").unwrap())
        .await
        .unwrap();
    drop(conn);
    let huge = |id: &str, account: &str| {
        let mut e = event(id, account, "dbco.db.hour");
        e["data"]["quantity"] = json!("1000000000000000");
        e
    };
    let batch = [
        huge("list-huge", "acme"),
        huge("wholesale-huge", "other-billing"),
        event("wholesale-small", "other-billing", "dbco.db.hour"),
    ];
    let (status, answer) = s.post_batch(&batch).await;
    assert_eq!(status, 202, "{answer}");
    let verdicts = verdicts(&answer);
    assert_eq!(
        verdicts,
        [
            ("list-huge", "accepted"),
            ("wholesale-huge", "amount_overflow"),
            ("wholesale-small", "accepted"),
        ]
    );
    let published = s.published_ids();
    assert_eq!(published, ["list-huge", "wholesale-small"]);
}

/// A binding of `account` to dbco on plan `dbco.ps-10`, requested at
/// `requested` and activated an hour later; deleted at `deleted` if given.
async fn bound(
    pool: &PgPool,
    account: &str,
    requested: chrono::DateTime<Utc>,
    deleted: Option<chrono::DateTime<Utc>>,
) -> String {
    use tally_domain::binding::{Actor, BindingEvent};
    use tally_platform::bindings::{self, Move, NewBinding, Scope};
    let mut conn = pool.acquire().await.unwrap();
    let new = NewBinding {
        account: AccountId::parse(account).unwrap(),
        provider: ProviderId::parse("dbco").unwrap(),
        resource_type: tally_domain::ResourceType::parse("database").unwrap(),
        name: "prod-db".into(),
        plan: tally_domain::PlanId::parse("dbco.ps-10").unwrap(),
        region: None,
        tags: Default::default(),
    };
    let b = bindings::create_binding(&mut conn, new, Actor::Customer, requested)
        .await
        .unwrap();
    let moves = [(
        BindingEvent::Activated,
        Actor::Provider,
        requested + Age::hours(1),
    )]
    .into_iter()
    .chain(deleted.map(|at| (BindingEvent::Delete, Actor::Customer, at)));
    for (event, by, at) in moves {
        let mv = Move {
            event,
            by,
            at,
            message: None,
            provider_resource_id: None,
        };
        bindings::apply_move(&mut conn, &Scope::Platform, &b.id, mv)
            .await
            .unwrap();
    }
    b.id.to_string()
}

#[tokio::test]
async fn usage_outside_an_active_binding_is_refused_not_bound_and_its_siblings_kept() {
    let s = setup(false).await;
    let now = Utc::now();
    {
        let mut conn = s.pool.acquire().await.unwrap();
        catalog::create_account(
            &mut conn,
            &AccountId::parse("globex").unwrap(),
            "Globex",
            Currency::parse("USD").unwrap(),
        )
        .await
        .unwrap();
        let plan = tally_platform::plans::Plan {
            id: tally_domain::PlanId::parse("dbco.ps-10").unwrap(),
            provider: ProviderId::parse("dbco").unwrap(),
            resource_type: tally_domain::ResourceType::parse("database").unwrap(),
            name: "PS-10".into(),
        };
        tally_platform::plans::create_plan(&mut conn, &plan)
            .await
            .unwrap();
        tally_platform::plans::add_plan_version(
            &mut conn,
            &plan.id,
            Currency::parse("USD").unwrap(),
            now - Age::days(10),
            "39".parse().unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
    }
    let live = bound(&s.pool, "acme", now - Age::days(2), None).await;
    let gone = bound(
        &s.pool,
        "acme",
        now - Age::days(2),
        Some(now - Age::hours(1)),
    )
    .await;
    let theirs = bound(&s.pool, "globex", now - Age::days(2), None).await;
    let later = bound(&s.pool, "acme", now - Age::minutes(30), None).await;
    let with = |id: &str, resource: Option<&str>, ago: Age| {
        let mut e = event(id, "acme", "dbco.db.hour");
        e["time"] = json!((now - ago).to_rfc3339());
        if let Some(r) = resource {
            e["resource"] = json!(r);
        }
        e
    };
    let batch = || {
        [
            with("on-live", Some(&live), Age::minutes(5)),
            with("gone-before-deletion", Some(&gone), Age::hours(2)),
            with("gone-after-deletion", Some(&gone), Age::minutes(5)),
            with("theirs", Some(&theirs), Age::minutes(5)),
            with("before-activation", Some(&later), Age::minutes(5)),
            with("no-such-binding", Some("bnd_nope"), Age::minutes(5)),
            with("unbound", None, Age::minutes(5)),
        ]
    };
    let verdicts = |answer: &Value| -> Vec<(String, String)> {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap().to_owned(),
                    r["code"]
                        .as_str()
                        .unwrap_or(r["status"].as_str().unwrap())
                        .to_owned(),
                )
            })
            .collect()
    };
    let expect = |unbound: &str| -> Vec<(String, String)> {
        [
            ("on-live", "accepted"),
            ("gone-before-deletion", "accepted"),
            ("gone-after-deletion", "not_bound"),
            ("theirs", "not_bound"),
            ("before-activation", "not_bound"),
            ("no-such-binding", "not_bound"),
            ("unbound", unbound),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect()
    };
    // dbco does not require bindings yet: only usage naming a wrong one is refused.
    let (status, answer) = s.post_batch(&batch()).await;
    assert_eq!(status, 202, "{answer}");
    assert!(response_schema().is_valid(&answer), "{answer}");
    assert_eq!(verdicts(&answer), expect("accepted"));
    assert!(answer["results"][2]["message"]
        .as_str()
        .unwrap()
        .contains("was deleted"));
    // Once it does, usage naming no binding is refused too.
    tally_platform::bindings::set_requires_binding(
        &mut s.pool.acquire().await.unwrap(),
        &ProviderId::parse("dbco").unwrap(),
        true,
    )
    .await
    .unwrap();
    let (status, answer) = s.post_batch(&batch()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(verdicts(&answer), expect("not_bound"));
    let published: Vec<(String, Option<String>)> = s
        .sink
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e.event_id.to_string(),
                e.resource.as_ref().map(|r| r.to_string()),
            )
        })
        .collect();
    assert_eq!(
        published,
        [
            ("on-live".to_owned(), Some(live.clone())),
            ("gone-before-deletion".to_owned(), Some(gone.clone())),
            ("unbound".to_owned(), None),
            ("on-live".to_owned(), Some(live.clone())),
            ("gone-before-deletion".to_owned(), Some(gone.clone())),
        ]
    );
}

/// A counted event of `provider` for acme, as rating stores it.
async fn counted(pool: &PgPool, provider: &str, id: &str, age: Age, cancelled: bool) {
    let time = Utc::now() - age;
    sqlx::query(
        "INSERT INTO counted_events (provider_id, event_id, account_id, sku_id, price_id,
             period_start, period_end, event_time, quantity, cancelled_by)
         VALUES ($1, $2, 'acme', 'dbco.db.hour', 0, $3, $4, $3, 2, $5)",
    )
    .bind(provider)
    .bind(id)
    .bind(time)
    .bind(time + Age::days(30))
    .bind(cancelled.then(uuid::Uuid::new_v4))
    .execute(pool)
    .await
    .unwrap();
}

impl Setup {
    async fn correct(&self, key: Option<&str>, path: &str, body: Value) -> (u16, Value) {
        let url = format!("{}{path}", self.url.trim_end_matches("/v1/events"));
        let mut request = self.http.post(url).json(&body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

#[tokio::test]
async fn corrections_of_events_are_checked_then_produced_keyed_by_account() {
    let s = setup(false).await;
    counted(&s.pool, "dbco", "e1", Age::hours(1), false).await;
    counted(&s.pool, "dbco", "gone", Age::hours(1), true).await;
    counted(&s.pool, "dbco", "old", Age::days(8), false).await;
    counted(&s.pool, "other", "theirs", Age::hours(1), false).await;
    let key = Some(s.dbco_key.as_str());
    let reason = json!({"reason": "metered twice"});
    for (path, body, expected) in [
        (
            "/v1/events/nope/cancel",
            reason.clone(),
            (404, "unknown_event"),
        ),
        (
            "/v1/events/theirs/cancel",
            reason.clone(),
            (403, "event_not_owned"),
        ),
        (
            "/v1/events/gone/cancel",
            reason.clone(),
            (422, "already_cancelled"),
        ),
        (
            "/v1/events/gone/amend",
            json!({"reason": "x", "quantity": "1"}),
            (422, "already_cancelled"),
        ),
        (
            "/v1/events/old/cancel",
            reason.clone(),
            (422, "outside_window"),
        ),
        (
            "/v1/events/e1/cancel",
            json!({"reason": " "}),
            (422, "reason_missing"),
        ),
        ("/v1/events/e1/cancel", json!({}), (400, "malformed")),
        (
            "/v1/events/e1/amend",
            json!({"reason": "x", "quantity": "-1"}),
            (422, "quantity_invalid"),
        ),
        (
            "/v1/events/e1/amend",
            json!({"reason": "x", "quantity": "1", "dimensions": {"a": "\u{0}"}}),
            (422, "dimension_invalid"),
        ),
    ] {
        let (status, answer) = s.correct(key, path, body).await;
        assert_eq!((status, error_code(&answer)), expected, "{path}: {answer}");
    }
    // Other keys: a customer's is forbidden, none unauthorized.
    let (status, answer) = s
        .correct(
            Some(&s.customer_key),
            "/v1/events/e1/cancel",
            reason.clone(),
        )
        .await;
    assert_eq!((status, error_code(&answer)), (403, "forbidden"));
    let (status, answer) = s
        .correct(None, "/v1/events/e1/cancel", reason.clone())
        .await;
    assert_eq!((status, error_code(&answer)), (401, "unauthorized"));
    assert!(s.sink.corrections.lock().unwrap().is_empty());

    let (status, answer) = s.correct(key, "/v1/events/e1/cancel", reason.clone()).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        (answer["kind"].as_str(), answer["account"].as_str()),
        (Some("cancel"), Some("acme"))
    );
    let (status, answer) = s
        .correct(
            key,
            "/v1/events/e1/amend",
            json!({"reason": "wrong meter", "quantity": 1.25, "dimensions": {"region": "eu"}}),
        )
        .await;
    assert_eq!(status, 202, "{answer}");
    let produced = s.sink.corrections.lock().unwrap().clone();
    assert_eq!(produced.len(), 2);
    assert_eq!(produced[0].account_id.as_str(), "acme");
    assert_eq!(produced[0].reason, "metered twice");
    assert_eq!(produced[0].change.kind(), "cancel");
    match &produced[1].change {
        tally_domain::usage::Change::Amend {
            event_id,
            quantity,
            dimensions,
        } => {
            assert_eq!(event_id.as_str(), "e1");
            assert_eq!(quantity.value(), rust_decimal_macros::dec!(1.25));
            assert_eq!(dimensions.get("region").map(String::as_str), Some("eu"));
        }
        other => panic!("{other:?}"),
    }
    // Who asked: the key's id, never its secret.
    assert!(!produced[0].requested_by.contains(&s.dbco_key));
    assert_eq!(produced[0].requested_by.len(), 36);
}

#[tokio::test]
async fn a_backfill_is_checked_as_one_operation() {
    let s = setup(false).await;
    counted(&s.pool, "dbco", "kept", Age::hours(30), false).await;
    counted(&s.pool, "dbco", "replaced", Age::hours(3), false).await;
    let key = Some(s.dbco_key.as_str());
    let start = Utc::now() - Age::hours(6);
    let end = Utc::now() - Age::hours(1);
    let at = |hours: i64| (Utc::now() - Age::hours(hours)).to_rfc3339();
    let replacement = |id: &str, time: String| {
        json!({"specversion": "1.0", "id": id, "source": "dbco", "type": "com.tally.usage",
               "subject": "acme", "time": time, "data": {"sku": "dbco.db.hour", "quantity": "3"}})
    };
    let body = |account: &str, start: String, end: String, events: Vec<Value>| json!({"account": account, "start": start, "end": end, "reason": "re-metered", "events": events});
    for (request, expected) in [
        (
            body("acme", end.to_rfc3339(), start.to_rfc3339(), vec![]),
            (422, "window_invalid"),
        ),
        (
            body("acme", at(24 * 8), end.to_rfc3339(), vec![]),
            (422, "outside_window"),
        ),
        (
            body("nobody", start.to_rfc3339(), end.to_rfc3339(), vec![]),
            (422, "account_unknown"),
        ),
        (
            body(
                "acme",
                start.to_rfc3339(),
                end.to_rfc3339(),
                vec![replacement("n1", at(12))],
            ),
            (422, "event_outside_window"),
        ),
        (
            body(
                "acme",
                start.to_rfc3339(),
                end.to_rfc3339(),
                vec![replacement("kept", at(2))],
            ),
            (422, "event_id_taken"),
        ),
        (
            body(
                "acme",
                start.to_rfc3339(),
                end.to_rfc3339(),
                vec![replacement("n1", at(2)), replacement("n1", at(3))],
            ),
            (422, "duplicate_event_id"),
        ),
        (
            body(
                "acme",
                start.to_rfc3339(),
                end.to_rfc3339(),
                vec![replacement("n1", at(2)), json!({"id": "n2"})],
            ),
            (422, "malformed"),
        ),
    ] {
        let (status, answer) = s.correct(key, "/v1/backfills", request.clone()).await;
        assert_eq!(
            (status, error_code(&answer)),
            expected,
            "{request}: {answer}"
        );
    }
    assert!(s.sink.corrections.lock().unwrap().is_empty());
    // The replaced event's id may come back with its new values.
    let (status, answer) = s
        .correct(
            key,
            "/v1/backfills",
            body(
                "acme",
                start.to_rfc3339(),
                end.to_rfc3339(),
                vec![replacement("replaced", at(2)), replacement("n1", at(4))],
            ),
        )
        .await;
    assert_eq!(
        (status, answer["kind"].as_str()),
        (202, Some("backfill")),
        "{answer}"
    );
    let produced = s.sink.corrections.lock().unwrap().clone();
    match &produced[0].change {
        tally_domain::usage::Change::Backfill { events, .. } => {
            let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            assert_eq!(ids, ["replaced", "n1"]);
        }
        other => panic!("{other:?}"),
    }
}
