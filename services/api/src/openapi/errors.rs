//! The error responses of each operation, from the closed set of codes
//! ([`Code`]): those its shape implies (a bearer key: `unauthorized`,
//! `forbidden`; a path, a query, a JSON body: their extractors' codes) and
//! those its handler answers with, listed here per operation. Each status
//! an operation answers with is documented as "Error; `error.code` is one
//! of: …", in the order of [`Code::ALL`].

use serde_json::{json, Value};

use crate::error::Code;

/// The codes each operation's handler answers with, beyond those its shape
/// implies. A test checks that every operation that takes a bearer key is
/// here and that each entry is an operation of the document.
#[rustfmt::skip]
pub const OPERATIONS: &[(&str, &str, &[Code])] = &[
    ("get", "/v1/provider/skus", &[]),
    ("post", "/v1/provider/skus", &[Code::InvalidAggregation, Code::SkuNotInNamespace, Code::AlreadyExists]),
    ("get", "/v1/provider/skus/{sku}/prices", &[Code::NotFound]),
    ("post", "/v1/provider/skus/{sku}/prices", &[Code::InvalidPrice, Code::UnknownCurrency, Code::InvalidDate, Code::NotFound, Code::PriceVersionExists, Code::EffectiveInPast, Code::PriceNoticeTooShort]),
    ("get", "/v1/provider/corrections", &[]),
    ("get", "/v1/invoices/{id}/usage-corrections", &[Code::NotFound]),
    ("get", "/v1/invoices", &[Code::InvalidRequest, Code::InvalidPeriod]),
    ("get", "/v1/invoices/{id}", &[Code::NotFound]),
    ("get", "/v1/accounts/{account}/bill", &[Code::InvalidPeriod, Code::NotFound]),
    ("post", "/v1/accounts/{account}/bill-links", &[Code::InvalidPeriod, Code::NotFound]),
    ("get", "/v1/admin/providers", &[]),
    ("post", "/v1/admin/providers", &[Code::InvalidPrice, Code::InvalidProviderId, Code::AlreadyExists]),
    ("post", "/v1/admin/providers/{id}/settlement-mode", &[Code::NotFound]),
    ("get", "/v1/admin/accounts", &[]),
    ("post", "/v1/admin/accounts", &[Code::UnknownCurrency, Code::AlreadyExists, Code::UnknownProvider]),
    ("get", "/v1/provider/account/invoices", &[]),
    ("get", "/v1/provider/account/invoices/{id}", &[Code::NotFound]),
    ("post", "/v1/provider/references", &[Code::NotFound]),
    ("get", "/v1/provider/margin", &[Code::InvalidPeriod]),
    ("get", "/v1/provider/margin.csv", &[Code::InvalidPeriod]),
    ("get", "/v1/provider/statements", &[]),
    ("get", "/v1/provider/statements/{period}", &[Code::InvalidPeriod]),
    ("get", "/v1/admin/skus", &[]),
    ("post", "/v1/admin/skus", &[Code::InvalidAggregation, Code::InvalidPrice, Code::SkuNotInNamespace, Code::AlreadyExists, Code::UnknownProvider]),
    ("post", "/v1/admin/prices", &[Code::InvalidPrice, Code::UnknownCurrency, Code::InvalidDate, Code::PriceVersionExists, Code::UnknownSku]),
    ("post", "/v1/admin/keys", &[]),
    ("post", "/v1/accounts/{account}/grants", &[Code::InvalidDate, Code::NotFound, Code::CurrencyMismatch, Code::InvalidAmount, Code::InvalidCostBasis, Code::InvalidGrantKind, Code::InvalidEligibility, Code::InvalidValidity, Code::ValidityNotHourAligned, Code::UnknownProvider, Code::UnknownSku]),
    ("get", "/v1/accounts/{account}/grants", &[Code::NotFound]),
    ("get", "/v1/accounts/{account}/credit-ledger", &[Code::NotFound]),
    ("get", "/v1/grants/{id}", &[Code::NotFound]),
    ("get", "/v1/grants/{id}/ledger", &[Code::NotFound]),
    ("post", "/v1/grants/{id}/void", &[Code::NotFound, Code::GrantVoided]),
    ("post", "/v1/invoices/{id}/void", &[Code::NotFound, Code::InvoiceNotFinalized, Code::InvoiceVoided, Code::InvoiceHasCreditNotes, Code::ReasonRequired]),
    ("get", "/v1/invoices/{id}/credit-notes", &[]),
    ("post", "/v1/invoices/{id}/credit-notes", &[Code::NotFound, Code::InvoiceNotFinalized, Code::InvoiceVoided, Code::NothingToCredit, Code::ReasonRequired, Code::UnknownLine, Code::InvalidAmount, Code::CreditExceedsLine, Code::CreditExceedsInvoice, Code::AmountOverflow]),
    ("get", "/v1/credit-notes", &[Code::InvalidRequest, Code::InvalidPeriod]),
    ("get", "/v1/credit-notes/{id}", &[Code::NotFound]),
    ("get", "/v1/settlements", &[Code::InvalidRequest, Code::InvalidPeriod]),
    ("get", "/v1/reconciliation", &[Code::InvalidRequest, Code::InvalidPeriod]),
    ("get", "/v1/exports/invoices.csv", &[Code::InvalidRequest, Code::InvalidPeriod]),
    ("get", "/v1/exports/invoice-lines.csv", &[Code::InvalidRequest, Code::InvalidPeriod]),
    ("post", "/v1/accounts/{account}/bindings", &[Code::Forbidden, Code::InvalidDate, Code::NotFound, Code::UnknownPlan, Code::PlanMismatch, Code::PlanNotOffered, Code::MoveInFuture, Code::IdempotencyKeyReused]),
    ("get", "/v1/accounts/{account}/bindings", &[Code::NotFound]),
    ("get", "/v1/accounts/{account}/bindings/{id}", &[Code::NotFound]),
    ("post", "/v1/accounts/{account}/bindings/{id}/plan", &[Code::InvalidDate, Code::NotFound, Code::UnknownPlan, Code::PlanMismatch, Code::PlanNotOffered, Code::MoveInFuture, Code::IllegalTransition, Code::OutOfOrder]),
    ("post", "/v1/accounts/{account}/bindings/{id}/suspend", &[Code::InvalidDate, Code::NotFound, Code::MoveInFuture, Code::IllegalTransition, Code::OutOfOrder]),
    ("post", "/v1/accounts/{account}/bindings/{id}/resume", &[Code::InvalidDate, Code::NotFound, Code::MoveInFuture, Code::IllegalTransition, Code::OutOfOrder]),
    ("post", "/v1/accounts/{account}/bindings/{id}/delete", &[Code::InvalidDate, Code::NotFound, Code::MoveInFuture, Code::IllegalTransition, Code::OutOfOrder]),
    ("get", "/v1/provider/bindings", &[]),
    ("get", "/v1/provider/bindings/{id}", &[Code::NotFound]),
    ("post", "/v1/provider/bindings/{id}/status", &[Code::InvalidDate, Code::NotFound, Code::MoveInFuture, Code::IllegalTransition, Code::OutOfOrder]),
    ("post", "/v1/provider/webhook", &[Code::InvalidUrl, Code::WebhooksDisabled]),
    ("get", "/v1/provider/plans", &[]),
    ("post", "/v1/provider/plans", &[Code::PlanNotInNamespace, Code::AlreadyExists]),
    ("post", "/v1/provider/plans/{plan}/versions", &[Code::UnknownCurrency, Code::InvalidDate, Code::NotFound, Code::EffectiveInPast, Code::UnknownSku, Code::InvalidPlan, Code::AmountOverflow, Code::PlanVersionExists]),
    ("post", "/v1/accounts/{account}/contracts", &[Code::InvalidDate, Code::NotFound, Code::UnknownProvider, Code::UnknownSku, Code::CurrencyMismatch, Code::InvalidAmount, Code::ContractOverlaps, Code::TermOutsideContract, Code::CommitmentOutsideTerm, Code::InvalidContract, Code::InvalidPrice]),
    ("post", "/v1/accounts/{account}/contracts/{id}/sign", &[Code::NotFound, Code::PartnerNotAgreed]),
    ("get", "/v1/accounts/{account}/contracts", &[Code::NotFound]),
    ("get", "/v1/accounts/{account}/price-changes", &[Code::NotFound]),
    ("get", "/v1/provider/contract-terms", &[]),
    ("post", "/v1/provider/contract-terms/{id}/agree", &[Code::NotFound]),
    ("post", "/v1/admin/plan-versions", &[Code::UnknownCurrency, Code::InvalidDate, Code::UnknownSku, Code::UnknownPlan, Code::InvalidPlan, Code::AmountOverflow, Code::PlanVersionExists]),
];

