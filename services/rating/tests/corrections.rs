//! Usage corrections against a real PostgreSQL: cancels, amendments and
//! backfills, in an open period (restated) and in a sealed one (an
//! adjustment on the next open period, like late usage), refusals with
//! their codes, redeliveries, and the audit trail of every change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::{acme_event, database};

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use std::collections::BTreeMap;
use tally_domain::usage::{Change, CorrectionRequest, SealMarker};
use tally_domain::{
    AccountId, Aggregation, Currency, EventId, PriceBook, ProviderId, ProviderKind, Quantity, Sku,
    Statement, UsageEvent,
};
use tally_platform::catalog;
use tally_rating::seal::seal;
use tally_rating::{apply_correction, process_batch};

fn at(month: u32, day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, month, day, hour, 0, 0).unwrap()
}

fn month(month: u32) -> DateTime<Utc> {
    at(month, 1, 0)
}

/// `acme` bills calendar months; `cloud.vm.hour` costs 0.10 for the first
/// 100 hours of a period and 0.05 beyond; `cloud.ip.peak` bills the largest
/// event at 1.00. `other` is a second provider.
async fn seed(pool: &PgPool) {
    let mut conn = pool.acquire().await.unwrap();
    let usd = Currency::parse("USD").unwrap();
    for (id, name) in [("cloud", "Cloud"), ("other", "Other")] {
        catalog::create_provider(
            &mut conn,
            &ProviderId::parse(id).unwrap(),
            name,
            ProviderKind::FirstParty,
        )
        .await
        .unwrap();
    }
    catalog::create_account(&mut conn, &AccountId::parse("acme").unwrap(), "Acme", usd)
        .await
        .unwrap();
    let cloud = ProviderId::parse("cloud").unwrap();
    let books = [
        (
            "cloud.vm.hour",
            r#"{"model":"graduated","tiers":[{"up_to":"100","unit_price":"0.10"},{"unit_price":"0.05"}]}"#,
        ),
        (
            "cloud.ip.peak",
            r#"{"model":"per_unit","unit_price":"1.00"}"#,
        ),
    ];
    for (sku, book) in books {
        let sku = Sku::parse(sku).unwrap();
        catalog::create_sku(&mut conn, &sku, &cloud, sku.as_str(), "unit")
            .await
            .unwrap();
        let book: PriceBook = serde_json::from_str(book).unwrap();
        catalog::add_price(&mut conn, &sku, usd, month(1), &book)
            .await
            .unwrap();
    }
    catalog::set_aggregation(
        &mut conn,
        &Sku::parse("cloud.ip.peak").unwrap(),
        &Aggregation::Max,
    )
    .await
    .unwrap();
}

fn hours(id: &str, quantity: i64, time: DateTime<Utc>) -> UsageEvent {
    acme_event("cloud", id, "cloud.vm.hour", Decimal::from(quantity), time)
}

fn request(n: u128, provider: &str, change: Change) -> CorrectionRequest {
    CorrectionRequest {
        id: uuid::Uuid::from_u128(n).to_string(),
        provider_id: ProviderId::parse(provider).unwrap(),
        account_id: AccountId::parse("acme").unwrap(),
        reason: format!("reason {n}"),
        requested_by: format!("{provider}-key"),
        requested_at: at(11, 20, 0),
        change,
    }
}

fn cancel(n: u128, event: &str) -> CorrectionRequest {
    request(
        n,
        "cloud",
        Change::Cancel {
            event_id: EventId::parse(event).unwrap(),
        },
    )
}

fn amend(n: u128, event: &str, quantity: &str) -> CorrectionRequest {
    request(
        n,
        "cloud",
        Change::Amend {
            event_id: EventId::parse(event).unwrap(),
            quantity: Quantity::parse(quantity).unwrap(),
            dimensions: BTreeMap::new(),
        },
    )
}

fn backfill(
    n: u128,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    events: Vec<UsageEvent>,
) -> CorrectionRequest {
    request(n, "cloud", Change::Backfill { start, end, events })
}

/// (quantity, amount, start of the period it adjusts) of each line.
fn lines(s: &Statement) -> Vec<(Decimal, Decimal, Option<DateTime<Utc>>)> {
    s.lines
        .iter()
        .map(|l| (l.quantity, l.amount, l.adjusts.map(|p| p.start())))
        .collect()
}

