//! Negotiated price book terms ([`crate::contract::negotiated`]) and
//! signing ([`Contract::sign`]); the helpers are the contract tests'.

use super::*;
use crate::contract::pricing::apply;
use crate::pricing::{PriceModel, Tier};
use crate::statement::{ProviderKind, Statement, UsageAggregate};
use crate::{AccountId, Period};

/// 0.20 for the first 100 units, 0.10 after.
fn graduated() -> PriceBook {
    PriceBook::new(PriceModel::Graduated {
        tiers: vec![
            Tier {
                up_to: Some(dec!(100)),
                unit_price: dec!(0.20),
                flat_fee: Decimal::ZERO,
            },
            Tier {
                up_to: None,
                unit_price: dec!(0.10),
                flat_fee: Decimal::ZERO,
            },
        ],
    })
}

fn negotiated(id: i64, book: PriceBook, funded_by: Funder) -> Term {
    Term {
        id,
        scope: Scope::Skus {
            provider: provider("dbco"),
            skus: vec![sku("dbco.db")],
        },
        percent: Decimal::ZERO,
        price_book: Some(book),
        funded_by,
        effective_from: day(1, 1),
        effective_to: day(4, 1),
        partner_agreed_at: (funded_by == Funder::Partner).then(|| day(1, 2)),
    }
}

fn percent_all(id: i64, percent: Decimal) -> Term {
    term(id, Scope::All, percent, Funder::Platform)
}

/// The contract of the contract tests with `terms` and no commitment.
fn with(terms: Vec<Term>) -> Contract {
    contract(terms, Vec::new())
}

/// A line of the contract tests' statements, without markup.
fn agg(p: &str, kind: ProviderKind, sku_: &str, price: Decimal, qty: Decimal) -> UsageAggregate {
    UsageAggregate {
        markup_pct: Decimal::ZERO,
        ..statement::agg(p, kind, sku_, price, qty)
    }
}

/// February: cloud (first party) 1000 × 0.10 = 100.00; dbco (partner,
/// fee 20%) 300 × 0.25 = 75.00 list, fee 15.00, net 60.00.
fn february() -> Statement {
    Statement::compute(
        AccountId::parse("acme").unwrap(),
        Period::new(day(2, 1), day(3, 1)).unwrap(),
        Currency::parse("USD").unwrap(),
        1,
        vec![
            agg(
                "cloud",
                ProviderKind::FirstParty,
                "cloud.vm",
                dec!(0.10),
                dec!(1000),
            ),
            agg(
                "dbco",
                ProviderKind::Partner,
                "dbco.db",
                dec!(0.25),
                dec!(300),
            ),
        ],
    )
    .unwrap()
}

#[test]
fn a_platform_funded_negotiated_graduated_book_prices_the_period_and_settles_at_list() {
    let mut s = february();
    apply(
        &mut s,
        &with(vec![negotiated(1, graduated(), Funder::Platform)]),
    )
    .unwrap();
    let db = &s.lines[1];
    // 100 × 0.20 + 200 × 0.10 = 40.00; list 75.00, discount 35.00.
    assert_eq!(
        (db.list_amount, db.discount, db.amount),
        (dec!(75.00), dec!(35.00), dec!(40.00))
    );
    assert_eq!(db.discount_funded_by, Some(Funder::Platform));
    // The partner is settled at list: fee 15.00, net 60.00; the
    // platform's markup is -35.00.
    assert_eq!(
        (db.markup, db.platform_fee, db.partner_net),
        (dec!(-35.00), dec!(15.00), dec!(60.00))
    );
    // cloud is untouched.
    assert_eq!(
        (s.lines[0].amount, s.lines[0].discount),
        (dec!(100.00), dec!(0))
    );
    assert_eq!(s.subtotal, dec!(140.00));
}

#[test]
fn a_partner_funded_negotiated_book_lowers_the_partner_net_by_the_discount() {
    let mut s = february();
    apply(
        &mut s,
        &with(vec![negotiated(1, graduated(), Funder::Partner)]),
    )
    .unwrap();
    let db = &s.lines[1];
    assert_eq!((db.discount, db.amount), (dec!(35.00), dec!(40.00)));
    // net 60.00 - 35.00 = 25.00; the platform keeps its 15.00 plus the
    // 35.00 it no longer owes: 50.00; markup -35.00.
    assert_eq!(
        (db.markup, db.platform_fee, db.partner_net),
        (dec!(-35.00), dec!(50.00), dec!(25.00))
    );
    assert_eq!(db.markup + db.platform_fee + db.partner_net, db.amount);
}

