//! Months of history stored before the measured run (`--history-months`):
//! for every bench account and each of the months before the run's, what
//! rating and invoicing leave behind once a period is closed: its usage
//! aggregates, its sealed statement, its finalized invoice and lines, and
//! the account's seal through the run's month. Written in bulk by SQL (a
//! statement per month and chunk of accounts), so that a million accounts
//! times a year is minutes, not hours.
//!
//! The stored statement bodies have the size of a real one (a JSON line per
//! aggregate), not its format: nothing reads the body of a sealed period
//! that gets no late usage, and the bench sends none.

use anyhow::Context;
use chrono::{DateTime, Months, Utc};
use sqlx::PgPool;
use tally_domain::Period;

use super::workload::Catalog;

/// Accounts per statement: a chunk's lines stay a few hundred MB of work.
const CHUNK: i64 = 50_000;

/// The months before `run`'s, newest first.
pub(super) fn history_months(run: Period, months: u32) -> anyhow::Result<Vec<Period>> {
    (1..=months)
        .map(|m| {
            let start = run
                .start()
                .checked_sub_months(Months::new(m))
                .context("history month")?;
            Ok(Period::month_containing(start))
        })
        .collect()
}

/// The start of the oldest of `months` stored before `run`'s.
pub(super) fn history_start(run: Period, months: u32) -> anyhow::Result<DateTime<Utc>> {
    run.start()
        .checked_sub_months(Months::new(months))
        .context("history start")
}

/// Lines of each history statement: `lines` SKUs of each provider (all of
/// them, at most 5, when `lines` is 0).
pub(super) fn history_lines(providers: usize, skus: usize, lines: usize) -> usize {
    let per_provider = if lines == 0 { skus.min(5) } else { lines };
    providers * per_provider.min(skus)
}

