//! The bindings outbox worker: every binding event written in
//! `binding_outbox` (in the transaction that changed the binding, see
//! [`crate::bindings`]) is published on `bindings.events` (key = binding id)
//! and delivered to the provider's webhook, signed.
//!
//! Delivery: one binding's events in order (the oldest undelivered first;
//! a later one waits), each POSTed with the headers `webhook-id` (the
//! event's id, the same on every retry: the provider dedupes by it),
//! `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature: v1=<hex HMAC-SHA256 of "{id}.{timestamp}.{body}">`
//! under the provider's webhook secret. A 2xx answer delivers it; anything
//! else is retried after [`retry_delay`]. Events of a provider without a
//! webhook wait until it configures one.
//!
//! The webhook secret is not stored: it is HMAC-SHA256 of the provider's
//! id and secret generation under the platform's webhook key
//! (`TALLY_WEBHOOK_KEY`, a secret of the deployment like
//! `TALLY_LINK_SECRET`), shown to the provider when its webhook is set and
//! changed by bumping the generation.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;
use tally_domain::ProviderId;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// How long one webhook call may take.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The platform's webhook key, from which each provider's secret derives.
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

impl WebhookKey {
    pub fn new(key: &str) -> Self {
        Self(key.as_bytes().to_vec())
    }

    /// `provider`'s webhook secret at `generation`: `whsec_` and 64 hex digits.
    pub fn provider_secret(&self, provider: &ProviderId, generation: i32) -> String {
        let mut mac = keyed(&self.0);
        mac.update(b"tally-webhook-secret|");
        mac.update(provider.as_str().as_bytes());
        mac.update(b"|");
        mac.update(generation.to_string().as_bytes());
        format!("whsec_{}", hex::encode(mac.finalize().into_bytes()))
    }
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC accepts any key"))
}

/// HMAC-SHA256 of `{id}.{timestamp}.{body}` under `secret`.
fn mac_of(secret: &str, id: &Uuid, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = keyed(secret.as_bytes());
    mac.update(id.to_string().as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `webhook-signature` value of one delivery attempt.
pub fn sign(secret: &str, id: &Uuid, timestamp: i64, body: &[u8]) -> String {
    let mac = mac_of(secret, id, timestamp, body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Whether `signature` is a valid `webhook-signature` of the delivery (what
/// a provider checks; constant time).
pub fn verify(secret: &str, id: &Uuid, timestamp: i64, body: &[u8], signature: &str) -> bool {
    let Some(hex_mac) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_mac) else {
        return false;
    };
    mac_of(secret, id, timestamp, body)
        .verify_slice(&given)
        .is_ok()
}

/// How long to wait after failed attempt number `attempts` (1 for the
/// first): 10 s doubling, at most an hour.
pub fn retry_delay(attempts: i32) -> TimeDelta {
    let doublings = u32::try_from(attempts.saturating_sub(1))
        .unwrap_or(0)
        .min(20);
    TimeDelta::seconds((10_i64 << doublings).min(3600))
}

/// Sets where `provider` receives binding events, starting secret
/// generation 1 (or bumping it when `rotate`); returns the generation.
pub async fn set_webhook(
    conn: &mut PgConnection,
    provider: &ProviderId,
    url: &str,
    rotate: bool,
) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO provider_webhooks (provider_id, url) VALUES ($1, $2)
         ON CONFLICT (provider_id) DO UPDATE SET url = EXCLUDED.url, updated_at = now(),
             secret_generation = provider_webhooks.secret_generation + CASE WHEN $3 THEN 1 ELSE 0 END
         RETURNING secret_generation",
    )
    .bind(provider.as_str())
    .bind(url)
    .bind(rotate)
    .fetch_one(conn)
    .await
}

/// Publishes up to `limit` unpublished binding events on `topic` (key =
/// binding id), in order, and marks them published; how many.
pub async fn publish_pending(
    pool: &PgPool,
    producer: &crate::kafka::Producer,
    topic: &str,
    limit: i64,
) -> anyhow::Result<usize> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, binding_id, body::text FROM binding_outbox
         WHERE published_at IS NULL ORDER BY seq LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    crate::kafka::send_all(
        producer,
        rows.iter()
            .map(|(_, key, body)| (topic, key.as_str(), body.as_bytes())),
    )
    .await?;
    let seqs: Vec<i64> = rows.iter().map(|(seq, _, _)| *seq).collect();
    sqlx::query("UPDATE binding_outbox SET published_at = now() WHERE seq = ANY($1)")
        .bind(&seqs)
        .execute(pool)
        .await?;
    Ok(rows.len())
}

/// What one [`deliver_due`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Deliveries {
    pub delivered: usize,
    pub failed: usize,
}

