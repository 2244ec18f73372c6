//! The OpenAPI document of every Tally HTTP API, generated from the code:
//! each route's operation is the `#[utoipa::path]` of its handler (the
//! router takes its routes from them, `startup::openapi`), its schemas the
//! `ToSchema` of its request and response types, and the error responses
//! of each operation the codes [`errors::OPERATIONS`] lists for it. The
//! document is served at `/openapi.json` and checked in as
//! schemas/openapi.json (`tally openapi > schemas/openapi.json`; a test
//! fails when the two differ).

pub mod collector;
pub mod errors;

use std::sync::OnceLock;

use axum::http::{header, HeaderName};
use serde_json::{json, Map, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

pub use tally_platform::openapi::*;

const DESCRIPTION: &str = "Unified billing and metering: usage ingest (collector), provider catalog, finance, customer bill, credits and admin APIs (api). Amounts are exact decimal strings with their ISO 4217 currency beside them, written with the currency's exponent (`\"10.00\"` USD, `\"1234\"` JPY, `\"1.500\"` BHD); unit prices keep every digit they have (`\"0.0001\"`) and at least the currency's minor units. Every error body is `{\"error\": {\"code\", \"message\"}}` with a stable `code`. A request is authenticated before anything else in it is read: without a valid key the answer is 401 `unauthorized`, with a key of the wrong role 403 `forbidden`, whatever the body, query or path. Every string a client sends is refused with 400 `invalid_text` when it contains U+0000 and `text_too_long` past 1,000 characters (names: 200, units: 64). A route that does not exist answers 404 `unknown_route`, a method a route does not take 405 `method_not_allowed`.";

/// The servers an operation can be on: the API (the document's), the
/// collector and a process's admin address.
fn server(name: &str) -> Value {
    let (description, default, variable) = match name {
        "api" => (
            "the API: every operation but POST /v1/events, POST /v1/imports and the usage corrections POST /v1/events/{id}/cancel, POST /v1/events/{id}/amend, POST /v1/backfills (the collector's) and /readyz and /metrics (the admin address's)",
            "127.0.0.1:8081",
            "host:port of the API (TALLY_API_ADDR)",
        ),
        "collector" => (
            "the collector",
            "127.0.0.1:8080",
            "host:port of collector (TALLY_COLLECTOR_ADDR)",
        ),
        _ => (
            "the process's admin address, apart from the public API",
            "127.0.0.1:8090",
            "host:port of admin (TALLY_ADMIN_ADDR)",
        ),
    };
    json!({
        "url": format!("http://{{{name}}}"),
        "description": description,
        "variables": {name: {"default": default, "description": variable}},
    })
}

/// The paths that are not (only) on the API, and the servers they are on.
pub(crate) const PATH_SERVERS: &[(&str, &[&str])] = &[
    ("/v1/events", &["collector"]),
    ("/v1/imports", &["collector"]),
    ("/v1/events/{id}/cancel", &["collector"]),
    ("/v1/events/{id}/amend", &["collector"]),
    ("/v1/backfills", &["collector"]),
    ("/healthz", &["api", "collector", "admin"]),
    ("/readyz", &["admin"]),
    ("/metrics", &["admin"]),
];

/// Every error body: `{"error": {"code", "message"}}`.
pub struct Error;

impl PartialSchema for Error {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "object",
            "required": ["error"],
            "properties": {"error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }},
        }))
    }
}

impl ToSchema for Error {}

