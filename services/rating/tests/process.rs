//! Rating's batch processing against a real PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{acme_event, database, until_one_waits_for_a_lock};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use tally_domain::{
    AccountId, Currency, PriceModel, ProviderId, ProviderKind, Sku, Statement, UsageEvent,
};
use tally_platform::catalog;
use tally_rating::{process_batch, repo};

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, day, hour, 0, 0).unwrap()
}

/// One provider with two SKUs; `cloud.vm.hour` changes price on Oct 15th.
async fn seed(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let p = ProviderId::parse("cloud").unwrap();
    catalog::create_provider(&mut conn, &p, "Cloud", ProviderKind::FirstParty)
        .await
        .unwrap();
    catalog::create_account(
        &mut conn,
        &AccountId::parse("acme").unwrap(),
        "Acme",
        Currency::parse("USD").unwrap(),
    )
    .await
    .unwrap();
    for (sku, price) in [
        ("cloud.vm.hour", dec!(0.0416)),
        ("cloud.disk.gb", dec!(0.1)),
    ] {
        let sku = Sku::parse(sku).unwrap();
        catalog::create_sku(&mut conn, &sku, &p, sku.as_str(), "unit")
            .await
            .unwrap();
        let model = PriceModel::per_unit(price).unwrap().into();
        catalog::add_price(
            &mut conn,
            &sku,
            Currency::parse("USD").unwrap(),
            t(1, 0) - Duration::days(30),
            &model,
        )
        .await
        .unwrap();
    }
    let model = PriceModel::per_unit(dec!(0.05)).unwrap().into();
    catalog::add_price(
        &mut conn,
        &Sku::parse("cloud.vm.hour").unwrap(),
        Currency::parse("USD").unwrap(),
        t(15, 0),
        &model,
    )
    .await
    .unwrap();
}

fn usage(id: usize, sku: &str, quantity: Decimal, time: DateTime<Utc>) -> UsageEvent {
    acme_event("cloud", &format!("e{id}"), sku, quantity, time)
}

fn events() -> Vec<UsageEvent> {
    (0..300)
        .map(|i| {
            let sku = if i % 3 == 0 {
                "cloud.disk.gb"
            } else {
                "cloud.vm.hour"
            };
            usage(
                i,
                sku,
                Decimal::new(i as i64 % 97 + 1, 2),
                t(1 + (i as u32 % 28), (i % 24) as u32),
            )
        })
        .collect()
}

async fn statement_of(pool: &PgPool) -> Statement {
    let body: serde_json::Value =
        sqlx::query_scalar("SELECT body::jsonb FROM statements WHERE account_id = 'acme'")
            .fetch_one(pool)
            .await
            .unwrap();
    serde_json::from_value(body).unwrap()
}

#[tokio::test]
async fn duplicate_event_is_billed_once() {
    let pool = database().await;
    seed(&pool).await;
    let e = usage(1, "cloud.disk.gb", dec!(10), t(2, 0));
    let first = process_batch(&pool, &[e.clone(), e.clone()]).await.unwrap();
    assert_eq!((first.counted, first.duplicates), (1, 1));
    let again = process_batch(&pool, &[e]).await.unwrap();
    assert_eq!((again.counted, again.duplicates), (0, 1));
    assert!(again.statements().unwrap().is_empty());
    let s = statement_of(&pool).await;
    assert_eq!(s.total, dec!(1.00));
    assert_eq!(s.version, 1);
}

#[tokio::test]
async fn price_change_mid_month_gives_two_lines_at_each_price() {
    let pool = database().await;
    seed(&pool).await;
    let out = process_batch(
        &pool,
        &[
            usage(1, "cloud.vm.hour", dec!(100), t(14, 23)),
            usage(2, "cloud.vm.hour", dec!(100), t(15, 0)),
        ],
    )
    .await
    .unwrap();
    let s = &out.statements().unwrap()[0];
    let lines: Vec<_> = s
        .lines
        .iter()
        .map(|l| (l.unit_price, l.quantity, l.amount))
        .collect();
    assert_eq!(
        lines,
        [
            (Some(dec!(0.0416)), dec!(100), dec!(4.16)),
            (Some(dec!(0.05)), dec!(100), dec!(5.00))
        ]
    );
    assert_eq!(s.total, dec!(9.16));
}

