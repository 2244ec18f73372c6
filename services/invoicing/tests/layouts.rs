//! Drafts' line layouts remembered between batches (`LineLayouts`): a new
//! version is planned from the layout its draft was last written with,
//! only at that version, and leaves exactly the rows reading the lines back
//! would.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use sqlx::PgPool;
use support::acme_v2 as v2;
use support::*;
use tally_domain::credits::AppliedCredit;
use tally_invoicing::{apply_remembering, apply_statements, LineLayouts};

/// (sku, quantity, amount) of an account's draft lines, by position.
async fn rows_of(pool: &PgPool, account: &str) -> Vec<(String, String, String)> {
    sqlx::query_as(
        "SELECT l.sku_id, l.quantity::text, l.amount::text FROM invoice_lines l
         JOIN invoices i ON i.id = l.invoice_id WHERE i.account_id = $1 ORDER BY l.position",
    )
    .bind(account)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Another instance (with no layouts of its own) writes acme's version 3
/// without the disk line; then `ours` writes version 4, v2's lines again:
/// all three rows are there.
async fn another_instance_drops_the_disk_line_then_ours_brings_it_back(
    pool: &PgPool,
    ours: &mut LineLayouts,
) {
    let mut v3 = v2();
    v3.version = 3;
    v3.lines.remove(1);
    let mut theirs = LineLayouts::new(1 << 20);
    assert_eq!(
        apply_remembering(pool, &[v3], &mut theirs).await.unwrap(),
        1
    );
    assert_eq!(rows_of(pool, "acme").await.len(), 2);

    let mut v4 = v2();
    v4.version = 4;
    assert_eq!(apply_remembering(pool, &[v4], ours).await.unwrap(), 1);
    assert_eq!(rows_of(pool, "acme").await, acme_v2_rows());
}

/// The layout written is the one planned from: a line changed in the
/// database behind invoicing's back (no digest, another amount) is not
/// seen, where reading the lines back writes it again (repo.rs,
/// `a_newer_statement_writes_only_the_lines_that_changed`).
#[tokio::test]
async fn a_remembered_layout_is_planned_from_without_reading_the_lines() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    let mut layouts = LineLayouts::new(1 << 20);
    assert_eq!(
        apply_remembering(&pool, &[v2()], &mut layouts)
            .await
            .unwrap(),
        1
    );
    assert_eq!((layouts.drafts(), layouts.lines()), (1, 3));

    sqlx::query(
        "UPDATE invoice_lines SET digest = NULL, amount = 999
         WHERE position = (SELECT min(position) FROM invoice_lines)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut v3 = v2();
    v3.version = 3;
    v3.lines[1] = line(&cloud(), "cloud.disk", dec!(4), dec!(1.10));
    assert_eq!(
        apply_remembering(&pool, &[v3], &mut layouts).await.unwrap(),
        1
    );
    assert_eq!(
        rows_of(&pool, "acme").await,
        [
            ("cloud.vm".into(), "10".into(), "999".into()),
            ("cloud.disk".into(), "4".into(), "4.40".into()),
            ("dbco.db.hour".into(), "4.5".into(), "0.90".into()),
        ]
    );
    assert_eq!((layouts.drafts(), layouts.lines()), (1, 3));
}

/// Another instance wrote the draft since (a version without the disk
/// line): the layout remembered is of an older version, so the lines are
/// read back, and the disk line comes back.
#[tokio::test]
async fn a_layout_of_an_older_version_is_read_back() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    let mut ours = LineLayouts::new(1 << 20);
    assert_eq!(
        apply_remembering(&pool, &[v2()], &mut ours).await.unwrap(),
        1
    );

    another_instance_drops_the_disk_line_then_ours_brings_it_back(&pool, &mut ours).await;
}

