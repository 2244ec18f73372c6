//! The collector: authenticates providers, validates usage CloudEvents and
//! puts the accepted ones on `usage.events`, answering only after the broker
//! acknowledged them.

pub mod error;
pub mod event;
pub mod ingest;
pub mod startup;

pub use event::{parse_event, EventRejection, ParsedEvent};
pub use startup::Application;
