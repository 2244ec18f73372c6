//! Tally's pure core: the types every service speaks and the rules that turn
//! usage into money. Nothing here does IO or reads a clock.

//!
//! Every billing decision has its module (the IO code only calls them):
//!
//! | decision | module |
//! |---|---|
//! | which price version applies to an event | [`pricing::resolve`] |
//! | what a price version charges for a quantity | [`pricing`] |
//! | where an event goes: its open period, or late usage of a sealed one | [`placement`] |
//! | how a period's events become one quantity | [`aggregation`] |
//! | a statement's lines, rounding, adjustments of sealed periods | [`statement`] |
//! | which grant pays which charge | [`credits`] |
//! | a grant's balance, status, and whether it may pay in a period | [`credits::grant`] |
//! | when an account's periods are sealed | [`seal_policy`] |
//! | the invoice state machine, invoice numbers | [`invoice`] |
//! | a binding's lifecycle, and whether an event is billed where it claims (`not_bound`) | [`binding`] |
//! | a plan's prorated fee, its allowances | [`plan`] |
//! | how a credit note splits between platform and partner | [`corrections`] |
//! | the reconciliation identity of a month | [`reconciliation`] |
//! | how a composing provider's settlement and own invoices are paid (gross or net) | [`composition::statement`] |
//! | the chains of composition of a month and each chain's identity | [`composition::chain`] |
//! | whether a provider's usage correction (cancel, amend, backfill) may apply | [`usage_correction`] |
//! | whether a contract is valid, which term discounts a line, what it takes off and who funds it, a commitment's true-up | [`contract`], [`contract::pricing`] |

pub mod aggregation;
pub mod binding;
pub mod composition;
pub mod contract;
pub mod corrections;
pub mod credits;
pub mod dedupe;
pub mod forecast;
pub mod ids;
pub mod input;
pub mod invoice;
pub mod money;
pub mod period;
pub mod placement;
pub mod plan;
pub mod pricing;
pub mod quantity;
pub mod reconciliation;
pub mod seal_policy;
pub mod spreadsheet;
pub mod statement;
pub mod usage;
pub mod usage_correction;

pub use aggregation::{Aggregation, AggregationError};
pub use dedupe::DedupeWindow;
pub use ids::{AccountId, BindingId, EventId, IdError, PlanId, ProviderId, ResourceType, Sku};
pub use input::InputError;
pub use invoice::InvoiceStatus;
pub use money::{Currency, Money, MoneyError};
pub use period::{AnchorDay, Period, PeriodError};
pub use pricing::{PriceBook, PriceModel, PricingError};
pub use quantity::{Quantity, QuantityError};
pub use statement::{
    LineKind, PlanFeeInput, ProviderKind, ProviderRef, ResourceRef, Statement, StatementLine,
    UsageAggregate,
};
pub use usage::UsageEvent;
