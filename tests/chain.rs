//! Provider to provider (issue 17, items 4 to 6), a three-level chain over
//! one month with two consumers: `alpha` and `beta` buy `appco`'s app
//! hours; `appco` composes `midco`'s database (billed to its own account
//! `appco-billing`, on behalf of each consumer); `midco` composes
//! `baseco`'s storage (billed to `midco-billing` on behalf of its own
//! consumer `appco-billing`, by the reference the platform minted for
//! midco: a reference of a reference; and some on nobody's behalf). The
//! month is sealed and finalized; checked, every amount computed here by
//! hand: every invoice line, every settlement (appco settled net, the
//! others gross), each provider's statement, every margin-report row, the
//! reconciliation and its chain, through the API and `tally reconcile`;
//! then a credit note on midco's invoice, a correction of the month it is
//! made in: the settled month unchanged, the later one's statements (a
//! negative side paid the other way), reconciliation and chain exact.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tally_domain::Period;
use tally_invoicing::lifecycle;

const GRACE_HOURS: i64 = 48;

async fn created(s: &Seeded, path: &str, key: &str, body: Value) -> Value {
    let (status, answer) = s.call("post", path, key, body).await;
    assert_eq!(status, 201, "{path}: {answer}");
    answer
}

fn d(x: &str) -> Decimal {
    x.parse().unwrap()
}

/// `pct` % of `x`, in cents.
fn pct(x: Decimal, pct: &str) -> Decimal {
    cents(x * d(pct) / Decimal::ONE_HUNDRED)
}

fn money(x: Decimal) -> Value {
    json!(x.to_string())
}

/// An invoice's lines as (provider, sku, quantity, amount, platform fee,
/// partner net).
fn lines(invoice: &Value) -> Vec<[String; 6]> {
    invoice["sections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|section| {
            let provider = section["provider"]["id"].as_str().unwrap().to_owned();
            section["lines"].as_array().unwrap().iter().map(move |l| {
                let f = |k: &str| l[k].as_str().unwrap().to_owned();
                [
                    provider.clone(),
                    f("sku"),
                    f("quantity"),
                    f("amount"),
                    f("platform_fee"),
                    f("partner_net"),
                ]
            })
        })
        .collect()
}

