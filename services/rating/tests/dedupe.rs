//! The dedupe window against a real PostgreSQL: ids remembered whatever
//! their time (`counted_events` is the dedupe set), whole partitions
//! dropped once out of the window and the counted events of the periods
//! ended before what is kept pruned, events older than it refused, and the
//! storage flat over months of traffic. "Now"
//! is always given, never read from the clock: the simulated times are
//! around 2030, long after the partition the migration made (which ends the
//! day after the database was made).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{acme_event, database, until_one_waits_for_a_lock};

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use tally_domain::{AccountId, Currency, DedupeWindow, PriceModel, ProviderId, ProviderKind, Sku};
use tally_platform::catalog;
use tally_rating::{dedupe, process_batch, process_batch_at, Admission};

fn day(month: u32, day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, month, day, 12, 0, 0).unwrap()
}

/// 35 days, 5 minutes, 3 days of margin: partitions of 42 days.
fn window() -> DedupeWindow {
    DedupeWindow::new(
        std::time::Duration::from_secs(35 * 86_400),
        std::time::Duration::from_secs(300),
        std::time::Duration::from_secs(3 * 86_400),
    )
}

/// Provider `cloud` with `cloud.disk.gb` at 0.10 since 2020; account `acme` in USD.
async fn seed(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let p = ProviderId::parse("cloud").unwrap();
    catalog::create_provider(&mut conn, &p, "Cloud", ProviderKind::FirstParty)
        .await
        .unwrap();
    let usd = Currency::parse("USD").unwrap();
    catalog::create_account(&mut conn, &AccountId::parse("acme").unwrap(), "Acme", usd)
        .await
        .unwrap();
    let sku = Sku::parse("cloud.disk.gb").unwrap();
    catalog::create_sku(&mut conn, &sku, &p, "Disk", "GB")
        .await
        .unwrap();
    let model = PriceModel::per_unit(dec!(0.1)).unwrap().into();
    let since = Utc.with_ymd_and_hms(2020, 1, 1, 0, 0, 0).unwrap();
    catalog::add_price(&mut conn, &sku, usd, since, &model)
        .await
        .unwrap();
}

fn disk(id: &str, quantity: Decimal, time: DateTime<Utc>) -> tally_domain::UsageEvent {
    acme_event("cloud", id, "cloud.disk.gb", quantity, time)
}

