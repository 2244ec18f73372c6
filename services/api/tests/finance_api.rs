//! Finance and customer-bill APIs over real HTTP: who may read what, the
//! invoice shape, filters and pagination. The statement consumer is left to
//! the end-to-end tests (they need a broker).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use reqwest::StatusCode;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use support::server::{code, Server};
use support::*;
use tally_invoicing::apply_statements;

#[tokio::test]
async fn finance_endpoints_serve_staff_and_refuse_provider_and_customer_keys() {
    let s = Server::start().await.with_invoices().await;
    let id = s.invoice_id("acme").await;
    for path in ["/v1/invoices".to_owned(), format!("/v1/invoices/{id}")] {
        for key in [&s.keys.finance, &s.keys.admin] {
            assert_eq!(s.get(&path, Some(key)).await.0, StatusCode::OK, "{path}");
        }
        for key in [&s.keys.dbco, &s.keys.acme, &s.keys.umbrella] {
            let (status, body) = s.get(&path, Some(key)).await;
            assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
        }
        let (status, body) = s.get(&path, None).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
        let (status, body) = s.get(&path, Some("tly_finance_not-a-key")).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized")
        );
    }
}

#[tokio::test]
async fn an_invoice_reads_as_provider_sections_with_amounts_as_strings() {
    let s = Server::start().await.with_invoices().await;
    let id = s.invoice_id("acme").await;
    let (status, body) = s
        .get(&format!("/v1/invoices/{id}"), Some(&s.keys.finance))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["account_id"], "acme");
    assert_eq!(body["status"], "draft");
    assert_eq!(body["number"], Value::Null);
    assert_eq!(body["statement_version"], 1);
    assert_eq!(body["period"]["label"], "2026-11");
    assert_eq!(body["period"]["start"], "2026-11-01T00:00:00Z");
    assert_eq!(body["total"], "2.90");
    let sections: Vec<_> = body["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["provider"]["id"].clone(), s["subtotal"].clone()))
        .collect();
    assert_eq!(
        sections,
        [
            (json!("cloud"), json!("2.50")),
            (json!("dbco"), json!("0.40"))
        ]
    );
    let line = &body["sections"][0]["lines"][0];
    assert_eq!(
        (&line["quantity"], &line["unit_price"], &line["amount"]),
        (&json!("10"), &json!("0.25"), &json!("2.50"))
    );
}

#[tokio::test]
async fn an_unknown_or_malformed_invoice_id_is_not_found() {
    let s = Server::start().await;
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/v1/invoices/{unknown}"),
        "/v1/invoices/nope".into(),
    ] {
        let (status, body) = s.get(&path, Some(&s.keys.finance)).await;
        assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    }
}

#[tokio::test]
async fn a_customer_reads_its_own_bill_but_not_another_accounts() {
    let s = Server::start().await.with_invoices().await;
    let bill = |account: &str| format!("/v1/accounts/{account}/bill?period=2026-11");

    let (status, body) = s.get(&bill("acme"), Some(&s.keys.acme)).await;
    assert_eq!((status, &body["total"]), (StatusCode::OK, &json!("2.90")));
    assert_eq!(body["account_id"], "acme");
    for key in [&s.keys.finance, &s.keys.admin] {
        assert_eq!(s.get(&bill("acme"), Some(key)).await.0, StatusCode::OK);
    }
    for (account, key) in [
        ("umbrella", &s.keys.acme),
        ("acme", &s.keys.umbrella),
        ("acme", &s.keys.dbco),
    ] {
        let (status, body) = s.get(&bill(account), Some(key)).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, "forbidden"),
            "{account}"
        );
    }
    assert_eq!(s.get(&bill("acme"), None).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bill_needs_a_valid_period_and_is_not_found_before_its_first_statement() {
    let s = Server::start().await.with_invoices().await;
    let key = Some(s.keys.acme.as_str());
    for path in [
        "/v1/accounts/acme/bill",
        "/v1/accounts/acme/bill?period=2026-13",
    ] {
        let (status, body) = s.get(path, key).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, "invalid_period"),
            "{path}"
        );
    }
    let (status, body) = s.get("/v1/accounts/acme/bill?period=2026-10", key).await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
}

#[tokio::test]
async fn pagination_returns_every_invoice_exactly_once() {
    let s = Server::start().await;
    let months: Vec<String> = (1..=12).map(|m| format!("2026-{m:02}")).collect();
    let mut statements = Vec::new();
    for account in ["acme", "umbrella"] {
        for month in &months {
            let l = line(&cloud(), "cloud.vm", dec!(1), dec!(0.25));
            statements.push(statement(account, month, 1, vec![l]));
        }
    }
    apply_statements(&s.pool, &statements).await.unwrap();

    for (filter, expected) in [("", 24), ("&account=acme", 12), ("&period=2026-03", 2)] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let after = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
            let path = format!("/v1/invoices?limit=5{filter}{after}");
            let (status, body) = s.get(&path, Some(&s.keys.finance)).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            pages += 1;
            let data = body["data"].as_array().unwrap();
            assert!(data.len() <= 5);
            seen.extend(data.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
            assert!(pages < 20, "pagination does not end");
        }
        let unique: BTreeSet<_> = seen.iter().collect();
        assert_eq!((seen.len(), unique.len()), (expected, expected), "{filter}");
    }
}

#[tokio::test]
async fn bad_list_filters_are_refused_with_their_codes() {
    let s = Server::start().await;
    for (query, expected) in [
        ("period=November", "invalid_period"),
        ("status=paid", "invalid_request"),
        ("limit=0", "invalid_request"),
        ("limit=501", "invalid_request"),
        ("cursor=not-a-uuid", "invalid_request"),
    ] {
        let (status, body) = s
            .get(&format!("/v1/invoices?{query}"), Some(&s.keys.finance))
            .await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::BAD_REQUEST, expected),
            "{query}"
        );
    }
    let (status, body) = s
        .get("/v1/invoices?status=draft&limit=500", Some(&s.keys.finance))
        .await;
    assert_eq!(
        (status, &body["next_cursor"]),
        (StatusCode::OK, &Value::Null)
    );
}
