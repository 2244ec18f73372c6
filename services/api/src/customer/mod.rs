//! Customers: the bill page and its CSV, sign-in sessions and signed bill
//! links.

pub mod bill_view;
pub mod links;
pub mod page;
pub mod sessions;
