//! A binding's status, the events that move it and who may make them:
//! [`BindingStatus::transition`] (the table in [`super`]).

use serde::{Deserialize, Serialize};
use std::fmt;

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
