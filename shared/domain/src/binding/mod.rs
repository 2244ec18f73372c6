//! Bindings: an account's provisioned instance of a provider's service (a
//! database, a bucket). A binding authorizes its provider to bill its
//! account, names the resource on the bill, and carries a plan.
//!
//! [`BindingStatus::transition`] is the one place that decides which
//! lifecycle moves are legal, and who may make them:
//!
//! | from \ event | provisioning | activated | failed | suspend | resume | delete |
//! |---|---|---|---|---|---|---|
//! | requested | provisioning | active | failed | – | – | deleted |
//! | provisioning | provisioning | active | failed | – | – | deleted |
//! | active | – | active | – | suspended | – | deleted |
//! | suspended | – | – | – | suspended | active | deleted |
//! | failed | – | – | failed | – | – | deleted |
//! | deleted | – | – | – | – | – | – |
//!
//! The provider reports `provisioning`, `activated` and `failed`; the
//! customer or the platform suspends, resumes and deletes. A repeat of the
//! status a binding already has (a provider retrying its report, a second
//! suspend) is legal and changes nothing, so retries are harmless; deleted
//! is final. A failed binding is never billed and never revived: the
//! customer deletes it and requests another.
//!
//! What a binding's lifecycle means for billing:
//! - usage ([`Binding::accepts_usage_at`]) counts from its first activation
//!   up to (not including) its deletion, suspended time included (a
//!   suspended database still stores its data; what the provider meters
//!   while suspended is the provider's call);
//! - its plan fee ([`crate::plan`]) accrues only over active time.

use crate::{AccountId, BindingId, PlanId, ProviderId, ResourceType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod status;
#[cfg(test)]
mod tests;
mod window;

pub use status::{Actor, BindingEvent, BindingStatus, IllegalBindingMove, UnknownBindingStatus};
pub use window::{check_bound, NotBound, UsageWindow};

/// The longest customer name of a resource, a region, a tag or a status message.
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_MESSAGE_CHARS: usize = 1000;
pub const MAX_TAGS: usize = 16;

/// One recorded status change (the binding's history).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    pub at: DateTime<Utc>,
    pub from: Option<BindingStatus>,
    pub to: BindingStatus,
    pub by: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The binding's plan from `at` on (its first plan at its request time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanChange {
    pub at: DateTime<Utc>,
    pub plan: PlanId,
}

/// An account's binding to a provider's resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub id: BindingId,
    pub account: AccountId,
    pub provider: ProviderId,
    pub resource_type: ResourceType,
    /// The customer's name for the resource (`prod-db`).
    pub name: String,
    /// The provider's own id of the resource, once it reported one.
    pub provider_resource_id: Option<String>,
    pub plan: PlanId,
    pub region: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub status: BindingStatus,
    /// The provider's message with its last report (why it failed).
    pub status_message: Option<String>,
    pub requested_at: DateTime<Utc>,
    /// First activation: usage counts from then on.
    pub activated_at: Option<DateTime<Utc>>,
    /// The start of the current suspension, while suspended.
    pub suspended_at: Option<DateTime<Utc>>,
    /// Usage timed at or after it is refused.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A move applied to a binding, at its time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub change: StatusChange,
    /// False for a repeat of the status it had (nothing to record or tell).
    pub changed: bool,
}

/// Why a move is refused beyond the state machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    #[error(transparent)]
    Illegal(#[from] IllegalBindingMove),
    /// A move timed before the binding's last change: history is append-only.
    #[error("the move is timed {at}, before the binding's last change at {last}")]
    OutOfOrder {
        at: DateTime<Utc>,
        last: DateTime<Utc>,
    },
    #[error("{field} {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("a binding is requested by the customer or the platform, not by its provider")]
    RequestedByProvider,
    #[error("a {} binding cannot change its plan", status.as_str())]
    PlanChangeRefused { status: BindingStatus },
}

/// Checks a customer-given text (name, region, tag, message): not empty
/// (unless `may_be_empty`), at most `max` characters, no control characters.
pub fn check_text(field: &'static str, text: &str, max: usize) -> Result<(), BindingError> {
    let problem = if text.trim().is_empty() {
        Some("must not be empty".to_owned())
    } else if text.chars().count() > max {
        Some(format!("must be at most {max} characters"))
    } else if text.chars().any(char::is_control) {
        Some("must not contain control characters".to_owned())
    } else {
        None
    };
    match problem {
        Some(problem) => Err(BindingError::Invalid { field, problem }),
        None => Ok(()),
    }
}

