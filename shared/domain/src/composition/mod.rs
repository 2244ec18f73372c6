//! Provider to provider (issue 17): the opaque reference a composing
//! provider's upstream usage carries for the consumer it was done for.
//!
//! The platform mints one per (composing provider, consumer account): a
//! random token, `obo_` and 32 lowercase hex digits, that says nothing about
//! the consumer. The upstream provider sends it in the CloudEvents extension
//! attribute `onbehalfof`; only the platform can resolve it, and only for
//! the composing provider that it was minted for.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::pricing::resolve::{version_at, Effective};
use std::fmt;

pub mod chain;
pub mod margin;
pub mod statement;

/// The price version that prices usage at `at` of an account: for an
/// account a provider owns, the SKU's wholesale version in effect (its
/// price book for provider accounts), where it has one; else its list
/// version in effect.
pub fn price_version<'v, V: Effective>(
    list: &'v [V],
    wholesale: &'v [V],
    account_owned_by_provider: bool,
    at: DateTime<Utc>,
) -> Option<&'v V> {
    let wholesale = account_owned_by_provider
        .then(|| version_at(wholesale, at))
        .flatten();
    wholesale.or_else(|| version_at(list, at))
}

/// Whether a new price version changes the price some account pays (so a
/// partner's new version gives the platform's notice): a list version
/// where the SKU has a list version in that currency; a wholesale version
/// where it has any (until its first wholesale version, the accounts that
/// providers own pay list). A first list version beside wholesale ones
/// changes no account's price.
pub fn replaces_a_price(wholesale: bool, has_list: bool, has_wholesale: bool) -> bool {
    if wholesale {
        has_list || has_wholesale
    } else {
        has_list
    }
}

/// A partner's platform fee, in percent, on the lines it bills an account:
/// its provider-to-provider fee (`p2p_fee_pct`) when a provider owns the
/// account and the partner has one, else its fee on consumer usage.
pub fn platform_fee_pct(
    consumer_fee_pct: Decimal,
    p2p_fee_pct: Option<Decimal>,
    account_owned_by_provider: bool,
) -> Decimal {
    match (account_owned_by_provider, p2p_fee_pct) {
        (true, Some(p2p)) => p2p,
        _ => consumer_fee_pct,
    }
}

/// The prefix of every reference.
pub const PREFIX: &str = "obo_";
/// The hex digits after the prefix (128 random bits).
pub const HEX_DIGITS: usize = 32;

/// An on-behalf-of reference, as minted (`obo_` + 32 lowercase hex digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OnBehalfOf(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("an on-behalf-of reference is `{PREFIX}` and {HEX_DIGITS} lowercase hex digits, as the platform minted it")]
pub struct OnBehalfOfError;

impl OnBehalfOf {
    pub fn parse(raw: &str) -> Result<Self, OnBehalfOfError> {
        let hex = raw.strip_prefix(PREFIX).ok_or(OnBehalfOfError)?;
        let valid = hex.len() == HEX_DIGITS
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(OnBehalfOfError)
        }
    }

    /// A reference of 16 random bytes (the caller's randomness: the domain
    /// has none).
    pub fn from_random(bytes: [u8; 16]) -> Self {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("{PREFIX}{hex}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OnBehalfOf {
    type Error = OnBehalfOfError;
    fn try_from(raw: String) -> Result<Self, OnBehalfOfError> {
        Self::parse(&raw)
    }
}

impl From<OnBehalfOf> for String {
    fn from(r: OnBehalfOf) -> String {
        r.0
    }
}

impl fmt::Display for OnBehalfOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use rust_decimal_macros::dec;

    struct V(DateTime<Utc>, &'static str);

    impl Effective for V {
        fn effective_from(&self) -> DateTime<Utc> {
            self.0
        }
    }

    #[test]
    fn a_provider_account_is_priced_wholesale_where_a_version_is_in_effect() {
        let at = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
        let list = [V(at(1), "list-1"), V(at(10), "list-10")];
        let wholesale = [V(at(5), "wholesale-5")];
        let pick = |owned, day| price_version(&list, &wholesale, owned, at(day)).map(|v| v.1);
        assert_eq!(pick(false, 6), Some("list-1"));
        assert_eq!(pick(true, 6), Some("wholesale-5"));
        assert_eq!(pick(true, 12), Some("wholesale-5"));
        assert_eq!(
            pick(true, 2),
            Some("list-1"),
            "before any wholesale version"
        );
        assert_eq!(pick(false, 12), Some("list-10"));
        assert_eq!(
            price_version(&[], &wholesale, false, at(6)).map(|v| v.1),
            None
        );
    }

    #[test]
    fn a_version_replaces_a_price_its_audience_pays() {
        // (wholesale, has list, has wholesale) → replaces.
        assert!(!replaces_a_price(false, false, false));
        assert!(!replaces_a_price(false, false, true));
        assert!(replaces_a_price(false, true, false));
        assert!(replaces_a_price(false, true, true));
        assert!(!replaces_a_price(true, false, false));
        assert!(replaces_a_price(true, true, false));
        assert!(replaces_a_price(true, false, true));
        assert!(replaces_a_price(true, true, true));
    }

    #[test]
    fn a_provider_owned_account_pays_the_p2p_fee_where_one_is_set() {
        assert_eq!(platform_fee_pct(dec!(20), Some(dec!(5)), true), dec!(5));
        assert_eq!(platform_fee_pct(dec!(20), Some(dec!(5)), false), dec!(20));
        assert_eq!(platform_fee_pct(dec!(20), None, true), dec!(20));
        assert_eq!(platform_fee_pct(dec!(20), Some(dec!(0)), true), dec!(0));
    }

    #[test]
    fn a_minted_reference_parses_and_nothing_else_does() {
        let minted = OnBehalfOf::from_random([0xab; 16]);
        assert_eq!(minted.as_str(), format!("obo_{}", "ab".repeat(16)));
        assert_eq!(OnBehalfOf::parse(minted.as_str()), Ok(minted));
        for bad in [
            "",
            "obo_",
            "acme",
            &format!("obo_{}", "AB".repeat(16)),
            &format!("obo_{}", "ab".repeat(15)),
            &format!("obo_{}0", "ab".repeat(16)),
            &format!("xyz_{}", "ab".repeat(16)),
            &format!("obo_{}g", "a".repeat(31)),
        ] {
            assert_eq!(OnBehalfOf::parse(bad), Err(OnBehalfOfError), "{bad}");
        }
    }
}
