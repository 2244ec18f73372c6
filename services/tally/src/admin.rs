//! Catalog and key management from the command line (the same operations as
//! the admin API). Secrets are printed once and never stored in clear.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tally_domain::{
    AccountId, Aggregation, AnchorDay, Currency, PriceBook, PriceModel, ProviderId, ProviderKind,
    Sku,
};
use tally_platform::auth::{self, Principal};
use tally_platform::{catalog, onboarding};

pub async fn create_provider(
    pool: &PgPool,
    id: &str,
    name: &str,
    kind: ProviderKind,
) -> anyhow::Result<String> {
    let id = ProviderId::parse(id)?;
    let mut tx = pool.begin().await?;
    let key = onboarding::provider(&mut tx, &id, name, kind, None).await?;
    tx.commit().await?;
    Ok(key.secret)
}

pub async fn create_account(
    pool: &PgPool,
    id: &str,
    name: &str,
    currency: &str,
) -> anyhow::Result<String> {
    let id = AccountId::parse(id)?;
    let currency = Currency::parse(currency)?;
    let mut tx = pool.begin().await?;
    let key = onboarding::account(&mut tx, &id, name, currency).await?;
    tx.commit().await?;
    Ok(key.secret)
}

/// A provider's own billing account (issue 17: a provider as a customer of
/// other providers), created with its customer token in one transaction.
pub async fn create_provider_account(
    pool: &PgPool,
    id: &str,
    name: &str,
    currency: &str,
    provider: &str,
) -> anyhow::Result<String> {
    let id = AccountId::parse(id)?;
    let currency = Currency::parse(currency)?;
    let provider = ProviderId::parse(provider)?;
    let mut tx = pool.begin().await?;
    let key = onboarding::account(&mut tx, &id, name, currency).await?;
    tally_platform::composition::set_owner(&mut tx, &id, &provider).await?;
    tx.commit().await?;
    Ok(key.secret)
}

pub async fn create_sku(
    pool: &PgPool,
    id: &str,
    provider: &str,
    name: &str,
    unit: &str,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    catalog::create_sku(
        &mut conn,
        &Sku::parse(id)?,
        &ProviderId::parse(provider)?,
        name,
        unit,
    )
    .await?;
    Ok(())
}

pub async fn set_price(
    pool: &PgPool,
    sku: &str,
    currency: &str,
    unit_price: Decimal,
    effective_from: DateTime<Utc>,
) -> anyhow::Result<i64> {
    set_price_book(
        pool,
        sku,
        currency,
        &PriceModel::per_unit(unit_price)?.into(),
        effective_from,
    )
    .await
}

/// Adds a price version with full terms (tiers, free units, minimum, fee).
pub async fn set_price_book(
    pool: &PgPool,
    sku: &str,
    currency: &str,
    book: &PriceBook,
    effective_from: DateTime<Utc>,
) -> anyhow::Result<i64> {
    let mut conn = pool.acquire().await?;
    Ok(catalog::add_price(
        &mut conn,
        &Sku::parse(sku)?,
        Currency::parse(currency)?,
        effective_from,
        book,
    )
    .await?)
}

/// Creates an admin or finance key.
pub async fn create_staff_key(pool: &PgPool, role: &str) -> anyhow::Result<String> {
    let principal = match role {
        "admin" => Principal::Admin,
        "finance" => Principal::Finance,
        other => anyhow::bail!("unknown role {other:?}: expected admin or finance"),
    };
    let mut conn = pool.acquire().await?;
    Ok(auth::create_key(&mut conn, &principal).await?.secret)
}

/// Sets a partner's revenue share (the platform's fee, percent of list).
pub async fn set_platform_fee(pool: &PgPool, provider: &str, pct: Decimal) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    catalog::set_platform_fee(&mut conn, &ProviderId::parse(provider)?, pct).await?;
    Ok(())
}

/// Sets how the platform settles with a provider: `gross` or `net` (of its
/// own invoices).
pub async fn set_settlement_mode(pool: &PgPool, provider: &str, mode: &str) -> anyhow::Result<()> {
    let mode = tally_domain::composition::statement::SettlementMode::parse(mode)?;
    let mut conn = pool.acquire().await?;
    catalog::set_settlement_mode(&mut conn, &ProviderId::parse(provider)?, mode).await?;
    Ok(())
}

/// Allows (or stops) a provider's usage records on the `usage.ingest` topic.
pub async fn set_kafka_ingest(pool: &PgPool, provider: &str, allowed: bool) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    catalog::set_kafka_ingest(&mut conn, &ProviderId::parse(provider)?, allowed).await?;
    Ok(())
}

