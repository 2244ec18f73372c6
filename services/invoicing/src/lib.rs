//! Invoicing: keeps the newest statement of every account-period as its draft
//! invoice, and closes periods (seal requests, finalization). Its SQL of
//! invoices (`invoices_repo`) is shared with the HTTP API (`tally-api`).

pub mod amounts;
pub mod consumer;
pub mod invoices_repo;
pub mod layouts;
pub mod lifecycle;
mod line_positions;
pub mod startup;
mod traces;

pub use consumer::{apply_remembering, apply_statements};
pub use layouts::LineLayouts;
pub use startup::Application;
