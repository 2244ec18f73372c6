//! The bindings and plans repositories against PostgreSQL: a binding's
//! lifecycle, its history and outbox, scopes, plan checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal_macros::dec;
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_domain::binding::{Actor, BindingError, BindingEvent, BindingStatus};
use tally_domain::{AccountId, Currency, PlanId, ProviderId, ProviderKind, ResourceType, Sku};
use tally_platform::bindings::{self, BindingRepoError, Move, NewBinding, Scope};
use tally_platform::catalog;
use tally_platform::plans::{self, Plan, PlanRepoError};

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
}

async fn database() -> PgPool {
    let url = tally_platform::db::scratch_database("tally_platform");
    tally_platform::db::migrate(&url).await.unwrap();
    tally_platform::db::connect(&url, 2).await.unwrap()
}

/// dbco (a partner) with a storage SKU and plan `dbco.ps-10` (USD 39 from
/// Nov 1, 10 GB included); accounts acme (USD) and globex (EUR).
async fn seeded() -> PgPool {
    let pool = database().await;
    let mut conn = pool.acquire().await.unwrap();
    let dbco = ProviderId::parse("dbco").unwrap();
    catalog::create_provider(&mut conn, &dbco, "DB Co", ProviderKind::Partner)
        .await
        .unwrap();
    let usd = Currency::parse("USD").unwrap();
    for (id, currency) in [("acme", usd), ("globex", Currency::parse("EUR").unwrap())] {
        catalog::create_account(&mut conn, &AccountId::parse(id).unwrap(), id, currency)
            .await
            .unwrap();
    }
    let sku = Sku::parse("dbco.storage-gb").unwrap();
    catalog::create_sku(&mut conn, &sku, &dbco, "Storage", "GB")
        .await
        .unwrap();
    let plan = Plan {
        id: PlanId::parse("dbco.ps-10").unwrap(),
        provider: dbco.clone(),
        resource_type: ResourceType::parse("database").unwrap(),
        name: "PS-10".into(),
    };
    plans::create_plan(&mut conn, &plan).await.unwrap();
    plans::add_plan_version(
        &mut conn,
        &plan.id,
        usd,
        at(1, 0),
        dec!(39),
        &BTreeMap::from([(sku, dec!(10))]),
    )
    .await
    .unwrap();
    pool
}

fn new_binding(account: &str, plan: &str) -> NewBinding {
    NewBinding {
        account: AccountId::parse(account).unwrap(),
        provider: ProviderId::parse("dbco").unwrap(),
        resource_type: ResourceType::parse("database").unwrap(),
        name: "prod-db".into(),
        plan: PlanId::parse(plan).unwrap(),
        region: Some("eu-west".into()),
        tags: BTreeMap::from([("env".into(), "prod".into())]),
    }
}

/// A binding of acme on dbco.ps-10, requested by `by` at `at`.
async fn request(
    conn: &mut sqlx::PgConnection,
    by: Actor,
    at: DateTime<Utc>,
) -> tally_domain::binding::Binding {
    bindings::create_binding(conn, new_binding("acme", "dbco.ps-10"), by, at)
        .await
        .unwrap()
}

/// Applies `event` by `by` at `at` to binding `id`, as `scope` sees it.
async fn apply(
    conn: &mut sqlx::PgConnection,
    scope: &Scope,
    id: &tally_domain::BindingId,
    event: BindingEvent,
    by: Actor,
    at: DateTime<Utc>,
) -> Result<(tally_domain::binding::Binding, bool), BindingRepoError> {
    bindings::apply_move(conn, scope, id, mv(event, by, at)).await
}

fn mv(event: BindingEvent, by: Actor, at: DateTime<Utc>) -> Move {
    Move {
        event,
        by,
        at,
        message: None,
        provider_resource_id: None,
    }
}

