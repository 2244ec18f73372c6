//! The invoicing API's errors, each with a stable code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tally_domain::{InputError, MoneyError};
use tally_platform::catalog::CatalogError;

/// Every code the API answers with: a closed set, each with its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Unauthorized,
    Forbidden,
    NotFound,
    UnknownRoute,
    MethodNotAllowed,
    UnsupportedMediaType,
    PayloadTooLarge,
    InvalidRequest,
    InvalidJson,
    InvalidQuery,
    InvalidPath,
    InvalidText,
    TextTooLong,
    InvalidDate,
    InvalidPeriod,
    UnknownCurrency,
    EffectiveInPast,
    AlreadyExists,
    UnknownProvider,
    UnknownSku,
    PriceVersionExists,
    InvalidPrice,
    InvalidAggregation,
    InvalidProviderId,
    SkuNotInNamespace,
    GrantVoided,
    CurrencyMismatch,
    InvalidAmount,
    InvalidCostBasis,
    InvalidGrantKind,
    InvalidEligibility,
    InvalidValidity,
    ValidityNotHourAligned,
    InvoiceNotFinalized,
    InvoiceVoided,
    InvoiceHasCreditNotes,
    NothingToCredit,
    ReasonRequired,
    UnknownLine,
    CreditExceedsLine,
    CreditExceedsInvoice,
    AmountOverflow,
    UnknownPlan,
    PlanMismatch,
    PlanNotOffered,
    InvalidPlan,
    MoveInFuture,
    PlanNotInNamespace,
    InvalidUrl,
    IllegalTransition,
    OutOfOrder,
    PlanVersionExists,
    WebhooksDisabled,
    IdempotencyKeyReused,
    ContractOverlaps,
    TermOutsideContract,
    CommitmentOutsideTerm,
    InvalidContract,
    PriceNoticeTooShort,
    PartnerNotAgreed,
    Internal,
}

impl Code {
    pub const ALL: [Code; 61] = [
        Code::Unauthorized,
        Code::Forbidden,
        Code::NotFound,
        Code::UnknownRoute,
        Code::MethodNotAllowed,
        Code::UnsupportedMediaType,
        Code::PayloadTooLarge,
        Code::InvalidRequest,
        Code::InvalidJson,
        Code::InvalidQuery,
        Code::InvalidPath,
        Code::InvalidText,
        Code::TextTooLong,
        Code::InvalidDate,
        Code::InvalidPeriod,
        Code::UnknownCurrency,
        Code::EffectiveInPast,
        Code::AlreadyExists,
        Code::UnknownProvider,
        Code::UnknownSku,
        Code::PriceVersionExists,
        Code::InvalidPrice,
        Code::InvalidAggregation,
        Code::InvalidProviderId,
        Code::SkuNotInNamespace,
        Code::GrantVoided,
        Code::CurrencyMismatch,
        Code::InvalidAmount,
        Code::InvalidCostBasis,
        Code::InvalidGrantKind,
        Code::InvalidEligibility,
        Code::InvalidValidity,
        Code::ValidityNotHourAligned,
        Code::InvoiceNotFinalized,
        Code::InvoiceVoided,
        Code::InvoiceHasCreditNotes,
        Code::NothingToCredit,
        Code::ReasonRequired,
        Code::UnknownLine,
        Code::CreditExceedsLine,
        Code::CreditExceedsInvoice,
        Code::AmountOverflow,
        Code::UnknownPlan,
        Code::PlanMismatch,
        Code::PlanNotOffered,
        Code::InvalidPlan,
        Code::MoveInFuture,
        Code::PlanNotInNamespace,
        Code::InvalidUrl,
        Code::IllegalTransition,
        Code::OutOfOrder,
        Code::PlanVersionExists,
        Code::WebhooksDisabled,
        Code::IdempotencyKeyReused,
        Code::ContractOverlaps,
        Code::TermOutsideContract,
        Code::CommitmentOutsideTerm,
        Code::InvalidContract,
        Code::PriceNoticeTooShort,
        Code::PartnerNotAgreed,
        Code::Internal,
    ];

