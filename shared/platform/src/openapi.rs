//! The pieces of the OpenAPI document (tally_api::openapi) that the types
//! of every crate refer to: the exact decimal schema, the id and month
//! patterns, and the enumerations that travel as strings. Types derive
//! `utoipa::ToSchema` beside their definition and name these in
//! `#[schema(value_type = …)]` / `schema_with`.

use serde_json::{json, Value};
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// The pattern of an exact decimal string (`"10.00"`, `"-6.00"`, `"0.0001"`).
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]{1,28})?$";
/// An account id, as `AccountId::parse` takes it.
pub const ACCOUNT_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";
/// A provider id, as `ProviderId::parse` takes it: no dots.
pub const PROVIDER_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";
/// A SKU id, as `Sku::parse` takes it.
pub const SKU_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,127}$";
/// A month, `YYYY-MM`.
pub const MONTH_PATTERN: &str = "^[0-9]{4}-(0[1-9]|1[0-2])$";

/// An exact decimal string (a `rust_decimal::Decimal` on the wire).
pub struct Decimal;

impl PartialSchema for Decimal {
    fn schema() -> RefOr<Schema> {
        schema(json!({
            "type": "string",
            "pattern": DECIMAL_PATTERN,
            "description": "Exact decimal, at most 28 decimal places (more cannot be stored exactly and is refused: `invalid_price` in prices, `invalid_amount` in grants and credit notes)",
        }))
    }
}

impl ToSchema for Decimal {}

/// A schema written as JSON Schema (for what a Rust type cannot say). It
/// must be one utoipa's `Schema` reads back whole (a test checks each).
pub fn schema(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).unwrap_or_else(|_| RefOr::T(Schema::default()))
}

/// An exact decimal field (`schema_with`).
pub fn exact_decimal() -> RefOr<Schema> {
    schema(json!({"type": "string", "pattern": DECIMAL_PATTERN, "description": "Exact decimal"}))
}

/// `first_party` or `partner` (`schema_with`).
pub fn provider_kind() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["first_party", "partner"]}))
}

/// A SKU's aggregation (`schema_with`).
pub fn aggregation() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "enum": ["sum", "count", "max", "latest", "unique_count"],
        "default": "sum",
    }))
}

/// A price book (`schema_with`).
pub fn price_book() -> RefOr<Schema> {
    RefOr::Ref(utoipa::openapi::Ref::from_schema_name("PriceBook"))
}

/// An invoice's status (`schema_with`).
pub fn invoice_status() -> RefOr<Schema> {
    schema(json!({
        "type": "string",
        "enum": ["draft", "finalized", "void"],
        "description": "draft, finalized or void",
    }))
}

/// A staff key's role (`schema_with`).
pub fn staff_role() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["finance", "admin"]}))
}

/// An invoice line's kind (`schema_with`).
pub fn line_kind() -> RefOr<Schema> {
    let kinds: Vec<&str> = tally_domain::statement::LineKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect();
    schema(json!({"type": "string", "enum": kinds}))
}

/// A binding's status (`schema_with`).
pub fn binding_status() -> RefOr<Schema> {
    let statuses: Vec<&str> = tally_domain::binding::BindingStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    schema(json!({"type": "string", "enum": statuses}))
}

/// A grant's kind (`schema_with`).
pub fn grant_kind() -> RefOr<Schema> {
    schema(json!({"type": "string", "enum": ["promotional", "prepaid", "programme"]}))
}

/// Who funds a contract's discount (`schema_with`).
pub fn discount_funder() -> RefOr<Schema> {
    schema(json!({"type": ["string", "null"], "enum": ["platform", "partner", null]}))
}