/// Requires (or stops requiring) a binding for each usage event of `provider`.
pub async fn set_requires_binding(
    pool: &PgPool,
    provider: &str,
    required: bool,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    let found = tally_platform::bindings::set_requires_binding(
        &mut conn,
        &ProviderId::parse(provider)?,
        required,
    )
    .await?;
    anyhow::ensure!(found, "provider {provider} does not exist");
    Ok(())
}

/// Sets the platform's markup on a SKU (percent of list).
pub async fn set_markup(pool: &PgPool, sku: &str, pct: Decimal) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    catalog::set_markup(&mut conn, &Sku::parse(sku)?, pct).await?;
    Ok(())
}

/// Sets how a SKU's usage aggregates over a period.
pub async fn set_aggregation(
    pool: &PgPool,
    sku: &str,
    aggregation: &Aggregation,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    catalog::set_aggregation(&mut conn, &Sku::parse(sku)?, aggregation).await?;
    Ok(())
}

pub async fn set_billing_anchor(
    pool: &PgPool,
    account: &str,
    anchor: AnchorDay,
) -> anyhow::Result<()> {
    let mut conn = pool.acquire().await?;
    catalog::set_billing_anchor(&mut conn, &AccountId::parse(account)?, anchor).await?;
    Ok(())
}

/// `tally reconcile`'s report: one block per currency, then the verdict.
pub fn reconciliation_text(report: &tally_api::finance::settlement::Reconciliation) -> String {
    let mut out = format!("reconciliation of {}", report.period);
    if report.drafts > 0 {
        out.push_str(&format!(
            " ({} invoice(s) of the month still draft, not counted)",
            report.drafts
        ));
    }
    out.push('\n');
    if report.currencies.is_empty() {
        out.push_str("  no finalized invoices\n");
    }
    for c in &report.currencies {
        let row = |label: &str, amount: Decimal| format!("    {label:<42}{amount:>14}\n");
        out.push_str(&format!("  {}: {} invoice(s)\n", c.currency, c.invoices));
        out.push_str(&row("invoice subtotals", c.subtotals));
        out.push_str(&row("less invoices voided this month", c.voided));
        out.push_str(&row("less credit notes issued this month", c.credit_notes));
        out.push_str(&row("invoiced", c.invoiced));
        out.push_str(&row(
            "platform revenue (net of credits)",
            c.platform_revenue,
        ));
        out.push_str(&row("partner settlements", c.partner_settlements));
        out.push_str(&row("credits applied", c.credits_applied));
        let verdict = |label: &str, amount: Decimal, holds: bool| {
            let word = if holds { "ok" } else { "MISMATCH" };
            format!("    {label:<42}{amount:>14}  {word}\n")
        };
        out.push_str(&verdict("difference", c.difference, c.holds()));
        out.push_str(&row("list value (providers' list prices)", c.list_value));
        out.push_str(&row("plus markups before discounts", c.markups));
        out.push_str(&row("less discounts", c.discounts));
        out.push_str(&row(
            "  funded by the platform",
            c.platform_funded_discounts,
        ));
        out.push_str(&row("  funded by partners", c.partner_funded_discounts));
        out.push_str(&verdict(
            "discount difference (subtotals - voided)",
            c.discount_difference,
            c.discount_difference.is_zero(),
        ));
        for p in &c.problems {
            out.push_str(&format!("    problem: {p}\n"));
        }
    }
    for chain in &report.chains {
        out.push_str(&format!(
            "  chain {}: members {}\n",
            chain.root,
            chain.members.join(", ")
        ));
        for c in &chain.currencies {
            let row = |label: &str, amount: Decimal| format!("    {label:<42}{amount:>14}\n");
            out.push_str(&format!("    {}\n", c.currency));
            out.push_str(&row("invoiced to consumers", c.to_consumers));
            out.push_str(&row("invoiced to providers in the chain", c.to_providers));
            out.push_str(&row(
                "platform revenue (net of credits)",
                c.platform_revenue,
            ));
            out.push_str(&row("settlements", c.settlements));
            out.push_str(&row(
                "credits applied (providers' invoices)",
                c.credits_applied,
            ));
            out.push_str(&format!(
                "    {:<42}{:>14}  {}\n",
                "difference",
                c.difference,
                if c.difference.is_zero() {
                    "ok"
                } else {
                    "MISMATCH"
                }
            ));
        }
    }
    out
}

