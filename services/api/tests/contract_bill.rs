//! The contract on the customer's bill (issue 18, item 4): the contract in
//! force, each commitment's progress from stored lines, coming price
//! changes (protected or not) in the bill JSON, on the page and in the CSV;
//! and reconciliation counting discounts as their own category.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use support::server::{code, Server};
use support::*;
use tally_domain::contract::pricing::commitment_provider;
use tally_domain::contract::Funder;
use tally_domain::statement::LineKind;
use tally_domain::{Period, Sku, StatementLine};
use tally_invoicing::apply_statements;
use tally_invoicing::lifecycle::finalize_sealed;

/// A line of `amount` with the split given (`amount = list + markup`).
fn priced(sku: &str, list: Decimal, markup: Decimal, fee: Decimal) -> StatementLine {
    let mut l = line(&dbco(), sku, dec!(1), list + markup);
    l.list_amount = list;
    l.markup = markup;
    l.platform_fee = fee;
    l.partner_net = list - fee;
    l
}

fn true_up_line(commitment: i64, due: Decimal) -> StatementLine {
    let mut l = line(&cloud(), "cloud.vm", dec!(1), due);
    l.kind = LineKind::CommitmentTrueUp;
    l.provider = commitment_provider().unwrap();
    l.sku = Sku::parse("contract.commitment").unwrap();
    l.price_id = commitment;
    l
}

