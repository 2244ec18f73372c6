use super::*;
use crate::{PriceBook, PriceModel, ProviderId, Quantity, Sku};
use chrono::TimeZone;
use chrono::Utc;
use proptest::prelude::*;
use rust_decimal_macros::dec;

fn provider(id: &str, name: &str, kind: ProviderKind) -> ProviderRef {
    ProviderRef {
        id: ProviderId::parse(id).unwrap(),
        name: name.into(),
        kind,
    }
}

fn agg(p: &ProviderRef, sku: &str, price: Decimal, qty: Decimal) -> UsageAggregate {
    UsageAggregate {
        provider: p.clone(),
        sku: Sku::parse(sku).unwrap(),
        sku_name: sku.into(),
        unit: "unit".into(),
        price_id: 1,
        price_effective_from: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        model: PriceModel::per_unit(price).unwrap().into(),
        quantity: qty,
        event_count: 1,
        markup_pct: Decimal::ZERO,
        platform_fee_pct: dec!(20),
        resource: None,
        included: Decimal::ZERO,
    }
}

fn statement(aggs: Vec<UsageAggregate>) -> Statement {
    Statement::compute(
        AccountId::parse("acme").unwrap(),
        Period::parse_month("2026-11").unwrap(),
        Currency::parse("USD").unwrap(),
        1,
        aggs,
    )
    .unwrap()
}

#[test]
fn platform_comes_first_then_partners_by_name() {
    let platform = provider("platform", "Zeta Cloud", ProviderKind::FirstParty);
    let alpha = provider("zz-alpha", "Alpha DB", ProviderKind::Partner);
    let beta = provider("aa-beta", "Beta Queue", ProviderKind::Partner);
    let s = statement(vec![
        agg(&beta, "beta.msgs", dec!(1), dec!(1)),
        agg(&platform, "vm.hours", dec!(1), dec!(1)),
        agg(&alpha, "alpha.gb", dec!(1), dec!(1)),
    ]);
    let order: Vec<_> = s
        .subtotals
        .iter()
        .map(|t| t.provider.name.as_str())
        .collect();
    assert_eq!(order, ["Zeta Cloud", "Alpha DB", "Beta Queue"]);
}

#[test]
fn each_line_is_rounded_once_and_the_total_sums_rounded_lines() {
    let p = provider("platform", "Platform", ProviderKind::FirstParty);
    // 3 × 0.3335 = 1.0005 → 1.00; 1 × 0.005 = 0.005 → 0.01
    let s = statement(vec![
        agg(&p, "a", dec!(0.3335), dec!(3)),
        agg(&p, "b", dec!(0.005), dec!(1)),
    ]);
    let amounts: Vec<_> = s.lines.iter().map(|l| l.amount).collect();
    assert_eq!(amounts, vec![dec!(1.00), dec!(0.01)]);
    assert_eq!(s.total, dec!(1.01));
    assert_eq!(s.subtotals[0].amount, dec!(1.01));
}

#[test]
fn partner_lines_split_into_list_markup_fee_and_net() {
    let partner = provider("dbco", "DB Co", ProviderKind::Partner);
    let mut a = agg(&partner, "db.hour", dec!(0.2475), dec!(10));
    a.markup_pct = dec!(10);
    a.model = PriceBook {
        minimum_charge: Some(dec!(5)),
        recurring_fee: Some(dec!(1.50)),
        ..a.model
    };
    let s = statement(vec![a]);
    let view: Vec<_> = s
        .lines
        .iter()
        .map(|l| {
            (
                l.kind,
                l.amount,
                l.list_amount,
                l.markup,
                l.platform_fee,
                l.partner_net,
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            // 2.475 list; ×1.1 = 2.7225 → 2.72; fee 20% of 2.48 = 0.496 → 0.50
            (
                LineKind::Usage,
                dec!(2.72),
                dec!(2.48),
                dec!(0.24),
                dec!(0.50),
                dec!(1.98)
            ),
            (
                LineKind::RecurringFee,
                dec!(1.65),
                dec!(1.50),
                dec!(0.15),
                dec!(0.30),
                dec!(1.20)
            ),
            // 5 - 2.48 (the usage line as billed) = 2.52 list, so list
            // usage and true-up make exactly the 5.00 minimum (2.525 →
            // 2.53 made 5.01); ×1.1 = 2.772 → 2.77; fee 0.504 → 0.50
            (
                LineKind::MinimumTrueUp,
                dec!(2.77),
                dec!(2.52),
                dec!(0.25),
                dec!(0.50),
                dec!(2.02)
            ),
        ]
    );
    assert_eq!(s.total, dec!(7.14));
}

#[test]
fn a_statement_with_tiered_lines_survives_a_json_round_trip() {
    let p = provider("dbco", "DB Co", ProviderKind::Partner);
    let mut a = agg(&p, "tiered", dec!(1), dec!(10));
    a.model = PriceBook::new(PriceModel::Volume {
        tiers: vec![crate::pricing::Tier {
            up_to: None,
            unit_price: dec!(1),
            flat_fee: Decimal::ZERO,
        }],
    });
    let s = statement(vec![a]);
    assert_eq!(s.lines[0].unit_price, None);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Statement>(&json).unwrap(), s);
}

