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
use std::fmt;

/// The longest customer name of a resource, a region, a tag or a status message.
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_MESSAGE_CHARS: usize = 1000;
pub const MAX_TAGS: usize = 16;

/// A binding's status, as stored in `bindings.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingStatus {
    /// Asked for by the customer or the platform; the provider is told.
    Requested,
    /// The provider is creating it.
    Provisioning,
    /// Running and billable.
    Active,
    /// The provider could not create it (with its message).
    Failed,
    /// Stopped by the customer or the platform; no plan fee accrues.
    Suspended,
    /// Gone: no usage timed from then on is billed, and it never changes again.
    Deleted,
}

/// What happens to a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindingEvent {
    /// The provider started creating the resource.
    Provisioning,
    /// The provider reports the resource running.
    Activated,
    /// The provider could not create the resource.
    Failed,
    Suspend,
    Resume,
    Delete,
}

/// Who makes a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Actor {
    /// The account's owner (a customer token).
    Customer,
    /// The platform's operators (the admin API).
    Platform,
    /// The binding's provider (the provider API).
    Provider,
}

/// A move the state machine refuses: an illegal status change, or a legal
/// one by someone who may not make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IllegalBindingMove {
    #[error("a {} binding cannot take {}", from.as_str(), event.as_str())]
    Status {
        from: BindingStatus,
        event: BindingEvent,
    },
    #[error("{} is reported by {}, not by the {}", event.as_str(), event.made_by(), by.as_str())]
    Actor { event: BindingEvent, by: Actor },
}

/// `status` is not a binding status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown binding status {0:?}: expected requested, provisioning, active, failed, suspended or deleted")]
pub struct UnknownBindingStatus(pub String);

impl BindingStatus {
    pub const ALL: [BindingStatus; 6] = [
        BindingStatus::Requested,
        BindingStatus::Provisioning,
        BindingStatus::Active,
        BindingStatus::Failed,
        BindingStatus::Suspended,
        BindingStatus::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BindingStatus::Requested => "requested",
            BindingStatus::Provisioning => "provisioning",
            BindingStatus::Active => "active",
            BindingStatus::Failed => "failed",
            BindingStatus::Suspended => "suspended",
            BindingStatus::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Result<Self, UnknownBindingStatus> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownBindingStatus(text.to_owned()))
    }

    /// The status after `event` made by `by`, or the refusal (see the
    /// module's table). A repeat of the current status returns it unchanged.
    pub fn transition(
        self,
        event: BindingEvent,
        by: Actor,
    ) -> Result<BindingStatus, IllegalBindingMove> {
        use BindingEvent as E;
        use BindingStatus as S;
        if !event.may_be_made_by(by) {
            return Err(IllegalBindingMove::Actor { event, by });
        }
        match (self, event) {
            (S::Requested | S::Provisioning, E::Provisioning) => Ok(S::Provisioning),
            (S::Requested | S::Provisioning | S::Active, E::Activated) => Ok(S::Active),
            (S::Requested | S::Provisioning | S::Failed, E::Failed) => Ok(S::Failed),
            (S::Active | S::Suspended, E::Suspend) => Ok(S::Suspended),
            (S::Suspended, E::Resume) => Ok(S::Active),
            (from, E::Delete) if from != S::Deleted => Ok(S::Deleted),
            (from, event) => Err(IllegalBindingMove::Status { from, event }),
        }
    }
}

impl BindingEvent {
    pub const ALL: [BindingEvent; 6] = [
        BindingEvent::Provisioning,
        BindingEvent::Activated,
        BindingEvent::Failed,
        BindingEvent::Suspend,
        BindingEvent::Resume,
        BindingEvent::Delete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BindingEvent::Provisioning => "provisioning",
            BindingEvent::Activated => "activated",
            BindingEvent::Failed => "failed",
            BindingEvent::Suspend => "suspend",
            BindingEvent::Resume => "resume",
            BindingEvent::Delete => "delete",
        }
    }

    /// The provider reports how provisioning goes; the customer and the
    /// platform decide the rest.
    pub fn may_be_made_by(self, by: Actor) -> bool {
        match self {
            BindingEvent::Provisioning | BindingEvent::Activated | BindingEvent::Failed => {
                by == Actor::Provider
            }
            BindingEvent::Suspend | BindingEvent::Resume | BindingEvent::Delete => {
                by != Actor::Provider
            }
        }
    }

    fn made_by(self) -> &'static str {
        if self.may_be_made_by(Actor::Provider) {
            "the provider"
        } else {
            "the customer or the platform"
        }
    }
}

