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
        price_book: None,
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
        signed_at: Some(day(1, 1)),
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
    // 123.45 (markup 12.34, fee 12.35, net 98.76) × 12.5% = 15.43125 → 15.43
    let d = discount(dec!(123.45), dec!(12.34), dec!(12.35), dec!(98.76), &t, usd).unwrap();
    assert_eq!(d.discount, dec!(15.43));
    assert_eq!(d.amount, dec!(108.02));
    assert_eq!(d.markup, dec!(-3.09));
    assert_eq!(d.platform_fee, dec!(12.35));
    assert_eq!(d.partner_net, dec!(98.76));
    assert_eq!(d.markup + d.platform_fee + d.partner_net, d.amount);
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
    let d = discount(dec!(80.05), dec!(0), dec!(16.01), dec!(64.04), &t, usd).unwrap();
    assert_eq!(d.discount, dec!(8.01));
    assert_eq!(d.amount, dec!(72.04));
    assert_eq!(d.partner_net, dec!(56.03));
    assert_eq!(d.platform_fee, dec!(24.02));
    assert_eq!(d.markup, dec!(-8.01));
    // The platform keeps 16.01 (markup + platform fee) before and after.
    assert_eq!(d.markup + d.platform_fee, dec!(16.01));
    assert_eq!(d.markup + d.platform_fee + d.partner_net, d.amount);
}

#[test]
fn a_protected_account_is_priced_as_at_signature_inside_the_term_only() {
    let mut c = contract(vec![], vec![]);
    c.signed_at = Some(day(1, 10));
    let all = [c.clone()];
    assert_eq!(Contract::protected_price_time(&all, day(2, 1)), None);
    c.price_protection = true;
    let all = [c];
    assert_eq!(
        Contract::protected_price_time(&all, day(2, 1)),
        Some(day(1, 10))
    );
    // Before the signature, usage is priced at its time; after the term too.
    assert_eq!(Contract::protected_price_time(&all, day(1, 5)), None);
    assert_eq!(Contract::protected_price_time(&all, day(4, 1)), None);
}

