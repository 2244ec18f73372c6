//! Tally's pure core: the types every service speaks and the rules that turn
//! usage into money. Nothing here does IO or reads a clock.

pub mod aggregation;
pub mod credits;
pub mod ids;
pub mod input;
pub mod money;
pub mod period;
pub mod pricing;
pub mod quantity;
pub mod spreadsheet;
pub mod statement;
pub mod usage;

pub use aggregation::{Aggregation, AggregationError};
pub use ids::{AccountId, EventId, IdError, ProviderId, Sku};
pub use input::InputError;
pub use money::{Currency, Money, MoneyError};
pub use period::{AnchorDay, Period, PeriodError};
pub use pricing::{PriceBook, PriceModel, PricingError};
pub use quantity::{Quantity, QuantityError};
pub use statement::{
    LineKind, ProviderKind, ProviderRef, Statement, StatementLine, UsageAggregate,
};
pub use usage::UsageEvent;
