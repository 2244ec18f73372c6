//! A bound resource's month, rated against a real PostgreSQL: provisioned,
//! activated, used, moved to another plan, suspended and deleted inside
//! November. The statement's lines per resource, its plan-fee proration and
//! allowance are checked against amounts computed here independently (hours
//! counted one by one, rounding done by hand).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{acme_event, database};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use rust_decimal_macros::dec;
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_domain::binding::{Actor, BindingEvent};
use tally_domain::{
    AccountId, BindingId, Currency, PlanId, PriceModel, ProviderId, ProviderKind, ResourceType,
    Sku, Statement,
};
use tally_platform::bindings::{self, Move, NewBinding, Scope};
use tally_platform::catalog;
use tally_platform::plans::{self, Plan};
use tally_rating::process_batch;

fn t(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
}

/// platform (first-party: vm hours at 0.10), dbco (partner, platform fee
/// 20 %: storage at 0.50 per GB; plans PS-10 39.00 with 10 GB and PS-20
/// 72.00 with 25 GB), account acme in USD.
async fn seed(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let usd = Currency::parse("USD").unwrap();
    let platform = ProviderId::parse("platform").unwrap();
    let dbco = ProviderId::parse("dbco").unwrap();
    catalog::create_provider(&mut conn, &platform, "Platform", ProviderKind::FirstParty)
        .await
        .unwrap();
    catalog::create_provider(&mut conn, &dbco, "DB Co", ProviderKind::Partner)
        .await
        .unwrap();
    catalog::set_platform_fee(&mut conn, &dbco, dec!(20))
        .await
        .unwrap();
    catalog::create_account(&mut conn, &AccountId::parse("acme").unwrap(), "Acme", usd)
        .await
        .unwrap();
    for (sku, owner, price) in [
        ("platform.vm-hours", &platform, dec!(0.10)),
        ("dbco.storage-gb", &dbco, dec!(0.50)),
    ] {
        let sku = Sku::parse(sku).unwrap();
        catalog::create_sku(&mut conn, &sku, owner, sku.as_str(), "unit")
            .await
            .unwrap();
        let model = PriceModel::per_unit(price).unwrap().into();
        catalog::add_price(&mut conn, &sku, usd, t(1, 0, 0), &model)
            .await
            .unwrap();
    }
    for (id, name, fee, gb) in [
        ("dbco.ps-10", "PS-10", dec!(39), dec!(10)),
        ("dbco.ps-20", "PS-20", dec!(72), dec!(25)),
    ] {
        let plan = Plan {
            id: PlanId::parse(id).unwrap(),
            provider: dbco.clone(),
            resource_type: ResourceType::parse("database").unwrap(),
            name: name.into(),
        };
        plans::create_plan(&mut conn, &plan).await.unwrap();
        let allowances = BTreeMap::from([(Sku::parse("dbco.storage-gb").unwrap(), gb)]);
        plans::add_plan_version(&mut conn, &plan.id, usd, t(1, 0, 0), fee, &allowances)
            .await
            .unwrap();
    }
}

/// acme's binding named `name` to a dbco database on PS-10.
fn new_binding(name: &str) -> NewBinding {
    NewBinding {
        account: AccountId::parse("acme").unwrap(),
        provider: ProviderId::parse("dbco").unwrap(),
        resource_type: ResourceType::parse("database").unwrap(),
        name: name.into(),
        plan: PlanId::parse("dbco.ps-10").unwrap(),
        region: Some("eu-west".into()),
        tags: BTreeMap::new(),
    }
}

fn step(event: BindingEvent, by: Actor, at: DateTime<Utc>) -> Move {
    Move {
        event,
        by,
        at,
        message: None,
        provider_resource_id: None,
    }
}

/// The lifecycle: requested Nov 2 00:00 on PS-10, provisioning 00:10,
/// active 10:37; PS-20 from Nov 5 14:05; suspended Nov 9 00:00; deleted
/// Nov 20 08:30.
async fn provision(pool: &PgPool) -> BindingId {
    let mut conn = pool.acquire().await.unwrap();
    let new = new_binding("prod-db");
    let b = bindings::create_binding(&mut conn, new, Actor::Customer, t(2, 0, 0))
        .await
        .unwrap();
    let customer = Scope::Account(AccountId::parse("acme").unwrap());
    for (event, by, at) in [
        (BindingEvent::Provisioning, Actor::Provider, t(2, 0, 10)),
        (BindingEvent::Activated, Actor::Provider, t(2, 10, 37)),
    ] {
        bindings::apply_move(&mut conn, &Scope::Platform, &b.id, step(event, by, at))
            .await
            .unwrap();
    }
    bindings::change_plan(
        &mut conn,
        &customer,
        &b.id,
        &PlanId::parse("dbco.ps-20").unwrap(),
        Actor::Customer,
        t(5, 14, 5),
    )
    .await
    .unwrap();
    for (event, at) in [
        (BindingEvent::Suspend, t(9, 0, 0)),
        (BindingEvent::Delete, t(20, 8, 30)),
    ] {
        bindings::apply_move(
            &mut conn,
            &customer,
            &b.id,
            step(event, Actor::Customer, at),
        )
        .await
        .unwrap();
    }
    b.id
}

