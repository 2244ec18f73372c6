//! Contracts (issue 18): signing is refused with a stable code and nothing
//! stored for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use serde_json::{json, Value};
use tally::up::Service;

fn contract(start: DateTime<Utc>, end: DateTime<Utc>) -> Value {
    json!({
        "starts_at": start, "ends_at": end, "price_protection": true,
        "terms": [
            {"scope": "all", "percent": "5", "funded_by": "platform",
             "effective_from": start, "effective_to": end},
            {"scope": "skus", "provider": "dbco", "skus": ["dbco.db.hour"], "percent": "12.5",
             "funded_by": "partner", "effective_from": start, "effective_to": end},
        ],
        "commitments": [
            {"cadence": "month", "minimum": "500.00", "starts_at": start, "ends_at": end},
        ],
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_contracts_are_refused_with_their_code_and_nothing_is_stored() {
    let s = Seeded::start(&[Service::Api]).await;
    let (http, api, keys) = (&s.http, s.invoicing.clone(), &s.keys);
    let url = format!("{api}/v1/accounts/acme/contracts");
    let start = s.now + Duration::days(10);
    let end = start + Duration::days(90);

    let (status, signed) = send(http, "post", &url, &keys.finance, contract(start, end)).await;
    assert_eq!(status, 201, "{signed}");
    assert_eq!(signed["currency"], "USD");
    assert_eq!(signed["price_protection"], true);
    assert_eq!(signed["terms"].as_array().unwrap().len(), 2);
    assert_eq!(signed["terms"][1]["percent"], "12.5");
    assert_eq!(signed["terms"][1]["partner_agreed_at"], Value::Null);
    assert_eq!(signed["commitments"][0]["minimum"], "500.00");
    assert_eq!(signed["commitments"][0]["cadence"], "month");

    let mut term_outside = contract(end, end + Duration::days(30));
    term_outside["terms"][0]["effective_to"] = json!(end + Duration::days(31));
    let mut commitment_outside = contract(end, end + Duration::days(30));
    commitment_outside["commitments"][0]["starts_at"] = json!(end - Duration::days(1));
    let mut unknown_sku = contract(end, end + Duration::days(30));
    unknown_sku["terms"][1]["skus"] = json!(["dbco.nope"]);
    let mut foreign_sku = contract(end, end + Duration::days(30));
    foreign_sku["terms"][1]["skus"] = json!(["queueco.msg.million"]);
    let mut partner_for_all = contract(end, end + Duration::days(30));
    partner_for_all["terms"][0]["funded_by"] = json!("partner");
    let mut inexact_minimum = contract(end, end + Duration::days(30));
    inexact_minimum["commitments"][0]["minimum"] = json!("500.001");
    let mut other_currency = contract(end, end + Duration::days(30));
    other_currency["currency"] = json!("EUR");
    for (body, status, code) in [
        (
            contract(end - Duration::hours(1), end + Duration::days(30)),
            409,
            "contract_overlaps",
        ),
        (
            contract(start - Duration::days(5), start + Duration::days(1)),
            409,
            "contract_overlaps",
        ),
        (term_outside, 422, "term_outside_contract"),
        (commitment_outside, 422, "commitment_outside_term"),
        (unknown_sku, 422, "unknown_sku"),
        (foreign_sku, 422, "unknown_sku"),
        (partner_for_all, 422, "invalid_contract"),
        (inexact_minimum, 422, "invalid_amount"),
        (other_currency, 422, "currency_mismatch"),
        (contract(end, end), 422, "invalid_contract"),
    ] {
        let (got, answer) = send(http, "post", &url, &keys.finance, body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    // Only the first contract is stored, with its two terms and one commitment.
    let (_, listed) = send(http, "get", &url, &keys.acme, json!(null)).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0], signed);
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM contracts), (SELECT count(*) FROM contract_terms),
                (SELECT count(*) FROM contract_commitments)",
    )
    .fetch_one(&s.h.pool)
    .await
    .unwrap();
    assert_eq!(counts, (1, 2, 1));

    // The next term, adjacent to the first, is accepted.
    let (status, body) = send(
        http,
        "post",
        &url,
        &keys.admin,
        contract(end, end + Duration::days(30)),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = send(
        http,
        "get",
        &format!("{api}/v1/accounts/nobody/contracts"),
        &keys.finance,
        json!(null),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    s.running.stop().await.unwrap();
}
