use super::*;
use chrono::TimeZone;
use proptest::prelude::*;
use BindingEvent as E;
use BindingStatus as S;

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

fn by_event(event: E) -> Actor {
    if event.may_be_made_by(Actor::Provider) {
        Actor::Provider
    } else {
        Actor::Customer
    }
}

fn binding() -> Binding {
    Binding::request(
        BindingId::parse("bnd_1").unwrap(),
        AccountId::parse("acme").unwrap(),
        ProviderId::parse("dbco").unwrap(),
        ResourceType::parse("database").unwrap(),
        "prod-db".into(),
        PlanId::parse("dbco.ps-10").unwrap(),
        Some("eu-west".into()),
        BTreeMap::new(),
        at(1, 0),
        Actor::Customer,
    )
    .unwrap()
    .0
}

#[test]
fn the_table_of_legal_moves_is_exactly_the_documented_one() {
    let mut legal = Vec::new();
    for from in S::ALL {
        for event in E::ALL {
            if let Ok(to) = from.transition(event, by_event(event)) {
                legal.push((from.as_str(), event.as_str(), to.as_str()));
            }
        }
    }
    assert_eq!(
        legal,
        [
            ("requested", "provisioning", "provisioning"),
            ("requested", "activated", "active"),
            ("requested", "failed", "failed"),
            ("requested", "delete", "deleted"),
            ("provisioning", "provisioning", "provisioning"),
            ("provisioning", "activated", "active"),
            ("provisioning", "failed", "failed"),
            ("provisioning", "delete", "deleted"),
            ("active", "activated", "active"),
            ("active", "suspend", "suspended"),
            ("active", "delete", "deleted"),
            ("failed", "failed", "failed"),
            ("failed", "delete", "deleted"),
            ("suspended", "suspend", "suspended"),
            ("suspended", "resume", "active"),
            ("suspended", "delete", "deleted"),
        ]
    );
}

#[test]
fn only_the_provider_reports_provisioning_and_only_the_customer_or_platform_decide() {
    assert_eq!(
        S::Requested.transition(E::Activated, Actor::Customer),
        Err(IllegalBindingMove::Actor {
            event: E::Activated,
            by: Actor::Customer
        })
    );
    assert_eq!(
        S::Active.transition(E::Delete, Actor::Provider),
        Err(IllegalBindingMove::Actor {
            event: E::Delete,
            by: Actor::Provider
        })
    );
    assert_eq!(
        S::Active.transition(E::Suspend, Actor::Platform),
        Ok(S::Suspended)
    );
}

#[test]
fn deleted_is_final_and_a_failed_binding_is_never_revived() {
    for event in E::ALL {
        assert!(S::Deleted.transition(event, by_event(event)).is_err());
    }
    assert_eq!(
        S::Failed.transition(E::Activated, Actor::Provider),
        Err(IllegalBindingMove::Status {
            from: S::Failed,
            event: E::Activated
        })
    );
}

#[test]
fn lifecycle_times_follow_the_moves() {
    let mut b = binding();
    let p = Actor::Provider;
    let c = Actor::Customer;
    b.apply(E::Provisioning, p, at(1, 1), at(1, 0), None)
        .unwrap();
    let first = b.apply(E::Activated, p, at(2, 0), at(1, 1), None).unwrap();
    assert!(first.changed);
    let repeat = b.apply(E::Activated, p, at(2, 1), at(2, 0), None).unwrap();
    assert!(!repeat.changed, "a retried report changes nothing");
    b.apply(E::Suspend, c, at(10, 0), at(2, 0), None).unwrap();
    assert_eq!(b.suspended_at, Some(at(10, 0)));
    b.apply(E::Resume, c, at(12, 0), at(10, 0), None).unwrap();
    assert_eq!(b.suspended_at, None);
    assert_eq!(
        b.activated_at,
        Some(at(2, 0)),
        "the first activation is kept"
    );
    b.apply(E::Delete, c, at(20, 0), at(12, 0), None).unwrap();
    assert_eq!((b.status, b.deleted_at), (S::Deleted, Some(at(20, 0))));
    assert_eq!(
        b.change_plan(PlanId::parse("dbco.ps-20").unwrap(), at(21, 0)),
        Err(BindingError::PlanChangeRefused { status: S::Deleted })
    );
}

#[test]
fn history_is_append_only() {
    let mut b = binding();
    assert_eq!(
        b.apply(E::Activated, Actor::Provider, at(1, 0), at(2, 0), None),
        Err(BindingError::OutOfOrder {
            at: at(1, 0),
            last: at(2, 0)
        })
    );
    assert_eq!(b.status, S::Requested);
}

