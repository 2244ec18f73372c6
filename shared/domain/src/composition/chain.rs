//! Chains of composition (issue 17, items 5 and 6): a consumer buys from
//! C, C composes U, U composes V. The reconciliation shows each chain's
//! part of the month beside the month's identity.
//!
//! A **chain** is a composing **root** (a provider that owns a billing
//! account with invoices in the month, and whose services no other
//! provider's account is billed in the month) and the providers it draws
//! from transitively (the providers billing its accounts, those billing
//! theirs, …). A composing provider that no root reaches (only in a cycle)
//! is a root of its own.
//!
//! A chain's lines: the lines its members bill to accounts no provider owns
//! (its consumers), and those they bill to accounts its members own (the
//! links of the chain). A line billed to another provider's account
//! belongs to that provider's chains. A supplier that two roots draw from
//! is in both chains, with the lines each chain bills it; so chains need
//! not add up to the month, whose identity is checked on its own.
//!
//! Per chain and currency the identity of the month holds on its lines:
//! `invoiced = platform_revenue + settlements + credits_applied`, where
//! the credits are those applied on its members' own invoices (a
//! consumer's credits pay its whole invoice, not one chain's lines, and
//! stay in the month's figures).

use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};

use crate::money::{checked, MoneyError};
use crate::Currency;

/// One line's part of the month (a credit note's or a void's negative).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFact {
    /// The provider that bills the line.
    pub provider: String,
    /// The provider that owns the invoice's account; `None` for a
    /// consumer's.
    pub owner: Option<String>,
    pub currency: Currency,
    pub amount: Decimal,
    /// The platform's part (markup and fee).
    pub platform: Decimal,
    /// What the provider is settled (partners; zero for first-party lines).
    pub partner: Decimal,
}

/// Credits applied on an invoice of an account `owner` owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditFact {
    pub owner: String,
    pub currency: Currency,
    pub amount: Decimal,
}

/// A chain's figures in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCurrency {
    pub currency: Currency,
    /// Billed by its members to consumers (accounts no provider owns).
    pub to_consumers: Decimal,
    /// Billed by its members to its members' own accounts.
    pub to_providers: Decimal,
    /// `to_consumers + to_providers`.
    pub invoiced: Decimal,
    /// The platform's part of the lines, less the credits applied.
    pub platform_revenue: Decimal,
    /// What its members are settled for its lines.
    pub settlements: Decimal,
    /// Credits applied on its members' own invoices.
    pub credits_applied: Decimal,
    /// `invoiced - (platform_revenue + settlements + credits_applied)`.
    pub difference: Decimal,
}

/// A chain: its root, its members (the root first, then by id) and its
/// figures by currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub root: String,
    pub members: Vec<String>,
    pub currencies: Vec<ChainCurrency>,
}

/// The chains of the month's lines: roots in id order.
pub fn chains(lines: &[LineFact], credits: &[CreditFact]) -> Result<Vec<Chain>, MoneyError> {
    // Who draws from whom: the owner of an account and the providers
    // billing it.
    let mut suppliers: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for l in lines {
        if let Some(owner) = &l.owner {
            let of = suppliers.entry(owner.as_str()).or_default();
            if *owner != l.provider {
                of.insert(l.provider.as_str());
            }
        }
    }
    for c in credits {
        suppliers.entry(c.owner.as_str()).or_default();
    }
    let drawn_from: BTreeSet<&str> = suppliers.values().flatten().copied().collect();
    let reach = |root: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::from([root.to_owned()]);
        let mut todo = vec![root];
        while let Some(p) = todo.pop() {
            for q in suppliers.get(p).into_iter().flatten() {
                if seen.insert((*q).to_owned()) {
                    todo.push(q);
                }
            }
        }
        seen
    };
    let mut roots: Vec<(&str, BTreeSet<String>)> = suppliers
        .keys()
        .filter(|p| !drawn_from.contains(*p))
        .map(|p| (*p, reach(p)))
        .collect();
    for composer in suppliers.keys() {
        if !roots.iter().any(|(_, m)| m.contains(*composer)) {
            roots.push((composer, reach(composer)));
        }
    }
    roots.sort();
    roots
        .into_iter()
        .map(|(root, members)| chain(root, &members, lines, credits))
        .collect()
}

