//! Bindings and plans over HTTP (issue 16). A customer (its customer
//! token, its own account only) or the platform (the admin key, any
//! account) provisions a partner's resource, changes its plan, suspends,
//! resumes and deletes it ([`account`]); the provider (its key, bindings to
//! itself only) lists them and reports how provisioning goes, publishes its
//! plans and sets its webhook ([`provider`], [`plans`]). Every decision is
//! `tally_domain::binding`'s state machine and every write
//! `tally_platform::bindings`' (which tells the provider through the
//! outbox in the same transaction); this module maps their refusals onto
//! stable codes:
//!
//! | code | status | what |
//! |---|---|---|
//! | `not_found` | 404 | no such binding (or plan, or account) for the caller |
//! | `unknown_plan` | 422 | a new binding or plan change names no plan |
//! | `plan_mismatch` | 422 | the plan is another provider's or resource type's |
//! | `plan_not_offered` | 422 | the plan has no version in the account's currency in effect |
//! | `illegal_transition` | 409 | the state machine refuses the move (`suspend` of a requested binding, anything on a deleted one, a plan change of a failed one) |
//! | `out_of_order` | 409 | a move timed before the binding's last change |
//! | `move_in_future` | 422 | a move timed more than a minute ahead of Tally's clock |
//! | `idempotency_key_reused` | 409 | an `Idempotency-Key` that created a binding of other terms on the account |
//!
//! A move is timed now, unless the platform (the admin key) or the
//! provider (its report) says when it happened (`at`): the platform
//! records what happened outside Tally, the provider when the resource
//! became active. A move timed in a period that is already sealed changes
//! that period's plan fees on no finalized invoice (finalized is frozen).

pub mod account;
pub mod plans;
pub mod provider;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use std::collections::BTreeMap;
use tally_domain::binding::{Binding, BindingError, PlanChange, StatusChange};
use tally_domain::input::check_date;
use tally_platform::bindings::BindingRepoError;
use tally_platform::plans::PlanRepoError;

use crate::error::{ApiError, Code};

/// Clock skew tolerated between a caller and Tally for a move's time.
const SKEW: i64 = 60;

/// A binding as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BindingView {
    /// `bnd_` and 32 hex digits; usage events name it in their `resource` attribute
    pub id: String,
    pub account: String,
    pub provider: String,
    pub resource_type: String,
    /// The customer's name for the resource (`prod-db`)
    pub name: String,
    /// The provider's own id of the resource, once it reported one
    pub provider_resource_id: Option<String>,
    pub plan: String,
    pub region: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// requested, provisioning, active, failed, suspended or deleted
    #[schema(schema_with = crate::openapi::binding_status)]
    pub status: String,
    /// The provider's message with its last report (why it failed)
    pub status_message: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// First activation: usage counts from then on
    pub activated_at: Option<DateTime<Utc>>,
    /// The start of the current suspension, while suspended
    pub suspended_at: Option<DateTime<Utc>>,
    /// Usage timed at or after it is refused `not_bound`
    pub deleted_at: Option<DateTime<Utc>>,
}

impl From<Binding> for BindingView {
    fn from(b: Binding) -> Self {
        BindingView {
            id: b.id.to_string(),
            account: b.account.to_string(),
            provider: b.provider.to_string(),
            resource_type: b.resource_type.to_string(),
            name: b.name,
            provider_resource_id: b.provider_resource_id,
            plan: b.plan.to_string(),
            region: b.region,
            tags: b.tags,
            status: b.status.as_str().to_owned(),
            status_message: b.status_message,
            requested_at: b.requested_at,
            activated_at: b.activated_at,
            suspended_at: b.suspended_at,
            deleted_at: b.deleted_at,
        }
    }
}

/// One status change of a binding's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatusChangeView {
    pub at: DateTime<Utc>,
    /// Absent on the request that created it
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = crate::openapi::binding_status)]
    pub from: Option<String>,
    #[schema(schema_with = crate::openapi::binding_status)]
    pub to: String,
    /// customer, platform or provider
    pub by: String,
    pub message: Option<String>,
}

/// The plan a binding had from `at` on.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlanChangeView {
    pub at: DateTime<Utc>,
    pub plan: String,
}

/// A binding with its status and plan histories, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BindingDetail {
    #[serde(flatten)]
    pub binding: BindingView,
    pub history: Vec<StatusChangeView>,
    pub plans: Vec<PlanChangeView>,
}

impl BindingDetail {
    fn new(binding: Binding, history: Vec<StatusChange>, plans: Vec<PlanChange>) -> Self {
        BindingDetail {
            binding: binding.into(),
            history: history
                .into_iter()
                .map(|c| StatusChangeView {
                    at: c.at,
                    from: c.from.map(|s| s.as_str().to_owned()),
                    to: c.to.as_str().to_owned(),
                    by: c.by.as_str().to_owned(),
                    message: c.message,
                })
                .collect(),
            plans: plans
                .into_iter()
                .map(|p| PlanChangeView {
                    at: p.at,
                    plan: p.plan.to_string(),
                })
                .collect(),
        }
    }
}

/// Bindings, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BindingList {
    pub data: Vec<BindingView>,
}

