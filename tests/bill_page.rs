//! The customer's bill page in a real headless Chromium: its totals equal the
//! API's, another account's page is refused, and a screenshot is kept.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::Duration;
use common::*;
use std::path::PathBuf;
use std::process::Command;
use tally::up::Service;

fn chromium() -> PathBuf {
    let bin = std::env::var_os("TALLY_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(bin.exists(), "Chromium is needed for this test: `apt-get install chromium` (deploy/dev.sh does it) or set TALLY_CHROMIUM");
    bin
}

/// Runs headless Chromium with `extra` flags on `url`; returns stdout.
fn headless(extra: &[&str], url: &str) -> String {
    let profile = tempdir();
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tempdir() -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("tally-chromium-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Text of the element carrying `data-testid="{id}"`, every occurrence.
fn by_testid(dom: &str, id: &str) -> Vec<String> {
    let marker = format!("data-testid=\"{id}\">");
    dom.match_indices(&marker)
        .map(|(i, _)| {
            let rest = &dom[i + marker.len()..];
            rest[..rest.find('<').unwrap()].to_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_page_shows_the_api_totals_and_only_to_its_account() {
    let Seeded {
        now,
        keys,
        running,
        collector,
        invoicing: base,
        http,
        h: _h,
    } = Seeded::start(&Service::ALL).await;

    let mut expected = Expected::default();
    let t = now - Duration::minutes(30);
    for (provider, key, sku) in [
        ("cloud", &keys.cloud, "cloud.vm.hour"),
        ("dbco", &keys.dbco, "dbco.db.hour"),
        ("queueco", &keys.queueco, "queueco.msg.million"),
    ] {
        let events: Vec<_> = (0..20)
            .map(|i| {
                let q = format!("{}.25", i + 1);
                expected.add("acme", t, sku, &q);
                event(&format!("{provider}-{i}"), provider, "acme", sku, &q, t)
            })
            .collect();
        let (status, _) = post_events(&http, &collector, key, &events).await;
        assert_eq!(status, 202);
    }
    post_events(
        &http,
        &collector,
        &keys.dbco,
        &[event("u1", "dbco", "umbrella", "dbco.db.hour", "3", t)],
    )
    .await;
    expected.add("umbrella", t, "dbco.db.hour", "3");
    let totals = expected.totals();
    let bills = wait_for_totals(
        &http,
        &base,
        &keys.finance,
        &totals,
        std::time::Duration::from_secs(60),
    )
    .await;
    let period = t.format("%Y-%m").to_string();
    let api = &bills[&("acme".to_owned(), period.clone())];

    // Finance issues a signed link for acme's bill.
    let link: serde_json::Value = http
        .post(format!("{base}/v1/accounts/acme/bill-links"))
        .bearer_auth(&keys.finance)
        .json(&serde_json::json!({"period": period}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = link["path"].as_str().unwrap().to_owned();
    let url = format!("{base}{path}");

    let dom = tokio::task::spawn_blocking({
        let url = url.clone();
        move || headless(&["--dump-dom"], &url)
    })
    .await
    .unwrap();
    assert_eq!(
        by_testid(&dom, "total"),
        [format!("{} USD", api["total"].as_str().unwrap())]
    );
    let api_subtotals: Vec<String> = api["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| format!("{} USD", s["subtotal"].as_str().unwrap()))
        .collect();
    assert_eq!(by_testid(&dom, "subtotal"), api_subtotals);
    assert_eq!(api_subtotals.len(), 3);
    assert_eq!(by_testid(&dom, "status"), ["draft"]);
    assert!(dom.contains("<svg"), "the spend chart is rendered");
    let first = dom.find("Stratus Cloud").unwrap();
    assert!(
        first < dom.find("DB Co").unwrap()
            && dom.find("DB Co").unwrap() < dom.find("Queue Co").unwrap()
    );

    // The same signature does not open another account's page.
    let other = url.replace("/accounts/acme/", "/accounts/umbrella/");
    let refused = tokio::task::spawn_blocking(move || headless(&["--dump-dom"], &other))
        .await
        .unwrap();
    assert!(
        refused.contains("This link does not open this bill"),
        "{refused}"
    );
    assert!(by_testid(&refused, "total").is_empty());
    let status = http
        .get(url.replace("/accounts/acme/", "/accounts/umbrella/"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 403);
    // Nor does another customer's token, nor no credentials at all.
    let page = format!("{base}/accounts/acme/bill?period={period}");
    assert_eq!(
        http.get(&page)
            .bearer_auth(&keys.umbrella)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        http.get(&page)
            .bearer_auth(&keys.acme)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    assert_eq!(
        no_redirect
            .get(&page)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        303
    );

    // Signing in with the customer token opens only that account.
    let signed_in = sign_in(&no_redirect, &base, &keys.umbrella).await;
    assert_eq!(signed_in.status().as_u16(), 303);
    let cookie = set_cookie(&signed_in, "tally_bill").unwrap();
    let own = no_redirect
        .get(format!("{base}/accounts/umbrella/bill"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status().as_u16(), 200);
    assert!(own.text().await.unwrap().contains(&format!(
        "{} EUR",
        totals[&("umbrella".to_owned(), period.clone())]
    )));
    let foreign = no_redirect
        .get(&page)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status().as_u16(), 403);

    // CSV download carries the same total.
    let csv = get_text(
        &http,
        &format!("{base}/accounts/acme/bill.csv?period={period}"),
        &keys.acme,
    )
    .await;
    assert_eq!(csv.lines().count(), 1 + 3 + 1);
    assert!(csv.lines().last().unwrap().ends_with(&format!(
        ",total,,,,{},,,,,",
        api["total"].as_str().unwrap()
    )));

    // A screenshot of the page, kept as an artifact of the run.
    let dir = std::env::var_os("TALLY_ARTIFACTS_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tally/artifacts"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("bill-page.png");
    let _ = std::fs::remove_file(&shot);
    let arg = format!("--screenshot={}", shot.display());
    tokio::task::spawn_blocking(move || headless(&[&arg, "--window-size=1024,1400"], &url))
        .await
        .unwrap();
    let size = std::fs::metadata(&shot).unwrap().len();
    assert!(size > 10_000, "screenshot of {size} bytes");
    println!("bill page screenshot: {}", shot.display());
    running.stop().await.unwrap();
}
