//! The OpenAPI document of every Tally HTTP API (schemas/openapi.json),
//! served with the JSON Schemas it refers to.

/// The OpenAPI document of every Tally HTTP API (schemas/openapi.json).
pub const OPENAPI: &str = include_str!("../../../schemas/openapi.json");

/// The JSON Schemas the document refers to by relative reference, served
/// beside it so that a client reading the document from this server (a code
/// generator, schemathesis) resolves them here.
const CLOUDEVENT_USAGE_SCHEMA: &str = include_str!("../../../schemas/cloudevent-usage.schema.json");
const COLLECTOR_RESPONSE_SCHEMA: &str =
    include_str!("../../../schemas/collector-response.schema.json");

pub async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

fn json_schema(body: &'static str) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/schema+json")],
        body,
    )
}

pub async fn cloudevent_usage_schema() -> ([(axum::http::HeaderName, &'static str); 1], &'static str)
{
    json_schema(CLOUDEVENT_USAGE_SCHEMA)
}

pub async fn collector_response_schema(
) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    json_schema(COLLECTOR_RESPONSE_SCHEMA)
}
