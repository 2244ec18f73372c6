//! The invoicing API's own extractors of a JSON body, a query string and a
//! path. Every refusal is an [`ApiError`] with a stable code, never axum's
//! text/plain rejection, and text that PostgreSQL cannot store (U+0000) or
//! that is longer than any field allows ([`MAX_TEXT`]) is refused here, in
//! every string of every request, before a handler runs. Handlers take them
//! after their caller extractor (`auth::Staff`, …), and the API's routes
//! authenticate before any extractor runs (`auth::authenticate`), so a
//! caller without a key learns nothing about a request's shape.
//!
//! | code | status | what |
//! |---|---|---|
//! | `unsupported_media_type` | 415 | a body without `Content-Type: application/json` |
//! | `invalid_json` | 400 | a body that is not JSON |
//! | `invalid_request` | 400 | JSON of the wrong shape (a missing field, an unknown one, a wrong type) |
//! | `invalid_query` | 400 | a query string of the wrong shape |
//! | `invalid_path` | 400 | a path segment of the wrong shape (a UUID that is not one) |
//! | `invalid_text` | 400 | U+0000 in any string: body, query or path |
//! | `text_too_long` | 400 | any string longer than [`MAX_TEXT`] characters |
//! | `payload_too_large` | 413 | a body over the size limit |
//! | [`RequestBody::INEXACT_CODE`] | | a decimal with more than 28 decimal places |

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tally_domain::input::{check_text, INEXACT, MAX_TEXT};

use crate::error::{ApiError, Code};

/// A JSON request body.
pub trait RequestBody: DeserializeOwned {
    /// The code of a decimal in this body that cannot be stored exactly
    /// (more than 28 decimal places): `invalid_price` in a price,
    /// `invalid_amount` in a grant.
    const INEXACT_CODE: Code = Code::InvalidRequest;
}

fn refused(code: Code, message: impl Into<String>) -> ApiError {
    ApiError::Request(code, message.into())
}

/// `application/json` or `application/…+json`, as axum's `Json` accepts.
fn is_json(headers: &HeaderMap) -> bool {
    tally_platform::http::media_type(headers).is_some_and(|essence| {
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    })
}

/// Every string in a JSON document, and every field name, is storable text
/// of at most [`MAX_TEXT`] characters.
fn check_json(value: &Value, field: &str) -> Result<(), ApiError> {
    match value {
        Value::String(text) => Ok(check_text(field, text, MAX_TEXT)?),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_json(item, &format!("{field}[{i}]"))),
        Value::Object(fields) => fields.iter().try_for_each(|(name, item)| {
            let within = if field.is_empty() { "the body" } else { field };
            check_text(&format!("a field name in {within}"), name, MAX_TEXT)?;
            if field.is_empty() {
                check_json(item, name)
            } else {
                check_json(item, &format!("{field}.{name}"))
            }
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
    }
}

/// A JSON body of type `T`.
pub struct ApiJson<T>(pub T);

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(refused(
                Code::UnsupportedMediaType,
                "the body must be JSON, sent with Content-Type: application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    refused(Code::PayloadTooLarge, e.body_text())
                } else {
                    refused(Code::InvalidRequest, e.body_text())
                }
            })?;
        let document: Value = serde_json::from_slice(&bytes)
            .map_err(|e| refused(Code::InvalidJson, format!("the body is not JSON: {e}")))?;
        check_json(&document, "")?;
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(body)) => Ok(ApiJson(body)),
            Err(JsonRejection::JsonDataError(e)) => {
                let message = e.body_text();
                if message.contains(INEXACT) {
                    Err(refused(T::INEXACT_CODE, message))
                } else {
                    Err(refused(Code::InvalidRequest, message))
                }
            }
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(refused(Code::InvalidJson, e.body_text()))
            }
            Err(other) => Err(refused(Code::InvalidRequest, other.body_text())),
        }
    }
}

/// A query string of type `T`.
pub struct ApiQuery<T>(pub T);

fn query_error(e: QueryRejection) -> ApiError {
    refused(Code::InvalidQuery, e.body_text())
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Query(pairs) =
            Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map_err(query_error)?;
        for (name, value) in &pairs {
            check_text("a query parameter's name", name, MAX_TEXT)?;
            check_text(&format!("query parameter {name}"), value, MAX_TEXT)?;
        }
        let Query(query) = Query::<T>::try_from_uri(&parts.uri).map_err(query_error)?;
        Ok(ApiQuery(query))
    }
}

/// Path parameters of type `T`.
pub struct ApiPath<T>(pub T);

fn path_error(status: StatusCode, message: String) -> ApiError {
    if status.is_server_error() {
        ApiError::Internal(anyhow::anyhow!(message))
    } else {
        refused(Code::InvalidPath, message)
    }
}

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| path_error(e.status(), e.body_text()))?;
        for (name, value) in raw.iter() {
            check_text(&format!("path parameter {name}"), value, MAX_TEXT)?;
        }
        let Path(path) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e: PathRejection| path_error(e.status(), e.body_text()))?;
        Ok(ApiPath(path))
    }
}

/// Any route the API does not have: 404 `unknown_route` (a handler's own
/// 404 is `not_found`).
pub async fn unknown_route() -> ApiError {
    refused(Code::UnknownRoute, "no such route")
}

/// A route called with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    refused(
        Code::MethodNotAllowed,
        "this route does not take this method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(value: Value) -> Option<&'static str> {
        check_json(&value, "").err().map(|e| e.code().as_str())
    }

    #[test]
    fn every_string_and_field_name_is_checked() {
        assert_eq!(code(json!({"a": [1, {"b": "ok"}], "c": null})), None);
        assert_eq!(
            code(json!({"a": [1, {"b": "x\u{0}"}]})),
            Some("invalid_text")
        );
        assert_eq!(code(json!({"a\u{0}": 1})), Some("invalid_text"));
        assert_eq!(code(json!(["x".repeat(1001)])), Some("text_too_long"));
        let err = check_json(&json!({"a": [1, {"b": "x\u{0}"}]}), "").unwrap_err();
        assert!(err.to_string().starts_with("a[1].b "), "{err}");
    }
}