fn line(provider: &str, sku: &str, quantity: &str, amount: Decimal, fee: Decimal) -> [String; 6] {
    [
        provider.into(),
        sku.into(),
        quantity.into(),
        amount.to_string(),
        fee.to_string(),
        (amount - fee).to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_level_chain_bills_settles_and_reconciles_to_the_cent() {
    let s = pipeline().await;
    let grace = Duration::hours(GRACE_HOURS);
    let open = Period::month_containing(s.now - grace);
    let month = Period::month_containing(open.start() - Duration::days(1));
    let period = month.label();
    let at = month.start() + Duration::days(3);
    let since = month.start() - Duration::days(1);
    let admin = s.keys.admin.clone();

    // The three providers: appco settled gross at first (set net by the
    // CLI below), midco gross; a mode that is neither is refused.
    let mut keys = std::collections::BTreeMap::new();
    for (id, fees, mode) in [
        ("appco", json!({"platform_fee_pct": "10"}), None),
        (
            "midco",
            json!({"platform_fee_pct": "20", "p2p_fee_pct": "5"}),
            Some("gross"),
        ),
        (
            "baseco",
            json!({"platform_fee_pct": "30", "p2p_fee_pct": "8"}),
            None,
        ),
    ] {
        let mut body = json!({"id": id, "name": id, "kind": "partner"});
        for (k, v) in fees.as_object().unwrap() {
            body[k] = v.clone();
        }
        if let Some(mode) = mode {
            body["settlement_mode"] = json!(mode);
        }
        let answer = created(&s, "/v1/admin/providers", &admin, body).await;
        assert_eq!(answer["settlement_mode"], "gross");
        keys.insert(id, answer["api_key"].as_str().unwrap().to_owned());
    }
    let (status, refused) = s
        .call(
            "post",
            "/v1/admin/providers",
            &admin,
            json!({"id": "oddco", "name": "Odd", "kind": "partner", "settlement_mode": "sideways"}),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{refused}"
    );
    let cli = |args: &[&str]| {
        s.h.tally(args)
            .stdout(std::process::Stdio::piped())
            .output()
            .unwrap()
    };
    let out = cli(&[
        "set-settlement-mode",
        "--provider",
        "appco",
        "--mode",
        "net",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!cli(&[
        "set-settlement-mode",
        "--provider",
        "nobody",
        "--mode",
        "net"
    ])
    .status
    .success());
    assert!(!cli(&[
        "set-settlement-mode",
        "--provider",
        "midco",
        "--mode",
        "sideways"
    ])
    .status
    .success());

    // SKUs, list prices, and wholesale prices for provider accounts.
    for (sku, provider, list, wholesale) in [
        ("appco.app.hour", "appco", "0.50", None),
        ("midco.db.hour", "midco", "0.125", Some("0.10")),
        ("baseco.store.gb", "baseco", "0.03", Some("0.023")),
    ] {
        created(
            &s,
            "/v1/admin/skus",
            &admin,
            json!({"id": sku, "provider_id": provider, "name": sku, "unit": "unit"}),
        )
        .await;
        created(
            &s,
            "/v1/admin/prices",
            &admin,
            json!({"sku": sku, "currency": "USD", "effective_from": since, "unit_price": list}),
        )
        .await;
        if let Some(price) = wholesale {
            created(
                &s,
                "/v1/admin/prices",
                &admin,
                json!({"sku": sku, "currency": "USD", "effective_from": since,
                       "unit_price": price, "audience": "provider"}),
            )
            .await;
        }
    }
    // The consumers and the two providers' own accounts; midco's has a
    // promotional credit of 1.00.
    for (id, owner) in [
        ("alpha", None),
        ("beta", None),
        ("appco-billing", Some("appco")),
        ("midco-billing", Some("midco")),
    ] {
        let mut body = json!({"id": id, "name": id, "currency": "USD"});
        if let Some(owner) = owner {
            body["provider_id"] = json!(owner);
        }
        created(&s, "/v1/admin/accounts", &admin, body).await;
    }
    created(
        &s,
        "/v1/accounts/midco-billing/grants",
        &s.keys.finance,
        json!({"name": "Welcome", "kind": "promotional", "amount": "1.00",
               "effective_at": month.start()}),
    )
    .await;

    // References: appco's for its consumers, midco's for its consumer
    // appco-billing.
    let reference = |provider: &'static str, account: &'static str| {
        let key = keys[provider].clone();
        let s = &s;
        async move {
            let (status, body) = s
                .call(
                    "post",
                    "/v1/provider/references",
                    &key,
                    json!({"account": account}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["reference"].as_str().unwrap().to_owned()
        }
    };
    let for_alpha = reference("appco", "alpha").await;
    let for_beta = reference("appco", "beta").await;
    let for_appco = reference("midco", "appco-billing").await;

    // The month's usage at each level.
    let with_ref = |mut e: Value, reference: &str| {
        e["onbehalfof"] = json!(reference);
        e
    };
    let batches = [
        (
            "appco",
            vec![
                event("a-1", "appco", "alpha", "appco.app.hour", "10", at),
                event("a-2", "appco", "beta", "appco.app.hour", "4", at),
            ],
        ),
        (
            "midco",
            vec![
                with_ref(
                    event("m-1", "midco", "appco-billing", "midco.db.hour", "20", at),
                    &for_alpha,
                ),
                with_ref(
                    event("m-2", "midco", "appco-billing", "midco.db.hour", "10", at),
                    &for_alpha,
                ),
                with_ref(
                    event("m-3", "midco", "appco-billing", "midco.db.hour", "12", at),
                    &for_beta,
                ),
            ],
        ),
        (
            "baseco",
            vec![
                with_ref(
                    event(
                        "b-1",
                        "baseco",
                        "midco-billing",
                        "baseco.store.gb",
                        "100",
                        at,
                    ),
                    &for_appco,
                ),
                event(
                    "b-2",
                    "baseco",
                    "midco-billing",
                    "baseco.store.gb",
                    "25",
                    at,
                ),
                // appco's reference is appco's: not midco's to name.
                with_ref(
                    event("b-3", "baseco", "midco-billing", "baseco.store.gb", "1", at),
                    &for_alpha,
                ),
            ],
        ),
    ];
    for (provider, events) in &batches {
        let (status, body) = post_events(&s.http, &s.collector, &keys[provider], events).await;
        assert_eq!(status, 202, "{body}");
        let codes: Vec<_> = body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["code"].clone())
            .collect();
        let mut want = vec![Value::Null; events.len()];
        if *provider == "baseco" {
            want[2] = json!("on_behalf_of_unknown");
        }
        assert_eq!(codes, want, "{body}");
    }

    // Independently: each invoice's lines, fees and totals.
    let app = |hours: i64| cents(d("0.50") * Decimal::from(hours));
    let (alpha_app, beta_app) = (app(10), app(4));
    let (alpha_fee, beta_fee) = (pct(alpha_app, "10"), pct(beta_app, "10"));
    let mid = cents(d("0.10") * Decimal::from(42));
    let mid_fee = pct(mid, "5");
    let base = cents(d("0.023") * Decimal::from(125));
    let base_fee = pct(base, "8");
    let credit = d("1.00");
    assert_eq!(
        (mid, mid_fee, base, base_fee),
        (d("4.20"), d("0.21"), d("2.88"), d("0.23"))
    );
    let expected = [
        (("alpha".to_owned(), period.clone()), alpha_app),
        (("beta".to_owned(), period.clone()), beta_app),
        (("appco-billing".to_owned(), period.clone()), mid),
        (("midco-billing".to_owned(), period.clone()), base - credit),
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
    for ((account, _), total) in &expected {
        assert_eq!(
            bills[&(account.clone(), period.clone())]["total"],
            money(*total),
            "{account}"
        );
    }

    // The month is sealed and its four invoices finalized.
    let producer = tally_platform::kafka::producer(&s.h.config).unwrap();
    let topic = s.h.config.topics().usage_events;
    lifecycle::request_seals(&s.h.pool, &producer, &topic, chrono::Utc::now(), grace)
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM invoices WHERE period_start = $1 AND status = 'finalized'",
        )
        .bind(month.start())
        .fetch_one(&s.h.pool)
        .await
        .unwrap();
        if done == 4 {
            break;
        }
        assert!(tokio::time::Instant::now() < until, "{done} of 4 finalized");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    // Every invoice line: consumers see appco's SKU only; each provider's
    // account its immediate supplier's, at wholesale and the p2p fee.
    let invoice = |account: &str| {
        let id = bills[&(account.to_owned(), period.clone())]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let s = &s;
        async move {
            let (status, body) = s
                .call(
                    "get",
                    &format!("/v1/invoices/{id}"),
                    &s.keys.finance,
                    json!(null),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["status"], "finalized");
            body
        }
    };
    assert_eq!(
        lines(&invoice("alpha").await),
        [line("appco", "appco.app.hour", "10", alpha_app, alpha_fee)]
    );
    assert_eq!(
        lines(&invoice("beta").await),
        [line("appco", "appco.app.hour", "4", beta_app, beta_fee)]
    );
    assert_eq!(
        lines(&invoice("appco-billing").await),
        [line("midco", "midco.db.hour", "42", mid, mid_fee)]
    );
    let midco_invoice = invoice("midco-billing").await;
    assert_eq!(
        lines(&midco_invoice),
        [line("baseco", "baseco.store.gb", "125", base, base_fee)]
    );
    assert_eq!(
        (
            &midco_invoice["subtotal"],
            &midco_invoice["credits_total"],
            &midco_invoice["total"]
        ),
        (&money(base), &money(credit), &money(base - credit))
    );

    // Settlements: each partner's net payable; appco's (settled net) nets
    // its own invoice, the others are paid in full.
    let appco_net = alpha_app + beta_app - alpha_fee - beta_fee;
    let (midco_net, baseco_net) = (mid - mid_fee, base - base_fee);
    let (_, settlements) = s
        .call(
            "get",
            &format!("/v1/settlements?period={period}"),
            &s.keys.finance,
            json!(null),
        )
        .await;
    let got: Vec<_> = settlements["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let c = &p["currencies"][0];
            (
                p["provider_id"].clone(),
                p["settlement_mode"].clone(),
                c["gross_list"].clone(),
                c["platform_fee"].clone(),
                c["net_payable"].clone(),
                c["own_invoices_due"].clone(),
                c["paid"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                json!("appco"),
                json!("net"),
                money(alpha_app + beta_app),
                money(alpha_fee + beta_fee),
                money(appco_net),
                money(mid),
                money(appco_net - mid)
            ),
            (
                json!("baseco"),
                json!("gross"),
                money(base),
                money(base_fee),
                money(baseco_net),
                json!("0.00"),
                money(baseco_net)
            ),
            (
                json!("midco"),
                json!("gross"),
                money(mid),
                money(mid_fee),
                money(midco_net),
                money(base - credit),
                money(midco_net)
            ),
        ],
        "{settlements}"
    );
    assert_eq!(
        (money(appco_net), money(appco_net - mid)),
        (json!("6.30"), json!("2.10"))
    );

    // Each provider's statement of the month: its own, nothing else.
    let statement = |settlement: Decimal,
                     consumers_owe: Decimal,
                     fee: Decimal,
                     own: i64,
                     invoiced: Decimal,
                     credits: Decimal,
                     payments: Value| {
        json!({"currency": "USD", "consumers_owe": money(consumers_owe), "platform_fee": money(fee),
               "credit_notes": "0.00", "settlement": money(settlement), "own_invoices": own,
               "invoiced": money(invoiced), "credits_applied": money(credits), "due": money(invoiced - credits),
               "net": money(settlement - (invoiced - credits)), "payments": payments})
    };
    let zero = d("0.00");
    let want = [
        (
            "appco",
            "net",
            statement(
                appco_net,
                alpha_app + beta_app,
                alpha_fee + beta_fee,
                1,
                mid,
                zero,
                json!([{"payer": "platform", "amount": money(appco_net - mid)}]),
            ),
        ),
        (
            "midco",
            "gross",
            statement(
                midco_net,
                mid,
                mid_fee,
                1,
                base,
                credit,
                json!([{"payer": "platform", "amount": money(midco_net)},
                       {"payer": "provider", "amount": money(base - credit)}]),
            ),
        ),
        (
            "baseco",
            "gross",
            statement(
                baseco_net,
                base,
                base_fee,
                0,
                zero,
                zero,
                json!([{"payer": "platform", "amount": money(baseco_net)}]),
            ),
        ),
    ];
    for (provider, mode, currency) in &want {
        let one = json!({"period": period, "provider_id": provider,
                         "settlement_mode": mode, "currencies": [currency]});
        let (status, got) = s
            .call(
                "get",
                &format!("/v1/provider/statements/{period}"),
                &keys[provider],
                json!(null),
            )
            .await;
        assert_eq!((status, &got), (200, &one), "{provider}");
        let (status, list) = s
            .call(
                "get",
                "/v1/provider/statements",
                &keys[provider],
                json!(null),
            )
            .await;
        assert_eq!((status, &list["data"]), (200, &json!([one])), "{provider}");
    }
    assert_eq!(want[1].2["net"], "2.11");
    // A month that is not one, and the statement of a month with nothing.
    let (status, body) = s
        .call(
            "get",
            "/v1/provider/statements/2026-13",
            &keys["appco"],
            json!(null),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_period"))
    );
    let (_, empty) = s
        .call(
            "get",
            &format!("/v1/provider/statements/{}", open.label()),
            &keys["appco"],
            json!(null),
        )
        .await;
    assert_eq!(empty["currencies"], json!([]));

    // Every margin-report row: each provider sees its immediate
    // customers only; the upstream cost split by the quantity done on each
    // one's behalf (baseco's 2.88: 100 of 125 units for appco-billing, 25
    // on nobody's).
    let row = |consumer: &str, sku: &str, revenue: Decimal, net: Decimal, cost: Decimal| {
        json!({"period": period, "consumer": consumer, "sku": sku, "currency": "USD",
               "revenue": money(revenue), "revenue_net": money(net), "upstream_cost": money(cost),
               "margin": money(net - cost)})
    };
    let share = |amount: Decimal, part: i64, of: i64| {
        cents(amount * Decimal::from(part) / Decimal::from(of))
    };
    for (provider, rows) in [
        (
            "appco",
            json!([
                row(
                    "alpha",
                    "appco.app.hour",
                    alpha_app,
                    alpha_app - alpha_fee,
                    share(mid, 30, 42)
                ),
                row(
                    "beta",
                    "appco.app.hour",
                    beta_app,
                    beta_app - beta_fee,
                    share(mid, 12, 42)
                ),
            ]),
        ),
        (
            "midco",
            json!([row(
                "appco-billing",
                "midco.db.hour",
                mid,
                midco_net,
                share(base, 100, 125)
            )]),
        ),
        (
            "baseco",
            json!([row(
                "midco-billing",
                "baseco.store.gb",
                base,
                baseco_net,
                zero
            )]),
        ),
    ] {
        let (status, report) = s
            .call(
                "get",
                &format!("/v1/provider/margin?period={period}"),
                &keys[provider],
                json!(null),
            )
            .await;
        assert_eq!((status, &report["data"]), (200, &rows), "{provider}");
    }

    // Who sees what along the chain: baseco neither the consumers' bills
    // nor its customer's invoice; a consumer no provider's statement.
    let alpha_bill = format!("/v1/accounts/alpha/bill?period={period}");
    assert_eq!(
        s.call("get", &alpha_bill, &keys["baseco"], json!(null))
            .await
            .0,
        403
    );
    // midco's own invoice is midco's: neither its supplier's nor its
    // customer's to read.
    let midco_id = midco_invoice["id"].as_str().unwrap();
    let own_invoice = format!("/v1/provider/account/invoices/{midco_id}");
    for (key, status) in [
        (&keys["baseco"], 404),
        (&keys["appco"], 404),
        (&keys["midco"], 200),
    ] {
        assert_eq!(
            s.call("get", &own_invoice, key, json!(null)).await.0,
            status
        );
    }
    let statements = "/v1/provider/statements";
    assert_eq!(
        s.call("get", statements, &s.keys.acme, json!(null)).await.0,
        403
    );

    // The reconciliation: the month's identity, and the chain's.
    let invoiced = alpha_app + beta_app + mid + base;
    let fees = alpha_fee + beta_fee + mid_fee + base_fee;
    let settled = appco_net + midco_net + baseco_net;
    assert_eq!(invoiced, fees + settled);
    let (status, rec) = s
        .call(
            "get",
            &format!("/v1/reconciliation?period={period}"),
            &s.keys.finance,
            json!(null),
        )
        .await;
    assert_eq!(status, 200, "{rec}");
    assert_eq!(
        rec["currencies"],
        json!([{"currency": "USD", "invoices": 4, "subtotals": money(invoiced), "voided": "0.00",
                "credit_notes": "0.00", "invoiced": money(invoiced),
                "platform_revenue": money(fees - credit), "partner_settlements": money(settled),
                "credits_applied": money(credit), "difference": "0.00", "problems": [],
                // No SKU markup and no contract: the list value is what
                // was invoiced, and there is no discount.
                "list_value": money(invoiced), "markups": "0.00", "discounts": "0.00",
                "platform_funded_discounts": "0.00", "partner_funded_discounts": "0.00",
                "discount_difference": "0.00"}])
    );
    assert_eq!(
        rec["chains"],
        json!([{"root": "appco", "members": ["appco", "baseco", "midco"],
                "currencies": [{"currency": "USD", "to_consumers": money(alpha_app + beta_app),
                                "to_providers": money(mid + base), "invoiced": money(invoiced),
                                "platform_revenue": money(fees - credit),
                                "settlements": money(settled), "credits_applied": money(credit),
                                "difference": "0.00"}]}])
    );
    assert_eq!(rec["chains"][0]["currencies"][0]["invoiced"], "14.08");
    let out = cli(&["reconcile", "--period", &period]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("  chain appco: members appco, baseco, midco\n"),
        "{text}"
    );

    // A credit note of 0.50 on baseco's line of midco's invoice: a
    // correction of the month it is made in. The month above is settled
    // and does not change; in the month of the note, midco is paid 0.50
    // back (gross: its due is negative) and baseco gives back its part.
    let position: i32 = sqlx::query_scalar(
        "SELECT position FROM invoice_lines WHERE invoice_id = $1::uuid AND sku_id = 'baseco.store.gb'",
    )
    .bind(midco_id)
    .fetch_one(&s.h.pool)
    .await
    .unwrap();
    let (status, note) = s
        .call(
            "post",
            &format!("/v1/invoices/{midco_id}/credit-notes"),
            &s.keys.finance,
            json!({"reason": "outage", "lines": [{"position": position, "amount": "0.50"}]}),
        )
        .await;
    assert_eq!(status, 201, "{note}");
    let made: chrono::DateTime<chrono::Utc> = note["created_at"].as_str().unwrap().parse().unwrap();
    let made = Period::month_containing(made).label();
    assert_ne!(made, period);
    let noted = d("0.50");
    let back = cents(noted * baseco_net / base);
    assert_eq!(back, d("0.46"));
    let (_, october) = s
        .call(
            "get",
            &format!("/v1/provider/statements/{period}"),
            &keys["midco"],
            json!(null),
        )
        .await;
    assert_eq!(october["currencies"][0], want[1].2);
    let statement_of = |provider: &'static str| {
        let url = format!("/v1/provider/statements/{made}");
        let (s, key) = (&s, keys[provider].clone());
        async move { s.call("get", &url, &key, json!(null)).await.1["currencies"].clone() }
    };
    let zero_sales = |settlement: Decimal, notes: Decimal, own: Decimal, payments: Value| {
        json!([{"currency": "USD", "consumers_owe": "0.00", "platform_fee": "0.00",
                "credit_notes": money(notes), "settlement": money(settlement), "own_invoices": 0,
                "invoiced": money(own), "credits_applied": "0.00", "due": money(own),
                "net": money(settlement - own), "payments": payments}])
    };
    assert_eq!(
        statement_of("midco").await,
        zero_sales(
            zero,
            zero,
            -noted,
            json!([{"payer": "platform", "amount": money(noted)}])
        )
    );
    assert_eq!(
        statement_of("baseco").await,
        zero_sales(
            -back,
            back,
            zero,
            json!([{"payer": "provider", "amount": money(back)}])
        )
    );
    let (_, rec) = s
        .call(
            "get",
            &format!("/v1/reconciliation?period={made}"),
            &s.keys.finance,
            json!(null),
        )
        .await;
    let usd = &rec["currencies"][0];
    assert_eq!(
        [
            &usd["credit_notes"],
            &usd["invoiced"],
            &usd["platform_revenue"],
            &usd["partner_settlements"],
            &usd["difference"]
        ],
        [
            &money(noted),
            &money(-noted),
            &money(back - noted),
            &money(-back),
            &json!("0.00")
        ],
        "{rec}"
    );
    // In that month midco's account is billed (back) and no provider's
    // by midco: midco roots the month's chain.
    assert_eq!(
        rec["chains"],
        json!([{"root": "midco", "members": ["midco", "baseco"],
                "currencies": [{"currency": "USD", "to_consumers": "0.00",
                                "to_providers": money(-noted), "invoiced": money(-noted),
                                "platform_revenue": money(back - noted),
                                "settlements": money(-back), "credits_applied": "0.00",
                                "difference": "0.00"}]}])
    );
    s.running.stop().await.unwrap();
}

/// `tally create-provider --settlement-mode`: the platform creates a
/// provider settled net; a mode that is neither is refused, and nothing is
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_a_provider_settled_net_or_nothing() {
    let h = Harness::new().await;
    let create = |id: &str, mode: &str| {
        h.tally(&[
            "create-provider",
            "--id",
            id,
            "--name",
            id,
            "--settlement-mode",
            mode,
        ])
        .output()
        .unwrap()
    };
    let out = create("netco", "net");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!create("oddco", "sideways").status.success());
    let modes: Vec<(String, String)> =
        sqlx::query_as("SELECT id, settlement_mode FROM providers WHERE id IN ('netco', 'oddco')")
            .fetch_all(&h.pool)
            .await
            .unwrap();
    assert_eq!(modes, [("netco".to_owned(), "net".to_owned())]);
}
