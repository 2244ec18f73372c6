//! Rating: consumes `usage.events`, drops duplicates, prices each event at the
//! price version effective at its time, keeps per account-period aggregates in
//! PostgreSQL, applies the account's credit grants, and publishes a versioned
//! statement per touched account-period. One module per step (see the
//! README's "Code layout"); the billing rules are in `tally_domain`.

mod consume;
pub mod correct;
pub mod corrections_repo;
pub mod credit_restatements;
pub mod credits_repo;
pub mod dedupe;
mod draws;
pub mod error;
pub mod on_behalf;
pub mod outbox;
pub mod outcome;
pub mod rate;
pub mod repo;
pub mod restate;
pub mod seal;
pub mod seals_repo;
pub mod startup;
mod traces;

pub use correct::apply_correction;
pub use credit_restatements::{restate_bound_periods, restate_requested};
pub use outcome::{BatchOutcome, DeadLetter, Restated};
pub use rate::{process_batch, process_batch_at, process_batch_isolating, Admission};
pub use startup::Application;