async fn outbox(pool: &PgPool) -> Vec<(String, bool)> {
    sqlx::query_as("SELECT body->>'type', delivered_at IS NULL FROM binding_outbox ORDER BY seq")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_binding_lives_its_lifecycle_with_history_and_outbox() {
    let pool = seeded().await;
    let mut conn = pool.acquire().await.unwrap();
    let b = request(&mut conn, Actor::Customer, at(2, 0)).await;
    assert!(b.id.as_str().starts_with("bnd_"));
    assert_eq!(b.status, BindingStatus::Requested);
    let provider = Scope::Provider(ProviderId::parse("dbco").unwrap());
    let customer = Scope::Account(AccountId::parse("acme").unwrap());
    let report = Move {
        message: Some("creating".into()),
        provider_resource_id: Some("pscale-db-123".into()),
        ..mv(BindingEvent::Provisioning, Actor::Provider, at(2, 1))
    };
    bindings::apply_move(&mut conn, &provider, &b.id, report)
        .await
        .unwrap();
    let (active, changed) = apply(
        &mut conn,
        &provider,
        &b.id,
        BindingEvent::Activated,
        Actor::Provider,
        at(2, 2),
    )
    .await
    .unwrap();
    assert!(changed);
    assert_eq!(active.activated_at, Some(at(2, 2)));
    assert_eq!(
        active.provider_resource_id.as_deref(),
        Some("pscale-db-123")
    );
    // A retried report changes nothing and tells nobody.
    let (_, changed) = apply(
        &mut conn,
        &provider,
        &b.id,
        BindingEvent::Activated,
        Actor::Provider,
        at(2, 3),
    )
    .await
    .unwrap();
    assert!(!changed);
    apply(
        &mut conn,
        &customer,
        &b.id,
        BindingEvent::Suspend,
        Actor::Customer,
        at(10, 0),
    )
    .await
    .unwrap();
    apply(
        &mut conn,
        &customer,
        &b.id,
        BindingEvent::Resume,
        Actor::Customer,
        at(12, 0),
    )
    .await
    .unwrap();
    let (gone, _) = apply(
        &mut conn,
        &Scope::Platform,
        &b.id,
        BindingEvent::Delete,
        Actor::Platform,
        at(20, 0),
    )
    .await
    .unwrap();
    assert_eq!(
        (gone.status, gone.deleted_at),
        (BindingStatus::Deleted, Some(at(20, 0)))
    );

    let history: Vec<_> = bindings::status_history(&mut conn, &b.id)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.at, c.to.as_str(), c.by.as_str(), c.message))
        .collect();
    assert_eq!(
        history,
        [
            (at(2, 0), "requested", "customer", None),
            (
                at(2, 1),
                "provisioning",
                "provider",
                Some("creating".to_owned())
            ),
            (at(2, 2), "active", "provider", None),
            (at(10, 0), "suspended", "customer", None),
            (at(12, 0), "active", "customer", None),
            (at(20, 0), "deleted", "platform", None),
        ]
    );
    // Every change is in the outbox; the provider's own reports are not
    // sent back to its webhook.
    assert_eq!(
        outbox(&pool).await,
        [
            ("binding.requested".to_owned(), true),
            ("binding.provisioning".to_owned(), false),
            ("binding.active".to_owned(), false),
            ("binding.suspended".to_owned(), true),
            ("binding.active".to_owned(), true),
            ("binding.deleted".to_owned(), true),
        ]
    );
    let windows = bindings::usage_windows(&mut conn, &[b.id.as_str(), "bnd_none"])
        .await
        .unwrap();
    assert_eq!(windows.len(), 1);
    assert_eq!(windows[b.id.as_str()].activated_at, Some(at(2, 2)));
    assert_eq!(windows[b.id.as_str()].deleted_at, Some(at(20, 0)));
}

#[tokio::test]
async fn illegal_moves_and_foreign_scopes_change_nothing() {
    let pool = seeded().await;
    let mut conn = pool.acquire().await.unwrap();
    let b = request(&mut conn, Actor::Platform, at(2, 0)).await;
    let customer = Scope::Account(AccountId::parse("acme").unwrap());
    let err = apply(
        &mut conn,
        &customer,
        &b.id,
        BindingEvent::Resume,
        Actor::Customer,
        at(3, 0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BindingRepoError::Binding(BindingError::Illegal(_))),
        "{err}"
    );
    let err = apply(
        &mut conn,
        &customer,
        &b.id,
        BindingEvent::Activated,
        Actor::Customer,
        at(3, 0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BindingRepoError::Binding(BindingError::Illegal(_))),
        "{err}"
    );
    let stranger = Scope::Account(AccountId::parse("globex").unwrap());
    let err = apply(
        &mut conn,
        &stranger,
        &b.id,
        BindingEvent::Delete,
        Actor::Customer,
        at(3, 0),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BindingRepoError::NotFound(_)), "{err}");
    let rival = Scope::Provider(ProviderId::parse("rival").unwrap());
    assert!(bindings::get_binding(&mut conn, &rival, &b.id)
        .await
        .unwrap()
        .is_none());
    assert!(bindings::list_bindings(&mut conn, &stranger)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        bindings::list_bindings(&mut conn, &customer)
            .await
            .unwrap()
            .len(),
        1
    );
    let err = apply(
        &mut conn,
        &customer,
        &b.id,
        BindingEvent::Delete,
        Actor::Customer,
        at(1, 0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            BindingRepoError::Binding(BindingError::OutOfOrder { .. })
        ),
        "{err}"
    );
    let still = bindings::get_binding(&mut conn, &customer, &b.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(still.status, BindingStatus::Requested);
    assert_eq!(outbox(&pool).await.len(), 1);
}