#[tokio::test]
async fn batch_boundaries_and_order_do_not_change_the_statement() {
    let one = database().await;
    let many = database().await;
    seed(&one).await;
    seed(&many).await;
    let all = events();
    process_batch(&one, &all).await.unwrap();
    let mut shuffled = all.clone();
    shuffled.reverse();
    shuffled.rotate_left(77);
    for chunk in shuffled.chunks(37) {
        process_batch(&many, chunk).await.unwrap();
    }
    let (a, b) = (statement_of(&one).await, statement_of(&many).await);
    assert_eq!(a.lines, b.lines);
    assert_eq!(a.total, b.total);
    assert_eq!(a.version, 1);
    assert_eq!(b.version, 9); // one version per batch that touched the period
}

#[tokio::test]
async fn unpriceable_and_unknown_account_events_are_dead_lettered() {
    let pool = database().await;
    seed(&pool).await;
    let mut orphan = usage(2, "cloud.disk.gb", dec!(1), t(3, 0));
    orphan.account_id = AccountId::parse("ghost").unwrap();
    let too_early = usage(3, "cloud.disk.gb", dec!(1), t(1, 0) - Duration::days(60));
    let out = process_batch(
        &pool,
        &[
            usage(1, "cloud.disk.gb", dec!(1), t(3, 0)),
            orphan,
            too_early,
        ],
    )
    .await
    .unwrap();
    let codes: Vec<_> = out.dead.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["account_unknown", "no_price"]);
    assert_eq!(out.counted, 1);
    let ids: i64 = sqlx::query_scalar("SELECT count(*) FROM counted_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        ids, 1,
        "dead letters are not marked processed, so a replay can bill them"
    );
}

/// SKUs of every aggregation, each at 1.00 per unit.
async fn seed_aggregations(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let p = ProviderId::parse("cloud").unwrap();
    for (sku, kind, dimension) in [
        ("cloud.agg.count", "count", None),
        ("cloud.agg.max", "max", None),
        ("cloud.agg.latest", "latest", None),
        ("cloud.agg.users", "unique_count", Some("user")),
    ] {
        let sku = Sku::parse(sku).unwrap();
        catalog::create_sku(&mut conn, &sku, &p, sku.as_str(), "unit")
            .await
            .unwrap();
        let aggregation = tally_domain::Aggregation::parse(kind, dimension).unwrap();
        catalog::set_aggregation(&mut conn, &sku, &aggregation)
            .await
            .unwrap();
        let model = PriceModel::per_unit(dec!(1)).unwrap().into();
        catalog::add_price(
            &mut conn,
            &sku,
            Currency::parse("USD").unwrap(),
            t(1, 0) - Duration::days(30),
            &model,
        )
        .await
        .unwrap();
    }
}

fn with_user(mut e: UsageEvent, user: &str) -> UsageEvent {
    e.dimensions.insert("user".into(), user.into());
    e
}

fn aggregation_events() -> Vec<UsageEvent> {
    vec![
        usage(1, "cloud.agg.count", dec!(5), t(2, 0)),
        usage(2, "cloud.agg.count", dec!(7), t(3, 0)),
        usage(3, "cloud.agg.count", dec!(9), t(4, 0)),
        usage(4, "cloud.agg.max", dec!(3), t(2, 0)),
        usage(5, "cloud.agg.max", dec!(11.5), t(3, 0)),
        usage(6, "cloud.agg.max", dec!(4), t(4, 0)),
        usage(7, "cloud.agg.latest", dec!(40), t(9, 0)),
        usage(8, "cloud.agg.latest", dec!(25), t(20, 0)),
        usage(9, "cloud.agg.latest", dec!(30), t(5, 0)),
        with_user(usage(10, "cloud.agg.users", dec!(1), t(2, 0)), "ann"),
        with_user(usage(11, "cloud.agg.users", dec!(1), t(3, 0)), "bob"),
        with_user(usage(12, "cloud.agg.users", dec!(1), t(4, 0)), "ann"),
        with_user(usage(13, "cloud.agg.users", dec!(1), t(5, 0)), "cy"),
    ]
}

