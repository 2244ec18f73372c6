//! Provider to provider (issue 17), a two-level chain: consumers `acme`
//! and `initech` buy `compco`'s app hours; `compco` composes `upco`'s
//! managed database, bound with its own billing account (`compco-billing`),
//! and `upco`'s usage bills that account on behalf of each consumer, by the
//! opaque reference the platform minted for `compco` and that consumer,
//! at upco's wholesale price and provider-to-provider fee. Checked: every
//! invoice line and total, the platform fees, compco's margin report (JSON
//! and CSV) and upco's, the refusals of foreign, unknown and malformed
//! references, and who sees what. Every amount is computed here by hand.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use tally::up::Service;

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

async fn created(s: &Seeded, path: &str, body: Value) -> Value {
    let (status, answer) = call(s, "post", path, &s.keys.admin, body).await;
    assert_eq!(status, 201, "{path}: {answer}");
    answer
}

/// `x` rounded to cents, half away from zero.
fn cents(x: Decimal) -> Decimal {
    let mut rounded = x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// The on-behalf-of reference the provider of `key` is given for `consumer`.
async fn reference(s: &Seeded, key: &str, consumer: &str) -> String {
    let (status, body) = call(
        s,
        "post",
        "/v1/provider/references",
        key,
        json!({"account": consumer}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body["reference"].as_str().unwrap().to_owned()
}

/// The codes of a batch answer, in order (null for an accepted event).
fn codes(answer: &Value) -> Vec<Value> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composing_provider_is_billed_for_upstream_usage_on_behalf_of_its_consumers() {
    let s = Seeded::start(&Service::ALL).await;
    let since = s.now - Duration::days(2);

    // The platform: the composing provider, the upstream provider (which
    // requires bindings), their SKUs and list prices, a second consumer,
    // and compco's own billing account.
    let compco = created(
        &s,
        "/v1/admin/providers",
        json!({"id": "compco", "name": "Comp Co",
        "kind": "partner", "platform_fee_pct": "10"}),
    )
    .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let upco = created(
        &s,
        "/v1/admin/providers",
        json!({"id": "upco", "name": "Up Co",
        "kind": "partner", "platform_fee_pct": "20", "p2p_fee_pct": "5", "requires_binding": true}),
    )
    .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for (sku, provider, price) in [
        ("compco.app.hour", "compco", "0.50"),
        ("upco.db.hour", "upco", "0.125"),
    ] {
        created(
            &s,
            "/v1/admin/skus",
            json!({"id": sku, "provider_id": provider,
            "name": sku, "unit": "hour"}),
        )
        .await;
        created(
            &s,
            "/v1/admin/prices",
            json!({"sku": sku, "currency": "USD",
            "effective_from": since, "unit_price": price}),
        )
        .await;
    }
    // upco's wholesale price book: provider accounts pay 0.10 an hour.
    let wholesale = created(
        &s,
        "/v1/admin/prices",
        json!({"sku": "upco.db.hour", "currency": "USD", "effective_from": since,
               "unit_price": "0.10", "audience": "provider"}),
    )
    .await;
    assert_eq!(wholesale["audience"], "provider");
    let initech_key = created(
        &s,
        "/v1/admin/accounts",
        json!({"id": "initech", "name": "Initech",
        "currency": "USD"}),
    )
    .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let billing = created(
        &s,
        "/v1/admin/accounts",
        json!({"id": "compco-billing",
        "name": "Comp Co (billing)", "currency": "USD", "provider_id": "compco"}),
    )
    .await;
    assert_eq!(billing["provider_id"], "compco");

    // compco's account binds upco's database, like any account: upco's
    // plan (no fee), requested by the platform, reported active by upco.
    let (status, body) = call(
        &s,
        "post",
        "/v1/provider/plans",
        &upco,
        json!({"id": "upco.basic", "resource_type": "database", "name": "Basic"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    created(
        &s,
        "/v1/admin/plan-versions",
        json!({"plan": "upco.basic", "currency": "USD",
        "effective_from": s.now - Duration::hours(3), "base_fee": "0", "allowances": {}}),
    )
    .await;
    let base = s.now - Duration::hours(2);
    let binding = created(
        &s,
        "/v1/accounts/compco-billing/bindings",
        json!({"provider": "upco",
        "resource_type": "database", "name": "shared-db", "plan": "upco.basic", "at": base}),
    )
    .await;
    let resource = binding["id"].as_str().unwrap().to_owned();
    let report = format!("/v1/provider/bindings/{resource}/status");
    for (status, minutes) in [("provisioning", 1), ("active", 2)] {
        let (code, body) = call(
            &s,
            "post",
            &report,
            &upco,
            json!({"status": status, "at": base + Duration::minutes(minutes)}),
        )
        .await;
        assert_eq!(code, 200, "{body}");
    }

    // compco asks for its consumers' references: one each, the same when
    // asked again, and nothing of the consumer in it.
    let mut references = std::collections::BTreeMap::new();
    for consumer in ["acme", "initech"] {
        let minted = reference(&s, &compco, consumer).await;
        assert!(minted.starts_with("obo_") && minted.len() == 36, "{minted}");
        assert!(!minted.contains(consumer));
        assert_eq!(reference(&s, &compco, consumer).await, minted);
        references.insert(consumer, minted);
    }
    let (status, body) = call(
        &s,
        "post",
        "/v1/provider/references",
        &compco,
        json!({"account": "nobody"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    // dbco's reference for acme is dbco's, not compco's.
    let (_, foreign) = call(
        &s,
        "post",
        "/v1/provider/references",
        &s.keys.dbco,
        json!({"account": "acme"}),
    )
    .await;
    let foreign = foreign["reference"].as_str().unwrap().to_owned();
    assert_ne!(foreign, references["acme"]);

    // compco bills its consumers its own SKU.
    let t = s.now - Duration::minutes(1);
    let (status, body) = post_events(
        &s.http,
        &s.collector,
        &compco,
        &[
            event("app-1", "compco", "acme", "compco.app.hour", "10", t),
            event("app-2", "compco", "initech", "compco.app.hour", "4", t),
        ],
    )
    .await;
    assert_eq!(
        (status, codes(&body)),
        (202, vec![Value::Null, Value::Null]),
        "{body}"
    );

    // upco bills compco's account through its binding, on behalf of each
    // consumer; a reference that is not compco's, one on an account no
    // provider owns, an unknown and a malformed one are refused, and their
    // valid siblings billed.
    let db = |id: &str, quantity: &str, account: &str, reference: &str| {
        let mut e = event(id, "upco", account, "upco.db.hour", quantity, t);
        e["resource"] = json!(resource);
        e["onbehalfof"] = json!(reference);
        e
    };
    let unknown = format!("obo_{}", "0".repeat(32));
    let (status, body) = post_events(
        &s.http,
        &s.collector,
        &upco,
        &[
            db("db-1", "30", "compco-billing", &references["acme"]),
            db("db-2", "12", "compco-billing", &references["initech"]),
            db("db-3", "1", "compco-billing", &foreign),
            db("db-5", "1", "compco-billing", &unknown),
            db("db-6", "1", "compco-billing", "acme"),
            db("db-7", "6", "compco-billing", &references["acme"]),
        ],
    )
    .await;
    let refused = json!("on_behalf_of_unknown");
    assert_eq!(
        (status, codes(&body)),
        (
            202,
            vec![
                Value::Null,
                Value::Null,
                refused.clone(),
                refused.clone(),
                json!("malformed"),
                Value::Null
            ]
        ),
        "{body}"
    );
    // Usage of an account no provider owns names no consumer: dbco's own
    // reference for acme, on acme's account, is refused too.
    let mut on_acme = event("db-8", "dbco", "acme", "dbco.db.hour", "1", t);
    on_acme["onbehalfof"] = json!(foreign);
    let (status, body) = post_events(&s.http, &s.collector, &s.keys.dbco, &[on_acme]).await;
    assert_eq!((status, codes(&body)), (202, vec![refused]), "{body}");

    // Each invoice, to the cent: the consumers see compco's SKU only;
    // compco's account is billed upco's wholesale price (not its list
    // price, 0.125) for all 48 hours.
    let period = t.format("%Y-%m").to_string();
    let half: Decimal = "0.50".parse().unwrap();
    let db_price: Decimal = "0.10".parse().unwrap();
    let expected = [
        (
            ("acme".to_owned(), period.clone()),
            half * Decimal::from(10),
        ),
        (
            ("initech".to_owned(), period.clone()),
            half * Decimal::from(4),
        ),
        (
            ("compco-billing".to_owned(), period.clone()),
            cents(db_price * Decimal::from(48)),
        ),
    ]
    .into();
    let bills = wait_for_totals(
        &s.http,
        &s.invoicing,
        &s.keys.finance,
        &expected,
        std::time::Duration::from_secs(60),
    )
    .await;
    let total = |account: &str| bills[&(account.to_owned(), period.clone())]["total"].clone();
    assert_eq!(
        (total("acme"), total("initech"), total("compco-billing")),
        (json!("5.00"), json!("2.00"), json!("4.80"))
    );
    let line = |account: &str| bill_lines(&bills[&(account.to_owned(), period.clone())]);
    assert_eq!(
        line("acme"),
        [(
            "compco".into(),
            "compco.app.hour".into(),
            "10".into(),
            "5.00".into(),
            1
        )]
    );
    assert_eq!(
        line("initech"),
        [(
            "compco".into(),
            "compco.app.hour".into(),
            "4".into(),
            "2.00".into(),
            1
        )]
    );
    let upstream: Vec<_> = line("compco-billing")
        .into_iter()
        .filter(|l| l.3 != "0.00")
        .collect();
    assert_eq!(
        upstream,
        [(
            "upco".into(),
            "upco.db.hour".into(),
            "48".into(),
            "4.80".into(),
            3
        )]
    );

    // compco reads its own account's invoice with its provider key.
    let (status, mine) = call(
        &s,
        "get",
        "/v1/provider/account/invoices",
        &compco,
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{mine}");
    let own: Vec<_> = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["period"]["label"] == period.as_str())
        .collect();
    assert_eq!(
        (own.len(), &own[0]["account_id"], &own[0]["total"]),
        (1, &json!("compco-billing"), &json!("4.80"))
    );

    // The platform's fee on upco's usage billed to compco is upco's
    // provider-to-provider fee (5 %), on compco's consumers compco's (10 %).
    let id = own[0]["id"].as_str().unwrap();
    let (status, invoice) = call(
        &s,
        "get",
        &format!("/v1/provider/account/invoices/{id}"),
        &compco,
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{invoice}");
    let fees = |invoice: &Value, sku: &str| -> (Value, Value, Value) {
        let line = invoice["sections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|section| section["lines"].as_array().unwrap())
            .find(|l| l["sku"] == sku)
            .unwrap()
            .clone();
        (
            line["amount"].clone(),
            line["platform_fee"].clone(),
            line["partner_net"].clone(),
        )
    };
    assert_eq!(
        fees(&invoice, "upco.db.hour"),
        (json!("4.80"), json!("0.24"), json!("4.56"))
    );
    let acme_id = bills[&("acme".to_owned(), period.clone())]["id"]
        .as_str()
        .unwrap();
    let (_, acme_invoice) = call(
        &s,
        "get",
        &format!("/v1/invoices/{acme_id}"),
        &s.keys.finance,
        json!(null),
    )
    .await;
    assert_eq!(
        fees(&acme_invoice, "compco.app.hour"),
        (json!("5.00"), json!("0.50"), json!("4.50"))
    );

    // compco's margin report: each consumer's revenue (net of compco's
    // 10 % fee) beside its part of upco's 4.80, split 36 : 12 by the
    // hours done on its behalf.
    let upstream_total: Decimal = "4.80".parse().unwrap();
    let cost = |hours: i64| cents(upstream_total * Decimal::from(hours) / Decimal::from(48));
    let net = |x: Decimal| cents(x * Decimal::from(9) / Decimal::from(10));
    let (acme_rev, initech_rev) = (
        cents(half * Decimal::from(10)),
        cents(half * Decimal::from(4)),
    );
    let row = |consumer: &str, revenue: Decimal, hours: i64| {
        json!({"period": period, "consumer": consumer, "sku": "compco.app.hour", "currency": "USD",
               "revenue": revenue.to_string(), "revenue_net": net(revenue).to_string(),
               "upstream_cost": cost(hours).to_string(),
               "margin": cents(net(revenue) - cost(hours)).to_string()})
    };
    let margin = format!("/v1/provider/margin?period={period}");
    let (status, report) = call(&s, "get", &margin, &compco, json!(null)).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["data"],
        json!([row("acme", acme_rev, 36), row("initech", initech_rev, 12)])
    );
    assert_eq!(report["data"][1]["margin"], "0.60");
    let csv = get_text(
        &s.http,
        &format!("{}/v1/provider/margin.csv?period={period}", s.invoicing),
        &compco,
    )
    .await;
    assert_eq!(
        csv,
        format!(
            "period,consumer,sku,currency,revenue,revenue_net,upstream_cost,margin\n\
             {period},acme,compco.app.hour,USD,5.00,4.50,3.60,0.90\n\
             {period},initech,compco.app.hour,USD,2.00,1.80,1.20,0.60\n"
        )
    );
    // upco's report has its immediate customer, compco's account (its
    // plan's fee, 0.00, and its usage), and nothing of compco's consumers.
    let (_, theirs) = call(&s, "get", &margin, &upco, json!(null)).await;
    assert_eq!(
        theirs["data"],
        json!([{"period": period, "consumer": "compco-billing", "sku": "upco.basic",
                "currency": "USD", "revenue": "0.00", "revenue_net": "0.00",
                "upstream_cost": "0.00", "margin": "0.00"},
               {"period": period, "consumer": "compco-billing", "sku": "upco.db.hour",
                "currency": "USD", "revenue": "4.80", "revenue_net": "4.56",
                "upstream_cost": "0.00", "margin": "4.56"}])
    );

    // Tenancy: upco sees its customer compco's account and binding, never
    // a consumer's bill nor compco's own invoices; a consumer cannot see
    // upco (its bill above has compco's lines only) nor compco's report.
    let acme_bill = format!("/v1/accounts/acme/bill?period={period}");
    assert_eq!(call(&s, "get", &acme_bill, &upco, json!(null)).await.0, 403);
    let (_, upco_bindings) = call(&s, "get", "/v1/provider/bindings", &upco, json!(null)).await;
    let accounts: Vec<_> = upco_bindings["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["account"].clone())
        .collect();
    assert_eq!(accounts, [json!("compco-billing")], "{upco_bindings}");
    let (_, upco_own) = call(
        &s,
        "get",
        "/v1/provider/account/invoices",
        &upco,
        json!(null),
    )
    .await;
    assert_eq!(upco_own["data"], json!([]));
    let (status, _) = call(
        &s,
        "get",
        &format!("/v1/provider/account/invoices/{id}"),
        &upco,
        json!(null),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        call(&s, "get", &margin, &s.keys.acme, json!(null)).await.0,
        403
    );

    // Rating kept the part done on behalf of each reference.
    let mut parts: Vec<(String, Decimal, i64)> = sqlx::query_as(
        "SELECT on_behalf_of, quantity, event_count FROM usage_on_behalf
         WHERE account_id = 'compco-billing' ORDER BY on_behalf_of",
    )
    .fetch_all(&s.h.pool)
    .await
    .unwrap();
    parts.sort_by_key(|p| p.0.clone());
    let mut want = vec![
        (references["acme"].clone(), Decimal::from(36), 2),
        (references["initech"].clone(), Decimal::from(12), 1),
    ];
    want.sort_by_key(|p| p.0.clone());
    assert_eq!(parts, want);

    // upco takes usage back (issue 20's corrections): db-7 (6 for acme)
    // cancelled, db-2 (12 for initech) amended to 10. Each consumer's part
    // follows: acme 30 in 1 event, initech 10 in 1.
    for (path, body) in [
        ("/v1/events/db-7/cancel", json!({"reason": "metered twice"})),
        (
            "/v1/events/db-2/amend",
            json!({"reason": "re-metered", "quantity": "10"}),
        ),
    ] {
        let (status, body) = send(
            &s.http,
            "post",
            &format!("{}{path}", s.collector),
            &upco,
            body,
        )
        .await;
        assert_eq!(status, 202, "{path}: {body}");
    }
    let mut want = vec![
        (references["acme"].clone(), Decimal::from(30), 1),
        (references["initech"].clone(), Decimal::from(10), 1),
    ];
    want.sort_by_key(|p| p.0.clone());
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let mut parts: Vec<(String, Decimal, i64)> = sqlx::query_as(
            "SELECT on_behalf_of, quantity, event_count FROM usage_on_behalf
             WHERE account_id = 'compco-billing'",
        )
        .fetch_all(&s.h.pool)
        .await
        .unwrap();
        parts.sort_by_key(|p| p.0.clone());
        if parts == want {
            break;
        }
        if std::time::Instant::now() >= until {
            let corrections: Vec<(String, String, Option<String>)> =
                sqlx::query_as("SELECT kind, status, code FROM usage_corrections ORDER BY kind")
                    .fetch_all(&s.h.pool)
                    .await
                    .unwrap();
            panic!("the parts on behalf of each consumer after {corrections:?}: {parts:?}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // The tenancy promises, route by route. upco's every view (its
    // bindings, one binding, its corrections, its margin report, its own
    // account's invoices) names compco's account, never a consumer: no
    // account id, no name.
    let binding_path = format!("/v1/provider/bindings/{resource}");
    let mut upco_views = Vec::new();
    for path in [
        "/v1/provider/bindings",
        binding_path.as_str(),
        "/v1/provider/corrections",
        margin.as_str(),
        "/v1/provider/account/invoices",
    ] {
        let (status, body) = call(&s, "get", path, &upco, json!(null)).await;
        assert_eq!(status, 200, "{path}: {body}");
        upco_views.push((path.to_owned(), body.to_string()));
    }
    upco_views.push((
        "margin.csv".to_owned(),
        get_text(
            &s.http,
            &format!("{}/v1/provider/margin.csv?period={period}", s.invoicing),
            &upco,
        )
        .await,
    ));
    for (path, view) in &upco_views {
        for consumer in ["acme", "Acme Inc", "initech", "Initech"] {
            assert!(!view.contains(consumer), "{path} names {consumer}: {view}");
        }
    }
    assert!(upco_views[0].1.contains("compco-billing"));
    assert!(upco_views[2].1.contains("compco-billing"));
    // Nor does upco read a consumer's bill, in the API, on the page or as
    // CSV.
    for consumer in ["acme", "initech"] {
        for path in [
            format!("/v1/accounts/{consumer}/bill?period={period}"),
            format!("/accounts/{consumer}/bill?period={period}"),
            format!("/accounts/{consumer}/bill.csv?period={period}"),
        ] {
            let status = s
                .http
                .get(format!("{}{path}", s.invoicing))
                .bearer_auth(&upco)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status, 403, "{path}");
        }
    }
    // Each consumer's bill (API, page, CSV) shows compco's SKU and nothing
    // upstream: neither upco nor its SKU nor a reference.
    let consumer_keys = [
        ("acme", s.keys.acme.clone()),
        ("initech", initech_key.clone()),
    ];
    for (consumer, key) in &consumer_keys {
        let (status, bill) = call(
            &s,
            "get",
            &format!("/v1/accounts/{consumer}/bill?period={period}"),
            key,
            json!(null),
        )
        .await;
        assert_eq!(status, 200, "{bill}");
        let mut views = vec![bill.to_string()];
        for path in ["bill", "bill.csv"] {
            views.push(
                get_text(
                    &s.http,
                    &format!("{}/accounts/{consumer}/{path}?period={period}", s.invoicing),
                    key,
                )
                .await,
            );
        }
        for view in &views {
            assert!(view.contains("compco.app.hour"), "{consumer}: {view}");
            for upstream in ["upco", "Up Co", "obo_", "compco-billing"] {
                assert!(
                    !view.contains(upstream),
                    "{consumer}'s bill names {upstream}: {view}"
                );
            }
        }
        // A consumer reads no provider route: not upco's, not compco's.
        for path in [
            "/v1/provider/bindings",
            "/v1/provider/account/invoices",
            margin.as_str(),
        ] {
            let (status, _) = call(&s, "get", path, key, json!(null)).await;
            assert_eq!(status, 403, "{consumer}: {path}");
        }
    }
    // A margin report is the caller's own: it names no other provider, and
    // asking for one is refused.
    let (status, body) = call(
        &s,
        "get",
        &format!("{margin}&provider=compco"),
        &upco,
        json!(null),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );
    s.running.stop().await.unwrap();
}

/// The path and the answer of the provider's (`key`) own account's
/// invoice of the month `label`.
async fn own_invoice(s: &Seeded, key: &str, label: &str) -> (String, Value) {
    let (_, mine) = call(s, "get", "/v1/provider/account/invoices", key, json!(null)).await;
    let id = mine["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["period"]["label"] == label)
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no invoice of {label}: {mine}"));
    let path = format!("/v1/provider/account/invoices/{id}");
    let (status, invoice) = call(s, "get", &path, key, json!(null)).await;
    assert_eq!(status, 200, "{invoice}");
    (path, invoice)
}

/// Waits until `sql` (one row, one text column) answers `want`.
async fn wait_for_text(s: &Seeded, sql: &str, want: &str) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got: Option<String> = sqlx::query_scalar(sql)
            .fetch_optional(&s.h.pool)
            .await
            .unwrap()
            .flatten();
        if got.as_deref() == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < until,
            "{sql}: {got:?}, not {want}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Late upstream usage after the composing provider's period is sealed
/// (issue 17): upco's 8 more hours done for initech in October, and 2 more
/// of compco's app hours for acme, arrive after October was finalized.
/// They land as adjustments on compco's and acme's next invoices; the
/// finalized October invoices are unchanged; compco's margin report for
/// October takes them in (revenue and cost of the month the usage belongs
/// to), and the next month's report has none of them. Nothing of upco
/// appears on acme's bill, in the API, the page or the CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_upstream_usage_adjusts_the_next_invoice_and_the_old_periods_margin() {
    let s = pipeline().await;
    let pool = &s.h.pool;
    let grace = Duration::hours(48);
    let open = tally_domain::Period::month_containing(s.now - grace);
    let month = tally_domain::Period::month_containing(open.start() - Duration::days(1));
    let since = month.start() - Duration::days(1);
    let at = month.start() + Duration::days(4);

    let compco = created(
        &s,
        "/v1/admin/providers",
        json!({"id": "compco", "name": "Comp Co", "kind": "partner", "platform_fee_pct": "10"}),
    )
    .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let upco = created(
        &s,
        "/v1/admin/providers",
        json!({"id": "upco", "name": "Up Co", "kind": "partner",
               "platform_fee_pct": "20", "p2p_fee_pct": "5"}),
    )
    .await["api_key"]
        .as_str()
        .unwrap()
        .to_owned();
    for (sku, provider, price, audience) in [
        ("compco.app.hour", "compco", "0.50", "list"),
        ("upco.db.hour", "upco", "0.125", "list"),
        ("upco.db.hour", "upco", "0.10", "provider"),
    ] {
        if audience == "list" {
            created(
                &s,
                "/v1/admin/skus",
                json!({"id": sku, "provider_id": provider, "name": sku, "unit": "hour"}),
            )
            .await;
        }
        created(
            &s,
            "/v1/admin/prices",
            json!({"sku": sku, "currency": "USD", "effective_from": since,
                   "unit_price": price, "audience": audience}),
        )
        .await;
    }
    created(
        &s,
        "/v1/admin/accounts",
        json!({"id": "initech", "name": "Initech", "currency": "USD"}),
    )
    .await;
    created(
        &s,
        "/v1/admin/accounts",
        json!({"id": "compco-billing", "name": "Comp Co (billing)", "currency": "USD",
               "provider_id": "compco"}),
    )
    .await;
    let mut references = std::collections::BTreeMap::new();
    for consumer in ["acme", "initech"] {
        references.insert(consumer, reference(&s, &compco, consumer).await);
    }
    let on_behalf = |id: &str, quantity: &str, consumer: &str| {
        let mut e = event(id, "upco", "compco-billing", "upco.db.hour", quantity, at);
        e["onbehalfof"] = json!(references[consumer]);
        e
    };

    // October: acme 10 app hours, initech 4; upco's 30 hours for acme and
    // 12 for initech, at wholesale (0.10): 4.20.
    for (key, events) in [
        (
            &compco,
            vec![
                event("app-1", "compco", "acme", "compco.app.hour", "10", at),
                event("app-2", "compco", "initech", "compco.app.hour", "4", at),
            ],
        ),
        (
            &upco,
            vec![
                on_behalf("db-1", "30", "acme"),
                on_behalf("db-2", "12", "initech"),
            ],
        ),
    ] {
        let (status, body) = post_events(&s.http, &s.collector, key, &events).await;
        assert_eq!(
            (status, codes(&body)),
            (202, vec![Value::Null, Value::Null]),
            "{body}"
        );
    }
    let october = |account: &str| {
        format!(
            "SELECT status || ' ' || round(total, 2)::text FROM invoices
             WHERE account_id = '{account}' AND period_start = '{}'",
            month.start().to_rfc3339()
        )
    };
    for (account, total) in [
        ("acme", "5.00"),
        ("initech", "2.00"),
        ("compco-billing", "4.20"),
    ] {
        wait_for_text(&s, &october(account), &format!("draft {total}")).await;
    }
    let producer = tally_platform::kafka::producer(&s.h.config).unwrap();
    let topic = s.h.config.topics().usage_events;
    tally_invoicing::lifecycle::request_seals(pool, &producer, &topic, chrono::Utc::now(), grace)
        .await
        .unwrap();
    for (account, total) in [
        ("acme", "5.00"),
        ("initech", "2.00"),
        ("compco-billing", "4.20"),
    ] {
        wait_for_text(&s, &october(account), &format!("finalized {total}")).await;
    }
    // compco's finalized October invoice, as compco reads it.
    let (sealed_path, sealed) = own_invoice(&s, &compco, &month.label()).await;
    let lines_of = |invoice: &Value| -> Vec<Value> {
        invoice["sections"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|section| section["lines"].as_array().unwrap().clone())
            .collect()
    };
    assert_eq!(
        (&sealed["status"], &sealed["total"], lines_of(&sealed).len()),
        (&json!("finalized"), &json!("4.20"), 1)
    );
    let margin_of = |period: &str| format!("/v1/provider/margin?period={period}");
    let (_, before) = call(&s, "get", &margin_of(&month.label()), &compco, json!(null)).await;
    let row = |consumer: &str, revenue: &str, net: &str, cost: &str, margin: &str| {
        json!({"period": month.label(), "consumer": consumer, "sku": "compco.app.hour",
               "currency": "USD", "revenue": revenue, "revenue_net": net,
               "upstream_cost": cost, "margin": margin})
    };
    // 4.20 split 30 : 12.
    assert_eq!(
        before["data"],
        json!([
            row("acme", "5.00", "4.50", "3.00", "1.50"),
            row("initech", "2.00", "1.80", "1.20", "0.60")
        ])
    );

    // Late: upco's 8 hours for initech and compco's 2 app hours for acme,
    // in October, after it was finalized.
    for (key, event) in [
        (&upco, on_behalf("db-late", "8", "initech")),
        (
            &compco,
            event("app-late", "compco", "acme", "compco.app.hour", "2", at),
        ),
    ] {
        let (status, body) = post_events(&s.http, &s.collector, key, &[event]).await;
        assert_eq!((status, codes(&body)), (202, vec![Value::Null]), "{body}");
    }
    // Each lands on the account's next invoice as an adjustment of
    // October: 8 × 0.10 = 0.80 for compco, 2 × 0.50 = 1.00 for acme.
    let adjustment = |account: &str| {
        format!(
            "SELECT string_agg(l.sku_id || ' ' || trim_scale(l.quantity)::text || ' ' || round(l.amount, 2)::text
                               || ' ' || to_char(l.adjusts_period_start AT TIME ZONE 'UTC', 'YYYY-MM-DD'), '; ')
             FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE i.account_id = '{account}' AND i.period_start = '{}'",
            open.start().to_rfc3339()
        )
    };
    let october_day = month.start().format("%Y-%m-%d");
    wait_for_text(
        &s,
        &adjustment("compco-billing"),
        &format!("upco.db.hour 8 0.80 {october_day}"),
    )
    .await;
    wait_for_text(
        &s,
        &adjustment("acme"),
        &format!("compco.app.hour 2 1.00 {october_day}"),
    )
    .await;

    // compco's October invoice is as it was; its next one carries the
    // adjustment, naming October.
    let (_, again) = call(&s, "get", &sealed_path, &compco, json!(null)).await;
    assert_eq!(again, sealed);
    let (_, next) = own_invoice(&s, &compco, &open.label()).await;
    let lines = lines_of(&next);
    assert_eq!(
        (&next["status"], &next["total"], lines.len()),
        (&json!("draft"), &json!("0.80"), 1),
        "{next}"
    );
    assert_eq!(
        (
            &lines[0]["sku"],
            &lines[0]["quantity"],
            &lines[0]["amount"],
            &lines[0]["adjusts"]["label"]
        ),
        (
            &json!("upco.db.hour"),
            &json!("8"),
            &json!("0.80"),
            &json!(month.label())
        )
    );

    // October's margin takes in the late usage: acme's revenue 6.00 (net
    // 5.40), upco's 5.00 (4.20 + 0.80) split 30 : 20.
    let (status, after) = call(&s, "get", &margin_of(&month.label()), &compco, json!(null)).await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(
        after["data"],
        json!([
            row("acme", "6.00", "5.40", "3.00", "2.40"),
            row("initech", "2.00", "1.80", "2.00", "-0.20")
        ])
    );
    let csv = get_text(
        &s.http,
        &format!(
            "{}/v1/provider/margin.csv?period={}",
            s.invoicing,
            month.label()
        ),
        &compco,
    )
    .await;
    assert_eq!(
        csv,
        format!(
            "period,consumer,sku,currency,revenue,revenue_net,upstream_cost,margin\n\
             {m},acme,compco.app.hour,USD,6.00,5.40,3.00,2.40\n\
             {m},initech,compco.app.hour,USD,2.00,1.80,2.00,-0.20\n",
            m = month.label()
        )
    );
    // The next month's report has none of October's usage.
    let (_, next_report) = call(&s, "get", &margin_of(&open.label()), &compco, json!(null)).await;
    assert_eq!(next_report["data"], json!([]));

    // acme's bill of either month, in the API, on the page and as CSV,
    // shows compco's lines and nothing of upco.
    for period in [month.label(), open.label()] {
        let (status, bill) = call(
            &s,
            "get",
            &format!("/v1/accounts/acme/bill?period={period}"),
            &s.keys.acme,
            json!(null),
        )
        .await;
        assert_eq!(status, 200, "{bill}");
        let views = [
            bill.to_string(),
            get_text(
                &s.http,
                &format!("{}/accounts/acme/bill?period={period}", s.invoicing),
                &s.keys.acme,
            )
            .await,
            get_text(
                &s.http,
                &format!("{}/accounts/acme/bill.csv?period={period}", s.invoicing),
                &s.keys.acme,
            )
            .await,
        ];
        for view in &views {
            assert!(view.contains("compco.app.hour"), "{period}: {view}");
            for upstream in ["upco", "Up Co", "obo_"] {
                assert!(
                    !view.contains(upstream),
                    "{period} names {upstream}: {view}"
                );
            }
        }
    }
    s.running.stop().await.unwrap();
}

/// `tally create-account --provider`: the platform makes a provider's own
/// billing account from the command line; for an unknown provider nothing
/// is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_a_providers_own_account_or_nothing() {
    let h = Harness::new().await;
    tally::admin::create_provider(
        &h.pool,
        "compco",
        "Comp Co",
        tally_domain::ProviderKind::Partner,
    )
    .await
    .unwrap();
    let create = |id: &str, provider: &str| {
        h.tally(&[
            "create-account",
            "--id",
            id,
            "--name",
            "Billing",
            "--currency",
            "EUR",
            "--provider",
            provider,
        ])
        .output()
        .unwrap()
    };
    let out = create("compco-billing", "compco");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = create("nobodys-billing", "nobody");
    assert!(!out.status.success());
    let owners: Vec<(String, Option<String>, String)> =
        sqlx::query_as("SELECT id, owner_provider_id, currency FROM accounts ORDER BY id")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(
        owners,
        [("compco-billing".into(), Some("compco".into()), "EUR".into())]
    );
}
