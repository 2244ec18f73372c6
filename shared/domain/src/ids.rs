//! Identifiers. Each is parsed once at the edge and then trusted.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error(
        "{kind} may only contain a-z, 0-9, '.', '_' and '-', and must start with a letter or digit"
    )]
    InvalidCharacter { kind: &'static str },
    #[error("{kind} may not contain '.': a dot separates a provider's id from its SKU names")]
    Dotted { kind: &'static str },
}

/// A slug: lowercase ASCII letters, digits, `.`, `_`, `-`; starts with a letter or digit.
fn parse_slug(kind: &'static str, raw: &str, max: usize) -> Result<String, IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if raw.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    let mut chars = raw.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok = chars
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_' || c == '-');
    if !(first_ok && rest_ok) {
        return Err(IdError::InvalidCharacter { kind });
    }
    Ok(raw.to_owned())
}

macro_rules! slug_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_LEN: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, IdError> {
                parse_slug($kind, raw, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(raw: String) -> Result<Self, IdError> {
                Self::parse(&raw)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

slug_id!(
    /// A customer account, e.g. `acme-corp`.
    AccountId,
    "account id",
    64
);
slug_id!(
    /// A usage provider: the platform itself (first-party) or a partner, e.g. `dbco`.
    ProviderId,
    "provider id",
    64
);
slug_id!(
    /// A stock keeping unit, unique across providers, e.g. `dbco.storage.gb-month`.
    Sku,
    "sku",
    128
);

slug_id!(
    /// A binding: an account's provisioned instance of a provider's service,
    /// e.g. `bnd_0192f3c4d5e6`. Tally makes it when the binding is
    /// requested; usage events name it in their `resource` attribute.
    BindingId,
    "binding id",
    64
);
slug_id!(
    /// A provider's plan for one resource type, e.g. `dbco.ps-10`.
    PlanId,
    "plan id",
    128
);
slug_id!(
    /// A kind of resource a provider offers (`database`, `bucket`): its
    /// plans are published per resource type.
    ResourceType,
    "resource type",
    64
);

impl PlanId {
    /// The plan's id in a line's SKU column: a plan fee line has no SKU of
    /// its own (the two ids share one grammar).
    pub fn as_sku(&self) -> Sku {
        Sku(self.0.clone())
    }
}

impl ProviderId {
    /// The id of a provider created from now on: a slug without dots, so
    /// that a SKU id `<provider>.<name>` names its provider unambiguously
    /// (`dbco.eu` would live inside `dbco`'s names). Providers created
    /// before this rule may have dots; [`ProviderId::parse`] still reads them.
    pub fn parse_new(raw: &str) -> Result<Self, IdError> {
        let id = Self::parse(raw)?;
        if raw.contains('.') {
            return Err(IdError::Dotted {
                kind: "provider id",
            });
        }
        Ok(id)
    }
}

impl Sku {
    /// Whose namespace this SKU id is in, among `providers`: the provider
    /// whose id and a dot are the longest prefix of it. Provider ids have no
    /// dots, so that is the prefix up to the first dot; the longest match
    /// keeps a provider created with a dot before that rule (`dbco.eu`) and
    /// the one its id starts with (`dbco`) out of each other's SKUs.
    pub fn namespace_owner<'a>(
        &self,
        providers: impl IntoIterator<Item = &'a str>,
    ) -> Option<&'a str> {
        providers
            .into_iter()
            .filter(|p| {
                self.0
                    .strip_prefix(*p)
                    .is_some_and(|rest| rest.len() > 1 && rest.starts_with('.'))
            })
            .max_by_key(|p| p.len())
    }
}

/// The provider's own id of one usage event (CloudEvents `id`). Any printable
/// text up to 256 characters; unique per provider.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventId(String);

impl EventId {
    pub const MAX_LEN: usize = 256;

    pub fn parse(raw: &str) -> Result<Self, IdError> {
        const KIND: &str = "event id";
        if raw.is_empty() {
            return Err(IdError::Empty { kind: KIND });
        }
        if raw.chars().count() > Self::MAX_LEN {
            return Err(IdError::TooLong {
                kind: KIND,
                max: Self::MAX_LEN,
            });
        }
        if raw.chars().any(char::is_control) {
            return Err(IdError::InvalidCharacter { kind: KIND });
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = IdError;
    fn try_from(raw: String) -> Result<Self, IdError> {
        Self::parse(&raw)
    }
}

impl From<EventId> for String {
    fn from(id: EventId) -> String {
        id.0
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_accept_lowercase_digits_and_separators() {
        assert_eq!(
            AccountId::parse("acme-corp.eu_1").unwrap().as_str(),
            "acme-corp.eu_1"
        );
    }

    #[test]
    fn slugs_reject_uppercase_spaces_and_leading_punctuation() {
        for bad in ["Acme", "a b", "-acme", "", "acme/1"] {
            assert!(AccountId::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn slug_length_is_bounded() {
        assert!(Sku::parse(&"a".repeat(128)).is_ok());
        assert_eq!(
            Sku::parse(&"a".repeat(129)),
            Err(IdError::TooLong {
                kind: "sku",
                max: 128
            })
        );
    }

    #[test]
    fn new_provider_ids_have_no_dots() {
        assert!(ProviderId::parse_new("dbco").is_ok());
        assert_eq!(
            ProviderId::parse_new("dbco.eu"),
            Err(IdError::Dotted {
                kind: "provider id"
            })
        );
        assert!(ProviderId::parse("dbco.eu").is_ok(), "older ids still read");
    }

    #[test]
    fn a_sku_is_in_the_namespace_of_its_longest_provider_prefix() {
        let sku = |s| Sku::parse(s).unwrap();
        let providers = ["dbco", "dbco.eu", "cloud"];
        assert_eq!(sku("dbco.db.hour").namespace_owner(providers), Some("dbco"));
        assert_eq!(
            sku("dbco.eu.db").namespace_owner(providers),
            Some("dbco.eu")
        );
        assert_eq!(sku("dbco.eu").namespace_owner(providers), Some("dbco"));
        assert_eq!(sku("dbcox.db").namespace_owner(providers), None);
        assert_eq!(sku("dbco").namespace_owner(providers), None);
        assert_eq!(sku("dbco.").namespace_owner(providers), None);
        assert_eq!(sku("other.x").namespace_owner(providers), None);
    }

    #[test]
    fn event_ids_allow_free_text_but_not_control_characters() {
        assert!(EventId::parse("order 42/line:7").is_ok());
        assert!(EventId::parse("bad\nid").is_err());
        assert!(EventId::parse(&"x".repeat(257)).is_err());
    }
}