/// Delivers the events due at `now` (the oldest undelivered of each
/// binding, whose provider has a webhook), at most `limit`, each in its own
/// transaction that holds the event's row while it is sent (several workers
/// share the work: `SKIP LOCKED`).
pub async fn deliver_due(
    pool: &PgPool,
    http: &reqwest::Client,
    key: &WebhookKey,
    now: DateTime<Utc>,
    limit: usize,
) -> Result<Deliveries, sqlx::Error> {
    let mut done = Deliveries::default();
    for _ in 0..limit {
        let mut tx = pool.begin().await?;
        let row = sqlx::query(
            "SELECT o.seq, o.event_id, o.provider_id, o.body::text AS body, o.attempts,
                    w.url, w.secret_generation
             FROM binding_outbox o JOIN provider_webhooks w ON w.provider_id = o.provider_id
             WHERE o.delivered_at IS NULL AND o.next_attempt_at <= $1
               AND o.seq = (SELECT min(x.seq) FROM binding_outbox x
                            WHERE x.binding_id = o.binding_id AND x.delivered_at IS NULL)
             ORDER BY o.seq LIMIT 1
             FOR UPDATE OF o SKIP LOCKED",
        )
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            break;
        };
        let seq: i64 = row.try_get("seq")?;
        let id: Uuid = row.try_get("event_id")?;
        let provider = ProviderId::parse(row.try_get("provider_id")?)
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let body: String = row.try_get("body")?;
        let attempts: i32 = row.try_get::<i32, _>("attempts")? + 1;
        let url: String = row.try_get("url")?;
        let secret = key.provider_secret(&provider, row.try_get("secret_generation")?);
        let timestamp = now.timestamp();
        let answer = http
            .post(&url)
            .timeout(DELIVERY_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(HEADER_ID, id.to_string())
            .header(HEADER_TIMESTAMP, timestamp.to_string())
            .header(
                HEADER_SIGNATURE,
                sign(&secret, &id, timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await;
        let failure = match answer {
            Ok(r) if r.status().is_success() => None,
            Ok(r) => Some(format!("the webhook answered {}", r.status())),
            Err(e) => Some(format!("the webhook could not be reached: {e}")),
        };
        match &failure {
            None => {
                sqlx::query(
                    "UPDATE binding_outbox SET delivered_at = $2, attempts = $3, last_error = NULL
                     WHERE seq = $1",
                )
                .bind(seq)
                .bind(now)
                .bind(attempts)
                .execute(&mut *tx)
                .await?;
                done.delivered += 1;
            }
            Some(error) => {
                tracing::warn!(provider = %provider, event = %id, attempts, %error, "binding webhook failed; retrying later");
                sqlx::query(
                    "UPDATE binding_outbox SET attempts = $2, next_attempt_at = $3, last_error = $4
                     WHERE seq = $1",
                )
                .bind(seq)
                .bind(attempts)
                .bind(now + retry_delay(attempts))
                .bind(error)
                .execute(&mut *tx)
                .await?;
                done.failed += 1;
            }
        }
        tx.commit().await?;
    }
    Ok(done)
}

/// How often the worker looks for events to publish and deliver.
const EVERY: Duration = Duration::from_millis(500);

/// Publishes and delivers binding events until `shutdown`; without a
/// webhook key it only publishes.
pub async fn run(
    pool: PgPool,
    producer: crate::kafka::Producer,
    topic: String,
    key: Option<WebhookKey>,
    shutdown: CancellationToken,
) {
    if key.is_none() {
        tracing::warn!("TALLY_WEBHOOK_KEY is not set: binding events are published on Kafka but not delivered to providers' webhooks");
    }
    let http = reqwest::Client::new();
    loop {
        if let Err(err) = publish_pending(&pool, &producer, &topic, 500).await {
            tracing::warn!(error = %err, "publishing binding events failed; retrying");
        }
        if let Some(key) = &key {
            if let Err(err) = deliver_due(&pool, &http, key, Utc::now(), 100).await {
                tracing::warn!(error = %err, "delivering binding events failed; retrying");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_ten_seconds_to_an_hour() {
        let delays: Vec<i64> = (1..=11).map(|a| retry_delay(a).num_seconds()).collect();
        assert_eq!(
            delays,
            [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
        );
        assert_eq!(retry_delay(i32::MAX).num_seconds(), 3600);
    }

    #[test]
    fn a_signature_verifies_only_for_its_secret_id_time_and_body() {
        let key = WebhookKey::new("platform-key");
        let dbco = ProviderId::parse("dbco").unwrap_or_else(|_| unreachable!());
        let secret = key.provider_secret(&dbco, 1);
        assert!(secret.starts_with("whsec_") && secret.len() == 6 + 64);
        assert_ne!(secret, key.provider_secret(&dbco, 2), "rotation changes it");
        let id = Uuid::nil();
        let signature = sign(&secret, &id, 1_700_000_000, b"{}");
        assert!(verify(&secret, &id, 1_700_000_000, b"{}", &signature));
        assert!(!verify(&secret, &id, 1_700_000_001, b"{}", &signature));
        assert!(!verify(&secret, &id, 1_700_000_000, b"{ }", &signature));
        assert!(!verify(
            &key.provider_secret(&dbco, 2),
            &id,
            1_700_000_000,
            b"{}",
            &signature
        ));
        assert!(!verify(&secret, &id, 1_700_000_000, b"{}", "v2=00"));
    }
}