#[test]
fn failed_keeps_the_providers_message() {
    let mut b = binding();
    let applied = b
        .apply(
            E::Failed,
            Actor::Provider,
            at(1, 2),
            at(1, 0),
            Some("quota exceeded in eu-west".into()),
        )
        .unwrap();
    assert_eq!(
        b.status_message.as_deref(),
        Some("quota exceeded in eu-west")
    );
    assert_eq!(applied.change.from, Some(S::Requested));
    assert!(!b.accepts_usage_at(at(1, 3)));
}

#[test]
fn names_and_tags_are_checked() {
    let tags = BTreeMap::from([("env".to_owned(), "prod".to_owned())]);
    assert!(check_new("prod-db", Some("eu"), &tags).is_ok());
    assert!(check_new(" ", None, &tags).is_err());
    assert!(check_new("a\nb", None, &tags).is_err());
    assert!(check_new(&"x".repeat(101), None, &tags).is_err());
    let many: BTreeMap<_, _> = (0..17).map(|i| (i.to_string(), "v".to_owned())).collect();
    assert!(check_new("db", None, &many).is_err());
}

#[test]
fn usage_counts_from_activation_until_deletion() {
    let mut b = binding();
    b.apply(E::Activated, Actor::Provider, at(2, 0), at(1, 0), None)
        .unwrap();
    b.apply(E::Suspend, Actor::Customer, at(5, 0), at(2, 0), None)
        .unwrap();
    b.apply(E::Delete, Actor::Customer, at(20, 0), at(5, 0), None)
        .unwrap();
    let w = b.usage_window();
    let (dbco, acme) = (w.provider.clone(), w.account.clone());
    let check = |t, requires| check_bound(&dbco, &acme, t, requires, Some(&b.id), Some(&w));
    assert!(matches!(
        check(at(1, 23), true),
        Err(NotBound::NotYetActive { .. })
    ));
    assert_eq!(check(at(2, 0), true), Ok(()));
    assert_eq!(check(at(6, 0), true), Ok(()), "suspended still meters");
    assert_eq!(
        check(at(19, 23), true),
        Ok(()),
        "before deletion still counts"
    );
    assert_eq!(
        check(at(20, 0), true),
        Err(NotBound::Deleted {
            binding: b.id.clone(),
            deleted_at: at(20, 0),
            at: at(20, 0)
        })
    );
}

#[test]
fn the_binding_must_be_the_accounts_and_the_providers() {
    let mut b = binding();
    b.apply(E::Activated, Actor::Provider, at(2, 0), at(1, 0), None)
        .unwrap();
    let w = b.usage_window();
    let other = AccountId::parse("globex").unwrap();
    let dbco = ProviderId::parse("dbco").unwrap();
    assert!(matches!(
        check_bound(&dbco, &other, at(3, 0), false, Some(&b.id), Some(&w)),
        Err(NotBound::Unknown { .. })
    ));
    let rival = ProviderId::parse("rival").unwrap();
    assert!(matches!(
        check_bound(&rival, &w.account, at(3, 0), true, Some(&b.id), Some(&w)),
        Err(NotBound::Unknown { .. })
    ));
    assert!(matches!(
        check_bound(&dbco, &w.account, at(3, 0), true, Some(&b.id), None),
        Err(NotBound::Unknown { .. })
    ));
}

#[test]
fn without_a_resource_only_the_providers_setting_decides() {
    let dbco = ProviderId::parse("dbco").unwrap();
    let acme = AccountId::parse("acme").unwrap();
    assert_eq!(
        check_bound(&dbco, &acme, at(3, 0), false, None, None),
        Ok(())
    );
    assert_eq!(
        check_bound(&dbco, &acme, at(3, 0), true, None, None),
        Err(NotBound::ResourceMissing {
            provider: dbco.clone()
        })
    );
}

fn any_event() -> impl Strategy<Value = E> {
    proptest::sample::select(E::ALL.to_vec())
}

proptest! {
    #[test]
    fn any_sequence_of_moves_keeps_the_lifecycle_consistent(
        events in proptest::collection::vec(any_event(), 0..30),
    ) {
        let mut b = binding();
        let mut last = at(1, 0);
        for (i, event) in events.into_iter().enumerate() {
            let t = last + chrono::TimeDelta::hours(i as i64 + 1);
            let before = b.clone();
            match b.apply(event, by_event(event), t, last, None) {
                Ok(_) => last = t,
                Err(_) => prop_assert_eq!(&b, &before, "a refused move changes nothing"),
            }
            prop_assert_eq!(b.deleted_at.is_some(), b.status == S::Deleted);
            prop_assert_eq!(b.suspended_at.is_some(), b.status == S::Suspended);
            if matches!(b.status, S::Active | S::Suspended) {
                prop_assert!(b.activated_at.is_some());
            }
            if b.status == S::Failed {
                prop_assert!(b.activated_at.is_none());
            }
        }
    }
}
