//! Price models: how a period's aggregated quantity of one SKU becomes an
//! exact (unrounded) charge. Tiers and other models act on the period
//! aggregate, never per event, so a charge depends only on the total.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::Currency;

pub mod resolve;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    #[error("price must not be negative")]
    NegativePrice,
    #[error("charge overflows")]
    Overflow,
    #[error("a tiered price needs at least one tier")]
    NoTiers,
    #[error("tier bounds must strictly increase and be positive")]
    TiersOutOfOrder,
    #[error("only the last tier may be unbounded, and it must be")]
    LastTierMustBeUnbounded,
    #[error("package size must be positive")]
    PackageSizeNotPositive,
}

/// One tier: units up to `up_to` (inclusive; `None` = no limit) cost
/// `unit_price` each, plus `flat_fee` once the tier is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    // `str_option` cannot read back the `null` it writes: leave `None` out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::input::exact_option"
    )]
    pub up_to: Option<Decimal>,
    #[serde(with = "crate::input::exact")]
    pub unit_price: Decimal,
    #[serde(default, with = "crate::input::exact")]
    pub flat_fee: Decimal,
}

fn validate_tiers(tiers: &[Tier]) -> Result<(), PricingError> {
    let (last, rest) = tiers.split_last().ok_or(PricingError::NoTiers)?;
    if last.up_to.is_some() || rest.iter().any(|t| t.up_to.is_none()) {
        return Err(PricingError::LastTierMustBeUnbounded);
    }
    let mut previous = Decimal::ZERO;
    for bound in rest.iter().filter_map(|t| t.up_to) {
        if bound <= previous {
            return Err(PricingError::TiersOutOfOrder);
        }
        previous = bound;
    }
    if tiers
        .iter()
        .any(|t| t.unit_price.is_sign_negative() || t.flat_fee.is_sign_negative())
    {
        return Err(PricingError::NegativePrice);
    }
    Ok(())
}

fn mul_add(units: Decimal, price: Decimal, acc: Decimal) -> Result<Decimal, PricingError> {
    units
        .checked_mul(price)
        .and_then(|x| x.checked_add(acc))
        .ok_or(PricingError::Overflow)
}

