//! A provider's usage corrections: `POST /v1/events/{id}/cancel`,
//! `POST /v1/events/{id}/amend` and `POST /v1/backfills`. Each is checked
//! against the events rating counted (`counted_events`) and, once accepted,
//! produced to `usage.events` keyed by the account, so rating applies it in
//! order with the account's usage (`tally_rating::correct`); the answer
//! (202) comes after the broker acknowledged it. Rating checks it again
//! when it applies it, and records it applied or refused (`GET
//! /v1/provider/corrections` on the API).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tally_domain::usage::{Change, CorrectionRequest};
use tally_domain::usage_correction::{self, Refusal};
use tally_domain::{AccountId, EventId, ProviderId, Quantity};
use tally_platform::auth;

use crate::error::ApiError;
use crate::ingest::{accepted_events, id_of, validate, IngestState, MAX_BODY_BYTES};
use crate::sink::SinkError;

/// The longest reason a correction may give.
pub const MAX_REASON: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelBody {
    reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AmendBody {
    reason: String,
    /// The event's quantity from now on (a decimal string or number).
    quantity: serde_json::Value,
    /// Its dimensions from now on (absent: none).
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackfillBody<'a> {
    account: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    reason: String,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// The answer to an accepted correction.
#[derive(Debug, Serialize)]
pub struct Accepted {
    pub correction_id: String,
    pub kind: &'static str,
    pub account: String,
    pub status: &'static str,
}

fn refused(refusal: Refusal, message: impl Into<String>) -> ApiError {
    ApiError::CorrectionRefused {
        code: refusal.code(),
        message: message.into(),
    }
}

fn body_of(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_BODY_BYTES)
        } else {
            ApiError::Malformed(rejection.body_text())
        }
    })
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))
}

fn check_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(refused(
            Refusal::ReasonMissing,
            Refusal::ReasonMissing.to_string(),
        ));
    }
    if reason.len() > MAX_REASON || reason.contains('\0') {
        return Err(ApiError::InvalidRequest(format!(
            "reason: at most {MAX_REASON} bytes, no U+0000"
        )));
    }
    Ok(reason.to_owned())
}

/// The caller's provider and its key's id (who asked).
async fn caller(
    state: &IngestState,
    headers: &HeaderMap,
) -> Result<(ProviderId, String), ApiError> {
    let provider = crate::ingest::provider_of(&state.lookup, headers).await?;
    let token = auth::bearer(headers).ok_or(ApiError::Unauthorized)?;
    let key = auth::authenticate_key(state.lookup.pool(), token)
        .await
        .map_err(database)?
        .map(|(id, _)| id.to_string())
        .ok_or(ApiError::Unauthorized)?;
    Ok((provider, key))
}

/// A correction needs PostgreSQL: out of reach, it cannot be checked.
fn database(err: sqlx::Error) -> ApiError {
    if tally_platform::db::is_unavailable(&err) {
        ApiError::CatalogUnavailable
    } else {
        err.into()
    }
}

/// The counted event `id` of `provider`: its account, or why it cannot be
/// corrected (another provider's, unknown, cancelled, too old).
async fn target(
    state: &IngestState,
    provider: &ProviderId,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(EventId, AccountId), ApiError> {
    let unknown = || {
        refused(
            Refusal::UnknownEvent,
            format!("no event {id:?} was counted for this provider"),
        )
    };
    let event_id = EventId::parse(id).map_err(|_| unknown())?;
    // By the primary key (provider, event id): one index probe. Looking
    // the id up alone read the whole table (no index leads with the event
    // id), in every correction.
    let own: Option<(String, DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT account_id, event_time, cancelled_by IS NOT NULL
         FROM counted_events WHERE provider_id = $1 AND event_id = $2",
    )
    .bind(provider.as_str())
    .bind(event_id.as_str())
    .fetch_optional(state.lookup.pool())
    .await
    .map_err(database)?;
    let Some((account, time, cancelled)) = own else {
        // Only a refusal reads further, to tell another provider's event
        // from an unknown one: by the primary key under each provider (one
        // index probe per provider; the id alone has no index, and reading
        // the whole dedupe set per refused correction would let any
        // provider's unknown ids scan it).
        let elsewhere: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM providers p CROSS JOIN LATERAL (
                 SELECT 1 FROM counted_events c WHERE c.provider_id = p.id AND c.event_id = $1
                 LIMIT 1) c)",
        )
        .bind(event_id.as_str())
        .fetch_one(state.lookup.pool())
        .await
        .map_err(database)?;
        if !elsewhere {
            return Err(unknown());
        }
        return Err(refused(
            Refusal::NotProvidersEvent,
            format!("event {id:?} was sent by another provider"),
        ));
    };
    usage_correction::check_target(Some((cancelled, &account)), &account)
        .map_err(|r| refused(r, format!("event {id:?}: {r}")))?;
    if time < usage_correction::oldest_correctable(now, state.max_age) {
        return Err(refused(
            Refusal::OutsideWindow,
            format!(
                "event {id:?} happened at {}, before the correction window",
                time.to_rfc3339()
            ),
        ));
    }
    let account = AccountId::parse(&account).map_err(|e| ApiError::Internal(e.into()))?;
    Ok((event_id, account))
}

