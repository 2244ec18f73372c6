//! Tenant isolation: a provider only emits for its own SKUs, a customer only
//! reads its own bill, finance endpoints refuse provider and customer keys.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use serde_json::json;
use tally::up::Service;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_isolated() {
    let Seeded {
        now,
        keys,
        running,
        collector,
        invoicing,
        http,
        h: _h,
    } = Seeded::start(&Service::ALL).await;
    let t = now - Duration::minutes(1);

    // A partner cannot send usage for the platform's SKU, nor for another partner's.
    let (status, body) = post_events(
        &http,
        &collector,
        &keys.dbco,
        &[
            event("x1", "dbco", "acme", "cloud.vm.hour", "1", t),
            event("x2", "dbco", "acme", "queueco.msg.million", "1", t),
            event("x3", "dbco", "acme", "dbco.db.hour", "4", t),
        ],
    )
    .await;
    assert_eq!(status, 202);
    let codes: Vec<_> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].clone())
        .collect();
    assert_eq!(
        codes,
        [
            serde_json::json!("sku_not_owned"),
            serde_json::json!("sku_not_owned"),
            serde_json::Value::Null
        ]
    );
    // Nor can it pose as another provider.
    let (_, body) = post_events(
        &http,
        &collector,
        &keys.dbco,
        &[event(
            "x4",
            "queueco",
            "acme",
            "queueco.msg.million",
            "1",
            t,
        )],
    )
    .await;
    assert_eq!(body["results"][0]["code"], "source_mismatch");
    // Customer, finance and admin keys cannot send usage; unknown keys are 401.
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        let (status, _) = post_events(
            &http,
            &collector,
            key,
            &[event("x5", "dbco", "acme", "dbco.db.hour", "1", t)],
        )
        .await;
        assert_eq!(status, 403);
    }
    let (status, body) = post_events(
        &http,
        &collector,
        "tly_provider_not-a-key",
        &[event("x6", "dbco", "acme", "dbco.db.hour", "1", t)],
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // The same holds for a file upload: only provider keys, each line
    // checked as an event of the key's provider.
    let imports = format!("{collector}/v1/imports");
    let upload = |key: String, body: String| {
        let (http, url) = (http.clone(), imports.clone());
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let lines = [
        event("u1", "dbco", "acme", "cloud.vm.hour", "1", t),
        event("u2", "queueco", "acme", "queueco.msg.million", "1", t),
    ]
    .map(|e| e.to_string())
    .join("\n");
    let (status, body) = upload(keys.dbco.clone(), lines.clone()).await;
    assert_eq!((status, &body["accepted"]), (200, &serde_json::json!(0)));
    let codes: Vec<_> = body["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["code"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(codes, ["sku_not_owned", "source_mismatch"]);
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        assert_eq!(upload(key.clone(), lines.clone()).await.0, 403);
    }
    let (status, body) = upload("tly_provider_not-a-key".into(), lines).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );

    // Wait until acme's usage is billed, then check who may read it.
    let period = t.format("%Y-%m").to_string();
    let mut expected = std::collections::BTreeMap::new();
    expected.insert(("acme".to_owned(), period.clone()), "0.99".parse().unwrap());
    let bills = wait_for_totals(
        &http,
        &invoicing,
        &keys.finance,
        &expected,
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!(bills.len(), 1);
    let invoice_id = bills.values().next().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let bill = |account: &str| format!("{invoicing}/v1/accounts/{account}/bill?period={period}");
    assert_eq!(get(&http, &bill("acme"), &keys.acme).await.0, 200);
    let (status, body) = get(&http, &bill("acme"), &keys.umbrella).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(get(&http, &bill("umbrella"), &keys.acme).await.0, 403);
    assert_eq!(get(&http, &bill("acme"), &keys.dbco).await.0, 403);
    assert_eq!(get(&http, &bill("acme"), "nope").await.0, 401);

    // Finance endpoints: finance and admin yes; providers and customers no.
    let list = format!("{invoicing}/v1/invoices");
    let one = format!("{invoicing}/v1/invoices/{invoice_id}");
    for url in [&list, &one] {
        assert_eq!(get(&http, url, &keys.finance).await.0, 200, "{url}");
        assert_eq!(get(&http, url, &keys.admin).await.0, 200, "{url}");
        for key in [&keys.cloud, &keys.dbco, &keys.acme, &keys.umbrella] {
            let (status, body) = get(&http, url, key).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{url}"
            );
        }
        assert_eq!(get(&http, url, "").await.0, 401);
    }

    // Usage corrections: a provider corrects only its own events, at the
    // collector, with a provider key; it reads only its own corrections;
    // finance (and admin) read an invoice's, providers and customers not.
    let post = |url: String, key: String, body: serde_json::Value| {
        let http = http.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (
                status,
                r.json::<serde_json::Value>().await.unwrap_or_default(),
            )
        }
    };
    let cancel_x3 = format!("{collector}/v1/events/x3/cancel");
    let reason = serde_json::json!({"reason": "not ours"});
    for key in [&keys.queueco, &keys.cloud] {
        let (status, body) = post(cancel_x3.clone(), key.clone(), reason.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("event_not_owned"))
        );
    }
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        let (status, body) = post(cancel_x3.clone(), key.clone(), reason.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
        let (status, _) = post(
            format!("{collector}/v1/backfills"),
            key.clone(),
            reason.clone(),
        )
        .await;
        assert_eq!(status, 403);
    }
    assert_eq!(
        post(cancel_x3.clone(), String::new(), reason.clone())
            .await
            .0,
        401
    );
    // A backfill's replacements follow the ingest rules: only its own SKUs.
    let (status, body) = post(
        format!("{collector}/v1/backfills"),
        keys.dbco.clone(),
        serde_json::json!({"account": "acme", "start": (t - Duration::minutes(1)).to_rfc3339(),
            "end": (t + Duration::seconds(1)).to_rfc3339(), "reason": "re-metered",
            "events": [event("x7", "dbco", "acme", "cloud.vm.hour", "1", t)]}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("sku_not_owned"))
    );
    // dbco amends its own event (to the same quantity: the totals stay).
    let (status, body) = post(
        format!("{collector}/v1/events/x3/amend"),
        keys.dbco.clone(),
        serde_json::json!({"reason": "checked", "quantity": "4"}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let mine = format!("{invoicing}/v1/provider/corrections");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let listed = loop {
        let (status, body) = get(&http, &mine, &keys.dbco).await;
        assert_eq!(status, 200);
        if body["data"].as_array().is_some_and(|d| !d.is_empty())
            || std::time::Instant::now() > deadline
        {
            break body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["data"][0]["status"], "applied");
    assert_eq!(listed["data"][0]["changes"][0]["change"], "amended");
    let (status, body) = get(&http, &mine, &keys.queueco).await;
    assert_eq!(
        (status, body["data"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        assert_eq!(get(&http, &mine, key).await.0, 403);
    }
    let of_invoice = format!("{invoicing}/v1/invoices/{invoice_id}/usage-corrections");
    for key in [&keys.finance, &keys.admin] {
        let (status, body) = get(&http, &of_invoice, key).await;
        assert_eq!(
            (status, body["data"].as_array().map(Vec::len)),
            (200, Some(1))
        );
    }
    for key in [&keys.cloud, &keys.dbco, &keys.acme, &keys.umbrella] {
        assert_eq!(get(&http, &of_invoice, key).await.0, 403);
    }
    assert_eq!(get(&http, &of_invoice, "").await.0, 401);

    // Reconciliation and exports: finance and admin only.
    for path in [
        "v1/reconciliation",
        "v1/exports/invoices.csv",
        "v1/exports/invoice-lines.csv",
    ] {
        let url = format!("{invoicing}/{path}?period={period}");
        assert_eq!(get(&http, &url, &keys.finance).await.0, 200, "{url}");
        assert_eq!(get(&http, &url, &keys.admin).await.0, 200, "{url}");
        for key in [&keys.cloud, &keys.dbco, &keys.acme, &keys.umbrella] {
            assert_eq!(get(&http, &url, key).await.0, 403, "{url}");
        }
        assert_eq!(get(&http, &url, "").await.0, 401, "{url}");
    }
    // Settlements: staff any partner's, a provider its own only, customers none.
    let settlements = format!("{invoicing}/v1/settlements?period={period}");
    assert_eq!(get(&http, &settlements, &keys.finance).await.0, 200);
    assert_eq!(get(&http, &settlements, &keys.dbco).await.0, 200);
    assert_eq!(
        get(
            &http,
            &format!("{settlements}&provider=queueco"),
            &keys.dbco
        )
        .await
        .0,
        403
    );
    for key in [&keys.acme, &keys.umbrella] {
        assert_eq!(get(&http, &settlements, key).await.0, 403);
    }
    // Credit notes: staff all, a customer its own account's, providers none.
    let notes = format!("{invoicing}/v1/credit-notes");
    for key in [&keys.finance, &keys.admin, &keys.acme] {
        assert_eq!(get(&http, &notes, key).await.0, 200);
    }
    assert_eq!(
        get(&http, &format!("{notes}?account=acme"), &keys.umbrella)
            .await
            .0,
        403
    );
    for key in [&keys.cloud, &keys.dbco] {
        assert_eq!(get(&http, &notes, key).await.0, 403);
    }
    // Corrections are finance's: providers and customers cannot void or credit.
    for (path, body) in [
        ("void", serde_json::json!({"reason": "x"})),
        ("credit-notes", serde_json::json!({"reason": "x"})),
    ] {
        for key in [&keys.dbco, &keys.acme] {
            let status = http
                .post(format!("{invoicing}/v1/invoices/{invoice_id}/{path}"))
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            assert_eq!(status, 403, "{path}");
        }
    }
    // Bill-page sessions: each opens its own account's page only; a key is
    // no session; signing out ends only the caller's own session.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let acme = set_cookie(
        &sign_in(&browser, &invoicing, &keys.acme).await,
        "tally_bill",
    )
    .unwrap();
    let umbrella = set_cookie(
        &sign_in(&browser, &invoicing, &keys.umbrella).await,
        "tally_bill",
    )
    .unwrap();
    let page = |account: &str, cookie: &str| {
        let request = browser
            .get(format!(
                "{invoicing}/accounts/{account}/bill?period={period}"
            ))
            .header("cookie", cookie.to_owned());
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(page("acme", &acme).await, 200);
    assert_eq!(page("acme", &umbrella).await, 403);
    assert_eq!(page("umbrella", &acme).await, 403);
    for key in [&keys.acme, &keys.finance, &keys.dbco] {
        assert_eq!(page("acme", &format!("tally_bill={key}")).await, 303);
    }
    for cookie in [
        &umbrella,
        &format!("tally_bill={}", &acme["tally_bill=".len()..].to_uppercase()),
    ] {
        let out = browser
            .post(format!("{invoicing}/logout"))
            .header("cookie", cookie.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(out.status().as_u16(), 303);
    }
    assert_eq!(
        page("acme", &acme).await,
        200,
        "another's sign-out ends no session of acme's"
    );
    assert_eq!(page("umbrella", &umbrella).await, 303);
    running.stop().await.unwrap();
}

/// Bindings: a customer sees and changes only its own account's, a
/// provider only those to itself (another's does not exist for it), the
/// platform any; finance reads but does not provision. Plans: a provider
/// publishes only in its own namespace and only on its own plans.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings_and_plans_are_isolated() {
    let s = Seeded::start(&[Service::Api]).await;
    let (http, api, keys) = (&s.http, s.invoicing.clone(), &s.keys);
    // dbco's plan (published by dbco; a version since the catalog's prices).
    let plans = format!("{api}/v1/provider/plans");
    let plan = json!({"id": "dbco.ps-10", "resource_type": "database", "name": "PS-10"});
    assert_eq!(
        send(http, "post", &plans, &keys.dbco, plan.clone()).await.0,
        201
    );
    let (status, body) = send(http, "post", &plans, &keys.queueco, plan).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("plan_not_in_namespace"))
    );
    let version = json!({"plan": "dbco.ps-10", "currency": "USD", "base_fee": "39.00",
                         "effective_from": s.now - Duration::days(1)});
    let admin_versions = format!("{api}/v1/admin/plan-versions");
    for key in [&keys.dbco, &keys.acme, &keys.finance] {
        assert_eq!(
            send(http, "post", &admin_versions, key, version.clone())
                .await
                .0,
            403
        );
    }
    assert_eq!(
        send(http, "post", &admin_versions, &keys.admin, version)
            .await
            .0,
        201
    );
    let publish = format!("{api}/v1/provider/plans/dbco.ps-10/versions");
    let later = json!({"currency": "EUR", "base_fee": "36.00"});
    let (status, body) = send(http, "post", &publish, &keys.queueco, later.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(send(http, "post", &publish, &keys.dbco, later).await.0, 201);
    let (_, body) = send(http, "get", &plans, &keys.queueco, json!(null)).await;
    assert_eq!(body["data"], json!([]));
    let (_, body) = send(http, "get", &plans, &keys.dbco, json!(null)).await;
    assert_eq!(body["data"][0]["versions"].as_array().unwrap().len(), 2);
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        assert_eq!(send(http, "get", &plans, key, json!(null)).await.0, 403);
    }

    // acme provisions its own (customer), the platform one for acme.
    let acme_bindings = format!("{api}/v1/accounts/acme/bindings");
    let new = |name: &str| json!({"provider": "dbco", "resource_type": "database", "name": name, "plan": "dbco.ps-10"});
    let (status, mine) = send(http, "post", &acme_bindings, &keys.acme, new("prod-db")).await;
    assert_eq!(status, 201, "{mine}");
    let id = mine["id"].as_str().unwrap().to_owned();
    let (status, theirs) = send(http, "post", &acme_bindings, &keys.admin, new("ops-db")).await;
    assert_eq!(status, 201, "{theirs}");
    for key in [&keys.umbrella, &keys.finance, &keys.dbco] {
        let (status, body) = send(http, "post", &acme_bindings, key, new("x")).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    // Only the platform times a move.
    let timed = json!({"provider": "dbco", "resource_type": "database", "name": "x",
                       "plan": "dbco.ps-10", "at": s.now - Duration::hours(1)});
    assert_eq!(
        send(http, "post", &acme_bindings, &keys.acme, timed)
            .await
            .0,
        403
    );

    // Reading: acme, finance and admin see acme's two; umbrella and dbco may not.
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        let (status, body) = send(http, "get", &acme_bindings, key, json!(null)).await;
        assert_eq!((status, body["data"].as_array().unwrap().len()), (200, 2));
    }
    for key in [&keys.umbrella, &keys.dbco] {
        assert_eq!(
            send(http, "get", &acme_bindings, key, json!(null)).await.0,
            403
        );
    }
    let one = format!("{acme_bindings}/{id}");
    assert_eq!(
        send(http, "get", &one, &keys.acme, json!(null)).await.0,
        200
    );
    assert_eq!(
        send(http, "get", &one, &keys.umbrella, json!(null)).await.0,
        403
    );
    // Under umbrella's own account acme's binding does not exist.
    let via_umbrella = format!("{api}/v1/accounts/umbrella/bindings/{id}");
    let (status, body) = send(http, "get", &via_umbrella, &keys.umbrella, json!(null)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (_, body) = send(
        http,
        "get",
        &format!("{api}/v1/accounts/umbrella/bindings"),
        &keys.umbrella,
        json!(null),
    )
    .await;
    assert_eq!(body["data"], json!([]));
    for (action, body) in [
        ("plan", json!({"plan": "dbco.ps-10"})),
        ("suspend", json!({})),
        ("resume", json!({})),
        ("delete", json!({})),
    ] {
        let (status, answer) = send(
            http,
            "post",
            &format!("{via_umbrella}/{action}"),
            &keys.umbrella,
            body.clone(),
        )
        .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{action}"
        );
        for key in [&keys.umbrella, &keys.finance, &keys.dbco] {
            let (status, _) =
                send(http, "post", &format!("{one}/{action}"), key, body.clone()).await;
            assert_eq!(status, 403, "{action}");
        }
    }

    // Providers: dbco sees both of acme's, queueco none; queueco cannot read
    // or report on dbco's; customers and staff have no provider view.
    let provider_bindings = format!("{api}/v1/provider/bindings");
    let (_, body) = send(http, "get", &provider_bindings, &keys.dbco, json!(null)).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = send(http, "get", &provider_bindings, &keys.queueco, json!(null)).await;
    assert_eq!(body["data"], json!([]));
    let theirs_url = format!("{provider_bindings}/{id}");
    assert_eq!(
        send(http, "get", &theirs_url, &keys.dbco, json!(null))
            .await
            .0,
        200
    );
    assert_eq!(
        send(http, "get", &theirs_url, &keys.queueco, json!(null))
            .await
            .0,
        404
    );
    let report = json!({"status": "provisioning"});
    let status_url = format!("{theirs_url}/status");
    let (status, body) = send(http, "post", &status_url, &keys.queueco, report.clone()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        assert_eq!(
            send(http, "get", &provider_bindings, key, json!(null))
                .await
                .0,
            403
        );
        assert_eq!(
            send(http, "get", &theirs_url, key, json!(null)).await.0,
            403
        );
        assert_eq!(
            send(http, "post", &status_url, key, report.clone()).await.0,
            403
        );
        let hook = json!({"url": "http://127.0.0.1:9/hooks"});
        assert_eq!(
            send(
                http,
                "post",
                &format!("{api}/v1/provider/webhook"),
                key,
                hook
            )
            .await
            .0,
            403
        );
    }
    let (status, body) = send(http, "post", &status_url, &keys.dbco, report).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("provisioning"))
    );
    s.running.stop().await.unwrap();
}