fn chain(
    root: &str,
    members: &BTreeSet<String>,
    lines: &[LineFact],
    credits: &[CreditFact],
) -> Result<Chain, MoneyError> {
    fn sums<'a>(
        by: &'a mut BTreeMap<&'static str, (Currency, Sums)>,
        currency: Currency,
    ) -> &'a mut Sums {
        &mut by
            .entry(currency.code())
            .or_insert_with(|| (currency, Sums::default()))
            .1
    }
    #[derive(Default)]
    struct Sums {
        to_consumers: Decimal,
        to_providers: Decimal,
        platform: Decimal,
        partner: Decimal,
        credits: Decimal,
    }
    let mut by: BTreeMap<&'static str, (Currency, Sums)> = BTreeMap::new();
    for l in lines {
        let inside = match &l.owner {
            None => true,
            Some(owner) => members.contains(owner),
        };
        if !inside || !members.contains(&l.provider) {
            continue;
        }
        let s = sums(&mut by, l.currency);
        let invoiced = match l.owner {
            None => &mut s.to_consumers,
            Some(_) => &mut s.to_providers,
        };
        *invoiced = checked::add(*invoiced, l.amount)?;
        s.platform = checked::add(s.platform, l.platform)?;
        s.partner = checked::add(s.partner, l.partner)?;
    }
    for c in credits.iter().filter(|c| members.contains(&c.owner)) {
        let s = sums(&mut by, c.currency);
        s.credits = checked::add(s.credits, c.amount)?;
    }
    let mut currencies = Vec::with_capacity(by.len());
    for (currency, s) in by.into_values() {
        let invoiced = checked::add(s.to_consumers, s.to_providers)?;
        let platform_revenue = checked::sub(s.platform, s.credits)?;
        let explained = checked::sum([platform_revenue, s.partner, s.credits])?;
        let scaled = |x| currency.scaled(x);
        currencies.push(ChainCurrency {
            currency,
            to_consumers: scaled(s.to_consumers),
            to_providers: scaled(s.to_providers),
            invoiced: scaled(invoiced),
            platform_revenue: scaled(platform_revenue),
            settlements: scaled(s.partner),
            credits_applied: scaled(s.credits),
            difference: scaled(checked::sub(invoiced, explained)?),
        });
    }
    let mut ordered = vec![root.to_owned()];
    ordered.extend(members.iter().filter(|m| *m != root).cloned());
    Ok(Chain {
        root: root.to_owned(),
        members: ordered,
        currencies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    fn line(provider: &str, owner: Option<&str>, amount: Decimal, platform: Decimal) -> LineFact {
        LineFact {
            provider: provider.into(),
            owner: owner.map(Into::into),
            currency: usd(),
            amount,
            platform,
            partner: amount - platform,
        }
    }

    #[test]
    fn a_three_level_chain_has_one_root_and_its_lines_reconcile() {
        // Consumers buy 10.00 from comp; comp's account is billed 4.00 by
        // mid, mid's 1.50 by base; base also sells 2.00 to a consumer
        // directly; 1.00 of credits paid mid's invoice.
        let lines = [
            line("comp", None, dec!(10.00), dec!(1.00)),
            line("mid", Some("comp"), dec!(4.00), dec!(0.20)),
            line("base", Some("mid"), dec!(1.50), dec!(0.15)),
            line("base", None, dec!(2.00), dec!(0.40)),
            line("dbco", None, dec!(7.00), dec!(1.40)),
        ];
        let credits = [CreditFact {
            owner: "mid".into(),
            currency: usd(),
            amount: dec!(1.00),
        }];
        let got = chains(&lines, &credits).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].root, "comp");
        assert_eq!(got[0].members, ["comp", "base", "mid"]);
        assert_eq!(
            got[0].currencies,
            [ChainCurrency {
                currency: usd(),
                to_consumers: dec!(12.00),
                to_providers: dec!(5.50),
                invoiced: dec!(17.50),
                platform_revenue: dec!(0.75),
                settlements: dec!(15.75),
                credits_applied: dec!(1.00),
                difference: dec!(0.00),
            }]
        );
    }

    #[test]
    fn a_shared_supplier_is_in_each_chain_with_the_lines_that_chain_bills_it() {
        let lines = [
            line("a", None, dec!(1.00), dec!(0.10)),
            line("b", None, dec!(1.00), dec!(0.10)),
            line("up", Some("a"), dec!(3.00), dec!(0.30)),
            line("up", Some("b"), dec!(5.00), dec!(0.50)),
        ];
        let got = chains(&lines, &[]).unwrap();
        let view: Vec<_> = got
            .iter()
            .map(|c| {
                (
                    c.root.as_str(),
                    c.members.clone(),
                    c.currencies[0].to_providers,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("a", vec!["a".to_owned(), "up".to_owned()], dec!(3.00)),
                ("b", vec!["b".to_owned(), "up".to_owned()], dec!(5.00)),
            ]
        );
    }

    #[test]
    fn a_cycle_without_a_root_is_still_shown() {
        let lines = [
            line("x", Some("y"), dec!(1.00), dec!(0.10)),
            line("y", Some("x"), dec!(2.00), dec!(0.20)),
        ];
        let got = chains(&lines, &[]).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].root.as_str(), got[0].currencies[0].invoiced),
            ("x", dec!(3.00))
        );
    }

    #[test]
    fn a_split_that_does_not_add_up_shows_as_a_difference() {
        let mut off = line("mid", Some("comp"), dec!(4.00), dec!(0.20));
        off.partner = dec!(3.00);
        let got = chains(&[line("comp", None, dec!(1.00), dec!(0.10)), off], &[]).unwrap();
        assert_eq!(got[0].currencies[0].difference, dec!(0.80));
    }
}
