//! The API answers as its generated OpenAPI document says: every response
//! here has its status documented for its operation, and its body validates
//! against the schema the document gives for that status.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::server::Server;

/// Checks one answer of `method path` (the documented path) against the
/// document; returns how many bodies a schema validated.
fn validate(doc: &Value, method: &str, path: &str, status: StatusCode, body: &Value) -> usize {
    let response = &doc["paths"][path][method]["responses"][status.as_str()];
    assert!(
        response.is_object(),
        "{method} {path}: {status} is not documented ({body})"
    );
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        return 0;
    }
    // The schema with the document's components beside it, so that its
    // `#/components/schemas/…` references resolve; the event schemas are
    // other documents, which no API response refers to.
    let mut root = schema.clone();
    root["components"] = doc["components"].clone();
    let schemas = root["components"]["schemas"].as_object_mut().unwrap();
    schemas.remove("UsageEvent");
    schemas.remove("IngestResponse");
    let validator = jsonschema::validator_for(&root).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {path} {status}: {errors:?} in {body}"
    );
    1
}

#[tokio::test]
async fn responses_validate_against_the_generated_document() {
    let doc = tally_api::openapi::document();
    let s = Server::start().await.with_invoices().await;
    let admin = Some(s.keys.admin.as_str());
    let finance = Some(s.keys.finance.as_str());
    let dbco = Some(s.keys.dbco.as_str());
    let acme = Some(s.keys.acme.as_str());
    let invoice = s.invoice_id("acme").await;
    let mut validated = 0;

    let posts = [
        (
            admin,
            "/v1/admin/providers",
            "/v1/admin/providers",
            json!({"id": "qco", "name": "Q Co", "kind": "partner", "platform_fee_pct": "20"}),
            StatusCode::CREATED,
        ),
        (
            admin,
            "/v1/admin/accounts",
            "/v1/admin/accounts",
            json!({"id": "initech", "name": "Initech", "currency": "JPY", "billing_anchor_day": 15}),
            StatusCode::CREATED,
        ),
        (
            admin,
            "/v1/admin/keys",
            "/v1/admin/keys",
            json!({"role": "finance"}),
            StatusCode::CREATED,
        ),
        (
            admin,
            "/v1/admin/skus",
            "/v1/admin/skus",
            json!({"id": "dbco.gb", "provider_id": "dbco", "name": "GB", "unit": "GB"}),
            StatusCode::CREATED,
        ),
        (
            admin,
            "/v1/admin/prices",
            "/v1/admin/prices",
            json!({"sku": "dbco.gb", "currency": "USD", "unit_price": "0.25",
                   "effective_from": "2026-01-01T00:00:00Z"}),
            StatusCode::CREATED,
        ),
        (
            admin,
            "/v1/admin/prices",
            "/v1/admin/prices",
            json!({"sku": "dbco.nope", "currency": "USD", "unit_price": "0.25"}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            admin,
            "/v1/admin/keys",
            "/v1/admin/keys",
            json!({"role": "root"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            dbco,
            "/v1/provider/skus",
            "/v1/provider/skus",
            json!({"id": "dbco.iops", "name": "IOPS", "unit": "op"}),
            StatusCode::CREATED,
        ),
        (
            dbco,
            "/v1/provider/skus/{sku}/prices",
            "/v1/provider/skus/dbco.iops/prices",
            json!({"currency": "USD", "price_book": {"model": "per_unit", "unit_price": "0.001"}}),
            StatusCode::CREATED,
        ),
        (
            finance,
            "/v1/invoices/{id}/void",
            &format!("/v1/invoices/{invoice}/void"),
            json!({"reason": "test"}),
            StatusCode::CONFLICT,
        ),
        (
            finance,
            "/v1/accounts/{account}/grants",
            "/v1/accounts/acme/grants",
            json!({"name": "Welcome", "kind": "promotional", "amount": "5.00"}),
            StatusCode::CREATED,
        ),
    ];
    for (key, documented, path, body, expected) in posts {
        let (status, body) = s.post(path, key, body).await;
        assert_eq!(status, expected, "POST {path}: {body}");
        validated += validate(&doc, "post", documented, status, &body);
    }

    let gets = [
        (admin, "/v1/admin/providers", "/v1/admin/providers"),
        (admin, "/v1/admin/accounts", "/v1/admin/accounts"),
        (admin, "/v1/admin/skus", "/v1/admin/skus?provider=dbco"),
        (dbco, "/v1/provider/skus", "/v1/provider/skus"),
        (
            dbco,
            "/v1/provider/skus/{sku}/prices",
            "/v1/provider/skus/dbco.iops/prices",
        ),
        (finance, "/v1/invoices", "/v1/invoices?period=2026-11"),
        (
            finance,
            "/v1/invoices/{id}",
            &format!("/v1/invoices/{invoice}"),
        ),
        (
            acme,
            "/v1/accounts/{account}/bill",
            "/v1/accounts/acme/bill?period=2026-11",
        ),
        (
            finance,
            "/v1/invoices/{id}/credit-notes",
            &format!("/v1/invoices/{invoice}/credit-notes"),
        ),
        (
            finance,
            "/v1/credit-notes",
            "/v1/credit-notes?period=2026-11",
        ),
        (finance, "/v1/settlements", "/v1/settlements?period=2026-11"),
        (
            finance,
            "/v1/reconciliation",
            "/v1/reconciliation?period=2026-11",
        ),
        (
            acme,
            "/v1/accounts/{account}/grants",
            "/v1/accounts/acme/grants",
        ),
        (
            acme,
            "/v1/accounts/{account}/credit-ledger",
            "/v1/accounts/acme/credit-ledger",
        ),
        (finance, "/v1/invoices", "/v1/invoices?limit=many"),
        (acme, "/v1/invoices", "/v1/invoices"),
        (None, "/v1/invoices", "/v1/invoices"),
    ];
    for (key, documented, path) in gets {
        let (status, body) = s.get(path, key).await;
        validated += validate(&doc, "get", documented, status, &body);
    }
    // Every answer was checked against a schema.
    assert_eq!(validated, 28);
}