/// A schema written as JSON: the list wrappers of the bodies (`body =
/// inline(openapi::SkuList)`), and the schemas of what has no Rust type of
/// its own here (the collector's event schemas, a price book).
macro_rules! written {
    ($($(#[$doc:meta])* $name:ident = $json:tt;)*) => {
        $(
            $(#[$doc])*
            pub struct $name;

            impl PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    schema(json!($json))
                }
            }

            impl ToSchema for $name {}
        )*
        /// Every written schema, for the test that each reads back whole.
        #[cfg(test)]
        fn written() -> Vec<(RefOr<Schema>, Value)> {
            vec![$(($name::schema(), json!($json))),*]
        }
    };
}

written! {
    /// A price version's terms (`tally_domain::PriceBook`).
    PriceBook = {
        "type": "object",
        "required": ["model"],
        "description": "A price version's terms. Models: per_unit {unit_price}; graduated {tiers} (each unit at its tier's price); volume {tiers} (all units at the reached tier's price); package {package_size, package_price} (per started block). Optional terms: free_units (first units of a period free), minimum_charge (a true-up line when a period's usage line, as billed, falls short: the minimum less that line, so the two make exactly the minimum), recurring_fee (per period in which the SKU is used).",
        "properties": {
            "model": {"type": "string", "enum": ["per_unit", "graduated", "volume", "package"]},
            "unit_price": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
            "tiers": {"type": "array", "items": {
                "type": "object",
                "required": ["unit_price"],
                "properties": {
                    "up_to": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Inclusive upper bound; absent on the last tier"},
                    "unit_price": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
                    "flat_fee": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
                },
            }},
            "package_size": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
            "package_price": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
            "free_units": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
            "minimum_charge": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
            "recurring_fee": {"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"},
        },
    };
    /// One usage CloudEvent as the collector takes it (a JSON Schema of its own).
    UsageEvent = {"$ref": "cloudevent-usage.schema.json"};
    /// The collector's answer (a JSON Schema of its own).
    IngestResponse = {"$ref": "collector-response.schema.json"};
    /// Providers.
    ProviderList = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Provider"}}}};
    /// A new provider, with its API key (shown once).
    ProviderCreated = {"type": "object", "required": ["id", "name", "kind", "kafka_ingest", "requires_binding", "settlement_mode", "api_key"], "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "kind": {"type": "string", "enum": ["first_party", "partner"]},
        "kafka_ingest": {"type": "boolean"},
        "requires_binding": {"type": "boolean"},
        "settlement_mode": {"type": "string", "enum": ["gross", "net"]},
        "api_key": {"type": "string", "description": "Shown once; stored hashed"},
    }};
    /// A provider's settlement mode.
    ProviderSettlementMode = {"type": "object", "required": ["id", "settlement_mode"], "properties": {
        "id": {"type": "string"},
        "settlement_mode": {"type": "string", "enum": ["gross", "net"]},
    }};
    /// Accounts.
    AccountList = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Account"}}}};
    /// A new account, with its customer token (shown once).
    AccountCreated = {"type": "object", "required": ["id", "name", "currency", "billing_anchor_day", "api_key"], "properties": {
        "id": {"type": "string"},
        "name": {"type": "string"},
        "currency": {"type": "string"},
        "billing_anchor_day": {"type": "integer", "minimum": 1, "maximum": 28},
        "provider_id": {"type": ["string", "null"], "description": "The provider whose own billing account this is; null for a customer"},
        "api_key": {"type": "string", "description": "The customer token: shown once; stored hashed"},
    }};
    /// A new SKU.
    SkuCreated = {"type": "object", "required": ["id", "provider_id", "name", "unit"], "properties": {
        "id": {"type": "string"},
        "provider_id": {"type": "string"},
        "name": {"type": "string"},
        "unit": {"type": "string"},
    }};
    /// A new staff key (shown once).
    KeyCreated = {"type": "object", "required": ["id", "role", "api_key"], "properties": {
        "id": {"type": "string", "format": "uuid"},
        "role": {"type": "string", "enum": ["finance", "admin"]},
        "api_key": {"type": "string", "description": "Shown once; stored hashed"},
    }};
    /// A price version a provider published (its terms under `price_book`).
    PublishedPrice = {"type": "object", "required": ["id", "sku", "currency", "effective_from", "price_book"], "properties": {
        "id": {"type": "integer", "format": "int64"},
        "sku": {"type": "string"},
        "currency": {"type": "string", "description": "ISO 4217"},
        "effective_from": {"type": "string", "format": "date-time"},
        "price_book": {"$ref": "#/components/schemas/PriceBook"},
        "audience": {"type": "string", "enum": ["list", "provider"], "description": "Every account, or the accounts that providers own (wholesale)"},
    }};
    /// What `POST /v1/imports` imported (`tally_collector::import`).
    ImportResponse = {"type": "object", "required": ["lines", "accepted", "refused", "refusals", "refusals_truncated"], "properties": {"lines": {"type": "integer", "minimum": 0, "description": "Lines read (blank NDJSON lines and the CSV header not counted)"}, "accepted": {"type": "integer", "minimum": 0}, "refused": {"type": "integer", "minimum": 0}, "refusals": {"type": "array", "maxItems": 10000, "items": {"type": "object", "required": ["line", "id", "code", "message"], "properties": {"line": {"type": "integer", "minimum": 1, "description": "The line's number in the file (the CSV header is line 1)"}, "id": {"type": ["string", "null"]}, "code": {"type": "string"}, "message": {"type": "string"}}}}, "refusals_truncated": {"type": "boolean", "description": "True when more lines were refused than `refusals` lists"}}};
    /// A SKU.
    SkuRef = {"$ref": "#/components/schemas/Sku"};
    /// A provider's SKUs.
    SkuList = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Sku"}}}};
    /// A price version.
    PriceVersionRef = {"$ref": "#/components/schemas/PriceVersion"};
    /// A SKU's price versions.
    PriceVersionList = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/PriceVersion"}}}};
    /// A page of invoices.
    InvoicePage = {"type": "object", "properties": {
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/InvoiceSummary"}},
        "next_cursor": {"type": ["string", "null"]},
    }};
    /// An invoice.
    InvoiceRef = {"$ref": "#/components/schemas/Invoice"};
    /// An invoice without its sections.
    InvoiceSummaryRef = {"$ref": "#/components/schemas/InvoiceSummary"};
    /// A page of credit notes.
    CreditNotePage = {"type": "object", "required": ["data", "next_cursor"], "properties": {
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/CreditNote"}},
        "next_cursor": {"type": ["string", "null"]},
    }};
    /// A month's settlements.
    SettlementList = {"type": "object", "required": ["data"], "properties": {
        "data": {"type": "array", "items": {"$ref": "#/components/schemas/Settlement"}},
    }};
    /// Grants.
    GrantList = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Grant"}}}};
    /// Credit ledger entries.
    LedgerList = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/LedgerEntry"}}}};
    /// One usage CloudEvent.
    UsageEventRef = {"$ref": "#/components/schemas/UsageEvent"};
    /// A batch of usage CloudEvents.
    EventBatch = {"type": "array", "items": {"$ref": "#/components/schemas/UsageEvent"}, "minItems": 1, "maxItems": 1000};
    /// The collector's answer.
    IngestResponseRef = {"$ref": "#/components/schemas/IngestResponse"};
    /// A correction accepted by the collector (rating applies it next, in
    /// order with the account's usage).
    CorrectionAccepted = {"type": "object", "required": ["correction_id", "kind", "account", "status"], "properties": {
        "correction_id": {"type": "string", "format": "uuid"},
        "kind": {"type": "string", "enum": ["cancel", "amend", "backfill"]},
        "account": {"type": "string"},
        "status": {"type": "string", "enum": ["accepted"]},
    }};
    /// A provider's reason for a cancel.
    CancelRequest = {"type": "object", "required": ["reason"], "additionalProperties": false, "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
    }};
    /// An amendment: the event's quantity and dimensions from now on (its
    /// time, SKU and resource stay; to move usage, cancel and send anew).
    AmendRequest = {"type": "object", "required": ["reason", "quantity"], "additionalProperties": false, "properties": {
        "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
        "quantity": {"type": ["string", "number"], "description": "Non-negative decimal, at most 1e15 and 12 decimals"},
        "dimensions": {"type": "object", "maxProperties": 16, "additionalProperties": {"type": "string"}},
    }};
    /// A backfill: the provider's usage of `account` timed in `[start, end)` replaced by `events`.
    BackfillRequest = {"type": "object", "required": ["account", "start", "end", "reason", "events"], "additionalProperties": false, "properties": {
        "account": {"type": "string"},
        "start": {"type": "string", "format": "date-time"},
        "end": {"type": "string", "format": "date-time"},
        "reason": {"type": "string", "minLength": 1, "maxLength": 1000},
        "events": {"type": "array", "maxItems": 1000, "items": {"$ref": "#/components/schemas/UsageEvent"}, "description": "CloudEvents, each timed in the window, for the account; an id may be one of the events replaced (it counts again with its new values) or new"},
    }};
    /// A signed bill link.
    BillLink = {"type": "object", "properties": {
        "path": {"type": "string"},
        "expires_at": {"type": "string", "format": "date-time"},
    }};
}

