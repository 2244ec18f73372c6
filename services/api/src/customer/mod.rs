//! Customers: their bill as JSON, the bill page and its CSV, their bound
//! resources' outlook, their contract (commitments' progress, price changes), sign-in sessions and signed bill links.

pub mod bill;
pub mod bill_view;
pub mod contract;
pub mod contract_view;
pub mod links;
pub mod outlook;
pub mod page;
pub mod sessions;
