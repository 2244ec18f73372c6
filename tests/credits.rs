//! Platform credits end to end: a startup programme credit paying for a
//! partner's usage, a first-party-only promotion beside it that expires in the
//! middle of the month, grants of different priorities, a grant running out
//! mid-period with the next one taking over, balances carried into the next
//! month, a grant given after the usage was rated, a void, and the finance
//! API's errors and tenancy. Every amount is worked out here by hand from the
//! catalog's prices.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{DateTime, Duration, Utc};
use common::*;
use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally::up::Service;
use tally_domain::Period;

fn cents(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

/// Day `day` (1-based) of `period`, at `hour` UTC.
fn at(period: &Period, day: i64, hour: i64) -> DateTime<Utc> {
    period.start() + Duration::days(day - 1) + Duration::hours(hour)
}

async fn post(http: &reqwest::Client, url: String, key: &str, body: Value) -> (u16, Value) {
    let r = http
        .post(url)
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("not a decimal string: {v}"))
        .parse()
        .unwrap()
}

/// (name, amount) of each credit line of a bill, in order.
fn credit_lines(bill: &Value) -> Vec<(String, Decimal)> {
    bill["credits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap().to_owned(), dec_of(&c["amount"])))
        .collect()
}

/// Polls the bill of `key` (account, period) until its subtotal and total
/// are `expected` (or a minute passes); returns it as last seen.
async fn wait_for_subtotal_and_total(
    http: &reqwest::Client,
    invoicing: &str,
    finance_key: &str,
    key: &(String, String),
    expected: (Decimal, Decimal),
) -> Value {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let bills = wait_for_totals(
            http,
            invoicing,
            finance_key,
            &BTreeMap::from([(key.clone(), expected.1)]),
            std::time::Duration::from_secs(60),
        )
        .await;
        let bill = bills.get(key).cloned().unwrap_or(Value::Null);
        if bill["subtotal"].as_str() == Some(expected.0.to_string().as_str())
            || tokio::time::Instant::now() > until
        {
            return bill;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credits_pay_in_order_within_scope_and_window_and_carry_their_balance() {
    // Two whole past months, so every day of both can be used.
    let s = Seeded::start_with(&Service::ALL, 100, |c| {
        c.ingest_max_age = std::time::Duration::from_secs(100 * 86_400);
    })
    .await;
    let Seeded {
        h: _h,
        keys,
        collector,
        invoicing,
        http,
        now,
        ..
    } = &s;
    let p1 = Period::month_containing(*now - Duration::days(62));
    let p2 = Period::month_containing(*now - Duration::days(31));
    let grants_url = format!("{invoicing}/v1/accounts/acme/grants");

    // The grants, before any usage.
    let mut ids = BTreeMap::new();
    for (name, body) in [
        (
            "programme",
            json!({"name": "Startup programme", "kind": "programme", "amount": "50.00",
                   "priority": 10, "effective_at": p1.start(),
                   "eligibility": {"scope": "providers", "ids": ["dbco"]}}),
        ),
        (
            "promo",
            json!({"name": "Welcome promotion", "kind": "promotional", "amount": "30.00",
                   "priority": 5, "effective_at": p1.start(), "expires_at": at(&p1, 16, 0),
                   "eligibility": {"scope": "first_party_only"}}),
        ),
        (
            "prepaid",
            json!({"name": "Partner commitment", "kind": "prepaid", "cost_basis": "72.00",
                   "amount": "80.00", "currency": "USD", "priority": 20, "effective_at": p1.start(),
                   "eligibility": {"scope": "providers", "ids": ["queueco", "dbco"]}}),
        ),
    ] {
        let (status, grant) = post(http, grants_url.clone(), &keys.finance, body).await;
        assert_eq!(status, 201, "{grant}");
        assert_eq!(grant["remaining"], grant["amount"]);
        ids.insert(name, grant["id"].as_i64().unwrap());
    }

    // Usage in the first month.
    let vm = dec!(0.0416);
    let db = dec!(0.2475);
    let msgs = dec!(0.405);
    let events = vec![
        event(
            "a1",
            "cloud",
            "acme",
            "cloud.vm.hour",
            "250",
            at(&p1, 5, 10),
        ),
        event(
            "a2",
            "cloud",
            "acme",
            "cloud.vm.hour",
            "250",
            at(&p1, 20, 10),
        ),
        event("b1", "dbco", "acme", "dbco.db.hour", "100", at(&p1, 3, 1)),
        event("b2", "dbco", "acme", "dbco.db.hour", "100", at(&p1, 10, 1)),
        event("b3", "dbco", "acme", "dbco.db.hour", "100", at(&p1, 25, 1)),
        event(
            "c1",
            "queueco",
            "acme",
            "queueco.msg.million",
            "100",
            at(&p1, 8, 1),
        ),
    ];
    for e in events {
        let key = match e["source"].as_str().unwrap() {
            "cloud" => &keys.cloud,
            "dbco" => &keys.dbco,
            _ => &keys.queueco,
        };
        let (status, body) = post_events(http, collector, key, &[e]).await;
        assert_eq!(status, 202, "{body}");
    }

    // The first month by hand. Lines: vm 500 h, db 300 h, messages 100 M.
    let vm_half = cents(dec!(250) * vm); // 10.40 on day 5, 10.40 on day 20
    let db_third = cents(dec!(100) * db); // 24.75 on days 3, 10 and 25
    let msgs_line = cents(dec!(100) * msgs); // 40.50 on day 8
    let p1_subtotal = cents(dec!(500) * vm) + cents(dec!(300) * db) + msgs_line;
    assert_eq!(p1_subtotal, dec!(135.55));
    // Priority 5 first: the promotion pays first-party usage until day 16 only.
    let promo_p1 = vm_half.min(dec!(30.00));
    // Priority 10: the programme pays DB Co, days 3 and 10 in full, then runs
    // out on day 25.
    let programme_p1 = dec!(50.00).min(db_third * dec!(3));
    let db_day25_left = db_third * dec!(3) - programme_p1;
    // Priority 20: the commitment takes over: messages, then the rest of day 25.
    // Nothing pays for the virtual machines after the promotion expired.
    let prepaid_p1 = (msgs_line + db_day25_left).min(dec!(80.00));
    let p1_credits = promo_p1 + programme_p1 + prepaid_p1;
    let p1_total = p1_subtotal - p1_credits;
    assert_eq!(
        (promo_p1, programme_p1, prepaid_p1, p1_total),
        (dec!(10.40), dec!(50.00), dec!(64.75), vm_half)
    );

    let p1_key = ("acme".to_owned(), p1.label());
    // The total is the same before the messages (paid in full by the
    // commitment) are rated: wait for the subtotal too.
    let bill = &wait_for_subtotal_and_total(
        http,
        invoicing,
        &keys.finance,
        &p1_key,
        (p1_subtotal, p1_total),
    )
    .await;
    assert_eq!(dec_of(&bill["subtotal"]), p1_subtotal, "{bill}");
    assert_eq!(dec_of(&bill["credits_total"]), p1_credits);
    assert_eq!(
        credit_lines(bill),
        [
            ("Welcome promotion".to_owned(), promo_p1),
            ("Startup programme".to_owned(), programme_p1),
            ("Partner commitment".to_owned(), prepaid_p1),
        ]
    );

    // The next month starts from what is left: only the commitment (15.25).
    for (e, key) in [
        (
            event("d1", "dbco", "acme", "dbco.db.hour", "100", at(&p2, 2, 3)),
            &keys.dbco,
        ),
        (
            event("d2", "cloud", "acme", "cloud.vm.hour", "500", at(&p2, 2, 3)),
            &keys.cloud,
        ),
    ] {
        let (status, body) = post_events(http, collector, key, &[e]).await;
        assert_eq!(status, 202, "{body}");
    }
    let prepaid_left = dec!(80.00) - prepaid_p1;
    let p2_subtotal = cents(dec!(100) * db) + cents(dec!(500) * vm);
    let prepaid_p2 = prepaid_left.min(db_third);
    let p2_key = ("acme".to_owned(), p2.label());
    wait_for_totals(
        http,
        invoicing,
        &keys.finance,
        &BTreeMap::from([(p2_key.clone(), p2_subtotal - prepaid_p2)]),
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!((prepaid_p2, p2_subtotal), (dec!(15.25), dec!(45.55)));

    // A goodwill credit given now, after the usage was rated, with the
    // highest priority: the second month is restated; it pays first, on the
    // platform's line (the first line of the same hour).
    let (status, goodwill) = post(
        http,
        grants_url.clone(),
        &keys.finance,
        json!({"name": "Goodwill", "kind": "promotional", "amount": "5.00", "priority": 1,
               "effective_at": p2.start()}),
    )
    .await;
    assert_eq!(status, 201, "{goodwill}");
    let bills = wait_for_totals(
        http,
        invoicing,
        &keys.finance,
        &BTreeMap::from([
            (p2_key.clone(), p2_subtotal - dec!(5.00) - prepaid_p2),
            (p1_key.clone(), p1_total),
        ]),
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!(
        credit_lines(&bills[&p2_key]),
        [
            ("Goodwill".to_owned(), dec!(5.00)),
            ("Partner commitment".to_owned(), dec!(15.25)),
        ]
    );
    assert_eq!(credit_lines(&bills[&p1_key]).len(), 3);

    // Balances and ledger.
    let (status, list) = get(http, &grants_url, &keys.finance).await;
    assert_eq!(status, 200, "{list}");
    let by_name: BTreeMap<String, &Value> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["name"].as_str().unwrap().to_owned(), g))
        .collect();
    let view = |name: &str| {
        let g = by_name[name];
        (
            dec_of(&g["drawn"]),
            dec_of(&g["remaining"]),
            g["status"].as_str().unwrap().to_owned(),
        )
    };
    assert_eq!(
        view("Startup programme"),
        (dec!(50.00), dec!(0), "depleted".into())
    );
    assert_eq!(
        view("Welcome promotion"),
        (dec!(10.40), dec!(19.60), "expired".into())
    );
    assert_eq!(
        view("Partner commitment"),
        (dec!(80.00), dec!(0), "depleted".into())
    );
    assert_eq!(view("Goodwill"), (dec!(5.00), dec!(0), "depleted".into()));

    let (status, ledger) = get(
        http,
        &format!("{invoicing}/v1/grants/{}/ledger", ids["prepaid"]),
        &keys.finance,
    )
    .await;
    assert_eq!(status, 200, "{ledger}");
    let entries: Vec<(String, Option<String>, Decimal)> = ledger["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["period"].as_str().map(str::to_owned),
                dec_of(&e["amount"]),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("grant".into(), None, dec!(80.00)),
            ("draw".into(), Some(p1.label()), -prepaid_p1),
            ("draw".into(), Some(p2.label()), -prepaid_p2),
        ]
    );
    let (status, account_ledger) = get(
        http,
        &format!("{invoicing}/v1/accounts/acme/credit-ledger"),
        &keys.finance,
    )
    .await;
    assert_eq!(status, 200);
    let entries = account_ledger["data"].as_array().unwrap();
    // 4 grants, draws: promotion 1, programme 1, commitment 2, goodwill 1.
    assert_eq!(entries.len(), 4 + 5, "{account_ledger}");
    let net: Decimal = entries.iter().map(|e| dec_of(&e["amount"])).sum();
    assert_eq!(
        net,
        dec!(19.60),
        "only the expired promotion's rest is left"
    );

    // Voiding the unused part of a grant that never found eligible usage.
    let (status, unused) = post(
        http,
        grants_url.clone(),
        &keys.finance,
        json!({"name": "Egress offer", "kind": "promotional", "amount": "7.00",
               "eligibility": {"scope": "skus", "ids": ["cloud.egress.gb"]}}),
    )
    .await;
    assert_eq!(status, 201, "{unused}");
    let void_url = format!("{invoicing}/v1/grants/{}/void", unused["id"]);
    let (status, voided) = post(
        http,
        void_url.clone(),
        &keys.finance,
        json!({"reason": "offer withdrawn"}),
    )
    .await;
    assert_eq!(status, 200, "{voided}");
    assert_eq!(
        (
            dec_of(&voided["voided_amount"]),
            dec_of(&voided["remaining"]),
            voided["status"].as_str().unwrap()
        ),
        (dec!(7.00), dec!(0), "voided")
    );
    let (status, again) = post(http, void_url, &keys.finance, json!({"reason": "twice"})).await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("grant_voided"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grant_requests_are_checked_and_only_finance_may_grant() {
    let s = Seeded::start(&[Service::Invoicing, Service::Api]).await;
    let Seeded {
        h: _h,
        keys,
        invoicing,
        http,
        ..
    } = &s;
    let url = format!("{invoicing}/v1/accounts/acme/grants");
    let ok = json!({"name": "Promo", "kind": "promotional", "amount": "10.00"});
    let with = |patch: Value| {
        let mut body = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for (body, status, code) in [
        (with(json!({"currency": "EUR"})), 422, "currency_mismatch"),
        (with(json!({"amount": "10.001"})), 422, "invalid_amount"),
        (with(json!({"amount": "0"})), 422, "invalid_amount"),
        (
            with(json!({"effective_at": "2026-11-01T00:30:00Z"})),
            422,
            "validity_not_hour_aligned",
        ),
        (
            with(
                json!({"effective_at": "2026-11-02T00:00:00Z", "expires_at": "2026-11-01T00:00:00Z"}),
            ),
            422,
            "invalid_validity",
        ),
        (with(json!({"kind": "prepaid"})), 422, "invalid_cost_basis"),
        (
            with(json!({"cost_basis": "1.00"})),
            422,
            "invalid_cost_basis",
        ),
        (with(json!({"kind": "gift"})), 422, "invalid_grant_kind"),
        (
            with(json!({"eligibility": {"scope": "providers", "ids": ["nobody"]}})),
            422,
            "unknown_provider",
        ),
        (
            with(json!({"eligibility": {"scope": "skus", "ids": ["dbco.nothing"]}})),
            422,
            "unknown_sku",
        ),
        (
            with(json!({"eligibility": {"scope": "providers"}})),
            422,
            "invalid_eligibility",
        ),
        (with(json!({"colour": "red"})), 400, "invalid_request"),
    ] {
        let (got, answer) = post(http, url.clone(), &keys.finance, body.clone()).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {answer}"
        );
    }
    let (status, _) = post(
        http,
        format!("{invoicing}/v1/accounts/nobody/grants"),
        &keys.finance,
        ok.clone(),
    )
    .await;
    assert_eq!(status, 404);

    // Who may do what.
    for key in [&keys.acme, &keys.dbco, &keys.umbrella] {
        let (status, _) = post(http, url.clone(), key, ok.clone()).await;
        assert_eq!(status, 403);
    }
    let (status, grant) = post(http, url.clone(), &keys.admin, ok.clone()).await;
    assert_eq!(status, 201, "{grant}");
    let id = grant["id"].as_i64().unwrap();
    assert_eq!(
        get(http, &url, &keys.acme).await.0,
        200,
        "the account reads its own grants"
    );
    assert_eq!(get(http, &url, &keys.umbrella).await.0, 403);
    assert_eq!(get(http, &url, &keys.dbco).await.0, 403);
    let grant_url = format!("{invoicing}/v1/grants/{id}");
    assert_eq!(get(http, &grant_url, &keys.finance).await.0, 200);
    assert_eq!(get(http, &grant_url, &keys.acme).await.0, 403);
    assert_eq!(
        get(
            http,
            &format!("{invoicing}/v1/grants/999999"),
            &keys.finance
        )
        .await
        .0,
        404
    );
    let (status, _) = post(
        http,
        format!("{grant_url}/void"),
        &keys.acme,
        json!({"reason": "mine"}),
    )
    .await;
    assert_eq!(status, 403);
}
