//! Bill-page sessions and the guards around signing in.
//!
//! - A session is a random id in the `tally_bill` cookie (`HttpOnly`,
//!   `Secure`, `SameSite=Strict`), stored hashed with the customer key that
//!   signed in. It ends at sign-out, at expiry, or as soon as that key is
//!   revoked: every request checks the key.
//! - Sign-in refuses login CSRF: the form carries a nonce that must match
//!   the `tally_login` cookie set with the form (`SameSite=Strict`, so a
//!   cross-site POST never carries it), and a request whose `Origin` is
//!   another site is refused outright.
//! - Failed sign-ins are throttled per client address.
//! - Every page response says: not cached, not framed, no referrer (a
//!   signed link's query must not leak to other sites), no sniffing.

use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sqlx::PgPool;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

pub const SESSION_COOKIE: &str = "tally_bill";
pub const LOGIN_COOKIE: &str = "tally_login";
pub const SESSION_HOURS: i64 = 12;

/// Failed sign-ins allowed per client address within [`THROTTLE_WINDOW`].
pub const MAX_FAILED_SIGN_INS: u32 = 10;
pub const THROTTLE_WINDOW: Duration = Duration::from_secs(15 * 60);

/// 32 random bytes, hex: a session id or a form nonce.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Opens a session for `account`, signed in with key `key`; returns the
/// cookie's value. Sessions past their expiry are cleared on the way.
pub async fn open(
    pool: &PgPool,
    account: &str,
    key: Uuid,
    expires: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let id = random_token();
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM bill_sessions WHERE expires_at < now()")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO bill_sessions (id_hash, account_id, api_key_id, expires_at)
         VALUES ($1, $2, $3, $4)",
    )
    .bind(tally_platform::auth::hash(&id))
    .bind(account)
    .bind(key)
    .bind(expires)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The account of a live session: not expired, not signed out, its key not
/// revoked.
pub async fn account_of(pool: &PgPool, id: &str) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT s.account_id FROM bill_sessions s JOIN api_keys k ON k.id = s.api_key_id
         WHERE s.id_hash = $1 AND s.expires_at > now() AND k.revoked_at IS NULL",
    )
    .bind(tally_platform::auth::hash(id))
    .fetch_optional(pool)
    .await
}

/// Ends a session (signing out).
pub async fn close(pool: &PgPool, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM bill_sessions WHERE id_hash = $1")
        .bind(tally_platform::auth::hash(id))
        .execute(pool)
        .await?;
    Ok(())
}

/// The value of cookie `name` in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// `Set-Cookie` for `name`, for `max_age` seconds (0 clears it).
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64) -> String {
    format!("{name}={value}; Path={path}; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}")
}

/// False when the request says it comes from another site: an `Origin`
/// whose host is not this `Host`, or `Sec-Fetch-Site: cross-site`.
pub fn same_site(headers: &HeaderMap) -> bool {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if text("sec-fetch-site") == Some("cross-site") {
        return false;
    }
    match (text(header::ORIGIN.as_str()), text(header::HOST.as_str())) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        (Some(_), None) => false,
    }
}

/// Whether the form's nonce is the one its cookie holds (compared in
/// constant time).
pub fn nonce_matches(headers: &HeaderMap, presented: Option<&str>) -> bool {
    match (cookie(headers, LOGIN_COOKIE), presented) {
        (Some(expected), Some(presented)) if expected.len() == presented.len() => {
            expected
                .bytes()
                .zip(presented.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        }
        _ => false,
    }
}

/// Failed sign-ins per client address, in fixed windows.
#[derive(Default)]
pub struct Throttle {
    failures: Mutex<HashMap<Option<IpAddr>, (u32, Instant)>>,
}

impl Throttle {
    /// `Err(wait)` while `client` has used up its failed sign-ins.
    pub fn check(&self, client: Option<IpAddr>) -> Result<(), Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        match failures.get(&client) {
            Some((count, since))
                if *count >= MAX_FAILED_SIGN_INS && since.elapsed() < THROTTLE_WINDOW =>
            {
                Err(THROTTLE_WINDOW - since.elapsed())
            }
            _ => Ok(()),
        }
    }

    pub fn failed(&self, client: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since)| since.elapsed() < THROTTLE_WINDOW);
        }
        let entry = failures.entry(client).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= THROTTLE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }

    pub fn succeeded(&self, client: Option<IpAddr>) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&client);
    }
}

/// The headers every bill-page response carries.
pub async fn page_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, "frame-ancestors 'none'"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn a_request_from_another_site_is_not_same_site() {
        assert!(same_site(&headers(&[("host", "bills.example")])));
        assert!(same_site(&headers(&[
            ("host", "bills.example"),
            ("origin", "https://bills.example")
        ])));
        assert!(!same_site(&headers(&[
            ("host", "bills.example"),
            ("origin", "https://evil.example")
        ])));
        assert!(!same_site(&headers(&[
            ("host", "bills.example"),
            ("origin", "null")
        ])));
        assert!(!same_site(&headers(&[
            ("host", "bills.example"),
            ("sec-fetch-site", "cross-site")
        ])));
    }

    #[test]
    fn the_nonce_must_match_its_cookie() {
        let h = headers(&[("cookie", "a=b; tally_login=abc123")]);
        assert!(nonce_matches(&h, Some("abc123")));
        assert!(!nonce_matches(&h, Some("abc124")));
        assert!(!nonce_matches(&h, Some("abc12")));
        assert!(!nonce_matches(&h, None));
        assert!(!nonce_matches(&headers(&[]), Some("abc123")));
    }

    #[test]
    fn failed_sign_ins_are_throttled_per_client() {
        let throttle = Throttle::default();
        let one = Some(IpAddr::from([10, 0, 0, 1]));
        let two = Some(IpAddr::from([10, 0, 0, 2]));
        for _ in 0..MAX_FAILED_SIGN_INS {
            assert!(throttle.check(one).is_ok());
            throttle.failed(one);
        }
        assert!(throttle.check(one).is_err());
        assert!(throttle.check(two).is_ok());
        throttle.succeeded(one);
        assert!(throttle.check(one).is_ok());
    }
}
