//! Finalized means frozen: only sealed drafts are finalized, numbers are
//! gap-free with two instances finalizing at once, and PostgreSQL itself
//! refuses any change to a finalized invoice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use chrono::{TimeZone, Utc};
use rust_decimal_macros::dec;
use sqlx::PgPool;
use support::*;
use tally_domain::invoice::number as invoice_number;
use tally_invoicing::apply_statements;
use tally_invoicing::lifecycle::finalize_sealed;

/// Runs `sql` (with `id` as `$1`) and checks PostgreSQL refuses it with
/// SQLSTATE 23000.
async fn refused(pool: &PgPool, sql: &str, id: Option<uuid::Uuid>) {
    let mut query = sqlx::query(sql);
    if let Some(id) = id {
        query = query.bind(id);
    }
    let err = query.execute(pool).await.expect_err(sql);
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("23000"),
        "{sql}: {err}"
    );
}

/// One draft per account for October 2026, its final (sealed) statement
/// received when `sealed`.
async fn drafts(pool: &PgPool, n: usize) -> Vec<String> {
    drafts_sealed(pool, n, true).await
}

async fn drafts_sealed(pool: &PgPool, n: usize, sealed: bool) -> Vec<String> {
    let accounts: Vec<String> = (0..n).map(|i| format!("acct{i:03}")).collect();
    let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
    create_accounts(pool, &refs).await;
    let statements: Vec<_> = accounts
        .iter()
        .map(|a| {
            let mut s = statement(
                a,
                "2026-10",
                1,
                vec![line(&cloud(), "cloud.vm", dec!(2), dec!(0.25))],
            );
            s.sealed = sealed;
            s
        })
        .collect();
    assert_eq!(apply_statements(pool, &statements).await.unwrap(), n);
    accounts
}

#[tokio::test]
async fn two_instances_finalizing_at_once_skip_and_reuse_no_number() {
    let pool = fresh_pool().await;
    drafts(&pool, 40).await;
    let now = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    let instance = |pool: PgPool| async move {
        let mut mine = Vec::new();
        loop {
            let batch = finalize_sealed(&pool, "TLY", now, 3).await.unwrap();
            if batch.is_empty() {
                return mine;
            }
            mine.extend(batch.into_iter().map(|f| f.number));
        }
    };
    let (a, b) = tokio::join!(
        tokio::spawn(instance(pool.clone())),
        tokio::spawn(instance(pool.clone()))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(
        !a.is_empty() && !b.is_empty(),
        "both instances finalized some"
    );
    let mut all: Vec<String> = a.into_iter().chain(b).collect();
    all.sort();
    let expected: Vec<String> = (1..=40).map(|i| invoice_number("TLY", 2026, i)).collect();
    assert_eq!(all, expected, "1 to 40, none skipped, none twice");
    let finalized: i64 =
        sqlx::query_scalar("SELECT count(*) FROM invoices WHERE status = 'finalized'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(finalized, 40);
}

#[tokio::test]
async fn only_drafts_whose_final_statement_arrived_are_finalized() {
    let pool = fresh_pool().await;
    let accounts = drafts_sealed(&pool, 2, false).await;
    // Not through SQL either: a draft is never voided, nor finalized
    // without its number or before it is sealed.
    for sql in [
        "UPDATE invoices SET status = 'void', voided_at = now(), void_reason = 'x'",
        "UPDATE invoices SET status = 'finalized', finalized_at = now()",
        "UPDATE invoices SET status = 'finalized', finalized_at = now(), number = 'TLY-2026-000099'",
    ] {
        refused(&pool, sql, None).await;
    }
    let now = Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap();
    let done = finalize_sealed(&pool, "TLY", now, 10).await.unwrap();
    assert!(done.is_empty(), "a month later, but not sealed: {done:?}");
    // The first account's sealed statement (version 2) arrives.
    let mut s = statement(
        &accounts[0],
        "2026-10",
        2,
        vec![line(&cloud(), "cloud.vm", dec!(4), dec!(0.25))],
    );
    s.sealed = true;
    assert_eq!(apply_statements(&pool, &[s]).await.unwrap(), 1);
    let done = finalize_sealed(&pool, "TLY", now, 10).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].number, "TLY-2026-000001");
    let (account, total): (String, rust_decimal::Decimal) =
        sqlx::query_as("SELECT account_id, total FROM invoices WHERE status = 'finalized'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (account.as_str(), total),
        (accounts[0].as_str(), dec!(1.00))
    );
}