/// Stores `months` closed months before `run` for every account of the
/// catalog; `lines` as [`history_lines`]. Line `j` of account `g` is SKU
/// `(g·31 + j / providers) mod skus` of provider `j mod providers`, 10
/// units of it, 100 events.
pub(super) async fn store_months(
    pool: &PgPool,
    catalog: &Catalog,
    run: Period,
    months: u32,
    lines: usize,
) -> anyhow::Result<()> {
    let providers = catalog.provider_ids.len();
    let skus = catalog.skus.first().map_or(0, Vec::len);
    let lines = i64::try_from(history_lines(providers, skus, lines))?;
    // The catalog as arrays: provider index, SKU index, SKU, price id, unit price.
    let prices: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku_id, id FROM prices WHERE audience = 'list'")
            .fetch_all(pool)
            .await?;
    let price_ids: std::collections::HashMap<String, i64> = prices.into_iter().collect();
    let (mut p_idx, mut s_idx, mut sku_ids, mut ids, mut units, mut owners) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for (p, provider_skus) in catalog.skus.iter().enumerate() {
        for (s, (sku, price)) in provider_skus.iter().enumerate() {
            p_idx.push(i64::try_from(p)?);
            s_idx.push(i64::try_from(s)?);
            sku_ids.push(sku.clone());
            ids.push(*price_ids.get(sku).context("a bench SKU without a price")?);
            units.push(*price);
            owners.push(catalog.provider_ids[p].clone());
        }
    }
    let accounts = i64::try_from(catalog.accounts.len())?;
    for period in history_months(run, months)? {
        let (start, end, label) = (period.start(), period.end(), period.label());
        let mut from = 0;
        while from < accounts {
            let to = (from + CHUNK).min(accounts);
            let mut tx = pool.begin().await?;
            sqlx::query(
                "WITH c AS (
                     SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::bigint[],
                                          $5::numeric[], $6::text[])
                         AS c(p, s, sku, price_id, unit_price, provider_id)),
                 l AS MATERIALIZED (
                     SELECT 'a' || g AS account_id, j::int AS position, c.sku, c.price_id,
                            c.unit_price, c.provider_id, 10::numeric AS quantity,
                            round(10 * c.unit_price, 2) AS amount
                     FROM generate_series($7::bigint, $8::bigint - 1) AS g
                     CROSS JOIN generate_series(0, $9::bigint - 1) AS j
                     JOIN c ON c.p = j % $10 AND c.s = (g * 31 + j / $10) % $11),
                 ua AS (
                     INSERT INTO usage_aggregates (account_id, period_start, period_end, price_id,
                                                   quantity, event_count)
                     SELECT account_id, $12, $13, price_id, quantity, 100 FROM l),
                 st AS (
                     INSERT INTO statements (account_id, period_start, period_end, version, body, sealed)
                     SELECT account_id, $12, $13, 1,
                            json_build_object('account_id', account_id, 'period', $14::text,
                                'currency', 'USD', 'version', 1,
                                'lines', json_agg(json_build_object(
                                    'kind', 'usage', 'provider', provider_id, 'sku', sku,
                                    'price_id', price_id, 'quantity', quantity::text,
                                    'unit_price', unit_price::text, 'event_count', 100,
                                    'amount', amount::text, 'list_amount', amount::text)
                                    ORDER BY position),
                                'total', sum(amount)::text)::text,
                            true
                     FROM l GROUP BY account_id),
                 inv AS (
                     INSERT INTO invoices (id, account_id, period_start, period_end, currency,
                                           statement_version, total, subtotal, sealed_at)
                     SELECT gen_random_uuid(), account_id, $12, $13, 'USD', 1, sum(amount),
                            sum(amount), $13
                     FROM l GROUP BY account_id
                     RETURNING id, account_id)
                 INSERT INTO invoice_lines (invoice_id, position, provider_id, provider_name,
                                            provider_kind, sku_id, description, unit, quantity,
                                            unit_price, amount, currency, price_id,
                                            price_effective_from, event_count, list_amount)
                 SELECT inv.id, l.position, l.provider_id, l.provider_id,
                        CASE WHEN l.provider_id = 'p0' THEN 'first_party' ELSE 'partner' END,
                        l.sku, l.sku, 'unit', l.quantity, l.unit_price, l.amount, 'USD',
                        l.price_id, $12, 100, l.amount
                 FROM l JOIN inv USING (account_id)",
            )
            .bind(&p_idx)
            .bind(&s_idx)
            .bind(&sku_ids)
            .bind(&ids)
            .bind(&units)
            .bind(&owners)
            .bind(from)
            .bind(to)
            .bind(lines)
            .bind(i64::try_from(providers)?)
            .bind(i64::try_from(skus)?)
            .bind(start)
            .bind(end)
            .bind(&label)
            .execute(&mut *tx)
            .await?;
            // Finalized as the closer leaves them: numbered, once sealed.
            sqlx::query(
                "UPDATE invoices SET status = 'finalized', finalized_at = $2,
                        number = 'H-' || $3 || '-' || account_id
                 WHERE period_start = $1 AND status = 'draft'",
            )
            .bind(start)
            .bind(end)
            .bind(&label)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            from = to;
        }
    }
    if months > 0 {
        sqlx::query(
            "INSERT INTO account_seals (account_id, sealed_through)
             SELECT 'a' || g, $2 FROM generate_series(0, $1 - 1) AS g",
        )
        .bind(accounts)
        .bind(run.start())
        .execute(pool)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_the_months_before_the_runs_newest_first() {
        let run = Period::parse_month("2027-02").unwrap();
        let months = history_months(run, 3).unwrap();
        let labels: Vec<String> = months.iter().map(Period::label).collect();
        assert_eq!(labels, ["2027-01", "2026-12", "2026-11"]);
        assert_eq!(months[0].end(), run.start());
        assert!(history_months(run, 0).unwrap().is_empty());
        assert_eq!(history_start(run, 3).unwrap(), months[2].start());
    }

    #[test]
    fn a_history_statement_has_its_lines_of_each_provider() {
        assert_eq!(history_lines(4, 5, 0), 20);
        assert_eq!(history_lines(4, 2500, 0), 20);
        assert_eq!(history_lines(4, 2500, 12), 48);
        assert_eq!(history_lines(3, 2, 5), 6);
    }
}