impl Actor {
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::Customer => "customer",
            Actor::Platform => "platform",
            Actor::Provider => "provider",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Actor::Customer, Actor::Platform, Actor::Provider]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

impl fmt::Display for BindingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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

/// What ingest needs of a binding to decide whether usage is billed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageWindow {
    pub account: AccountId,
    pub provider: ProviderId,
    pub activated_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl UsageWindow {
    pub fn contains(&self, at: DateTime<Utc>) -> bool {
        self.activated_at.is_some_and(|a| a <= at) && self.deleted_at.is_none_or(|d| at < d)
    }
}

/// Why an event is not billed where it claims to be (code `not_bound`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotBound {
    #[error("provider {provider} bills only bound resources: the event must name its binding in `resource`")]
    ResourceMissing { provider: ProviderId },
    #[error("binding {binding} does not exist for account {account} and provider {provider}")]
    Unknown {
        binding: BindingId,
        account: AccountId,
        provider: ProviderId,
    },
    #[error("binding {binding} was not active yet at {at}")]
    NotYetActive {
        binding: BindingId,
        at: DateTime<Utc>,
    },
    #[error("binding {binding} was deleted at {deleted_at}, before the usage at {at}")]
    Deleted {
        binding: BindingId,
        deleted_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
}

impl NotBound {
    /// The stable code of every refusal of this kind.
    pub const CODE: &'static str = "not_bound";
}