async fn produce(
    state: &IngestState,
    request: CorrectionRequest,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .sink
        .publish_correction(&request)
        .await
        .map_err(|e| match e {
            SinkError::Broker(cause) => ApiError::BrokerUnavailable(cause),
            SinkError::TooLarge(_) => ApiError::PayloadTooLarge(MAX_BODY_BYTES),
            other => ApiError::Internal(other.into()),
        })?;
    metrics::counter!("tally_corrections_accepted_total", "kind" => request.change.kind())
        .increment(1);
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            correction_id: request.id,
            kind: request.change.kind(),
            account: request.account_id.to_string(),
            status: "accepted",
        }),
    ))
}

/// Who asks for a correction, why and when.
struct Asked {
    provider: ProviderId,
    /// The id of the caller's key.
    key: String,
    reason: String,
    now: DateTime<Utc>,
}

impl Asked {
    /// The caller ([`caller`]) and its reason (`reason_missing` when it
    /// gives none).
    fn new((provider, key): (ProviderId, String), reason: &str) -> Result<Asked, ApiError> {
        Ok(Asked {
            provider,
            key,
            reason: check_reason(reason)?,
            now: Utc::now(),
        })
    }

    fn request(self, account: AccountId, change: Change) -> CorrectionRequest {
        CorrectionRequest {
            id: uuid::Uuid::now_v7().to_string(),
            provider_id: self.provider,
            account_id: account,
            reason: self.reason,
            requested_by: self.key,
            requested_at: self.now,
            change,
        }
    }
}

/// `POST /v1/events/{id}/cancel`: the event stops counting.
#[tracing::instrument(skip_all, fields(provider))]
pub async fn cancel(
    State(state): State<Arc<IngestState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let caller = caller(&state, &headers).await?;
    let body: CancelBody = parse(&body_of(body)?)?;
    let asked = Asked::new(caller, &body.reason)?;
    let (event_id, account) = target(&state, &asked.provider, &id, asked.now).await?;
    produce(&state, asked.request(account, Change::Cancel { event_id })).await
}

/// `POST /v1/events/{id}/amend`: the event counts with a new quantity and
/// dimensions.
#[tracing::instrument(skip_all, fields(provider))]
pub async fn amend(
    State(state): State<Arc<IngestState>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let caller = caller(&state, &headers).await?;
    let body: AmendBody = parse(&body_of(body)?)?;
    let asked = Asked::new(caller, &body.reason)?;
    let quantity = match &body.quantity {
        serde_json::Value::String(s) => Quantity::parse(s).ok(),
        serde_json::Value::Number(n) => Quantity::parse(&n.to_string()).ok(),
        _ => None,
    }
    .ok_or_else(|| ApiError::CorrectionRefused {
        code: "quantity_invalid",
        message: "quantity: a non-negative decimal, at most 1e15, at most 12 decimals".into(),
    })?;
    if body.dimensions.len() > crate::event::MAX_DIMENSIONS
        || body
            .dimensions
            .iter()
            .any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return Err(ApiError::CorrectionRefused {
            code: "dimension_invalid",
            message: format!(
                "dimensions: at most {} names and values without U+0000",
                crate::event::MAX_DIMENSIONS
            ),
        });
    }
    let (event_id, account) = target(&state, &asked.provider, &id, asked.now).await?;
    let change = Change::Amend {
        event_id,
        quantity,
        dimensions: body.dimensions,
    };
    produce(&state, asked.request(account, change)).await
}

