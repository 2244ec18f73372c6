//! The JSON Schemas in schemas/ are the contract: the collector's parser and
//! the schema accept and refuse the same events.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::collections::BTreeMap;
use tally_collector::{parse_event, parse_raw_event, parse_typed};
use tally_domain::ProviderId;

fn schema(name: &str) -> jsonschema::Validator {
    let path = format!("{}/../../schemas/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn base() -> Value {
    json!({
        "specversion": "1.0", "id": "evt-1", "source": "dbco", "type": "com.tally.usage",
        "subject": "acme", "time": "2026-11-20T10:00:00Z",
        "data": {"sku": "dbco.db.hour", "quantity": "1.5"}
    })
}

fn with(f: impl FnOnce(&mut Value)) -> Value {
    let mut v = base();
    f(&mut v);
    v
}

fn without(path: &[&str]) -> Value {
    let mut v = base();
    let (last, parents) = path.split_last().unwrap();
    let mut target = &mut v;
    for p in parents {
        target = &mut target[*p];
    }
    target.as_object_mut().unwrap().remove(*last);
    v
}

/// (name, event, expected verdict).
fn samples() -> Vec<(&'static str, Value, bool)> {
    vec![
        ("minimal valid", base(), true),
        ("number quantity", with(|v| v["data"]["quantity"] = json!(12)), true),
        ("decimal number quantity", serde_json::from_str(r#"{"specversion":"1.0","id":"e","source":"dbco","type":"t","subject":"acme","time":"2026-11-20T10:00:00Z","data":{"sku":"s","quantity":0.25}}"#).unwrap(), true),
        ("zero quantity", with(|v| v["data"]["quantity"] = json!("0")), true),
        ("with dimensions", with(|v| v["data"]["dimensions"] = json!({"region": "eu-west", "tier": "gold"})), true),
        ("with datacontenttype", with(|v| v["datacontenttype"] = json!("application/json")), true),
        ("with extension attribute", with(|v| v["traceparent"] = json!("00-abc")), true),
        ("with its resource", with(|v| v["resource"] = json!("bnd_0192f3c4")), true),
        ("resource not a binding id", with(|v| v["resource"] = json!("Prod DB")), false),
        ("empty resource", with(|v| v["resource"] = json!("")), false),
        ("null resource", with(|v| v["resource"] = Value::Null), false),
        ("numeric resource", with(|v| v["resource"] = json!(7)), false),
        ("offset time", with(|v| v["time"] = json!("2026-11-20T10:00:00.123+02:00")), true),
        ("source as a provider path", with(|v| v["source"] = json!("/providers/dbco")), true),
        ("empty source", with(|v| v["source"] = json!("")), false),
        ("quantity number above 1e15", with(|v| v["data"]["quantity"] = json!(2_000_000_000_000_000_u64)), false),
        ("free-text id", with(|v| v["id"] = json!("order 42 / line 7")), true),
        ("missing id", without(&["id"]), false),
        ("empty id", with(|v| v["id"] = json!("")), false),
        ("id with a newline", with(|v| v["id"] = json!("a\nb")), false),
        ("id too long", with(|v| v["id"] = json!("x".repeat(257))), false),
        ("missing specversion", without(&["specversion"]), false),
        ("wrong specversion", with(|v| v["specversion"] = json!("0.3")), false),
        ("missing source", without(&["source"]), false),
        ("missing type", without(&["type"]), false),
        ("empty type", with(|v| v["type"] = json!("")), false),
        ("missing subject", without(&["subject"]), false),
        ("uppercase subject", with(|v| v["subject"] = json!("Acme")), false),
        ("missing time", without(&["time"]), false),
        ("bad time", with(|v| v["time"] = json!("yesterday")), false),
        ("time without zone", with(|v| v["time"] = json!("2026-11-20T10:00:00")), false),
        ("numeric time", with(|v| v["time"] = json!(1_700_000_000)), false),
        ("other datacontenttype", with(|v| v["datacontenttype"] = json!("text/plain")), false),
        ("missing data", without(&["data"]), false),
        ("string data", with(|v| v["data"] = json!("x")), false),
        ("missing sku", without(&["data", "sku"]), false),
        ("bad sku", with(|v| v["data"]["sku"] = json!("DB Hour")), false),
        ("missing quantity", without(&["data", "quantity"]), false),
        ("negative quantity string", with(|v| v["data"]["quantity"] = json!("-1")), false),
        ("negative quantity number", with(|v| v["data"]["quantity"] = json!(-1)), false),
        ("quantity with trailing dot", with(|v| v["data"]["quantity"] = json!("1.")), false),
        ("quantity in exponent string", with(|v| v["data"]["quantity"] = json!("1e3")), false),
        ("boolean quantity", with(|v| v["data"]["quantity"] = json!(true)), false),
        ("number dimension", with(|v| v["data"]["dimensions"] = json!({"n": 1})), false),
        ("NUL in a dimension value", with(|v| v["data"]["dimensions"] = json!({"region": "eu\u{0}west"})), false),
        ("NUL in a dimension name", with(|v| v["data"]["dimensions"] = json!({"re\u{0}gion": "eu"})), false),
        ("too many dimensions", with(|v| {
            let dims: BTreeMap<String, String> = (0..17).map(|i| (format!("d{i}"), "x".into())).collect();
            v["data"]["dimensions"] = json!(dims);
        }), false),
        ("not an object", json!([1, 2]), false),
        ("null datacontenttype", with(|v| v["datacontenttype"] = Value::Null), false),
        ("null dimensions", with(|v| v["data"]["dimensions"] = Value::Null), false),
        ("data as an array", with(|v| v["data"] = json!(["dbco.db.hour", "1"])), false),
        ("event as an array of its fields", json!(["1.0", "evt-1", "dbco", "t", "acme", "2026-11-20T10:00:00Z", null, {"sku": "dbco.db.hour", "quantity": "1"}]), false),
        ("escaped strings", serde_json::from_str(r#"{"specversion":"1.0","id":"e\u0031","source":"db\u0063o","type":"t","subject":"acme","time":"2026-11-20T10:00:00Z","datacontenttype":"application\/json","data":{"sku":"dbco.db.hour","quantity":"2"}}"#).unwrap(), true),
    ]
}

#[test]
fn parser_and_schema_agree_on_every_sample() {
    let validator = schema("cloudevent-usage.schema.json");
    let provider = ProviderId::parse("dbco").unwrap();
    let samples = samples();
    assert!(samples.len() >= 25);
    for (name, event, expected) in samples {
        let by_schema = validator.is_valid(&event);
        let by_code = parse_event(&event, &provider).is_ok();
        assert_eq!(by_schema, expected, "schema verdict on {name:?}");
        assert_eq!(by_code, expected, "parser verdict on {name:?}");
    }
}

/// The collector's typed fast path gives exactly the reference parser's
/// answer — the same event, or the same code and message — on every sample.
#[test]
fn the_fast_path_answers_as_the_reference_parser() {
    let provider = ProviderId::parse("dbco").unwrap();
    let others = [(
        "another provider's source",
        with(|v| v["source"] = json!("queueco")),
        false,
    )];
    for (name, event, valid) in samples().into_iter().chain(others) {
        let text = serde_json::to_string(&event).unwrap();
        let raw: Box<serde_json::value::RawValue> = serde_json::from_str(&text).unwrap();
        // Every valid event takes the fast path, and no other.
        assert_eq!(parse_typed(&raw, &provider).is_some(), valid, "{name:?}");
        assert_eq!(
            parse_raw_event(&raw, &provider),
            parse_event(&event, &provider),
            "{name:?}"
        );
    }
}

#[test]
fn the_kafka_message_matches_its_schema() {
    let provider = ProviderId::parse("dbco").unwrap();
    let parsed = parse_event(
        &with(|v| {
            v["data"]["dimensions"] = json!({"region": "eu"});
            v["resource"] = json!("bnd_1");
        }),
        &provider,
    )
    .unwrap();
    let message = tally_domain::usage::UsageMessage::Usage(tally_domain::UsageEvent {
        provider_id: provider,
        event_id: parsed.id,
        account_id: parsed.account,
        sku: parsed.sku,
        quantity: parsed.quantity,
        time: parsed.time,
        received_at: parsed.time,
        dimensions: parsed.dimensions,
        resource: parsed.resource,
        on_behalf_of: parsed.on_behalf_of,
    });
    let value = serde_json::to_value(&message).unwrap();
    let validator = schema("usage-event.schema.json");
    assert!(validator.is_valid(&value), "{value}");
    assert_eq!(value["quantity"], "1.5");

    // Invoicing's seal marker shares the topic and the schema.
    let seal = tally_domain::usage::UsageMessage::Seal(tally_domain::usage::SealMarker {
        account_id: tally_domain::AccountId::parse("acme").unwrap(),
        through: "2026-11-01T00:00:00Z".parse().unwrap(),
    });
    let value = serde_json::to_value(&seal).unwrap();
    assert!(validator.is_valid(&value), "{value}");
    assert_eq!(value["kind"], "seal");
    let mut broken = value.clone();
    broken["quantity"] = json!("1");
    assert!(!validator.is_valid(&broken), "{broken}");

    // So do a provider's corrections: a cancel, an amendment, a backfill.
    let usage = match message {
        tally_domain::usage::UsageMessage::Usage(event) => event,
        _ => unreachable!(),
    };
    use tally_domain::usage::Change;
    for change in [
        Change::Cancel {
            event_id: usage.event_id.clone(),
        },
        Change::Amend {
            event_id: usage.event_id.clone(),
            quantity: tally_domain::Quantity::parse("2").unwrap(),
            dimensions: [("region".to_owned(), "eu".to_owned())].into(),
        },
        Change::Backfill {
            start: "2026-11-01T00:00:00Z".parse().unwrap(),
            end: "2026-11-02T00:00:00Z".parse().unwrap(),
            events: vec![usage.clone()],
        },
    ] {
        let correction =
            tally_domain::usage::UsageMessage::Correction(tally_domain::usage::CorrectionRequest {
                id: "0192e2a0-0000-7000-8000-000000000001".into(),
                provider_id: usage.provider_id.clone(),
                account_id: usage.account_id.clone(),
                reason: "metered twice".into(),
                requested_by: "0192e2a0-0000-7000-8000-000000000002".into(),
                requested_at: "2026-11-02T00:00:00Z".parse().unwrap(),
                change,
            });
        let value = serde_json::to_value(&correction).unwrap();
        assert!(validator.is_valid(&value), "{value}");
        let mut broken = value.clone();
        broken["change"]["kind"] = json!("undo");
        assert!(!validator.is_valid(&broken), "{broken}");
    }
}

#[test]
fn batch_schema_bounds_the_batch() {
    let validator = schema("cloudevent-usage-batch.schema.json");
    assert!(validator.is_valid(&json!([base()])));
    assert!(!validator.is_valid(&json!([])));
    assert!(!validator.is_valid(&Value::Array(vec![base(); 1001])));
}
