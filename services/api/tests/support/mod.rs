//! Shared by the API tests: invoicing's test support (a fresh database per
//! test, a small catalog, statements built by hand) and a served router.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

#[path = "../../../invoicing/tests/support/mod.rs"]
mod invoicing;
pub mod server;

pub use invoicing::*;
