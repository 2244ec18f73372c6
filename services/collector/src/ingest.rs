//! `POST /v1/events`: one CloudEvent or a batch; a per-event answer after the
//! broker acknowledged every accepted event.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use chrono::Utc;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_domain::binding::{check_bound, NotBound};
use tally_domain::statement::check_billable;
use tally_domain::{ProviderId, UsageEvent};
use tally_platform::auth::{self, Principal};
use tally_platform::catalog::{KnownAccount, SkuTerms};

use crate::error::ApiError;
use crate::event::{check_time_window, parse_raw_event, EventRejection, ParsedEvent};
use crate::lookup::Lookup;
use crate::sink::{EventSink, SinkError};
use crate::traces::IngestTrace;

pub const MAX_BATCH_EVENTS: usize = 1000;
/// The largest request body: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest event, as sent (its JSON text): 256 KiB. A larger one is
/// refused on its own (`event_too_large`) before anything is produced. The
/// Kafka message made of an event is at most its size plus a few hundred
/// bytes (`received_at`, the provider, a quantity written out), well under
/// the producer's `message.max.bytes`
/// ([`tally_platform::kafka::MAX_MESSAGE_BYTES`]),
/// itself under the topic's `max.message.bytes`.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

pub struct IngestState {
    pub lookup: Lookup,
    pub sink: Arc<dyn EventSink>,
    pub max_age: Duration,
    pub max_future: Duration,
}

#[derive(Debug, Serialize)]
pub struct EventResult {
    pub index: usize,
    pub id: Option<String>,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct IngestResponse {
    pub accepted: usize,
    pub rejected: usize,
    pub results: Vec<EventResult>,
}

pub(crate) async fn provider_of(
    lookup: &Lookup,
    headers: &HeaderMap,
) -> Result<ProviderId, ApiError> {
    let token = auth::bearer(headers).ok_or(ApiError::Unauthorized)?;
    match lookup.principal(token).await? {
        Some(Principal::Provider(id)) => Ok(id),
        Some(_) => Err(ApiError::Forbidden),
        None => Err(ApiError::Unauthorized),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let essence = tally_platform::http::media_type(headers);
    match essence.as_deref().unwrap_or("application/json") {
        "application/json"
        | "application/cloudevents+json"
        | "application/cloudevents-batch+json" => Ok(()),
        _ => Err(ApiError::UnsupportedMediaType),
    }
}

/// The events of the body, each still raw JSON: an object is one event, an
/// array a batch.
pub(crate) fn events_of(body: &[u8]) -> Result<Vec<&RawValue>, ApiError> {
    let whole: &RawValue =
        serde_json::from_slice(body).map_err(|e| ApiError::Malformed(e.to_string()))?;
    match whole.get().as_bytes().first() {
        Some(b'[') => {
            let events: Vec<&RawValue> = serde_json::from_str(whole.get())
                .map_err(|e| ApiError::Malformed(e.to_string()))?;
            if events.is_empty() {
                Err(ApiError::InvalidRequest("the batch is empty".into()))
            } else if events.len() > MAX_BATCH_EVENTS {
                Err(ApiError::BatchTooLarge {
                    max: MAX_BATCH_EVENTS,
                    got: events.len(),
                })
            } else {
                Ok(events)
            }
        }
        Some(b'{') => Ok(vec![whole]),
        _ => Err(ApiError::Malformed("expected an object or an array".into())),
    }
}

/// Binary content mode (CloudEvents HTTP binding): the attributes in
/// `ce-*` headers, the data as the body. `None` when the request is not in
/// binary mode (no `ce-specversion` header).
fn binary_event(headers: &HeaderMap, body: &[u8]) -> Option<Result<Box<RawValue>, ApiError>> {
    headers.get("ce-specversion")?;
    Some(binary_event_of(headers, body))
}

fn binary_event_of(headers: &HeaderMap, body: &[u8]) -> Result<Box<RawValue>, ApiError> {
    let mut event = serde_json::Map::new();
    for (name, value) in headers {
        let Some(attribute) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let value = value
            .to_str()
            .map_err(|_| ApiError::Malformed(format!("header {name} is not visible ASCII")))?;
        event.insert(attribute.to_owned(), Value::String(percent_decoded(value)?));
    }
    if let Some(kind) = headers.get(header::CONTENT_TYPE) {
        let kind = kind.to_str().unwrap_or_default();
        event.insert("datacontenttype".into(), Value::String(kind.to_owned()));
    }
    let data: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::Malformed(format!("the data of a binary-mode event must be JSON: {e}"))
    })?;
    event.insert("data".into(), data);
    serde_json::value::to_raw_value(&Value::Object(event))
        .map_err(|e| ApiError::Malformed(e.to_string()))
}

/// A `ce-*` header value with its `%XX` escapes decoded (the HTTP binding
/// percent-encodes what is not printable ASCII).
fn percent_decoded(value: &str) -> Result<String, ApiError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = value
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ApiError::Malformed(format!("a bad %-escape in {value:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ApiError::Malformed(format!("{value:?} is not UTF-8")))
}

/// The `id` of an event that was refused, when it has a string one.
pub fn id_of(raw: &RawValue) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<Value>,
    }
    match serde_json::from_str::<Id>(raw.get()).ok()?.id? {
        Value::String(id) => Some(id),
        _ => None,
    }
}