#[test]
fn a_negotiated_sku_is_not_also_percent_discounted() {
    let mut s = february();
    let c = with(vec![
        percent_all(1, dec!(10)),
        negotiated(2, graduated(), Funder::Platform),
    ]);
    apply(&mut s, &c).unwrap();
    // cloud: 10% of 100.00; dbco: the negotiated 40.00 only (not 36.00).
    assert_eq!(
        (s.lines[0].discount, s.lines[0].amount),
        (dec!(10.00), dec!(90.00))
    );
    assert_eq!(
        (s.lines[1].discount, s.lines[1].amount),
        (dec!(35.00), dec!(40.00))
    );
    assert_eq!(s.subtotal, dec!(130.00));
}

#[test]
fn a_negotiated_book_above_list_bills_list() {
    let mut s = february();
    let dear = PriceBook::new(PriceModel::per_unit(dec!(0.30)).unwrap());
    apply(&mut s, &with(vec![negotiated(1, dear, Funder::Platform)])).unwrap();
    let db = &s.lines[1];
    assert_eq!(
        (
            db.discount,
            db.amount,
            db.partner_net,
            db.discount_funded_by
        ),
        (dec!(0), dec!(75.00), dec!(60.00), None)
    );
}

#[test]
fn a_negotiated_book_applies_only_in_the_periods_its_term_covers_and_only_once_agreed() {
    let mut late = negotiated(1, graduated(), Funder::Platform);
    late.effective_from = day(3, 1);
    let mut s = february();
    let before = s.clone();
    apply(&mut s, &with(vec![late])).unwrap();
    assert_eq!(s, before);
    let mut unagreed = negotiated(1, graduated(), Funder::Partner);
    unagreed.partner_agreed_at = None;
    apply(&mut s, &with(vec![unagreed])).unwrap();
    assert_eq!(s, before);
}

#[test]
fn a_negotiated_book_is_validated_as_any_price_book() {
    let known = |_: &ProviderId, s: &Sku| s.as_str() != "dbco.nope";
    let bad_tiers = PriceBook::new(PriceModel::Graduated { tiers: vec![] });
    let err = with(vec![negotiated(1, bad_tiers, Funder::Platform)])
        .validate(&[], known)
        .unwrap_err();
    assert_eq!(err.code(), "invalid_price");
    let with_minimum = PriceBook {
        minimum_charge: Some(dec!(5)),
        ..graduated()
    };
    let err = with(vec![negotiated(1, with_minimum, Funder::Platform)])
        .validate(&[], known)
        .unwrap_err();
    assert_eq!(
        err,
        ContractError::InvalidPrice {
            index: 0,
            reason: "a negotiated price book prices usage: no minimum_charge or recurring_fee"
                .into()
        }
    );
    let mut two = negotiated(1, graduated(), Funder::Platform);
    two.scope = Scope::Skus {
        provider: provider("dbco"),
        skus: vec![sku("dbco.db"), sku("dbco.cache")],
    };
    let err = with(vec![two]).validate(&[], known).unwrap_err();
    assert_eq!(err.code(), "invalid_contract");
    let mut unknown = negotiated(1, graduated(), Funder::Platform);
    unknown.scope = Scope::Skus {
        provider: provider("dbco"),
        skus: vec![sku("dbco.nope")],
    };
    let err = with(vec![unknown]).validate(&[], known).unwrap_err();
    assert_eq!(err.code(), "unknown_sku");
    let mut outside = negotiated(1, graduated(), Funder::Platform);
    outside.effective_to = day(5, 1);
    let err = with(vec![outside]).validate(&[], known).unwrap_err();
    assert_eq!(err.code(), "term_outside_contract");
    assert_eq!(
        with(vec![negotiated(1, graduated(), Funder::Partner)]).validate(&[], known),
        Ok(())
    );
}

#[test]
fn a_contract_awaiting_its_partner_is_signed_only_once_every_partner_agreed() {
    let mut term = negotiated(4, graduated(), Funder::Partner);
    term.partner_agreed_at = None;
    let mut c = with(vec![percent_all(3, dec!(10)), term]);
    c.signed_at = None;
    assert_eq!(c.awaiting_partner(), vec![4]);
    // Unsigned, it is in force nowhere and bills nothing.
    assert!(!c.in_force_at(day(2, 1)));
    let mut s = february();
    let before = s.clone();
    apply(&mut s, &c).unwrap();
    assert_eq!(s, before);
    let err = c.sign(day(1, 5)).unwrap_err();
    assert_eq!((err.code(), c.signed_at), ("partner_not_agreed", None));
    c.terms[1].partner_agreed_at = Some(day(1, 6));
    assert_eq!(c.sign(day(1, 7)), Ok(()));
    assert_eq!(c.signed_at, Some(day(1, 7)));
    // Signing again changes nothing.
    assert_eq!(c.sign(day(1, 9)), Ok(()));
    assert_eq!(c.signed_at, Some(day(1, 7)));
    assert!(c.in_force_at(day(2, 1)));
}