/// Contracts: finance and admin set and sign them; a customer reads only
/// its own account's (and its coming price changes); a provider sees and
/// agrees to only the partner-funded terms naming it (another's does not
/// exist for it). Nobody else signs, and a contract is signed only under
/// its own account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contracts_are_isolated() {
    let s = Seeded::start(&[Service::Api]).await;
    let (http, api, keys) = (&s.http, s.invoicing.clone(), &s.keys);
    let start = s.now + Duration::days(30);
    let end = start + Duration::days(90);
    let contract = json!({
        "starts_at": start, "ends_at": end,
        "terms": [{"scope": "skus", "provider": "dbco", "skus": ["dbco.db.hour"], "percent": "10",
                   "funded_by": "partner", "effective_from": start, "effective_to": end}],
    });
    let acme_contracts = format!("{api}/v1/accounts/acme/contracts");
    for key in [&keys.acme, &keys.umbrella, &keys.dbco, &keys.queueco] {
        let (status, body) = send(http, "post", &acme_contracts, key, contract.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    let (status, body) = send(
        http,
        "post",
        &acme_contracts,
        &keys.finance,
        contract.clone(),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let acme_contract = body["id"].as_i64().unwrap();
    let umbrella_contracts = format!("{api}/v1/accounts/umbrella/contracts");
    let (status, body) = send(http, "post", &umbrella_contracts, &keys.admin, contract).await;
    assert_eq!(status, 201, "{body}");
    let umbrella_contract = body["id"].as_i64().unwrap();

    for key in [&keys.acme, &keys.finance, &keys.admin] {
        let (status, body) = send(http, "get", &acme_contracts, key, json!(null)).await;
        assert_eq!((status, body["data"].as_array().unwrap().len()), (200, 1));
    }
    for key in [&keys.umbrella, &keys.dbco] {
        assert_eq!(
            send(http, "get", &acme_contracts, key, json!(null)).await.0,
            403
        );
    }

    // The price changes coming to an account: as its contracts.
    let acme_changes = format!("{api}/v1/accounts/acme/price-changes");
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        let (status, body) = send(http, "get", &acme_changes, key, json!(null)).await;
        assert_eq!((status, body["data"].is_array()), (200, true), "{body}");
    }
    for key in [&keys.umbrella, &keys.dbco, &keys.queueco] {
        let (status, body) = send(http, "get", &acme_changes, key, json!(null)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }

    let terms = format!("{api}/v1/provider/contract-terms");
    let (_, body) = send(http, "get", &terms, &keys.dbco, json!(null)).await;
    let listed = body["data"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let acme_term = listed.iter().find(|t| t["account_id"] == "acme").unwrap()["term"]["id"]
        .as_i64()
        .unwrap();
    let (_, body) = send(http, "get", &terms, &keys.queueco, json!(null)).await;
    assert_eq!(body["data"], json!([]));
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        assert_eq!(send(http, "get", &terms, key, json!(null)).await.0, 403);
    }
    let agree = format!("{terms}/{acme_term}/agree");
    let (status, body) = send(http, "post", &agree, &keys.queueco, json!(null)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        assert_eq!(send(http, "post", &agree, key, json!(null)).await.0, 403);
    }
    let (status, body) = send(http, "post", &agree, &keys.dbco, json!(null)).await;
    assert_eq!((status, body["account_id"].as_str()), (200, Some("acme")));
    assert!(body["term"]["partner_agreed_at"].is_string(), "{body}");
    // Signing: customers and providers are refused; acme's contract is
    // not umbrella's; finance signs acme's (agreed), admin cannot sign
    // umbrella's yet (its term still waits).
    let sign_acme = format!("{acme_contracts}/{acme_contract}/sign");
    for key in [&keys.acme, &keys.umbrella, &keys.dbco, &keys.queueco] {
        let (status, body) = send(http, "post", &sign_acme, key, json!(null)).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    let (status, body) = send(
        http,
        "post",
        &format!("{umbrella_contracts}/{acme_contract}/sign"),
        &keys.finance,
        json!(null),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, body) = send(http, "post", &sign_acme, &keys.finance, json!(null)).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("signed")));
    let (status, body) = send(
        http,
        "post",
        &format!("{umbrella_contracts}/{umbrella_contract}/sign"),
        &keys.admin,
        json!(null),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("partner_not_agreed"))
    );
    // Only acme's term is agreed; umbrella's still waits.
    let (_, body) = send(http, "get", &terms, &keys.dbco, json!(null)).await;
    let agreed: Vec<_> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["account_id"].as_str().unwrap().to_owned(),
                t["term"]["partner_agreed_at"].is_string(),
            )
        })
        .collect();
    assert_eq!(
        agreed,
        [("acme".to_owned(), true), ("umbrella".to_owned(), false)]
    );
    s.running.stop().await.unwrap();
}