#[tokio::test]
async fn each_aggregation_bills_its_own_quantity() {
    let pool = database().await;
    seed(&pool).await;
    seed_aggregations(&pool).await;
    let mut events = aggregation_events();
    events.push(usage(14, "cloud.agg.users", dec!(1), t(6, 0))); // no `user` dimension
    let first = process_batch(&pool, &events[..7]).await.unwrap();
    let second = process_batch(&pool, &events[7..]).await.unwrap();
    assert!(first.dead.is_empty());
    assert_eq!(
        second.dead.iter().map(|d| d.code).collect::<Vec<_>>(),
        ["dimension_missing"]
    );
    let s = statement_of(&pool).await;
    let quantities: Vec<(&str, Decimal)> = s
        .lines
        .iter()
        .map(|l| (l.sku.as_str(), l.quantity))
        .collect();
    assert_eq!(
        quantities,
        [
            ("cloud.agg.count", dec!(3)),
            ("cloud.agg.latest", dec!(25)),
            ("cloud.agg.max", dec!(11.5)),
            ("cloud.agg.users", dec!(3))
        ]
    );
    assert_eq!(s.total, dec!(42.50));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]

    /// Any split of the same usage into batches, in any order, gives the same statement.
    #[test]
    fn batches_and_order_never_change_the_statement(
        cuts in proptest::collection::btree_set(1usize..13, 0..6),
        seed in 0u64..1000,
    ) {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async {
            let reference = database().await;
            seed_all(&reference).await;
            process_batch(&reference, &aggregation_events()).await.unwrap();

            let split = database().await;
            seed_all(&split).await;
            let mut events = aggregation_events();
            let n = events.len();
            events.rotate_left(seed as usize % n);
            if seed % 2 == 0 {
                events.reverse();
            }
            let mut start = 0;
            for cut in cuts.iter().copied().chain([n]) {
                process_batch(&split, &events[start..cut]).await.unwrap();
                start = cut;
            }
            let (a, b) = (statement_of(&reference).await, statement_of(&split).await);
            assert_eq!(a.lines, b.lines);
            assert_eq!(a.total, b.total);
        });
    }
}

async fn seed_all(pool: &PgPool) {
    seed(pool).await;
    seed_aggregations(pool).await;
}

#[tokio::test]
async fn an_event_that_cannot_be_rated_does_not_hold_up_its_batch() {
    let pool = database().await;
    seed(&pool).await;
    // A price book stored by hand that no rating code can read.
    sqlx::query("INSERT INTO skus (id, provider_id, name) VALUES ('broken', 'cloud', 'Broken')")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO prices (sku_id, currency, effective_from, model)
         VALUES ('broken', 'USD', '2026-01-01T00:00:00Z', '{\"model\": \"bogus\"}')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let events = [
        usage(1, "cloud.disk.gb", dec!(10), t(2, 0)),
        usage(2, "broken", dec!(1), t(2, 0)),
        usage(3, "cloud.disk.gb", dec!(5), t(3, 0)),
    ];
    assert!(
        process_batch(&pool, &events).await.is_err(),
        "the whole batch fails"
    );
    let out =
        tally_rating::process_batch_isolating(&pool, &events, tally_rating::Admission::unclocked())
            .await
            .unwrap();
    assert_eq!(out.counted, 2);
    assert_eq!(
        out.dead.iter().map(|d| d.code).collect::<Vec<_>>(),
        ["rating_failed"]
    );
    assert_eq!(out.dead[0].event.as_ref().unwrap().event_id.as_str(), "e2");
    assert_eq!(
        out.statements().unwrap().len(),
        1,
        "one statement per account-period, the newest"
    );
    assert_eq!(out.statements().unwrap()[0].total, dec!(1.50));
    assert_eq!(statement_of(&pool).await.total, dec!(1.50));
}

#[tokio::test]
async fn a_schema_the_code_does_not_match_dead_letters_nothing() {
    let pool = database().await;
    seed(&pool).await;
    // As when a binary runs against a database it was not built for.
    sqlx::query("ALTER TABLE usage_hourly RENAME COLUMN hour TO hour_of_use")
        .execute(&pool)
        .await
        .unwrap();
    let events = [
        usage(1, "cloud.disk.gb", dec!(10), t(2, 0)),
        usage(2, "cloud.disk.gb", dec!(5), t(3, 0)),
    ];
    let err =
        tally_rating::process_batch_isolating(&pool, &events, tally_rating::Admission::unclocked())
            .await
            .expect_err("the batch waits for the schema instead of dead-lettering");
    assert!(err.is_systemic(), "{err}");
    sqlx::query("ALTER TABLE usage_hourly RENAME COLUMN hour_of_use TO hour")
        .execute(&pool)
        .await
        .unwrap();
    let out =
        tally_rating::process_batch_isolating(&pool, &events, tally_rating::Admission::unclocked())
            .await
            .unwrap();
    assert_eq!((out.counted, out.dead.len()), (2, 0));
    assert_eq!(statement_of(&pool).await.total, dec!(1.50));
}