/// The tiers of [`graduated`], as a volume book: 0.20 a unit up to 100
/// units, 0.10 a unit for all of them beyond.
fn volume() -> PriceBook {
    let PriceModel::Graduated { tiers } = graduated().model else {
        unreachable!()
    };
    PriceBook::new(PriceModel::Volume { tiers })
}

/// February's dbco.db usage over two list price versions (one line each):
/// 80 units at 0.25 = 20.00 (fee 4.00, net 16.00), then 70 at 0.30 =
/// 21.00 (fee 4.20, net 16.80).
fn two_versions() -> Statement {
    let version = |id: i64, from: DateTime<Utc>, price: Decimal, qty: Decimal| UsageAggregate {
        price_id: id,
        price_effective_from: from,
        ..agg("dbco", ProviderKind::Partner, "dbco.db", price, qty)
    };
    Statement::compute(
        AccountId::parse("acme").unwrap(),
        Period::new(day(2, 1), day(3, 1)).unwrap(),
        Currency::parse("USD").unwrap(),
        1,
        vec![
            version(1, day(1, 1), dec!(0.25), dec!(80)),
            version(2, day(2, 15), dec!(0.30), dec!(70)),
        ],
    )
    .unwrap()
}

/// Each line's (list_amount, discount, amount, markup, platform_fee,
/// partner_net).
fn money_of(s: &Statement) -> Vec<[Decimal; 6]> {
    s.lines
        .iter()
        .map(|l| {
            [
                l.list_amount,
                l.discount,
                l.amount,
                l.markup,
                l.platform_fee,
                l.partner_net,
            ]
        })
        .collect()
}

#[test]
fn a_negotiated_graduated_book_prices_the_skus_period_quantity_once_across_its_price_versions() {
    let mut s = two_versions();
    apply(
        &mut s,
        &with(vec![negotiated(1, graduated(), Funder::Platform)]),
    )
    .unwrap();
    // 150 units: 100 × 0.20 + 50 × 0.10 = 25.00 for the SKU (not 80 ×
    // 0.20 + 70 × 0.20 = 30.00, the first tier counted on each line). The
    // discount 41.00 - 25.00 = 16.00 is spread over the lines by their
    // price before the contract (20.00 and 21.00), largest remainder:
    // 7.80 and 8.20; each line bills 12.20 and 12.80.
    assert_eq!(
        money_of(&s),
        [
            [
                dec!(20.00),
                dec!(7.80),
                dec!(12.20),
                dec!(-7.80),
                dec!(4.00),
                dec!(16.00)
            ],
            [
                dec!(21.00),
                dec!(8.20),
                dec!(12.80),
                dec!(-8.20),
                dec!(4.20),
                dec!(16.80)
            ],
        ]
    );
    assert_eq!(s.subtotal, dec!(25.00));
    assert!(s
        .lines
        .iter()
        .all(|l| l.discount_funded_by == Some(Funder::Platform)));
}

#[test]
fn a_partner_funded_negotiated_book_spread_over_versions_lowers_each_lines_net_by_its_share() {
    let mut platform = two_versions();
    apply(
        &mut platform,
        &with(vec![negotiated(1, graduated(), Funder::Platform)]),
    )
    .unwrap();
    let mut s = two_versions();
    apply(
        &mut s,
        &with(vec![negotiated(1, graduated(), Funder::Partner)]),
    )
    .unwrap();
    // The customer's side is the platform-funded one's; each line's fee
    // rises and net falls by its share (7.80, 8.20).
    let customer = |s: &Statement| {
        money_of(s)
            .iter()
            .map(|m| m[..4].to_vec())
            .collect::<Vec<_>>()
    };
    assert_eq!(customer(&s), customer(&platform));
    assert_eq!(
        s.lines
            .iter()
            .map(|l| (l.platform_fee, l.partner_net, l.discount_funded_by))
            .collect::<Vec<_>>(),
        [
            (dec!(11.80), dec!(8.20), Some(Funder::Partner)),
            (dec!(12.40), dec!(8.60), Some(Funder::Partner))
        ]
    );
    // dbco is owed 16.80 for the SKU: 32.80 at list less the 16.00 it funds.
    assert_eq!(s.lines[0].partner_net + s.lines[1].partner_net, dec!(16.80));
}

