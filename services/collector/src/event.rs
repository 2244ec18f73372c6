//! Parsing one usage CloudEvent: pure, no IO, no clock. The structural rules
//! here are the ones `schemas/cloudevent-usage.schema.json` states; a test
//! keeps the two in agreement.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;
use tally_domain::composition::OnBehalfOf;
use tally_domain::{AccountId, BindingId, EventId, ProviderId, Quantity, Sku};

/// At most this many dimensions per event.
pub const MAX_DIMENSIONS: usize = 16;

/// A dimension name or value PostgreSQL cannot store (it holds no U+0000 in
/// text): such an event could be accepted but never billed.
fn has_nul(dimensions: &BTreeMap<String, String>) -> bool {
    dimensions
        .iter()
        .any(|(k, v)| k.contains('\0') || v.contains('\0'))
}

fn nul_in_dimensions() -> EventRejection {
    EventRejection::new(
        "dimension_invalid",
        "`data.dimensions` names and values must not contain U+0000 (NUL)",
    )
}

/// A structurally valid usage event from an authenticated provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedEvent {
    pub id: EventId,
    pub account: AccountId,
    pub sku: Sku,
    pub quantity: Quantity,
    pub time: DateTime<Utc>,
    pub dimensions: BTreeMap<String, String>,
    /// The binding the usage belongs to (the `resource` extension attribute).
    pub resource: Option<BindingId>,
    /// The consumer a composing provider's usage was done for (the
    /// `onbehalfof` extension attribute: an opaque reference).
    pub on_behalf_of: Option<OnBehalfOf>,
}

/// Why one event of a batch was refused: a stable code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRejection {
    pub code: &'static str,
    pub message: String,
}

impl EventRejection {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn malformed(message: impl Into<String>) -> Self {
        Self::new("malformed", message)
    }
}

fn string<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, EventRejection> {
    match obj.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(EventRejection::malformed(format!(
            "`{name}` must be a string"
        ))),
        None => Err(EventRejection::malformed(format!("`{name}` is required"))),
    }
}

/// Parses one CloudEvent sent by `provider`.
pub fn parse_event(value: &Value, provider: &ProviderId) -> Result<ParsedEvent, EventRejection> {
    let obj = value
        .as_object()
        .ok_or_else(|| EventRejection::malformed("an event must be a JSON object"))?;
    if string(obj, "specversion")? != "1.0" {
        return Err(EventRejection::malformed("`specversion` must be \"1.0\""));
    }
    let id = EventId::parse(string(obj, "id")?)
        .map_err(|e| EventRejection::malformed(format!("`id`: {e}")))?;
    if string(obj, "type")?.is_empty() {
        return Err(EventRejection::malformed("`type` must not be empty"));
    }
    let account = AccountId::parse(string(obj, "subject")?)
        .map_err(|e| EventRejection::malformed(format!("`subject` (the account): {e}")))?;
    let time = DateTime::parse_from_rfc3339(string(obj, "time")?)
        .map_err(|e| EventRejection::malformed(format!("`time` must be RFC 3339: {e}")))?
        .with_timezone(&Utc);
    match obj.get("datacontenttype") {
        None => {}
        Some(Value::String(t)) if t == "application/json" => {}
        Some(_) => {
            return Err(EventRejection::malformed(
                "`datacontenttype` must be \"application/json\" when present",
            ))
        }
    }
    let data = match obj.get("data") {
        Some(Value::Object(data)) => data,
        Some(_) => return Err(EventRejection::malformed("`data` must be an object")),
        None => return Err(EventRejection::malformed("`data` is required")),
    };
    let resource = match obj.get("resource") {
        None => None,
        Some(Value::String(text)) => Some(
            BindingId::parse(text)
                .map_err(|e| EventRejection::malformed(format!("`resource` (the binding): {e}")))?,
        ),
        Some(_) => {
            return Err(EventRejection::malformed(
                "`resource` (the binding) must be a string",
            ))
        }
    };
    let on_behalf_of = match obj.get("onbehalfof") {
        None => None,
        Some(Value::String(text)) => Some(OnBehalfOf::parse(text).map_err(|e| {
            EventRejection::malformed(format!("`onbehalfof` (the consumer's reference): {e}"))
        })?),
        Some(_) => {
            return Err(EventRejection::malformed(
                "`onbehalfof` (the consumer's reference) must be a string",
            ))
        }
    };
    let sku = Sku::parse(string(data, "sku")?)
        .map_err(|e| EventRejection::malformed(format!("`data.sku`: {e}")))?;
    let quantity = match data.get("quantity") {
        Some(Value::String(text)) => Quantity::parse(text),
        Some(Value::Number(n)) => Quantity::parse_json_number(&n.to_string()),
        Some(_) => {
            return Err(EventRejection::new(
                "quantity_invalid",
                "`data.quantity` must be a decimal string or a number",
            ))
        }
        None => return Err(EventRejection::malformed("`data.quantity` is required")),
    }
    .map_err(|e| EventRejection::new("quantity_invalid", format!("`data.quantity`: {e}")))?;
    let dimensions = match data.get("dimensions") {
        None => BTreeMap::new(),
        Some(Value::Object(dims)) if dims.len() <= MAX_DIMENSIONS => dims
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(EventRejection::malformed(format!(
                    "`data.dimensions.{k}` must be a string"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(EventRejection::malformed(format!(
                "`data.dimensions` must be an object of at most {MAX_DIMENSIONS} strings"
            )))
        }
    };
    if has_nul(&dimensions) {
        return Err(nul_in_dimensions());
    }
    let source = string(obj, "source")?;
    if source != provider.as_str() && source.strip_prefix("/providers/") != Some(provider.as_str())
    {
        return Err(EventRejection::new(
            "source_mismatch",
            format!(
                "`source` must be the authenticated provider \"{provider}\" (or \"/providers/{provider}\"), not {source:?}"
            ),
        ));
    }
    Ok(ParsedEvent {
        id,
        account,
        sku,
        quantity,
        time,
        dimensions,
        resource,
        on_behalf_of,
    })
}

/// One event as it arrives, read straight into typed, borrowed fields: the
/// fast path for valid events (`tally bench` under perf found building a
/// `serde_json::Value` per event a large part of the collector's time).
/// Optional fields are taken raw (present, even as `null`, or absent) and
/// objects are checked to be objects (serde would read a struct from an
/// array too), so it accepts nothing the reference parser refuses.
#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(borrow)]
    specversion: Cow<'a, str>,
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    subject: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "present")]
    datacontenttype: Option<&'a RawValue>,
    #[serde(borrow)]
    data: &'a RawValue,
    #[serde(default, borrow, deserialize_with = "present")]
    resource: Option<&'a RawValue>,
    #[serde(default, borrow, deserialize_with = "present")]
    onbehalfof: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireData<'a> {
    #[serde(borrow)]
    sku: Cow<'a, str>,
    #[serde(borrow)]
    quantity: &'a RawValue,
    #[serde(default, borrow, deserialize_with = "present")]
    dimensions: Option<&'a RawValue>,
}

