//! The contracts repository against PostgreSQL: the contracts of many
//! accounts read in a fixed number of queries, each exactly as stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal_macros::dec;
use sqlx::{Connection, PgConnection};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tally_domain::contract::{Cadence, Commitment, Contract, Funder, Scope, Term};
use tally_domain::pricing::{PriceBook, PriceModel};
use tally_domain::{AccountId, Currency, ProviderId, ProviderKind, Sku};
use tally_platform::{catalog, contracts};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

fn month(m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, 1, 0, 0, 0).unwrap()
}

/// Counts the statements sqlx runs: one `sqlx::query` event each (on a
/// connection that logs its statements, sqlx's default).
struct Statements(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> Layer<S> for Statements {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() == "sqlx::query" {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A fresh migrated database, and a connection to it that logs its
/// statements.
async fn database() -> PgConnection {
    let url = tally_platform::db::scratch_database("tally_platform");
    tally_platform::db::migrate(&url).await.unwrap();
    PgConnection::connect(&url).await.unwrap()
}

/// A contract of 2026 (or of `from`..`to`) with `terms` and `commitments`,
/// signed on Dec 20, 2025.
fn contract(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    terms: Vec<Term>,
    commitments: Vec<Commitment>,
) -> Contract {
    Contract {
        id: 0,
        starts_at: from,
        ends_at: to,
        currency: Currency::parse("USD").unwrap(),
        price_protection: true,
        signed_at: Some(Utc.with_ymd_and_hms(2025, 12, 20, 0, 0, 0).unwrap()),
        terms,
        commitments,
    }
}

fn percent(scope: Scope, percent: rust_decimal::Decimal, from: u32, to: u32) -> Term {
    Term {
        id: 0,
        scope,
        percent,
        price_book: None,
        funded_by: Funder::Platform,
        effective_from: month(from),
        effective_to: month(to),
        partner_agreed_at: None,
    }
}

#[tokio::test]
async fn the_contracts_of_many_accounts_are_read_in_three_queries_exactly_as_stored() {
    let mut conn = database().await;
    let dbco = ProviderId::parse("dbco").unwrap();
    catalog::create_provider(&mut conn, &dbco, "DB Co", ProviderKind::Partner)
        .await
        .unwrap();
    let db = Sku::parse("dbco.db").unwrap();
    catalog::create_sku(&mut conn, &db, &dbco, "Database", "hour")
        .await
        .unwrap();
    let usd = Currency::parse("USD").unwrap();
    for id in ["acme", "globex", "initech", "umbrella"] {
        catalog::create_account(&mut conn, &AccountId::parse(id).unwrap(), id, usd)
            .await
            .unwrap();
    }
    let book = PriceBook::new(PriceModel::per_unit(dec!(0.08)).unwrap());
    let negotiated = Term {
        price_book: Some(book),
        percent: dec!(0),
        ..percent(
            Scope::Skus {
                provider: dbco.clone(),
                skus: vec![db.clone()],
            },
            dec!(0),
            2,
            7,
        )
    };
    let quarterly = Commitment {
        id: 0,
        cadence: Cadence::Quarter,
        minimum: dec!(300.00),
        starts_at: month(1),
        ends_at: month(7),
    };
    let monthly = Commitment {
        id: 0,
        cadence: Cadence::Month,
        minimum: dec!(50),
        starts_at: month(2),
        ends_at: month(4),
    };
    // acme: two contracts (January to June: a 10% discount, a negotiated
    // book and a quarterly commitment; then July to December: dbco 5%);
    // globex: a monthly commitment only; initech: a bare contract;
    // umbrella: none.
    let stored = [
        (
            "acme",
            contract(
                month(1),
                month(7),
                vec![percent(Scope::All, dec!(10), 1, 7), negotiated.clone()],
                vec![quarterly.clone()],
            ),
        ),
        (
            "acme",
            contract(
                month(7),
                Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
                vec![percent(
                    Scope::Provider {
                        provider: dbco.clone(),
                    },
                    dec!(5),
                    7,
                    9,
                )],
                Vec::new(),
            ),
        ),
        (
            "globex",
            contract(month(2), month(4), Vec::new(), vec![monthly.clone()]),
        ),
        (
            "initech",
            contract(month(1), month(2), Vec::new(), Vec::new()),
        ),
    ];
    let mut expected: std::collections::HashMap<String, Vec<Contract>> = Default::default();
    for (account, c) in &stored {
        let account_id = AccountId::parse(account).unwrap();
        let id = contracts::insert(&mut conn, &account_id, c).await.unwrap();
        let term_ids: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM contract_terms WHERE contract_id = $1 ORDER BY id")
                .bind(id)
                .fetch_all(&mut conn)
                .await
                .unwrap();
        let commitment_ids: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM contract_commitments WHERE contract_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let mut c = c.clone();
        c.id = id;
        for (t, id) in c.terms.iter_mut().zip(term_ids) {
            t.id = id;
        }
        for (m, id) in c.commitments.iter_mut().zip(commitment_ids) {
            m.id = id;
        }
        expected.entry(account.to_string()).or_default().push(c);
    }
    assert_eq!(
        expected.values().map(Vec::len).sum::<usize>(),
        4,
        "{expected:?}"
    );

    let count = Arc::new(AtomicUsize::new(0));
    let counting = tracing_subscriber::registry().with(Statements(count.clone()));
    let accounts = ["acme", "globex", "initech", "umbrella", "nobody"];
    let got = contracts::contracts_of(&mut conn, &accounts)
        .with_subscriber(counting)
        .await
        .unwrap();
    // Contracts, their terms, their commitments: one query each, whatever
    // the number of accounts.
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(got, expected);
    // Each account's contracts as account_contracts reads them one account
    // at a time.
    for (account, contracts_of) in &got {
        let one = contracts::account_contracts(&mut conn, &AccountId::parse(account).unwrap())
            .await
            .unwrap();
        assert_eq!(&one, contracts_of, "{account}");
    }
    // No account with a contract: no more than the one query.
    count.store(0, Ordering::SeqCst);
    let counting = tracing_subscriber::registry().with(Statements(count.clone()));
    let none = contracts::contracts_of(&mut conn, &["umbrella", "nobody"])
        .with_subscriber(counting)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert_eq!(count.load(Ordering::SeqCst), 1);
}
