//! Invoicing: keeps the newest statement of every account-period as its draft
//! invoice, and serves the finance, customer-bill and admin APIs.

pub mod admin;
pub mod amounts;
pub mod auth;
pub mod bill_view;
pub mod consumer;
pub mod corrections;
pub mod credits_api;
pub mod error;
pub mod extract;
pub mod invoices_repo;
pub mod lifecycle;
pub mod links;
pub mod page;
pub mod provider_api;
pub mod routes;
pub mod sessions;
pub mod settlement;
pub mod startup;
mod traces;

pub use consumer::apply_statements;
pub use startup::Application;