/// A provider's own billing account (issue 17): the platform creates it;
/// its provider reads its invoices, another provider does not see them
/// (`not_found`), customers and staff have no provider view.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_providers_own_account_is_read_by_that_provider_only() {
    let s = Seeded::start(&Service::ALL).await;
    let (keys, http, api) = (&s.keys, &s.http, &s.invoicing);
    let t = s.now - Duration::minutes(1);
    let new = json!({"id": "dbco-billing", "name": "DB Co (billing)", "currency": "USD",
                     "provider_id": "dbco"});
    let (status, body) = send(
        http,
        "post",
        &format!("{api}/v1/admin/accounts"),
        &keys.admin,
        new,
    )
    .await;
    assert_eq!(
        (status, &body["provider_id"]),
        (201, &json!("dbco")),
        "{body}"
    );
    let unknown =
        json!({"id": "x-billing", "name": "X", "currency": "USD", "provider_id": "nobody"});
    let (status, body) = send(
        http,
        "post",
        &format!("{api}/v1/admin/accounts"),
        &keys.admin,
        unknown,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("unknown_provider")),
        "{body}"
    );
    let (status, _) = post_events(
        http,
        &s.collector,
        &keys.cloud,
        &[event(
            "vm-1",
            "cloud",
            "dbco-billing",
            "cloud.vm.hour",
            "10",
            t,
        )],
    )
    .await;
    assert_eq!(status, 202);
    let period = t.format("%Y-%m").to_string();
    let expected = [(("dbco-billing".to_owned(), period), "0.42".parse().unwrap())].into();
    let bills = wait_for_totals(
        http,
        api,
        &keys.finance,
        &expected,
        std::time::Duration::from_secs(60),
    )
    .await;
    let invoice_id = bills.values().next().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let list = format!("{api}/v1/provider/account/invoices");
    let one = format!("{list}/{invoice_id}");
    let (status, body) = send(http, "get", &list, &keys.dbco, json!(null)).await;
    assert_eq!((status, body["data"].as_array().unwrap().len()), (200, 1));
    assert_eq!(body["data"][0]["account_id"], "dbco-billing");
    let (status, body) = send(http, "get", &one, &keys.dbco, json!(null)).await;
    assert_eq!((status, body["total"].as_str()), (200, Some("0.42")));
    let (_, body) = send(http, "get", &list, &keys.queueco, json!(null)).await;
    assert_eq!(body["data"], json!([]));
    let (status, body) = send(http, "get", &one, &keys.queueco, json!(null)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        for url in [&list, &one] {
            let (status, body) = send(http, "get", url, key, json!(null)).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{url}"
            );
        }
    }
    for url in [&list, &one] {
        assert_eq!(send(http, "get", url, "", json!(null)).await.0, 401);
    }
    // On-behalf-of references: providers only, each its own.
    let references = format!("{api}/v1/provider/references");
    let consumer = json!({"account": "acme"});
    let (status, mine) = send(http, "post", &references, &keys.dbco, consumer.clone()).await;
    assert_eq!(status, 200, "{mine}");
    let (_, theirs) = send(http, "post", &references, &keys.queueco, consumer.clone()).await;
    assert_ne!(mine["reference"], theirs["reference"]);
    for key in [&keys.acme, &keys.finance, &keys.admin] {
        let (status, body) = send(http, "post", &references, key, consumer.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    assert_eq!(send(http, "post", &references, "", consumer).await.0, 401);
    // Margin reports (JSON and CSV) and statements (the list and a
    // month's): a provider's own only; no other role.
    let period = t.format("%Y-%m").to_string();
    for path in [
        format!("margin?period={period}"),
        format!("margin.csv?period={period}"),
        "statements".to_owned(),
        format!("statements/{period}"),
    ] {
        let url = format!("{api}/v1/provider/{path}");
        assert_eq!(
            send(http, "get", &url, &keys.dbco, json!(null)).await.0,
            200,
            "{url}"
        );
        for key in [&keys.acme, &keys.finance, &keys.admin] {
            let (status, body) = send(http, "get", &url, key, json!(null)).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (403, Some("forbidden")),
                "{url}"
            );
        }
        assert_eq!(
            send(http, "get", &url, "", json!(null)).await.0,
            401,
            "{url}"
        );
    }
    // cloud's report has its customer dbco-billing's 0.42; dbco's has no
    // row of cloud's.
    let url = format!("{api}/v1/provider/margin?period={period}");
    let (_, cloud) = send(http, "get", &url, &keys.cloud, json!(null)).await;
    assert_eq!(cloud["data"][0]["consumer"], "dbco-billing");
    assert_eq!(cloud["data"][0]["revenue"], "0.42");
    let (_, dbco) = send(http, "get", &url, &keys.dbco, json!(null)).await;
    assert_eq!(dbco["data"], json!([]));
    // A provider's settlement mode: the admin only (its own provider
    // cannot set it).
    let mode = format!("{api}/v1/admin/providers/dbco/settlement-mode");
    let net = json!({"mode": "net"});
    for key in [&keys.dbco, &keys.acme, &keys.finance] {
        let (status, body) = send(http, "post", &mode, key, net.clone()).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden"))
        );
    }
    assert_eq!(send(http, "post", &mode, "", net.clone()).await.0, 401);
    assert_eq!(send(http, "post", &mode, &keys.admin, net).await.0, 200);
    // Each provider's statement is its own.
    for path in ["statements".to_owned(), format!("statements/{period}")] {
        let url = format!("{api}/v1/provider/{path}");
        for (key, provider) in [(&keys.dbco, "dbco"), (&keys.cloud, "cloud")] {
            let (_, body) = send(http, "get", &url, key, json!(null)).await;
            let own: Vec<_> = match body["data"].as_array() {
                Some(list) => list.iter().map(|s| s["provider_id"].clone()).collect(),
                None => vec![body["provider_id"].clone()],
            };
            // The month's statement is always there; the list holds the
            // months with finalized lines (none here: tests/chain.rs checks
            // that each of three providers' lists is exactly its own).
            if path.contains('/') {
                assert_eq!(own, [json!(provider)], "{url}: {body}");
            } else {
                assert!(own.iter().all(|p| p == provider), "{url}: {body}");
            }
        }
    }
    s.running.stop().await.unwrap();
}