/// A field that is present, whatever its value (`null` included).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn is_object(raw: &RawValue) -> bool {
    raw.get().starts_with('{')
}

/// The typed parse: `Some` only for an event [`parse_event`] accepts, with
/// the same result; `None` for anything else.
pub fn parse_typed(raw: &RawValue, provider: &ProviderId) -> Option<ParsedEvent> {
    if !is_object(raw) {
        return None;
    }
    let wire: WireEvent<'_> = serde_json::from_str(raw.get()).ok()?;
    if wire.specversion != "1.0" || wire.kind.is_empty() || !is_object(wire.data) {
        return None;
    }
    let data: WireData<'_> = serde_json::from_str(wire.data.get()).ok()?;
    if wire
        .datacontenttype
        .is_some_and(|t| t.get() != "\"application/json\"")
    {
        return None;
    }
    let source = wire.source.as_ref();
    if source != provider.as_str() && source.strip_prefix("/providers/") != Some(provider.as_str())
    {
        return None;
    }
    let quantity = data.quantity.get();
    let quantity = if quantity.starts_with('"') {
        Quantity::parse(&serde_json::from_str::<Cow<'_, str>>(quantity).ok()?)
    } else if quantity.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        Quantity::parse_json_number(quantity)
    } else {
        return None;
    }
    .ok()?;
    let dimensions = match data.dimensions {
        None => BTreeMap::new(),
        Some(raw) => {
            let dims: BTreeMap<String, String> = serde_json::from_str(raw.get()).ok()?;
            if dims.len() > MAX_DIMENSIONS || has_nul(&dims) {
                return None;
            }
            dims
        }
    };
    let resource = match wire.resource {
        None => None,
        Some(raw) => {
            Some(BindingId::parse(&serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()?).ok()?)
        }
    };
    let on_behalf_of = match wire.onbehalfof {
        None => None,
        Some(raw) => {
            Some(OnBehalfOf::parse(&serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()?).ok()?)
        }
    };
    Some(ParsedEvent {
        id: EventId::parse(&wire.id).ok()?,
        account: AccountId::parse(&wire.subject).ok()?,
        sku: Sku::parse(&data.sku).ok()?,
        quantity,
        time: DateTime::parse_from_rfc3339(&wire.time)
            .ok()?
            .with_timezone(&Utc),
        dimensions,
        resource,
        on_behalf_of,
    })
}

/// Parses one CloudEvent of a batch, as received: the typed fast path, and
/// for an event it does not accept, [`parse_event`] for the precise reason.
pub fn parse_raw_event(
    raw: &RawValue,
    provider: &ProviderId,
) -> Result<ParsedEvent, EventRejection> {
    if let Some(event) = parse_typed(raw, provider) {
        return Ok(event);
    }
    let value: Value = serde_json::from_str(raw.get())
        .map_err(|e| EventRejection::malformed(format!("the event is not JSON: {e}")))?;
    parse_event(&value, provider)
}

