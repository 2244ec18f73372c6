//! Whether usage is billed where it claims: a binding's usage window and
//! [`check_bound`] (`not_bound`).

use crate::{AccountId, BindingId, ProviderId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