#[test]
fn a_partner_price_change_needs_the_platforms_notice() {
    let notice = chrono::Duration::days(30);
    let now = day(1, 1);
    assert!(gives_notice(now, day(1, 31), notice, true, true));
    assert!(!gives_notice(now, day(1, 30), notice, true, true));
    // A first version, or a first-party provider's, needs none.
    assert!(gives_notice(now, now, notice, true, false));
    assert!(gives_notice(now, now, notice, false, true));
    assert!(gives_notice(now, now, chrono::Duration::zero(), true, true));
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

mod statement {
    use super::*;
    use crate::contract::pricing::apply;
    use crate::statement::{LineKind, ProviderKind, ProviderRef, Statement, UsageAggregate};
    use crate::{AccountId, Period, PriceModel};

    pub(super) fn agg(
        p: &str,
        kind: ProviderKind,
        sku_: &str,
        price: Decimal,
        qty: Decimal,
    ) -> UsageAggregate {
        UsageAggregate {
            provider: ProviderRef {
                id: provider(p),
                name: p.into(),
                kind,
            },
            sku: sku(sku_),
            sku_name: sku_.into(),
            unit: "unit".into(),
            price_id: 1,
            price_effective_from: day(1, 1),
            model: PriceModel::per_unit(price).unwrap().into(),
            quantity: qty,
            event_count: 1,
            markup_pct: dec!(10),
            platform_fee_pct: dec!(20),
            resource: None,
            included: Decimal::ZERO,
        }
    }

    fn february(aggregates: Vec<UsageAggregate>) -> Statement {
        Statement::compute(
            AccountId::parse("acme").unwrap(),
            Period::new(day(2, 1), day(3, 1)).unwrap(),
            Currency::parse("USD").unwrap(),
            1,
            aggregates,
        )
        .unwrap()
    }

    #[test]
    fn a_contract_discounts_its_lines_and_trues_up_a_short_month() {
        // cloud (first party): 1000 × 0.10 = 100.00 list, +10% = 110.00.
        // dbco (partner, fee 20%): 300 × 0.25 = 75.00 list, +10% = 82.50;
        // fee 15.00, net 60.00, markup 7.50.
        let mut s = february(vec![
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
        ]);
        assert_eq!(s.subtotal, dec!(192.50));
        let c = contract(
            vec![
                term(1, Scope::All, dec!(5), Funder::Platform),
                term(
                    2,
                    Scope::Provider {
                        provider: provider("dbco"),
                    },
                    dec!(20),
                    Funder::Partner,
                ),
            ],
            vec![monthly(dec!(250))],
        );
        apply(&mut s, &c).unwrap();
        let cloud = &s.lines[0];
        // 110.00 × 5% = 5.50, platform-funded.
        assert_eq!(
            (cloud.discount, cloud.amount, cloud.discount_funded_by),
            (dec!(5.50), dec!(104.50), Some(Funder::Platform))
        );
        let dbco = &s.lines[1];
        // 82.50 × 20% = 16.50, partner-funded: net 60.00 - 16.50 = 43.50.
        assert_eq!(
            (
                dbco.discount,
                dbco.amount,
                dbco.partner_net,
                dbco.platform_fee
            ),
            (dec!(16.50), dec!(66.00), dec!(43.50), dec!(31.50))
        );
        assert_eq!(dbco.list_amount, dec!(75.00));
        // Net 104.50 + 66.00 = 170.50, short of 250 by 79.50.
        let true_up = &s.lines[2];
        assert_eq!(true_up.kind, LineKind::CommitmentTrueUp);
        assert_eq!(
            (true_up.amount, true_up.platform_fee, true_up.partner_net),
            (dec!(79.50), dec!(79.50), dec!(0))
        );
        assert_eq!(s.lines.len(), 3);
        assert_eq!(s.subtotal, dec!(250.00));
        assert_eq!(s.total, dec!(250.00));
        for l in &s.lines {
            assert_eq!(l.markup + l.platform_fee + l.partner_net, l.amount);
        }
    }

    #[test]
    fn a_month_beyond_its_commitment_has_no_true_up_and_no_contract_changes_nothing() {
        let usage = || {
            vec![agg(
                "cloud",
                ProviderKind::FirstParty,
                "cloud.vm",
                dec!(0.10),
                dec!(3000),
            )]
        };
        let mut s = february(usage());
        apply(&mut s, &contract(vec![], vec![monthly(dec!(250))])).unwrap();
        assert_eq!((s.lines.len(), s.subtotal), (1, dec!(330.00)));
        // A contract not in force at the period's start does nothing.
        let mut later = contract(vec![], vec![]);
        later.starts_at = day(3, 1);
        later.ends_at = day(4, 1);
        later.commitments = vec![Commitment {
            starts_at: day(3, 1),
            ..monthly(dec!(1000))
        }];
        let mut s = february(usage());
        let before = s.clone();
        apply(&mut s, &later).unwrap();
        assert_eq!(s, before);
    }

    #[test]
    fn a_prepaid_commitment_draws_down_the_true_up_too() {
        use crate::credits::{Eligibility, Grant, GrantKind, UsageHours};
        // 110.00 of cloud usage (its price has id 1, as the commitment has).
        let mut s = february(vec![agg(
            "cloud",
            ProviderKind::FirstParty,
            "cloud.vm",
            dec!(0.10),
            dec!(1000),
        )]);
        apply(&mut s, &contract(vec![], vec![monthly(dec!(250))])).unwrap();
        assert_eq!(s.lines[1].amount, dec!(140.00));
        let prepaid = Grant {
            id: 9,
            name: "prepaid commitment".into(),
            kind: GrantKind::Prepaid {
                cost_basis: dec!(1000),
            },
            priority: 100,
            effective_at: day(2, 1),
            expires_at: Some(day(2, 10)),
            eligibility: Eligibility::AllUsage,
            remaining: dec!(1000),
            cap_per_period: None,
        };
        // The usage's hours fall after the grant expired; the true-up is
        // not cut by them (its id is a commitment's, not a price's): it is
        // one slice at the period's start, which the grant pays.
        let mut hours = UsageHours::new();
        hours.insert((day(2, 1), 1), vec![(day(2, 20), Decimal::ONE)]);
        s.apply_credits(&[prepaid], &hours).unwrap();
        assert_eq!((s.credits_total, s.total), (dec!(140.00), dec!(110.00)));
    }

    mod longer_commitments {
        use super::*;
        use crate::contract::commitments::{
            billing_periods, earlier_periods, net_spend, true_up_windows, window_ends_to_adjust,
        };
        use crate::AnchorDay;
        use std::collections::BTreeMap;

        fn quarterly(minimum: Decimal) -> Commitment {
            Commitment {
                id: 2,
                cadence: Cadence::Quarter,
                ..monthly(minimum)
            }
        }

        fn month(m: u32) -> Period {
            Period::new(day(m, 1), day(m + 1, 1)).unwrap()
        }

        fn march(qty: Decimal) -> Statement {
            Statement::compute(
                AccountId::parse("acme").unwrap(),
                month(3),
                Currency::parse("USD").unwrap(),
                1,
                vec![agg(
                    "cloud",
                    ProviderKind::FirstParty,
                    "cloud.vm",
                    dec!(0.10),
                    qty,
                )],
            )
            .unwrap()
        }

        #[test]
        fn a_quarter_is_trued_up_on_its_last_month_over_all_three() {
            let c = contract(
                vec![term(1, Scope::All, dec!(10), Funder::Platform)],
                vec![quarterly(dec!(500))],
            );
            let anchor = AnchorDay::CALENDAR;
            assert_eq!(
                earlier_periods(&c, month(3), anchor),
                vec![month(1), month(2)]
            );
            assert!(earlier_periods(&c, month(1), anchor).is_empty());
            assert!(earlier_periods(&c, month(2), anchor).is_empty());
            // March: 1000 × 0.10 = 100.00 list, +10% = 110.00, -10% = 99.00.
            let mut s = march(dec!(1000));
            apply(&mut s, &c).unwrap();
            assert_eq!(s.lines.len(), 1, "apply trues up monthly periods only");
            // January spent 120.40; February had no usage (absent: 0).
            let earlier = BTreeMap::from([(day(1, 1), dec!(120.40))]);
            true_up_windows(&mut s, &c, &earlier).unwrap();
            // 500 - (120.40 + 0 + 99.00) = 280.60.
            assert_eq!(s.lines.len(), 2);
            let t = &s.lines[1];
            assert_eq!(
                (t.kind, t.price_id, t.amount, t.platform_fee, t.partner_net),
                (
                    LineKind::CommitmentTrueUp,
                    2,
                    dec!(280.60),
                    dec!(280.60),
                    dec!(0)
                )
            );
            assert_eq!(s.subtotal, dec!(379.60));
            assert_eq!(net_spend(&s.lines).unwrap(), dec!(99.00));
        }

        #[test]
        fn a_quarter_spent_in_full_and_a_month_not_ending_it_have_no_true_up() {
            let c = contract(vec![], vec![quarterly(dec!(500))]);
            let mut s = march(dec!(1000));
            let earlier = BTreeMap::from([(day(1, 1), dec!(300)), (day(2, 1), dec!(90))]);
            // 300 + 90 + 110.00 = 500.00: nothing short.
            true_up_windows(&mut s, &c, &earlier).unwrap();
            assert_eq!((s.lines.len(), s.subtotal), (1, dec!(110.00)));
            let mut feb = february(vec![]);
            true_up_windows(&mut feb, &c, &earlier).unwrap();
            assert_eq!((feb.lines.len(), feb.subtotal), (0, dec!(0)));
            // A quarter with no usage at all bills its whole minimum.
            let mut empty = march(dec!(0));
            empty.lines.clear();
            empty.sum_up().unwrap();
            true_up_windows(&mut empty, &c, &BTreeMap::new()).unwrap();
            assert_eq!(empty.subtotal, dec!(500.00));
        }

        #[test]
        fn a_year_reads_its_eleven_earlier_months() {
            let mut c = contract(vec![], vec![]);
            c.ends_at = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap();
            c.commitments = vec![Commitment {
                cadence: Cadence::Year,
                ends_at: c.ends_at,
                ..monthly(dec!(1))
            }];
            let december = Period::new(day(12, 1), c.ends_at).unwrap();
            let earlier = earlier_periods(&c, december, AnchorDay::CALENDAR);
            assert_eq!(earlier.len(), 11);
            assert_eq!((earlier[0], earlier[10]), (month(1), month(11)));
        }

        #[test]
        fn commitments_must_start_and_end_on_billing_period_boundaries() {
            let mut c = contract(vec![], vec![quarterly(dec!(500))]);
            assert_eq!(c.check_commitment_periods(AnchorDay::CALENDAR), Ok(()));
            c.commitments[0].starts_at = day(1, 15);
            let err = c.check_commitment_periods(AnchorDay::CALENDAR).unwrap_err();
            assert_eq!(err.code(), "invalid_contract");
            assert!(
                err.to_string().contains("billing period boundaries"),
                "{err}"
            );
            c.commitments[0].ends_at = day(4, 15);
            let fifteenth = AnchorDay::new(15).unwrap();
            assert_eq!(c.check_commitment_periods(fifteenth), Ok(()));
            assert_eq!(
                billing_periods(day(1, 15), day(4, 15), fifteenth),
                vec![
                    Period::new(day(1, 15), day(2, 15)).unwrap(),
                    Period::new(day(2, 15), day(3, 15)).unwrap(),
                    Period::new(day(3, 15), day(4, 15)).unwrap(),
                ]
            );
        }

        #[test]
        fn late_usage_of_a_quarters_month_adjusts_its_sealed_last_month() {
            let c = contract(vec![], vec![quarterly(dec!(500)), monthly(dec!(100))]);
            let anchor = AnchorDay::CALENDAR;
            // Billed on April: March ended the quarter and is sealed.
            assert_eq!(
                window_ends_to_adjust(&c, month(1), day(4, 1), anchor),
                vec![month(3)]
            );
            // Billed on March: its own statement trues the quarter up.
            assert!(window_ends_to_adjust(&c, month(1), day(3, 1), anchor).is_empty());
            // March's late usage adjusts March itself; months trued up alone too.
            assert!(window_ends_to_adjust(&c, month(3), day(4, 1), anchor).is_empty());
        }
    }
}

#[path = "negotiated_tests.rs"]
mod negotiated;
