//! A partner's managed database through the HTTP API, end to end, inside
//! one month: the partner publishes its plans, the platform provisions the
//! resource for the customer, the partner reports it provisioning and
//! active, the customer uses it, the platform moves it to a bigger plan,
//! suspends and deletes it; the customer sees each status. The invoice's
//! lines for the resource (two prorated plan fees, the allowance, the usage
//! beyond it) are checked to the cent against amounts computed here by
//! hand; usage of a deleted or unknown resource is refused `not_bound` and
//! its valid siblings are billed.
//!
//! The month is the one before the open month (as tests/lifecycle.rs
//! does), so every move is timed in the past: by the platform (the admin
//! key's `at`) and the provider (its report's `at`). A customer's own moves
//! are timed now (tests/tenancy.rs checks that a customer cannot time one).
//! The provider sets its webhook through the API; its first call is missed,
//! Tally retries it, and each event is processed once by its id, signed
//! with the secret the API gave (the retry schedule and a lost answer are
//! tests of `tally_platform::binding_outbox`, shared/platform/tests/bindings.rs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, DurationRound, Utc};
use common::*;
use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tally::up::Service;
use tally_domain::Period;
use tally_platform::binding_outbox;

const GRACE_HOURS: i64 = 48;

/// `method` `path` on the API with `key`.
async fn call(s: &Seeded, method: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
    send(
        &s.http,
        method,
        &format!("{}{path}", s.invoicing),
        key,
        body,
    )
    .await
}

/// `x` rounded to cents, half away from zero.
fn cents(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn hour_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(Duration::hours(1)).unwrap()
}

fn hour_ceil(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = hour_floor(t);
    if floor == t {
        t
    } else {
        floor + Duration::hours(1)
    }
}

