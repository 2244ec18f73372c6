//! The customer's web pages and the logs, against a careless or hostile
//! client: no log line carries a key, a cookie or a link's signature;
//! sign-in refuses cross-site posts and is throttled; a session ends at
//! sign-out and as soon as its token is revoked; pages are never cached,
//! framed or referred.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use tally::up::Service;

/// Every log line of this test process, at debug level and below (trace
/// for Tally's crates and the HTTP layer). Each test calls it first: the
/// first call installs the process's log subscriber.
fn captured_logs() -> Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs: Arc<Mutex<Vec<u8>>> = Arc::default();
        let sink = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,tower_http=trace,tally_api=trace,tally_invoicing=trace,tally_collector=trace,tally_platform=trace",
            ))
            .with_ansi(false)
            .with_writer(move || Captured(sink.clone()))
            .init();
        logs
    })
    .clone()
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Acme's bill for this month: one event through the pipeline (10 VM
/// hours at 0.0416 USD: 0.42).
async fn acme_bill(seeded: &Seeded) {
    let (status, _) = post_events(
        &seeded.http,
        &seeded.collector,
        &seeded.keys.cloud,
        &[event(
            "vm-1",
            "cloud",
            "acme",
            "cloud.vm.hour",
            "10",
            seeded.now - chrono::Duration::minutes(1),
        )],
    )
    .await;
    assert_eq!(status, 202);
    let period = seeded.now.format("%Y-%m").to_string();
    let expected = std::collections::BTreeMap::from([(
        ("acme".to_owned(), period.clone()),
        "0.42".parse().unwrap(),
    )]);
    let bills = wait_for_totals(
        &seeded.http,
        &seeded.invoicing,
        &seeded.keys.finance,
        &expected,
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!(bills[&("acme".to_owned(), period)]["total"], "0.42");
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_carries_a_key_a_cookie_or_a_link_signature() {
    let logs = captured_logs();
    let seeded = Seeded::start(&[Service::Collector, Service::Invoicing, Service::Api]).await;
    let (keys, base) = (&seeded.keys, &seeded.invoicing);
    let http = no_redirects();

    let link: serde_json::Value = http
        .post(format!("{base}/v1/accounts/acme/bill-links"))
        .bearer_auth(&keys.finance)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = link["path"].as_str().unwrap();
    let sig = path.split("sig=").nth(1).unwrap().to_owned();
    assert_eq!(sig.len(), 64);
    // The link opens the page (no bill yet: 404 after the link is checked).
    let opened = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(opened.status().as_u16(), 404);
    let bad = http
        .get(format!(
            "{base}/accounts/acme/bill?expires=1&sig={}",
            "ab".repeat(32)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 403);

    let signed_in = sign_in(&http, base, &keys.acme).await;
    assert_eq!(signed_in.status().as_u16(), 303);
    let session = set_cookie(&signed_in, "tally_bill").unwrap();
    let page = http
        .get(format!("{base}/accounts/acme/bill"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status().as_u16(), 404);
    let refused = sign_in(&http, base, "not-a-token").await;
    assert_eq!(refused.status().as_u16(), 401);
    let (status, _) = get(&http, &format!("{base}/v1/invoices"), &keys.finance).await;
    assert_eq!(status, 200);
    let (status, _) = post_events(
        &seeded.http,
        &seeded.collector,
        &keys.cloud,
        &[event(
            "e1",
            "cloud",
            "acme",
            "cloud.vm.hour",
            "1",
            seeded.now,
        )],
    )
    .await;
    assert_eq!(status, 202);

    let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
    let session_id = session.split('=').nth(1).unwrap();
    for (what, secret) in [
        ("the link's signature", sig.as_str()),
        ("the session cookie", session_id),
        ("the finance key", keys.finance.as_str()),
        ("the customer token", keys.acme.as_str()),
        ("the provider key", keys.cloud.as_str()),
    ] {
        assert!(!text.contains(secret), "a log line carries {what}");
    }
    // The requests were logged, at debug level, by path.
    assert!(
        text.contains("path=/accounts/acme/bill}"),
        "the request spans are captured"
    );
    assert!(text.contains("path=/v1/events}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_a_post_from_another_site() {
    captured_logs();
    let seeded = Seeded::start(&[Service::Invoicing, Service::Api]).await;
    let (keys, base) = (&seeded.keys, &seeded.invoicing);
    let http = no_redirects();

    // A form posted from another site carries no nonce cookie.
    let forged = http
        .post(format!("{base}/login"))
        .form(&[("token", keys.acme.as_str()), ("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    assert_eq!(set_cookie(&forged, "tally_bill"), None);
    // Nor one whose nonce and cookie do not match.
    let form = http.get(format!("{base}/login")).send().await.unwrap();
    let nonce_cookie = set_cookie(&form, "tally_login").unwrap();
    let mismatched = http
        .post(format!("{base}/login"))
        .header("cookie", &nonce_cookie)
        .form(&[
            ("token", keys.acme.as_str()),
            ("csrf", "0".repeat(64).as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(mismatched.status().as_u16(), 403);
    assert_eq!(set_cookie(&mismatched, "tally_bill"), None);
    // The right pair from another origin is refused too.
    let nonce = nonce_cookie.split('=').nth(1).unwrap();
    let other_origin = http
        .post(format!("{base}/login"))
        .header("cookie", &nonce_cookie)
        .header("origin", "https://evil.example")
        .form(&[("token", keys.acme.as_str()), ("csrf", nonce)])
        .send()
        .await
        .unwrap();
    assert_eq!(other_origin.status().as_u16(), 403);
    assert_eq!(set_cookie(&other_origin, "tally_bill"), None);

    // The form as served signs in, with a cookie only this site sends over TLS.
    let signed_in = sign_in(&http, base, &keys.acme).await;
    assert_eq!(signed_in.status().as_u16(), 303);
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("tally_bill="))
        .unwrap();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=43200"] {
        assert!(cookie.contains(flag), "{cookie} lacks {flag}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_at_sign_out_and_when_its_token_is_revoked() {
    captured_logs();
    let seeded = Seeded::start(&Service::ALL).await;
    let (keys, base, pool) = (&seeded.keys, &seeded.invoicing, &seeded.h.pool);
    let http = no_redirects();
    // A bill to look at.
    let period = seeded.now.format("%Y-%m").to_string();
    let opens = |cookie: String| {
        let http = http.clone();
        let url = format!("{base}/accounts/acme/bill?period={period}");
        async move {
            let response = http.get(url).header("cookie", cookie).send().await.unwrap();
            response.status().as_u16()
        }
    };
    acme_bill(&seeded).await;

    let first = set_cookie(&sign_in(&http, base, &keys.acme).await, "tally_bill").unwrap();
    let second = set_cookie(&sign_in(&http, base, &keys.acme).await, "tally_bill").unwrap();
    assert_eq!(opens(first.clone()).await, 200);
    assert_eq!(opens(second.clone()).await, 200);

    // Signing out ends that session only, and clears its cookie.
    let out = http
        .post(format!("{base}/logout"))
        .header("cookie", &first)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status().as_u16(), 303);
    assert_eq!(out.headers()["location"], "/login");
    assert_eq!(
        set_cookie(&out, "tally_bill").as_deref(),
        Some("tally_bill=")
    );
    assert_eq!(
        opens(first).await,
        303,
        "a signed-out session opens nothing"
    );
    assert_eq!(opens(second.clone()).await, 200);

    // Revoking the token ends every session it opened.
    let revoked = sqlx::query(
        "UPDATE api_keys SET revoked_at = now() WHERE role = 'customer' AND account_id = 'acme'",
    )
    .execute(pool)
    .await
    .unwrap();
    assert_eq!(revoked.rows_affected(), 1);
    assert_eq!(opens(second).await, 303);
    let again = sign_in(&http, base, &keys.acme).await;
    assert_eq!(again.status().as_u16(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bill_pages_are_never_cached_framed_or_referred() {
    captured_logs();
    let seeded = Seeded::start(&Service::ALL).await;
    let (keys, base) = (&seeded.keys, &seeded.invoicing);
    let http = no_redirects();
    acme_bill(&seeded).await;
    let period = seeded.now.format("%Y-%m").to_string();
    let session = set_cookie(&sign_in(&http, base, &keys.acme).await, "tally_bill").unwrap();
    for (path, status) in [
        (format!("/accounts/acme/bill?period={period}"), 200),
        (format!("/accounts/acme/bill.csv?period={period}"), 200),
        ("/login".to_owned(), 200),
        ("/accounts/umbrella/bill".to_owned(), 403),
    ] {
        let response = http
            .get(format!("{base}{path}"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let headers = response.headers();
        for (name, value) in [
            ("cache-control", "no-store"),
            ("content-security-policy", "frame-ancestors 'none'"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "no-referrer"),
            ("x-content-type-options", "nosniff"),
        ] {
            assert_eq!(
                headers.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{path}: {name}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_sign_ins_are_throttled() {
    captured_logs();
    let seeded = Seeded::start(&[Service::Invoicing, Service::Api]).await;
    let (keys, base) = (&seeded.keys, &seeded.invoicing);
    let http = no_redirects();
    for attempt in 0..10 {
        let refused = sign_in(&http, base, &format!("guess-{attempt}")).await;
        assert_eq!(refused.status().as_u16(), 401, "attempt {attempt}");
    }
    // The eleventh waits, even with the right token.
    let throttled = sign_in(&http, base, &keys.acme).await;
    assert_eq!(throttled.status().as_u16(), 429);
    let wait: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=900).contains(&wait), "Retry-After {wait}");
    assert_eq!(set_cookie(&throttled, "tally_bill"), None);
}

/// A bill page answers pages, also for an account id that cannot exist
/// (found by schemathesis: it answered JSON there, unlike its other 404s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bill_page_for_an_account_that_cannot_exist_is_a_page() {
    captured_logs();
    let seeded = Seeded::start(&[Service::Invoicing, Service::Api]).await;
    let http = no_redirects();
    for path in [
        "/accounts/Not%20an%20id/bill",
        "/accounts/%7F/bill.csv",
        "/accounts/nobody/bill",
    ] {
        let response = http
            .get(format!("{}{path}", seeded.invoicing))
            .bearer_auth(&seeded.keys.finance)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let content_type = response.headers()["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("text/html"),
            "{path}: {content_type}"
        );
        let body = response.text().await.unwrap();
        assert!(body.contains("No such account"), "{path}: {body}");
    }
}