/// A price model, stored as JSON beside each price version
/// (`{"model":"per_unit","unit_price":"0.25"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "snake_case")]
pub enum PriceModel {
    /// Every unit at the same price.
    PerUnit {
        #[serde(with = "crate::input::exact")]
        unit_price: Decimal,
    },
    /// Each unit at the price of the tier it falls in.
    Graduated { tiers: Vec<Tier> },
    /// Every unit at the price of the tier the period total reaches.
    Volume { tiers: Vec<Tier> },
    /// `package_price` per started block of `package_size` units.
    Package {
        #[serde(with = "crate::input::exact")]
        package_size: Decimal,
        #[serde(with = "crate::input::exact")]
        package_price: Decimal,
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
            PriceModel::Graduated { tiers } | PriceModel::Volume { tiers } => validate_tiers(tiers),
            PriceModel::Package { package_size, .. } if *package_size <= Decimal::ZERO => {
                Err(PricingError::PackageSizeNotPositive)
            }
            PriceModel::Package { package_price, .. } if package_price.is_sign_negative() => {
                Err(PricingError::NegativePrice)
            }
            PriceModel::Package { .. } => Ok(()),
        }
    }

    /// The exact charge for a period's total quantity. Zero usage costs nothing.
    pub fn charge(&self, quantity: Decimal) -> Result<Decimal, PricingError> {
        if quantity <= Decimal::ZERO {
            return Ok(Decimal::ZERO);
        }
        match self {
            PriceModel::PerUnit { unit_price } => mul_add(quantity, *unit_price, Decimal::ZERO),
            PriceModel::Graduated { tiers } => {
                let mut charge = Decimal::ZERO;
                let mut floor = Decimal::ZERO;
                for tier in tiers {
                    let ceiling = tier.up_to.map_or(quantity, |u| u.min(quantity));
                    if ceiling <= floor {
                        break;
                    }
                    let units = ceiling.checked_sub(floor).ok_or(PricingError::Overflow)?;
                    charge = mul_add(units, tier.unit_price, charge)?;
                    charge = charge
                        .checked_add(tier.flat_fee)
                        .ok_or(PricingError::Overflow)?;
                    floor = ceiling;
                }
                Ok(charge)
            }
            PriceModel::Volume { tiers } => {
                let tier = tiers
                    .iter()
                    .find(|t| t.up_to.is_none_or(|u| quantity <= u))
                    .ok_or(PricingError::NoTiers)?;
                mul_add(quantity, tier.unit_price, tier.flat_fee)
            }
            PriceModel::Package {
                package_size,
                package_price,
            } => {
                let blocks = quantity
                    .checked_div(*package_size)
                    .ok_or(PricingError::Overflow)?
                    .ceil();
                mul_add(blocks, *package_price, Decimal::ZERO)
            }
        }
    }

    /// The price of one unit where the model has a single one.
    pub fn unit_price(&self) -> Option<Decimal> {
        match self {
            PriceModel::PerUnit { unit_price } => Some(*unit_price),
            PriceModel::Graduated { .. }
            | PriceModel::Volume { .. }
            | PriceModel::Package { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
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

    fn tiers(spec: &[(Option<i64>, Decimal)]) -> Vec<Tier> {
        spec.iter()
            .map(|(up_to, price)| Tier {
                up_to: up_to.map(Decimal::from),
                unit_price: *price,
                flat_fee: Decimal::ZERO,
            })
            .collect()
    }

    #[test]
    fn graduated_prices_each_unit_in_its_tier() {
        let m = PriceModel::Graduated {
            tiers: tiers(&[
                (Some(100), dec!(1)),
                (Some(1000), dec!(0.5)),
                (None, dec!(0.1)),
            ]),
        };
        assert_eq!(m.charge(dec!(50)).unwrap(), dec!(50));
        assert_eq!(
            m.charge(dec!(1500)).unwrap(),
            dec!(100) + dec!(450) + dec!(50)
        );
    }

    #[test]
    fn volume_prices_all_units_at_the_reached_tier() {
        let m = PriceModel::Volume {
            tiers: tiers(&[(Some(100), dec!(1)), (None, dec!(0.5))]),
        };
        assert_eq!(m.charge(dec!(100)).unwrap(), dec!(100));
        assert_eq!(m.charge(dec!(101)).unwrap(), dec!(50.5));
    }

    #[test]
    fn package_charges_per_started_block() {
        let m = PriceModel::Package {
            package_size: dec!(1000),
            package_price: dec!(2.5),
        };
        assert_eq!(m.charge(dec!(1)).unwrap(), dec!(2.5));
        assert_eq!(m.charge(dec!(1000)).unwrap(), dec!(2.5));
        assert_eq!(m.charge(dec!(1000.001)).unwrap(), dec!(5.0));
        assert_eq!(m.charge(dec!(0)).unwrap(), dec!(0));
    }

    #[test]
    fn bad_tiers_are_refused() {
        let out_of_order = PriceModel::Graduated {
            tiers: tiers(&[(Some(100), dec!(1)), (Some(50), dec!(1)), (None, dec!(1))]),
        };
        assert_eq!(out_of_order.validate(), Err(PricingError::TiersOutOfOrder));
        let bounded_last = PriceModel::Volume {
            tiers: tiers(&[(Some(100), dec!(1))]),
        };
        assert_eq!(
            bounded_last.validate(),
            Err(PricingError::LastTierMustBeUnbounded)
        );
        let negative = PriceModel::Volume {
            tiers: tiers(&[(None, dec!(-1))]),
        };
        assert_eq!(negative.validate(), Err(PricingError::NegativePrice));
        assert_eq!(
            PriceModel::Graduated { tiers: vec![] }.validate(),
            Err(PricingError::NoTiers)
        );
    }

    fn arb_tiers() -> impl Strategy<Value = Vec<Tier>> {
        proptest::collection::vec((1i64..50, 0i64..1000), 0..5).prop_map(|steps| {
            let mut bound = 0;
            let mut out: Vec<Tier> = steps
                .iter()
                .map(|(width, cents)| {
                    bound += width;
                    Tier {
                        up_to: Some(Decimal::from(bound)),
                        unit_price: Decimal::new(*cents, 2),
                        flat_fee: Decimal::ZERO,
                    }
                })
                .collect();
            out.push(Tier {
                up_to: None,
                unit_price: dec!(0.07),
                flat_fee: Decimal::ZERO,
            });
            out
        })
    }

    /// The tier of unit number `n` (1-based), the slow obvious way.
    fn tier_of(tiers: &[Tier], n: i64) -> &Tier {
        tiers
            .iter()
            .find(|t| t.up_to.is_none_or(|u| Decimal::from(n) <= u))
            .unwrap()
    }

    proptest! {
        #[test]
        fn graduated_equals_unit_by_unit_reference(tiers in arb_tiers(), q in 0i64..300) {
            let naive: Decimal = (1..=q).map(|n| tier_of(&tiers, n).unit_price).sum();
            let m = PriceModel::Graduated { tiers };
            prop_assert_eq!(m.charge(Decimal::from(q)).unwrap(), naive);
        }

        #[test]
        fn volume_equals_reference(tiers in arb_tiers(), q in 1i64..300) {
            let naive = Decimal::from(q) * tier_of(&tiers, q).unit_price;
            let m = PriceModel::Volume { tiers };
            prop_assert_eq!(m.charge(Decimal::from(q)).unwrap(), naive);
        }
    }

    #[test]
    fn model_json_is_stable() {
        let m = PriceModel::per_unit(dec!(2.5)).unwrap();
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, r#"{"model":"per_unit","unit_price":"2.5"}"#);
        assert_eq!(serde_json::from_str::<PriceModel>(&json).unwrap(), m);
    }
}

/// A price version's full terms: the model plus the period-level terms a
/// provider can attach. Stored as JSON beside each version, e.g.
/// `{"model":"graduated","tiers":[…],"free_units":"100","minimum_charge":"5"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceBook {
    #[serde(flatten)]
    pub model: PriceModel,
    /// The first units of each period cost nothing (before the model applies).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::input::exact_option"
    )]
    pub free_units: Option<Decimal>,
    /// A period whose usage charge falls short of this gets a true-up line.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::input::exact_option"
    )]
    pub minimum_charge: Option<Decimal>,
    /// A fixed fee for each period in which the SKU is used.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::input::exact_option"
    )]
    pub recurring_fee: Option<Decimal>,
}

