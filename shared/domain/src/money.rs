//! Money: an exact decimal amount in one ISO 4217 currency.
//!
//! Arithmetic refuses to mix currencies; rounding happens only through the
//! currency's rule (its minor unit, half away from zero unless configured
//! otherwise); splitting uses the largest remainder so the parts always sum to
//! the whole.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency {0:?}: expected an ISO 4217 code such as USD")]
    UnknownCurrency(String),
    #[error("currency {0} has no minor unit and cannot be billed")]
    NotACurrency(String),
    #[error("cannot combine {left} with {right}")]
    CurrencyMismatch { left: String, right: String },
    #[error("amount overflow")]
    Overflow,
    #[error("cannot split into zero parts")]
    EmptySplit,
}

impl MoneyError {
    /// The stable code of the error (the same codes ingest, rating's dead
    /// letters and the API use): `amount_overflow` when an amount does not
    /// fit in a `Decimal`.
    pub fn code(&self) -> &'static str {
        match self {
            MoneyError::UnknownCurrency(_) | MoneyError::NotACurrency(_) => "unknown_currency",
            MoneyError::CurrencyMismatch { .. } => "currency_mismatch",
            MoneyError::Overflow => "amount_overflow",
            MoneyError::EmptySplit => "internal",
        }
    }
}

/// Checked arithmetic on plain amounts (and the quantities and rates that
/// make them), where the currency travels beside the number rather than
/// in a [`Money`]: an overflow is [`MoneyError::Overflow`], never a panic.
pub mod checked {
    use super::MoneyError;
    use rust_decimal::Decimal;

    pub fn add(a: Decimal, b: Decimal) -> Result<Decimal, MoneyError> {
        a.checked_add(b).ok_or(MoneyError::Overflow)
    }

    pub fn sub(a: Decimal, b: Decimal) -> Result<Decimal, MoneyError> {
        a.checked_sub(b).ok_or(MoneyError::Overflow)
    }

    pub fn mul(a: Decimal, b: Decimal) -> Result<Decimal, MoneyError> {
        a.checked_mul(b).ok_or(MoneyError::Overflow)
    }

    /// `a / b`; a zero `b` is an overflow too (callers rule it out first).
    pub fn div(a: Decimal, b: Decimal) -> Result<Decimal, MoneyError> {
        a.checked_div(b).ok_or(MoneyError::Overflow)
    }

    /// The sum of `amounts`; an empty list sums to zero.
    pub fn sum(amounts: impl IntoIterator<Item = Decimal>) -> Result<Decimal, MoneyError> {
        amounts.into_iter().try_fold(Decimal::ZERO, add)
    }
}

/// How a currency rounds to its minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoundingRule {
    /// 0.005 → 0.01 and -0.005 → -0.01 (the default).
    #[default]
    HalfAwayFromZero,
    /// Banker's rounding: 0.005 → 0.00, 0.015 → 0.02.
    HalfEven,
}

impl RoundingRule {
    fn strategy(self) -> RoundingStrategy {
        match self {
            RoundingRule::HalfAwayFromZero => RoundingStrategy::MidpointAwayFromZero,
            RoundingRule::HalfEven => RoundingStrategy::MidpointNearestEven,
        }
    }
}

/// An ISO 4217 currency with its minor-unit exponent (USD 2, JPY 0, BHD 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    iso: iso_currency::Currency,
    rounding: RoundingRule,
}

impl Currency {
    /// Parses an ISO 4217 alphabetic code (case-sensitive, e.g. `EUR`).
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        let iso = iso_currency::Currency::from_code(code)
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))?;
        if iso.exponent().is_none() {
            return Err(MoneyError::NotACurrency(code.to_owned()));
        }
        Ok(Self {
            iso,
            rounding: RoundingRule::default(),
        })
    }

    /// The same currency with another rounding rule (configured per currency).
    pub fn with_rounding(self, rounding: RoundingRule) -> Self {
        Self { rounding, ..self }
    }

    pub fn code(&self) -> &'static str {
        self.iso.code()
    }

    /// Digits after the decimal point of the minor unit.
    pub fn minor_units(&self) -> u32 {
        // `parse` only admits currencies with an exponent.
        u32::from(self.iso.exponent().unwrap_or(0))
    }

    pub fn rounding(&self) -> RoundingRule {
        self.rounding
    }

    /// `amount` as Tally writes it (JSON, CSV, the bill page): with at least
    /// this currency's minor units and every significant digit it has,
    /// never rounded. An amount (rounded to the minor unit already) reads
    /// `"10.00"` in USD, `"1234"` in JPY, `"1.500"` in BHD; a unit price
    /// keeps its own precision (`"0.0001"` USD) but is never shorter than
    /// an amount (`"1.00"`, not `"1"`). Only the scale changes, never the value.
    pub fn scaled(&self, amount: Decimal) -> Decimal {
        let mut shown = if amount.is_zero() {
            Decimal::ZERO
        } else {
            amount.normalize()
        };
        if shown.scale() < self.minor_units() {
            shown.rescale(self.minor_units());
        }
        shown
    }

    /// Rounds an exact amount to this currency's minor unit by its rule.
    pub fn round(&self, amount: Decimal) -> Decimal {
        amount.round_dp_with_strategy(self.minor_units(), self.rounding.strategy())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An exact amount of one currency. Full precision until `round` is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    #[serde(with = "rust_decimal::serde::str")]
    amount: Decimal,
    currency: Currency,
}