/// A usage event of dbco's database hours naming `resource`.
fn db_hours(id: &str, quantity: &str, at: DateTime<Utc>, resource: &str) -> Value {
    let mut e = event(id, "dbco", "acme", "dbco.db.hour", quantity, at);
    e["resource"] = json!(resource);
    e
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_resources_month_is_billed_per_resource_to_the_cent() {
    // Prices and ingest reaching back 120 days (the month before the open one).
    let s = Seeded::start_with(&Service::ALL, 120, |c| {
        c.ingest_max_age = std::time::Duration::from_secs(120 * 86_400);
        c.webhook_key = Some("platform webhook key".into());
    })
    .await;
    let open = Period::month_containing(s.now - Duration::hours(GRACE_HOURS));
    let month = Period::month_containing(open.start() - Duration::days(1));
    let day = |d: i64, h: i64, m: i64| {
        month.start() + Duration::days(d - 1) + Duration::hours(h) + Duration::minutes(m)
    };
    let keys = &s.keys;

    // dbco's webhook misses its first call; dbco sets it and gets its secret.
    let hooks = Arc::new(Mutex::new(Receiver::default()));
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(webhook))
        .with_state(hooks.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let (status, hook) = call(
        &s,
        "post",
        "/v1/provider/webhook",
        &keys.dbco,
        json!({"url": url}),
    )
    .await;
    assert_eq!(
        (status, &hook["secret_generation"]),
        (200, &json!(1)),
        "{hook}"
    );
    let secret = hook["secret"].as_str().unwrap().to_owned();

    // dbco publishes two database plans; the platform backdates their USD
    // versions to the month's start (a provider's take effect now or later).
    for (id, name, fee, hours) in [
        ("dbco.ps-10", "PS-10", "39.00", "100"),
        ("dbco.ps-20", "PS-20", "72.00", "250"),
    ] {
        let plan = json!({"id": id, "resource_type": "database", "name": name});
        let (status, body) = call(&s, "post", "/v1/provider/plans", &keys.dbco, plan).await;
        assert_eq!(status, 201, "{body}");
        let version = json!({"plan": id, "currency": "USD", "effective_from": month.start(),
                             "base_fee": fee, "allowances": {"dbco.db.hour": hours}});
        let (status, body) =
            call(&s, "post", "/v1/admin/plan-versions", &keys.admin, version).await;
        assert_eq!(status, 201, "{body}");
    }

    // Provisioned on the 2nd, reported provisioning and then active.
    let requested = day(2, 0, 0);
    let new = json!({"provider": "dbco", "resource_type": "database", "name": "prod-db",
                     "plan": "dbco.ps-10", "region": "eu-west", "tags": {"team": "core"},
                     "at": requested});
    let bindings = "/v1/accounts/acme/bindings";
    let (status, created) = call(&s, "post", bindings, &keys.admin, new).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "requested");
    let id = created["id"].as_str().unwrap().to_owned();
    let mine = format!("{bindings}/{id}");
    let report = format!("/v1/provider/bindings/{id}/status");
    let (_, provisioning) = call(
        &s,
        "post",
        &report,
        &keys.dbco,
        json!({"status": "provisioning", "at": day(2, 0, 10)}),
    )
    .await;
    assert_eq!(provisioning["status"], "provisioning");
    let (_, seen) = call(&s, "get", &mine, &keys.acme, json!(null)).await;
    assert_eq!(seen["status"], "provisioning", "the customer sees it");
    let activated = day(2, 10, 37);
    let (status, active) = call(
        &s,
        "post",
        &report,
        &keys.dbco,
        json!({"status": "active", "message": "ready", "resource_id": "db-7f3a", "at": activated}),
    )
    .await;
    assert_eq!(status, 200, "{active}");
    assert_eq!(
        (
            &active["status"],
            &active["status_message"],
            &active["provider_resource_id"]
        ),
        (&json!("active"), &json!("ready"), &json!("db-7f3a"))
    );
    // The provider cannot report it failed now: the state machine refuses.
    let (status, body) = call(&s, "post", &report, &keys.dbco, json!({"status": "failed"})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("illegal_transition"))
    );

    // A bigger plan on the 5th, suspended on the 9th, deleted on the 20th.
    let changed = day(5, 14, 5);
    let suspended = day(9, 0, 0);
    let deleted = day(20, 8, 30);
    let (status, body) = call(
        &s,
        "post",
        &format!("{mine}/plan"),
        &keys.admin,
        json!({"plan": "dbco.ps-20", "at": changed}),
    )
    .await;
    assert_eq!(
        (status, body["plan"].as_str()),
        (200, Some("dbco.ps-20")),
        "{body}"
    );
    // Resuming an active binding is refused; a move before the last one too.
    let (status, body) = call(&s, "post", &format!("{mine}/resume"), &keys.acme, json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("illegal_transition"))
    );
    let before = format!("{mine}/suspend?at={}", urlencode(day(4, 0, 0)));
    let (status, body) = call(&s, "post", &before, &keys.admin, json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("out_of_order"))
    );
    for (action, at, expected) in [
        ("suspend", suspended, "suspended"),
        ("delete", deleted, "deleted"),
    ] {
        let path = format!("{mine}/{action}?at={}", urlencode(at));
        let (status, body) = call(&s, "post", &path, &keys.admin, json!({})).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some(expected)),
            "{body}"
        );
    }
    let (status, seen) = call(&s, "get", &mine, &keys.acme, json!(null)).await;
    assert_eq!(status, 200);
    let history: Vec<(&str, &str)> = seen["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["to"].as_str().unwrap(), c["by"].as_str().unwrap()))
        .collect();
    assert_eq!(
        history,
        [
            ("requested", "platform"),
            ("provisioning", "provider"),
            ("active", "provider"),
            ("suspended", "platform"),
            ("deleted", "platform"),
        ]
    );
    assert_eq!(seen["deleted_at"], json!(deleted));
    assert_eq!(seen["activated_at"], json!(activated));
    // Deleted is final.
    let (status, body) = call(&s, "post", &format!("{mine}/resume"), &keys.acme, json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("illegal_transition"))
    );
    // Every move but the provider's own reports reaches dbco's webhook, in
    // order: the first after its missed call (retried 10 s later), each
    // processed once by its id, signed with the secret dbco was given.
    let outbox = wait_for_deliveries(&s, &id, 4).await;
    let kinds: Vec<&str> = outbox.iter().map(|(_, kind, _)| kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "binding.requested",
            "binding.plan_changed",
            "binding.suspended",
            "binding.deleted"
        ]
    );
    let attempts: Vec<i32> = outbox.iter().map(|(_, _, a)| *a).collect();
    assert_eq!(attempts, [2, 1, 1, 1]);
    {
        let receiver = hooks.lock().unwrap();
        let processed: Vec<uuid::Uuid> = receiver.processed.clone();
        let ids: Vec<uuid::Uuid> = outbox.iter().map(|(id, _, _)| *id).collect();
        assert_eq!(processed, ids, "each event processed once, in order");
        assert_eq!(receiver.requests.len(), 5, "four events and one retry");
        for (id, timestamp, signature, body) in &receiver.requests {
            assert!(binding_outbox::verify(
                &secret,
                id,
                *timestamp,
                body.as_bytes(),
                signature
            ));
        }
    }

    // Usage: 120 h while active, 200 h while suspended (usage still
    // counts), refused before activation, after deletion and for an unknown
    // binding; the cloud's unbound usage in the same batch is kept.
    let events = [
        db_hours("before", "5", day(2, 9, 0), &id),
        db_hours("active", "120", day(3, 12, 0), &id),
        db_hours("suspended", "200", day(12, 0, 0), &id),
        db_hours("after-delete", "7", day(20, 9, 0), &id),
        db_hours("unknown", "9", day(3, 12, 0), "bnd_0000"),
        event("vm", "cloud", "acme", "cloud.vm.hour", "10", day(6, 0, 0)),
    ];
    let (status, body) = post_events(&s.http, &s.collector, &keys.dbco, &events[..5]).await;
    assert_eq!(status, 202, "{body}");
    let codes: Vec<Value> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [
            json!("not_bound"),
            Value::Null,
            Value::Null,
            json!("not_bound"),
            json!("not_bound")
        ]
    );
    let (status, body) = post_events(&s.http, &s.collector, &keys.cloud, &events[5..]).await;
    assert_eq!((status, &body["accepted"]), (202, &json!(1)));

    // Worked out by hand. The month's hours; PS-10 from the hour of
    // activation up to (not including) the hour of the change (that hour
    // goes to the later plan); PS-20 from the change's hour to the end of
    // the suspension's started hour; nothing after.
    let month_hours = (month.end() - month.start()).num_hours();
    let ps10_hours = (hour_floor(changed) - hour_floor(activated)).num_hours();
    let ps20_hours = (hour_ceil(suspended) - hour_floor(changed)).num_hours();
    assert_eq!((ps10_hours, ps20_hours), (76, 82));
    let ps10_fee = cents(dec!(39) * Decimal::from(ps10_hours) / Decimal::from(month_hours));
    let ps20_fee = cents(dec!(72) * Decimal::from(ps20_hours) / Decimal::from(month_hours));
    // PS-20's allowance (the plan the month ended on): 250 of the 320 h.
    let beyond = cents(dec!(70) * dec!(0.2475));
    assert_eq!(beyond, dec!(17.33));
    let vm = cents(dec!(10) * dec!(0.0416));
    let total = ps10_fee + ps20_fee + beyond + vm;

    let label = month.label();
    let mut expected = std::collections::BTreeMap::new();
    expected.insert(("acme".to_owned(), label.clone()), total);
    let bills = wait_for_totals(
        &s.http,
        &s.invoicing,
        &keys.acme,
        &expected,
        std::time::Duration::from_secs(90),
    )
    .await;
    let bill = &bills[&("acme".to_owned(), label.clone())];
    assert_eq!(bill["total"], json!(total.to_string()), "{bill:#}");
    let dbco = bill["sections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["provider"]["id"] == "dbco")
        .unwrap();
    // One group for the resource, labelled with the plan it ended the
    // month on; each plan fee line names its own plan (its SKU column) and
    // hours.
    let lines: Vec<(String, String, String, String, String, String)> = dbco["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let r = &l["resource"];
            let text = |field: &str| l[field].as_str().unwrap().to_owned();
            (
                format!(
                    "{} · {}",
                    r["name"].as_str().unwrap(),
                    r["plan"].as_str().unwrap()
                ),
                text("kind"),
                text("sku"),
                text("description"),
                text("quantity"),
                text("amount"),
            )
        })
        .collect();
    let line = |kind: &str, sku: &str, description: String, quantity: String, amount: Decimal| {
        let label = "prod-db · PS-20".to_owned();
        (
            label,
            kind.into(),
            sku.into(),
            description,
            quantity,
            format!("{amount:.2}"),
        )
    };
    let plan_line = |plan: &str, hours: i64, fee: Decimal| {
        let description = format!(
            "{} plan — {hours} of {month_hours} hours",
            plan.to_uppercase()
        );
        let sku = format!("dbco.{plan}");
        line("plan_fee", &sku, description, hours.to_string(), fee)
    };
    assert_eq!(
        lines,
        [
            plan_line("ps-10", ps10_hours, ps10_fee),
            plan_line("ps-20", ps20_hours, ps20_fee),
            line(
                "allowance",
                "dbco.db.hour",
                "Managed database — included in PS-20".into(),
                "250".into(),
                dec!(0)
            ),
            line(
                "usage",
                "dbco.db.hour",
                "Managed database".into(),
                "70".into(),
                beyond
            ),
        ],
        "{dbco:#}"
    );
    for l in dbco["lines"].as_array().unwrap() {
        assert_eq!(l["resource"]["binding"], json!(id));
    }

    // The resource's outlook: the month is over, so its cost so far and its
    // forecast are both the month's, rounded once (the plan fees unrounded).
    let exact_fees = dec!(39) * Decimal::from(ps10_hours) / Decimal::from(month_hours)
        + dec!(72) * Decimal::from(ps20_hours) / Decimal::from(month_hours);
    let month_cost = format!("{:.2}", cents(exact_fees + beyond));
    assert_eq!(
        bill["resources"],
        json!([{"binding": id, "provider": "dbco", "name": "prod-db", "plan": "PS-20",
                "status": "deleted", "status_message": null,
                "so_far": month_cost, "forecast": month_cost}])
    );

    // The CSVs name the resource on each of its lines, and the bill page
    // heads its group of lines with it.
    let base = &s.invoicing;
    let bill_csv = get_text(
        &s.http,
        &format!("{base}/accounts/acme/bill.csv?period={label}"),
        &keys.acme,
    )
    .await;
    let rows: Vec<&str> = bill_csv.lines().filter(|r| r.contains(&id)).collect();
    assert_eq!(rows.len(), 4, "{bill_csv}");
    for row in rows {
        // Then before_discount, discount and its funder (none here).
        assert!(row.contains(&format!(",prod-db · PS-20,{id},")), "{row}");
        assert!(row.ends_with(",0.00,"), "{row}");
    }
    let export = get_text(
        &s.http,
        &format!("{base}/v1/exports/invoice-lines.csv?period={label}"),
        &keys.finance,
    )
    .await;
    let rows: Vec<&str> = export.lines().filter(|r| r.contains(&id)).collect();
    assert_eq!(rows.len(), 4, "{export}");
    for row in rows {
        assert!(row.ends_with(&format!(",{id},prod-db · PS-20")), "{row}");
    }
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let cookie = set_cookie(&sign_in(&browser, base, &keys.acme).await, "tally_bill").unwrap();
    let page = browser
        .get(format!("{base}/accounts/acme/bill?period={label}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let heading = r#"<tr class="resource" data-testid="resource"><th scope="rowgroup" colspan="5">prod-db · PS-20</th></tr>"#;
    assert_eq!(page.matches(heading).count(), 1, "{page}");
    let outlook =
        format!(r#"<td class="num">{month_cost} USD</td><td class="num">{month_cost} USD</td>"#);
    assert_eq!(page.matches(&outlook).count(), 1, "{page}");
    s.running.stop().await.unwrap();
}

/// What dbco's webhook saw: every request (id, timestamp, signature,
/// body) and the ids it processed (deduped by id). Its first answer is a
/// 503: the call is missed.
#[derive(Default)]
struct Receiver {
    requests: Vec<(uuid::Uuid, i64, String, String)>,
    processed: Vec<uuid::Uuid>,
}

async fn webhook(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<Receiver>>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let id: uuid::Uuid = header("webhook-id").parse().unwrap();
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    let mut state = state.lock().unwrap();
    state
        .requests
        .push((id, timestamp, header("webhook-signature"), body));
    if state.requests.len() == 1 {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
    }
    if !state.processed.contains(&id) {
        state.processed.push(id);
    }
    axum::http::StatusCode::OK
}

/// The binding's outbox (event id, type, attempts) once `n` of its events
/// are delivered (the worker retries a missed call after 10 s).
async fn wait_for_deliveries(
    s: &Seeded,
    binding: &str,
    n: usize,
) -> Vec<(uuid::Uuid, String, i32)> {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let rows: Vec<(uuid::Uuid, String, i32)> = sqlx::query_as(
            "SELECT event_id, body->>'type', attempts FROM binding_outbox
             WHERE binding_id = $1 AND delivered_at IS NOT NULL AND attempts > 0 ORDER BY seq",
        )
        .bind(binding)
        .fetch_all(&s.h.pool)
        .await
        .unwrap();
        if rows.len() >= n || tokio::time::Instant::now() > until {
            return rows;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A time as a query parameter.
fn urlencode(t: DateTime<Utc>) -> String {
    t.to_rfc3339().replace('+', "%2B").replace(':', "%3A")
}