#[tokio::test]
async fn a_plan_must_be_the_providers_and_offered_in_the_accounts_currency() {
    let pool = seeded().await;
    let mut conn = pool.acquire().await.unwrap();
    let err = bindings::create_binding(
        &mut conn,
        new_binding("acme", "dbco.nope"),
        Actor::Customer,
        at(2, 0),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BindingRepoError::UnknownPlan(_)), "{err}");
    // globex bills in EUR; the plan has only a USD version.
    let err = bindings::create_binding(
        &mut conn,
        new_binding("globex", "dbco.ps-10"),
        Actor::Customer,
        at(2, 0),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BindingRepoError::PlanNotOffered { .. }),
        "{err}"
    );
    // Before its first version took effect, it is not offered either.
    let early = Utc.with_ymd_and_hms(2026, 10, 31, 0, 0, 0).unwrap();
    let err = bindings::create_binding(
        &mut conn,
        new_binding("acme", "dbco.ps-10"),
        Actor::Customer,
        early,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BindingRepoError::PlanNotOffered { .. }),
        "{err}"
    );
    let mut other = new_binding("acme", "dbco.ps-10");
    other.resource_type = ResourceType::parse("bucket").unwrap();
    let err = bindings::create_binding(&mut conn, other, Actor::Customer, at(2, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BindingRepoError::PlanMismatch { .. }),
        "{err}"
    );
    // A plan includes only its own provider's SKUs.
    catalog::create_provider(
        &mut conn,
        &ProviderId::parse("other").unwrap(),
        "Other",
        ProviderKind::Partner,
    )
    .await
    .unwrap();
    catalog::create_sku(
        &mut conn,
        &Sku::parse("other.gb").unwrap(),
        &ProviderId::parse("other").unwrap(),
        "GB",
        "GB",
    )
    .await
    .unwrap();
    let err = plans::add_plan_version(
        &mut conn,
        &PlanId::parse("dbco.ps-10").unwrap(),
        Currency::parse("EUR").unwrap(),
        at(1, 0),
        dec!(35),
        &BTreeMap::from([(Sku::parse("other.gb").unwrap(), dec!(1))]),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, PlanRepoError::ForeignSku { .. }), "{err}");
    let versions =
        plans::plan_versions(&mut conn, &["dbco.ps-10"], Currency::parse("USD").unwrap())
            .await
            .unwrap();
    let v = &versions[&PlanId::parse("dbco.ps-10").unwrap()];
    assert_eq!(v.len(), 1);
    assert_eq!((v[0].name.as_str(), v[0].base_fee), ("PS-10", dec!(39)));
    assert_eq!(
        v[0].allowances[&Sku::parse("dbco.storage-gb").unwrap()],
        dec!(10)
    );
}

#[tokio::test]
async fn requires_binding_is_off_until_set() {
    let pool = seeded().await;
    let mut conn = pool.acquire().await.unwrap();
    let dbco = ProviderId::parse("dbco").unwrap();
    assert!(
        !bindings::requires_binding(&mut conn, &["dbco"])
            .await
            .unwrap()["dbco"]
    );
    assert!(bindings::set_requires_binding(&mut conn, &dbco, true)
        .await
        .unwrap());
    assert!(
        bindings::requires_binding(&mut conn, &["dbco"])
            .await
            .unwrap()["dbco"]
    );
    assert!(
        !bindings::set_requires_binding(&mut conn, &ProviderId::parse("none").unwrap(), true)
            .await
            .unwrap()
    );
}

/// What the provider's webhook endpoint saw: every request, and the events
/// it processed (deduped by id). Its first answer is a 503 before it
/// processes anything; its second processes the event but answers 500 (the
/// answer is lost); every later one answers 200.
#[derive(Default)]
struct Provider {
    requests: Vec<(uuid::Uuid, i64, String, String)>,
    processed: Vec<(uuid::Uuid, String)>,
}

