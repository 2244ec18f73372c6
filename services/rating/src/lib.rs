//! Rating: consumes `usage.events`, drops duplicates, prices each event at the
//! price version effective at its time, keeps per account-period aggregates in
//! PostgreSQL, applies the account's credit grants, and publishes a versioned
//! statement per touched account-period.

pub mod credits_repo;
pub mod outbox;
pub mod process;
pub mod repo;
pub mod seals_repo;
pub mod startup;
mod traces;

pub use process::{
    process_batch, process_batch_isolating, restate_requested, BatchOutcome, DeadLetter, Restated,
};
pub use startup::Application;