/// dbco.db.hour's USD list prices: 0.20 since January 2026, 0.25 from
/// June 2030 (inside acme's protected term), 0.30 from June 2031 (after
/// it), 0.22 since October 2026 (after acme's signature: still to come for
/// it); an EUR version and a wholesale one that no USD account sees.
async fn catalog(s: &Server) {
    sqlx::query("INSERT INTO skus (id, provider_id, name, unit) VALUES ('dbco.db.hour', 'dbco', 'DB hour', 'hour')")
        .execute(&s.pool)
        .await
        .unwrap();
    for (currency, at, price, audience) in [
        ("USD", "2026-01-01", "0.20", "list"),
        ("USD", "2030-06-01", "0.25", "list"),
        ("USD", "2031-06-01", "0.30", "list"),
        ("EUR", "2030-06-01", "0.22", "list"),
        ("USD", "2030-03-01", "0.15", "provider"),
        ("USD", "2026-10-01", "0.22", "list"),
    ] {
        sqlx::query(
            "INSERT INTO prices (sku_id, currency, effective_from, model, audience)
             VALUES ('dbco.db.hour', $1, $2::date, $3, $4)",
        )
        .bind(currency)
        .bind(at)
        .bind(json!({"model": "per_unit", "unit_price": price}))
        .bind(audience)
        .execute(&s.pool)
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bill_shows_the_contract_commitment_progress_and_coming_price_changes() {
    let s = Server::start().await;
    catalog(&s).await;
    let at = |y, m| Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap();
    let (status, signed) = s
        .post(
            "/v1/accounts/acme/contracts",
            Some(&s.keys.finance),
            json!({
                "starts_at": at(2026, 9), "ends_at": at(2031, 1), "price_protection": true,
                "terms": [{"scope": "provider", "provider": "dbco", "percent": "10",
                           "funded_by": "platform", "effective_from": at(2026, 9), "effective_to": at(2031, 1)}],
                "commitments": [{"cadence": "month", "minimum": "100.00",
                                 "starts_at": at(2026, 9), "ends_at": at(2031, 1)}],
            }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{signed}");
    // Signed on 1 September 2026 (a signature is when it was stored).
    sqlx::query("UPDATE contracts SET signed_at = '2026-09-01T00:00:00Z'")
        .execute(&s.pool)
        .await
        .unwrap();
    let commitment = signed["commitments"][0]["id"].as_i64().unwrap();

    // September: 60.00 spent, the 40.00 true-up billed. October: cloud
    // 85.50 and dbco's 50.00 (list 40.00 + markup 10.00) less the 10%
    // platform-funded 5.00: 130.50. November (draft): 25.25 so far.
    let mut september = statement(
        "acme",
        "2026-09",
        1,
        vec![
            line(&cloud(), "cloud.vm", dec!(240), dec!(0.25)),
            true_up_line(commitment, dec!(40.00)),
        ],
    );
    september.sealed = true;
    let mut dbco_line = priced("dbco.db.hour", dec!(40.00), dec!(5.00), dec!(8.00));
    dbco_line.discount = dec!(5.00);
    dbco_line.discount_funded_by = Some(Funder::Platform);
    let mut october = statement(
        "acme",
        "2026-10",
        1,
        vec![line(&cloud(), "cloud.vm", dec!(342), dec!(0.25)), dbco_line],
    );
    october.sealed = true;
    // November also bills late September usage (20 hours: 5.00) and the
    // September true-up priced again (5.00 less): both count in September,
    // the month they adjust, not in November.
    let september_period =
        Period::month_containing(Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap());
    let mut late = line(&cloud(), "cloud.vm", dec!(20), dec!(0.25));
    late.adjusts = Some(september_period);
    let mut true_up_again = true_up_line(commitment, dec!(-5.00));
    true_up_again.adjusts = Some(september_period);
    let november = statement(
        "acme",
        "2026-11",
        1,
        vec![
            line(&cloud(), "cloud.vm", dec!(101), dec!(0.25)),
            late,
            true_up_again,
        ],
    );
    let umbrella = statement(
        "umbrella",
        "2026-11",
        1,
        vec![line(&dbco(), "dbco.db.hour", dec!(10), dec!(0.20))],
    );
    apply_statements(&s.pool, &[september, october, november, umbrella])
        .await
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    assert_eq!(
        finalize_sealed(&s.pool, "TLY", now, 10)
            .await
            .unwrap()
            .len(),
        2
    );

    let progress = |bill: &Value| -> Vec<[Value; 8]> {
        bill["commitments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                [
                    "standing",
                    "period_start",
                    "minimum",
                    "net_spend",
                    "remaining",
                    "true_up",
                    "true_up_billed",
                    "cadence",
                ]
                .map(|k| p[k].clone())
            })
            .collect()
    };
    let (status, bill) = s
        .get("/v1/accounts/acme/bill?period=2026-11", Some(&s.keys.acme))
        .await;
    assert_eq!(status, StatusCode::OK, "{bill}");
    assert_eq!(bill["contract"]["id"], signed["id"]);
    assert_eq!(bill["contract"]["price_protection"], true);
    assert_eq!(bill["contract"]["terms"][0]["percent"], "10");
    assert_eq!(bill["contract"]["terms"][0]["funded_by"], "platform");
    assert_eq!(
        progress(&bill),
        [
            [
                json!("in_progress"),
                json!("2026-11-01T00:00:00Z"),
                json!("100.00"),
                json!("25.25"),
                json!("74.75"),
                json!("74.75"),
                json!(false),
                json!("month"),
            ],
            [
                json!("finished"),
                json!("2026-10-01T00:00:00Z"),
                json!("100.00"),
                json!("130.50"),
                json!("0.00"),
                json!("0.00"),
                json!(false),
                json!("month"),
            ],
        ],
        "{bill}"
    );
    let (_, october_bill) = s
        .get("/v1/accounts/acme/bill?period=2026-10", Some(&s.keys.acme))
        .await;
    let shown = progress(&october_bill);
    assert_eq!(shown.len(), 2);
    assert_eq!(
        shown[1][..7],
        [
            json!("finished"),
            json!("2026-09-01T00:00:00Z"),
            json!("100.00"),
            json!("65.00"),
            json!("35.00"),
            json!("35.00"),
            json!(true),
        ],
        "{october_bill}"
    );

    let changes = |bill: &Value| -> Vec<[Value; 6]> {
        bill["price_changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                [
                    c["sku"].clone(),
                    c["effective_from"].clone(),
                    c["current"]["model"]["unit_price"].clone(),
                    c["new"]["model"]["unit_price"].clone(),
                    c["protected_until"].clone(),
                    c["applies_from"].clone(),
                ]
            })
            .collect()
    };
    assert_eq!(
        changes(&bill),
        [
            [
                json!("dbco.db.hour"),
                json!("2026-10-01T00:00:00Z"),
                json!("0.20"),
                json!("0.22"),
                json!("2031-01-01T00:00:00Z"),
                json!("2031-01-01T00:00:00Z"),
            ],
            [
                json!("dbco.db.hour"),
                json!("2030-06-01T00:00:00Z"),
                json!("0.20"),
                json!("0.25"),
                json!("2031-01-01T00:00:00Z"),
                json!("2031-01-01T00:00:00Z"),
            ],
            [
                json!("dbco.db.hour"),
                json!("2031-06-01T00:00:00Z"),
                json!("0.20"),
                json!("0.30"),
                Value::Null,
                json!("2031-06-01T00:00:00Z"),
            ],
        ],
        "{bill}"
    );
    assert_eq!(bill["price_changes"][0]["provider"], "dbco");
    // The same on their own, to the account's key, finance and the admin only.
    for key in [&s.keys.acme, &s.keys.finance, &s.keys.admin] {
        let (status, listed) = s.get("/v1/accounts/acme/price-changes", Some(key)).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        assert_eq!(listed["data"], bill["price_changes"]);
    }
    for key in [&s.keys.umbrella, &s.keys.dbco] {
        let (status, body) = s.get("/v1/accounts/acme/price-changes", Some(key)).await;
        assert_eq!((status, code(&body)), (StatusCode::FORBIDDEN, "forbidden"));
    }
    let (status, body) = s
        .get("/v1/accounts/nobody/price-changes", Some(&s.keys.finance))
        .await;
    assert_eq!((status, code(&body)), (StatusCode::NOT_FOUND, "not_found"));
    // umbrella, without a contract, pays 0.22 now and both changes to come
    // from their dates.
    let (_, other) = s
        .get(
            "/v1/accounts/umbrella/bill?period=2026-11",
            Some(&s.keys.umbrella),
        )
        .await;
    assert_eq!(other["contract"], Value::Null);
    assert_eq!(other["commitments"], json!([]));
    assert_eq!(
        other["price_changes"][0]["current"]["model"]["unit_price"],
        "0.22"
    );
    assert_eq!(
        changes(&other)
            .iter()
            .map(|c| (c[1].clone(), c[4].clone(), c[5].clone()))
            .collect::<Vec<_>>(),
        [
            (
                json!("2030-06-01T00:00:00Z"),
                Value::Null,
                json!("2030-06-01T00:00:00Z")
            ),
            (
                json!("2031-06-01T00:00:00Z"),
                Value::Null,
                json!("2031-06-01T00:00:00Z")
            ),
        ]
    );

    // The page: the contract, two commitment periods, three changes, the
    // two protected ones saying until when.
    let page = s
        .text("/accounts/acme/bill?period=2026-11", &s.keys.acme)
        .await;
    assert_eq!(page.matches(r#"data-testid="contract""#).count(), 1);
    assert_eq!(page.matches(r#"data-testid="contract-term""#).count(), 1);
    assert_eq!(page.matches(r#"data-testid="commitment""#).count(), 2);
    assert_eq!(page.matches(r#"data-testid="price-change""#).count(), 3);
    assert_eq!(
        page.matches("Does not apply to you until 1 January 2031")
            .count(),
        2,
        "{page}"
    );
    assert!(page.contains("Applies from 1 June 2031"), "{page}");
    assert!(page.contains("0.25 USD per unit"), "{page}");
    let october_page = s
        .text("/accounts/acme/bill?period=2026-10", &s.keys.acme)
        .await;
    assert!(
        october_page
            .contains(r#"data-testid="line-discount">50.00 USD less 5.00 USD contract discount"#),
        "{october_page}"
    );

    // The CSV: the lines (before discount, discount, funder), the total,
    // then the contract's sections.
    let csv = s
        .text("/accounts/acme/bill.csv?period=2026-10", &s.keys.acme)
        .await;
    let rows: Vec<&str> = csv.lines().collect();
    let id = signed["id"].as_i64().unwrap();
    let term = signed["terms"][0]["id"].as_i64().unwrap();
    assert_eq!(
        rows,
        [
            "account_id,period,invoice_number,status,currency,provider_id,provider_name,sku,description,quantity,unit,unit_price,amount,resource,binding_id,before_discount,discount,discount_funded_by",
            "acme,2026-10,TLY-2026-000002,finalized,USD,cloud,Cloud,cloud.vm,cloud.vm usage,342,hour,0.25,85.50,,,85.50,0.00,",
            "acme,2026-10,TLY-2026-000002,finalized,USD,dbco,DB Co,dbco.db.hour,dbco.db.hour usage,1,hour,45.00,45.00,,,50.00,5.00,platform",
            "acme,2026-10,TLY-2026-000002,finalized,USD,,,,total,,,,130.50,,,,,",
            "",
            "contract_id,starts_at,ends_at,currency,price_protection,term_id,scope,provider_id,skus,percent,funded_by,effective_from,effective_to,price_book",
            &format!("{id},2026-09-01T00:00:00+00:00,2031-01-01T00:00:00+00:00,USD,true,,,,,,,,,"),
            &format!("{id},2026-09-01T00:00:00+00:00,2031-01-01T00:00:00+00:00,USD,true,{term},provider,dbco,,10,platform,2026-09-01T00:00:00+00:00,2031-01-01T00:00:00+00:00,"),
            "",
            "commitment_id,cadence,standing,period_start,period_end,minimum,net_spend,remaining,true_up,true_up_billed",
            &format!("{commitment},month,in_progress,2026-10-01T00:00:00+00:00,2026-11-01T00:00:00+00:00,100.00,130.50,0.00,0.00,false"),
            &format!("{commitment},month,finished,2026-09-01T00:00:00+00:00,2026-10-01T00:00:00+00:00,100.00,65.00,35.00,35.00,true"),
            "",
            "price_change_sku,provider_id,effective_from,current_price_id,current_price_book,new_price_id,new_price_book,protected_until,applies_from",
            r#"dbco.db.hour,dbco,2026-10-01T00:00:00+00:00,1,"{""model"":""per_unit"",""unit_price"":""0.20""}",6,"{""model"":""per_unit"",""unit_price"":""0.22""}",2031-01-01T00:00:00+00:00,2031-01-01T00:00:00+00:00"#,
            r#"dbco.db.hour,dbco,2030-06-01T00:00:00+00:00,1,"{""model"":""per_unit"",""unit_price"":""0.20""}",2,"{""model"":""per_unit"",""unit_price"":""0.25""}",2031-01-01T00:00:00+00:00,2031-01-01T00:00:00+00:00"#,
            r#"dbco.db.hour,dbco,2031-06-01T00:00:00+00:00,1,"{""model"":""per_unit"",""unit_price"":""0.20""}",3,"{""model"":""per_unit"",""unit_price"":""0.30""}",,2031-06-01T00:00:00+00:00"#,
        ],
        "{csv}"
    );

    // Reconciliation of October: list 125.50 (85.50 + 40.00) + markup
    // before discounts 10.00 - discounts 5.00 (platform-funded) = 130.50
    // billed; the identity still exact: platform 98.50 (85.50 + 5.00 +
    // 8.00) + dbco 32.00 (settled at list less its fee).
    let (_, report) = s
        .get("/v1/reconciliation?period=2026-10", Some(&s.keys.finance))
        .await;
    let usd = &report["currencies"][0];
    assert_eq!(
        [
            "invoiced",
            "platform_revenue",
            "partner_settlements",
            "difference",
            "list_value",
            "markups",
            "discounts",
            "platform_funded_discounts",
            "partner_funded_discounts",
            "discount_difference",
        ]
        .map(|k| usd[k].clone()),
        [
            json!("130.50"),
            json!("98.50"),
            json!("32.00"),
            json!("0.00"),
            json!("125.50"),
            json!("10.00"),
            json!("5.00"),
            json!("5.00"),
            json!("0.00"),
            json!("0.00"),
        ],
        "{report}"
    );
    assert_eq!(usd["problems"], json!([]));

    // Were umbrella dbco's own account, it would pay the wholesale 0.15
    // from March 2030 on, and the list changes after it would not be its.
    sqlx::query("UPDATE accounts SET owner_provider_id = 'dbco' WHERE id = 'umbrella'")
        .execute(&s.pool)
        .await
        .unwrap();
    let (_, owned) = s
        .get("/v1/accounts/umbrella/price-changes", Some(&s.keys.finance))
        .await;
    assert_eq!(
        changes(&json!({"price_changes": owned["data"]})),
        [[
            json!("dbco.db.hour"),
            json!("2030-03-01T00:00:00Z"),
            json!("0.22"),
            json!("0.15"),
            Value::Null,
            json!("2030-03-01T00:00:00Z"),
        ]],
        "{owned}"
    );
}