    /// The code as the API writes it (`error.code`).
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::UnknownRoute => "unknown_route",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::PayloadTooLarge => "payload_too_large",
            Code::InvalidRequest => "invalid_request",
            Code::InvalidJson => "invalid_json",
            Code::InvalidQuery => "invalid_query",
            Code::InvalidPath => "invalid_path",
            Code::InvalidText => "invalid_text",
            Code::TextTooLong => "text_too_long",
            Code::InvalidDate => "invalid_date",
            Code::InvalidPeriod => "invalid_period",
            Code::UnknownCurrency => "unknown_currency",
            Code::EffectiveInPast => "effective_in_past",
            Code::AlreadyExists => "already_exists",
            Code::UnknownProvider => "unknown_provider",
            Code::UnknownSku => "unknown_sku",
            Code::PriceVersionExists => "price_version_exists",
            Code::InvalidPrice => "invalid_price",
            Code::InvalidAggregation => "invalid_aggregation",
            Code::InvalidProviderId => "invalid_provider_id",
            Code::SkuNotInNamespace => "sku_not_in_namespace",
            Code::GrantVoided => "grant_voided",
            Code::CurrencyMismatch => "currency_mismatch",
            Code::InvalidAmount => "invalid_amount",
            Code::InvalidCostBasis => "invalid_cost_basis",
            Code::InvalidGrantKind => "invalid_grant_kind",
            Code::InvalidEligibility => "invalid_eligibility",
            Code::InvalidValidity => "invalid_validity",
            Code::ValidityNotHourAligned => "validity_not_hour_aligned",
            Code::InvoiceNotFinalized => "invoice_not_finalized",
            Code::InvoiceVoided => "invoice_voided",
            Code::InvoiceHasCreditNotes => "invoice_has_credit_notes",
            Code::NothingToCredit => "nothing_to_credit",
            Code::ReasonRequired => "reason_required",
            Code::UnknownLine => "unknown_line",
            Code::CreditExceedsLine => "credit_exceeds_line",
            Code::CreditExceedsInvoice => "credit_exceeds_invoice",
            Code::AmountOverflow => "amount_overflow",
            Code::UnknownPlan => "unknown_plan",
            Code::PlanMismatch => "plan_mismatch",
            Code::PlanNotOffered => "plan_not_offered",
            Code::InvalidPlan => "invalid_plan",
            Code::MoveInFuture => "move_in_future",
            Code::PlanNotInNamespace => "plan_not_in_namespace",
            Code::InvalidUrl => "invalid_url",
            Code::IllegalTransition => "illegal_transition",
            Code::OutOfOrder => "out_of_order",
            Code::PlanVersionExists => "plan_version_exists",
            Code::WebhooksDisabled => "webhooks_disabled",
            Code::IdempotencyKeyReused => "idempotency_key_reused",
            Code::ContractOverlaps => "contract_overlaps",
            Code::TermOutsideContract => "term_outside_contract",
            Code::CommitmentOutsideTerm => "commitment_outside_term",
            Code::InvalidContract => "invalid_contract",
            Code::PriceNoticeTooShort => "price_notice_too_short",
            Code::PartnerNotAgreed => "partner_not_agreed",
            Code::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound | Code::UnknownRoute => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::InvalidRequest
            | Code::InvalidJson
            | Code::InvalidQuery
            | Code::InvalidPath
            | Code::InvalidText
            | Code::TextTooLong
            | Code::InvalidDate
            | Code::InvalidPeriod
            | Code::UnknownCurrency
            | Code::InvalidPrice
            | Code::InvalidAggregation
            | Code::InvalidProviderId
            | Code::SkuNotInNamespace
            | Code::PlanNotInNamespace
            | Code::InvalidUrl => StatusCode::BAD_REQUEST,
            Code::EffectiveInPast
            | Code::UnknownProvider
            | Code::UnknownSku
            | Code::CurrencyMismatch
            | Code::InvalidAmount
            | Code::InvalidCostBasis
            | Code::InvalidGrantKind
            | Code::InvalidEligibility
            | Code::InvalidValidity
            | Code::ValidityNotHourAligned
            | Code::ReasonRequired
            | Code::UnknownLine
            | Code::CreditExceedsLine
            | Code::CreditExceedsInvoice
            | Code::AmountOverflow
            | Code::UnknownPlan
            | Code::PlanMismatch
            | Code::PlanNotOffered
            | Code::InvalidPlan
            | Code::MoveInFuture
            | Code::TermOutsideContract
            | Code::CommitmentOutsideTerm
            | Code::InvalidContract
            | Code::PriceNoticeTooShort => StatusCode::UNPROCESSABLE_ENTITY,
            Code::AlreadyExists
            | Code::PriceVersionExists
            | Code::GrantVoided
            | Code::InvoiceNotFinalized
            | Code::InvoiceVoided
            | Code::InvoiceHasCreditNotes
            | Code::NothingToCredit
            | Code::IllegalTransition
            | Code::OutOfOrder
            | Code::PlanVersionExists
            | Code::WebhooksDisabled
            | Code::IdempotencyKeyReused
            | Code::ContractOverlaps
            | Code::PartnerNotAgreed => StatusCode::CONFLICT,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<&InputError> for Code {
    fn from(e: &InputError) -> Code {
        match e {
            InputError::Nul { .. } => Code::InvalidText,
            InputError::TooLong { .. } => Code::TextTooLong,
            InputError::DateOutOfRange { .. } => Code::InvalidDate,
        }
    }
}

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
    /// A credit grant refused, with its code (see `credits`).
    #[error("{1}")]
    Credit(Code, String),
    /// A correction of an invoice refused, with its code (see `corrections`).
    #[error("{1}")]
    Refused(Code, String),
    /// A body, query or path refused before its handler ran, with its code
    /// (see `extract`): `invalid_json`, `invalid_query`, `invalid_path`, …
    #[error("{1}")]
    Request(Code, String),
    /// Text with a NUL or over its limit, a date out of range.
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::Unauthorized => Code::Unauthorized,
            ApiError::Forbidden => Code::Forbidden,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::InvalidRequest(_) => Code::InvalidRequest,
            ApiError::InvalidPeriod(_) => Code::InvalidPeriod,
            ApiError::UnknownCurrency(_) => Code::UnknownCurrency,
            ApiError::EffectiveInPast(_) => Code::EffectiveInPast,
            ApiError::Catalog(e) => match e {
                CatalogError::AlreadyExists(_) => Code::AlreadyExists,
                CatalogError::UnknownProvider(_) => Code::UnknownProvider,
                CatalogError::UnknownSku(_) => Code::UnknownSku,
                CatalogError::PriceVersionExists => Code::PriceVersionExists,
                CatalogError::InvalidPrice(_) => Code::InvalidPrice,
                CatalogError::InvalidAggregation(_) => Code::InvalidAggregation,
                CatalogError::InvalidProviderId(_) => Code::InvalidProviderId,
                CatalogError::SkuNotInNamespace { .. } => Code::SkuNotInNamespace,
                CatalogError::Database(_) => Code::Internal,
            },
            ApiError::Credit(code, _) | ApiError::Refused(code, _) | ApiError::Request(code, _) => {
                *code
            }
            ApiError::Input(e) => e.into(),
            ApiError::Internal(_) => Code::Internal,
        }
    }

    fn status(&self) -> StatusCode {
        self.code().status()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        ApiError::Internal(err.into())
    }
}