/// Whether a usage event of `provider` for `account` at `at`, naming
/// `resource` (its `resource` attribute, if any), may be billed.
/// `requires_binding` is the provider's setting (partners: required;
/// first-party: configurable); `window` is the named binding's, if it
/// exists. An event that names a binding is always checked against it,
/// whatever the setting: a bill never groups usage under a resource that
/// is not the account's.
pub fn check_bound(
    provider: &ProviderId,
    account: &AccountId,
    at: DateTime<Utc>,
    requires_binding: bool,
    resource: Option<&BindingId>,
    window: Option<&UsageWindow>,
) -> Result<(), NotBound> {
    let Some(binding) = resource else {
        return if requires_binding {
            Err(NotBound::ResourceMissing {
                provider: provider.clone(),
            })
        } else {
            Ok(())
        };
    };
    let window = window
        .filter(|w| &w.account == account && &w.provider == provider)
        .ok_or_else(|| NotBound::Unknown {
            binding: binding.clone(),
            account: account.clone(),
            provider: provider.clone(),
        })?;
    if let Some(deleted_at) = window.deleted_at.filter(|d| at >= *d) {
        return Err(NotBound::Deleted {
            binding: binding.clone(),
            deleted_at,
            at,
        });
    }
    if !window.contains(at) {
        return Err(NotBound::NotYetActive {
            binding: binding.clone(),
            at,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;
    use BindingEvent as E;
    use BindingStatus as S;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn by_event(event: E) -> Actor {
        if event.may_be_made_by(Actor::Provider) {
            Actor::Provider
        } else {
            Actor::Customer
        }
    }

    fn binding() -> Binding {
        Binding::request(
            BindingId::parse("bnd_1").unwrap(),
            AccountId::parse("acme").unwrap(),
            ProviderId::parse("dbco").unwrap(),
            ResourceType::parse("database").unwrap(),
            "prod-db".into(),
            PlanId::parse("dbco.ps-10").unwrap(),
            Some("eu-west".into()),
            BTreeMap::new(),
            at(1, 0),
            Actor::Customer,
        )
        .unwrap()
        .0
    }

    #[test]
    fn the_table_of_legal_moves_is_exactly_the_documented_one() {
        let mut legal = Vec::new();
        for from in S::ALL {
            for event in E::ALL {
                if let Ok(to) = from.transition(event, by_event(event)) {
                    legal.push((from.as_str(), event.as_str(), to.as_str()));
                }
            }
        }
        assert_eq!(
            legal,
            [
                ("requested", "provisioning", "provisioning"),
                ("requested", "activated", "active"),
                ("requested", "failed", "failed"),
                ("requested", "delete", "deleted"),
                ("provisioning", "provisioning", "provisioning"),
                ("provisioning", "activated", "active"),
                ("provisioning", "failed", "failed"),
                ("provisioning", "delete", "deleted"),
                ("active", "activated", "active"),
                ("active", "suspend", "suspended"),
                ("active", "delete", "deleted"),
                ("failed", "failed", "failed"),
                ("failed", "delete", "deleted"),
                ("suspended", "suspend", "suspended"),
                ("suspended", "resume", "active"),
                ("suspended", "delete", "deleted"),
            ]
        );
    }

    #[test]
    fn only_the_provider_reports_provisioning_and_only_the_customer_or_platform_decide() {
        assert_eq!(
            S::Requested.transition(E::Activated, Actor::Customer),
            Err(IllegalBindingMove::Actor {
                event: E::Activated,
                by: Actor::Customer
            })
        );
        assert_eq!(
            S::Active.transition(E::Delete, Actor::Provider),
            Err(IllegalBindingMove::Actor {
                event: E::Delete,
                by: Actor::Provider
            })
        );
        assert_eq!(
            S::Active.transition(E::Suspend, Actor::Platform),
            Ok(S::Suspended)
        );
    }

    #[test]
    fn deleted_is_final_and_a_failed_binding_is_never_revived() {
        for event in E::ALL {
            assert!(S::Deleted.transition(event, by_event(event)).is_err());
        }
        assert_eq!(
            S::Failed.transition(E::Activated, Actor::Provider),
            Err(IllegalBindingMove::Status {
                from: S::Failed,
                event: E::Activated
            })
        );
    }

    #[test]
    fn lifecycle_times_follow_the_moves() {
        let mut b = binding();
        let p = Actor::Provider;
        let c = Actor::Customer;
        b.apply(E::Provisioning, p, at(1, 1), at(1, 0), None)
            .unwrap();
        let first = b.apply(E::Activated, p, at(2, 0), at(1, 1), None).unwrap();
        assert!(first.changed);
        let repeat = b.apply(E::Activated, p, at(2, 1), at(2, 0), None).unwrap();
        assert!(!repeat.changed, "a retried report changes nothing");
        b.apply(E::Suspend, c, at(10, 0), at(2, 0), None).unwrap();
        assert_eq!(b.suspended_at, Some(at(10, 0)));
        b.apply(E::Resume, c, at(12, 0), at(10, 0), None).unwrap();
        assert_eq!(b.suspended_at, None);
        assert_eq!(
            b.activated_at,
            Some(at(2, 0)),
            "the first activation is kept"
        );
        b.apply(E::Delete, c, at(20, 0), at(12, 0), None).unwrap();
        assert_eq!((b.status, b.deleted_at), (S::Deleted, Some(at(20, 0))));
        assert_eq!(
            b.change_plan(PlanId::parse("dbco.ps-20").unwrap(), at(21, 0)),
            Err(BindingError::PlanChangeRefused { status: S::Deleted })
        );
    }

    #[test]
    fn history_is_append_only() {
        let mut b = binding();
        assert_eq!(
            b.apply(E::Activated, Actor::Provider, at(1, 0), at(2, 0), None),
            Err(BindingError::OutOfOrder {
                at: at(1, 0),
                last: at(2, 0)
            })
        );
        assert_eq!(b.status, S::Requested);
    }

    #[test]
    fn failed_keeps_the_providers_message() {
        let mut b = binding();
        let applied = b
            .apply(
                E::Failed,
                Actor::Provider,
                at(1, 2),
                at(1, 0),
                Some("quota exceeded in eu-west".into()),
            )
            .unwrap();
        assert_eq!(
            b.status_message.as_deref(),
            Some("quota exceeded in eu-west")
        );
        assert_eq!(applied.change.from, Some(S::Requested));
        assert!(!b.accepts_usage_at(at(1, 3)));
    }

    #[test]
    fn names_and_tags_are_checked() {
        let tags = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
        assert!(check_new("prod-db", Some("eu"), &tags).is_ok());
        assert!(check_new(" ", None, &tags).is_err());
        assert!(check_new("a\nb", None, &tags).is_err());
        assert!(check_new(&"x".repeat(101), None, &tags).is_err());
        let many: BTreeMap<_, _> = (0..17).map(|i| (i.to_string(), "v".to_owned())).collect();
        assert!(check_new("db", None, &many).is_err());
    }

    #[test]
    fn usage_counts_from_activation_until_deletion() {
        let mut b = binding();
        b.apply(E::Activated, Actor::Provider, at(2, 0), at(1, 0), None)
            .unwrap();
        b.apply(E::Suspend, Actor::Customer, at(5, 0), at(2, 0), None)
            .unwrap();
        b.apply(E::Delete, Actor::Customer, at(20, 0), at(5, 0), None)
            .unwrap();
        let w = b.usage_window();
        let (dbco, acme) = (w.provider.clone(), w.account.clone());
        let check = |t, requires| check_bound(&dbco, &acme, t, requires, Some(&b.id), Some(&w));
        assert!(matches!(
            check(at(1, 23), true),
            Err(NotBound::NotYetActive { .. })
        ));
        assert_eq!(check(at(2, 0), true), Ok(()));
        assert_eq!(check(at(6, 0), true), Ok(()), "suspended still meters");
        assert_eq!(
            check(at(19, 23), true),
            Ok(()),
            "before deletion still counts"
        );
        assert_eq!(
            check(at(20, 0), true),
            Err(NotBound::Deleted {
                binding: b.id.clone(),
                deleted_at: at(20, 0),
                at: at(20, 0)
            })
        );
    }

    #[test]
    fn the_binding_must_be_the_accounts_and_the_providers() {
        let mut b = binding();
        b.apply(E::Activated, Actor::Provider, at(2, 0), at(1, 0), None)
            .unwrap();
        let w = b.usage_window();
        let other = AccountId::parse("globex").unwrap();
        let dbco = ProviderId::parse("dbco").unwrap();
        assert!(matches!(
            check_bound(&dbco, &other, at(3, 0), false, Some(&b.id), Some(&w)),
            Err(NotBound::Unknown { .. })
        ));
        let rival = ProviderId::parse("rival").unwrap();
        assert!(matches!(
            check_bound(&rival, &w.account, at(3, 0), true, Some(&b.id), Some(&w)),
            Err(NotBound::Unknown { .. })
        ));
        assert!(matches!(
            check_bound(&dbco, &w.account, at(3, 0), true, Some(&b.id), None),
            Err(NotBound::Unknown { .. })
        ));
    }

    #[test]
    fn without_a_resource_only_the_providers_setting_decides() {
        let dbco = ProviderId::parse("dbco").unwrap();
        let acme = AccountId::parse("acme").unwrap();
        assert_eq!(
            check_bound(&dbco, &acme, at(3, 0), false, None, None),
            Ok(())
        );
        assert_eq!(
            check_bound(&dbco, &acme, at(3, 0), true, None, None),
            Err(NotBound::ResourceMissing {
                provider: dbco.clone()
            })
        );
    }

    fn any_event() -> impl Strategy<Value = E> {
        proptest::sample::select(E::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn any_sequence_of_moves_keeps_the_lifecycle_consistent(
            events in proptest::collection::vec(any_event(), 0..30),
        ) {
            let mut b = binding();
            let mut last = at(1, 0);
            for (i, event) in events.into_iter().enumerate() {
                let t = last + chrono::TimeDelta::hours(i as i64 + 1);
                let before = b.clone();
                match b.apply(event, by_event(event), t, last, None) {
                    Ok(_) => last = t,
                    Err(_) => prop_assert_eq!(&b, &before, "a refused move changes nothing"),
                }
                prop_assert_eq!(b.deleted_at.is_some(), b.status == S::Deleted);
                prop_assert_eq!(b.suspended_at.is_some(), b.status == S::Suspended);
                if matches!(b.status, S::Active | S::Suspended) {
                    prop_assert!(b.activated_at.is_some());
                }
                if b.status == S::Failed {
                    prop_assert!(b.activated_at.is_none());
                }
            }
        }
    }
}