/// Checks a new binding's name, region and tags.
pub fn check_new(
    name: &str,
    region: Option<&str>,
    tags: &BTreeMap<String, String>,
) -> Result<(), BindingError> {
    check_text("name", name, MAX_NAME_CHARS)?;
    if let Some(region) = region {
        check_text("region", region, MAX_NAME_CHARS)?;
    }
    if tags.len() > MAX_TAGS {
        return Err(BindingError::Invalid {
            field: "tags",
            problem: format!("must be at most {MAX_TAGS}"),
        });
    }
    for (k, v) in tags {
        check_text("tags", k, MAX_NAME_CHARS)?;
        check_text("tags", v, MAX_NAME_CHARS)?;
    }
    Ok(())
}

impl Binding {
    /// A binding requested at `at` by `by`, and the first entry of its history.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        id: BindingId,
        account: AccountId,
        provider: ProviderId,
        resource_type: ResourceType,
        name: String,
        plan: PlanId,
        region: Option<String>,
        tags: BTreeMap<String, String>,
        at: DateTime<Utc>,
        by: Actor,
    ) -> Result<(Binding, StatusChange), BindingError> {
        if by == Actor::Provider {
            return Err(BindingError::RequestedByProvider);
        }
        check_new(&name, region.as_deref(), &tags)?;
        let binding = Binding {
            id,
            account,
            provider,
            resource_type,
            name,
            provider_resource_id: None,
            plan,
            region,
            tags,
            status: BindingStatus::Requested,
            status_message: None,
            requested_at: at,
            activated_at: None,
            suspended_at: None,
            deleted_at: None,
        };
        let change = StatusChange {
            at,
            from: None,
            to: BindingStatus::Requested,
            by,
            message: None,
        };
        Ok((binding, change))
    }

    /// Applies `event` made by `by` at `at` (not before `last_change`, the
    /// time of the binding's last recorded move), updating its status and
    /// lifecycle times; the change to record comes back.
    pub fn apply(
        &mut self,
        event: BindingEvent,
        by: Actor,
        at: DateTime<Utc>,
        last_change: DateTime<Utc>,
        message: Option<String>,
    ) -> Result<Applied, BindingError> {
        if let Some(message) = &message {
            check_text("message", message, MAX_MESSAGE_CHARS)?;
        }
        let to = self.status.transition(event, by)?;
        if at < last_change {
            return Err(BindingError::OutOfOrder {
                at,
                last: last_change,
            });
        }
        let from = self.status;
        let changed = to != from;
        if changed {
            match to {
                BindingStatus::Active => {
                    self.activated_at.get_or_insert(at);
                    self.suspended_at = None;
                }
                BindingStatus::Suspended => self.suspended_at = Some(at),
                BindingStatus::Deleted => {
                    self.deleted_at = Some(at);
                    self.suspended_at = None;
                }
                _ => {}
            }
            self.status = to;
        }
        if message.is_some() || changed {
            self.status_message.clone_from(&message);
        }
        Ok(Applied {
            change: StatusChange {
                at,
                from: Some(from),
                to,
                by,
                message,
            },
            changed,
        })
    }

    /// Moves the binding to `plan` (same provider and resource type, checked
    /// by the caller against the catalog); refused once it failed or was deleted.
    pub fn change_plan(
        &mut self,
        plan: PlanId,
        at: DateTime<Utc>,
    ) -> Result<PlanChange, BindingError> {
        if matches!(self.status, BindingStatus::Failed | BindingStatus::Deleted) {
            return Err(BindingError::PlanChangeRefused {
                status: self.status,
            });
        }
        self.plan = plan.clone();
        Ok(PlanChange { at, plan })
    }

    /// The window in which usage of this binding is billed.
    pub fn usage_window(&self) -> UsageWindow {
        UsageWindow {
            account: self.account.clone(),
            provider: self.provider.clone(),
            activated_at: self.activated_at,
            deleted_at: self.deleted_at,
        }
    }

    /// Whether usage timed `at` is billed: after its first activation,
    /// before its deletion.
    pub fn accepts_usage_at(&self, at: DateTime<Utc>) -> bool {
        self.usage_window().contains(at)
    }
}
