//! What of the hand-written document is not generated yet (legacy.json):
//! the schemas of the response bodies whose types do not derive `ToSchema`
//! yet (Invoice, Grant, CreditNote, Settlement, Sku, PriceBook, …, which
//! the operations refer to by name), filled into the generated document;
//! and the place for an operation that no handler's `#[utoipa::path]`
//! documents (none now: a test fails when one is both generated and here).

use serde_json::Value;

const LEGACY: &str = include_str!("legacy.json");

/// The legacy document.
pub fn legacy() -> Value {
    serde_json::from_str(LEGACY).unwrap_or(Value::Null)
}

/// Fills `doc` with the legacy operations and schemas it lacks.
pub fn fill(doc: &mut Value) {
    let legacy = legacy();
    if let Some(paths) = legacy["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, operation) in item {
                if doc["paths"][path].get(method).is_none() {
                    doc["paths"][path][method] = operation.clone();
                }
            }
        }
    }
    if let Some(schemas) = legacy["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            if doc["components"]["schemas"].get(name).is_none() {
                doc["components"]["schemas"][name] = schema.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// An annotated operation, or a schema a type derives, leaves
    /// legacy.json, so that the generated one is the document's.
    #[test]
    fn nothing_is_both_generated_and_legacy() {
        let generated = crate::openapi::generated();
        let legacy = legacy();
        for (path, item) in legacy["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                assert!(
                    generated["paths"][path].get(method).is_none(),
                    "{method} {path} is annotated: remove it from openapi/legacy.json"
                );
            }
        }
        for name in legacy["components"]["schemas"].as_object().unwrap().keys() {
            assert!(
                generated["components"]["schemas"].get(name).is_none(),
                "schema {name} is derived: remove it from openapi/legacy.json"
            );
        }
        // What is left: the schemas of the invoices and the catalog.
        assert_eq!(
            legacy["components"]["schemas"].as_object().unwrap().len(),
            11
        );
    }
}
