//! Quantity: a non-negative exact decimal amount of a SKU's unit.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity must be a decimal number, e.g. \"12.5\"")]
    NotADecimal,
    #[error("quantity must not be negative")]
    Negative,
    #[error("quantity must be at most {max}")]
    TooLarge { max: Decimal },
    #[error("quantity may have at most {max} digits after the decimal point")]
    TooPrecise { max: u32 },
}

/// A non-negative decimal of at most [`Quantity::MAX`] with at most
/// [`Quantity::MAX_SCALE`] fractional digits. Kept exact from the JSON text on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "Decimal", into = "Decimal")]
pub struct Quantity(Decimal);

impl Quantity {
    pub const MAX: Decimal = Decimal::from_parts(0x_A4C6_8000, 0x_0003_8D7E, 0, false, 0); // 1e15
    pub const MAX_SCALE: u32 = 12;
    pub const ZERO: Quantity = Quantity(Decimal::ZERO);

    pub fn new(value: Decimal) -> Result<Self, QuantityError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(QuantityError::Negative);
        }
        if value > Self::MAX {
            return Err(QuantityError::TooLarge { max: Self::MAX });
        }
        let value = value.normalize();
        if value.scale() > Self::MAX_SCALE {
            return Err(QuantityError::TooPrecise {
                max: Self::MAX_SCALE,
            });
        }
        Ok(Self(value))
    }

    /// Parses plain decimal text: `12`, `0.5` (no sign, no exponent).
    pub fn parse(text: &str) -> Result<Self, QuantityError> {
        if !is_plain_decimal(text) {
            return Err(QuantityError::NotADecimal);
        }
        let value = Decimal::from_str_exact(text).map_err(|_| QuantityError::NotADecimal)?;
        Self::new(value)
    }

    /// Parses the text of a JSON number, which may carry an exponent (`1e3`).
    pub fn parse_json_number(text: &str) -> Result<Self, QuantityError> {
        if text.contains(['e', 'E']) {
            let value = Decimal::from_scientific(text).map_err(|_| QuantityError::NotADecimal)?;
            Self::new(value)
        } else {
            Self::parse(text)
        }
    }

    pub fn value(&self) -> Decimal {
        self.0
    }
}

/// `-`? digits (`.` digits)?: what a quantity string may look like (a
/// leading `-` parses, to be refused as negative rather than as garbage).
fn is_plain_decimal(text: &str) -> bool {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match unsigned.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (unsigned, None),
    };
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

impl TryFrom<Decimal> for Quantity {
    type Error = QuantityError;
    fn try_from(value: Decimal) -> Result<Self, QuantityError> {
        Self::new(value)
    }
}

impl From<Quantity> for Decimal {
    fn from(q: Quantity) -> Decimal {
        q.0
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, QuantityError> {
        Self::parse(s)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn max_is_one_quadrillion() {
        assert_eq!(Quantity::MAX, dec!(1_000_000_000_000_000));
    }

    #[test]
    fn parses_exact_decimals() {
        assert_eq!(Quantity::parse("0.1").unwrap().value(), dec!(0.1));
        assert_eq!(Quantity::parse("12").unwrap().value(), dec!(12));
        assert_eq!(
            Quantity::parse_json_number("1e3").unwrap().value(),
            dec!(1000)
        );
        assert_eq!(Quantity::parse("1e3"), Err(QuantityError::NotADecimal));
        assert_eq!(Quantity::parse("2.50").unwrap().value(), dec!(2.5));
        assert_eq!(Quantity::parse("0").unwrap(), Quantity::ZERO);
    }

    #[test]
    fn rejects_negative_huge_imprecise_and_garbage() {
        assert_eq!(Quantity::parse("-1"), Err(QuantityError::Negative));
        assert!(matches!(
            Quantity::parse("1000000000000001"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert!(matches!(
            Quantity::parse("0.0000000000001"),
            Err(QuantityError::TooPrecise { .. })
        ));
        for bad in ["", "abc", "1.", ".5", "1,5", "NaN", "0x10", "+1", " 1"] {
            assert_eq!(
                Quantity::parse(bad),
                Err(QuantityError::NotADecimal),
                "{bad:?}"
            );
        }
    }
}
