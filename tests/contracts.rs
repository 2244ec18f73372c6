//! Contracts (issue 18): discounts, negotiated price books and a commitment
//! applied to the bill, the account restated when its contract is signed; a
//! contract with a partner-funded term awaits the partner's agreement and
//! bills nothing until finance signs it; bad input is refused with a stable
//! code and nothing stored.
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

/// Every service, dbco's platform fee at 20%; a moment a minute ago and
/// its month's label.
async fn with_dbco_fee() -> (Seeded, DateTime<Utc>, String) {
    let s = Seeded::start(&Service::ALL).await;
    sqlx::query("UPDATE providers SET platform_fee_pct = 20 WHERE id = 'dbco'")
        .execute(&s.h.pool)
        .await
        .unwrap();
    let t = s.now - Duration::minutes(1);
    let period = t.format("%Y-%m").to_string();
    (s, t, period)
}

/// A contract's term: `t`'s month and the next two.
fn quarter_from(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = Utc
        .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
        .unwrap();
    (start, start + Months::new(3))
}

/// The statement version of acme's draft invoice (0 before there is one).
async fn draft_version(s: &Seeded) -> i64 {
    sqlx::query_scalar(
        "SELECT COALESCE(max(statement_version), 0) FROM invoices
         WHERE account_id = 'acme' AND status = 'draft'",
    )
    .fetch_one(&s.h.pool)
    .await
    .unwrap()
}

