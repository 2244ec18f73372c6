//! Finance: invoices, their corrections (voids and credit notes), partner
//! settlements, reconciliation and CSV exports.

pub mod corrections;
pub mod invoices;
pub mod settlement;