/// A grant's status as of now (`schema_with`).
pub fn grant_status() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "enum": ["scheduled", "active", "depleted", "expired", "voided"],
    }))
}

/// What a grant may pay for (`schema_with`).
pub fn eligibility_scope() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "enum": ["all_usage", "first_party_only", "providers", "skus"],
    }))
}

/// What a contract term discounts (`schema_with`).
pub fn contract_scope() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["all", "provider", "skus"]}))
}

/// Who funds a contract term's discount (`schema_with`).
pub fn contract_funder() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["platform", "partner"]}))
}

/// A contract's status (`schema_with`).
pub fn contract_status() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["signed", "awaiting_partner"]}))
}

/// A commitment period's length (`schema_with`).
pub fn contract_cadence() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["month", "quarter", "year"]}))
}

/// A credit ledger entry's kind (`schema_with`).
pub fn ledger_kind() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["grant", "draw", "void"]}))
}

/// The schemas every operation refers to, and those that the written list
/// schemas (`GrantList`, …) refer to by name.
#[derive(utoipa::OpenApi)]
#[openapi(components(schemas(
    Decimal,
    Error,
    crate::credits::GrantView,
    crate::credits::LedgerEntry,
    crate::finance::corrections::CreditNote,
    crate::usage_corrections::UsageCorrection,
    crate::finance::settlement::Settlement,
    tally_invoicing::invoices_repo::Invoice,
    tally_platform::catalog::Provider,
    tally_platform::catalog::Account,
    tally_platform::catalog::SkuRecord,
    tally_platform::catalog::PriceVersion,
    PriceBook,
    UsageEvent,
    IngestResponse,
    ImportResponse,
)))]
struct Components;