/// Seals acme's periods before `through`; their final statements.
async fn seal_through(pool: &PgPool, through: DateTime<Utc>) -> Vec<Statement> {
    let marker = SealMarker {
        account_id: AccountId::parse("acme").unwrap(),
        through,
    };
    seal(pool, &[marker]).await.unwrap().statements().unwrap()
}

async fn only_statement(pool: &PgPool, request: &CorrectionRequest) -> Statement {
    let restated = apply_correction(pool, request).await.unwrap();
    assert_eq!(restated.statements().unwrap().len(), 1, "{restated:?}");
    restated.statements().unwrap().into_iter().next().unwrap()
}

/// Applies `request`, the only correction recorded, which restates
/// nothing; its refusal code.
async fn only_refusal(pool: &PgPool, request: &CorrectionRequest) -> Option<String> {
    assert!(apply_correction(pool, request)
        .await
        .unwrap()
        .statements()
        .unwrap()
        .is_empty());
    sqlx::query_scalar("SELECT code FROM usage_corrections")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Each correction: (kind, status, code, reason, requested_by).
async fn corrections(pool: &PgPool) -> Vec<(String, String, Option<String>, String, String)> {
    sqlx::query_as(
        "SELECT kind, status, code, reason, requested_by FROM usage_corrections ORDER BY id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Each change: (event, change, previous quantity, current quantity,
/// period changed, period billing it), by correction then event.
type ChangeRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    DateTime<Utc>,
    DateTime<Utc>,
);

async fn changes(pool: &PgPool) -> Vec<ChangeRow> {
    sqlx::query_as(
        "SELECT event_id, change, previous ->> 'quantity', current ->> 'quantity', period_start, billed_in
         FROM usage_correction_changes ORDER BY correction_id, event_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn change(
    event: &str,
    kind: &str,
    previous: Option<&str>,
    current: Option<&str>,
    period: DateTime<Utc>,
    billed_in: DateTime<Utc>,
) -> ChangeRow {
    (
        event.into(),
        kind.into(),
        previous.map(Into::into),
        current.map(Into::into),
        period,
        billed_in,
    )
}

#[tokio::test]
async fn cancelled_and_amended_events_of_an_open_period_restate_it_exactly() {
    let pool = database().await;
    seed(&pool).await;
    // 150 hours in October: 100 × 0.10 + 50 × 0.05 = 12.50.
    let out = process_batch(
        &pool,
        &[
            hours("a", 80, at(10, 10, 5)),
            hours("b", 40, at(10, 12, 5)),
            hours("c", 30, at(10, 20, 5)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(out.statements().unwrap()[0].total, dec!(12.50));

    // Cancel b: 110 hours = 10.00 + 0.50.
    let oct = only_statement(&pool, &cancel(1, "b")).await;
    assert_eq!(oct.period.start(), month(10));
    assert_eq!(lines(&oct), [(dec!(110), dec!(10.50), None)]);
    assert_eq!((oct.total, oct.version), (dec!(10.50), 2));
    // Amend c from 30 to 5: 85 hours = 8.50.
    let oct = only_statement(&pool, &amend(2, "c", "5")).await;
    assert_eq!(lines(&oct), [(dec!(85), dec!(8.50), None)]);
    assert_eq!((oct.total, oct.version), (dec!(8.50), 3));

    // A redelivered correction changes nothing.
    assert!(apply_correction(&pool, &cancel(1, "b"))
        .await
        .unwrap()
        .statements()
        .unwrap()
        .is_empty());
    // Refused, with nothing changed: cancelled already, unknown, another
    // provider's event (to it, unknown).
    for refused in [
        cancel(3, "b"),
        amend(4, "b", "1"),
        cancel(5, "nope"),
        request(
            6,
            "other",
            Change::Cancel {
                event_id: EventId::parse("a").unwrap(),
            },
        ),
    ] {
        let restated = apply_correction(&pool, &refused).await.unwrap();
        assert!(restated.statements().unwrap().is_empty());
    }
    // The cancelled event's id stays counted: sent again, it is a duplicate.
    let out = process_batch(&pool, &[hours("b", 40, at(10, 12, 5))])
        .await
        .unwrap();
    assert_eq!((out.counted, out.duplicates), (0, 1));

    assert_eq!(
        corrections(&pool).await,
        [
            ("cancel", "applied", None, "reason 1", "cloud-key"),
            ("amend", "applied", None, "reason 2", "cloud-key"),
            (
                "cancel",
                "refused",
                Some("already_cancelled"),
                "reason 3",
                "cloud-key"
            ),
            (
                "amend",
                "refused",
                Some("already_cancelled"),
                "reason 4",
                "cloud-key"
            ),
            (
                "cancel",
                "refused",
                Some("unknown_event"),
                "reason 5",
                "cloud-key"
            ),
            (
                "cancel",
                "refused",
                Some("unknown_event"),
                "reason 6",
                "other-key"
            ),
        ]
        .map(|(k, s, c, r, b)| (
            k.to_owned(),
            s.to_owned(),
            c.map(str::to_owned),
            r.to_owned(),
            b.to_owned()
        ))
    );
    assert_eq!(
        changes(&pool).await,
        [
            change("b", "cancelled", Some("40"), None, month(10), month(10)),
            change("c", "amended", Some("30"), Some("5"), month(10), month(10)),
        ]
    );
    // The statement stored is the last one.
    let version: i64 = sqlx::query_scalar("SELECT version FROM statements")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(version, 3);
}

#[tokio::test]
async fn a_cancelled_peak_gives_back_the_next_largest() {
    let pool = database().await;
    seed(&pool).await;
    let peak = |id: &str, q: i64, day: u32| {
        acme_event(
            "cloud",
            id,
            "cloud.ip.peak",
            Decimal::from(q),
            at(10, day, 0),
        )
    };
    let out = process_batch(
        &pool,
        &[peak("p1", 5, 3), peak("p2", 9, 4), peak("p3", 2, 5)],
    )
    .await
    .unwrap();
    assert_eq!(out.statements().unwrap()[0].total, dec!(9.00));
    let oct = only_statement(&pool, &cancel(1, "p2")).await;
    assert_eq!(lines(&oct), [(dec!(5), dec!(5.00), None)]);
    let oct = only_statement(&pool, &amend(2, "p3", "7")).await;
    assert_eq!(lines(&oct), [(dec!(7), dec!(7.00), None)]);
    // Every event cancelled: the line goes.
    only_statement(&pool, &cancel(3, "p1")).await;
    let oct = only_statement(&pool, &cancel(4, "p3")).await;
    assert_eq!((oct.lines.len(), oct.total), (0, dec!(0)));
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_aggregates")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
}

#[tokio::test]
async fn corrections_of_a_sealed_period_are_adjustments_on_the_next_open_one() {
    let pool = database().await;
    seed(&pool).await;
    process_batch(
        &pool,
        &[
            hours("a", 80, at(10, 10, 5)),
            hours("b", 40, at(10, 12, 5)),
            hours("c", 30, at(10, 20, 5)),
            hours("d", 10, at(11, 5, 5)),
        ],
    )
    .await
    .unwrap();
    let sealed = seal_through(&pool, month(11)).await;
    assert_eq!((sealed[0].total, sealed[0].sealed), (dec!(12.50), true));

    // October now has 110 hours (10.50) where it billed 12.50: November
    // bills its own 10 hours (1.00) and −2.00 for October.
    let nov = only_statement(&pool, &cancel(1, "b")).await;
    assert_eq!(nov.period.start(), month(11));
    assert_eq!(
        lines(&nov),
        [
            (dec!(10), dec!(1.00), None),
            (dec!(-40), dec!(-2.00), Some(month(10)))
        ]
    );
    assert_eq!(nov.total, dec!(-1.00));
    // Amend c to 5: October 85 hours (8.50), billed 12.50.
    let nov = only_statement(&pool, &amend(2, "c", "5")).await;
    assert_eq!(
        lines(&nov),
        [
            (dec!(10), dec!(1.00), None),
            (dec!(-65), dec!(-4.00), Some(month(10)))
        ]
    );
    // And November's own event, amended in its open period.
    let nov = only_statement(&pool, &amend(3, "d", "20")).await;
    assert_eq!(
        lines(&nov),
        [
            (dec!(20), dec!(2.00), None),
            (dec!(-65), dec!(-4.00), Some(month(10)))
        ]
    );
    assert_eq!(nov.total, dec!(-2.00));
    // The sealed statement never changed.
    let stored: Vec<(DateTime<Utc>, i64, bool)> = sqlx::query_as(
        "SELECT period_start, version, sealed FROM statements ORDER BY period_start",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored, [(month(10), 2, true), (month(11), 4, false)]);
    assert_eq!(
        changes(&pool).await,
        [
            change("b", "cancelled", Some("40"), None, month(10), month(11)),
            change("c", "amended", Some("30"), Some("5"), month(10), month(11)),
            change("d", "amended", Some("10"), Some("20"), month(11), month(11)),
        ]
    );
}

#[tokio::test]
async fn a_backfill_replaces_a_window_of_usage_in_one_operation() {
    let pool = database().await;
    seed(&pool).await;
    process_batch(
        &pool,
        &[
            hours("a", 80, at(10, 10, 5)),
            hours("b", 40, at(10, 10, 6)),
            hours("c", 30, at(10, 11, 5)),
        ],
    )
    .await
    .unwrap();
    // October 10 metered wrongly: a was 20, b never happened, n1 was
    // missed. October: 20 + 15 + 30 = 65 hours = 6.50.
    let oct = only_statement(
        &pool,
        &backfill(
            1,
            at(10, 10, 0),
            at(10, 11, 0),
            vec![
                hours("a", 20, at(10, 10, 5)),
                hours("n1", 15, at(10, 10, 9)),
            ],
        ),
    )
    .await;
    assert_eq!(lines(&oct), [(dec!(65), dec!(6.50), None)]);
    // Refused: a replacement reusing an id counted outside the window, one
    // timed outside it, an empty window.
    for refused in [
        backfill(
            2,
            at(10, 12, 0),
            at(10, 13, 0),
            vec![hours("c", 1, at(10, 12, 1))],
        ),
        backfill(
            3,
            at(10, 12, 0),
            at(10, 13, 0),
            vec![hours("n2", 1, at(10, 14, 1))],
        ),
        backfill(4, at(10, 12, 0), at(10, 12, 0), vec![]),
    ] {
        assert!(apply_correction(&pool, &refused)
            .await
            .unwrap()
            .statements()
            .unwrap()
            .is_empty());
    }
    // Sealed, then October 11 is backfilled: c's 30 hours become n2's 50,
    // October now 85 hours (8.50) where it billed 6.50: November bills 2.00.
    seal_through(&pool, month(11)).await;
    let nov = only_statement(
        &pool,
        &backfill(
            5,
            at(10, 11, 0),
            at(10, 12, 0),
            vec![hours("n2", 50, at(10, 11, 7))],
        ),
    )
    .await;
    assert_eq!(nov.period.start(), month(11));
    assert_eq!(lines(&nov), [(dec!(20), dec!(2.00), Some(month(10)))]);
    let codes: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT status, code FROM usage_corrections ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        codes,
        [
            ("applied", None),
            ("refused", Some("event_id_taken")),
            ("refused", Some("event_outside_window")),
            ("refused", Some("window_invalid")),
            ("applied", None),
        ]
        .map(|(s, c)| (s.to_owned(), c.map(str::to_owned)))
    );
    assert_eq!(
        changes(&pool).await,
        [
            change("a", "amended", Some("80"), Some("20"), month(10), month(10)),
            change("b", "cancelled", Some("40"), None, month(10), month(10)),
            change("n1", "added", None, Some("15"), month(10), month(10)),
            change("c", "cancelled", Some("30"), None, month(10), month(11)),
            change("n2", "added", None, Some("50"), month(10), month(11)),
        ]
    );
}

/// A backfill's window is found through the periods it meets (the stored
/// events are indexed by account and period): one that spans the end of a
/// period replaces the events of both periods inside it, from its first
/// instant (October 31, 22:00) to the last before its end (November 1,
/// 02:00, kept), and no other.
#[tokio::test]
async fn a_backfill_across_two_periods_replaces_the_window_in_both() {
    let pool = database().await;
    seed(&pool).await;
    let oct31 = |hour| Utc.with_ymd_and_hms(2026, 10, 31, hour, 0, 0).unwrap();
    process_batch(
        &pool,
        &[
            hours("o1", 10, oct31(21)),
            hours("o2", 20, oct31(22)),
            hours("n1", 30, at(11, 1, 0)),
            hours("n2", 40, at(11, 1, 2)),
        ],
    )
    .await
    .unwrap();
    let restated = apply_correction(
        &pool,
        &backfill(
            1,
            oct31(22),
            at(11, 1, 2),
            vec![hours("r1", 5, oct31(23)), hours("r2", 7, at(11, 1, 1))],
        ),
    )
    .await
    .unwrap();
    let mut by_period: Vec<(DateTime<Utc>, Vec<_>)> = restated
        .statements()
        .unwrap()
        .iter()
        .map(|s| (s.period.start(), lines(s)))
        .collect();
    by_period.sort();
    // October: o1's 10 + r1's 5 hours; November: n2's 40 + r2's 7.
    assert_eq!(
        by_period,
        [
            (month(10), vec![(dec!(15), dec!(1.50), None)]),
            (month(11), vec![(dec!(47), dec!(4.70), None)]),
        ]
    );
    assert_eq!(
        changes(&pool).await,
        [
            change("n1", "cancelled", Some("30"), None, month(11), month(11)),
            change("o2", "cancelled", Some("20"), None, month(10), month(10)),
            change("r1", "added", None, Some("5"), month(10), month(10)),
            change("r2", "added", None, Some("7"), month(11), month(11)),
        ]
    );
}

#[tokio::test]
async fn pruning_drops_the_values_of_periods_ended_before_the_window_only() {
    let pool = database().await;
    seed(&pool).await;
    process_batch(
        &pool,
        &[
            hours("sep", 1, at(9, 30, 23)),
            hours("oct", 1, at(10, 1, 0)),
            hours("nov", 1, at(11, 2, 0)),
        ],
    )
    .await
    .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    // October 15: September ended before it, October did not (its events
    // stay correctable together).
    let pruned = tally_rating::corrections_repo::prune(&mut conn, at(10, 15, 0))
        .await
        .unwrap();
    assert_eq!(pruned, 1);
    let left: Vec<String> =
        sqlx::query_scalar("SELECT event_id FROM counted_events ORDER BY event_id")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    assert_eq!(left, ["nov", "oct"]);
    // A pruned event cannot be corrected: to rating it is unknown.
    assert_eq!(
        only_refusal(&pool, &cancel(1, "sep")).await.as_deref(),
        Some("unknown_event")
    );
}

#[tokio::test]
async fn a_peak_counted_before_values_were_kept_cannot_be_recomputed() {
    let pool = database().await;
    seed(&pool).await;
    let peak =
        |id: &str, q: i64| acme_event("cloud", id, "cloud.ip.peak", Decimal::from(q), at(10, 3, 0));
    process_batch(&pool, &[peak("p1", 5), peak("p2", 9)])
        .await
        .unwrap();
    // As if p1 had been counted before `counted_events` existed.
    sqlx::query("DELETE FROM counted_events WHERE event_id = 'p1'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        only_refusal(&pool, &cancel(1, "p2")).await.as_deref(),
        Some("values_unknown")
    );
    // Nothing changed: the peak is still 9, p2 still counts.
    let (max, cancelled): (Decimal, bool) = sqlx::query_as(
        "SELECT (SELECT max_quantity FROM usage_aggregates),
                (SELECT cancelled_by IS NOT NULL FROM counted_events WHERE event_id = 'p2')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((max, cancelled), (dec!(9), false));
}

#[tokio::test]
async fn a_correction_for_an_unknown_account_is_refused() {
    let pool = database().await;
    seed(&pool).await;
    let mut ghost = backfill(1, at(10, 1, 0), at(10, 2, 0), vec![]);
    ghost.account_id = AccountId::parse("ghost").unwrap();
    assert_eq!(
        only_refusal(&pool, &ghost).await.as_deref(),
        Some("account_unknown")
    );
}

/// An id an earlier version counted is in `processed_events` only (no
/// values of it are stored): a backfill's replacement reusing it is refused
/// (`event_id_taken`), and usage under it is a duplicate.
#[tokio::test]
async fn an_id_only_the_legacy_dedupe_ids_hold_is_taken() {
    let pool = database().await;
    seed(&pool).await;
    // As an earlier version left it (inserts are refused since).
    for sql in [
        "ALTER TABLE processed_events DISABLE TRIGGER processed_events_read_only",
        "INSERT INTO processed_events (provider_id, event_id, account_id, event_time)
         VALUES ('cloud', 'old', 'acme', '2026-10-01T00:00:00Z')",
        "ALTER TABLE processed_events ENABLE TRIGGER processed_events_read_only",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let refused = backfill(
        1,
        at(10, 12, 0),
        at(10, 13, 0),
        vec![hours("old", 1, at(10, 12, 1))],
    );
    assert_eq!(
        only_refusal(&pool, &refused).await.as_deref(),
        Some("event_id_taken")
    );
    let again = process_batch(&pool, &[hours("old", 5, at(10, 2, 0))])
        .await
        .unwrap();
    assert_eq!((again.counted, again.duplicates), (0, 1));
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM counted_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