#[tracing::instrument(skip_all, fields(provider, events))]
pub async fn post_events(
    State(state): State<Arc<IngestState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IngestResponse>), ApiError> {
    let started = Instant::now();
    let provider = provider_of(&state.lookup, &headers).await?;
    tracing::Span::current().record("provider", provider.as_str());
    check_content_type(&headers)?;
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(MAX_BODY_BYTES)
        } else {
            ApiError::Malformed(rejection.body_text())
        }
    })?;
    let binary = binary_event(&headers, &body).transpose()?;
    let raw = match &binary {
        Some(event) => vec![&**event],
        None => events_of(&body)?,
    };
    // One event (binary mode, or one object): refused, it gets a 4xx.
    let single = binary.is_some() || body.trim_ascii_start().first() == Some(&b'{');
    tracing::Span::current().record("events", raw.len());

    let now = Utc::now();
    let outcomes = validate(
        &state.lookup,
        &provider,
        &raw,
        now,
        state.max_age,
        state.max_future,
    )
    .await?;
    let accepted = accepted_events(&provider, &outcomes, now);
    if !accepted.is_empty() {
        let trace = IngestTrace::start(&headers, &provider, raw.len(), &accepted);
        let traceparents = trace.as_ref().map_or(&[][..], |t| &t.traceparents[..]);
        let published = state.sink.publish(&accepted, traceparents).await;
        if let Some(trace) = trace {
            trace.end(published.as_ref().err().map(|_| "not published"));
        }
        published.map_err(|e| match e {
            SinkError::Broker(cause) => ApiError::BrokerUnavailable(cause),
            other => ApiError::Internal(other.into()),
        })?;
    }

    if single {
        if let Some(Err(refused)) = outcomes.first() {
            metrics::counter!("tally_events_rejected_total", "code" => refused.code).increment(1);
            return Err(ApiError::EventRefused {
                code: refused.code,
                message: refused.message.clone(),
            });
        }
    }
    let results: Vec<EventResult> = outcomes
        .into_iter()
        .enumerate()
        .map(|(index, outcome)| match outcome {
            Ok(e) => EventResult {
                index,
                id: Some(e.id.to_string()),
                status: "accepted",
                code: None,
                message: None,
            },
            Err(r) => {
                metrics::counter!("tally_events_rejected_total", "code" => r.code).increment(1);
                EventResult {
                    index,
                    id: id_of(raw[index]),
                    status: "rejected",
                    code: Some(r.code),
                    message: Some(r.message),
                }
            }
        })
        .collect();
    let response = IngestResponse {
        accepted: accepted.len(),
        rejected: results.len() - accepted.len(),
        results,
    };
    metrics::counter!("tally_events_accepted_total").increment(response.accepted as u64);
    metrics::histogram!("tally_ingest_batch_seconds").record(started.elapsed().as_secs_f64());
    Ok((StatusCode::ACCEPTED, Json(response)))
}

/// Every rule an event must pass, HTTP or file import alike: its size, the
/// CloudEvent and usage schema, the time window, then the catalog (one
/// query for all SKUs and accounts of `raw`). One outcome per event, in order.
pub async fn validate(
    lookup: &Lookup,
    provider: &ProviderId,
    raw: &[&RawValue],
    now: chrono::DateTime<Utc>,
    max_age: Duration,
    max_future: Duration,
) -> Result<Vec<Result<ParsedEvent, EventRejection>>, ApiError> {
    let mut outcomes: Vec<Result<ParsedEvent, EventRejection>> = raw
        .iter()
        .map(|v| {
            if v.get().len() > MAX_EVENT_BYTES {
                return Err(EventRejection::new(
                    "event_too_large",
                    format!(
                        "the event is {} bytes; one event may have at most {MAX_EVENT_BYTES}",
                        v.get().len()
                    ),
                ));
            }
            parse_raw_event(v, provider).and_then(|e| {
                check_time_window(&e, now, max_age, max_future)?;
                Ok(e)
            })
        })
        .collect();
    check_catalog(lookup, provider, &mut outcomes).await?;
    Ok(outcomes)
}

/// The usage events to publish: the accepted outcomes, received at `now`.
pub fn accepted_events(
    provider: &ProviderId,
    outcomes: &[Result<ParsedEvent, EventRejection>],
    now: chrono::DateTime<Utc>,
) -> Vec<UsageEvent> {
    outcomes
        .iter()
        .filter_map(|o| o.as_ref().ok())
        .map(|e| UsageEvent {
            provider_id: provider.clone(),
            event_id: e.id.clone(),
            account_id: e.account.clone(),
            sku: e.sku.clone(),
            quantity: e.quantity,
            time: e.time,
            received_at: now,
            dimensions: e.dimensions.clone(),
            resource: e.resource.clone(),
            on_behalf_of: e.on_behalf_of.clone(),
        })
        .collect()
}

