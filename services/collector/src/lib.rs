//! The collector: authenticates providers, validates usage CloudEvents and
//! puts the accepted ones on `usage.events`, answering only after the broker
//! acknowledged them.

pub mod corrections;
pub mod error;
pub mod event;
pub mod import;
pub mod ingest;
pub mod kafka_ingest;
pub mod lookup;
pub mod sink;
pub mod startup;
mod traces;
pub mod upload;

pub use event::{
    check_time_window, parse_event, parse_raw_event, parse_typed, EventRejection, ParsedEvent,
};
pub use sink::{EventSink, KafkaSink, SinkError};
pub use startup::{router, Application};