/// Events in the dedupe set (`counted_events`).
async fn rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM counted_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Ids in `processed_events`, which rating no longer writes.
async fn legacy_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM processed_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn counted_quantity(pool: &PgPool) -> Decimal {
    sqlx::query_scalar(
        "SELECT coalesce(sum(quantity), 0) FROM usage_aggregates WHERE account_id = 'acme'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The partitions' names and bounds, oldest first.
async fn partitions(pool: &PgPool) -> Vec<(String, Option<DateTime<Utc>>, DateTime<Utc>)> {
    let mut conn = pool.acquire().await.unwrap();
    dedupe::partitions(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.name, p.span.start, p.span.end))
        .collect()
}

/// Partitions as PostgreSQL has them (not as the bookkeeping says).
async fn attached(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'processed_events'::regclass",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_id_resent_with_another_time_in_another_partition_is_counted_once() {
    let pool = database().await;
    seed(&pool).await;
    let w = window();
    // Jan 1st: from the cutoff's day (Nov 24th) for 42 days; Jan 20th: the
    // next 42 days, as the newest time admitted (Jan 23rd) passes Jan 5th.
    let first = dedupe::prune(&pool, &w, day(1, 1)).await.unwrap();
    assert_eq!(first.created, ["processed_events_20291124"]);
    assert_eq!(first.dropped, ["processed_events_initial"]);
    let now = day(1, 20);
    let next = dedupe::prune(&pool, &w, now).await.unwrap();
    assert_eq!(next.created, ["processed_events_20300105"]);
    assert!(next.dropped.is_empty());
    let at = Admission::at(w, now);
    let dec_20 = Utc.with_ymd_and_hms(2029, 12, 20, 9, 0, 0).unwrap();

    // e-1 on Jan 1st (first partition); resent with Jan 10th's time (the
    // second): a careless client.
    let one = process_batch_at(&pool, &[disk("e-1", dec!(10), day(1, 1))], at)
        .await
        .unwrap();
    assert_eq!((one.counted, one.duplicates), (1, 0));
    let resent = process_batch_at(
        &pool,
        &[
            disk("e-1", dec!(10), day(1, 10)),
            disk("e-2", dec!(5), day(1, 10)),
        ],
        at,
    )
    .await
    .unwrap();
    assert_eq!((resent.counted, resent.duplicates), (1, 1));
    // And the other way round: first in the later partition.
    let later = process_batch_at(&pool, &[disk("e-3", dec!(7), day(1, 10))], at)
        .await
        .unwrap();
    let earlier = process_batch_at(&pool, &[disk("e-3", dec!(7), dec_20)], at)
        .await
        .unwrap();
    assert_eq!(
        (later.counted, earlier.counted, earlier.duplicates),
        (1, 0, 1)
    );
    // A redelivery of e-2 in one batch with a resend of it in December.
    let both = process_batch_at(
        &pool,
        &[
            disk("e-2", dec!(5), day(1, 10)),
            disk("e-2", dec!(5), dec_20),
        ],
        at,
    )
    .await
    .unwrap();
    assert_eq!((both.counted, both.duplicates), (0, 2));

    assert_eq!(rows(&pool).await, 3);
    assert_eq!(counted_quantity(&pool).await, dec!(22));
    // Each event stored once: its values are its id in the dedupe set.
    assert_eq!(legacy_rows(&pool).await, 0);
}

/// Partitions by day (`TALLY_DEDUPE_PARTITION_DAYS=1`): the window meets
/// 42 of them, and an id is still counted once across them.
#[tokio::test]
async fn with_partitions_by_day_an_id_resent_another_day_is_counted_once() {
    let pool = database().await;
    seed(&pool).await;
    let w = window().with_partition_days(1);
    let now = day(1, 20);
    let made = dedupe::prune(&pool, &w, now).await.unwrap();
    // Dec 13th (the cutoff's day) through Jan 23rd (the newest time admitted).
    assert_eq!(made.created.len(), 42);
    assert_eq!(made.created[0], "processed_events_20291213");
    assert_eq!(made.created[41], "processed_events_20300123");
    let at = Admission::at(w, now);
    let first = process_batch_at(&pool, &[disk("e-1", dec!(10), day(1, 1))], at)
        .await
        .unwrap();
    let resent = process_batch_at(
        &pool,
        &[
            disk("e-1", dec!(10), day(1, 15)),
            disk("e-2", dec!(5), day(1, 15)),
        ],
        at,
    )
    .await
    .unwrap();
    assert_eq!(
        (first.counted, resent.counted, resent.duplicates),
        (1, 1, 1)
    );
    assert_eq!(rows(&pool).await, 2);
    assert_eq!(counted_quantity(&pool).await, dec!(15));
    // A day later the oldest day is dropped, one made ahead.
    let next = dedupe::prune(&pool, &w, now + Duration::days(1))
        .await
        .unwrap();
    assert_eq!(next.created, ["processed_events_20300124"]);
    assert_eq!(next.dropped, ["processed_events_20291213"]);
}

/// A partition out of the window is dropped, and with it go the counted
/// events of every period that ended before the oldest time still kept.
#[tokio::test]
async fn partitions_out_of_the_window_are_dropped_and_the_periods_before_them_pruned() {
    let pool = database().await;
    seed(&pool).await;
    let w = window();
    dedupe::prune(&pool, &w, day(1, 1)).await.unwrap();
    dedupe::prune(&pool, &w, day(1, 20)).await.unwrap();
    let at = Admission::at(w, day(1, 20));
    let dec_20 = Utc.with_ymd_and_hms(2029, 12, 20, 9, 0, 0).unwrap();
    let first: Vec<_> = (0..4)
        .map(|i| disk(&format!("a{i}"), dec!(1), dec_20))
        .collect();
    let second: Vec<_> = (0..3)
        .map(|i| disk(&format!("b{i}"), dec!(1), day(1, 10)))
        .collect();
    assert_eq!(
        process_batch_at(&pool, &first, at).await.unwrap().counted,
        4
    );
    assert_eq!(
        process_batch_at(&pool, &second, at).await.unwrap().counted,
        3
    );
    assert_eq!(rows(&pool).await, 7);
    assert_eq!(attached(&pool).await, 2);

    // The first partition ends on Jan 5th 00:00: kept until the cutoff
    // (38 days back) reaches it, on Feb 12th 00:00.
    let drop_at = Utc.with_ymd_and_hms(2030, 2, 12, 0, 0, 0).unwrap();
    let kept = dedupe::prune(&pool, &w, drop_at - Duration::seconds(1))
        .await
        .unwrap();
    assert!(kept.dropped.is_empty());
    // December's period ended on Jan 1st, before the cutoff, but after the
    // oldest time kept (Nov 24th): its ids still dedupe.
    assert_eq!(kept.values_pruned, 0);
    assert_eq!(rows(&pool).await, 7);
    let redelivered = process_batch(&pool, &first).await.unwrap();
    assert_eq!((redelivered.counted, redelivered.duplicates), (0, 4));
    // Once Nov 24th's partition is dropped, times before Jan 5th are
    // refused, and December goes whole; January's is kept.
    let gone = dedupe::prune(&pool, &w, drop_at).await.unwrap();
    assert_eq!(gone.values_pruned, 4);
    assert_eq!(gone.dropped, ["processed_events_20291124"]);
    assert_eq!(gone.partitions, 1);
    assert_eq!(rows(&pool).await, 3);
    assert_eq!(attached(&pool).await, 1);
    // Pruning again at the same moment changes nothing.
    let again = dedupe::prune(&pool, &w, drop_at).await.unwrap();
    assert_eq!((again.created.len(), again.dropped.len()), (0, 0));
    assert_eq!(rows(&pool).await, 3);
}

#[tokio::test]
async fn an_event_older_than_the_window_is_dead_lettered_and_its_siblings_are_billed() {
    let pool = database().await;
    seed(&pool).await;
    let w = window();
    let now = day(4, 10);
    dedupe::prune(&pool, &w, now).await.unwrap();
    // The cutoff is 38 days back: Mar 3rd 12:00.
    let cutoff = w.cutoff(now);
    assert_eq!(cutoff, day(3, 3));
    let batch = [
        disk("old", dec!(100), cutoff - Duration::seconds(1)),
        disk("edge", dec!(3), cutoff),
        disk("fresh", dec!(4), day(4, 10)),
        disk("future", dec!(100), w.newest(now) + Duration::seconds(1)),
    ];
    let out = process_batch_at(&pool, &batch, Admission::at(w, now))
        .await
        .unwrap();
    let dead: Vec<_> = out
        .dead
        .iter()
        .map(|d| (d.code, d.event.as_ref().unwrap().event_id.to_string()))
        .collect();
    assert_eq!(
        dead,
        [
            ("outside_dedupe_window", "old".to_owned()),
            ("outside_dedupe_window", "future".to_owned())
        ]
    );
    assert!(out.dead[0]
        .reason
        .contains("rates times from 2030-03-03T12:00:00+00:00"));
    assert_eq!((out.counted, out.duplicates), (2, 0));
    assert_eq!(rows(&pool).await, 2);
    // Mar 3rd: 3 GB; Apr 10th: 4 GB; at 0.10.
    let totals: Vec<Decimal> = sqlx::query_scalar(
        "SELECT (body::jsonb ->> 'total')::numeric FROM statements
         WHERE account_id = 'acme' ORDER BY period_start",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(totals, [dec!(0.30), dec!(0.40)]);
}

#[tokio::test]
async fn an_event_whose_partition_was_dropped_is_refused_whatever_the_clock() {
    let pool = database().await;
    seed(&pool).await;
    let w = window();
    let e = disk("e-1", dec!(2), day(2, 1));
    let at = Admission::at(w, day(2, 1));
    dedupe::prune(&pool, &w, day(2, 1)).await.unwrap();
    assert_eq!(
        process_batch_at(&pool, std::slice::from_ref(&e), at)
            .await
            .unwrap()
            .counted,
        1
    );
    // Months later its partition is gone; a redelivery of it is refused
    // even by rating with no clock, and counted nowhere.
    let gone = dedupe::prune(&pool, &w, day(6, 1)).await.unwrap();
    assert_eq!(gone.dropped.len(), 1);
    let redelivered = process_batch(&pool, &[e, disk("e-2", dec!(1), day(6, 1))])
        .await
        .unwrap();
    assert_eq!(redelivered.dead.len(), 1);
    assert_eq!(redelivered.dead[0].code, "outside_dedupe_window");
    assert!(redelivered.dead[0]
        .reason
        .contains("its partition was dropped"));
    assert_eq!((redelivered.counted, redelivered.duplicates), (1, 0));
    assert_eq!(counted_quantity(&pool).await, dec!(3));
    // February's counted events went with the partition: e-2 alone is kept.
    assert_eq!(gone.values_pruned, 1);
    assert_eq!(rows(&pool).await, 1);
}

#[tokio::test]
async fn a_batch_makes_the_partition_its_events_need() {
    let pool = database().await;
    seed(&pool).await;
    let w = window();
    dedupe::prune(&pool, &w, day(1, 1)).await.unwrap();
    let last_end = partitions(&pool).await.last().unwrap().2;
    // Past every partition (the prune has not run since): made on demand.
    let out = process_batch_at(
        &pool,
        &[disk("e-1", dec!(1), last_end + Duration::days(1))],
        Admission::at(w, last_end),
    )
    .await
    .unwrap();
    assert_eq!(out.counted, 1);
    let after = partitions(&pool).await;
    assert_eq!(after.last().unwrap().1, Some(last_end));
    assert_eq!(after.last().unwrap().2, last_end + Duration::days(42));
    assert_eq!(attached(&pool).await, after.len() as i64);
}

/// Ten simulated months, 100 events a day, the prune once a day: never
/// more than two partitions, and the dedupe set holds exactly the events
/// of the periods (calendar months here) that end after the oldest time
/// kept.
#[tokio::test]
async fn storage_stays_flat_over_months_of_traffic() {
    let pool = database().await;
    seed(&pool).await;
    let w = window();
    let start = day(1, 1);
    let mut most_partitions = 0;
    let mut most_rows = 0;
    for d in 0..300 {
        let now = start + Duration::days(d);
        dedupe::prune(&pool, &w, now).await.unwrap();
        let events: Vec<_> = (0..100)
            .map(|i| disk(&format!("d{d}-{i}"), dec!(1), now - Duration::minutes(i)))
            .collect();
        let out = process_batch_at(&pool, &events, Admission::at(w, now))
            .await
            .unwrap();
        assert_eq!(out.counted, 100);
        let parts = partitions(&pool).await;
        most_partitions = most_partitions.max(parts.len());
        let kept_from = parts[0].1.unwrap();
        // Every day whose month ends at or after it, 100 rows each.
        let days_kept = (0..=d)
            .filter(|k| month_end(start + Duration::days(*k)) >= kept_from)
            .count() as i64;
        let n = rows(&pool).await;
        assert_eq!(n, days_kept * 100, "day {d}");
        most_rows = most_rows.max(n);
    }
    assert_eq!(most_partitions, 2);
    // At most two partitions of 42 days of traffic and a month before them.
    assert!(most_rows <= (84 + 31) * 100, "{most_rows}");
    assert_eq!(attached(&pool).await, 2);
    assert_eq!(legacy_rows(&pool).await, 0);
}

/// The end of the calendar month holding `at`.
fn month_end(at: DateTime<Utc>) -> DateTime<Utc> {
    let (y, m) = (at.year(), at.month());
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).unwrap()
}

/// The migration that partitions `processed_events` keeps every row, and
/// what it kept still dedupes, after rating stopped writing it.
#[tokio::test]
async fn the_migration_keeps_the_ids_counted_before_it() {
    use tally_platform::db::{self, MIGRATOR};
    let url = db::scratch_database("tally_rating");
    db::create_database_if_missing(&url).await.unwrap();
    let pool = db::connect(&url, 2).await.unwrap();
    let partitioning = MIGRATOR
        .iter()
        .position(|m| m.description == "dedupe partitions")
        .unwrap();
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(MIGRATOR.migrations[..partitioning].to_vec()),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await.unwrap();
    let old = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
    sqlx::query(
        "INSERT INTO processed_events (provider_id, event_id, account_id, event_time)
         SELECT 'cloud', 'e-' || g, 'acme', $1 + make_interval(mins => g)
         FROM generate_series(1, 250) AS g",
    )
    .bind(old)
    .execute(&pool)
    .await
    .unwrap();
    MIGRATOR.run(&pool).await.unwrap();
    assert_eq!(legacy_rows(&pool).await, 250);
    let initial: i64 = sqlx::query_scalar("SELECT count(*) FROM processed_events_initial")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(initial, 250);
    seed(&pool).await;
    // e-7 again (its stored time, then another): both duplicates.
    let again = process_batch(
        &pool,
        &[
            disk("e-7", dec!(1), old + Duration::minutes(7)),
            disk("e-8", dec!(1), old),
            disk("e-251", dec!(1), old),
        ],
    )
    .await
    .unwrap();
    assert_eq!((again.counted, again.duplicates), (1, 2));
    assert_eq!((legacy_rows(&pool).await, rows(&pool).await), (250, 1));
}

/// Two transactions counting the same (provider, event id) with different
/// times at once (two rating instances, the two messages on different
/// Kafka partitions): the second waits for the first on the key and counts
/// nothing. (When the dedupe set was keyed by time too, each looked the id
/// up before the other committed, and both counted.)
#[tokio::test]
async fn one_id_counted_by_two_transactions_at_once_counts_once() {
    use tally_rating::corrections_repo::count_new;
    let pool = database().await;
    seed(&pool).await;
    let mut first = pool.begin().await.unwrap();
    let counted = count_new(&mut first, vec![value_of("e-1", day(1, 3))], false)
        .await
        .unwrap();
    assert_eq!(counted.len(), 1);
    let second = tokio::spawn({
        let pool = pool.clone();
        let event = value_of("e-1", day(1, 9));
        async move {
            let mut tx = pool.begin().await.unwrap();
            let counted = count_new(&mut tx, vec![event], false).await.unwrap();
            tx.commit().await.unwrap();
            counted.len()
        }
    });
    until_one_waits_for_a_lock(&pool).await;
    assert!(!second.is_finished(), "the second waits on the key");
    first.commit().await.unwrap();
    assert_eq!(second.await.unwrap(), 0);
    assert_eq!(rows(&pool).await, 1);
}

/// `count_new` takes the ids of its events in (provider, event id) order,
/// whatever order it is given them, so that concurrent transactions lock
/// them in one order: given e-z then e-m while e-m is held, it waits on
/// e-m before it takes e-z, and a third transaction counts e-z meanwhile.
/// (Taken in the order given, e-z would be held by the waiting second, and
/// the third would wait too.)
#[tokio::test]
async fn count_new_takes_ids_in_key_order_whatever_order_it_is_given() {
    use tally_rating::corrections_repo::count_new;
    let pool = database().await;
    seed(&pool).await;
    let mut first = pool.begin().await.unwrap();
    let taken = count_new(&mut first, vec![value_of("e-m", day(1, 3))], false)
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let second = tokio::spawn({
        let pool = pool.clone();
        let events = vec![value_of("e-z", day(1, 4)), value_of("e-m", day(1, 5))];
        async move {
            let mut tx = pool.begin().await.unwrap();
            let counted = count_new(&mut tx, events, false).await.unwrap();
            tx.commit().await.unwrap();
            counted.len()
        }
    });
    until_one_waits_for_a_lock(&pool).await;
    assert!(!second.is_finished(), "the second waits on e-m");
    let mut third = pool.begin().await.unwrap();
    let taken = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        count_new(&mut third, vec![value_of("e-z", day(1, 6))], false),
    )
    .await
    .expect("e-z is not held by the second")
    .unwrap();
    assert_eq!(taken.len(), 1);
    third.commit().await.unwrap();
    first.commit().await.unwrap();
    assert_eq!(second.await.unwrap(), 0);
    assert_eq!(rows(&pool).await, 2);
}

