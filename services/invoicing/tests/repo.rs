//! Statements become draft invoices: the newest version wins whatever the
//! arrival order, re-applying is harmless, finalized invoices never change.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rust_decimal_macros::dec;
use sqlx::PgPool;
use support::acme_v2 as v2;
use support::*;
use tally_domain::{InvoiceStatus, Period};
use tally_invoicing::apply_statements;
use tally_invoicing::invoices_repo::{self, Invoice};

async fn invoice_of(pool: &PgPool, account: &str, month: &str) -> Option<Invoice> {
    let mut conn = pool.acquire().await.unwrap();
    let month = Period::parse_month(month).unwrap();
    invoices_repo::find_by_account_period(&mut conn, account, month)
        .await
        .unwrap()
}

/// (sku, quantity, amount) of every line, in bill order.
fn lines(invoice: &Invoice) -> Vec<(String, String, String)> {
    invoice
        .sections
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| (l.sku.clone(), l.quantity.to_string(), l.amount.to_string()))
        .collect()
}

fn v1() -> tally_domain::Statement {
    statement(
        "acme",
        "2026-11",
        1,
        vec![line(&cloud(), "cloud.vm", dec!(2), dec!(0.25))],
    )
}

#[tokio::test]
async fn an_older_statement_arriving_after_a_newer_one_changes_nothing() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;

    assert_eq!(apply_statements(&pool, &[v2()]).await.unwrap(), 1);
    assert_eq!(apply_statements(&pool, &[v1()]).await.unwrap(), 0);

    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(invoice.summary.statement_version, 2);
    assert_eq!(invoice.summary.status, InvoiceStatus::Draft);
    assert_eq!(invoice.summary.total, dec!(6.70));
    assert_eq!(invoice.summary.total.to_string(), "6.70");
    assert_eq!(lines(&invoice), acme_v2_rows());
}

#[tokio::test]
async fn a_newer_statement_replaces_the_lines_and_total_of_a_draft() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;

    apply_statements(&pool, &[v1()]).await.unwrap();
    let first = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(first.summary.total, dec!(0.50));
    assert_eq!(apply_statements(&pool, &[v2()]).await.unwrap(), 1);

    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(
        invoice.summary.id, first.summary.id,
        "same invoice, updated"
    );
    assert_eq!(invoice.summary.statement_version, 2);
    assert_eq!(invoice.summary.total, dec!(6.70));
    assert_eq!(lines(&invoice).len(), 3);
    assert!(invoice.summary.updated_at >= first.summary.updated_at);
}

#[tokio::test]
async fn applying_the_same_version_twice_is_idempotent() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;

    assert_eq!(apply_statements(&pool, &[v2()]).await.unwrap(), 1);
    let before = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(apply_statements(&pool, &[v2()]).await.unwrap(), 0);
    assert_eq!(apply_statements(&pool, &[v2(), v2()]).await.unwrap(), 0);
    let after = invoice_of(&pool, "acme", "2026-11").await.unwrap();

    assert_eq!(after.summary.updated_at, before.summary.updated_at);
    assert_eq!(after.summary.total, before.summary.total);
    assert_eq!(lines(&after), lines(&before));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice_lines")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 3);
}

#[tokio::test]
async fn a_finalized_invoice_is_not_changed_by_a_newer_statement() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    apply_statements(&pool, &[v1()]).await.unwrap();
    sqlx::query(
        "UPDATE invoices SET status = 'finalized', number = 'INV-1', finalized_at = now(), sealed_at = now()",
    )
        .execute(&pool)
        .await
        .unwrap();

    assert_eq!(apply_statements(&pool, &[v2()]).await.unwrap(), 0);

    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(invoice.summary.status, InvoiceStatus::Finalized);
    assert_eq!(invoice.summary.number.as_deref(), Some("INV-1"));
    assert_eq!(invoice.summary.statement_version, 1);
    assert_eq!(invoice.summary.total, dec!(0.50));
    assert_eq!(
        lines(&invoice),
        [("cloud.vm".into(), "2".into(), "0.50".into())]
    );
}

#[tokio::test]
async fn only_the_newest_version_in_a_batch_is_applied_per_account_period() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme", "umbrella"]).await;
    let other = statement(
        "umbrella",
        "2026-11",
        1,
        vec![line(&dbco(), "dbco.db.hour", dec!(1), dec!(0.20))],
    );
    let october = statement("acme", "2026-10", 5, vec![]);

    let changed = apply_statements(&pool, &[v2(), other, v1(), october])
        .await
        .unwrap();

    assert_eq!(changed, 3);
    let acme = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(acme.summary.statement_version, 2);
    assert_eq!(acme.summary.total, dec!(6.70));
    let umbrella = invoice_of(&pool, "umbrella", "2026-11").await.unwrap();
    assert_eq!(umbrella.summary.total, dec!(0.20));
    let empty = invoice_of(&pool, "acme", "2026-10").await.unwrap();
    assert_eq!((empty.summary.total, empty.sections.len()), (dec!(0), 0));
}

