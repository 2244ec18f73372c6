//! Price models: how a period's aggregated quantity of one SKU becomes an
//! exact (unrounded) charge. Tiers and other models act on the period
//! aggregate, never per event, so a charge depends only on the total.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("price must not be negative")]
    NegativePrice,
    #[error("charge overflows")]
    Overflow,
}

/// A price model, stored as JSON beside each price version
/// (`{"model":"per_unit","unit_price":"0.25"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum PriceModel {
    /// Every unit at the same price.
    PerUnit {
        #[serde(with = "rust_decimal::serde::str")]
        unit_price: Decimal,
    },
}

impl PriceModel {
    pub fn per_unit(unit_price: Decimal) -> Result<Self, PricingError> {
        let model = PriceModel::PerUnit { unit_price };
        model.validate()?;
        Ok(model)
    }

    pub fn validate(&self) -> Result<(), PricingError> {
        match self {
            PriceModel::PerUnit { unit_price } if unit_price.is_sign_negative() => {
                Err(PricingError::NegativePrice)
            }
            PriceModel::PerUnit { .. } => Ok(()),
        }
    }

    /// The exact charge for a period's total quantity.
    pub fn charge(&self, quantity: Decimal) -> Result<Decimal, PricingError> {
        match self {
            PriceModel::PerUnit { unit_price } => quantity
                .checked_mul(*unit_price)
                .ok_or(PricingError::Overflow),
        }
    }

    /// The price of one unit where the model has a single one.
    pub fn unit_price(&self) -> Option<Decimal> {
        match self {
            PriceModel::PerUnit { unit_price } => Some(*unit_price),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn per_unit_charges_quantity_times_price_exactly() {
        let m = PriceModel::per_unit(dec!(0.0125)).unwrap();
        assert_eq!(m.charge(dec!(3.3)).unwrap(), dec!(0.04125));
    }

    #[test]
    fn negative_prices_are_refused() {
        assert_eq!(
            PriceModel::per_unit(dec!(-1)),
            Err(PricingError::NegativePrice)
        );
    }

    #[test]
    fn model_json_is_stable() {
        let m = PriceModel::per_unit(dec!(2.5)).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"model":"per_unit","unit_price":"2.5"}"#);
        assert_eq!(serde_json::from_str::<PriceModel>(&json).unwrap(), m);
    }
}