/// The document: the operations of the API's router, the collector's and
/// the probes', with their error responses, servers and schemas.
pub fn document() -> Value {
    let mut generated = crate::startup::openapi();
    generated.merge(<collector::Elsewhere as utoipa::OpenApi>::openapi());
    generated.merge(<Components as utoipa::OpenApi>::openapi());
    let generated = serde_json::to_value(&generated).unwrap_or(Value::Null);
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {"title": "Tally", "version": env!("CARGO_PKG_VERSION"), "description": DESCRIPTION},
        "servers": [server("api")],
        "paths": generated["paths"],
        "components": {
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (provider, customer, finance or admin), shown once at creation, stored hashed.",
            }},
            "schemas": generated["components"]["schemas"],
        },
    });
    errors::describe(&mut doc);
    for (path, servers) in PATH_SERVERS {
        if let Some(item) = doc["paths"].get_mut(*path) {
            item["servers"] = servers.iter().map(|name| server(name)).collect();
        }
    }
    sorted(&doc)
}

/// `value` with the keys of every object in order, whatever the map
/// serde_json is built with: the text of the document is the same from
/// every build.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|key| (key.clone(), sorted(&map[key])))
                    .collect::<Map<String, Value>>(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The document as schemas/openapi.json holds it (pretty, with a final
/// newline).
pub fn text() -> String {
    let mut text = serde_json::to_string_pretty(&document()).unwrap_or_default();
    text.push('\n');
    text
}

/// The document's text, made once.
fn served() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(text)
}

/// The JSON Schemas the document refers to by relative reference, served
/// beside it so that a client reading the document from this server (a code
/// generator, schemathesis) resolves them here.
const CLOUDEVENT_USAGE_SCHEMA: &str =
    include_str!("../../../../schemas/cloudevent-usage.schema.json");
const COLLECTOR_RESPONSE_SCHEMA: &str =
    include_str!("../../../../schemas/collector-response.schema.json");

/// An OpenAPI document.
pub struct OpenApiDocument;

impl PartialSchema for OpenApiDocument {
    fn schema() -> RefOr<Schema> {
        schema(json!({"type": "object", "required": ["openapi", "info", "paths"]}))
    }
}

impl ToSchema for OpenApiDocument {}

/// A JSON Schema document.
pub struct JsonSchema;

impl PartialSchema for JsonSchema {
    fn schema() -> RefOr<Schema> {
        schema(json!({"type": "object", "required": ["$schema"]}))
    }
}

impl ToSchema for JsonSchema {}

type Body = ([(HeaderName, &'static str); 1], &'static str);

#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json", body = inline(OpenApiDocument))),
)]
pub async fn openapi() -> Body {
    ([(header::CONTENT_TYPE, "application/json")], served())
}

fn json_schema(body: &'static str) -> Body {
    ([(header::CONTENT_TYPE, "application/schema+json")], body)
}

#[utoipa::path(
    get,
    path = "/cloudevent-usage.schema.json",
    tag = "meta",
    summary = "The JSON Schema of one usage CloudEvent as POST /v1/events takes it, referenced by this document (relative to it)",
    responses((status = 200, description = "JSON Schema 2020-12", content_type = "application/schema+json", body = inline(JsonSchema))),
)]
pub async fn cloudevent_usage_schema() -> Body {
    json_schema(CLOUDEVENT_USAGE_SCHEMA)
}

