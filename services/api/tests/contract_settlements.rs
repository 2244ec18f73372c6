//! Contract discounts in settlements (issue 18): who funded each discount,
//! and the partner's net payable lower only by what it funded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{TimeZone, Utc};
use rust_decimal_macros::dec;
use serde_json::json;
use support::server::Server;
use support::*;
use tally_domain::contract::Funder;
use tally_invoicing::apply_statements;
use tally_invoicing::lifecycle::finalize_sealed;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_show_who_funded_each_discount() {
    let s = Server::start().await;
    // Two dbco lines of 20.00 list (fee 20%: 4.00, net 16.00), each 10% off:
    // the first funded by the platform (net stays 16.00), the second by
    // dbco (its net falls to 14.00, the fee rises to 6.00).
    let discounted = |funder: Funder, sku: &str| {
        let mut l = line(&dbco(), sku, dec!(20), dec!(1));
        l.platform_fee = dec!(4.00);
        l.partner_net = dec!(16.00);
        l.discount = dec!(2.00);
        l.discount_funded_by = Some(funder);
        l.amount = dec!(18.00);
        l.markup = dec!(-2.00);
        if funder == Funder::Partner {
            l.platform_fee = dec!(6.00);
            l.partner_net = dec!(14.00);
        }
        l
    };
    let mut st = statement(
        "acme",
        "2026-10",
        1,
        vec![
            discounted(Funder::Platform, "dbco.db.a"),
            discounted(Funder::Partner, "dbco.db.b"),
        ],
    );
    st.sealed = true;
    apply_statements(&s.pool, &[st]).await.unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    assert_eq!(
        finalize_sealed(&s.pool, "TLY", now, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    let (_, settlements) = s
        .get("/v1/settlements?period=2026-10", Some(&s.keys.finance))
        .await;
    let usd = &settlements["data"][0]["currencies"][0];
    let figures = |f: &serde_json::Value| {
        [
            "gross_list",
            "platform_fee",
            "net_payable",
            "partner_funded_discounts",
            "platform_funded_discounts",
        ]
        .map(|k| f[k].clone())
    };
    assert_eq!(
        figures(usd),
        [
            json!("40.00"),
            json!("10.00"),
            json!("30.00"),
            json!("2.00"),
            json!("2.00")
        ],
        "{settlements}"
    );
    let by_sku: Vec<_> = usd["by_sku"]
        .as_array()
        .unwrap()
        .iter()
        .map(figures)
        .collect();
    assert_eq!(
        by_sku,
        [
            [
                json!("20.00"),
                json!("4.00"),
                json!("16.00"),
                json!("0.00"),
                json!("2.00")
            ],
            [
                json!("20.00"),
                json!("6.00"),
                json!("14.00"),
                json!("2.00"),
                json!("0.00")
            ],
        ]
    );
    // The month still reconciles.
    let (_, report) = s
        .get("/v1/reconciliation?period=2026-10", Some(&s.keys.finance))
        .await;
    // The month still reconciles: 36.00 invoiced = platform 6.00 (markup
    // -2.00 - 2.00, fees 4.00 + 6.00) + dbco 30.00.
    let usd = &report["currencies"][0];
    assert_eq!(
        [
            "invoiced",
            "platform_revenue",
            "partner_settlements",
            "difference"
        ]
        .map(|k| usd[k].clone()),
        [json!("36.00"), json!("6.00"), json!("30.00"), json!("0.00")],
        "{report}"
    );
    // Discounts as their own category: list 40.00 + markups before
    // discounts 0.00 - discounts 4.00 (2.00 each funder) = 36.00 billed.
    assert_eq!(
        [
            "list_value",
            "markups",
            "discounts",
            "platform_funded_discounts",
            "partner_funded_discounts",
            "discount_difference"
        ]
        .map(|k| usd[k].clone()),
        [
            json!("40.00"),
            json!("0.00"),
            json!("4.00"),
            json!("2.00"),
            json!("2.00"),
            json!("0.00")
        ],
        "{report}"
    );
    assert_eq!(usd["problems"], json!([]));
}
