//! The bindings API over real HTTP: a creation retried with its
//! Idempotency-Key makes one binding, the state machine's refusals and the
//! provider's failure report as the customer sees them, and the provider's
//! webhook with its signing secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use support::server::{code, Server};
use tally_domain::{Currency, PlanId, ProviderId, ResourceType};
use tally_platform::plans::{self, Plan};

/// dbco's database plan PS-10 (39.00 USD a period, since ten days ago).
async fn with_plan(s: &Server) {
    let mut conn = s.pool.acquire().await.unwrap();
    let plan = Plan {
        id: PlanId::parse("dbco.ps-10").unwrap(),
        provider: ProviderId::parse("dbco").unwrap(),
        resource_type: ResourceType::parse("database").unwrap(),
        name: "PS-10".into(),
    };
    plans::create_plan(&mut conn, &plan).await.unwrap();
    let usd = Currency::parse("USD").unwrap();
    let since = Utc::now() - Duration::days(10);
    let fee = "39".parse().unwrap();
    plans::add_plan_version(&mut conn, &plan.id, usd, since, fee, &Default::default())
        .await
        .unwrap();
}

async fn create(
    s: &Server,
    account: &str,
    key: &str,
    idempotency: &str,
    body: Value,
) -> (StatusCode, Value) {
    let res = s
        .http
        .post(format!("{}/v1/accounts/{account}/bindings", s.base))
        .bearer_auth(key)
        .header("idempotency-key", idempotency)
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status(), res.json().await.unwrap())
}

fn database(name: &str) -> Value {
    json!({"provider": "dbco", "resource_type": "database", "name": name, "plan": "dbco.ps-10"})
}

#[tokio::test]
async fn a_retried_creation_with_its_idempotency_key_makes_one_binding() {
    let s = Server::start().await;
    with_plan(&s).await;
    let (status, first) = create(&s, "acme", &s.keys.acme, "order-1", database("prod-db")).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, again) = create(&s, "acme", &s.keys.acme, "order-1", database("prod-db")).await;
    assert_eq!((status, &again["id"]), (StatusCode::OK, &first["id"]));
    // The same key with other terms is refused; on another account it is another key.
    let (status, body) = create(&s, "acme", &s.keys.acme, "order-1", database("other-db")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "idempotency_key_reused")
    );
    let (status, theirs) = create(
        &s,
        "umbrella",
        &s.keys.umbrella,
        "order-1",
        database("prod-db"),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_ne!(theirs["id"], first["id"]);
    let (status, body) = create(&s, "acme", &s.keys.acme, &"k".repeat(201), database("x")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    let (_, list) = s
        .get("/v1/accounts/acme/bindings", Some(&s.keys.acme))
        .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let requested: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM binding_outbox WHERE body->>'type' = 'binding.requested'",
    )
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(requested, 2, "one event per binding made");
}

#[tokio::test]
async fn the_customer_sees_a_failed_provisioning_and_illegal_moves_are_refused() {
    let s = Server::start().await;
    with_plan(&s).await;
    let (status, bad) = s
        .post(
            "/v1/accounts/acme/bindings",
            Some(&s.keys.acme),
            json!({
            "provider": "dbco", "resource_type": "bucket", "name": "b", "plan": "dbco.ps-10"}),
        )
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::UNPROCESSABLE_ENTITY, "plan_mismatch")
    );
    let (status, bad) = s
        .post(
            "/v1/accounts/acme/bindings",
            Some(&s.keys.acme),
            json!({
            "provider": "dbco", "resource_type": "database", "name": "b", "plan": "dbco.nope"}),
        )
        .await;
    assert_eq!(
        (status, code(&bad)),
        (StatusCode::UNPROCESSABLE_ENTITY, "unknown_plan")
    );
    let (_, b) = s
        .post(
            "/v1/accounts/acme/bindings",
            Some(&s.keys.acme),
            database("prod-db"),
        )
        .await;
    let id = b["id"].as_str().unwrap();
    let mine = format!("/v1/accounts/acme/bindings/{id}");
    // A requested binding cannot be suspended.
    let (status, body) = s
        .post(&format!("{mine}/suspend"), Some(&s.keys.acme), json!({}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "illegal_transition")
    );
    // The provider cannot report a time ahead of Tally's clock.
    let report = format!("/v1/provider/bindings/{id}/status");
    let ahead = Utc::now() + Duration::hours(1);
    let (status, body) = s
        .post(
            &report,
            Some(&s.keys.dbco),
            json!({"status": "active", "at": ahead}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, "move_in_future")
    );
    let (status, _) = s
        .post(
            &report,
            Some(&s.keys.dbco),
            json!({"status": "failed", "message": "no capacity in eu-west"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, seen) = s.get(&mine, Some(&s.keys.acme)).await;
    assert_eq!(
        (
            &seen["status"],
            &seen["status_message"],
            &seen["activated_at"]
        ),
        (
            &json!("failed"),
            &json!("no capacity in eu-west"),
            &Value::Null
        )
    );
    assert_eq!(seen["history"].as_array().unwrap().len(), 2);
    // A failed binding is never revived nor moved to another plan; it is deleted.
    let (status, body) = s
        .post(&report, Some(&s.keys.dbco), json!({"status": "active"}))
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "illegal_transition")
    );
    let (status, body) = s
        .post(
            &format!("{mine}/plan"),
            Some(&s.keys.acme),
            json!({"plan": "dbco.ps-10"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "illegal_transition")
    );
    let (status, gone) = s
        .post(&format!("{mine}/delete"), Some(&s.keys.acme), json!({}))
        .await;
    assert_eq!(
        (status, &gone["status"]),
        (StatusCode::OK, &json!("deleted"))
    );
}

#[tokio::test]
async fn a_provider_sets_its_webhook_and_rotates_its_secret() {
    let s = Server::start().await;
    let hook = "/v1/provider/webhook";
    let (status, body) = s
        .post(
            hook,
            Some(&s.keys.dbco),
            json!({"url": "ftp://example.test/hooks"}),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_url")
    );
    let url = "https://dbco.example/hooks";
    let (status, first) = s.post(hook, Some(&s.keys.dbco), json!({"url": url})).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (&first["url"], &first["secret_generation"]),
        (&json!(url), &json!(1))
    );
    let secret = first["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 70,
        "{secret}"
    );
    let (_, same) = s.post(hook, Some(&s.keys.dbco), json!({"url": url})).await;
    assert_eq!(
        same["secret"], first["secret"],
        "setting the URL keeps the secret"
    );
    let (_, rotated) = s
        .post(
            hook,
            Some(&s.keys.dbco),
            json!({"url": url, "rotate_secret": true}),
        )
        .await;
    assert_eq!(rotated["secret_generation"], 2);
    assert_ne!(rotated["secret"], first["secret"]);
}
