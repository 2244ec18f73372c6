use super::pricing::{discount, true_up};
use super::*;
use chrono::TimeZone;
use rust_decimal_macros::dec;

fn day(m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap()
}

fn provider(id: &str) -> ProviderId {
    ProviderId::parse(id).unwrap()
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

fn term(id: i64, scope: Scope, percent: Decimal, funded_by: Funder) -> Term {
    Term {
        id,
        scope,
        percent,
        funded_by,
        effective_from: day(1, 1),
        effective_to: day(4, 1),
        partner_agreed_at: (funded_by == Funder::Partner).then(|| day(1, 1)),
    }
}

fn contract(terms: Vec<Term>, commitments: Vec<Commitment>) -> Contract {
    Contract {
        id: 7,
        starts_at: day(1, 1),
        ends_at: day(4, 1),
        currency: Currency::parse("USD").unwrap(),
        price_protection: false,
        terms,
        commitments,
    }
}

fn monthly(minimum: Decimal) -> Commitment {
    Commitment {
        id: 1,
        cadence: Cadence::Month,
        minimum,
        starts_at: day(1, 1),
        ends_at: day(4, 1),
    }
}

fn any_sku(_: &ProviderId, s: &Sku) -> bool {
    s.as_str() != "acme.nope"
}

#[test]
fn a_contract_inside_its_term_is_valid() {
    let c = contract(
        vec![
            term(1, Scope::All, dec!(10), Funder::Platform),
            term(
                2,
                Scope::Skus {
                    provider: provider("acme"),
                    skus: vec![sku("acme.gpu")],
                },
                dec!(20),
                Funder::Partner,
            ),
        ],
        vec![monthly(dec!(100))],
    );
    assert_eq!(c.validate(&[], any_sku), Ok(()));
}

#[test]
fn overlapping_contracts_are_refused_and_adjacent_ones_are_not() {
    let c = contract(vec![], vec![]);
    let before = ExistingContract {
        id: 3,
        starts_at: day(1, 1) - chrono::Duration::days(365),
        ends_at: day(1, 1),
    };
    assert_eq!(c.validate(&[before], any_sku), Ok(()));
    let overlapping = ExistingContract {
        id: 4,
        starts_at: day(3, 31),
        ends_at: day(6, 1),
    };
    let err = c.validate(&[before, overlapping], any_sku).unwrap_err();
    assert_eq!(err, ContractError::Overlaps(4));
    assert_eq!(err.code(), "contract_overlaps");
}

#[test]
fn a_term_outside_the_contract_is_refused() {
    let mut late = term(1, Scope::All, dec!(10), Funder::Platform);
    late.effective_to = day(4, 2);
    let err = contract(vec![late], vec![])
        .validate(&[], any_sku)
        .unwrap_err();
    assert_eq!(err.code(), "term_outside_contract");
}

#[test]
fn a_commitment_outside_the_term_is_refused() {
    let mut c = monthly(dec!(100));
    c.starts_at = day(1, 1) - chrono::Duration::days(1);
    let err = contract(vec![], vec![c])
        .validate(&[], any_sku)
        .unwrap_err();
    assert_eq!(err, ContractError::CommitmentOutsideTerm { index: 0 });
    assert_eq!(err.code(), "commitment_outside_term");
}

#[test]
fn an_unknown_sku_is_refused() {
    let t = term(
        1,
        Scope::Skus {
            provider: provider("acme"),
            skus: vec![sku("acme.gpu"), sku("acme.nope")],
        },
        dec!(10),
        Funder::Platform,
    );
    let err = contract(vec![t], vec![])
        .validate(&[], any_sku)
        .unwrap_err();
    assert_eq!(err.code(), "unknown_sku");
}

#[test]
fn a_partner_funded_term_must_name_its_provider_and_a_percent_in_range() {
    let err = contract(vec![term(1, Scope::All, dec!(10), Funder::Partner)], vec![])
        .validate(&[], any_sku)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_contract");
    let err = contract(
        vec![term(1, Scope::All, dec!(100.01), Funder::Platform)],
        vec![],
    )
    .validate(&[], any_sku)
    .unwrap_err();
    assert_eq!(err.code(), "invalid_contract");
}

#[test]
fn a_partner_funded_term_discounts_nothing_until_the_partner_agrees() {
    let mut t = term(
        1,
        Scope::Provider {
            provider: provider("acme"),
        },
        dec!(10),
        Funder::Partner,
    );
    t.partner_agreed_at = None;
    assert_eq!(t.agreed().unwrap_err().code(), "partner_not_agreed");
    let c = contract(vec![t.clone()], vec![]);
    assert_eq!(
        c.term_for(&provider("acme"), &sku("acme.gpu"), day(2, 1)),
        None
    );
    t.partner_agreed_at = Some(day(1, 15));
    let c = contract(vec![t], vec![]);
    assert_eq!(
        c.term_for(&provider("acme"), &sku("acme.gpu"), day(2, 1))
            .map(|t| t.id),
        Some(1)
    );
}

#[test]
fn the_most_specific_term_wins_and_discounts_never_stack() {
    let c = contract(
        vec![
            term(1, Scope::All, dec!(30), Funder::Platform),
            term(
                2,
                Scope::Provider {
                    provider: provider("acme"),
                },
                dec!(5),
                Funder::Platform,
            ),
            term(
                3,
                Scope::Skus {
                    provider: provider("acme"),
                    skus: vec![sku("acme.gpu")],
                },
                dec!(15),
                Funder::Platform,
            ),
        ],
        vec![],
    );
    let id = |p: &str, s: &str| c.term_for(&provider(p), &sku(s), day(2, 1)).map(|t| t.id);
    assert_eq!(id("acme", "acme.gpu"), Some(3));
    assert_eq!(id("acme", "acme.cpu"), Some(2));
    assert_eq!(id("other", "other.x"), Some(1));
    // Out of the term's dates: nothing.
    assert_eq!(
        c.term_for(&provider("acme"), &sku("acme.gpu"), day(4, 1)),
        None
    );
}

#[test]
fn a_platform_funded_discount_settles_the_partner_at_list() {
    let usd = Currency::parse("USD").unwrap();
    let t = term(1, Scope::All, dec!(12.5), Funder::Platform);
    // 123.45 × 12.5% = 15.43125 → 15.43
    let d = discount(dec!(123.45), dec!(98.76), &t, usd).unwrap();
    assert_eq!(d.discount, dec!(15.43));
    assert_eq!(d.net, dec!(108.02));
    assert_eq!(d.partner_net, dec!(98.76));
    assert_eq!(d.funded_by, Funder::Platform);
}

#[test]
fn a_partner_funded_discount_lowers_the_partner_net_and_leaves_the_platform_share() {
    let usd = Currency::parse("USD").unwrap();
    let t = term(
        1,
        Scope::Provider {
            provider: provider("acme"),
        },
        dec!(10),
        Funder::Partner,
    );
    // 80.05 × 10% = 8.005 → 8.01 (half away from zero)
    let d = discount(dec!(80.05), dec!(64.04), &t, usd).unwrap();
    assert_eq!(d.discount, dec!(8.01));
    assert_eq!(d.net, dec!(72.04));
    assert_eq!(d.partner_net, dec!(56.03));
    // The platform's share is 80.05 - 64.04 = 16.01 before and after.
    assert_eq!(d.net - d.partner_net, dec!(16.01));
}

#[test]
fn a_commitment_true_up_bills_the_shortfall_only() {
    assert_eq!(true_up(dec!(500), dec!(320.55)).unwrap(), dec!(179.45));
    assert_eq!(true_up(dec!(500), dec!(500)).unwrap(), dec!(0));
    assert_eq!(true_up(dec!(500), dec!(612.10)).unwrap(), dec!(0));
}

#[test]
fn commitment_windows_follow_the_cadence_inside_the_term() {
    let mut q = monthly(dec!(1));
    assert_eq!(
        q.windows(),
        vec![
            (day(1, 1), day(2, 1)),
            (day(2, 1), day(3, 1)),
            (day(3, 1), day(4, 1))
        ]
    );
    assert_eq!(q.window_ending_at(day(3, 1)), Some((day(2, 1), day(3, 1))));
    q.cadence = Cadence::Quarter;
    assert_eq!(q.windows(), vec![(day(1, 1), day(4, 1))]);
    assert_eq!(q.window_ending_at(day(3, 1)), None);
    assert_eq!(q.window_ending_at(day(4, 1)), Some((day(1, 1), day(4, 1))));
}
