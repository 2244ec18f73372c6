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
use tally_domain::Period;

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

/// dbco agrees to fund contract term `term`.
async fn agree(s: &Seeded, term: i64) {
    let (status, body) = send(
        &s.http,
        "post",
        &format!("{}/v1/provider/contract-terms/{term}/agree", s.invoicing),
        &s.keys.dbco,
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{body}");
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
    // Commitments start and end on billing period boundaries (calendar
    // months here).
    let start = Period::month_containing(s.now + Duration::days(40)).start();
    let end = start + Months::new(3);
    let next = end + Months::new(1);

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

    let mut term_outside = contract(end, next);
    term_outside["terms"][0]["effective_to"] = json!(next + Duration::days(1));
    let mut commitment_outside = contract(end, next);
    commitment_outside["commitments"][0]["starts_at"] = json!(end - Duration::days(1));
    let mut unknown_sku = contract(end, next);
    unknown_sku["terms"][1]["skus"] = json!(["dbco.nope"]);
    let mut foreign_sku = contract(end, next);
    foreign_sku["terms"][1]["skus"] = json!(["queueco.msg.million"]);
    let mut partner_for_all = contract(end, next);
    partner_for_all["terms"][0]["funded_by"] = json!("partner");
    let mut inexact_minimum = contract(end, next);
    inexact_minimum["commitments"][0]["minimum"] = json!("500.001");
    let mut off_boundary = contract(end, next);
    off_boundary["commitments"][0]["starts_at"] = json!(end + Duration::days(1));
    let mut other_currency = contract(end, next);
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
            contract(end - Duration::hours(1), next),
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
        (off_boundary, 422, "invalid_contract"),
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

/// An invoice line as stored: (kind, provider, amount, list, discount,
/// funded by, platform fee, partner net, the period it adjusts).
type Stored = (
    String,
    String,
    Decimal,
    Decimal,
    Decimal,
    Option<String>,
    Decimal,
    Decimal,
    Option<DateTime<Utc>>,
);

/// The lines of `account`'s invoice of the period starting at `start`,
/// sorted (their order on the invoice is not what is tested here).
async fn stored_lines(pool: &sqlx::PgPool, account: &str, start: DateTime<Utc>) -> Vec<Stored> {
    let mut rows: Vec<Stored> = sqlx::query_as(
        "SELECT l.kind, l.provider_id, l.amount, l.list_amount, l.discount, l.discount_funded_by,
                l.platform_fee, l.partner_net, l.adjusts_period_start
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         WHERE i.account_id = $1 AND i.period_start = $2",
    )
    .bind(account)
    .bind(start)
    .fetch_all(pool)
    .await
    .unwrap();
    rows.sort();
    rows
}

/// A usage line of `list` (already in cents) with `percent` off funded by
/// `funder` ("" for none), of a provider keeping `fee_pct` (None: the
/// platform's own, which keeps the whole line), worked out here as finance
/// would: the discount and the fee each rounded once; a partner-funded
/// discount comes out of the partner's net.
fn usage(
    provider: &str,
    list: Decimal,
    percent: Decimal,
    funder: &str,
    fee_pct: Option<Decimal>,
) -> Stored {
    let discount = cents(list * percent / dec!(100));
    let (fee, net) = match fee_pct {
        None => (list, dec!(0)),
        Some(pct) => {
            let fee = cents(list * pct / dec!(100));
            match funder {
                "partner" => (fee + discount, list - fee - discount),
                _ => (fee, list - fee),
            }
        }
    };
    (
        "usage".into(),
        provider.into(),
        list - discount,
        list,
        discount,
        (!funder.is_empty()).then(|| funder.to_owned()),
        fee,
        net,
        None,
    )
}

/// A commitment true-up of `due`: the platform's whole.
fn true_up(due: Decimal) -> Stored {
    (
        "commitment_true_up".into(),
        "contract".into(),
        due,
        due,
        dec!(0),
        None,
        due,
        dec!(0),
        None,
    )
}

fn sorted(mut rows: Vec<Stored>) -> Vec<Stored> {
    rows.sort();
    rows
}

/// POSTs `events` with `key` and asserts every one is accepted.
async fn post_all(s: &Seeded, key: &str, events: &[Value]) {
    let (status, body) = post_events(&s.http, &s.collector, key, events).await;
    assert_eq!(
        (status, body["accepted"].as_u64()),
        (202, Some(events.len() as u64)),
        "{body}"
    );
}

/// Waits until `n` invoices of periods starting at `start` have `status`.
async fn invoices_in(pool: &sqlx::PgPool, start: DateTime<Utc>, n: i64, status: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM invoices WHERE period_start = $1 AND status = $2",
        )
        .bind(start)
        .bind(status)
        .fetch_one(pool)
        .await
        .unwrap();
        if done == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{done} of {n} invoices of {start} {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Waits until rating counted `n` events.
async fn counted_events(pool: &sqlx::PgPool, n: i64) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let counted = counted(pool).await;
        if counted == n {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{counted} of {n} counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A quarter of contracts billed end to end, after the fact (the three
/// months before the open one, sealed by the test): acme's contract has a
/// platform-funded 10% on everything, a 25% on DB Co that DB Co funds and
/// agreed to (finance signs once DB Co agreed), a negotiated graduated
/// price for Queue Co's messages funded by the platform, a monthly
/// commitment of 80.00 (short in the first month, exceeded in the second)
/// and a quarterly one of 250.00, and protects its prices; initech's contract has a platform-funded 5% on DB Co and no
/// protection. DB Co raises its price in the second month: initech pays
/// the rise from its date, acme does not. Every line, DB Co's settlements
/// and each month's reconciliation are worked out here from the catalog's
/// prices. Then usage of the first month arrives late: it is billed as an
/// adjustment of that month, and both true-ups it changes (the first
/// month's and the quarter's, billed already) are adjusted by the same
/// amount on the open invoice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_of_contracts_bills_settles_and_reconciles_exactly() {
    // The test seals the quarter itself, once all of it is rated.
    let s = pipeline_with(|c| c.close_every = None).await;
    let (http, api, keys, pool) = (&s.http, s.invoicing.clone(), &s.keys, &s.h.pool);
    let grace = Duration::from_std(s.h.config.grace).unwrap();
    let open = Period::month_containing(s.now - grace);
    let before = |p: Period| Period::month_containing(p.start() - Duration::days(1));
    let m3 = before(open);
    let m2 = before(m3);
    let m1 = before(m2);
    for provider in ["dbco", "queueco"] {
        tally::admin::set_platform_fee(pool, provider, dec!(20))
            .await
            .unwrap();
    }
    tally::admin::create_account(pool, "initech", "Initech", "USD")
        .await
        .unwrap();

    let (start, end) = (m1.start(), open.start());
    let acme_contract = json!({
        "starts_at": start, "ends_at": end, "price_protection": true,
        "terms": [
            {"scope": "all", "percent": "10", "funded_by": "platform",
             "effective_from": start, "effective_to": end},
            {"scope": "provider", "provider": "dbco", "percent": "25", "funded_by": "partner",
             "effective_from": start, "effective_to": end},
            {"scope": "skus", "provider": "queueco", "skus": ["queueco.msg.million"],
             "price_book": {"model": "graduated", "tiers": [
                 {"up_to": "100", "unit_price": "0.30"}, {"unit_price": "0.25"}]},
             "funded_by": "platform", "effective_from": start, "effective_to": end},
        ],
        "commitments": [
            {"cadence": "month", "minimum": "80.00", "starts_at": start, "ends_at": end},
            {"cadence": "quarter", "minimum": "250.00", "starts_at": start, "ends_at": end},
        ],
    });
    let initech_contract = json!({
        "starts_at": start, "ends_at": end, "price_protection": false,
        "terms": [
            {"scope": "provider", "provider": "dbco", "percent": "5", "funded_by": "platform",
             "effective_from": start, "effective_to": end},
        ],
    });
    let (mut acme_id, mut partner_term) = (0, 0);
    for (account, body) in [("acme", acme_contract), ("initech", initech_contract)] {
        let (status, contract) = send(
            http,
            "post",
            &format!("{api}/v1/accounts/{account}/contracts"),
            &keys.finance,
            body,
        )
        .await;
        assert_eq!(status, 201, "{contract}");
        if account == "acme" {
            assert_eq!(contract["status"], "awaiting_partner", "{contract}");
            acme_id = contract["id"].as_i64().unwrap();
            partner_term = contract["terms"][1]["id"].as_i64().unwrap();
        }
    }
    agree(&s, partner_term).await;
    let (status, signed) = sign(&s, acme_id).await;
    assert_eq!(
        (status, &signed["status"]),
        (200, &json!("signed")),
        "{signed}"
    );

    // The quarter is in the past, so its history is set up as the catalog
    // is seeded: acme's contract is taken as signed in its first month
    // (before any of its usage; the signature is the row's signed_at), and
    // DB Co's rise to 0.30 from the tenth day of the second month is
    // published as the test catalog's prices are (the notice rule is for
    // rises published from now on: see
    // a_price_rise_needs_notice_and_protected_accounts_do_not_pay_it).
    sqlx::query("UPDATE contracts SET signed_at = $1 WHERE account_id = 'acme'")
        .bind(m1.start() + Duration::days(15))
        .execute(pool)
        .await
        .unwrap();
    let rise = m2.start() + Duration::days(10);
    tally::admin::set_price(pool, "dbco.db.hour", "USD", dec!(0.30), rise)
        .await
        .unwrap();

    let day = |p: Period, d: i64| p.start() + Duration::days(d);
    post_all(
        &s,
        &keys.cloud,
        &[
            event(
                "q-c1",
                "cloud",
                "acme",
                "cloud.vm.hour",
                "1000",
                day(m1, 20),
            ),
            event(
                "q-c2",
                "cloud",
                "acme",
                "cloud.vm.hour",
                "2000",
                day(m2, 20),
            ),
            event("q-c3", "cloud", "acme", "cloud.vm.hour", "500", day(m3, 20)),
        ],
    )
    .await;
    post_all(
        &s,
        &keys.dbco,
        &[
            event("q-d1", "dbco", "acme", "dbco.db.hour", "100", day(m1, 20)),
            event("q-d2", "dbco", "acme", "dbco.db.hour", "200", day(m2, 20)),
            event("q-i1", "dbco", "initech", "dbco.db.hour", "100", day(m2, 5)),
            event(
                "q-i2",
                "dbco",
                "initech",
                "dbco.db.hour",
                "100",
                day(m2, 20),
            ),
        ],
    )
    .await;
    post_all(
        &s,
        &keys.queueco,
        &[event(
            "q-q1",
            "queueco",
            "acme",
            "queueco.msg.million",
            "150",
            day(m2, 20),
        )],
    )
    .await;
    counted_events(pool, 8).await;
    for (month, n) in [(m1, 1), (m2, 2), (m3, 1)] {
        invoices_in(pool, month.start(), n, "draft").await;
    }
    let producer = tally_platform::kafka::producer(&s.h.config).unwrap();
    let topic = s.h.config.topics().usage_events;
    tally_invoicing::lifecycle::request_seals(pool, &producer, &topic, Utc::now(), grace)
        .await
        .unwrap();
    for (month, n) in [(m1, 1), (m2, 2), (m3, 1)] {
        invoices_in(pool, month.start(), n, "finalized").await;
    }

    // Every line, from the catalog's prices.
    let vm = price("cloud.vm.hour", "USD").unwrap();
    let db = price("dbco.db.hour", "USD").unwrap();
    let risen = dec!(0.30);
    let fee = Some(dec!(20));
    let cloud = |hours: Decimal| usage("cloud", cents(hours * vm), dec!(10), "platform", None);
    let acme_db = |hours: Decimal| usage("dbco", cents(hours * db), dec!(25), "partner", fee);
    let net = |rows: &[Stored]| rows.iter().map(|r| r.2).sum::<Decimal>();
    let acme1 = [cloud(dec!(1000)), acme_db(dec!(100))];
    // The negotiated graduated book prices acme's 150 million messages:
    // 100 at 0.30 and 50 at 0.25 = 42.50 instead of list 150 × 0.405 =
    // 60.75; the 18.25 between is the platform's (Queue Co is settled at
    // list: its 20% fee 12.15 and net 48.60), and the 10% on everything
    // does not stack on it.
    let queue_list = cents(dec!(150) * price("queueco.msg.million", "USD").unwrap());
    let negotiated = cents(dec!(100) * dec!(0.30) + dec!(50) * dec!(0.25));
    let queue_fee = cents(queue_list * dec!(0.20));
    assert_eq!(
        (queue_list, negotiated, queue_fee),
        (dec!(60.75), dec!(42.50), dec!(12.15))
    );
    let queue: Stored = (
        "usage".into(),
        "queueco".into(),
        negotiated,
        queue_list,
        queue_list - negotiated,
        Some("platform".into()),
        queue_fee,
        queue_list - queue_fee,
        None,
    );
    let acme2 = [cloud(dec!(2000)), acme_db(dec!(200)), queue];
    let acme3 = [cloud(dec!(500))];
    let (net1, net2, net3) = (net(&acme1), net(&acme2), net(&acme3));
    assert_eq!((net1, net2, net3), (dec!(56.00), dec!(154.50), dec!(18.72)));
    // The monthly commitment: short in the first month (24.00), exceeded in
    // the second, short in the third (61.28); the quarter's 250.00 counts
    // every month's net without the true-ups: 250 - 229.22 = 20.78.
    let (monthly, quarterly) = (dec!(80.00), dec!(250.00));
    let quarter_due = quarterly - (net1 + net2 + net3);
    assert_eq!(
        (monthly - net1, monthly - net3, quarter_due),
        (dec!(24.00), dec!(61.28), dec!(20.78))
    );
    assert!(net2 > monthly);
    let mut acme1 = acme1.to_vec();
    acme1.push(true_up(monthly - net1));
    let mut acme3 = acme3.to_vec();
    acme3.extend([true_up(monthly - net3), true_up(quarter_due)]);
    // initech: 100 hours before the rise at 0.2475, 100 after at 0.30, 5%
    // off funded by the platform (DB Co settled at list).
    let initech2 = [
        usage("dbco", cents(dec!(100) * db), dec!(5), "platform", fee),
        usage("dbco", cents(dec!(100) * risen), dec!(5), "platform", fee),
    ];
    let expected = [
        ("acme", m1, acme1.clone()),
        ("acme", m2, acme2.to_vec()),
        ("initech", m2, initech2.to_vec()),
        ("acme", m3, acme3.clone()),
    ];
    for (account, month, rows) in &expected {
        assert_eq!(
            stored_lines(pool, account, month.start()).await,
            sorted(rows.clone()),
            "{account} {}",
            month.label()
        );
        let total: Decimal = sqlx::query_scalar(
            "SELECT total FROM invoices WHERE account_id = $1 AND period_start = $2",
        )
        .bind(account)
        .bind(month.start())
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!(total, net(rows), "{account} {}", month.label());
    }
    assert_eq!(
        (net(&acme1), net(&acme2), net(&initech2), net(&acme3)),
        (dec!(80.00), dec!(154.50), dec!(52.01), dec!(100.78))
    );

    // DB Co's settlements: who funded each discount.
    for (month, rows) in [
        (m1, acme1.clone()),
        (m2, [acme2.to_vec(), initech2.to_vec()].concat()),
    ] {
        let dbco: Vec<&Stored> = rows.iter().filter(|r| r.1 == "dbco").collect();
        let funded = |by: &str| {
            dbco.iter()
                .filter(|r| r.5.as_deref() == Some(by))
                .map(|r| r.4)
                .sum::<Decimal>()
        };
        let want = [
            dbco.iter().map(|r| r.3).sum::<Decimal>(),
            dbco.iter().map(|r| r.6).sum(),
            dbco.iter().map(|r| r.7).sum(),
            funded("partner"),
            funded("platform"),
        ]
        .map(|d| format!("{d:.2}"));
        let (status, body) = get(
            http,
            &format!(
                "{api}/v1/settlements?period={}&provider=dbco",
                month.label()
            ),
            &keys.finance,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let usd = body["data"][0]["currencies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["currency"] == "USD")
            .unwrap();
        let got = [
            "gross_list",
            "platform_fee",
            "net_payable",
            "partner_funded_discounts",
            "platform_funded_discounts",
        ]
        .map(|f| usd[f].as_str().unwrap_or_default().to_owned());
        assert_eq!(got, want, "{}: {body}", month.label());
    }
    // By hand: DB Co gets 13.61 (24.75 - 4.95 fee - 6.19 it funded) for
    // the first month, 27.22 + 19.80 + 24.00 = 71.02 for the second (and
    // Queue Co 48.60, at list).

    // Each month reconciles: invoiced = platform + DB Co + credits (none).
    let mut conn = pool.acquire().await.unwrap();
    for (month, invoices, rows, partner) in [
        (m1, 1, acme1.clone(), dec!(13.61)),
        (
            m2,
            2,
            [acme2.to_vec(), initech2.to_vec()].concat(),
            dec!(119.62),
        ),
        (m3, 1, acme3.clone(), dec!(0)),
    ] {
        let invoiced = net(&rows);
        let partners: Decimal = rows.iter().map(|r| r.7).sum();
        assert_eq!(partners, partner);
        let report = tally_api::finance::settlement::reconcile(&mut conn, month)
            .await
            .unwrap();
        let figures: Vec<_> = report
            .currencies
            .iter()
            .map(|c| {
                (
                    c.currency.to_string(),
                    c.invoices,
                    c.invoiced,
                    c.platform_revenue,
                    c.partner_settlements,
                    c.credits_applied,
                    c.difference,
                )
            })
            .collect();
        assert_eq!(
            figures,
            [(
                "USD".to_owned(),
                invoices,
                invoiced,
                invoiced - partners,
                partners,
                dec!(0),
                dec!(0)
            )],
            "{}",
            month.label()
        );
        assert!(report.holds(), "{report:?}");
    }

    // Late usage of the first month, and usage of the open one (no contract
    // in force: list price).
    post_all(
        &s,
        &keys.cloud,
        &[
            event(
                "q-late",
                "cloud",
                "acme",
                "cloud.vm.hour",
                "100",
                day(m1, 21),
            ),
            event(
                "q-open",
                "cloud",
                "acme",
                "cloud.vm.hour",
                "1000",
                open.start() + Duration::hours(1),
            ),
        ],
    )
    .await;
    counted_events(pool, 10).await;
    // The first month priced again: 1100 hours; its adjustment is the
    // difference to what it billed, and it spent that much more, so its
    // true-up and the quarter's fall by as much.
    let again = cloud(dec!(1100));
    let billed = cloud(dec!(1000));
    let more = again.2 - billed.2;
    assert_eq!(more, dec!(3.74));
    let m1_start = Some(m1.start());
    let adjustment = |mut row: Stored, of: Period| {
        row.8 = Some(of.start());
        row
    };
    let cloud_adjustment = (
        "usage".to_owned(),
        "cloud".to_owned(),
        more,
        again.3 - billed.3,
        again.4 - billed.4,
        Some("platform".to_owned()),
        again.6 - billed.6,
        dec!(0),
        m1_start,
    );
    let open_rows = sorted(vec![
        usage("cloud", cents(dec!(1000) * vm), dec!(0), "", None),
        cloud_adjustment,
        adjustment(true_up(-more), m1),
        adjustment(true_up(-more), m3),
    ]);
    let open_total = net(&open_rows);
    assert_eq!(open_total, dec!(37.86));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let got = stored_lines(pool, "acme", open.start()).await;
        if got == open_rows {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{got:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    s.running.stop().await.unwrap();
}
