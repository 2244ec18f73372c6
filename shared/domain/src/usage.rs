//! The usage event as it travels on `usage.events` (schemas/usage-event.schema.json).

use crate::composition::OnBehalfOf;
use crate::{AccountId, BindingId, EventId, ProviderId, Quantity, Sku};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One accepted unit of usage: what the collector produces and rating consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub provider_id: ProviderId,
    pub event_id: EventId,
    pub account_id: AccountId,
    pub sku: Sku,
    pub quantity: Quantity,
    /// When the usage happened (the CloudEvents `time`); decides the period and the price.
    pub time: DateTime<Utc>,
    /// When the collector accepted it.
    pub received_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
    /// The binding the usage belongs to (the CloudEvents `resource`
    /// attribute), checked by the collector ([`crate::binding::check_bound`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<BindingId>,
    /// The consumer a composing provider's usage was done for, as the
    /// opaque reference the platform minted (the CloudEvents `onbehalfof`
    /// attribute), checked by the collector to be one of the account's
    /// owning provider's ([`crate::composition`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<OnBehalfOf>,
}

/// A message on `usage.events`, tagged by `kind` so markers can share the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UsageMessage {
    Usage(UsageEvent),
    /// Closes every period of the account that ends at or before `through`.
    /// Written by invoicing with the account as key, so it lands in the
    /// account's partition after every event accepted before it: rating
    /// counts what came first in the closed periods, and anything for them
    /// after the seal as an adjustment on the next open period.
    Seal(SealMarker),
    /// A provider's correction of usage it sent: a cancel or an amendment
    /// of one event, or a backfill replacing its usage of a window. Written
    /// by the collector with the account as key, so rating applies it after
    /// every event of the account before it and before every one after.
    Correction(CorrectionRequest),
}

/// One correction, as the collector accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectionRequest {
    /// Its id (a UUID): rating applies each once.
    pub id: String,
    pub provider_id: ProviderId,
    pub account_id: AccountId,
    /// Why (the provider's words).
    pub reason: String,
    /// Who asked: the provider's API key (its id, never the secret).
    pub requested_by: String,
    /// When the collector accepted it.
    pub requested_at: DateTime<Utc>,
    pub change: Change,
}

/// What a correction changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// The event no longer counts.
    Cancel { event_id: EventId },
    /// The event counts with this quantity and these dimensions (its time,
    /// SKU and resource stay: to move usage, cancel it and send it anew).
    Amend {
        event_id: EventId,
        quantity: Quantity,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        dimensions: BTreeMap<String, String>,
    },
    /// Every counted event of the provider for the account timed in
    /// `[start, end)` is replaced by `events` (each timed in the window).
    Backfill {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        events: Vec<UsageEvent>,
    },
}

impl Change {
    /// The name stored with the correction: `cancel`, `amend`, `backfill`.
    pub fn kind(&self) -> &'static str {
        match self {
            Change::Cancel { .. } => "cancel",
            Change::Amend { .. } => "amend",
            Change::Backfill { .. } => "backfill",
        }
    }

    /// The event it names (not for a backfill).
    pub fn event_id(&self) -> Option<&EventId> {
        match self {
            Change::Cancel { event_id } | Change::Amend { event_id, .. } => Some(event_id),
            Change::Backfill { .. } => None,
        }
    }
}

/// [`UsageMessage::Usage`] of a borrowed event: the same JSON, written
/// without copying the event first (the collector's hot path).
#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UsageMessageRef<'a> {
    Usage(&'a UsageEvent),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealMarker {
    pub account_id: AccountId,
    /// A period boundary of the account: periods ending at or before it close.
    pub through: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_correction_travels_beside_usage_and_seals() {
        let message = UsageMessage::Correction(CorrectionRequest {
            id: "5f0c8a9e-0000-4000-8000-000000000001".into(),
            provider_id: ProviderId::parse("dbco").unwrap(),
            account_id: AccountId::parse("acme").unwrap(),
            reason: "metered twice".into(),
            requested_by: "key-1".into(),
            requested_at: "2026-11-02T10:00:00Z".parse().unwrap(),
            change: Change::Amend {
                event_id: EventId::parse("e-1").unwrap(),
                quantity: Quantity::parse("2").unwrap(),
                dimensions: BTreeMap::new(),
            },
        });
        let json = serde_json::to_value(&message).unwrap();
        assert_eq!(json["kind"], "correction");
        assert_eq!(json["change"]["kind"], "amend");
        assert_eq!(json["change"]["quantity"], "2");
        let back: UsageMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, message);
    }

    #[test]
    fn the_borrowed_message_is_the_same_json() {
        let event = UsageEvent {
            provider_id: ProviderId::parse("dbco").unwrap(),
            event_id: EventId::parse("e-1").unwrap(),
            account_id: AccountId::parse("acme").unwrap(),
            sku: Sku::parse("dbco.db.hour").unwrap(),
            quantity: Quantity::parse("1.5").unwrap(),
            time: "2026-11-01T10:00:00Z".parse().unwrap(),
            received_at: "2026-11-01T10:00:01Z".parse().unwrap(),
            dimensions: BTreeMap::from([("region".into(), "eu".into())]),
            resource: None,
            on_behalf_of: None,
        };
        assert_eq!(
            serde_json::to_string(&UsageMessageRef::Usage(&event)).unwrap(),
            serde_json::to_string(&UsageMessage::Usage(event)).unwrap()
        );
    }
}
