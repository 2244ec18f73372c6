//! A composing provider's statement of a month and currency (issue 17,
//! item 4): what its consumers owe it less the platform fee (its
//! settlement), what it owes its upstream providers (its own invoices from
//! the platform, which its credits may already have paid), and how the two
//! are paid: **gross**, the platform pays the settlement in full and the
//! provider pays its invoices separately, or **net**, one payment of the
//! difference, in whichever direction it falls.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::money::{checked, MoneyError};

/// How the platform settles with a provider, set per provider by the
/// platform (`providers.settlement_mode`); gross unless set.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementMode {
    /// The settlement is paid in full; the provider's own invoices are paid
    /// separately.
    #[default]
    Gross,
    /// The provider's own invoices are netted against its settlement: one
    /// payment of the difference.
    Net,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a settlement mode is `gross` or `net`")]
pub struct SettlementModeError;

impl SettlementMode {
    pub fn parse(raw: &str) -> Result<Self, SettlementModeError> {
        match raw {
            "gross" => Ok(Self::Gross),
            "net" => Ok(Self::Net),
            _ => Err(SettlementModeError),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gross => "gross",
            Self::Net => "net",
        }
    }
}

/// Who pays whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payer {
    /// The platform pays the provider.
    Platform,
    /// The provider pays the platform.
    Provider,
}

/// One payment between the platform and the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payer: Payer,
    /// Positive.
    pub amount: Decimal,
}

/// A statement's settlement side and invoice side, and how they are paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// `settlement - due`: positive when the platform owes the provider.
    pub net: Decimal,
    /// What the platform pays the provider for its settlement (negative:
    /// the provider pays the platform): the settlement when gross (the due
    /// is paid separately), `net` when net.
    pub paid: Decimal,
    /// The payments of the month, none of zero: gross, the settlement to
    /// the provider and the invoices' due to the platform; net, one payment
    /// of `|net|`.
    pub payments: Vec<Payment>,
}

/// How `settlement` (what the platform owes the provider for its sales)
/// and `due` (what the provider's own invoices leave to pay after its
/// credits) are paid under `mode`.
pub fn settle(
    mode: SettlementMode,
    settlement: Decimal,
    due: Decimal,
) -> Result<Settled, MoneyError> {
    let net = checked::sub(settlement, due)?;
    let (paid, owed) = match mode {
        SettlementMode::Gross => (
            settlement,
            vec![(Payer::Platform, settlement), (Payer::Provider, due)],
        ),
        SettlementMode::Net => (net, vec![(Payer::Platform, net)]),
    };
    let mut payments = Vec::with_capacity(owed.len());
    for (payer, amount) in owed {
        payments.extend(payment(payer, amount)?);
    }
    Ok(Settled {
        net,
        paid,
        payments,
    })
}

/// `amount` owed by `payer`: none when zero; a negative amount (a month
/// whose corrections exceed what it billed) is paid the other way.
fn payment(payer: Payer, amount: Decimal) -> Result<Option<Payment>, MoneyError> {
    let other = match payer {
        Payer::Platform => Payer::Provider,
        Payer::Provider => Payer::Platform,
    };
    Ok(if amount.is_zero() {
        None
    } else if amount.is_sign_negative() {
        Some(Payment {
            payer: other,
            amount: checked::sub(Decimal::ZERO, amount)?,
        })
    } else {
        Some(Payment { payer, amount })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn pay(payer: Payer, amount: Decimal) -> Payment {
        Payment { payer, amount }
    }

    #[test]
    fn gross_pays_the_settlement_in_full_and_the_invoice_separately() {
        let s = settle(SettlementMode::Gross, dec!(12.60), dec!(4.80)).unwrap();
        assert_eq!((s.net, s.paid), (dec!(7.80), dec!(12.60)));
        assert_eq!(
            s.payments,
            [
                pay(Payer::Platform, dec!(12.60)),
                pay(Payer::Provider, dec!(4.80))
            ]
        );
    }

    #[test]
    fn net_is_one_payment_of_the_difference_in_the_direction_it_falls() {
        let s = settle(SettlementMode::Net, dec!(12.60), dec!(4.80)).unwrap();
        assert_eq!(s.payments, [pay(Payer::Platform, dec!(7.80))]);
        assert_eq!(s.paid, dec!(7.80));
        let s = settle(SettlementMode::Net, dec!(1.00), dec!(4.80)).unwrap();
        assert_eq!((s.net, s.paid), (dec!(-3.80), dec!(-3.80)));
        assert_eq!(s.payments, [pay(Payer::Provider, dec!(3.80))]);
        let s = settle(SettlementMode::Net, dec!(4.80), dec!(4.80)).unwrap();
        assert_eq!((s.net, s.payments), (dec!(0.00), vec![]));
    }

    #[test]
    fn nothing_to_pay_is_no_payment_in_either_mode() {
        assert_eq!(
            settle(SettlementMode::Gross, dec!(0), dec!(2.00))
                .unwrap()
                .payments,
            [pay(Payer::Provider, dec!(2.00))]
        );
        assert!(settle(SettlementMode::Gross, dec!(0), dec!(0))
            .unwrap()
            .payments
            .is_empty());
    }

    #[test]
    fn a_negative_side_is_paid_the_other_way() {
        // A month whose credit notes on the provider's own invoices exceed
        // them: the platform pays the provider back, in either mode.
        let s = settle(SettlementMode::Gross, dec!(3.00), dec!(-0.50)).unwrap();
        assert_eq!(
            s.payments,
            [
                pay(Payer::Platform, dec!(3.00)),
                pay(Payer::Platform, dec!(0.50))
            ]
        );
        let s = settle(SettlementMode::Gross, dec!(-1.00), dec!(0)).unwrap();
        assert_eq!(s.payments, [pay(Payer::Provider, dec!(1.00))]);
        let s = settle(SettlementMode::Net, dec!(3.00), dec!(-0.50)).unwrap();
        assert_eq!(
            (s.net, s.payments),
            (dec!(3.50), vec![pay(Payer::Platform, dec!(3.50))])
        );
    }

    #[test]
    fn a_mode_parses_from_its_name_only() {
        assert_eq!(SettlementMode::parse("net"), Ok(SettlementMode::Net));
        assert_eq!(SettlementMode::parse("gross"), Ok(SettlementMode::Gross));
        assert_eq!(SettlementMode::parse("Net"), Err(SettlementModeError));
        assert_eq!(SettlementMode::default(), SettlementMode::Gross);
    }
}
