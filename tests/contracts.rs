//! Contracts (issue 18): discounts and a commitment applied to the bill,
//! the account restated when its contract changes; signing is refused with
//! a stable code and nothing stored for bad input.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Datelike, Duration, Months, TimeZone, Utc};
use common::*;
use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use tally::up::Service;

fn cents(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// acme's bill of `period` once `done` holds for it (or after a minute).
async fn bill_when(s: &Seeded, period: &str, done: impl Fn(&Value) -> bool) -> Value {
    let url = format!("{}/v1/accounts/acme/bill?period={period}", s.invoicing);
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (status, bill) = get(&s.http, &url, &s.keys.finance).await;
        if (status == 200 && done(&bill)) || tokio::time::Instant::now() > until {
            return bill;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// A bill line as (provider, kind, amount, list, discount, funded by,
/// platform fee, partner net).
type Line = (
    String,
    String,
    Decimal,
    Decimal,
    Decimal,
    String,
    Decimal,
    Decimal,
);

/// The bill's lines, in order.
fn lines(bill: &Value) -> Vec<Line> {
    let d = |v: &Value| v.as_str().unwrap().parse::<Decimal>().unwrap();
    bill["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| {
            s["lines"].as_array().unwrap().iter().map(move |l| {
                (
                    s["provider"]["id"].as_str().unwrap().to_owned(),
                    l["kind"].as_str().unwrap().to_owned(),
                    d(&l["amount"]),
                    d(&l["list_amount"]),
                    d(&l["discount"]),
                    l["discount_funded_by"].as_str().unwrap_or("").to_owned(),
                    d(&l["platform_fee"]),
                    d(&l["partner_net"]),
                )
            })
        })
        .collect()
}

/// A month under a contract: a platform-funded discount on everything, a
/// partner-funded one on dbco (applied only once dbco agrees; until then
/// the platform's covers dbco too), and a monthly commitment the month
/// falls short of, trued up. Each change of the contract restates the
/// open bill. Every amount is computed here from the catalog's prices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discounts_and_a_commitment_true_up_are_billed_exactly() {
    let s = Seeded::start(&Service::ALL).await;
    let (http, api, keys) = (&s.http, s.invoicing.clone(), &s.keys);
    sqlx::query("UPDATE providers SET platform_fee_pct = 20 WHERE id = 'dbco'")
        .execute(&s.h.pool)
        .await
        .unwrap();
    let t = s.now - Duration::minutes(1);
    let period = t.format("%Y-%m").to_string();
    let (status, body) = post_events(
        http,
        &s.collector,
        &keys.cloud,
        &[event("c1", "cloud", "acme", "cloud.vm.hour", "1000", t)],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post_events(
        http,
        &s.collector,
        &keys.dbco,
        &[event("d1", "dbco", "acme", "dbco.db.hour", "100", t)],
    )
    .await;
    assert_eq!(status, 202, "{body}");

    // List: cloud 1000 × 0.0416, dbco 100 × 0.2475 (fee 20%, no markup).
    let cloud_list = cents(dec!(1000) * price("cloud.vm.hour", "USD").unwrap());
    let dbco_list = cents(dec!(100) * price("dbco.db.hour", "USD").unwrap());
    let dbco_fee = cents(dbco_list * dec!(0.20));
    assert_eq!(
        (cloud_list, dbco_list, dbco_fee),
        (dec!(41.60), dec!(24.75), dec!(4.95))
    );
    let total = |b: &Value| b["total"].as_str().map(str::to_owned);
    let before = (cloud_list + dbco_list).to_string();
    let bill = bill_when(&s, &period, |b| {
        total(b).as_deref() == Some(before.as_str())
    })
    .await;
    assert_eq!(total(&bill), Some(before), "{bill}");

    // The contract: this month and the next two.
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .unwrap();
    let end = start + Months::new(3);
    let signed = json!({
        "starts_at": start, "ends_at": end,
        "terms": [
            {"scope": "all", "percent": "10", "funded_by": "platform",
             "effective_from": start, "effective_to": end},
            {"scope": "provider", "provider": "dbco", "percent": "25", "funded_by": "partner",
             "effective_from": start, "effective_to": end},
        ],
        "commitments": [{"cadence": "month", "minimum": "60.00", "starts_at": start, "ends_at": end}],
    });
    let (status, contract) = send(
        http,
        "post",
        &format!("{api}/v1/accounts/acme/contracts"),
        &keys.finance,
        signed,
    )
    .await;
    assert_eq!(status, 201, "{contract}");
    let partner_term = contract["terms"][1]["id"].as_i64().unwrap();

    // Until dbco agrees, the platform's 10% covers dbco's line too.
    let cloud_discount = cents(cloud_list * dec!(0.10));
    let cloud_net = cloud_list - cloud_discount;
    let dbco_platform_discount = cents(dbco_list * dec!(0.10));
    let dbco_platform_net = dbco_list - dbco_platform_discount;
    let true_up = dec!(60.00) - (cloud_net + dbco_platform_net);
    assert_eq!(
        (cloud_net, dbco_platform_net, true_up),
        (dec!(37.44), dec!(22.27), dec!(0.29))
    );
    let bill = bill_when(&s, &period, |b| {
        b["sections"].as_array().is_some_and(|s| s.len() == 3)
    })
    .await;
    assert_eq!(
        lines(&bill),
        [
            (
                "cloud".into(),
                "usage".into(),
                cloud_net,
                cloud_list,
                cloud_discount,
                "platform".into(),
                cloud_list,
                dec!(0)
            ),
            (
                "dbco".into(),
                "usage".into(),
                dbco_platform_net,
                dbco_list,
                dbco_platform_discount,
                "platform".into(),
                dbco_fee,
                dbco_list - dbco_fee
            ),
            (
                "contract".into(),
                "commitment_true_up".into(),
                true_up,
                true_up,
                dec!(0),
                "".into(),
                true_up,
                dec!(0)
            ),
        ],
        "{bill}"
    );
    assert_eq!(bill["total"], "60.00");

    // dbco agrees: its 25% replaces the platform's 10% on its line, and its
    // net falls by the whole discount.
    let (status, body) = send(
        http,
        "post",
        &format!("{api}/v1/provider/contract-terms/{partner_term}/agree"),
        &keys.dbco,
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let dbco_discount = cents(dbco_list * dec!(0.25));
    let dbco_net = dbco_list - dbco_discount;
    let true_up = dec!(60.00) - (cloud_net + dbco_net);
    assert_eq!(
        (dbco_discount, dbco_net, true_up),
        (dec!(6.19), dec!(18.56), dec!(4.00))
    );
    let bill = bill_when(&s, &period, |b| lines(b).iter().any(|l| l.5 == "partner")).await;
    assert_eq!(
        lines(&bill),
        [
            (
                "cloud".into(),
                "usage".into(),
                cloud_net,
                cloud_list,
                cloud_discount,
                "platform".into(),
                cloud_list,
                dec!(0)
            ),
            (
                "dbco".into(),
                "usage".into(),
                dbco_net,
                dbco_list,
                dbco_discount,
                "partner".into(),
                dbco_fee + dbco_discount,
                dbco_list - dbco_fee - dbco_discount
            ),
            (
                "contract".into(),
                "commitment_true_up".into(),
                true_up,
                true_up,
                dec!(0),
                "".into(),
                true_up,
                dec!(0)
            ),
        ],
        "{bill}"
    );
    assert_eq!(bill["subtotal"], "60.00");
    assert_eq!(bill["total"], "60.00");
    // Finance's line export shows the same split, discount and funder.
    let export = get_text(
        http,
        &format!("{api}/v1/exports/invoice-lines.csv?period={period}"),
        &keys.finance,
    )
    .await;
    let columns = |row: &str| -> Vec<String> {
        let cells: Vec<&str> = row.split(',').collect();
        // kind, provider, amount, list, markup, fee, net, discount, funder
        [6, 7, 13, 14, 15, 16, 17, 18, 19]
            .iter()
            .map(|i| cells[*i].to_owned())
            .collect()
    };
    let rows: Vec<Vec<String>> = export.lines().skip(1).map(columns).collect();
    assert_eq!(
        columns(export.lines().next().unwrap()),
        [
            "kind",
            "provider_id",
            "amount",
            "list_amount",
            "markup",
            "platform_fee",
            "partner_net",
            "discount",
            "discount_funded_by"
        ]
    );
    let row = |cells: [&str; 9]| cells.map(str::to_owned).to_vec();
    assert_eq!(
        rows,
        [
            row(
                [
                    "usage", "cloud", "37.44", "41.60", "-4.16", "41.60", "0.00", "4.16",
                    "platform"
                ]
            ),
            row(["usage", "dbco", "18.56", "24.75", "-6.19", "11.14", "13.61", "6.19", "partner"]),
            row([
                "commitment_true_up",
                "contract",
                "4.00",
                "4.00",
                "0.00",
                "4.00",
                "0.00",
                "0.00",
                ""
            ]),
        ],
        "{export}"
    );
    s.running.stop().await.unwrap();
}

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

/// The platform's notice period refuses a partner's price rise given too
/// little notice (nothing stored); one given enough notice is what an
/// unprotected account pays from its date, while an account whose
/// contract protects its prices keeps the version in force at signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_price_rise_needs_notice_and_protected_accounts_do_not_pay_it() {
    let notice = std::time::Duration::from_secs(120);
    let s = Seeded::start_with(&Service::ALL, 60, |c| c.price_notice = notice).await;
    let (http, api, keys) = (&s.http, s.invoicing.clone(), &s.keys);
    tally::admin::create_account(&s.h.pool, "initech", "Initech", "USD")
        .await
        .unwrap();
    let start = Utc
        .with_ymd_and_hms(s.now.year(), s.now.month(), 1, 0, 0, 0)
        .unwrap();
    let protected =
        json!({"starts_at": start, "ends_at": start + Months::new(3), "price_protection": true});
    let (status, body) = send(
        http,
        "post",
        &format!("{api}/v1/accounts/acme/contracts"),
        &keys.finance,
        protected,
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let prices = format!("{api}/v1/provider/skus/dbco.db.hour/prices");
    let versions = || async {
        let (_, body) = get(http, &prices, &keys.dbco).await;
        body["data"].as_array().unwrap().len()
    };
    let before = versions().await;
    let rise = |from: DateTime<Utc>| {
        json!({"currency": "USD", "effective_from": from,
               "price_book": {"model": "per_unit", "unit_price": "0.30"}})
    };
    let (status, body) = send(
        http,
        "post",
        &prices,
        &keys.dbco,
        rise(Utc::now() + Duration::seconds(60)),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("price_notice_too_short")),
        "{body}"
    );
    assert_eq!(versions().await, before);
    let effective = Utc::now() + Duration::seconds(130);
    let (status, body) = send(http, "post", &prices, &keys.dbco, rise(effective)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(versions().await, before + 1);

    // Audiences apart (issue 17): a SKU priced only wholesale gets its
    // first list version at once (no account paid a list price); a second
    // wholesale or list version needs the notice.
    let (status, body) = send(
        http,
        "post",
        &format!("{api}/v1/provider/skus"),
        &keys.dbco,
        json!({"id": "dbco.replica.hour", "name": "Read replica", "unit": "hour"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let replica = format!("{api}/v1/provider/skus/dbco.replica.hour/prices");
    let version = |audience: &str| {
        json!({"currency": "USD", "audience": audience,
               "price_book": {"model": "per_unit", "unit_price": "0.05"}})
    };
    for (audience, code) in [
        ("provider", 201),
        ("list", 201),
        ("provider", 422),
        ("list", 422),
    ] {
        let (status, body) = send(http, "post", &replica, &keys.dbco, version(audience)).await;
        assert_eq!(status, code, "{audience}: {body}");
        if code == 422 {
            assert_eq!(body["error"]["code"], "price_notice_too_short");
        }
    }

    // Usage after the rise: initech pays 0.30, acme still 0.2475.
    let t = effective + Duration::seconds(60);
    let (status, body) = post_events(
        http,
        &s.collector,
        &keys.dbco,
        &[
            event("p1", "dbco", "acme", "dbco.db.hour", "100", t),
            event("p2", "dbco", "initech", "dbco.db.hour", "100", t),
        ],
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let old = cents(dec!(100) * price("dbco.db.hour", "USD").unwrap());
    let new = cents(dec!(100) * dec!(0.30));
    assert_eq!((old, new), (dec!(24.75), dec!(30.00)));
    let period = t.format("%Y-%m").to_string();
    let expected = std::collections::BTreeMap::from([
        (("acme".to_owned(), period.clone()), old),
        (("initech".to_owned(), period.clone()), new),
    ]);
    let bills = wait_for_totals(
        http,
        &api,
        &keys.finance,
        &expected,
        std::time::Duration::from_secs(60),
    )
    .await;
    for (key, total) in &expected {
        assert_eq!(
            bills[key]["total"].as_str(),
            Some(total.to_string().as_str()),
            "{key:?}"
        );
    }
    s.running.stop().await.unwrap();
}