/// What one price version charges for a period's quantity, unrounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charges {
    pub usage: Decimal,
    pub recurring_fee: Option<Decimal>,
    pub minimum_true_up: Option<Decimal>,
}

impl PriceBook {
    pub fn new(model: PriceModel) -> Self {
        Self {
            model,
            free_units: None,
            minimum_charge: None,
            recurring_fee: None,
        }
    }

    pub fn validate(&self) -> Result<(), PricingError> {
        self.model.validate()?;
        let terms = [self.free_units, self.minimum_charge, self.recurring_fee];
        if terms.iter().flatten().any(|t| t.is_sign_negative()) {
            return Err(PricingError::NegativePrice);
        }
        Ok(())
    }

    /// Charges for a period's total quantity at this version, in `currency`.
    /// Usage stays unrounded; the minimum's true-up is the minimum less the
    /// usage line as billed (rounded to the currency's minor unit), so that
    /// usage short of the minimum bills exactly the minimum: 0.005 under a
    /// 1.00 minimum is 0.01 + 0.99, not 0.01 + 1.00 (0.995 rounded up).
    pub fn charges(&self, quantity: Decimal, currency: Currency) -> Result<Charges, PricingError> {
        let billable = quantity
            .checked_sub(self.free_units.unwrap_or_default())
            .ok_or(PricingError::Overflow)?
            .max(Decimal::ZERO);
        let usage = self.model.charge(billable)?;
        let billed = currency.round(usage);
        let minimum_true_up = self
            .minimum_charge
            .filter(|minimum| billed < *minimum)
            .map(|minimum| minimum.checked_sub(billed).ok_or(PricingError::Overflow))
            .transpose()?;
        Ok(Charges {
            usage,
            recurring_fee: self.recurring_fee.filter(|f| !f.is_zero()),
            minimum_true_up,
        })
    }
}

