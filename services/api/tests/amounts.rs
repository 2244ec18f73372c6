//! Amounts leave Tally with their currency's exponent, never trimmed:
//! `"10.00"` in USD, `"1234"` in JPY, `"1.500"` in BHD, in every API
//! response and CSV. Unit prices keep every digit they have (`"0.0001"`),
//! and at least the currency's minor units (`"1.00"`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use support::server::Server;
use support::*;
use tally_domain::{AccountId, Currency};
use tally_invoicing::apply_statements;
use tally_invoicing::lifecycle::finalize_sealed;
use tally_platform::catalog;

impl Server {
    async fn csv(&self, path: &str) -> String {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.keys.finance)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK, "{path}");
        res.text().await.unwrap()
    }
}

/// October 2026, finalized: acme (USD) 10 × 1 on the platform and 50,000 ×
/// 0.0001 from DB Co; yen (JPY) 1234 × 1; dinar (BHD) 3 × 0.5. Every amount
/// as it comes out of the arithmetic, without its exponent.
async fn invoices(s: &Server) -> (String, String, String) {
    let mut conn = s.pool.acquire().await.unwrap();
    for (id, code) in [("yen", "JPY"), ("dinar", "BHD")] {
        catalog::create_account(
            &mut conn,
            &AccountId::parse(id).unwrap(),
            id,
            Currency::parse(code).unwrap(),
        )
        .await
        .unwrap();
    }
    let sealed = |account: &str, currency: &str, lines| {
        let mut s = statement(account, "2026-10", 1, lines);
        s.currency = Currency::parse(currency).unwrap();
        s.sealed = true;
        s
    };
    let acme = sealed(
        "acme",
        "USD",
        vec![
            line(&cloud(), "cloud.vm", dec!(10), dec!(1)),
            line(&dbco(), "dbco.db.req", dec!(50000), dec!(0.0001)),
        ],
    );
    let yen = sealed(
        "yen",
        "JPY",
        vec![line(&cloud(), "cloud.vm", dec!(1234), dec!(1))],
    );
    let dinar = sealed(
        "dinar",
        "BHD",
        vec![line(&cloud(), "cloud.vm", dec!(3), dec!(0.5))],
    );
    apply_statements(&s.pool, &[acme, yen, dinar])
        .await
        .unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    assert_eq!(
        finalize_sealed(&s.pool, "TLY", now, 10)
            .await
            .unwrap()
            .len(),
        3
    );
    (
        s.invoice_id("acme").await,
        s.invoice_id("yen").await,
        s.invoice_id("dinar").await,
    )
}

fn amounts(invoice: &Value) -> Vec<String> {
    let mut out = vec![
        invoice["subtotal"].to_string(),
        invoice["credits_total"].to_string(),
        invoice["total"].to_string(),
    ];
    for section in invoice["sections"].as_array().unwrap() {
        out.push(format!("subtotal {}", section["subtotal"]));
        for l in section["lines"].as_array().unwrap() {
            out.push(format!(
                "{} × {} = {} (list {}, markup {}, fee {}, net {})",
                l["quantity"],
                l["unit_price"],
                l["amount"],
                l["list_amount"],
                l["markup"],
                l["platform_fee"],
                l["partner_net"]
            ));
        }
    }
    out
}

#[tokio::test]
async fn invoices_show_amounts_with_their_currency_exponent() {
    let s = Server::start().await;
    let (acme, yen, dinar) = invoices(&s).await;
    let get = async |id: &str| {
        let (status, body) = s
            .get(&format!("/v1/invoices/{id}"), Some(&s.keys.finance))
            .await;
        assert_eq!(status, StatusCode::OK);
        amounts(&body)
    };
    assert_eq!(
        get(&acme).await,
        [
            r#""15.00""#,
            r#""0.00""#,
            r#""15.00""#,
            r#"subtotal "10.00""#,
            r#""10" × "1.00" = "10.00" (list "10.00", markup "0.00", fee "10.00", net "0.00")"#,
            r#"subtotal "5.00""#,
            r#""50000" × "0.0001" = "5.00" (list "5.00", markup "0.00", fee "5.00", net "0.00")"#,
        ]
    );
    assert_eq!(
        get(&yen).await,
        [
            r#""1234""#,
            r#""0""#,
            r#""1234""#,
            r#"subtotal "1234""#,
            r#""1234" × "1" = "1234" (list "1234", markup "0", fee "1234", net "0")"#,
        ]
    );
    assert_eq!(
        get(&dinar).await,
        [
            r#""1.500""#,
            r#""0.000""#,
            r#""1.500""#,
            r#"subtotal "1.500""#,
            r#""3" × "0.500" = "1.500" (list "1.500", markup "0.000", fee "1.500", net "0.000")"#,
        ]
    );
    // The list and the customer's bill say the same.
    let (_, list) = s
        .get("/v1/invoices?period=2026-10", Some(&s.keys.finance))
        .await;
    let mut totals: Vec<(&str, &str)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["account_id"].as_str().unwrap(),
                i["total"].as_str().unwrap(),
            )
        })
        .collect();
    totals.sort();
    assert_eq!(
        totals,
        [("acme", "15.00"), ("dinar", "1.500"), ("yen", "1234")]
    );
    let (_, bill) = s
        .get("/v1/accounts/acme/bill?period=2026-10", Some(&s.keys.acme))
        .await;
    assert_eq!(amounts(&bill), get(&acme).await);
}

