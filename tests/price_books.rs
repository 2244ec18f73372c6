//! Partner price books end to end: a price change in the middle of the month,
//! graduated, volume and package SKUs, a minimum charge with a recurring fee,
//! the platform's markup and fee; every line computed independently here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::*;
use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use tally::up::Service;
use tally_domain::ProviderKind;

fn cents(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

async fn admin_post(http: &reqwest::Client, url: String, key: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn price_books_bill_exactly_what_the_partner_publishes() {
    let h = Harness::new().await;
    let now = Utc::now();
    let period_start = tally_domain::Period::month_containing(now - Duration::minutes(30)).start();
    let mid = period_start + (now - Duration::minutes(30) - period_start) / 2;
    let long_ago = now - Duration::days(60);
    let running = h.start(&Service::ALL).await;
    let base = running.api_url().unwrap();
    let collector = running.collector_url().unwrap();
    let http = reqwest::Client::new();
    let admin = tally::admin::create_staff_key(&h.pool, "admin")
        .await
        .unwrap();
    let finance = tally::admin::create_staff_key(&h.pool, "finance")
        .await
        .unwrap();

    // The partner, its revenue share, its SKUs and its price books, through the admin API.
    let (status, body) = admin_post(
        &http,
        format!("{base}/v1/admin/providers"),
        &admin,
        json!({"id": "dbco", "name": "DB Co", "kind": "partner", "platform_fee_pct": "20"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let dbco = body["api_key"].as_str().unwrap().to_owned();
    for (sku, markup) in [
        ("dbco.db.hour", Some("10")),
        ("dbco.storage.gb", None),
        ("dbco.iops", None),
        ("dbco.backup", None),
        ("dbco.support", None),
    ] {
        let mut body = json!({"id": sku, "provider_id": "dbco", "name": sku, "unit": "unit"});
        if let Some(m) = markup {
            body["markup_pct"] = json!(m);
        }
        assert_eq!(
            admin_post(&http, format!("{base}/v1/admin/skus"), &admin, body)
                .await
                .0,
            201
        );
    }
    let books = [
        (
            "dbco.db.hour",
            long_ago,
            json!({"model": "per_unit", "unit_price": "0.25"}),
        ),
        (
            "dbco.db.hour",
            mid,
            json!({"model": "per_unit", "unit_price": "0.30"}),
        ),
        (
            "dbco.storage.gb",
            long_ago,
            json!({"model": "graduated", "tiers": [
            {"up_to": "100", "unit_price": "0.10"}, {"up_to": "1000", "unit_price": "0.08"}, {"unit_price": "0.05"}]}),
        ),
        (
            "dbco.iops",
            long_ago,
            json!({"model": "volume", "tiers": [
            {"up_to": "1000", "unit_price": "0.002"}, {"up_to": "10000", "unit_price": "0.0015"}, {"unit_price": "0.001"}]}),
        ),
        (
            "dbco.backup",
            long_ago,
            json!({"model": "package", "package_size": "50", "package_price": "2.00"}),
        ),
        (
            "dbco.support",
            long_ago,
            json!({"model": "per_unit", "unit_price": "1.00", "minimum_charge": "25", "recurring_fee": "5"}),
        ),
    ];
    for (sku, from, book) in books {
        let (status, body) = admin_post(
            &http,
            format!("{base}/v1/admin/prices"),
            &admin,
            json!({"sku": sku, "currency": "USD", "effective_from": from, "price_book": book}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    tally::admin::create_account(&h.pool, "acme", "Acme", "USD")
        .await
        .unwrap();

    // Usage: per-unit SKU on both sides of the price change, the others mid-month.
    let before = mid - Duration::seconds(1);
    let after = mid + Duration::seconds(1);
    let mut events = Vec::new();
    for i in 0..10 {
        events.push(event(
            &format!("h-old-{i}"),
            "dbco",
            "acme",
            "dbco.db.hour",
            "3.5",
            before,
        ));
        events.push(event(
            &format!("h-new-{i}"),
            "dbco",
            "acme",
            "dbco.db.hour",
            "2.25",
            after,
        ));
    }
    for i in 0..12 {
        events.push(event(
            &format!("s-{i}"),
            "dbco",
            "acme",
            "dbco.storage.gb",
            "100.5",
            after,
        ));
    }
    for i in 0..7 {
        events.push(event(
            &format!("io-{i}"),
            "dbco",
            "acme",
            "dbco.iops",
            "1234",
            after,
        ));
    }
    for i in 0..3 {
        events.push(event(
            &format!("b-{i}"),
            "dbco",
            "acme",
            "dbco.backup",
            "40.1",
            after,
        ));
    }
    for i in 0..2 {
        events.push(event(
            &format!("sup-{i}"),
            "dbco",
            "acme",
            "dbco.support",
            "4",
            after,
        ));
    }
    let (status, body) = post_events(&http, &collector, &dbco, &events).await;
    assert_eq!(
        (status, body["rejected"].as_u64()),
        (202, Some(0)),
        "{body}"
    );

    // Independently: (kind, sku, customer amount, list amount) per line.
    let graduated =
        dec!(100) * dec!(0.10) + dec!(900) * dec!(0.08) + (dec!(1206) - dec!(1000)) * dec!(0.05);
    let volume = dec!(8638) * dec!(0.0015);
    let packages = (dec!(120.3) / dec!(50)).ceil() * dec!(2.00);
    let support = dec!(8) * dec!(1.00);
    let want = vec![
        ("usage", "dbco.backup", cents(packages), cents(packages)),
        (
            "usage",
            "dbco.db.hour",
            cents(dec!(35) * dec!(0.25) * dec!(1.1)),
            cents(dec!(35) * dec!(0.25)),
        ),
        (
            "usage",
            "dbco.db.hour",
            cents(dec!(22.5) * dec!(0.30) * dec!(1.1)),
            cents(dec!(22.5) * dec!(0.30)),
        ),
        ("usage", "dbco.iops", cents(volume), cents(volume)),
        (
            "usage",
            "dbco.storage.gb",
            cents(graduated),
            cents(graduated),
        ),
        ("usage", "dbco.support", cents(support), cents(support)),
        ("recurring_fee", "dbco.support", dec!(5.00), dec!(5.00)),
        (
            "minimum_true_up",
            "dbco.support",
            cents(dec!(25) - support),
            cents(dec!(25) - support),
        ),
    ];
    let total: Decimal = want.iter().map(|w| w.2).sum();
    assert_eq!(total, dec!(158.32), "the hand computation");
    let mut expected = std::collections::BTreeMap::new();
    let period = period_start.format("%Y-%m").to_string();
    expected.insert(("acme".to_owned(), period.clone()), total);
    let bills = wait_for_totals(
        &http,
        &base,
        &finance,
        &expected,
        std::time::Duration::from_secs(60),
    )
    .await;
    let bill = &bills[&("acme".to_owned(), period)];
    assert_eq!(bill["total"], total.to_string());

    let lines: Vec<&Value> = bill["sections"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    let mut got: Vec<(String, String, Decimal, Decimal)> = lines
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_owned(),
                l["sku"].as_str().unwrap().to_owned(),
                l["amount"].as_str().unwrap().parse().unwrap(),
                l["list_amount"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    got.sort_by(|a, b| {
        (a.1.clone(), a.0 != "usage", a.0.clone(), a.2).cmp(&(
            b.1.clone(),
            b.0 != "usage",
            b.0.clone(),
            b.2,
        ))
    });
    let mut want: Vec<(String, String, Decimal, Decimal)> = want
        .into_iter()
        .map(|(k, s, a, l)| (k.to_owned(), s.to_owned(), a, l))
        .collect();
    want.sort_by(|a, b| {
        (a.1.clone(), a.0 != "usage", a.0.clone(), a.2).cmp(&(
            b.1.clone(),
            b.0 != "usage",
            b.0.clone(),
            b.2,
        ))
    });
    assert_eq!(got, want);
    // Every line splits into platform fee (20 % of list, rounded) and partner net.
    for l in &lines {
        let list: Decimal = l["list_amount"].as_str().unwrap().parse().unwrap();
        let fee: Decimal = l["platform_fee"].as_str().unwrap().parse().unwrap();
        let net: Decimal = l["partner_net"].as_str().unwrap().parse().unwrap();
        let amount: Decimal = l["amount"].as_str().unwrap().parse().unwrap();
        let markup: Decimal = l["markup"].as_str().unwrap().parse().unwrap();
        assert_eq!(fee, cents(list * dec!(0.2)), "{l}");
        assert_eq!(fee + net, list);
        assert_eq!(list + markup, amount);
    }
    // The two db.hour lines show the two prices in effect.
    let prices: Vec<&str> = lines
        .iter()
        .filter(|l| l["sku"] == "dbco.db.hour")
        .map(|l| l["unit_price"].as_str().unwrap())
        .collect();
    assert_eq!(prices, ["0.25", "0.30"]);
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_price_books_are_refused_and_nothing_is_stored() {
    let h = Harness::new().await;
    let running = h.start(&[Service::Invoicing, Service::Api]).await;
    let base = running.api_url().unwrap();
    let http = reqwest::Client::new();
    let admin = tally::admin::create_staff_key(&h.pool, "admin")
        .await
        .unwrap();
    tally::admin::create_provider(&h.pool, "dbco", "DB Co", ProviderKind::Partner)
        .await
        .unwrap();
    tally::admin::create_sku(&h.pool, "dbco.x", "dbco", "X", "unit")
        .await
        .unwrap();
    let from = Utc::now();
    let cases = [
        (
            json!({"model": "per_unit", "unit_price": "-1"}),
            "USD",
            "invalid_price",
        ),
        (
            json!({"model": "graduated", "tiers": [{"up_to": "100", "unit_price": "1"}, {"up_to": "50", "unit_price": "1"}, {"unit_price": "1"}]}),
            "USD",
            "invalid_price",
        ),
        (
            json!({"model": "volume", "tiers": [{"up_to": "100", "unit_price": "1"}]}),
            "USD",
            "invalid_price",
        ),
        (
            json!({"model": "package", "package_size": "0", "package_price": "1"}),
            "USD",
            "invalid_price",
        ),
        (
            json!({"model": "per_unit", "unit_price": "1", "minimum_charge": "-5"}),
            "USD",
            "invalid_price",
        ),
        (
            json!({"model": "per_unit", "unit_price": "1"}),
            "XYZ",
            "unknown_currency",
        ),
    ];
    for (book, currency, code) in cases {
        let (status, body) = admin_post(&http, format!("{base}/v1/admin/prices"), &admin,
            json!({"sku": "dbco.x", "currency": currency, "effective_from": from, "price_book": book})).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some(code)),
            "{book}"
        );
    }
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM prices")
        .fetch_one(&h.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    // The same version twice is a conflict, not a second price.
    let ok = json!({"sku": "dbco.x", "currency": "USD", "effective_from": from, "unit_price": "1"});
    assert_eq!(
        admin_post(&http, format!("{base}/v1/admin/prices"), &admin, ok.clone())
            .await
            .0,
        201
    );
    let (status, body) = admin_post(&http, format!("{base}/v1/admin/prices"), &admin, ok).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("price_version_exists"))
    );
    running.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn providers_manage_only_their_own_catalog_and_never_backdate() {
    let h = Harness::new().await;
    let now = Utc::now();
    let keys = seed_catalog(&h.pool, now - Duration::days(60)).await;
    let running = h.start(&[Service::Invoicing, Service::Api]).await;
    let base = running.api_url().unwrap();
    let http = reqwest::Client::new();
    let skus = format!("{base}/v1/provider/skus");

    // Its own SKUs only.
    let (status, body) = get(&http, &skus, &keys.dbco).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["dbco.db.hour"]);

    // A new SKU in its own namespace; not in another's.
    let (status, _) = admin_post(
        &http,
        skus.clone(),
        &keys.dbco,
        json!({"id": "dbco.replica.hour", "name": "Read replica", "unit": "hour"}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, body) = admin_post(
        &http,
        skus.clone(),
        &keys.dbco,
        json!({"id": "cloud.sneaky", "name": "x", "unit": "hour"}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("sku_not_in_namespace"))
    );

    // Price versions: now or later; never in the past.
    let prices = format!("{skus}/dbco.replica.hour/prices");
    let book = json!({"model": "per_unit", "unit_price": "0.12"});
    let (status, body) = admin_post(
        &http,
        prices.clone(),
        &keys.dbco,
        json!({"currency": "USD", "effective_from": now - Duration::hours(1), "price_book": book}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("effective_in_past"))
    );
    let (status, _) = admin_post(
        &http,
        prices.clone(),
        &keys.dbco,
        json!({"currency": "USD", "price_book": book}),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = admin_post(&http, prices.clone(), &keys.dbco,
        json!({"currency": "USD", "effective_from": now + Duration::days(3), "price_book": {"model": "per_unit", "unit_price": "0.10"}})).await;
    assert_eq!(status, 201);
    let (status, body) = get(&http, &prices, &keys.dbco).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    // A wholesale version (issue 17: what providers' own accounts pay) is
    // listed to its provider beside the list versions, each with its
    // audience; `?audience=` picks one.
    let (status, body) = admin_post(
        &http,
        prices.clone(),
        &keys.dbco,
        json!({"currency": "USD", "effective_from": now + Duration::days(3), "audience": "provider",
               "price_book": {"model": "per_unit", "unit_price": "0.08"}}),
    )
    .await;
    assert_eq!(
        (status, &body["audience"]),
        (201, &json!("provider")),
        "{body}"
    );
    let listed = |body: &Value| -> Vec<(String, String)> {
        body["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["audience"].as_str().unwrap().to_owned(),
                    v["model"]["unit_price"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (status, body) = get(&http, &prices, &keys.dbco).await;
    assert_eq!(status, 200);
    assert_eq!(
        listed(&body),
        [
            ("list".to_owned(), "0.12".to_owned()),
            ("list".to_owned(), "0.10".to_owned()),
            ("provider".to_owned(), "0.08".to_owned())
        ]
    );
    for (audience, want) in [("list", 2), ("provider", 1)] {
        let (status, body) = get(&http, &format!("{prices}?audience={audience}"), &keys.dbco).await;
        assert_eq!(status, 200);
        assert_eq!(listed(&body).len(), want, "{audience}");
        assert!(listed(&body).iter().all(|(a, _)| a == audience));
    }
    let (status, body) = get(&http, &format!("{prices}?audience=wholesale"), &keys.dbco).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_query"))
    );

    // Another provider's SKU does not exist for it; other roles are refused.
    let foreign = format!("{skus}/cloud.vm.hour/prices");
    assert_eq!(get(&http, &foreign, &keys.dbco).await.0, 404);
    let (status, _) = admin_post(
        &http,
        foreign.clone(),
        &keys.dbco,
        json!({"currency": "USD", "price_book": book}),
    )
    .await;
    assert_eq!(status, 404);
    for key in [&keys.finance, &keys.acme, &keys.admin] {
        let (status, body) = get(&http, &skus, key).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    assert_eq!(get(&http, &skus, "nope").await.0, 401);
    running.stop().await.unwrap();
}