async fn webhook(
    axum::extract::State(state): axum::extract::State<std::sync::Arc<std::sync::Mutex<Provider>>>,
    headers: axum::http::HeaderMap,
    body: String,
) -> axum::http::StatusCode {
    let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
    let id: uuid::Uuid = header("webhook-id").parse().unwrap();
    let timestamp: i64 = header("webhook-timestamp").parse().unwrap();
    let mut state = state.lock().unwrap();
    state
        .requests
        .push((id, timestamp, header("webhook-signature"), body.clone()));
    match state.requests.len() {
        1 => return axum::http::StatusCode::SERVICE_UNAVAILABLE,
        _ if state.processed.iter().any(|(seen, _)| *seen == id) => {}
        n => {
            let kind = serde_json::from_str::<serde_json::Value>(&body).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned();
            state.processed.push((id, kind));
            if n == 2 {
                return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
    }
    axum::http::StatusCode::OK
}

#[tokio::test]
async fn a_missed_webhook_is_retried_and_the_provider_gets_each_event_once_by_id() {
    use tally_platform::binding_outbox::{self, Deliveries, WebhookKey};
    let pool = seeded().await;
    let state = std::sync::Arc::new(std::sync::Mutex::new(Provider::default()));
    let app = axum::Router::new()
        .route("/hooks", axum::routing::post(webhook))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut conn = pool.acquire().await.unwrap();
    let dbco = ProviderId::parse("dbco").unwrap();
    let generation = binding_outbox::set_webhook(&mut conn, &dbco, &url, false)
        .await
        .unwrap();
    let b = request(&mut conn, Actor::Customer, at(2, 0)).await;
    let customer = Scope::Account(AccountId::parse("acme").unwrap());
    for (event, by, t) in [
        (BindingEvent::Activated, Actor::Provider, at(2, 1)),
        (BindingEvent::Suspend, Actor::Customer, at(3, 0)),
        (BindingEvent::Delete, Actor::Customer, at(4, 0)),
    ] {
        apply(
            &mut conn,
            &customer_or_provider(&customer, by),
            &b.id,
            event,
            by,
            t,
        )
        .await
        .unwrap();
    }
    drop(conn);

    let key = WebhookKey::new("platform webhook key");
    let http = reqwest::Client::new();
    let mut now = Utc::now();
    let mut rounds = Vec::new();
    for _ in 0..6 {
        rounds.push(
            binding_outbox::deliver_due(&pool, &http, &key, now, 10)
                .await
                .unwrap(),
        );
        now += chrono::Duration::hours(1);
    }
    let d = |delivered, failed| Deliveries { delivered, failed };
    assert_eq!(
        rounds,
        [d(0, 1), d(0, 1), d(3, 0), d(0, 0), d(0, 0), d(0, 0)]
    );

    let outbox: Vec<(uuid::Uuid, String, i32, bool)> = sqlx::query_as(
        "SELECT event_id, body->>'type', attempts, delivered_at IS NOT NULL
         FROM binding_outbox ORDER BY seq",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // The provider's own report is not sent back; the three others each
    // arrived once, in order, the first after two failed attempts.
    // Every event, as published and delivered, is the documented wire format.
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/binding-event.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap();
    let provider = state.lock().unwrap();
    for (_, _, _, body) in &provider.requests {
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(validator.is_valid(&body), "{body}");
    }
    drop(provider);
    let sent: Vec<_> = outbox
        .iter()
        .filter(|(_, kind, _, _)| kind != "binding.active")
        .collect();
    assert_eq!(
        sent.iter()
            .map(|(_, kind, attempts, delivered)| (kind.as_str(), *attempts, *delivered))
            .collect::<Vec<_>>(),
        [
            ("binding.requested", 3, true),
            ("binding.suspended", 1, true),
            ("binding.deleted", 1, true)
        ]
    );
    let provider = state.lock().unwrap();
    assert_eq!(
        provider.processed,
        sent.iter()
            .map(|(id, kind, _, _)| (*id, kind.clone()))
            .collect::<Vec<_>>()
    );
    // Five requests: the first event three times with the same id, each
    // signed for its own attempt with the provider's secret.
    assert_eq!(provider.requests.len(), 5);
    let ids: Vec<uuid::Uuid> = provider.requests.iter().map(|r| r.0).collect();
    assert_eq!(ids[..3], [sent[0].0; 3]);
    let secret = key.provider_secret(&dbco, generation);
    for (id, timestamp, signature, body) in &provider.requests {
        assert!(binding_outbox::verify(
            &secret,
            id,
            *timestamp,
            body.as_bytes(),
            signature
        ));
    }
}

fn customer_or_provider(customer: &Scope, by: Actor) -> Scope {
    match by {
        Actor::Provider => Scope::Provider(ProviderId::parse("dbco").unwrap()),
        _ => customer.clone(),
    }
}