/// `POST /v1/backfills`: every counted event of the provider for the
/// account timed in `[start, end)` is replaced by `events` (CloudEvents,
/// each checked by the rules of `POST /v1/events`).
#[tracing::instrument(skip_all, fields(provider))]
pub async fn backfill(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let caller = caller(&state, &headers).await?;
    let body = body_of(body)?;
    let body: BackfillBody = parse(&body)?;
    let asked = Asked::new(caller, &body.reason)?;
    let (provider, now) = (asked.provider.clone(), asked.now);
    let account = AccountId::parse(&body.account).map_err(|_| ApiError::CorrectionRefused {
        code: "account_unknown",
        message: format!("account {:?} does not exist", body.account),
    })?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts WHERE id = $1)")
        .bind(account.as_str())
        .fetch_one(state.lookup.pool())
        .await
        .map_err(database)?;
    if !exists {
        return Err(ApiError::CorrectionRefused {
            code: "account_unknown",
            message: format!("account {account} does not exist"),
        });
    }
    if body.start >= body.end
        || body.end > now + chrono::TimeDelta::from_std(state.max_future).unwrap_or_default()
    {
        return Err(refused(
            Refusal::WindowInvalid,
            "the window must start before it ends, and end no later than now",
        ));
    }
    if body.start < usage_correction::oldest_correctable(now, state.max_age) {
        return Err(refused(
            Refusal::OutsideWindow,
            "the window starts before the correction window (the ingest window)",
        ));
    }
    if body.events.len() > crate::ingest::MAX_BATCH_EVENTS {
        return Err(ApiError::BatchTooLarge {
            max: crate::ingest::MAX_BATCH_EVENTS,
            got: body.events.len(),
        });
    }
    // Every replacement passes the rules of `POST /v1/events`; one refused
    // refuses the backfill (it is one operation).
    let outcomes = validate(
        &state.lookup,
        &provider,
        &body.events,
        now,
        state.max_age,
        state.max_future,
    )
    .await?;
    if let Some((index, Err(rejection))) = outcomes.iter().enumerate().find(|(_, o)| o.is_err()) {
        return Err(ApiError::CorrectionRefused {
            code: rejection.code,
            message: format!(
                "event {index} ({}): {}",
                id_of(body.events[index]).unwrap_or_default(),
                rejection.message
            ),
        });
    }
    let events = accepted_events(&provider, &outcomes, now);
    // Through the periods meeting the window, as rating reads it
    // (`tally_rating::corrections_repo::window_for_update`).
    let replaced: Vec<String> = sqlx::query_scalar(
        "SELECT event_id FROM counted_events
         WHERE account_id = $1 AND period_start < $4 AND period_end > $3
           AND provider_id = $2 AND event_time >= $3 AND event_time < $4
           AND cancelled_by IS NULL",
    )
    .bind(account.as_str())
    .bind(provider.as_str())
    .bind(body.start)
    .bind(body.end)
    .fetch_all(state.lookup.pool())
    .await
    .map_err(database)?;
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    let taken =
        tally_platform::counted::already_counted(state.lookup.pool(), provider.as_str(), &ids)
            .await
            .map_err(database)?;
    let request = asked.request(
        account,
        Change::Backfill {
            start: body.start,
            end: body.end,
            events,
        },
    );
    usage_correction::check_backfill(
        &request,
        &replaced.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        &taken.iter().map(String::as_str).collect::<BTreeSet<_>>(),
    )
    .map_err(|r| refused(r, r.to_string()))?;
    produce(&state, request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_required_and_bounded() {
        assert_eq!(check_reason("  ").unwrap_err().code(), "reason_missing");
        assert_eq!(check_reason(" metered twice ").unwrap(), "metered twice");
        assert_eq!(
            check_reason(&"x".repeat(MAX_REASON + 1))
                .unwrap_err()
                .code(),
            "invalid_request"
        );
    }

    #[test]
    fn bodies_refuse_unknown_fields() {
        assert!(parse::<CancelBody>(br#"{"reason":"x","extra":1}"#).is_err());
        let amend: AmendBody = parse(br#"{"reason":"x","quantity":"2.5"}"#).unwrap();
        assert_eq!(amend.quantity, serde_json::json!("2.5"));
        assert!(amend.dimensions.is_empty());
    }
}