#[test]
fn a_negotiated_volume_book_reaches_its_tier_on_the_skus_period_quantity() {
    let mut s = two_versions();
    apply(
        &mut s,
        &with(vec![negotiated(1, volume(), Funder::Platform)]),
    )
    .unwrap();
    // 150 units are all at the second tier: 15.00 (each line alone, 80 and
    // 70 units, would stay in the first: 16.00 + 14.00). Discount 26.00
    // over 20.00 and 21.00: 12.68 and 13.32.
    assert_eq!(
        s.lines
            .iter()
            .map(|l| (l.discount, l.amount))
            .collect::<Vec<_>>(),
        [(dec!(12.68), dec!(7.32)), (dec!(13.32), dec!(7.68))]
    );
    assert_eq!(s.subtotal, dec!(15.00));
}

#[test]
fn a_negotiated_book_prices_the_usage_of_all_the_skus_bound_resources_together() {
    let resource = |name: &str| crate::statement::ResourceRef {
        binding: crate::BindingId::parse(&format!("b-{name}")).unwrap(),
        name: name.into(),
        plan: "PS-10".into(),
    };
    let on = |name: &str, qty: Decimal| UsageAggregate {
        resource: Some(resource(name)),
        ..agg("dbco", ProviderKind::Partner, "dbco.db", dec!(0.25), qty)
    };
    let mut s = Statement::compute(
        AccountId::parse("acme").unwrap(),
        Period::new(day(2, 1), day(3, 1)).unwrap(),
        Currency::parse("USD").unwrap(),
        1,
        vec![on("alpha", dec!(60)), on("beta", dec!(90))],
    )
    .unwrap();
    apply(
        &mut s,
        &with(vec![negotiated(1, graduated(), Funder::Platform)]),
    )
    .unwrap();
    // 150 units over both resources: 25.00 (not 12.00 + 18.00); the
    // discount 37.50 - 25.00 = 12.50 spread over 15.00 and 22.50.
    assert_eq!(
        s.lines
            .iter()
            .map(|l| (
                l.resource.as_ref().unwrap().name.as_str(),
                l.discount,
                l.amount
            ))
            .collect::<Vec<_>>(),
        [
            ("alpha", dec!(5.00), dec!(10.00)),
            ("beta", dec!(7.50), dec!(15.00))
        ]
    );
    assert_eq!(s.subtotal, dec!(25.00));
}

#[test]
fn a_negotiated_book_above_the_skus_list_total_bills_list_on_every_line() {
    // 150 units at 0.30 = 45.00 > 41.00 at list: no line is discounted.
    let mut s = two_versions();
    let before = s.clone();
    let dear = PriceBook::new(PriceModel::per_unit(dec!(0.30)).unwrap());
    apply(&mut s, &with(vec![negotiated(1, dear, Funder::Platform)])).unwrap();
    assert_eq!(s, before);
}

proptest::proptest! {
    /// Whatever the SKU's lines (price versions, quantities, markup), the
    /// customer pays the book's charge for their total quantity (or list,
    /// when that is less), exactly, and no line's discount is negative or
    /// more than its price before the contract.
    #[test]
    fn a_negotiated_sku_bills_the_books_charge_of_its_total_quantity_exactly(
        versions in proptest::collection::vec((1u32..60, 0u32..500, 0u32..3), 1..5),
        funded_by_partner in proptest::bool::ANY,
    ) {
        let funder = if funded_by_partner { Funder::Partner } else { Funder::Platform };
        let aggs = versions
            .iter()
            .enumerate()
            .map(|(i, (cents, qty, markup))| UsageAggregate {
                price_id: i64::try_from(i).unwrap() + 1,
                price_effective_from: day(1, 1) + chrono::Duration::days(i64::try_from(i).unwrap()),
                markup_pct: Decimal::from(*markup * 5),
                ..agg("dbco", ProviderKind::Partner, "dbco.db", Decimal::new(i64::from(*cents), 2), Decimal::from(*qty))
            })
            .collect();
        let mut s = Statement::compute(
            AccountId::parse("acme").unwrap(),
            Period::new(day(2, 1), day(3, 1)).unwrap(),
            Currency::parse("USD").unwrap(),
            1,
            aggs,
        )
        .unwrap();
        let before = s.subtotal;
        let quantity: Decimal = s.lines.iter().map(|l| l.quantity).sum();
        apply(&mut s, &with(vec![negotiated(1, graduated(), funder)])).unwrap();
        let usd = Currency::parse("USD").unwrap();
        let book = usd.round(graduated().charges(quantity, usd).unwrap().usage);
        proptest::prop_assert_eq!(s.subtotal, before.min(book));
        for l in &s.lines {
            proptest::prop_assert!(l.discount >= Decimal::ZERO && l.amount >= Decimal::ZERO);
            proptest::prop_assert_eq!(l.amount, l.markup + l.platform_fee + l.partner_net);
        }
    }
}
