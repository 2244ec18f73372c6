//! Rating: consumes `usage.events`, drops duplicates, prices each event at the
//! price version effective at its time, keeps per account-period aggregates in
//! PostgreSQL and publishes a versioned statement per touched account-period.

pub mod outbox;
pub mod process;
pub mod repo;
pub mod startup;

pub use process::{process_batch, process_batch_isolating, BatchOutcome, DeadLetter};
pub use startup::Application;