/// An amount that does not fit (`amount_overflow`, with what overflowed);
/// any other money error is the code's fault (`internal`).
impl From<MoneyError> for ApiError {
    fn from(err: MoneyError) -> Self {
        match err {
            MoneyError::Overflow => ApiError::Refused(
                Code::AmountOverflow,
                "an amount is beyond what Tally can represent".to_owned(),
            ),
            other => ApiError::Internal(other.into()),
        }
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
        let body = json!({"error": {"code": self.code().as_str(), "message": message}});
        (self.status(), Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_documented() {
        let names: std::collections::BTreeSet<&str> =
            Code::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), Code::ALL.len());
        let document = crate::openapi::text();
        for code in Code::ALL {
            let documented =
                code == Code::Internal || document.contains(&format!("`{}`", code.as_str()));
            assert!(
                documented,
                "{} is not in the OpenAPI document",
                code.as_str()
            );
        }
        assert_eq!(
            Code::ReasonRequired.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(Code::InvoiceVoided.status(), StatusCode::CONFLICT);
        assert_eq!(Code::InvalidJson.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            Code::AmountOverflow.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn an_overflow_is_amount_overflow_and_other_money_errors_are_internal() {
        let overflow = ApiError::from(MoneyError::Overflow);
        assert_eq!(overflow.code().as_str(), "amount_overflow");
        assert_eq!(overflow.code().as_str(), MoneyError::Overflow.code());
        assert_eq!(
            ApiError::from(MoneyError::EmptySplit).code(),
            Code::Internal
        );
    }

    #[test]
    fn input_errors_keep_their_domain_codes() {
        for (error, code) in [
            (
                InputError::Nul {
                    field: "name".into(),
                },
                Code::InvalidText,
            ),
            (
                InputError::TooLong {
                    field: "name".into(),
                    max: 200,
                },
                Code::TextTooLong,
            ),
            (
                InputError::DateOutOfRange {
                    field: "at".into(),
                    at: "+10000".into(),
                },
                Code::InvalidDate,
            ),
        ] {
            assert_eq!(Code::from(&error), code);
            assert_eq!(error.code(), code.as_str());
        }
    }
}
