//! Admin API over real HTTP: admin keys only, catalog errors with their codes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::server::{code, Server};

#[tokio::test]
async fn admin_endpoints_refuse_finance_provider_and_customer_keys() {
    let s = Server::start().await;
    let posts = [
        (
            "/v1/admin/providers",
            json!({"id": "qco", "name": "Q Co", "kind": "partner"}),
        ),
        (
            "/v1/admin/accounts",
            json!({"id": "initech", "name": "Initech", "currency": "USD"}),
        ),
        (
            "/v1/admin/skus",
            json!({"id": "dbco.gb", "provider_id": "dbco", "name": "GB", "unit": "GB"}),
        ),
        (
            "/v1/admin/prices",
            json!({"sku": "dbco.gb", "currency": "USD", "unit_price": "0.25"}),
        ),
        ("/v1/admin/keys", json!({"role": "finance"})),
        (
            "/v1/admin/providers/dbco/settlement-mode",
            json!({"mode": "net"}),
        ),
    ];
    let gets = [
        "/v1/admin/providers",
        "/v1/admin/accounts",
        "/v1/admin/skus",
    ];
    for key in [&s.keys.finance, &s.keys.dbco, &s.keys.acme] {
        for (path, body) in &posts {
            let (status, body) = s.post(path, Some(key), body.clone()).await;
            assert_eq!(
                (status, code(&body)),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{path}"
            );
        }
        for path in gets {
            assert_eq!(
                s.get(path, Some(key)).await.0,
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
    }
    for (path, body) in &posts {
        assert_eq!(
            s.post(path, None, body.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    for path in gets {
        assert_eq!(
            s.get(path, None).await.0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
    }
    let providers: i64 = sqlx::query_scalar("SELECT count(*) FROM providers")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(providers, 1, "nothing was created");
}

#[tokio::test]
async fn an_admin_sets_up_the_catalog_and_the_keys_it_returns_work() {
    let s = Server::start().await;
    let admin = Some(s.keys.admin.as_str());
    let post = |path: &'static str, body: Value| s.post(path, admin, body);

    let (status, body) = post(
        "/v1/admin/providers",
        json!({"id": "qco", "name": "Q Co", "kind": "partner", "requires_binding": true}),
    )
    .await;
    assert_eq!(
        (
            status,
            &body["kind"],
            &body["requires_binding"],
            &body["kafka_ingest"]
        ),
        (
            StatusCode::CREATED,
            &json!("partner"),
            &json!(true),
            &json!(false)
        )
    );
    let settings: (bool, bool) =
        sqlx::query_as("SELECT requires_binding, kafka_ingest FROM providers WHERE id = 'qco'")
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(settings, (true, false));
    assert!(body["api_key"]
        .as_str()
        .unwrap()
        .starts_with("tly_provider_"));

    let (status, body) = post(
        "/v1/admin/accounts",
        json!({"id": "initech", "name": "Initech", "currency": "EUR"}),
    )
    .await;
    assert_eq!(
        (status, &body["currency"]),
        (StatusCode::CREATED, &json!("EUR"))
    );
    let initech = body["api_key"].as_str().unwrap().to_owned();
    let (status, body) = s
        .get("/v1/accounts/initech/bill?period=2026-11", Some(&initech))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));

    let sku = json!({"id": "qco.msg", "provider_id": "qco", "name": "Messages", "unit": "message"});
    assert_eq!(post("/v1/admin/skus", sku).await.0, StatusCode::CREATED);
    let price = json!({"sku": "qco.msg", "currency": "USD", "effective_from": "2026-01-01T00:00:00Z", "unit_price": "0.25"});
    let (status, body) = post("/v1/admin/prices", price.clone()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(body["id"].is_i64());

    let (status, body) = post("/v1/admin/keys", json!({"role": "finance"})).await;
    assert_eq!(
        (status, &body["role"]),
        (StatusCode::CREATED, &json!("finance"))
    );
    let finance = body["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        s.get("/v1/invoices", Some(&finance)).await.0,
        StatusCode::OK
    );

    let (_, body) = s.get("/v1/admin/skus?provider=qco", admin).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    let (_, body) = s.get("/v1/admin/providers", admin).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = s.get("/v1/admin/accounts", admin).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 3);

    // The catalog's errors, each with its code.
    for (path, body, expected) in [
        (
            "/v1/admin/providers",
            json!({"id": "qco", "name": "again", "kind": "partner"}),
            (409, "already_exists"),
        ),
        (
            "/v1/admin/providers",
            json!({"id": "Not A Slug", "name": "x", "kind": "partner"}),
            (400, "invalid_request"),
        ),
        (
            "/v1/admin/accounts",
            json!({"id": "hooli", "name": "Hooli", "currency": "XXQ"}),
            (400, "unknown_currency"),
        ),
        (
            "/v1/admin/skus",
            json!({"id": "nobody.x", "provider_id": "nobody", "name": "x", "unit": "x"}),
            (422, "unknown_provider"),
        ),
        (
            "/v1/admin/prices",
            json!({"sku": "qco.none", "currency": "USD", "unit_price": "1"}),
            (422, "unknown_sku"),
        ),
        ("/v1/admin/prices", price, (409, "price_version_exists")),
        (
            "/v1/admin/prices",
            json!({"sku": "qco.msg", "currency": "USD", "unit_price": "-1"}),
            (400, "invalid_price"),
        ),
        (
            "/v1/admin/keys",
            json!({"role": "customer"}),
            (400, "invalid_request"),
        ),
    ] {
        let (status, body) = post(path, body).await;
        assert_eq!((status.as_u16(), code(&body)), expected, "{path}");
    }
}

/// Liveness needs no key; metrics (business volumes) are only on the admin
/// address, never on the public API.
#[tokio::test]
async fn health_needs_no_key_and_metrics_are_not_public() {
    let s = Server::start().await;
    for (path, expected) in [
        ("/healthz", StatusCode::OK),
        ("/metrics", StatusCode::NOT_FOUND),
    ] {
        let res = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), expected, "{path}");
    }
}

#[tokio::test]
async fn an_admin_sets_a_providers_settlement_mode() {
    let s = Server::start().await;
    let admin = Some(s.keys.admin.as_str());
    let mode = || async {
        sqlx::query_scalar::<_, String>("SELECT settlement_mode FROM providers WHERE id = 'dbco'")
            .fetch_one(&s.pool)
            .await
            .unwrap()
    };
    assert_eq!(mode().await, "gross", "the default");
    let url = "/v1/admin/providers/dbco/settlement-mode";
    let (status, body) = s.post(url, admin, json!({"mode": "net"})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"id": "dbco", "settlement_mode": "net"})
        )
    );
    assert_eq!(mode().await, "net");
    let (status, body) = s.post(url, admin, json!({"mode": "sideways"})).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );
    assert_eq!(mode().await, "net", "unchanged by a refusal");
    for unknown in ["nobody", "No.Body"] {
        let (status, body) = s
            .post(
                &format!("/v1/admin/providers/{unknown}/settlement-mode"),
                admin,
                json!({"mode": "gross"}),
            )
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{unknown}"
        );
    }
}
