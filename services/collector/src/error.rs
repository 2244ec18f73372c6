//! The collector's request-level errors, each with a stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this key may not send usage: only provider keys can")]
    Forbidden,
    #[error("the body is not a CloudEvent or a JSON array of CloudEvents: {0}")]
    Malformed(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("a batch holds at most {max} events, this one {got}")]
    BatchTooLarge { max: usize, got: usize },
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("content type must be application/cloudevents+json, application/cloudevents-batch+json or application/json")]
    UnsupportedMediaType,
    #[error("the broker did not acknowledge the events; nothing is guaranteed, retry the request")]
    BrokerUnavailable(String),
    /// PostgreSQL is out of reach and what the collector remembers does
    /// not decide this request: nothing was accepted, retry it.
    #[error("the key or the catalog cannot be checked right now; nothing was accepted, retry the request")]
    CatalogUnavailable,
    /// The one event of a single-event request (structured or binary
    /// mode) is refused, with the code a batch would give it.
    #[error("{message}")]
    EventRefused { code: &'static str, message: String },
    /// A usage correction refused before it was produced, with its code
    /// (`tally_domain::usage_correction::Refusal`, or a per-event code of
    /// a backfill's replacement).
    #[error("{message}")]
    CorrectionRefused { code: &'static str, message: String },
    /// An upload that is not NDJSON or CSV, or in an unknown encoding.
    #[error("an import is application/x-ndjson or text/csv, with Content-Encoding gzip or none")]
    UnsupportedImport,
    /// The upload could not be read past line `imported`: the lines before
    /// it are imported, and a rerun of the whole file imports nothing twice.
    #[error("the upload could not be read after line {imported} (the lines before it are imported; rerunning the whole file imports nothing twice): {cause}")]
    ImportUnreadable { imported: u64, cause: String },
    /// The import stopped after line `imported` because the broker or the
    /// catalog did not answer; rerunning the whole file is safe.
    #[error("the import stopped after line {imported} (the lines before it are imported; rerun the whole file, nothing is imported twice): {cause}")]
    ImportInterrupted { imported: u64, cause: String },
    #[error("no such route")]
    UnknownRoute,
    #[error("this route does not take this method")]
    MethodNotAllowed,
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

/// Seconds a client is asked to wait before retrying a 503.
pub const RETRY_AFTER_SECS: u64 = 5;

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::Malformed(_) => "malformed",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::BatchTooLarge { .. } => "batch_too_large",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::BrokerUnavailable(_) => "broker_unavailable",
            ApiError::CatalogUnavailable => "catalog_unavailable",
            ApiError::EventRefused { code, .. } | ApiError::CorrectionRefused { code, .. } => code,
            ApiError::UnsupportedImport => "unsupported_media_type",
            ApiError::ImportUnreadable { .. } => "malformed",
            ApiError::ImportInterrupted { .. } => "import_interrupted",
            ApiError::UnknownRoute => "unknown_route",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden => StatusCode::FORBIDDEN,
            ApiError::Malformed(_)
            | ApiError::InvalidRequest(_)
            | ApiError::ImportUnreadable { .. } => StatusCode::BAD_REQUEST,
            ApiError::BatchTooLarge { .. } | ApiError::PayloadTooLarge(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnsupportedMediaType | ApiError::UnsupportedImport => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            ApiError::BrokerUnavailable(_)
            | ApiError::CatalogUnavailable
            | ApiError::ImportInterrupted { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::EventRefused { code, .. } if *code == "event_too_large" => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::EventRefused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::CorrectionRefused { code, .. } => match *code {
                "unknown_event" => StatusCode::NOT_FOUND,
                "event_not_owned" => StatusCode::FORBIDDEN,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            },
            ApiError::UnknownRoute => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<crate::lookup::LookupError> for ApiError {
    fn from(err: crate::lookup::LookupError) -> Self {
        match err {
            crate::lookup::LookupError::Unavailable => ApiError::CatalogUnavailable,
            crate::lookup::LookupError::Database(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = ?cause, "internal error"),
            ApiError::BrokerUnavailable(cause) => tracing::error!(%cause, "broker unavailable"),
            _ => {}
        }
        let body = json!({"error": {"code": self.code(), "message": self.to_string()}});
        let mut response = (self.status(), Json(body)).into_response();
        if self.status() == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
