//! Amounts as every API response and CSV writes them: with their currency's
//! exponent (`"10.00"` USD, `"1234"` JPY, `"1.500"` BHD), never trimmed,
//! never rounded ([`tally_domain::Currency::scaled`]). Views scale their
//! amounts (and unit prices) once, where they are read.

use rust_decimal::Decimal;
use tally_domain::Currency;

/// `amount` with the exponent of the currency coded `currency`. An unknown
/// code (none is stored) leaves it as it is.
pub fn scaled(currency: &str, amount: Decimal) -> Decimal {
    Currency::parse(currency).map_or(amount, |c| c.scaled(amount))
}