impl From<PriceModel> for PriceBook {
    fn from(model: PriceModel) -> Self {
        PriceBook::new(model)
    }
}

#[cfg(test)]
mod price_book_tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn per_unit(p: Decimal) -> PriceBook {
        PriceBook::new(PriceModel::PerUnit { unit_price: p })
    }

    #[test]
    fn free_allowance_comes_off_the_period_total() {
        let book = PriceBook {
            free_units: Some(dec!(100)),
            ..per_unit(dec!(0.5))
        };
        assert_eq!(book.charges(dec!(80), usd()).unwrap().usage, dec!(0));
        assert_eq!(book.charges(dec!(130), usd()).unwrap().usage, dec!(15));
    }

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn usage_short_of_the_minimum_bills_exactly_the_minimum() {
        let book = PriceBook {
            minimum_charge: Some(dec!(1.00)),
            ..per_unit(dec!(1))
        };
        let charges = book.charges(dec!(0.005), usd()).unwrap();
        assert_eq!(charges.usage, dec!(0.005));
        assert_eq!(charges.minimum_true_up, Some(dec!(0.99)));
        assert_eq!(
            usd().round(charges.usage) + charges.minimum_true_up.unwrap(),
            dec!(1.00)
        );
        // JPY has no minor unit: 0.4 yen of usage bills 0 and the whole minimum.
        let yen = Currency::parse("JPY").unwrap();
        let book = PriceBook {
            minimum_charge: Some(dec!(100)),
            ..per_unit(dec!(1))
        };
        assert_eq!(
            book.charges(dec!(0.4), yen).unwrap().minimum_true_up,
            Some(dec!(100))
        );
    }

    #[test]
    fn minimum_charge_adds_a_true_up_only_when_short() {
        let book = PriceBook {
            minimum_charge: Some(dec!(10)),
            ..per_unit(dec!(1))
        };
        assert_eq!(
            book.charges(dec!(4), usd()).unwrap().minimum_true_up,
            Some(dec!(6))
        );
        assert_eq!(book.charges(dec!(12), usd()).unwrap().minimum_true_up, None);
    }

    #[test]
    fn old_model_only_json_still_reads_as_a_price_book() {
        let book: PriceBook =
            serde_json::from_str(r#"{"model":"per_unit","unit_price":"0.25"}"#).unwrap();
        assert_eq!(book, per_unit(dec!(0.25)));
        let json = serde_json::to_string(&PriceBook {
            recurring_fee: Some(dec!(9)),
            ..per_unit(dec!(1))
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"model":"per_unit","unit_price":"1","recurring_fee":"9"}"#
        );
    }

    #[test]
    fn negative_terms_are_refused() {
        let book = PriceBook {
            minimum_charge: Some(dec!(-1)),
            ..per_unit(dec!(1))
        };
        assert_eq!(book.validate(), Err(PricingError::NegativePrice));
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn tiered_books_survive_a_json_round_trip() {
        let text = r#"{"model":"graduated","tiers":[{"up_to":"100","unit_price":"0.10"},{"unit_price":"0.05"}],"minimum_charge":"5"}"#;
        let book: PriceBook = serde_json::from_str(text).unwrap();
        let again: PriceBook =
            serde_json::from_value(serde_json::to_value(&book).unwrap()).unwrap();
        assert_eq!(book, again);
    }
}