#[utoipa::path(
    get,
    path = "/collector-response.schema.json",
    tag = "meta",
    summary = "The JSON Schema of POST /v1/events's answer, referenced by this document (relative to it)",
    responses((status = 200, description = "JSON Schema 2020-12", content_type = "application/schema+json", body = inline(JsonSchema))),
)]
pub async fn collector_response_schema() -> Body {
    json_schema(COLLECTOR_RESPONSE_SCHEMA)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// schemas/openapi.json is the generated document, byte for byte.
    #[test]
    fn the_checked_in_document_is_the_generated_one() {
        let file = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/openapi.json"
        ))
        .unwrap();
        assert!(
            file == text(),
            "schemas/openapi.json is not the document the code generates: \
             run `cargo run -p tally -- openapi > schemas/openapi.json`"
        );
    }

    /// Each schema written as JSON is read whole (`schema` would give an
    /// empty object for one utoipa cannot read).
    #[test]
    fn every_written_schema_reads_back_as_written() {
        for made in [
            Decimal::schema(),
            Error::schema(),
            OpenApiDocument::schema(),
            JsonSchema::schema(),
            exact_decimal(),
            provider_kind(),
            aggregation(),
            staff_role(),
        ] {
            let value = serde_json::to_value(&made).unwrap();
            assert_ne!(value, json!({"type": "object"}));
            assert!(value.get("type").is_some(), "{value}");
        }
        assert_eq!(
            serde_json::to_value(aggregation()).unwrap()["enum"][4],
            "unique_count"
        );
        let readiness = tally_platform::health::ReadinessBody::schema();
        let readiness = serde_json::to_value(readiness).unwrap();
        assert_eq!(
            readiness["properties"]["checks"]["additionalProperties"]["oneOf"][0]["enum"],
            json!(["ok"])
        );
        for (made, json) in written() {
            assert_eq!(serde_json::to_value(&made).unwrap(), json);
        }
    }

    /// Every `#/components/schemas/…` the document refers to is in it.
    #[test]
    fn every_reference_resolves() {
        fn references(value: &Value, found: &mut Vec<String>) {
            match value {
                Value::Object(map) => map.iter().for_each(|(key, item)| match item.as_str() {
                    Some(target) if key == "$ref" => found.push(target.to_owned()),
                    _ => references(item, found),
                }),
                Value::Array(items) => items.iter().for_each(|item| references(item, found)),
                _ => {}
            }
        }
        let doc = document();
        let mut found = Vec::new();
        references(&doc, &mut found);
        assert!(found.len() > 50, "{}", found.len());
        for target in found {
            if let Some(name) = target.strip_prefix("#/components/schemas/") {
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "{target} is not in the document"
                );
            }
        }
    }

    #[test]
    fn the_document_is_openapi_3_1_with_its_servers() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["servers"][0]["url"], "http://{api}");
        assert_eq!(
            doc["paths"]["/v1/events"]["servers"][0]["url"],
            "http://{collector}"
        );
        assert_eq!(
            doc["paths"]["/readyz"]["servers"][0]["url"],
            "http://{admin}"
        );
        assert_eq!(
            doc["paths"]["/healthz"]["servers"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            doc["components"]["schemas"]["Decimal"]["pattern"],
            DECIMAL_PATTERN
        );
    }
}