/// (account ids, period starts) of each outbox row, oldest first.
async fn outbox_rows(pool: &PgPool) -> Vec<(i64, Vec<String>, Vec<DateTime<Utc>>)> {
    sqlx::query_as("SELECT id, account_ids, period_starts FROM statement_outbox ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn each_transaction_lists_its_statements_in_the_outbox_until_published() {
    let pool = database().await;
    seed(&pool).await;
    // October and November of one account: one transaction, one outbox row.
    let first = process_batch(
        &pool,
        &[
            usage(1, "cloud.disk.gb", dec!(10), t(2, 0)),
            usage(2, "cloud.disk.gb", dec!(5), t(2, 0) + Duration::days(31)),
        ],
    )
    .await
    .unwrap();
    let rows = outbox_rows(&pool).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(first.outbox, [rows[0].0]);
    assert_eq!(rows[0].1, ["acme", "acme"]);
    assert_eq!(
        rows[0].2,
        [
            Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        ]
    );
    // A second batch: a second row; what is pending is each statement once,
    // at its newest version.
    let second = process_batch(&pool, &[usage(3, "cloud.disk.gb", dec!(1), t(3, 0))])
        .await
        .unwrap();
    assert_eq!(second.statements().unwrap().len(), 1);
    let mut conn = pool.acquire().await.unwrap();
    let ids = repo::pending_outbox(&mut conn, 10).await.unwrap();
    assert_eq!(ids, [first.outbox[0], second.outbox[0]]);
    let keys = repo::outbox_keys(&mut conn, &ids).await.unwrap();
    let october = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let november = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    assert_eq!(
        keys,
        [("acme".to_owned(), october), ("acme".to_owned(), november)]
    );
    let held = repo::statement_bodies(&mut conn, &keys).await.unwrap();
    let pending: Vec<Statement> = held.iter().map(|s| s.statement().unwrap()).collect();
    let versions: Vec<(String, i64, Decimal)> = pending
        .iter()
        .map(|s| (s.period.label(), s.version, s.total))
        .collect();
    assert_eq!(
        versions,
        [
            ("2026-10".to_owned(), 2, dec!(1.10)),
            ("2026-11".to_owned(), 1, dec!(0.50))
        ]
    );
    // Each held as stored: its key and version, and its body's length.
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM statements WHERE account_id = 'acme' ORDER BY period_start",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    assert_eq!(
        held.iter()
            .map(|h| (h.key(), h.version, h.bytes))
            .collect::<Vec<_>>(),
        [
            ("acme:2026-10".to_owned(), 2, stored[0].len()),
            ("acme:2026-11".to_owned(), 1, stored[1].len())
        ]
    );
    assert_eq!(held[0].body().unwrap(), stored[0].as_bytes());
    assert_eq!(held[1].body().unwrap(), stored[1].as_bytes());
    // Oldest rows first, as many as list at most so many statements (the
    // first row lists two, the second one), and always at least one row.
    assert_eq!(
        repo::pending_outbox(&mut conn, 2).await.unwrap(),
        first.outbox
    );
    assert_eq!(repo::pending_outbox(&mut conn, 3).await.unwrap().len(), 2);
    assert_eq!(
        repo::pending_outbox(&mut conn, 1).await.unwrap(),
        first.outbox
    );
    repo::clear_outbox(&mut conn, &first.outbox).await.unwrap();
    assert_eq!(outbox_rows(&pool).await.len(), 1);
    assert_eq!(
        repo::pending_outbox(&mut conn, 1).await.unwrap(),
        second.outbox
    );
    repo::clear_outbox(&mut conn, &second.outbox).await.unwrap();
    assert!(repo::pending_outbox(&mut conn, 10)
        .await
        .unwrap()
        .is_empty());
}

/// (version, total) of acme's statement of the period starting at `start`.
async fn version_and_total(pool: &PgPool, start: DateTime<Utc>) -> (i64, Decimal) {
    let body: String = sqlx::query_scalar(
        "SELECT body FROM statements WHERE account_id = 'acme' AND period_start = $1",
    )
    .bind(start)
    .fetch_one(pool)
    .await
    .unwrap();
    let s: Statement = serde_json::from_str(&body).unwrap();
    (s.version, s.total)
}