impl BindingList {
    fn of(bindings: Vec<Binding>) -> Self {
        BindingList {
            data: bindings.into_iter().map(BindingView::from).collect(),
        }
    }
}

/// A binding id from a path: one that cannot be is one that does not exist.
fn binding_id(raw: &str) -> Result<tally_domain::BindingId, ApiError> {
    tally_domain::BindingId::parse(raw).map_err(|_| ApiError::NotFound(format!("binding {raw}")))
}

/// The time of a move: `at` if given (in range, not ahead of now by more
/// than the skew), else now.
fn move_time(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Result<DateTime<Utc>, ApiError> {
    let Some(at) = at else {
        return Ok(now);
    };
    check_date("at", at)?;
    if at > now + Duration::seconds(SKEW) {
        return Err(ApiError::Refused(
            Code::MoveInFuture,
            format!(
                "a move is timed when it happened, not at {} (ahead of Tally's clock)",
                at.to_rfc3339()
            ),
        ));
    }
    Ok(at)
}

fn binding_error(err: BindingError) -> ApiError {
    let message = err.to_string();
    match err {
        BindingError::Illegal(_) | BindingError::PlanChangeRefused { .. } => {
            ApiError::Refused(Code::IllegalTransition, message)
        }
        BindingError::OutOfOrder { .. } => ApiError::Refused(Code::OutOfOrder, message),
        BindingError::Invalid { .. } => ApiError::InvalidRequest(message),
        BindingError::RequestedByProvider => ApiError::Refused(Code::Forbidden, message),
    }
}

impl From<BindingRepoError> for ApiError {
    fn from(err: BindingRepoError) -> Self {
        let message = err.to_string();
        match err {
            BindingRepoError::NotFound(id) => ApiError::NotFound(format!("binding {id}")),
            BindingRepoError::UnknownAccount(id) => ApiError::NotFound(format!("account {id}")),
            BindingRepoError::UnknownPlan(_) => ApiError::Refused(Code::UnknownPlan, message),
            BindingRepoError::PlanMismatch { .. } => ApiError::Refused(Code::PlanMismatch, message),
            BindingRepoError::PlanNotOffered { .. } => {
                ApiError::Refused(Code::PlanNotOffered, message)
            }
            BindingRepoError::IdempotencyKeyReused(_) => {
                ApiError::Refused(Code::IdempotencyKeyReused, message)
            }
            BindingRepoError::Binding(e) => binding_error(e),
            BindingRepoError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

impl From<PlanRepoError> for ApiError {
    fn from(err: PlanRepoError) -> Self {
        let message = err.to_string();
        match err {
            PlanRepoError::AlreadyExists(_) => ApiError::Refused(Code::AlreadyExists, message),
            PlanRepoError::UnknownPlan(_) => ApiError::Refused(Code::UnknownPlan, message),
            PlanRepoError::UnknownProvider(_) => ApiError::Refused(Code::UnknownProvider, message),
            PlanRepoError::VersionExists => ApiError::Refused(Code::PlanVersionExists, message),
            PlanRepoError::ForeignSku { .. } => ApiError::Refused(Code::UnknownSku, message),
            PlanRepoError::InvalidName(e) => binding_error(e),
            PlanRepoError::Invalid(tally_domain::plan::PlanError::Money(e)) => e.into(),
            PlanRepoError::Invalid(_) => ApiError::Refused(Code::InvalidPlan, message),
            PlanRepoError::Database(e) => ApiError::Internal(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use tally_domain::binding::{BindingEvent, BindingStatus, IllegalBindingMove};

    #[test]
    fn refusals_keep_stable_codes() {
        let at = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
        let cases: Vec<(ApiError, &str)> = vec![
            (
                BindingRepoError::NotFound("bnd_x".into()).into(),
                "not_found",
            ),
            (
                BindingRepoError::Binding(BindingError::Illegal(IllegalBindingMove::Status {
                    from: BindingStatus::Deleted,
                    event: BindingEvent::Resume,
                }))
                .into(),
                "illegal_transition",
            ),
            (
                BindingRepoError::Binding(BindingError::PlanChangeRefused {
                    status: BindingStatus::Failed,
                })
                .into(),
                "illegal_transition",
            ),
            (
                BindingRepoError::Binding(BindingError::OutOfOrder { at, last: at }).into(),
                "out_of_order",
            ),
            (
                BindingRepoError::UnknownPlan("dbco.x".into()).into(),
                "unknown_plan",
            ),
            (PlanRepoError::VersionExists.into(), "plan_version_exists"),
            (
                PlanRepoError::Invalid(tally_domain::plan::PlanError::NegativeFee).into(),
                "invalid_plan",
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code().as_str(), code, "{error}");
        }
    }

    #[test]
    fn a_move_is_timed_now_or_when_it_happened_never_ahead() {
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        assert_eq!(move_time(None, now).unwrap(), now);
        let earlier = now - Duration::days(3);
        assert_eq!(move_time(Some(earlier), now).unwrap(), earlier);
        assert_eq!(
            move_time(Some(now + Duration::seconds(SKEW)), now).unwrap(),
            now + Duration::seconds(SKEW)
        );
        let ahead = move_time(Some(now + Duration::seconds(SKEW + 1)), now).unwrap_err();
        assert_eq!(ahead.code().as_str(), "move_in_future");
    }
}