/// The values of acme's event `event_id` of January's disk usage at `time`.
fn value_of(event_id: &str, time: DateTime<Utc>) -> tally_rating::corrections_repo::CountedEvent {
    let january = tally_domain::Period::new(
        day(1, 1) - Duration::hours(12),
        day(2, 1) - Duration::hours(12),
    )
    .unwrap();
    tally_rating::corrections_repo::CountedEvent {
        provider_id: "cloud".into(),
        event_id: event_id.into(),
        account_id: "acme".into(),
        sku: "cloud.disk.gb".into(),
        price_id: 1,
        binding_id: String::new(),
        period: january,
        time,
        quantity: dec!(1),
        dimensions: std::collections::BTreeMap::new(),
        on_behalf_of: String::new(),
    }
}

/// A rating instance of an older build still running (a rolling upgrade, a
/// rollback) would record ids in `processed_events` only, and count again
/// an event a newer instance counted: its insert is refused with a schema
/// error, which rating treats as systemic (the batch waits, nothing is
/// dead-lettered).
#[tokio::test]
async fn an_older_builds_insert_into_processed_events_is_refused_as_systemic() {
    let pool = database().await;
    let err = sqlx::query(
        "INSERT INTO processed_events (provider_id, event_id, account_id, event_time)
         VALUES ('cloud', 'e-1', 'acme', now()) ON CONFLICT DO NOTHING",
    )
    .execute(&pool)
    .await
    .unwrap_err();
    let code = err.as_database_error().and_then(|d| d.code());
    assert_eq!(code.as_deref(), Some("0A000"));
    assert!(tally_rating::error::ProcessError::from(err).is_systemic());
    assert_eq!(legacy_rows(&pool).await, 0);
}
