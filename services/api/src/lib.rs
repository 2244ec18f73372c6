//! The HTTP API of Tally, by audience: finance (invoices, corrections,
//! settlements and exports), customers (their bill, the bill page with its
//! sign-in, sessions and signed links), providers (their catalog, their usage corrections), admins
//! (the catalog and staff keys) and credits; and the OpenAPI document of
//! every service. It reads and writes PostgreSQL only: the invoices it
//! serves are kept by invoicing (`tally-invoicing`).

pub mod admin;
pub mod auth;
pub mod bindings;
pub mod composition;
pub mod contracts;
pub mod credits;
pub mod customer;
pub mod error;
pub mod extract;
pub mod finance;
pub mod openapi;
pub mod provider;
pub mod startup;
pub mod usage_corrections;

pub use startup::Application;