/// SKU ownership, account existence and bindings, one query each for the
/// whole batch.
async fn check_catalog(
    lookup: &Lookup,
    provider: &ProviderId,
    outcomes: &mut [Result<ParsedEvent, EventRejection>],
) -> Result<(), ApiError> {
    let valid = || outcomes.iter().filter_map(|o| o.as_ref().ok());
    // Each distinct SKU and account once (a batch repeats them).
    let skus: Vec<&str> = valid()
        .map(|e| e.sku.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if skus.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&str> = valid()
        .map(|e| e.account.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let resources: Vec<&str> = valid()
        .filter_map(|e| e.resource.as_ref().map(|r| r.as_str()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let references: Vec<(&str, &str)> = valid()
        .filter_map(|e| {
            e.on_behalf_of
                .as_ref()
                .map(|r| (r.as_str(), e.account.as_str()))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let found = lookup
        .catalog(provider, &skus, &accounts, &resources, &references)
        .await?;
    let (skus, known) = (&found.skus, &found.accounts);
    for outcome in outcomes.iter_mut() {
        let Ok(event) = outcome else { continue };
        let verdict = match (
            skus.get(event.sku.as_str()),
            known.get(event.account.as_str()),
        ) {
            (None, _) => Some(EventRejection::new(
                "unknown_sku",
                format!("sku {} does not exist", event.sku),
            )),
            (Some(terms), _) if terms.owner != provider.as_str() => Some(EventRejection::new(
                "sku_not_owned",
                format!("sku {} belongs to another provider", event.sku),
            )),
            (Some(_), None) => Some(EventRejection::new(
                "account_unknown",
                format!("account {} does not exist", event.account),
            )),
            (Some(terms), Some(account)) => unbillable(event, terms, account)
                .or_else(|| unbound(provider, event, &found))
                .or_else(|| not_on_behalf(event, &found)),
        };
        if let Some(rejection) = verdict {
            *outcome = Err(rejection);
        }
    }
    Ok(())
}

/// An event rating could not bill even on its own: its quantity at the
/// SKU's price in the account's currency (the version rating will apply:
/// in effect at the event's time, wholesale for an account a provider owns
/// where one is in effect; under the platform's markup) overflows an
/// amount (`amount_overflow`). An event without a price yet is accepted:
/// rating dead-letters it as `no_price`, replayable once a price exists.
fn unbillable(
    event: &ParsedEvent,
    terms: &SkuTerms,
    account: &KnownAccount,
) -> Option<EventRejection> {
    let currency = account.currency;
    let price = terms.price_at(currency, event.time, account.provider_owned)?;
    let quantity = event.quantity.value();
    check_billable(&price.model, quantity, terms.markup_pct, currency)
        .err()
        .map(|_| {
            EventRejection::new(
                "amount_overflow",
                format!(
                    "{quantity} units of {} cannot be billed at its {currency} price: the charge overflows",
                    event.sku
                ),
            )
        })
}

/// Usage that does not name a binding of the account active at its time,
/// where it must ([`check_bound`]): `not_bound`.
fn unbound(
    provider: &ProviderId,
    event: &ParsedEvent,
    found: &crate::lookup::Catalog,
) -> Option<EventRejection> {
    let window = event
        .resource
        .as_ref()
        .and_then(|r| found.windows.get(r.as_str()));
    check_bound(
        provider,
        &event.account,
        event.time,
        found.requires_binding,
        event.resource.as_ref(),
        window,
    )
    .err()
    .map(|refusal| EventRejection::new(NotBound::CODE, refusal.to_string()))
}

/// Usage naming a consumer reference (`onbehalfof`) that the provider
/// owning its account did not mint: `on_behalf_of_unknown`. One code for
/// a reference that does not exist, is another provider's, or names an
/// account no provider owns: the sender learns nothing about whose it is.
fn not_on_behalf(event: &ParsedEvent, found: &crate::lookup::Catalog) -> Option<EventRejection> {
    let reference = event.on_behalf_of.as_ref()?;
    let pair = (reference.to_string(), event.account.to_string());
    (!found.on_behalf.contains(&pair)).then(|| {
        EventRejection::new(
            ON_BEHALF_OF_UNKNOWN,
            format!(
                "`onbehalfof` is not a consumer reference of account {}'s provider",
                event.account
            ),
        )
    })
}

/// The code of [`not_on_behalf`].
pub const ON_BEHALF_OF_UNKNOWN: &str = "on_behalf_of_unknown";

#[cfg(test)]
mod tests {
    use super::*;
    use tally_platform::kafka;

    #[test]
    fn limits_nest_from_the_event_to_the_topic() {
        // An event's message: the event, plus `received_at`, the provider
        // and a quantity written out (far less than 4 KiB).
        const MESSAGE_OVERHEAD: usize = 4 * 1024;
        const _: () = assert!(MAX_EVENT_BYTES + MESSAGE_OVERHEAD < kafka::MAX_MESSAGE_BYTES);
        const _: () = assert!(kafka::MAX_MESSAGE_BYTES < kafka::TOPIC_MAX_MESSAGE_BYTES);
        const _: () = assert!(MAX_EVENT_BYTES < MAX_BODY_BYTES);
    }
}
