//! What a customer sees next of each bound resource on its bill (issue 16,
//! item 5): its status, its cost so far this period and a forecast of the
//! period at the current rate. The rule is `tally_domain::forecast`'s; this
//! module loads the bindings billed in the invoice's period (those active
//! at some time in it), their plan versions, and the invoice's lines of
//! each, and serves the bill API (`resources`) and the bill page.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgConnection;
use tally_domain::forecast::{self, Outlook};
use tally_domain::money::checked;
use tally_domain::plan::{active_spans, PlanError};
use tally_domain::{AccountId, Period};
use tally_invoicing::invoices_repo::Invoice;
use tally_platform::{bindings, plans};

use crate::error::ApiError;

/// One bound resource of a bill.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ResourceOutlook {
    pub binding: String,
    pub provider: String,
    /// The customer's name for it
    pub name: String,
    /// The display name of its current plan
    pub plan: String,
    #[schema(schema_with = crate::openapi::binding_status)]
    pub status: String,
    /// The provider's message with its last report
    pub status_message: Option<String>,
    /// Its plan fees of active time up to now plus its other lines billed so far (usage beyond its allowance)
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub so_far: Decimal,
    /// The period at the current rate: plan fees as the binding stands (active: to the period's end), usage so far scaled to the period's hours
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub forecast: Decimal,
}

/// The bill API's answer: the invoice, its bound resources' outlooks, and
/// the account's contract ([`super::contract`]).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Bill {
    #[serde(flatten)]
    pub invoice: Invoice,
    /// Each resource bound at some time in the period, by provider and name
    pub resources: Vec<ResourceOutlook>,
    /// The account's contract in force at the period's start, if any
    pub contract: Option<crate::contracts::ContractView>,
    /// Each commitment of that contract: the commitment period in progress at the bill's period (if any), then the last one finished by then (if any)
    pub commitments: Vec<super::contract::CommitmentProgress>,
    /// Price versions (list; wholesale for an account a provider owns, where there is one) taking over after now (after its contract's signature while the contract protects its prices), in the account's currency, of the SKUs on its three newest invoices and of the providers it has bindings with (not deleted); soonest first
    pub price_changes: Vec<super::contract::PriceChange>,
}

/// The outlooks of `invoice`'s bound resources at `now`.
pub async fn outlooks(
    conn: &mut PgConnection,
    account: &AccountId,
    invoice: &Invoice,
    now: DateTime<Utc>,
) -> Result<Vec<ResourceOutlook>, ApiError> {
    let summary = &invoice.summary;
    let currency = summary.currency;
    let period = Period::new(summary.period.start, summary.period.end)
        .map_err(|e| ApiError::Internal(e.into()))?;
    let key = (account.to_string(), period.start(), period.end());
    let mut bound = bindings::bound_in_periods(&mut *conn, &[key])
        .await?
        .remove(&(account.to_string(), period.start()))
        .unwrap_or_default();
    if bound.is_empty() {
        return Ok(Vec::new());
    }
    bound.sort_by(|a, b| {
        (
            a.provider.id.as_str(),
            &a.binding.name,
            a.binding.id.as_str(),
        )
            .cmp(&(
                b.provider.id.as_str(),
                &b.binding.name,
                b.binding.id.as_str(),
            ))
    });
    let ids: std::collections::BTreeSet<&str> = bound
        .iter()
        .flat_map(|r| r.plans.iter().map(|p| p.plan.as_str()))
        .collect();
    let ids: Vec<&str> = ids.into_iter().collect();
    let versions = plans::plan_versions(&mut *conn, &ids, currency).await?;
    let lines: Vec<_> = invoice.sections.iter().flat_map(|s| &s.lines).collect();
    bound
        .into_iter()
        .map(|r| {
            let id = r.binding.id.as_str();
            let billed = checked::sum(
                lines
                    .iter()
                    .filter(|l| l.kind != "plan_fee")
                    .filter(|l| l.resource.as_ref().is_some_and(|res| res.binding == id))
                    .map(|l| l.amount),
            )?;
            let spans = active_spans(&r.history, &r.plans);
            let Outlook { so_far, forecast } = forecast::outlook(
                &spans, &versions, currency, period, now, billed,
            )
            .map_err(|e| match e {
                PlanError::Money(m) => ApiError::from(m),
                other => ApiError::Internal(other.into()),
            })?;
            Ok(ResourceOutlook {
                binding: id.to_owned(),
                provider: r.provider.id.to_string(),
                name: r.binding.name,
                plan: r.plan_name,
                status: r.binding.status.as_str().to_owned(),
                status_message: r.binding.status_message,
                so_far: currency.scaled(so_far),
                forecast: currency.scaled(forecast),
            })
        })
        .collect()
}
