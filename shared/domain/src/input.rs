//! What Tally accepts from a client beyond the types: text that PostgreSQL
//! can store (no U+0000) within a length limit, dates in years 2000 to 9999,
//! and decimals that a `Decimal` holds exactly (never rounded on the way in).

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

/// Names: of providers, accounts, SKUs, grants.
pub const MAX_NAME: usize = 200;
/// A SKU's unit (`hour`, `GB-month`).
pub const MAX_UNIT: usize = 64;
/// Reasons of voids and credit notes.
pub const MAX_REASON: usize = 1000;
/// Any string a client sends at all (the longest field's limit).
pub const MAX_TEXT: usize = 1000;
/// The years a date may fall in.
pub const YEARS: std::ops::RangeInclusive<i32> = 2000..=9999;

/// Why a client's text, date or decimal is refused; each with a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("{field} contains a NUL character (U+0000), which cannot be stored")]
    Nul { field: String },
    #[error("{field} is longer than {max} characters")]
    TooLong { field: String, max: usize },
    #[error("{field} must fall in the years 2000 to 9999 (UTC), not {at}")]
    DateOutOfRange { field: String, at: String },
}

impl InputError {
    pub fn code(&self) -> &'static str {
        match self {
            InputError::Nul { .. } => "invalid_text",
            InputError::TooLong { .. } => "text_too_long",
            InputError::DateOutOfRange { .. } => "invalid_date",
        }
    }
}

/// Refuses a NUL character, and more than `max` characters.
pub fn check_text(field: &str, text: &str, max: usize) -> Result<(), InputError> {
    if text.contains('\0') {
        return Err(InputError::Nul {
            field: field.to_owned(),
        });
    }
    if text.chars().count() > max {
        return Err(InputError::TooLong {
            field: field.to_owned(),
            max,
        });
    }
    Ok(())
}

/// Refuses a date outside [`YEARS`].
pub fn check_date(field: &str, at: DateTime<Utc>) -> Result<(), InputError> {
    let earliest = Utc.with_ymd_and_hms(*YEARS.start(), 1, 1, 0, 0, 0).single();
    let end = Utc
        .with_ymd_and_hms(YEARS.end() + 1, 1, 1, 0, 0, 0)
        .single();
    match (earliest, end) {
        (Some(earliest), Some(end)) if earliest <= at && at < end => Ok(()),
        _ => Err(InputError::DateOutOfRange {
            field: field.to_owned(),
            at: at.to_rfc3339(),
        }),
    }
}

/// What the message of a decimal refused by [`parse_exact`] says, so that
/// an edge can give it the code of its field (`invalid_price`, `invalid_amount`).
pub const INEXACT: &str = "more than 28 decimal places";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExactError {
    #[error("{0:?} has more than 28 decimal places and cannot be stored exactly")]
    TooPrecise(String),
    #[error("{0:?} is not a decimal number that can be stored: {1}")]
    NotADecimal(String, String),
}

/// Decimal text, exactly: `rust_decimal` would round a 29th decimal place
/// away (`0.00000000000000000000000000001` becomes 0); this refuses it.
pub fn parse_exact(text: &str) -> Result<Decimal, ExactError> {
    Decimal::from_str_exact(text).map_err(|e| match e {
        rust_decimal::Error::Underflow => ExactError::TooPrecise(text.to_owned()),
        other => ExactError::NotADecimal(text.to_owned(), other.to_string()),
    })
}

/// `#[serde(with = "tally_domain::input::exact")]`: a decimal string, read
/// with [`parse_exact`], written as `rust_decimal::serde::str` writes it.
pub mod exact {
    use rust_decimal::Decimal;
    use serde::{de::Error, Deserialize, Deserializer};

    pub use rust_decimal::serde::str::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_exact(&text).map_err(D::Error::custom)
    }
}

/// `#[serde(default, with = "tally_domain::input::exact_option")]`: as
/// [`exact`], or absent / `null`.
pub mod exact_option {
    use rust_decimal::Decimal;
    use serde::{de::Error, Deserialize, Deserializer};

    pub use rust_decimal::serde::str_option::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| super::parse_exact(&text))
            .transpose()
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn a_29th_decimal_place_is_refused_not_rounded() {
        assert_eq!(
            parse_exact("0.0000000000000000000000000001")
                .unwrap()
                .to_string(),
            "0.0000000000000000000000000001"
        );
        for text in [
            "0.00000000000000000000000000001",
            "1.00000000000000000000000000001",
        ] {
            let err = parse_exact(text).unwrap_err();
            assert_eq!(err, ExactError::TooPrecise(text.into()));
            assert!(err.to_string().contains(INEXACT));
        }
        assert!(matches!(
            parse_exact("79228162514264337593543950336"),
            Err(ExactError::NotADecimal(..))
        ));
        assert!(parse_exact("1e3").is_err());
    }

    #[test]
    fn serde_reads_exactly_or_refuses() {
        #[derive(Deserialize)]
        struct Body {
            #[serde(with = "exact")]
            price: Decimal,
            #[serde(default, with = "exact_option")]
            fee: Option<Decimal>,
        }
        let body: Body = serde_json::from_str(r#"{"price": "0.25", "fee": null}"#).unwrap();
        assert_eq!((body.price.to_string(), body.fee), ("0.25".into(), None));
        let err = serde_json::from_str::<Body>(
            r#"{"price": "1", "fee": "0.00000000000000000000000000001"}"#,
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains(INEXACT), "{err}");
        assert!(serde_json::from_str::<Body>(r#"{"price": 2}"#).is_err());
    }

    #[test]
    fn text_has_no_nul_and_a_length_in_characters() {
        assert_eq!(check_text("name", &"é".repeat(200), MAX_NAME), Ok(()));
        assert_eq!(
            check_text("name", &"é".repeat(201), MAX_NAME)
                .unwrap_err()
                .code(),
            "text_too_long"
        );
        assert_eq!(
            check_text("name", "a\0b", MAX_NAME).unwrap_err().code(),
            "invalid_text"
        );
    }

    #[test]
    fn dates_fall_in_the_years_2000_to_9999() {
        let at = |y, m, d, h| Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap();
        assert!(check_date("at", at(2000, 1, 1, 0)).is_ok());
        assert!(check_date("at", at(9999, 12, 31, 23)).is_ok());
        for bad in [at(1999, 12, 31, 23), at(10000, 1, 1, 0), at(1, 1, 1, 0)] {
            assert_eq!(check_date("at", bad).unwrap_err().code(), "invalid_date");
        }
    }
}
