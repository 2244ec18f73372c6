//! Amounts as every API response and CSV writes them: with their currency's
//! exponent (`"10.00"` USD, `"1234"` JPY, `"1.500"` BHD), never trimmed,
//! never rounded ([`tally_domain::Currency::scaled`]). Views scale their
//! amounts (and unit prices) once, where they are read.

use rust_decimal::Decimal;
use tally_domain::{Currency, MoneyError};

/// `amount` with the exponent of the currency coded `currency`. An unknown
/// code (none is stored) leaves it as it is.
pub fn scaled(currency: &str, amount: Decimal) -> Decimal {
    Currency::parse(currency).map_or(amount, |c| c.scaled(amount))
}

/// A figure computed from stored amounts (a sum, a balance) that does not
/// fit in a `Decimal`: stored data Tally cannot show, a decode error (an
/// `internal` answer, its cause logged), never a panic.
pub fn fits<T>(computed: Result<T, MoneyError>) -> Result<T, sqlx::Error> {
    computed.map_err(|e| sqlx::Error::Decode(Box::new(e)))
}