#[test]
fn first_party_lines_are_all_platform_revenue() {
    let platform = provider("cloud", "Cloud", ProviderKind::FirstParty);
    let s = statement(vec![agg(&platform, "vm", dec!(1), dec!(3))]);
    let l = &s.lines[0];
    assert_eq!((l.platform_fee, l.partner_net), (dec!(3), dec!(0)));
}

#[test]
fn adjustments_bill_the_difference_and_merge_back_to_the_whole() {
    let partner = provider("dbco", "DB Co", ProviderKind::Partner);
    let origin = Period::parse_month("2026-10").unwrap();
    // Billed: 10 units at 0.2475 under a 5.00 minimum (a true-up line).
    let mut small = agg(&partner, "db", dec!(0.2475), dec!(10));
    small.model.minimum_charge = Some(dec!(5));
    let billed = statement(vec![small.clone()]).lines;
    assert_eq!(billed.len(), 2);
    // Late usage: 20 more units lift usage above the minimum.
    let mut big = small;
    big.quantity = dec!(30);
    big.event_count = 3;
    let current = statement(vec![big]).lines;
    assert_eq!(current.len(), 1);
    let adj = adjustment_lines(origin, &current, &billed).unwrap();
    let got: Vec<_> = adj
        .iter()
        .map(|l| {
            (
                l.kind,
                l.quantity,
                l.event_count,
                l.amount,
                l.partner_net,
                l.adjusts,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            // 7.425 → 7.43 billed now, 2.475 → 2.48 before: 4.95 more.
            (
                LineKind::Usage,
                dec!(20),
                2,
                dec!(4.95),
                dec!(3.96),
                Some(origin)
            ),
            // The true-up (5 - 2.48 as billed = 2.52) is no longer due.
            (
                LineKind::MinimumTrueUp,
                dec!(-1),
                0,
                dec!(-2.52),
                dec!(-2.02),
                Some(origin)
            ),
        ]
    );
    let merged = merge_billed(&billed, &adj).unwrap();
    assert_eq!(merged.len(), 1);
    assert_eq!(
        (
            merged[0].quantity,
            merged[0].amount,
            merged[0].partner_net,
            merged[0].adjusts
        ),
        (
            current[0].quantity,
            current[0].amount,
            current[0].partner_net,
            None
        )
    );
    // Nothing new: no adjustment.
    assert!(adjustment_lines(origin, &current, &merged)
        .unwrap()
        .is_empty());
}

#[test]
fn a_charge_that_overflows_is_an_error_not_a_panic() {
    let p = provider("dbco", "DB Co", ProviderKind::Partner);
    let compute = |a: UsageAggregate| {
        Statement::compute(
            AccountId::parse("acme").unwrap(),
            Period::parse_month("2026-11").unwrap(),
            Currency::parse("USD").unwrap(),
            1,
            vec![a],
        )
    };
    // The largest quantity at a price whose product does not fit.
    let huge = agg(&p, "db", dec!(100_000_000_000_000), Quantity::MAX);
    assert_eq!(
        compute(huge),
        Err(StatementError::Pricing(PricingError::Overflow))
    );
    // A price that fits, under a markup that does not.
    let mut marked_up = agg(&p, "db", dec!(1), dec!(1));
    marked_up.markup_pct = Decimal::MAX;
    assert_eq!(
        compute(marked_up),
        Err(StatementError::Money(MoneyError::Overflow))
    );
    // A list amount that fits, but not with a 10 % markup on top.
    let mut near_max = agg(&p, "db", Decimal::MAX, dec!(1));
    near_max.markup_pct = dec!(10);
    assert_eq!(
        compute(near_max),
        Err(StatementError::Money(MoneyError::Overflow))
    );
}

#[test]
fn an_event_is_billable_when_its_charge_fits_on_its_own() {
    let usd = Currency::parse("USD").unwrap();
    let book: PriceBook = PriceModel::per_unit(dec!(100_000_000_000_000))
        .unwrap()
        .into();
    assert_eq!(check_billable(&book, dec!(2.5), dec!(10), usd), Ok(()));
    assert_eq!(
        check_billable(&book, Quantity::MAX, Decimal::ZERO, usd),
        Err(StatementError::Pricing(PricingError::Overflow))
    );
    // 1e26 a unit fits, but not under a 1,000 % markup.
    let costly: PriceBook = PriceModel::per_unit(Decimal::from_i128_with_scale(10_i128.pow(26), 0))
        .unwrap()
        .into();
    assert_eq!(check_billable(&costly, dec!(1), Decimal::ZERO, usd), Ok(()));
    assert_eq!(
        check_billable(&costly, dec!(1), dec!(1000), usd),
        Err(StatementError::Money(MoneyError::Overflow))
    );
}

#[test]
fn an_adjustment_that_overflows_is_an_error_not_a_panic() {
    let p = provider("dbco", "DB Co", ProviderKind::Partner);
    let origin = Period::parse_month("2026-10").unwrap();
    let mut current = statement(vec![agg(&p, "db", dec!(1), dec!(1))]).lines;
    current[0].amount = Decimal::MAX;
    let mut billed = current.clone();
    billed[0].amount = dec!(-1);
    assert_eq!(
        adjustment_lines(origin, &current, &billed),
        Err(MoneyError::Overflow)
    );
    let mut adjustment = current.clone();
    adjustment[0].adjusts = Some(origin);
    assert_eq!(
        merge_billed(&current, &adjustment),
        Err(MoneyError::Overflow)
    );
}

/// A month of a bound database (activated Nov 2 10:37 on PS-10, moved
/// to PS-20 Nov 5 14:05, suspended Nov 9, deleted Nov 20) and 30 GB of
/// its storage, beside unbound first-party usage. Expected amounts are
/// worked out by hand below, not by the code under test.
#[test]
fn a_bound_resources_lines_are_grouped_with_prorated_fees_and_allowance() {
    use crate::binding::{Actor, BindingStatus as S, PlanChange, StatusChange};
    use crate::plan::{active_spans, allowance, apply_allowance, plan_fees, PlanVersion};
    use crate::{BindingId, PlanId};
    use std::collections::BTreeMap;
    let t = |d, h, m| Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).unwrap();
    let usd = Currency::parse("USD").unwrap();
    let storage = Sku::parse("dbco.storage-gb").unwrap();
    let version = |id, plan: &str, name: &str, fee, gb| PlanVersion {
        id,
        plan: PlanId::parse(plan).unwrap(),
        name: name.into(),
        currency: usd,
        effective_from: t(1, 0, 0),
        base_fee: fee,
        allowances: BTreeMap::from([(storage.clone(), gb)]),
    };
    let mut versions = BTreeMap::new();
    versions.insert(
        PlanId::parse("dbco.ps-10").unwrap(),
        vec![version(1, "dbco.ps-10", "PS-10", dec!(39), dec!(10))],
    );
    versions.insert(
        PlanId::parse("dbco.ps-20").unwrap(),
        vec![version(2, "dbco.ps-20", "PS-20", dec!(72), dec!(25))],
    );
    let change = |at, to| StatusChange {
        at,
        from: None,
        to,
        by: Actor::Provider,
        message: None,
    };
    let history = [
        change(t(2, 0, 0), S::Requested),
        change(t(2, 10, 37), S::Active),
        change(t(9, 0, 0), S::Suspended),
        change(t(20, 8, 30), S::Deleted),
    ];
    let plans = [
        PlanChange {
            at: t(2, 0, 0),
            plan: PlanId::parse("dbco.ps-10").unwrap(),
        },
        PlanChange {
            at: t(5, 14, 5),
            plan: PlanId::parse("dbco.ps-20").unwrap(),
        },
    ];
    let november = Period::parse_month("2026-11").unwrap();
    let fees = plan_fees(&active_spans(&history, &plans), &versions, usd, november).unwrap();
    let dbco = provider("dbco", "DB Co", ProviderKind::Partner);
    let resource = ResourceRef {
        binding: BindingId::parse("bnd_1").unwrap(),
        name: "prod-db".into(),
        plan: "PS-20".into(),
    };
    let mut used = agg(&dbco, "dbco.storage-gb", dec!(0.50), dec!(30));
    used.resource = Some(resource.clone());
    used.included = apply_allowance(allowance(&fees, &storage), &[dec!(30)])[0].included;
    let platform = provider("platform", "Platform", ProviderKind::FirstParty);
    let inputs = fees
        .into_iter()
        .map(|fee| PlanFeeInput {
            provider: dbco.clone(),
            resource: resource.clone(),
            fee,
            platform_fee_pct: dec!(20),
        })
        .collect();
    let s = Statement::compute_with_plans(
        AccountId::parse("acme").unwrap(),
        november,
        usd,
        1,
        vec![used, agg(&platform, "vm.hours", dec!(0.10), dec!(10))],
        inputs,
    )
    .unwrap();
    let view: Vec<_> = s
        .lines
        .iter()
        .map(|l| {
            (
                l.kind.as_str(),
                l.resource.as_ref().map(ResourceRef::label),
                l.quantity,
                l.amount,
                l.platform_fee,
            )
        })
        .collect();
    let db = Some("prod-db · PS-20".to_owned());
    // PS-10: hours from the one starting Nov 2 10:00 through the one
    // starting Nov 5 13:00: 14 + 24 + 24 + 14 = 76; 39 × 76 / 720 =
    // 4.1166… → 4.12 (platform 20 %: 0.824 → 0.82). PS-20: Nov 5 14:00
    // (the changeover hour goes to the new plan) to the suspension on
    // Nov 9 00:00: 10 + 72 = 82 h; 72 × 82 / 720 = 8.20 (1.64).
    // Storage: 25 GB included by PS-20 (the plan it ended on), 5 GB
    // beyond at 0.50 = 2.50 (0.50).
    assert_eq!(
        view,
        [
            ("usage", None, dec!(10), dec!(1.00), dec!(1.00)),
            ("plan_fee", db.clone(), dec!(76), dec!(4.12), dec!(0.82)),
            ("plan_fee", db.clone(), dec!(82), dec!(8.20), dec!(1.64)),
            ("allowance", db.clone(), dec!(25), dec!(0), dec!(0)),
            ("usage", db.clone(), dec!(5), dec!(2.50), dec!(0.50)),
        ]
    );
    assert_eq!(s.total, dec!(15.82));
    assert_eq!(s.lines[1].description, "PS-10 plan — 76 of 720 hours");
    assert_eq!(
        s.lines[3].description,
        "dbco.storage-gb — included in PS-20"
    );
    let subtotals: Vec<_> = s.subtotals.iter().map(|t| t.amount).collect();
    assert_eq!(subtotals, [dec!(1.00), dec!(14.82)]);
}

#[test]
fn statements_without_resources_serialize_as_before() {
    let p = provider("platform", "Platform", ProviderKind::FirstParty);
    let s = statement(vec![agg(&p, "a", dec!(1), dec!(1))]);
    let json = serde_json::to_value(&s).unwrap();
    assert!(json["lines"][0].get("resource").is_none());
    assert_eq!(json["lines"][0]["kind"], "usage");
}

proptest! {
    #[test]
    fn statement_does_not_depend_on_aggregate_order(
        qtys in proptest::collection::vec(0u32..100_000, 1..6),
        seed in any::<u64>(),
    ) {
        let p = provider("platform", "Platform", ProviderKind::FirstParty);
        let q = provider("partner", "Partner", ProviderKind::Partner);
        let aggs: Vec<_> = qtys.iter().enumerate().map(|(i, n)| {
            let who = if i % 2 == 0 { &p } else { &q };
            agg(who, &format!("sku{i}"), dec!(0.0137), Decimal::new(i64::from(*n), 3))
        }).collect();
        let mut shuffled = aggs.clone();
        let len = shuffled.len();
        shuffled.rotate_left((seed as usize) % len);
        shuffled.reverse();
        prop_assert_eq!(statement(aggs), statement(shuffled));
    }
}