/// A transaction that fails leaves nothing remembered: this instance's
/// version 3 (a CDN line more) fails with another account's statement in a
/// later chunk of the same batch (its credit names no grant), another
/// instance then writes a version 3 without the disk line, and this
/// instance's version 4 has the disk line back.
#[tokio::test]
async fn a_layout_is_remembered_only_once_its_transaction_commits() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme", "zeta"]).await;
    let mut ours = LineLayouts::new(1 << 20);
    assert_eq!(
        apply_remembering(&pool, &[v2()], &mut ours).await.unwrap(),
        1
    );

    let mut v3 = v2();
    v3.version = 3;
    v3.lines
        .insert(1, line(&cloud(), "cloud.cdn", dec!(2), dec!(0.05)));
    // More lines than a chunk, with a credit of a grant that is not there.
    let mut failing = statement(
        "zeta",
        "2026-11",
        1,
        (0..4094)
            .map(|i| line(&cloud(), &format!("cloud.s{i:04}"), dec!(1), dec!(0.01)))
            .collect(),
    );
    failing.credits.push(AppliedCredit {
        grant_id: 999_999,
        name: "missing".into(),
        kind: "promotional".into(),
        amount: dec!(0.01),
        lines: Vec::new(),
    });
    assert!(apply_remembering(&pool, &[v3, failing], &mut ours)
        .await
        .is_err());
    assert_eq!(rows_of(&pool, "zeta").await.len(), 0);
    assert_eq!((ours.drafts(), ours.lines()), (1, 3));

    another_instance_drops_the_disk_line_then_ours_brings_it_back(&pool, &mut ours).await;
}

/// A small deterministic generator (64-bit LCG) for the versions below.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

/// (position, sku, quantity, digest) of an account's draft lines.
async fn layout_rows(pool: &PgPool, account: &str) -> Vec<(i32, String, String, Vec<u8>)> {
    sqlx::query_as(
        "SELECT l.position, l.sku_id, l.quantity::text, l.digest FROM invoice_lines l
         JOIN invoices i ON i.id = l.invoice_id WHERE i.account_id = $1 ORDER BY l.position",
    )
    .bind(account)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// Forty versions of two accounts' statements, each line of a SKU kept,
/// changed, dropped or added at random: the account whose layouts are
/// remembered (in batches of one to three versions; a layout of more than
/// 12 lines is over the capacity, forgotten at once) ends each batch with
/// the same rows, at the same positions, as the one whose lines are read
/// back every time.
#[tokio::test]
async fn remembered_and_read_back_layouts_write_the_same_rows() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme", "umbrella"]).await;
    let skus: Vec<String> = (0..24).map(|i| format!("cloud.sku{i:02}")).collect();
    let mut quantities: Vec<Option<Decimal>> = vec![None; skus.len()];
    let mut rng = Lcg(19);
    let mut layouts = LineLayouts::new(LineLayouts::layout_bytes("acme".len(), 12));
    let (mut version, mut remembered, mut read) = (0, 0, 0);
    let mut lines_before = None;
    while version < 40 {
        let mut batch = (Vec::new(), Vec::new());
        for _ in 0..=rng.next(3) {
            version += 1;
            for q in quantities.iter_mut() {
                *q = match (rng.next(10), *q) {
                    (0..=5, q) => q,
                    (6 | 7, _) => Some(Decimal::from(1 + rng.next(50))),
                    _ => None,
                };
            }
            let lines: Vec<_> = skus
                .iter()
                .zip(&quantities)
                .filter_map(|(sku, q)| q.map(|q| line(&cloud(), sku, q, dec!(0.10))))
                .collect();
            batch
                .0
                .push(statement("acme", "2026-11", version, lines.clone()));
            batch
                .1
                .push(statement("umbrella", "2026-11", version, lines));
        }
        match lines_before {
            Some(n) if n <= 12 => {
                assert_eq!((layouts.drafts(), layouts.lines()), (1, n));
                remembered += 1;
            }
            _ => {
                assert_eq!(layouts.drafts(), 0);
                read += 1;
            }
        }
        assert_eq!(
            apply_remembering(&pool, &batch.0, &mut layouts)
                .await
                .unwrap(),
            1
        );
        assert_eq!(apply_statements(&pool, &batch.1).await.unwrap(), 1);
        let rows = layout_rows(&pool, "acme").await;
        assert_eq!(rows, layout_rows(&pool, "umbrella").await);
        assert_eq!(rows.len(), quantities.iter().flatten().count());
        lines_before = Some(rows.len());
    }
    assert_eq!((remembered, read), (10, 8));
}
