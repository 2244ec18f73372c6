//! Settlements beyond plain usage: contract discounts (issue 18), who
//! funded each one and the partner's net payable lower only by what it
//! funded; and a provider settled net of its own invoices (issue 17) that
//! sold nothing in the month, which still owes its invoices net.
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

/// Bills October's sealed `statement` and finalizes its invoice.
async fn finalize_october(s: &Server, mut statement: tally_domain::Statement) {
    statement.sealed = true;
    apply_statements(&s.pool, &[statement]).await.unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    let finalized = finalize_sealed(&s.pool, "TLY", now, 10).await.unwrap();
    assert_eq!(finalized.len(), 1);
}

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
    let st = statement(
        "acme",
        "2026-10",
        1,
        vec![
            discounted(Funder::Platform, "dbco.db.a"),
            discounted(Funder::Partner, "dbco.db.b"),
        ],
    );
    finalize_october(&s, st).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_settled_net_without_sales_still_has_its_settlement() {
    let s = Server::start().await;
    let admin = s.keys.admin.clone();
    let (status, body) = s
        .post(
            "/v1/admin/accounts",
            Some(&admin),
            json!({"id": "dbco-billing", "name": "DB Co billing", "currency": "USD",
                   "provider_id": "dbco"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // dbco's own account is billed 4.80 for October (first-party cloud);
    // nobody bought anything of dbco's in October.
    let st = statement(
        "dbco-billing",
        "2026-10",
        1,
        vec![line(&cloud(), "cloud.vm", dec!(10), dec!(0.48))],
    );
    finalize_october(&s, st).await;
    // Settled gross, dbco pays its invoice separately: nothing to settle.
    let october = "/v1/settlements?period=2026-10";
    let (status, settlements) = s.get(october, Some(&s.keys.finance)).await;
    assert_eq!(status, 200);
    assert_eq!(settlements, json!({"data": []}));

    // Settled net, its invoice is netted against a settlement of 0.00: it
    // pays the platform 4.80, as its statement says.
    let (status, body) = s
        .post(
            "/v1/admin/providers/dbco/settlement-mode",
            Some(&admin),
            json!({"mode": "net"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let zero = json!("0.00");
    let want = json!({"data": [{
        "provider_id": "dbco", "provider_name": "DB Co", "period": "2026-10",
        "settlement_mode": "net",
        "currencies": [{
            "currency": "USD", "gross_list": zero, "platform_fee": zero,
            "credit_notes": zero, "net_payable": zero,
            "partner_funded_discounts": zero, "platform_funded_discounts": zero,
            "by_sku": [], "by_account": [],
            "own_invoices_due": "4.80", "paid": "-4.80"
        }]
    }]});
    for key in [&s.keys.finance, &admin, &s.keys.dbco] {
        let (status, settlements) = s.get(october, Some(key)).await;
        assert_eq!(status, 200);
        assert_eq!(settlements, want);
    }
    let (_, statement) = s
        .get("/v1/provider/statements/2026-10", Some(&s.keys.dbco))
        .await;
    assert_eq!(
        (
            &statement["currencies"][0]["settlement"],
            &statement["currencies"][0]["due"],
            &statement["currencies"][0]["payments"]
        ),
        (
            &zero,
            &json!("4.80"),
            &json!([{"payer": "provider", "amount": "4.80"}])
        ),
        "{statement}"
    );
    // The month reconciles: 4.80 invoiced, all of it the platform's.
    let (_, report) = s
        .get("/v1/reconciliation?period=2026-10", Some(&s.keys.finance))
        .await;
    let usd = &report["currencies"][0];
    assert_eq!(
        [
            "invoiced",
            "platform_revenue",
            "partner_settlements",
            "difference"
        ]
        .map(|k| usd[k].clone()),
        [json!("4.80"), json!("4.80"), zero.clone(), zero],
        "{report}"
    );
    assert_eq!(usd["problems"], json!([]));
}