/// The codes an operation's shape implies.
fn implied(operation: &Value) -> Vec<Code> {
    let mut codes = Vec::new();
    if operation.get("security").is_some() {
        codes.extend([Code::Unauthorized, Code::Forbidden]);
    }
    let parameters = operation["parameters"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let taken = |place: &str| parameters.iter().any(|p| p["in"] == place);
    if taken("path") {
        codes.extend([Code::InvalidPath, Code::InvalidText, Code::TextTooLong]);
    }
    if taken("query") {
        codes.extend([Code::InvalidQuery, Code::InvalidText, Code::TextTooLong]);
    }
    if operation.get("requestBody").is_some() {
        codes.extend([
            Code::InvalidRequest,
            Code::InvalidJson,
            Code::InvalidText,
            Code::TextTooLong,
            Code::PayloadTooLarge,
            Code::UnsupportedMediaType,
        ]);
    }
    codes
}

/// Documents the error responses of every operation in [`OPERATIONS`].
pub fn describe(doc: &mut Value) {
    for (method, path, own) in OPERATIONS {
        let Some(operation) = doc["paths"]
            .get_mut(*path)
            .and_then(|item| item.get_mut(*method))
        else {
            continue;
        };
        let mut codes = implied(operation);
        codes.extend_from_slice(own);
        let mut statuses: Vec<u16> = codes.iter().map(|c| c.status().as_u16()).collect();
        statuses.sort_unstable();
        statuses.dedup();
        for status in statuses {
            let names: Vec<String> = Code::ALL
                .iter()
                .filter(|c| c.status().as_u16() == status && codes.contains(c))
                .map(|c| format!("`{}`", c.as_str()))
                .collect();
            operation["responses"][status.to_string()] = json!({
                "description": format!("Error; `error.code` is one of: {}", names.join(", ")),
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
            });
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A path on another service (the collector's), whose codes are not
    /// the API's.
    fn elsewhere(path: &str) -> bool {
        crate::openapi::PATH_SERVERS
            .iter()
            .any(|(p, servers)| *p == path && !servers.contains(&"api"))
    }

    /// A new operation cannot ship without its codes, nor a stale entry stay.
    #[test]
    fn every_operation_with_a_key_lists_its_codes_and_every_entry_exists() {
        let doc = crate::openapi::document();
        let mut keyed = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                if operation.get("security").is_some() && !elsewhere(path) {
                    keyed.push((method.clone(), path.clone()));
                }
            }
        }
        for (method, path) in &keyed {
            assert!(
                OPERATIONS.iter().any(|(m, p, _)| m == method && p == path),
                "{method} {path}: list its error codes in openapi::errors::OPERATIONS"
            );
        }
        for (method, path, _) in OPERATIONS {
            assert!(
                keyed.iter().any(|(m, p)| m == method && p == path),
                "{method} {path} is in OPERATIONS but not a documented operation with a key"
            );
        }
        assert_eq!(OPERATIONS.len(), keyed.len());
    }

    #[test]
    fn a_void_documents_each_status_with_its_codes() {
        let doc = crate::openapi::document();
        let responses = &doc["paths"]["/v1/invoices/{id}/void"]["post"]["responses"];
        assert_eq!(
            responses["409"]["description"],
            "Error; `error.code` is one of: `invoice_not_finalized`, `invoice_voided`, `invoice_has_credit_notes`"
        );
        assert_eq!(
            responses["400"]["description"],
            "Error; `error.code` is one of: `invalid_request`, `invalid_json`, `invalid_path`, `invalid_text`, `text_too_long`"
        );
        assert_eq!(
            responses["401"]["description"],
            "Error; `error.code` is one of: `unauthorized`"
        );
    }
}