#[tokio::test]
async fn a_statement_another_transaction_writes_is_restated_after_it() {
    let pool = database().await;
    seed(&pool).await;
    process_batch(&pool, &[usage(1, "cloud.disk.gb", dec!(10), t(2, 0))])
        .await
        .unwrap();
    let october = Utc.with_ymd_and_hms(2026, 10, 1, 0, 0, 0).unwrap();
    let november = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();

    // Another transaction holds October's statement and moves its version:
    // the batch waits for it, then writes over the version it left.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("UPDATE statements SET version = version + 1 WHERE account_id = 'acme'")
        .execute(&mut *other)
        .await
        .unwrap();
    let batch = {
        let pool = pool.clone();
        tokio::spawn(async move {
            process_batch(&pool, &[usage(2, "cloud.disk.gb", dec!(5), t(3, 0))]).await
        })
    };
    until_one_waits_for_a_lock(&pool).await;
    other.commit().await.unwrap();
    let out = batch.await.unwrap().unwrap();
    assert_eq!(out.counted, 1);
    assert_eq!(
        (
            out.statements().unwrap()[0].version,
            out.statements().unwrap()[0].total
        ),
        (3, dec!(1.50))
    );
    assert_eq!(version_and_total(&pool, october).await, (3, dec!(1.50)));

    // November has no statement yet; another transaction stores one first.
    // The batch's write over "no version" fails once it commits, and the
    // batch runs again over version 1.
    let mut other = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO statements (account_id, period_start, period_end, version, body)
         VALUES ('acme', $1, '2026-12-01T00:00:00Z', 1, '{}')",
    )
    .bind(november)
    .execute(&mut *other)
    .await
    .unwrap();
    let batch = {
        let pool = pool.clone();
        tokio::spawn(async move {
            process_batch(
                &pool,
                &[usage(
                    3,
                    "cloud.disk.gb",
                    dec!(5),
                    t(2, 0) + Duration::days(31),
                )],
            )
            .await
        })
    };
    until_one_waits_for_a_lock(&pool).await;
    other.commit().await.unwrap();
    let out = batch.await.unwrap().unwrap();
    assert_eq!(
        (
            out.counted,
            out.statements().unwrap()[0].version,
            out.statements().unwrap()[0].total
        ),
        (1, 2, dec!(0.50))
    );
    assert_eq!(version_and_total(&pool, november).await, (2, dec!(0.50)));
}

/// A batch whose statements' bodies pass the bytes one `INSERT` sends
/// (`repo::store_statements` writes them in chunks of 1 MiB): every one is
/// stored, at its version, with an outbox row for each 256 accounts
/// restated together (`restate::RESTATE_CHUNK`); a second batch moves each
/// to its next version.
#[tokio::test]
async fn statements_beyond_one_chunk_are_all_stored_at_their_versions() {
    let pool = database().await;
    seed(&pool).await;
    let accounts = 2_500;
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..accounts {
        catalog::create_account(
            &mut conn,
            &AccountId::parse(&format!("a{i:04}")).unwrap(),
            "Account",
            Currency::parse("USD").unwrap(),
        )
        .await
        .unwrap();
    }
    drop(conn);
    let batch = |round: usize| -> Vec<UsageEvent> {
        (0..accounts)
            .map(|i| UsageEvent {
                account_id: AccountId::parse(&format!("a{i:04}")).unwrap(),
                ..usage(round * accounts + i, "cloud.disk.gb", dec!(10), t(3, 0))
            })
            .collect()
    };
    for round in 1..=2 {
        let out = process_batch(&pool, &batch(round)).await.unwrap();
        assert_eq!(out.statements().unwrap().len(), accounts);
        let (count, low, high, bytes, total): (i64, i64, i64, i64, Decimal) = sqlx::query_as(
            "SELECT count(*), min(version), max(version), sum(length(body))::bigint,
                    sum((body::jsonb ->> 'total')::numeric)
             FROM statements WHERE account_id LIKE 'a%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(bytes > 1 << 20, "{bytes} bytes fit in one chunk");
        let round = i64::try_from(round).unwrap();
        // Each account: 10 GB per round at 0.10.
        assert_eq!(
            (count, low, high, total),
            (2_500, round, round, Decimal::from(2_500 * round))
        );
    }
    let listed: Vec<i32> =
        sqlx::query_scalar("SELECT cardinality(account_ids) FROM statement_outbox ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let per_batch = [256, 256, 256, 256, 256, 256, 256, 256, 256, 196];
    assert_eq!(listed, [per_batch, per_batch].concat());
}