/// Refuses events whose `time` is older than `now - max_age` or later than
/// `now + max_future` (`time_out_of_window`).
pub fn check_time_window(
    event: &ParsedEvent,
    now: DateTime<Utc>,
    max_age: Duration,
    max_future: Duration,
) -> Result<(), EventRejection> {
    let oldest = TimeDelta::from_std(max_age).map_or(DateTime::<Utc>::MIN_UTC, |d| now - d);
    let newest = TimeDelta::from_std(max_future).map_or(DateTime::<Utc>::MAX_UTC, |d| now + d);
    if event.time < oldest || event.time > newest {
        return Err(EventRejection::new(
            "time_out_of_window",
            format!(
                "`time` must lie between {} and {}",
                oldest.to_rfc3339(),
                newest.to_rfc3339()
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn provider() -> ProviderId {
        ProviderId::parse("dbco").unwrap()
    }

    fn valid() -> Value {
        json!({
            "specversion": "1.0", "id": "e-1", "source": "dbco", "type": "com.tally.usage",
            "subject": "acme", "time": "2026-11-20T10:00:00Z",
            "data": {"sku": "dbco.db.hour", "quantity": "1.5", "dimensions": {"region": "eu"}}
        })
    }

    fn code_of(mutate: impl FnOnce(&mut Value)) -> &'static str {
        let mut v = valid();
        mutate(&mut v);
        parse_event(&v, &provider()).map_or_else(|r| r.code, |_| "accepted")
    }

    #[test]
    fn a_valid_event_parses_exactly() {
        let e = parse_event(&valid(), &provider()).unwrap();
        assert_eq!(e.quantity.value().to_string(), "1.5");
        assert_eq!(e.account.as_str(), "acme");
        assert_eq!(e.dimensions["region"], "eu");
    }

    #[test]
    fn events_outside_the_ingest_window_are_refused() {
        let event = parse_event(&valid(), &provider()).unwrap();
        let hour = Duration::from_secs(3600);
        let check = |now: &str| {
            let now = DateTime::parse_from_rfc3339(now).unwrap().to_utc();
            check_time_window(&event, now, 24 * hour, hour).map_err(|r| r.code)
        };
        assert_eq!(check("2026-11-20T10:00:00Z"), Ok(()));
        assert_eq!(check("2026-11-21T10:00:00Z"), Ok(()));
        assert_eq!(check("2026-11-21T10:00:01Z"), Err("time_out_of_window"));
        assert_eq!(check("2026-11-20T09:00:00Z"), Ok(()));
        assert_eq!(check("2026-11-20T08:59:59Z"), Err("time_out_of_window"));
    }

    #[test]
    fn number_quantities_stay_exact() {
        let v: Value = serde_json::from_str(
            r#"{"specversion":"1.0","id":"e","source":"dbco","type":"t","subject":"acme",
                "time":"2026-11-20T10:00:00Z","data":{"sku":"s","quantity":0.1}}"#,
        )
        .unwrap();
        assert_eq!(
            parse_event(&v, &provider())
                .unwrap()
                .quantity
                .value()
                .to_string(),
            "0.1"
        );
    }

    #[test]
    fn each_structural_fault_has_its_code() {
        assert_eq!(code_of(|v| v["specversion"] = json!("0.3")), "malformed");
        assert_eq!(code_of(|v| v["id"] = json!("")), "malformed");
        assert_eq!(code_of(|v| v["subject"] = json!("Acme")), "malformed");
        assert_eq!(code_of(|v| v["time"] = json!("yesterday")), "malformed");
        assert_eq!(code_of(|v| v["data"] = json!("x")), "malformed");
        assert_eq!(
            code_of(|v| v["data"]["dimensions"]["n"] = json!(1)),
            "malformed"
        );
        assert_eq!(
            code_of(|v| v["data"]["quantity"] = json!("-1")),
            "quantity_invalid"
        );
        assert_eq!(
            code_of(|v| v["data"]["quantity"] = json!("1.")),
            "quantity_invalid"
        );
        assert_eq!(
            code_of(|v| v["data"]["quantity"] = json!(true)),
            "quantity_invalid"
        );
        assert_eq!(
            code_of(|v| v["data"]["dimensions"]["region"] = json!("eu\u{0}")),
            "dimension_invalid"
        );
        assert_eq!(code_of(|v| v["source"] = json!("other")), "source_mismatch");
        assert_eq!(
            code_of(|v| v["source"] = json!("/providers/other")),
            "source_mismatch"
        );
        assert_eq!(
            code_of(|v| v["source"] = json!("/providers/dbco")),
            "accepted"
        );
        assert_eq!(code_of(|_| {}), "accepted");
    }
}