impl Money {
    pub fn new(amount: Decimal, currency: Currency) -> Self {
        Self { amount, currency }
    }

    pub fn zero(currency: Currency) -> Self {
        Self::new(Decimal::ZERO, currency)
    }

    pub fn amount(&self) -> Decimal {
        self.amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Rounded once to the currency's minor unit.
    pub fn round(&self) -> Money {
        Money::new(self.currency.round(self.amount), self.currency)
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency.code() == other.currency.code() {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.code().to_owned(),
                right: other.currency.code().to_owned(),
            })
        }
    }

    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_add(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount = self
            .amount
            .checked_sub(other.amount)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Multiplies by a plain factor (a quantity, a rate); stays exact.
    pub fn checked_mul(&self, factor: Decimal) -> Result<Money, MoneyError> {
        let amount = self
            .amount
            .checked_mul(factor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(amount, self.currency))
    }

    /// Sums amounts of one currency; an empty list sums to zero of `currency`.
    pub fn sum<'a>(
        currency: Currency,
        items: impl IntoIterator<Item = &'a Money>,
    ) -> Result<Money, MoneyError> {
        items
            .into_iter()
            .try_fold(Money::zero(currency), |acc, m| acc.checked_add(m))
    }

    /// Splits a rounded amount into parts proportional to `weights`, in minor
    /// units, by largest remainder: the parts always sum to exactly `self`.
    /// Ties go to the earlier weight.
    pub fn split(&self, weights: &[Decimal]) -> Result<Vec<Money>, MoneyError> {
        if weights.is_empty() {
            return Err(MoneyError::EmptySplit);
        }
        let total_weight = weights
            .iter()
            .try_fold(Decimal::ZERO, |acc, w| acc.checked_add(*w))
            .ok_or(MoneyError::Overflow)?;
        let unit = Decimal::new(1, self.currency.minor_units());
        let whole = self.round().amount;
        if total_weight.is_zero() {
            let mut parts = vec![Money::zero(self.currency); weights.len()];
            parts[0] = Money::new(whole, self.currency);
            return Ok(parts);
        }
        let mut parts = Vec::with_capacity(weights.len());
        let mut remainders = Vec::with_capacity(weights.len());
        for (index, weight) in weights.iter().enumerate() {
            let exact = whole
                .checked_mul(*weight)
                .and_then(|x| x.checked_div(total_weight))
                .ok_or(MoneyError::Overflow)?;
            let floor =
                exact.round_dp_with_strategy(self.currency.minor_units(), RoundingStrategy::ToZero);
            remainders.push((exact.checked_sub(floor).ok_or(MoneyError::Overflow)?, index));
            parts.push(floor);
        }
        let allocated = parts
            .iter()
            .try_fold(Decimal::ZERO, |acc, p| acc.checked_add(*p))
            .ok_or(MoneyError::Overflow)?;
        let mut left = whole.checked_sub(allocated).ok_or(MoneyError::Overflow)?;
        remainders.sort_by(|a, b| b.0.abs().cmp(&a.0.abs()).then(a.1.cmp(&b.1)));
        let step = if left.is_sign_negative() { -unit } else { unit };
        for (_, index) in remainders.iter().cycle() {
            if left.is_zero() {
                break;
            }
            parts[*index] = parts[*index]
                .checked_add(step)
                .ok_or(MoneyError::Overflow)?;
            left = left.checked_sub(step).ok_or(MoneyError::Overflow)?;
        }
        Ok(parts
            .into_iter()
            .map(|amount| Money::new(amount, self.currency))
            .collect())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.currency.scaled(self.amount), self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn cur(code: &str) -> Currency {
        Currency::parse(code).unwrap()
    }

    #[test]
    fn currencies_know_their_minor_unit() {
        assert_eq!(cur("USD").minor_units(), 2);
        assert_eq!(cur("JPY").minor_units(), 0);
        assert_eq!(cur("BHD").minor_units(), 3);
    }

    #[test]
    fn unknown_currency_is_refused() {
        assert_eq!(
            Currency::parse("XYZ"),
            Err(MoneyError::UnknownCurrency("XYZ".into()))
        );
        assert!(Currency::parse("usd").is_err());
    }

    #[test]
    fn rounding_is_half_away_from_zero_by_default() {
        assert_eq!(cur("USD").round(dec!(0.005)), dec!(0.01));
        assert_eq!(cur("USD").round(dec!(-0.005)), dec!(-0.01));
        assert_eq!(cur("USD").round(dec!(0.0049999)), dec!(0.00));
        assert_eq!(cur("JPY").round(dec!(12.5)), dec!(13));
        assert_eq!(cur("BHD").round(dec!(1.0005)), dec!(1.001));
    }

    #[test]
    fn amounts_are_shown_with_the_currency_exponent_and_never_rounded() {
        let shown = |code: &str, amount: Decimal| cur(code).scaled(amount).to_string();
        assert_eq!(shown("USD", dec!(10)), "10.00");
        assert_eq!(shown("USD", dec!(6.000)), "6.00");
        assert_eq!(shown("USD", dec!(-6)), "-6.00");
        assert_eq!(shown("USD", dec!(-0.00)), "0.00");
        assert_eq!(shown("USD", dec!(0.0001)), "0.0001");
        assert_eq!(shown("USD", dec!(2.475)), "2.475");
        assert_eq!(shown("JPY", dec!(1234)), "1234");
        assert_eq!(shown("JPY", dec!(1234.00)), "1234");
        assert_eq!(shown("JPY", dec!(0.5)), "0.5");
        assert_eq!(shown("BHD", dec!(1.5)), "1.500");
        assert_eq!(shown("BHD", dec!(0)), "0.000");
        for (code, amount) in [("USD", dec!(10)), ("BHD", dec!(1.5)), ("USD", dec!(0.0001))] {
            assert_eq!(cur(code).scaled(amount), amount, "the value never changes");
        }
    }

    #[test]
    fn rounding_rule_is_configurable_per_currency() {
        let eur = cur("EUR").with_rounding(RoundingRule::HalfEven);
        assert_eq!(eur.round(dec!(0.005)), dec!(0.00));
        assert_eq!(eur.round(dec!(0.015)), dec!(0.02));
    }

    #[test]
    fn adding_different_currencies_is_an_error() {
        let usd = Money::new(dec!(1), cur("USD"));
        let eur = Money::new(dec!(1), cur("EUR"));
        assert_eq!(
            usd.checked_add(&eur),
            Err(MoneyError::CurrencyMismatch {
                left: "USD".into(),
                right: "EUR".into()
            })
        );
    }

    #[test]
    fn split_by_largest_remainder_sums_to_the_whole() {
        let total = Money::new(dec!(100.00), cur("USD"));
        let parts = total.split(&[dec!(1), dec!(1), dec!(1)]).unwrap();
        let amounts: Vec<_> = parts.iter().map(Money::amount).collect();
        assert_eq!(amounts, vec![dec!(33.34), dec!(33.33), dec!(33.33)]);
    }

    #[test]
    fn checked_arithmetic_at_the_limits_is_an_error_not_a_panic() {
        use super::checked;
        assert_eq!(
            checked::add(Decimal::MAX, dec!(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            checked::sub(Decimal::MIN, dec!(1)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(
            checked::mul(Decimal::MAX, dec!(2)),
            Err(MoneyError::Overflow)
        );
        assert_eq!(checked::div(dec!(1), dec!(0)), Err(MoneyError::Overflow));
        assert_eq!(
            checked::sum([Decimal::MAX, dec!(-1), dec!(1)]),
            Ok(Decimal::MAX)
        );
        assert_eq!(
            checked::sum([Decimal::MAX, dec!(1), dec!(-1)]),
            Err(MoneyError::Overflow)
        );
        assert_eq!(checked::sum([]), Ok(Decimal::ZERO));
        assert_eq!(checked::div(dec!(10.00), dec!(4)), Ok(dec!(2.5)));
        assert_eq!(MoneyError::Overflow.code(), "amount_overflow");
    }

    proptest! {
        #[test]
        fn split_parts_always_sum_to_the_whole(
            cents in -10_000_000i64..10_000_000,
            weights in proptest::collection::vec(0u32..1000, 1..8),
        ) {
            let usd = cur("USD");
            let total = Money::new(Decimal::new(cents, 2), usd);
            let weights: Vec<Decimal> = weights.into_iter().map(Decimal::from).collect();
            let parts = total.split(&weights).unwrap();
            prop_assert_eq!(parts.len(), weights.len());
            prop_assert_eq!(Money::sum(usd, &parts).unwrap(), total);
        }

        #[test]
        fn rounding_never_moves_more_than_half_a_minor_unit(
            mantissa in -1_000_000_000_000i64..1_000_000_000_000,
            scale in 0u32..10,
        ) {
            for code in ["USD", "JPY", "BHD"] {
                let c = cur(code);
                let exact = Decimal::new(mantissa, scale);
                let drift = (c.round(exact) - exact).abs();
                prop_assert!(drift <= Decimal::new(5, c.minor_units() + 1));
            }
        }
    }
}
