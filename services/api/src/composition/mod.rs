//! Provider to provider (issue 17): a provider's own billing account, as a
//! customer of other providers, read with its provider key.

pub mod account;
pub mod margin;
pub mod references;