/// The hours of November (starting at each whole hour) in which the
/// binding was active at some moment, and the plan it had at the latest
/// such moment: counted one hour at a time.
fn active_hours() -> (i64, i64) {
    let active = [(t(2, 10, 37), t(9, 0, 0))];
    let to_ps_20 = t(5, 14, 5);
    let (mut ps_10, mut ps_20) = (0, 0);
    let mut h = t(1, 0, 0);
    while h < Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap() {
        let end = h + Duration::hours(1);
        for (from, to) in active {
            if from < end && to > h {
                let last = to.min(end);
                if last > to_ps_20 {
                    ps_20 += 1;
                } else {
                    ps_10 += 1;
                }
            }
        }
        h = end;
    }
    (ps_10, ps_20)
}

fn cents(x: Decimal) -> Decimal {
    x.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

#[tokio::test]
async fn a_bound_resources_month_is_billed_per_resource_with_exact_proration() {
    let pool = database().await;
    seed(&pool).await;
    let binding = provision(&pool).await;
    let bound = |id: &str, gb: Decimal, at| {
        let mut e = acme_event("dbco", id, "dbco.storage-gb", gb, at);
        e.resource = Some(binding.clone());
        e
    };
    // 12 GB while active on PS-10, 18 GB while suspended (storage still
    // meters); 10 vm hours of the platform's own, unbound.
    let events = [
        bound("s1", dec!(12), t(3, 0, 0)),
        bound("s2", dec!(18), t(10, 0, 0)),
        acme_event("platform", "v1", "platform.vm-hours", dec!(10), t(4, 0, 0)),
    ];
    let out = process_batch(&pool, &events).await.unwrap();
    assert_eq!((out.counted, out.dead.len()), (3, 0));
    let s: Statement = out.statements().unwrap().pop().unwrap();

    let (ps_10_hours, ps_20_hours) = active_hours();
    assert_eq!((ps_10_hours, ps_20_hours), (76, 82));
    let ps_10 = cents(dec!(39) * Decimal::from(ps_10_hours) / dec!(720));
    let ps_20 = cents(dec!(72) * Decimal::from(ps_20_hours) / dec!(720));
    assert_eq!((ps_10, ps_20), (dec!(4.12), dec!(8.20)));
    // PS-20 is the plan the month ended on: 25 of the 30 GB are included.
    let beyond = dec!(30) - dec!(25);
    let storage = cents(beyond * dec!(0.50));
    let vm = cents(dec!(10) * dec!(0.10));

    let label = Some(format!("prod-db · PS-20 [{binding}]"));
    let view: Vec<_> = s
        .lines
        .iter()
        .map(|l| {
            (
                l.provider.id.to_string(),
                l.kind.as_str(),
                l.resource
                    .as_ref()
                    .map(|r| format!("{} [{}]", r.label(), r.binding)),
                l.quantity,
                l.amount,
                l.partner_net,
            )
        })
        .collect();
    let net = |x: Decimal| x - cents(x * dec!(0.20));
    assert_eq!(
        view,
        [
            ("platform".to_owned(), "usage", None, dec!(10), vm, dec!(0)),
            (
                "dbco".to_owned(),
                "plan_fee",
                label.clone(),
                Decimal::from(ps_10_hours),
                ps_10,
                net(ps_10)
            ),
            (
                "dbco".to_owned(),
                "plan_fee",
                label.clone(),
                Decimal::from(ps_20_hours),
                ps_20,
                net(ps_20)
            ),
            (
                "dbco".to_owned(),
                "allowance",
                label.clone(),
                dec!(25),
                dec!(0),
                dec!(0)
            ),
            (
                "dbco".to_owned(),
                "usage",
                label.clone(),
                beyond,
                storage,
                net(storage)
            ),
        ]
    );
    assert_eq!(s.total, vm + ps_10 + ps_20 + storage);
    assert_eq!(s.total, dec!(15.82));
}

#[tokio::test]
async fn usage_of_two_resources_and_unbound_usage_stay_apart() {
    let pool = database().await;
    seed(&pool).await;
    let first = provision(&pool).await;
    let second = provision(&pool).await;
    let with = |id: &str, resource: Option<&BindingId>, gb: Decimal| {
        let mut e = acme_event("dbco", id, "dbco.storage-gb", gb, t(3, 0, 0));
        e.resource = resource.cloned();
        e
    };
    let events = [
        with("a", Some(&first), dec!(40)),
        with("b", Some(&second), dec!(5)),
        with("c", None, dec!(3)),
    ];
    let out = process_batch(&pool, &events).await.unwrap();
    let s = out.statements().unwrap().pop().unwrap();
    let usage: Vec<_> = s
        .lines
        .iter()
        .filter(|l| l.kind.as_str() != "plan_fee")
        .map(|l| {
            (
                l.kind.as_str(),
                l.resource.as_ref().map(|r| r.binding.clone()),
                l.quantity,
                l.amount,
            )
        })
        .collect();
    // Unbound usage first; each resource gets its own 25 GB allowance.
    let (a, b) = if first < second {
        (first.clone(), second.clone())
    } else {
        (second.clone(), first.clone())
    };
    let per_resource = |id: &BindingId, gb: Decimal| {
        let included = gb.min(dec!(25));
        let mut lines = vec![("allowance", Some(id.clone()), included, dec!(0))];
        lines.push((
            "usage",
            Some(id.clone()),
            gb - included,
            cents((gb - included) * dec!(0.50)),
        ));
        lines
    };
    let gb_of = |id: &BindingId| if *id == first { dec!(40) } else { dec!(5) };
    let mut expected = vec![("usage", None, dec!(3), dec!(1.50))];
    expected.extend(per_resource(&a, gb_of(&a)));
    expected.extend(per_resource(&b, gb_of(&b)));
    assert_eq!(usage, expected);
}

/// A binding's move after its usage was rated restates the account's open
/// statement: suspending it early cuts its plan fee.
#[tokio::test]
async fn a_move_restates_the_open_statement() {
    let pool = database().await;
    seed(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let b = bindings::create_binding(&mut conn, new_binding("db"), Actor::Platform, t(1, 0, 0))
        .await
        .unwrap();
    bindings::apply_move(
        &mut conn,
        &Scope::Platform,
        &b.id,
        step(BindingEvent::Activated, Actor::Provider, t(1, 0, 0)),
    )
    .await
    .unwrap();
    let mut e = acme_event("dbco", "s1", "dbco.storage-gb", dec!(1), t(2, 0, 0));
    e.resource = Some(b.id.clone());
    tally_rating::restate_requested(&pool, 10).await.unwrap();
    let rated = process_batch(&pool, &[e]).await.unwrap();
    // Active from Nov 1 on: the whole month's fee so far.
    let fee = |s: &Statement| {
        s.lines
            .iter()
            .find(|l| l.kind.as_str() == "plan_fee")
            .unwrap()
            .amount
    };
    assert_eq!(
        fee(rated.statements().unwrap().last().unwrap()),
        dec!(39.00)
    );
    bindings::apply_move(
        &mut conn,
        &Scope::Platform,
        &b.id,
        step(BindingEvent::Suspend, Actor::Platform, t(11, 0, 0)),
    )
    .await
    .unwrap();
    let restated = tally_rating::restate_requested(&pool, 10).await.unwrap();
    assert_eq!(restated.statements().unwrap().len(), 1);
    // 10 days of 30 active: 39 × 240 / 720 = 13.00.
    assert_eq!(fee(&restated.statements().unwrap()[0]), dec!(13.00));
    assert_eq!(restated.statements().unwrap()[0].version, 2);
}

/// An account whose only charge is a bound resource's plan gets a statement
/// of its current period without any usage; once it has one, nothing more
/// is opened.
#[tokio::test]
async fn a_bound_account_without_usage_gets_its_periods_plan_fee() {
    let pool = database().await;
    seed(&pool).await;
    let mut conn = pool.acquire().await.unwrap();
    let b = bindings::create_binding(&mut conn, new_binding("db"), Actor::Platform, t(1, 0, 0))
        .await
        .unwrap();
    let opened = tally_rating::restate_bound_periods(&pool, t(3, 0, 0))
        .await
        .unwrap();
    assert!(opened.statements().unwrap().is_empty(), "not active yet");
    bindings::apply_move(
        &mut conn,
        &Scope::Platform,
        &b.id,
        step(BindingEvent::Activated, Actor::Provider, t(16, 0, 0)),
    )
    .await
    .unwrap();
    let opened = tally_rating::restate_bound_periods(&pool, t(20, 0, 0))
        .await
        .unwrap();
    let view: Vec<_> = opened
        .statements()
        .unwrap()
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| (l.kind.as_str(), l.quantity, l.amount))
        .collect();
    // Active from Nov 16 00:00 to the month's end: 15 × 24 = 360 of 720
    // hours of 39.00 = 19.50.
    assert_eq!(view, [("plan_fee", dec!(360), dec!(19.50))]);
    let again = tally_rating::restate_bound_periods(&pool, t(21, 0, 0))
        .await
        .unwrap();
    assert!(again.statements().unwrap().is_empty());
}
