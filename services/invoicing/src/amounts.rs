//! Amounts as every API response and CSV writes them: with their currency's
//! exponent (`"10.00"` USD, `"1234"` JPY, `"1.500"` BHD), never trimmed,
//! never rounded ([`tally_domain::Currency::scaled`]). Views scale their
//! amounts (and unit prices) once, where they are read, and carry their
//! currency as a [`Currency`] parsed where it is read.

use sqlx::postgres::PgRow;
use sqlx::Row;
use tally_domain::{Currency, MoneyError};

/// The currency in `column` of a row: a stored code that is not an ISO 4217
/// currency (none is stored: every write parses it first) is a decode error
/// naming the column and the code, an `internal` answer.
pub fn currency_of(r: &PgRow, column: &str) -> Result<Currency, sqlx::Error> {
    parse_stored(column, &r.try_get::<String, _>(column)?)
}

/// `code`, read from `column`, as a currency (see [`currency_of`]).
pub fn parse_stored(column: &str, code: &str) -> Result<Currency, sqlx::Error> {
    Currency::parse(code).map_err(|e| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: Box::new(e),
    })
}

/// A figure computed from stored amounts (a sum, a balance) that does not
/// fit in a `Decimal`: stored data Tally cannot show, a decode error (an
/// `internal` answer, its cause logged), never a panic.
pub fn fits<T>(computed: Result<T, MoneyError>) -> Result<T, sqlx::Error> {
    computed.map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_currency_that_is_not_one_is_a_decode_error_naming_it() {
        assert_eq!(parse_stored("currency", "JPY").unwrap().code(), "JPY");
        let err = parse_stored("currency", "XYZ").unwrap_err();
        assert!(matches!(&err, sqlx::Error::ColumnDecode { index, .. } if index == "currency"));
        assert_eq!(
            err.to_string(),
            "error occurred while decoding column currency: \
             unknown currency \"XYZ\": expected an ISO 4217 code such as USD"
        );
        let overflow = fits::<()>(Err(MoneyError::Overflow)).unwrap_err();
        assert_eq!(
            overflow.to_string(),
            "error occurred while decoding: amount overflow"
        );
    }
}