/// Signs acme's contract `id`: (status, body).
async fn sign(s: &Seeded, id: i64) -> (u16, Value) {
    let url = format!("{}/v1/accounts/acme/contracts/{id}/sign", s.invoicing);
    send(&s.http, "post", &url, &s.keys.finance, json!(null)).await
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
/// partner-funded one on dbco, and a monthly commitment the month falls
/// short of, trued up. The contract awaits dbco's agreement: signing it
/// before is refused (`partner_not_agreed`) and it bills nothing, even
/// restated; once dbco agrees, finance signs it and the open bill is
/// restated. Every amount is computed here from the catalog's prices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discounts_and_a_commitment_true_up_are_billed_exactly() {
    let (s, t, period) = with_dbco_fee().await;
    let (http, api, keys) = (&s.http, s.invoicing.clone(), &s.keys);
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
    let (start, end) = quarter_from(t);
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
    let contract_id = contract["id"].as_i64().unwrap();
    assert_eq!(
        (&contract["status"], &contract["signed_at"]),
        (&json!("awaiting_partner"), &Value::Null),
        "{contract}"
    );

    // Signing before dbco agrees is refused, and nothing changes.
    let (status, body) = sign(&s, contract_id).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("partner_not_agreed")),
        "{body}"
    );
    let listed = |s: &Seeded| {
        let url = format!("{api}/v1/accounts/acme/contracts");
        let (http, key) = (s.http.clone(), s.keys.finance.clone());
        async move { get(&http, &url, &key).await.1 }
    };
    assert_eq!(listed(&s).await["data"], json!([contract]));

    // dbco agrees (which restates the bill): unsigned, the contract still
    // bills nothing: the lines are at list, with no discount or true-up.
    let version = draft_version(&s).await;
    let (status, body) = send(
        http,
        "post",
        &format!("{api}/v1/provider/contract-terms/{partner_term}/agree"),
        &keys.dbco,
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while draft_version(&s).await == version && tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(draft_version(&s).await > version);
    let bill = bill_when(&s, &period, |_| true).await;
    assert_eq!(
        lines(&bill),
        [
            (
                "cloud".into(),
                "usage".into(),
                cloud_list,
                cloud_list,
                dec!(0),
                "".into(),
                cloud_list,
                dec!(0)
            ),
            (
                "dbco".into(),
                "usage".into(),
                dbco_list,
                dbco_list,
                dec!(0),
                "".into(),
                dbco_fee,
                dbco_list - dbco_fee
            ),
        ],
        "{bill}"
    );
    assert_eq!(bill["total"], "66.35");

    // Finance signs: dbco's 25% (not the platform's 10%) on its line, its
    // net lower by the whole discount; 10% off cloud's; the true-up.
    let (status, signed) = sign(&s, contract_id).await;
    assert_eq!(status, 200, "{signed}");
    assert_eq!(signed["status"], "signed");
    assert!(signed["signed_at"].is_string(), "{signed}");
    assert!(signed["terms"][1]["partner_agreed_at"].is_string());
    let cloud_discount = cents(cloud_list * dec!(0.10));
    let cloud_net = cloud_list - cloud_discount;
    let dbco_discount = cents(dbco_list * dec!(0.25));
    let dbco_net = dbco_list - dbco_discount;
    let true_up = dec!(60.00) - (cloud_net + dbco_net);
    assert_eq!(
        (dbco_discount, dbco_net, true_up),
        (dec!(6.19), dec!(18.56), dec!(4.00))
    );
    let bill = bill_when(&s, &period, |b| lines(b).iter().any(|l| l.5 == "partner")).await;
    assert_eq!(listed(&s).await["data"], json!([signed]));
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

/// A negotiated graduated price book for dbco's database, funded by dbco:
/// the period's quantity is priced with its tiers instead of list; the line
/// shows list, discount (list less negotiated) and net, and dbco's net
/// falls by the discount. A platform-funded 10% on everything does not
/// stack on the negotiated line. It bills once dbco agreed and finance
/// signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_negotiated_graduated_price_book_bills_exactly_once_agreed_and_signed() {
    let (s, t, period) = with_dbco_fee().await;
    let (http, api, keys) = (&s.http, s.invoicing.clone(), &s.keys);
    for (key, e) in [
        (
            &keys.cloud,
            event("c1", "cloud", "acme", "cloud.vm.hour", "1000", t),
        ),
        // Two events: the tiers act on the period's 300, not on each.
        (
            &keys.dbco,
            event("d1", "dbco", "acme", "dbco.db.hour", "120", t),
        ),
        (
            &keys.dbco,
            event("d2", "dbco", "acme", "dbco.db.hour", "180", t),
        ),
    ] {
        let (status, body) = post_events(http, &s.collector, key, &[e]).await;
        assert_eq!(status, 202, "{body}");
    }
    // List: cloud 1000 × 0.0416 = 41.60; dbco 300 × 0.2475 = 74.25, fee
    // 20% = 14.85, net 59.40.
    let cloud_list = cents(dec!(1000) * price("cloud.vm.hour", "USD").unwrap());
    let dbco_list = cents(dec!(300) * price("dbco.db.hour", "USD").unwrap());
    let dbco_fee = cents(dbco_list * dec!(0.20));
    assert_eq!(
        (cloud_list, dbco_list, dbco_fee),
        (dec!(41.60), dec!(74.25), dec!(14.85))
    );
    let listed_total = (cloud_list + dbco_list).to_string();
    let bill = bill_when(&s, &period, |b| b["total"] == listed_total.as_str()).await;
    assert_eq!(bill["total"], listed_total.as_str(), "{bill}");

    let (start, end) = quarter_from(t);
    let book = json!({"model": "graduated", "tiers": [
        {"up_to": "100", "unit_price": "0.20"}, {"unit_price": "0.15"}]});
    let body = json!({
        "starts_at": start, "ends_at": end,
        "terms": [
            {"scope": "all", "percent": "10", "funded_by": "platform",
             "effective_from": start, "effective_to": end},
            {"scope": "skus", "provider": "dbco", "skus": ["dbco.db.hour"], "price_book": book,
             "funded_by": "partner", "effective_from": start, "effective_to": end},
        ],
    });
    let (status, contract) = send(
        http,
        "post",
        &format!("{api}/v1/accounts/acme/contracts"),
        &keys.finance,
        body,
    )
    .await;
    assert_eq!(status, 201, "{contract}");
    assert_eq!(contract["status"], "awaiting_partner");
    let contract_id = contract["id"].as_i64().unwrap();

    // dbco sees the negotiated book it is asked to fund, and agrees.
    let (status, terms) = get(
        http,
        &format!("{api}/v1/provider/contract-terms"),
        &keys.dbco,
    )
    .await;
    assert_eq!(status, 200, "{terms}");
    assert_eq!(terms["data"].as_array().unwrap().len(), 1, "{terms}");
    assert_eq!(terms["data"][0]["contract_id"], contract_id);
    // As any price book is stored: each tier's flat fee written out.
    let mut stored = book.clone();
    for tier in stored["tiers"].as_array_mut().unwrap() {
        tier["flat_fee"] = json!("0");
    }
    assert_eq!(terms["data"][0]["term"]["price_book"], stored);
    let term = terms["data"][0]["term"]["id"].as_i64().unwrap();
    let (status, body) = send(
        http,
        "post",
        &format!("{api}/v1/provider/contract-terms/{term}/agree"),
        &keys.dbco,
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, signed) = sign(&s, contract_id).await;
    assert_eq!(
        (status, &signed["status"]),
        (200, &json!("signed")),
        "{signed}"
    );

    // Negotiated: 100 × 0.20 + 200 × 0.15 = 50.00; discount 74.25 - 50.00 =
    // 24.25, funded by dbco: its net 59.40 - 24.25 = 35.15, the platform's
    // share 14.85 + 24.25 = 39.10. cloud: 10% of 41.60 = 4.16.
    let negotiated = dec!(100) * dec!(0.20) + dec!(200) * dec!(0.15);
    let dbco_discount = dbco_list - negotiated;
    let cloud_discount = cents(cloud_list * dec!(0.10));
    assert_eq!(
        (negotiated, dbco_discount, cloud_discount),
        (dec!(50.00), dec!(24.25), dec!(4.16))
    );
    let bill = bill_when(&s, &period, |b| lines(b).iter().any(|l| l.5 == "partner")).await;
    assert_eq!(
        lines(&bill),
        [
            (
                "cloud".into(),
                "usage".into(),
                cloud_list - cloud_discount,
                cloud_list,
                cloud_discount,
                "platform".into(),
                cloud_list,
                dec!(0)
            ),
            (
                "dbco".into(),
                "usage".into(),
                negotiated,
                dbco_list,
                dbco_discount,
                "partner".into(),
                dbco_fee + dbco_discount,
                dbco_list - dbco_fee - dbco_discount
            ),
        ],
        "{bill}"
    );
    assert_eq!(
        (
            dbco_fee + dbco_discount,
            dbco_list - dbco_fee - dbco_discount
        ),
        (dec!(39.10), dec!(35.15))
    );
    assert_eq!(bill["total"], "87.44");
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
    // Its partner-funded term awaits dbco: not signed, but it still
    // counts against overlapping contracts (below).
    assert_eq!(signed["status"], "awaiting_partner");
    assert_eq!(signed["signed_at"], Value::Null);
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
    let negotiated = |book: Value, sku: &str| {
        let mut c = contract(end, end + Duration::days(30));
        c["terms"][1] = json!({"scope": "skus", "provider": "dbco", "skus": [sku],
            "price_book": book, "funded_by": "platform",
            "effective_from": end, "effective_to": end + Duration::days(30)});
        c
    };
    let per_unit = json!({"model": "per_unit", "unit_price": "0.10"});
    let out_of_order = json!({"model": "graduated", "tiers": [
        {"up_to": "100", "unit_price": "0.2"}, {"up_to": "50", "unit_price": "0.1"},
        {"unit_price": "0.05"}]});
    let negative = json!({"model": "per_unit", "unit_price": "-0.10"});
    let with_fee = json!({"model": "per_unit", "unit_price": "0.10", "recurring_fee": "5"});
    let mut both = negotiated(per_unit.clone(), "dbco.db.hour");
    both["terms"][1]["percent"] = json!("5");
    let mut two_skus = negotiated(per_unit.clone(), "dbco.db.hour");
    two_skus["terms"][1]["skus"] = json!(["dbco.db.hour", "dbco.db.hour"]);
    let mut negotiated_outside = negotiated(per_unit.clone(), "dbco.db.hour");
    negotiated_outside["terms"][1]["effective_from"] = json!(end - Duration::days(1));
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
        (
            negotiated(out_of_order, "dbco.db.hour"),
            400,
            "invalid_price",
        ),
        (negotiated(negative, "dbco.db.hour"), 400, "invalid_price"),
        (negotiated(with_fee, "dbco.db.hour"), 400, "invalid_price"),
        (
            negotiated(per_unit.clone(), "dbco.nope"),
            422,
            "unknown_sku",
        ),
        (both, 422, "invalid_contract"),
        (two_skus, 422, "invalid_contract"),
        (negotiated_outside, 422, "term_outside_contract"),
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

    // The next term, adjacent to the first, is accepted: with a
    // negotiated price book and no partner-funded term, signed at once.
    let (status, body) = send(
        http,
        "post",
        &url,
        &keys.admin,
        negotiated(per_unit.clone(), "dbco.db.hour"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["status"], "signed");
    assert!(body["signed_at"].is_string(), "{body}");
    assert_eq!(body["terms"][1]["price_book"], per_unit);
    assert_eq!(body["terms"][1].get("percent"), None);
    assert_eq!(body["terms"][1]["skus"], json!(["dbco.db.hour"]));
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
