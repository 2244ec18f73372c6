//! What a hostile or careless client sends (issue 14): malformed bodies,
//! queries and paths, NUL bytes, oversized text, decimals that cannot be
//! stored exactly, dates out of range, SKUs in another provider's namespace.
//! Every refusal is JSON with a stable code, and a caller without a key
//! learns nothing but 401.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::server::{code, Server};

const NO_UUID: &str = "00000000-0000-0000-0000-000000000000";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Role {
    Admin,
    Finance,
    Provider,
    Customer,
    /// Staff and customers (credit notes, filtered to a customer's own).
    Reader,
}

/// One request with something wrong in it, who may call the route, and the
/// answer that caller gets.
struct Case {
    method: &'static str,
    path: String,
    /// `None`: no Content-Type header.
    content_type: Option<&'static str>,
    body: Option<&'static str>,
    role: Role,
    expected: (u16, &'static str),
}

fn case(
    method: &'static str,
    path: impl Into<String>,
    content_type: Option<&'static str>,
    body: Option<&'static str>,
    role: Role,
    expected: (u16, &'static str),
) -> Case {
    Case {
        method,
        path: path.into(),
        content_type,
        body,
        role,
        expected,
    }
}

const JSON: Option<&str> = Some("application/json");
const TEXT: Option<&str> = Some("text/plain");

/// Every route of the invoicing API with a bad body, query or path.
fn bad_requests() -> Vec<Case> {
    use Role::*;
    let bad_json = (400, "invalid_json");
    let bad_body = (400, "invalid_request");
    let media = (415, "unsupported_media_type");
    let bad_query = (400, "invalid_query");
    let bad_path = (400, "invalid_path");
    vec![
        // Admin API.
        case(
            "POST",
            "/v1/admin/providers",
            JSON,
            Some("{"),
            Admin,
            bad_json,
        ),
        case(
            "POST",
            "/v1/admin/providers",
            TEXT,
            Some("{}"),
            Admin,
            media,
        ),
        case(
            "POST",
            "/v1/admin/providers",
            None,
            Some("{}"),
            Admin,
            media,
        ),
        case(
            "POST",
            "/v1/admin/accounts",
            JSON,
            Some(r#"{"id": 5}"#),
            Admin,
            bad_body,
        ),
        case("POST", "/v1/admin/skus", JSON, Some("[1,"), Admin, bad_json),
        case(
            "POST",
            "/v1/admin/prices",
            JSON,
            Some(r#"{"sku": "dbco.x"}"#),
            Admin,
            bad_body,
        ),
        case(
            "POST",
            "/v1/admin/keys",
            TEXT,
            Some(r#"{"role": "admin"}"#),
            Admin,
            media,
        ),
        case(
            "GET",
            "/v1/admin/skus?provider=a&provider=b",
            None,
            None,
            Admin,
            bad_query,
        ),
        // Provider API.
        case(
            "POST",
            "/v1/provider/skus",
            JSON,
            Some("not json"),
            Provider,
            bad_json,
        ),
        case(
            "POST",
            "/v1/provider/skus",
            JSON,
            Some(r#"{"id": "dbco.x"}"#),
            Provider,
            bad_body,
        ),
        case(
            "POST",
            "/v1/provider/skus/dbco.x/prices",
            TEXT,
            Some("{}"),
            Provider,
            media,
        ),
        case(
            "POST",
            "/v1/provider/skus/dbco.x/prices",
            JSON,
            Some("{"),
            Provider,
            bad_json,
        ),
        // Finance API: queries and UUID paths.
        case(
            "GET",
            "/v1/invoices?limit=many",
            None,
            None,
            Finance,
            bad_query,
        ),
        case(
            "POST",
            "/v1/invoices/not-a-uuid/void",
            JSON,
            Some(r#"{"reason": "x"}"#),
            Finance,
            bad_path,
        ),
        case(
            "POST",
            format!("/v1/invoices/{NO_UUID}/void"),
            TEXT,
            Some("{}"),
            Finance,
            media,
        ),
        case(
            "GET",
            "/v1/invoices/not-a-uuid/credit-notes",
            None,
            None,
            Reader,
            bad_path,
        ),
        case(
            "POST",
            "/v1/invoices/not-a-uuid/credit-notes",
            JSON,
            Some(r#"{"reason": "x"}"#),
            Finance,
            bad_path,
        ),
        case(
            "POST",
            format!("/v1/invoices/{NO_UUID}/credit-notes"),
            JSON,
            Some(r#"{"reason": "x", "lines": [{"position": 1, "amount": 2}]}"#),
            Finance,
            bad_body,
        ),
        case(
            "GET",
            "/v1/credit-notes?limit=x",
            None,
            None,
            Reader,
            bad_query,
        ),
        case(
            "GET",
            "/v1/credit-notes/not-a-uuid",
            None,
            None,
            Reader,
            bad_path,
        ),
        case("GET", "/v1/invoices/%FF", None, None, Finance, bad_path),
        case("GET", "/v1/settlements", None, None, Finance, bad_query),
        case(
            "GET",
            "/v1/reconciliation?period=2026-11&colour=red",
            None,
            None,
            Finance,
            bad_query,
        ),
        case(
            "GET",
            "/v1/exports/invoices.csv",
            None,
            None,
            Finance,
            bad_query,
        ),
        case(
            "GET",
            "/v1/exports/invoice-lines.csv?period=2026-11&period=2026-12",
            None,
            None,
            Finance,
            bad_query,
        ),
        // Credits.
        case(
            "POST",
            "/v1/accounts/acme/grants",
            JSON,
            Some("{"),
            Finance,
            bad_json,
        ),
        case(
            "POST",
            "/v1/accounts/acme/grants",
            TEXT,
            Some("{}"),
            Finance,
            media,
        ),
        case(
            "POST",
            "/v1/grants/1/void",
            None,
            Some(r#"{"reason": "x"}"#),
            Finance,
            media,
        ),
        case(
            "POST",
            "/v1/grants/1/void",
            JSON,
            Some(r#"{"why": "x"}"#),
            Finance,
            bad_body,
        ),
        // The customer's bill and the links finance sends.
        case(
            "GET",
            "/v1/accounts/acme/bill?period=2026-11&period=2026-12",
            None,
            None,
            Customer,
            bad_query,
        ),
        case(
            "POST",
            "/v1/accounts/acme/bill-links",
            JSON,
            Some("["),
            Finance,
            bad_json,
        ),
        case(
            "POST",
            "/v1/accounts/acme/bill-links",
            TEXT,
            Some("{}"),
            Finance,
            media,
        ),
        case(
            "POST",
            "/v1/accounts/acme/bill-links",
            JSON,
            Some(r#"{"ttl_seconds": "long"}"#),
            Finance,
            bad_body,
        ),
    ]
}

/// Sends one request; answers its status, Content-Type and JSON body.
async fn send(
    s: &Server,
    method: &str,
    path: &str,
    key: Option<&str>,
    content_type: Option<&str>,
    body: Option<&str>,
) -> (u16, String, Value) {
    let url = format!("{}{path}", s.base);
    let mut req = s
        .http
        .request(method.parse().unwrap(), url)
        .body(body.unwrap_or("").to_owned());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    if let Some(key) = key {
        req = req.bearer_auth(key);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, ct, body)
}

fn key(s: &Server, role: Role) -> &str {
    match role {
        Role::Admin => &s.keys.admin,
        Role::Finance | Role::Reader => &s.keys.finance,
        Role::Provider => &s.keys.dbco,
        Role::Customer => &s.keys.acme,
    }
}

/// A key the route refuses: a customer's (another account's, on acme's
/// routes; a provider's where customers read).
fn stranger(s: &Server, role: Role) -> &str {
    match role {
        Role::Customer => &s.keys.umbrella,
        Role::Reader => &s.keys.dbco,
        _ => &s.keys.acme,
    }
}

#[tokio::test]
async fn bad_input_without_a_key_gets_401_json_before_anything_is_read() {
    let s = Server::start().await;
    let cases = bad_requests();
    assert_eq!(cases.len(), 33);
    for c in &cases {
        for key in [None, Some("tly_admin_not-a-key")] {
            let (status, ct, body) = send(&s, c.method, &c.path, key, c.content_type, c.body).await;
            assert_eq!(
                (status, ct.as_str(), code(&body)),
                (401, "application/json", "unauthorized"),
                "{} {} with key {key:?} → {body}",
                c.method,
                c.path
            );
        }
    }
}

#[tokio::test]
async fn bad_input_with_a_key_gets_json_with_a_code_and_a_stranger_gets_403() {
    let s = Server::start().await;
    for c in &bad_requests() {
        let (status, ct, body) = send(
            &s,
            c.method,
            &c.path,
            Some(key(&s, c.role)),
            c.content_type,
            c.body,
        )
        .await;
        assert_eq!(
            (status, ct.as_str(), code(&body)),
            (c.expected.0, "application/json", c.expected.1),
            "{} {} as {:?} → {body}",
            c.method,
            c.path,
            c.role
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{} {}: {body}",
            c.method,
            c.path
        );
        let (status, ct, body) = send(
            &s,
            c.method,
            &c.path,
            Some(stranger(&s, c.role)),
            c.content_type,
            c.body,
        )
        .await;
        assert_eq!(
            (status, ct.as_str(), code(&body)),
            (403, "application/json", "forbidden"),
            "{} {} as a stranger → {body}",
            c.method,
            c.path
        );
    }
    let providers: i64 = sqlx::query_scalar("SELECT count(*) FROM providers")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(providers, 1, "nothing was created");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let s = Server::start().await;
    for (method, path, expected) in [
        ("GET", "/v1/nothing-here", (404, "unknown_route")),
        ("DELETE", "/v1/invoices", (405, "method_not_allowed")),
        ("PUT", "/v1/admin/providers", (405, "method_not_allowed")),
    ] {
        let (status, ct, body) = send(&s, method, path, Some(&s.keys.admin), None, None).await;
        assert_eq!(
            (status, ct.as_str(), code(&body)),
            (expected.0, "application/json", expected.1),
            "{method} {path}"
        );
    }
}

/// A bill page opened with a malformed link answers a page, not text/plain.
#[tokio::test]
async fn a_malformed_bill_link_answers_a_page() {
    let s = Server::start().await;
    for path in [
        "/accounts/acme/bill?expires=soon&sig=00",
        "/accounts/acme/bill.csv?expires=soon&sig=00",
    ] {
        let (status, ct, _) = send(&s, "GET", path, None, None, None).await;
        assert_eq!(
            (status, ct.as_str()),
            (400, "text/html; charset=utf-8"),
            "{path}"
        );
    }
}

async fn count(s: &Server, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

/// Issue 14, item 3: U+0000 in any text field or filter is refused at the
/// edge (PostgreSQL cannot store it), never a 500.
#[tokio::test]
async fn a_nul_byte_anywhere_is_refused_with_invalid_text() {
    let s = Server::start().await;
    let admin = Some(s.keys.admin.as_str());
    let finance = Some(s.keys.finance.as_str());
    let dbco = Some(s.keys.dbco.as_str());
    let (status, _) = s
        .post(
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.gb", "provider_id": "dbco", "name": "GB", "unit": "GB"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let nul = "a\u{0}b";
    let posts = [
        (
            "/v1/admin/providers",
            admin,
            json!({"id": "qco", "name": nul, "kind": "partner"}),
        ),
        (
            "/v1/admin/accounts",
            admin,
            json!({"id": "initech", "name": nul, "currency": "USD"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.a", "provider_id": "dbco", "name": nul, "unit": "GB"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.b", "provider_id": "dbco", "name": "B", "unit": nul}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.c", "provider_id": "dbco", "name": "C", "unit": "u", "aggregation": "unique_count", "dimension": nul}),
        ),
        (
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": "USD", "price_book": {"model": nul, "unit_price": "1"}}),
        ),
        (
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": nul, "unit_price": "1"}),
        ),
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "dbco.d", "name": nul, "unit": "GB"}),
        ),
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "dbco.e", "name": "E", "unit": nul}),
        ),
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "dbco.f", "name": "F", "unit": "u", "aggregation": "unique_count", "dimension": nul}),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": nul, "kind": "promotional", "amount": "5.00"}),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": "Welcome", "kind": "programme", "amount": "5.00", "eligibility": {"scope": "providers", "ids": [nul]}}),
        ),
        ("/v1/grants/1/void", finance, json!({"reason": nul})),
        (
            &format!("/v1/invoices/{NO_UUID}/void") as &str,
            finance,
            json!({"reason": nul}),
        ),
        (
            &format!("/v1/invoices/{NO_UUID}/credit-notes"),
            finance,
            json!({"reason": nul}),
        ),
        (
            "/v1/accounts/acme/bill-links",
            finance,
            json!({"period": nul}),
        ),
        // In a key too, not only in values.
        (
            "/v1/admin/keys",
            admin,
            json!({"role": "finance", "x\u{0}": 1}),
        ),
    ];
    for (path, key, body) in &posts {
        let (status, body2) = s.post(path, *key, body.clone()).await;
        assert_eq!(
            (status.as_u16(), code(&body2)),
            (400, "invalid_text"),
            "POST {path} {body} → {body2}"
        );
    }
    let gets = [
        ("/v1/invoices?account=a%00b", finance),
        ("/v1/invoices?period=2026-11%00", finance),
        ("/v1/credit-notes?account=%00", finance),
        ("/v1/settlements?period=2026-11&provider=%00", finance),
        ("/v1/admin/skus?provider=%00", admin),
        (
            "/v1/accounts/acme/bill?period=%00",
            Some(s.keys.acme.as_str()),
        ),
        ("/v1/invoices/%00", finance),
        ("/v1/grants/%00", finance),
        ("/v1/provider/skus/dbco.gb%00/prices", dbco),
    ];
    for (path, key) in gets {
        let (status, body) = s.get(path, key).await;
        assert_eq!(
            (status.as_u16(), code(&body)),
            (400, "invalid_text"),
            "GET {path} → {body}"
        );
    }
    assert_eq!(count(&s, "providers").await, 1);
    assert_eq!(count(&s, "accounts").await, 2);
    assert_eq!(count(&s, "skus").await, 1);
    assert_eq!(count(&s, "prices").await, 0);
    assert_eq!(count(&s, "credit_grants").await, 0);
}

/// Issue 14, item 8: a decimal with more than 28 decimal places would be
/// rounded by rust_decimal (stored as 0, answered 201); refuse it.
#[tokio::test]
async fn decimals_that_cannot_be_stored_exactly_are_refused() {
    let s = Server::start().await;
    let admin = Some(s.keys.admin.as_str());
    let finance = Some(s.keys.finance.as_str());
    let dbco = Some(s.keys.dbco.as_str());
    let (status, _) = s
        .post(
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.gb", "provider_id": "dbco", "name": "GB", "unit": "GB"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let tiny = "0.00000000000000000000000000001"; // 29 decimals: rounds to 0
    let almost_one = "1.00000000000000000000000000001"; // rounds to 1
    let cases = [
        (
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": "USD", "unit_price": tiny}),
            (400, "invalid_price"),
        ),
        (
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": "USD", "price_book": {"model": "graduated", "tiers": [{"up_to": "10", "unit_price": "1"}, {"unit_price": tiny}]}}),
            (400, "invalid_price"),
        ),
        (
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": "USD", "price_book": {"model": "per_unit", "unit_price": "1", "minimum_charge": almost_one}}),
            (400, "invalid_price"),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.m", "provider_id": "dbco", "name": "M", "unit": "u", "markup_pct": tiny}),
            (400, "invalid_price"),
        ),
        (
            "/v1/admin/providers",
            admin,
            json!({"id": "qco", "name": "Q", "kind": "partner", "platform_fee_pct": almost_one}),
            (400, "invalid_price"),
        ),
        (
            "/v1/provider/skus/dbco.gb/prices",
            dbco,
            json!({"currency": "USD", "price_book": {"model": "per_unit", "unit_price": tiny}}),
            (400, "invalid_price"),
        ),
        (
            "/v1/provider/skus/dbco.gb/prices",
            dbco,
            json!({"currency": "USD", "price_book": {"model": "package", "package_size": almost_one, "package_price": "1"}}),
            (400, "invalid_price"),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": "Welcome", "kind": "promotional", "amount": almost_one}),
            (422, "invalid_amount"),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": "Welcome", "kind": "promotional", "amount": "5.00", "cap_per_period": almost_one}),
            (422, "invalid_amount"),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": "Paid", "kind": "prepaid", "amount": "5.00", "cost_basis": almost_one}),
            (422, "invalid_amount"),
        ),
        (
            &format!("/v1/invoices/{NO_UUID}/credit-notes") as &str,
            finance,
            json!({"reason": "x", "lines": [{"position": 0, "amount": tiny}]}),
            (422, "invalid_amount"),
        ),
    ];
    for (path, key, body, expected) in &cases {
        let (status, answer) = s.post(path, *key, body.clone()).await;
        assert_eq!(
            (status.as_u16(), code(&answer)),
            *expected,
            "POST {path} {body} → {answer}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("more than 28 decimal places"),
            "{answer}"
        );
    }
    // 28 decimals are stored exactly, and read back as sent.
    let exact = "0.0000000000000000000000000001";
    let (status, answer) = s
        .post(
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": "USD", "unit_price": exact}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(answer["model"]["unit_price"], exact);
    assert_eq!(count(&s, "prices").await, 1);
    assert_eq!(count(&s, "providers").await, 1);
    assert_eq!(count(&s, "skus").await, 1);
    assert_eq!(count(&s, "credit_grants").await, 0);
}

/// Issue 14, item 8: free text has a length limit: names 200 characters,
/// units 64, reasons 1,000, any other string 1,000.
#[tokio::test]
async fn free_text_longer_than_its_limit_is_refused_with_text_too_long() {
    let s = Server::start().await;
    let admin = Some(s.keys.admin.as_str());
    let finance = Some(s.keys.finance.as_str());
    let dbco = Some(s.keys.dbco.as_str());
    let name = "n".repeat(201);
    let unit = "u".repeat(65);
    let reason = "r".repeat(1001);
    let posts = [
        (
            "/v1/admin/providers",
            admin,
            json!({"id": "qco", "name": name, "kind": "partner"}),
        ),
        (
            "/v1/admin/accounts",
            admin,
            json!({"id": "initech", "name": name, "currency": "USD"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.a", "provider_id": "dbco", "name": name, "unit": "GB"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.b", "provider_id": "dbco", "name": "B", "unit": unit}),
        ),
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "dbco.c", "name": name, "unit": "GB"}),
        ),
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "dbco.d", "name": "D", "unit": unit}),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": name, "kind": "promotional", "amount": "5.00"}),
        ),
        ("/v1/grants/1/void", finance, json!({"reason": reason})),
        (
            &format!("/v1/invoices/{NO_UUID}/void") as &str,
            finance,
            json!({"reason": reason}),
        ),
        (
            &format!("/v1/invoices/{NO_UUID}/credit-notes"),
            finance,
            json!({"reason": reason}),
        ),
        // Any string at all: a currency, a role.
        (
            "/v1/admin/accounts",
            admin,
            json!({"id": "initech", "name": "I", "currency": "X".repeat(1001)}),
        ),
        ("/v1/admin/keys", admin, json!({"role": "r".repeat(1001)})),
    ];
    for (path, key, body) in &posts {
        let (status, answer) = s.post(path, *key, body.clone()).await;
        assert_eq!(
            (status.as_u16(), code(&answer)),
            (400, "text_too_long"),
            "POST {path} → {answer}"
        );
    }
    let long_query = format!("/v1/invoices?account={}", "a".repeat(1001));
    let (status, answer) = s.get(&long_query, finance).await;
    assert_eq!((status.as_u16(), code(&answer)), (400, "text_too_long"));
    // At the limit is fine (characters, not bytes).
    let (status, answer) = s
        .post(
            "/v1/admin/providers",
            admin,
            json!({"id": "qco", "name": "é".repeat(200), "kind": "partner"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    assert_eq!(count(&s, "providers").await, 2);
    assert_eq!(count(&s, "accounts").await, 2);
    assert_eq!(count(&s, "skus").await, 0);
    assert_eq!(count(&s, "credit_grants").await, 0);
}

/// Issue 14, item 8: dates are between 2000-01-01 and 9999-12-31 (UTC).
#[tokio::test]
async fn dates_outside_the_years_2000_to_9999_are_refused_with_invalid_date() {
    let s = Server::start().await;
    let admin = Some(s.keys.admin.as_str());
    let finance = Some(s.keys.finance.as_str());
    let dbco = Some(s.keys.dbco.as_str());
    let (status, _) = s
        .post(
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.gb", "provider_id": "dbco", "name": "GB", "unit": "GB"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let far = "+10000-01-01T00:00:00Z";
    let early = "1999-12-31T23:00:00Z";
    let posts = [
        (
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": "USD", "unit_price": "1", "effective_from": far}),
        ),
        (
            "/v1/admin/prices",
            admin,
            json!({"sku": "dbco.gb", "currency": "USD", "unit_price": "1", "effective_from": early}),
        ),
        (
            "/v1/provider/skus/dbco.gb/prices",
            dbco,
            json!({"currency": "USD", "effective_from": far, "price_book": {"model": "per_unit", "unit_price": "1"}}),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": "W", "kind": "promotional", "amount": "5.00", "effective_at": early}),
        ),
        (
            "/v1/accounts/acme/grants",
            finance,
            json!({"name": "W", "kind": "promotional", "amount": "5.00", "expires_at": far}),
        ),
    ];
    for (path, key, body) in &posts {
        let (status, answer) = s.post(path, *key, body.clone()).await;
        assert_eq!(
            (status.as_u16(), code(&answer)),
            (400, "invalid_date"),
            "POST {path} {body} → {answer}"
        );
    }
    // The bounds themselves are fine.
    for from in ["2000-01-01T00:00:00Z", "9999-12-31T23:00:00Z"] {
        let (status, answer) = s
            .post(
                "/v1/admin/prices",
                admin,
                json!({"sku": "dbco.gb", "currency": "USD", "unit_price": "1", "effective_from": from}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{from}: {answer}");
    }
    assert_eq!(count(&s, "prices").await, 2);
    assert_eq!(count(&s, "credit_grants").await, 0);
}

/// A provider created before provider ids lost their dots (a database older
/// than the migration that forbids them): `dbco.eu`, with its key.
async fn legacy_dotted_provider(s: &Server) -> String {
    sqlx::query("ALTER TABLE providers DROP CONSTRAINT IF EXISTS providers_id_has_no_dot")
        .execute(&s.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO providers (id, name, kind) VALUES ('dbco.eu', 'DB Co EU', 'partner')")
        .execute(&s.pool)
        .await
        .unwrap();
    sqlx::query(
        "ALTER TABLE providers ADD CONSTRAINT providers_id_has_no_dot CHECK (strpos(id, '.') = 0) NOT VALID",
    )
    .execute(&s.pool)
    .await
    .unwrap();
    let mut conn = s.pool.acquire().await.unwrap();
    let id = tally_domain::ProviderId::parse("dbco.eu").unwrap();
    tally_platform::auth::create_key(&mut conn, &tally_platform::auth::Principal::Provider(id))
        .await
        .unwrap()
        .secret
}

/// Issue 14, item 7: a SKU belongs to the provider whose id is its prefix
/// up to the dot; provider ids have no dots, so `dbco` cannot squat on
/// `dbco.eu`'s names.
#[tokio::test]
async fn a_provider_cannot_create_skus_in_another_providers_namespace() {
    let s = Server::start().await;
    let admin = Some(s.keys.admin.as_str());
    let dbco = Some(s.keys.dbco.as_str());
    let dbco_eu = legacy_dotted_provider(&s).await;

    let refused = [
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "dbco.eu.db", "name": "DB", "unit": "hour"}),
        ),
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "cloud.vm", "name": "VM", "unit": "hour"}),
        ),
        (
            "/v1/provider/skus",
            Some(dbco_eu.as_str()),
            json!({"id": "dbco.db", "name": "DB", "unit": "hour"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.eu.x", "provider_id": "dbco", "name": "X", "unit": "u"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "other.x", "provider_id": "dbco", "name": "X", "unit": "u"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco", "provider_id": "dbco", "name": "X", "unit": "u"}),
        ),
    ];
    for (path, key, body) in &refused {
        let (status, answer) = s.post(path, *key, body.clone()).await;
        assert_eq!(
            (status.as_u16(), code(&answer)),
            (400, "sku_not_in_namespace"),
            "POST {path} {body} → {answer}"
        );
    }
    // Each in its own namespace.
    let created = [
        (
            "/v1/provider/skus",
            dbco,
            json!({"id": "dbco.db.hour", "name": "DB", "unit": "hour"}),
        ),
        (
            "/v1/provider/skus",
            Some(dbco_eu.as_str()),
            json!({"id": "dbco.eu.db", "name": "DB", "unit": "hour"}),
        ),
        (
            "/v1/admin/skus",
            admin,
            json!({"id": "dbco.gb", "provider_id": "dbco", "name": "GB", "unit": "GB"}),
        ),
    ];
    for (path, key, body) in &created {
        let (status, answer) = s.post(path, *key, body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "POST {path} {body} → {answer}");
    }
    let owners: Vec<(String, String)> =
        sqlx::query_as("SELECT id, provider_id FROM skus ORDER BY id")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    let owners: Vec<(&str, &str)> = owners
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        owners,
        [
            ("dbco.db.hour", "dbco"),
            ("dbco.eu.db", "dbco.eu"),
            ("dbco.gb", "dbco")
        ]
    );
    let (status, answer) = s
        .post(
            "/v1/admin/providers",
            admin,
            json!({"id": "acme.eu", "name": "Acme EU", "kind": "partner"}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), code(&answer)),
        (400, "invalid_provider_id"),
        "{answer}"
    );

    assert_eq!(count(&s, "providers").await, 2);
}