/// `tally dedupe prune`'s report: the window at `now`, what the prune did
/// and the partitions kept.
pub fn dedupe_text(
    window: &tally_domain::DedupeWindow,
    now: DateTime<Utc>,
    pruned: &tally_rating::dedupe::Pruned,
    kept: &[tally_rating::dedupe::Partition],
) -> String {
    let list = |names: &[String]| {
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut out = format!(
        "dedupe window at {}: event times from {} to {} are rated and their ids kept\n",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        window
            .cutoff(now)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        window
            .newest(now)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    out.push_str(&format!("  created: {}\n", list(&pruned.created)));
    out.push_str(&format!("  dropped: {}\n", list(&pruned.dropped)));
    out.push_str(&format!(
        "  counted events deleted (periods ended before the oldest partition kept): {}\n",
        pruned.values_pruned
    ));
    out.push_str(&format!("  {} partition(s) kept:\n", kept.len()));
    for p in kept {
        let start = p.span.start.map_or_else(
            || "the beginning".to_owned(),
            |s| s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        );
        out.push_str(&format!(
            "    {}  event times from {} to {}\n",
            p.name,
            start,
            p.span
                .end
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use tally_domain::dedupe::Span;
    use tally_rating::dedupe::{Partition, Pruned};

    #[test]
    fn the_prune_report_names_the_window_and_each_partition() {
        let at = |m, d| Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap();
        let window = tally_platform::Config::default().dedupe_window();
        let pruned = Pruned {
            created: vec!["processed_events_20261202".into()],
            dropped: vec![],
            partitions: 2,
            values_pruned: 7,
        };
        let kept = [
            Partition {
                name: "processed_events_initial".into(),
                span: Span {
                    start: None,
                    end: at(12, 2),
                },
            },
            Partition {
                name: "processed_events_20261202".into(),
                span: Span {
                    start: Some(at(12, 2)),
                    end: at(12, 2) + chrono::TimeDelta::days(42),
                },
            },
        ];
        assert_eq!(
            dedupe_text(&window, at(12, 1), &pruned, &kept),
            "dedupe window at 2026-12-01T00:00:00Z: event times from 2026-10-24T00:00:00Z \
             to 2026-12-04T00:05:00Z are rated and their ids kept\n  \
             created: processed_events_20261202\n  dropped: none\n  \
             counted events deleted (periods ended before the oldest partition kept): 7\n  2 partition(s) kept:\n    \
             processed_events_initial  event times from the beginning to 2026-12-02T00:00:00Z\n    \
             processed_events_20261202  event times from 2026-12-02T00:00:00Z to 2027-01-13T00:00:00Z\n"
        );
    }

    #[test]
    fn the_reconciliation_report_shows_discounts_as_their_own_category() {
        use rust_decimal_macros::dec;
        use tally_api::finance::settlement::{CurrencyReconciliation, Reconciliation};
        let usd = tally_domain::Currency::parse("USD").unwrap();
        let currency = CurrencyReconciliation {
            currency: usd,
            invoices: 1,
            subtotals: dec!(130.50),
            voided: dec!(0.00),
            credit_notes: dec!(0.00),
            invoiced: dec!(130.50),
            platform_revenue: dec!(98.50),
            partner_settlements: dec!(32.00),
            credits_applied: dec!(0.00),
            difference: dec!(0.00),
            list_value: dec!(125.50),
            markups: dec!(10.00),
            discounts: dec!(5.00),
            platform_funded_discounts: dec!(5.00),
            partner_funded_discounts: dec!(0.00),
            discount_difference: dec!(0.00),
            problems: vec![],
        };
        let report = |c: CurrencyReconciliation| Reconciliation {
            period: "2026-10".into(),
            drafts: 0,
            currencies: vec![c],
            chains: vec![],
        };
        let text = reconciliation_text(&report(currency.clone()));
        let tail: Vec<&str> = text.lines().skip(10).collect();
        assert_eq!(
            tail,
            [
                "    list value (providers' list prices)               125.50",
                "    plus markups before discounts                      10.00",
                "    less discounts                                      5.00",
                "      funded by the platform                            5.00",
                "      funded by partners                                0.00",
                "    discount difference (subtotals - voided)            0.00  ok",
            ],
            "{text}"
        );
        assert_eq!(text.matches(" ok\n").count(), 2, "{text}");
        // A discount identity that does not hold fails the month.
        let text = reconciliation_text(&report(CurrencyReconciliation {
            discount_difference: dec!(0.01),
            ..currency
        }));
        assert_eq!(text.matches("MISMATCH").count(), 2, "{text}");
    }
}