#[tokio::test]
async fn credit_notes_grants_and_ledgers_show_amounts_with_their_exponent() {
    let s = Server::start().await;
    let (acme, yen, _) = invoices(&s).await;
    let (status, note) = s
        .post(
            &format!("/v1/invoices/{acme}/credit-notes"),
            Some(&s.keys.finance),
            json!({"reason": "goodwill", "lines": [{"position": 0, "amount": "6"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{note}");
    let line = &note["lines"][0];
    assert_eq!(
        (
            &note["total"],
            &line["amount"],
            &line["platform_part"],
            &line["partner_part"]
        ),
        (
            &json!("6.00"),
            &json!("6.00"),
            &json!("6.00"),
            &json!("0.00")
        )
    );
    let (_, listed) = s
        .get(
            &format!("/v1/invoices/{acme}/credit-notes"),
            Some(&s.keys.finance),
        )
        .await;
    assert_eq!(listed["data"][0]["total"], "6.00", "{listed}");
    let (_, note) = s
        .post(
            &format!("/v1/invoices/{yen}/credit-notes"),
            Some(&s.keys.finance),
            json!({"reason": "goodwill", "lines": [{"position": 0, "amount": "34"}]}),
        )
        .await;
    assert_eq!(note["total"], "34", "{note}");

    for (account, asked, want) in [
        ("acme", "10", ["10.00", "0.00", "0.00", "10.00"]),
        ("yen", "1234", ["1234", "0", "0", "1234"]),
        ("dinar", "1.5", ["1.500", "0.000", "0.000", "1.500"]),
    ] {
        let (status, grant) = s
            .post(
                &format!("/v1/accounts/{account}/grants"),
                Some(&s.keys.finance),
                json!({"name": "welcome", "kind": "promotional", "amount": asked}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{grant}");
        let shown = [
            &grant["amount"],
            &grant["drawn"],
            &grant["voided_amount"],
            &grant["remaining"],
        ];
        assert_eq!(shown, want.map(Value::from).each_ref(), "{account}");
        let (_, grants) = s
            .get(
                &format!("/v1/accounts/{account}/grants"),
                Some(&s.keys.finance),
            )
            .await;
        assert_eq!(grants["data"][0]["amount"], want[0], "{account}");
        let (_, ledger) = s
            .get(
                &format!("/v1/accounts/{account}/credit-ledger"),
                Some(&s.keys.finance),
            )
            .await;
        assert_eq!(ledger["data"][0]["amount"], want[0], "{account}");
    }
}

#[tokio::test]
async fn exports_settlements_and_reconciliation_show_amounts_with_their_exponent() {
    let s = Server::start().await;
    let (acme, _, _) = invoices(&s).await;
    let (status, body) = s
        .post(
            &format!("/v1/invoices/{acme}/credit-notes"),
            Some(&s.keys.finance),
            json!({"reason": "goodwill", "lines": [{"position": 0, "amount": "6"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let invoices = s.csv("/v1/exports/invoices.csv?period=2026-10").await;
    let amounts: Vec<String> = invoices
        .lines()
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            format!("{} {}", cells[2], cells[6..11].join(" "))
        })
        .collect();
    assert_eq!(
        amounts,
        [
            "acme USD 15.00 0.00 15.00 6.00",
            "dinar BHD 1.500 0.000 1.500 0.000",
            "yen JPY 1234 0 1234 0",
        ]
    );
    let lines = s.csv("/v1/exports/invoice-lines.csv?period=2026-10").await;
    let amounts: Vec<String> = lines
        .lines()
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            format!("{} {}", cells[2], cells[10..18].join(" "))
        })
        .collect();
    assert_eq!(
        amounts,
        [
            "acme 10 hour 1.00 10.00 10.00 0.00 10.00 0.00",
            "acme 50000 hour 0.0001 5.00 5.00 0.00 5.00 0.00",
            "dinar 3 hour 0.500 1.500 1.500 0.000 1.500 0.000",
            "yen 1234 hour 1 1234 1234 0 1234 0",
        ]
    );

    let (_, settlements) = s
        .get("/v1/settlements?period=2026-10", Some(&s.keys.finance))
        .await;
    let usd = &settlements["data"][0]["currencies"][0];
    assert_eq!(
        [
            &usd["gross_list"],
            &usd["platform_fee"],
            &usd["credit_notes"],
            &usd["net_payable"],
            &usd["by_sku"][0]["net_payable"],
        ],
        [
            &json!("5.00"),
            &json!("5.00"),
            &json!("0.00"),
            &json!("0.00"),
            &json!("0.00")
        ],
        "{settlements}"
    );

    let (_, report) = s
        .get("/v1/reconciliation?period=2026-10", Some(&s.keys.finance))
        .await;
    let figures: Vec<String> = report["currencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            [
                "currency",
                "subtotals",
                "voided",
                "credit_notes",
                "invoiced",
                "platform_revenue",
                "partner_settlements",
                "credits_applied",
                "difference",
            ]
            .map(|f| c[f].as_str().unwrap())
            .join(" ")
        })
        .collect();
    assert_eq!(
        figures,
        [
            "BHD 1.500 0.000 0.000 1.500 1.500 0.000 0.000 0.000",
            "JPY 1234 0 0 1234 1234 0 0 0",
            // The credit note counts in the month it was issued (now).
            "USD 15.00 0.00 0.00 15.00 15.00 0.00 0.00 0.00",
        ],
        "{report}"
    );
}
