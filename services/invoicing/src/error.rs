//! The invoicing API's errors, each with a stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tally_domain::InputError;
use tally_platform::catalog::CatalogError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or unknown API key")]
    Unauthorized,
    #[error("this key may not access this resource")]
    Forbidden,
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    InvalidPeriod(String),
    #[error("{0}")]
    UnknownCurrency(String),
    #[error("{0}")]
    EffectiveInPast(String),
    #[error(transparent)]
    Catalog(CatalogError),
    /// A credit grant refused, with its code (see `credits_api`).
    #[error("{1}")]
    Credit(&'static str, String),
    /// A correction of an invoice refused, with its code (see `corrections`).
    #[error("{1}")]
    Refused(&'static str, String),
    /// A body, query or path refused before its handler ran, with its code
    /// (see `extract`): `invalid_json`, `invalid_query`, `invalid_path`, …
    #[error("{1}")]
    Request(&'static str, String),
    /// Text with a NUL or over its limit, a date out of range.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::InvalidPeriod(_) => "invalid_period",
            ApiError::UnknownCurrency(_) => "unknown_currency",
            ApiError::EffectiveInPast(_) => "effective_in_past",
            ApiError::Catalog(e) => match e {
                CatalogError::AlreadyExists(_) => "already_exists",
                CatalogError::UnknownProvider(_) => "unknown_provider",
                CatalogError::UnknownSku(_) => "unknown_sku",
                CatalogError::PriceVersionExists => "price_version_exists",
                CatalogError::InvalidPrice(_) => "invalid_price",
                CatalogError::InvalidAggregation(_) => "invalid_aggregation",
                CatalogError::InvalidProviderId(_) => "invalid_provider_id",
                CatalogError::SkuNotInNamespace { .. } => "sku_not_in_namespace",
                CatalogError::Database(_) => "internal",
            },
            ApiError::Credit(code, _) | ApiError::Refused(code, _) | ApiError::Request(code, _) => {
                code
            }
            ApiError::Input(e) => e.code(),
            ApiError::Internal(_) => "internal",
        }
    }

    fn status(&self) -> StatusCode {
        match self.code() {
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" | "unknown_route" => StatusCode::NOT_FOUND,
            "method_not_allowed" => StatusCode::METHOD_NOT_ALLOWED,
            "unsupported_media_type" => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "already_exists"
            | "price_version_exists"
            | "grant_voided"
            | "invoice_not_finalized"
            | "invoice_voided"
            | "invoice_has_credit_notes"
            | "nothing_to_credit" => StatusCode::CONFLICT,
            "unknown_provider"
            | "unknown_sku"
            | "effective_in_past"
            | "currency_mismatch"
            | "invalid_amount"
            | "invalid_cost_basis"
            | "invalid_grant_kind"
            | "invalid_eligibility"
            | "invalid_validity"
            | "validity_not_hour_aligned"
            | "reason_required"
            | "unknown_line"
            | "credit_exceeds_line"
            | "credit_exceeds_invoice" => StatusCode::UNPROCESSABLE_ENTITY,
            "internal" => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

impl From<CatalogError> for ApiError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::Database(e) => ApiError::Internal(e.into()),
            other => ApiError::Catalog(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = ?cause, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({"error": {"code": self.code(), "message": message}});
        (self.status(), Json(body)).into_response()
    }
}