#[tokio::test]
async fn sections_group_lines_by_provider_in_statement_order_with_subtotals() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    apply_statements(&pool, &[v2()]).await.unwrap();

    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    let sections: Vec<_> = invoice
        .sections
        .iter()
        .map(|s| {
            (
                s.provider.id.as_str(),
                s.provider.kind.as_str(),
                s.subtotal,
                s.lines.len(),
            )
        })
        .collect();
    assert_eq!(
        sections,
        [
            ("cloud", "first_party", dec!(5.80), 2),
            ("dbco", "partner", dec!(0.90), 1)
        ]
    );
    let l = &invoice.sections[1].lines[0];
    assert_eq!(
        (l.unit_price, l.price_id, l.event_count, l.unit.as_str()),
        (Some(dec!(0.20)), 7, 3, "hour")
    );
    assert_eq!(invoice.summary.period.label, "2026-11");
    assert_eq!(invoice.summary.currency.code(), "USD");
}

#[tokio::test]
async fn an_unknown_account_period_has_no_invoice() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    assert!(invoice_of(&pool, "acme", "2026-11").await.is_none());
}

/// (position, the row version's xmin, description) of every line.
async fn line_rows(pool: &PgPool) -> Vec<(i32, String, String)> {
    sqlx::query_as("SELECT position, xmin::text, description FROM invoice_lines ORDER BY position")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_newer_statement_writes_only_the_lines_that_changed() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    apply_statements(&pool, &[v2()]).await.unwrap();
    let before = line_rows(&pool).await;

    // Version 3: the second line's quantity and the third's description change.
    let mut v3 = v2();
    v3.version = 3;
    v3.lines[1] = line(&cloud(), "cloud.disk", dec!(4), dec!(1.10));
    v3.lines[2].description = "Managed database hours".into();
    v3.subtotal += dec!(1.10);
    v3.total += dec!(1.10);
    assert_eq!(apply_statements(&pool, &[v3.clone()]).await.unwrap(), 1);
    let after = line_rows(&pool).await;
    assert_eq!(after[0], before[0], "an unchanged line is not rewritten");
    assert_ne!(after[1].1, before[1].1);
    assert_ne!(after[2].1, before[2].1);
    assert_eq!(after[2].2, "Managed database hours");
    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(invoice.summary.total, dec!(7.80));
    assert_eq!(
        lines(&invoice),
        [
            ("cloud.vm".into(), "10".into(), "2.50".into()),
            ("cloud.disk".into(), "4".into(), "4.40".into()),
            ("dbco.db.hour".into(), "4.5".into(), "0.90".into()),
        ]
    );

    // A line without a digest (written before there were digests) is
    // written again, even though the statement did not change it.
    sqlx::query(
        "UPDATE invoice_lines SET digest = NULL, amount = 999
         WHERE position = (SELECT min(position) FROM invoice_lines)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let mut v4 = v3.clone();
    v4.version = 4;
    apply_statements(&pool, &[v4]).await.unwrap();
    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(lines(&invoice)[0].2, "2.50");
    let digests: i64 =
        sqlx::query_scalar("SELECT count(*) FROM invoice_lines WHERE digest IS NOT NULL")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(digests, 3);

    // Fewer lines: the ones beyond go, the others stay as they were.
    let kept = line_rows(&pool).await;
    let mut v5 = v3;
    v5.version = 5;
    v5.lines.truncate(2);
    apply_statements(&pool, &[v5]).await.unwrap();
    assert_eq!(line_rows(&pool).await, kept[..2]);
}

/// A line for a SKU used for the first time lands among the others (bill
/// order): it is the only row written, the lines after it stay where they
/// are; a line the statement no longer has goes.
#[tokio::test]
async fn a_new_line_among_others_is_the_only_row_written() {
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    apply_statements(&pool, &[v2()]).await.unwrap();
    let before = line_rows(&pool).await;

    let mut v3 = v2();
    v3.version = 3;
    v3.lines
        .insert(1, line(&cloud(), "cloud.cdn", dec!(2), dec!(0.05)));
    v3.subtotal += dec!(0.10);
    v3.total += dec!(0.10);
    apply_statements(&pool, &[v3.clone()]).await.unwrap();
    let after = line_rows(&pool).await;
    assert_eq!(after.len(), 4);
    assert_eq!(
        [&after[0], &after[2], &after[3]],
        [&before[0], &before[1], &before[2]],
        "the lines around the new one are not rewritten"
    );
    assert!(!before.iter().any(|b| b.1 == after[1].1));
    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    assert_eq!(invoice.summary.total, dec!(6.80));
    assert_eq!(
        lines(&invoice),
        [
            ("cloud.vm".into(), "10".into(), "2.50".into()),
            ("cloud.cdn".into(), "2".into(), "0.10".into()),
            ("cloud.disk".into(), "3".into(), "3.30".into()),
            ("dbco.db.hour".into(), "4.5".into(), "0.90".into()),
        ]
    );

    // Version 4 drops the first line: it goes, the others stay.
    let mut v4 = v3;
    v4.version = 4;
    v4.lines.remove(0);
    apply_statements(&pool, &[v4]).await.unwrap();
    assert_eq!(line_rows(&pool).await, after[1..]);
}

/// Lines of a bound resource keep it on the invoice (plan fee and
/// allowance kinds included), and a restatement that only renames the
/// resource's plan rewrites the line.
#[tokio::test]
async fn lines_of_a_bound_resource_name_it_on_the_invoice() {
    use tally_domain::{BindingId, LineKind, ResourceRef};
    let pool = fresh_pool().await;
    create_accounts(&pool, &["acme"]).await;
    let resource = |plan: &str| ResourceRef {
        binding: BindingId::parse("bnd_1").unwrap(),
        name: "prod-db".into(),
        plan: plan.into(),
    };
    let with = |version, plan: &str| {
        let mut fee = line(&dbco(), "dbco.ps-10", dec!(76), dec!(0.0541666));
        fee.kind = LineKind::PlanFee;
        fee.resource = Some(resource(plan));
        let mut included = line(&dbco(), "dbco.storage-gb", dec!(25), dec!(0));
        included.kind = LineKind::Allowance;
        included.resource = Some(resource(plan));
        statement(
            "acme",
            "2026-11",
            version,
            vec![
                line(&cloud(), "cloud.vm", dec!(2), dec!(0.25)),
                fee,
                included,
            ],
        )
    };
    apply_statements(&pool, &[with(1, "PS-10")]).await.unwrap();
    apply_statements(&pool, &[with(2, "PS-20")]).await.unwrap();
    let invoice = invoice_of(&pool, "acme", "2026-11").await.unwrap();
    let view: Vec<_> = invoice
        .sections
        .iter()
        .flat_map(|s| &s.lines)
        .map(|l| {
            (
                l.kind.clone(),
                l.resource
                    .as_ref()
                    .map(|r| format!("{} · {} [{}]", r.name, r.plan, r.binding)),
                l.amount.to_string(),
            )
        })
        .collect();
    assert_eq!(
        view,
        [
            ("usage".to_owned(), None, "0.50".to_owned()),
            (
                "plan_fee".to_owned(),
                Some("prod-db · PS-20 [bnd_1]".to_owned()),
                "4.12".to_owned()
            ),
            (
                "allowance".to_owned(),
                Some("prod-db · PS-20 [bnd_1]".to_owned()),
                "0.00".to_owned()
            ),
        ]
    );
    let json = serde_json::to_value(&invoice).unwrap();
    assert!(json["sections"][0]["lines"][0].get("resource").is_none());
}

/// Statements with more lines than one write takes (4,096): three of 2,000
/// lines each are applied in two writes of one transaction, every line
/// stored once, in place.
#[tokio::test]
async fn statements_beyond_one_chunk_of_lines_are_applied_whole() {
    let pool = fresh_pool().await;
    let accounts = ["big0", "big1", "big2"];
    create_accounts(&pool, &accounts).await;
    let statements: Vec<_> = accounts
        .iter()
        .map(|a| {
            let lines = (0..2_000)
                .map(|_| line(&cloud(), "cloud.vm", dec!(1), dec!(0.25)))
                .collect();
            statement(a, "2026-10", 1, lines)
        })
        .collect();
    assert_eq!(apply_statements(&pool, &statements).await.unwrap(), 3);
    let (lines, amount): (i64, rust_decimal::Decimal) =
        sqlx::query_as("SELECT count(*), sum(amount) FROM invoice_lines")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((lines, amount), (6_000, dec!(1500.00)));
    for a in accounts {
        let invoice = invoice_of(&pool, a, "2026-10").await.unwrap();
        assert_eq!(invoice.summary.total, dec!(500.00));
    }
}