/// (position, SKU) of every line, by position.
async fn line_skus(pool: &PgPool) -> Vec<(i32, String)> {
    sqlx::query_as("SELECT position, sku_id FROM invoice_lines ORDER BY position")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// Finalizes the one sealed draft, whose lines are then numbered 0, 1, 2
/// in their order: VMs, disk, database hours.
async fn finalizes_numbered_in_order(pool: &PgPool) {
    let now = Utc.with_ymd_and_hms(2026, 12, 5, 0, 0, 0).unwrap();
    assert_eq!(
        finalize_sealed(pool, "TLY", now, 10).await.unwrap().len(),
        1
    );
    assert_eq!(
        line_skus(pool).await,
        [
            (0, "cloud.vm".to_owned()),
            (1, "cloud.disk".to_owned()),
            (2, "dbco.db.hour".to_owned()),
        ]
    );
}

/// A draft's lines have room between them; finalized, they are numbered
/// 0, 1, 2, … in their order (credit notes name a line by that number).
#[tokio::test]
async fn finalizing_numbers_the_lines_from_zero_in_their_order() {
    let pool = fresh_pool().await;
    let accounts = drafts_sealed(&pool, 1, false).await;
    let mut s = statement(
        &accounts[0],
        "2026-10",
        2,
        vec![
            line(&cloud(), "cloud.vm", dec!(4), dec!(0.25)),
            line(&dbco(), "dbco.db.hour", dec!(1), dec!(0.20)),
        ],
    );
    apply_statements(&pool, &[s.clone()]).await.unwrap();
    // A new line between the two, in the final statement.
    s.version = 3;
    s.sealed = true;
    s.lines
        .insert(1, line(&cloud(), "cloud.disk", dec!(1), dec!(1.10)));
    apply_statements(&pool, &[s]).await.unwrap();
    let draft = line_skus(&pool).await;
    assert_eq!(draft.len(), 3);
    assert_ne!(
        draft.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
        [0, 1, 2],
        "a draft's lines have room between them"
    );
    finalizes_numbered_in_order(&pool).await;
}

/// Lines at 1, 3 and 5 become 0, 1 and 2; the one at 1 (the number
/// another line takes) steps aside below zero first. (Moved in rising
/// order the lines would not collide either: this checks the result, not
/// every order PostgreSQL may update them in.)
#[tokio::test]
async fn finalizing_moves_lines_onto_numbers_other_lines_hold() {
    let pool = fresh_pool().await;
    let accounts = drafts_sealed(&pool, 1, false).await;
    let mut s = statement(
        &accounts[0],
        "2026-10",
        2,
        vec![
            line(&cloud(), "cloud.vm", dec!(4), dec!(0.25)),
            line(&cloud(), "cloud.disk", dec!(1), dec!(1.10)),
            line(&dbco(), "dbco.db.hour", dec!(1), dec!(0.20)),
        ],
    );
    s.sealed = true;
    apply_statements(&pool, &[s]).await.unwrap();
    sqlx::query("UPDATE invoice_lines SET position = position / 32768")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        line_skus(&pool)
            .await
            .iter()
            .map(|(p, _)| *p)
            .collect::<Vec<_>>(),
        [1, 3, 5]
    );
    finalizes_numbered_in_order(&pool).await;
}

#[tokio::test]
async fn sql_cannot_change_a_finalized_invoice() {
    let pool = fresh_pool().await;
    drafts(&pool, 2).await;
    let now = Utc.with_ymd_and_hms(2026, 11, 5, 0, 0, 0).unwrap();
    let done = finalize_sealed(&pool, "TLY", now, 1).await.unwrap();
    let id = done[0].id;
    for sql in [
        "UPDATE invoices SET total = 0 WHERE id = $1",
        "UPDATE invoices SET number = 'TLY-2026-999999' WHERE id = $1",
        "UPDATE invoices SET status = 'draft' WHERE id = $1",
        "DELETE FROM invoices WHERE id = $1",
        "UPDATE invoice_lines SET amount = 0 WHERE invoice_id = $1",
        "DELETE FROM invoice_lines WHERE invoice_id = $1",
        "INSERT INTO invoice_lines (invoice_id, position, provider_id, provider_name, provider_kind,
             sku_id, description, unit, quantity, amount, currency, price_id, price_effective_from,
             event_count)
         SELECT invoice_id, 99, provider_id, provider_name, provider_kind, sku_id, description, unit,
             quantity, amount, currency, price_id, price_effective_from, event_count
         FROM invoice_lines WHERE invoice_id = $1 LIMIT 1",
    ] {
        refused(&pool, sql, Some(id)).await;
    }
    let (total, lines): (rust_decimal::Decimal, i64) = sqlx::query_as(
        "SELECT total, (SELECT count(*) FROM invoice_lines WHERE invoice_id = $1) FROM invoices WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((total, lines), (dec!(0.50), 1));

    // Voiding stays possible, with when and why (other corrections are
    // credit notes); a void is final; drafts stay drafts.
    refused(
        &pool,
        "UPDATE invoices SET status = 'void' WHERE id = $1",
        Some(id),
    )
    .await;
    sqlx::query(
        "UPDATE invoices SET status = 'void', voided_at = now(), void_reason = 'test' WHERE id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .unwrap();
    for sql in [
        "UPDATE invoices SET void_reason = 'another' WHERE id = $1",
        "UPDATE invoices SET status = 'finalized' WHERE id = $1",
    ] {
        refused(&pool, sql, Some(id)).await;
    }
    let draft_changed = sqlx::query("UPDATE invoices SET total = 1 WHERE status = 'draft'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(draft_changed.rows_affected(), 1);
}
