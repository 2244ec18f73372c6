//! The customer's bill as HTML (server-rendered, no JavaScript), its spend
//! chart as inline SVG, and its CSV export.

use chrono::{Duration, NaiveDate};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use tally_domain::credits::GrantStatus;
use tally_domain::money::checked;
use tally_domain::{Currency, Money, MoneyError};

use crate::credits::Balance;
use crate::customer::contract::BillContract;
use crate::customer::contract_view;
use crate::customer::outlook::ResourceOutlook;
use tally_invoicing::invoices_repo::{Invoice, LineView, PeriodView, ResourceView};

const PALETTE: [&str; 6] = [
    "#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#0e7490",
];

pub struct BillPage<'a> {
    pub account_name: &'a str,
    pub invoice: &'a Invoice,
    pub periods: &'a [PeriodView],
    /// (day, price id, quantity) of the period.
    pub daily: &'a [(NaiveDate, i64, Decimal)],
    /// Today: the chart stops here when the period is still running.
    pub today: NaiveDate,
    /// Query string that keeps the viewer signed in on links (`&expires=…&sig=…`), or empty.
    pub auth_query: &'a str,
    /// Signed in with a session: the page offers to sign out.
    pub signed_in: bool,
    /// The account's usable credit grants as of now: remaining balance and expiry.
    pub balances: &'a [Balance],
    /// Each resource bound in the period: status, cost so far, forecast.
    pub resources: &'a [ResourceOutlook],
    /// The contract in force, its commitments' progress, coming price changes.
    pub contract: &'a BillContract,
}

/// `"10.00 USD"`: the amount with its currency's exponent, and its code.
fn money(amount: Decimal, currency: Currency) -> String {
    Money::new(amount, currency).to_string()
}

const STYLE: &str = r#"
:root { color-scheme: light; --ink: #111827; --muted: #4b5563; --line: #d1d5db; --accent: #1d4ed8; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink); margin: 0; background: #f9fafb; }
main { max-width: 60rem; margin: 0 auto; padding: 1.5rem 1rem 3rem; background: #fff; }
header { display: flex; flex-wrap: wrap; justify-content: space-between; gap: 1rem; border-bottom: 2px solid var(--ink); padding-bottom: 1rem; }
h1 { font-size: 1.6rem; margin: 0; } h2 { font-size: 1.2rem; margin: 2rem 0 .5rem; } h3 { font-size: 1rem; margin: 0; }
.meta { color: var(--muted); margin: .25rem 0 0; }
.status { display: inline-block; padding: .1rem .6rem; border-radius: 999px; font-weight: 600; font-size: .85rem; background: #fef3c7; color: #78350f; }
.status.finalized { background: #d1fae5; color: #064e3b; }
.status.void { background: #e5e7eb; color: #374151; text-decoration: line-through; }
nav ul { list-style: none; padding: 0; margin: .5rem 0 0; display: flex; flex-wrap: wrap; gap: .5rem; }
nav a { color: var(--accent); } nav a[aria-current] { font-weight: 700; color: var(--ink); text-decoration: none; }
table { width: 100%; border-collapse: collapse; margin: .5rem 0 1rem; table-layout: fixed; }
col.c-service { width: 32%; } col.c-sku { width: 24%; } col.c-qty { width: 16%; } col.c-price { width: 14%; } col.c-amount { width: 14%; }
caption { text-align: left; font-weight: 600; padding: .25rem 0; }
th, td { padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { text-align: left; font-size: .85rem; color: var(--muted); }
tr.resource th { background: #f3f4f6; font-weight: 600; color: var(--ink); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tfoot td { font-weight: 700; border-bottom: none; }
.subtotal { display: flex; justify-content: space-between; font-size: 1.05rem; font-weight: 600; border-top: 1px solid var(--line); padding-top: .5rem; margin-top: 1rem; }
.total { display: flex; justify-content: space-between; font-size: 1.3rem; font-weight: 700; border-top: 2px solid var(--ink); padding-top: .75rem; margin-top: 1rem; }
.downloads a { margin-right: 1rem; color: var(--accent); }
figure { margin: 1rem 0; } figcaption { color: var(--muted); font-size: .9rem; }
svg { width: 100%; height: auto; }
@media (max-width: 40rem) { .unit-price, .sku-code, col.c-sku, col.c-price { display: none; } table { table-layout: auto; } body { font-size: 15px; } }
@media print { body { background: #fff; } main { max-width: none; padding: 0; } nav, .downloads { display: none; } a { color: inherit; text-decoration: none; } }
"#;

pub fn render(page: &BillPage<'_>) -> Markup {
    let inv = &page.invoice.summary;
    let cur = inv.currency;
    let number = inv
        .number
        .clone()
        .unwrap_or_else(|| "Draft — not yet issued".into());
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Bill " (inv.period.label) " — " (page.account_name) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                main {
                    header {
                        div {
                            h1 { (page.account_name) }
                            p.meta { "Account " code { (inv.account_id) } }
                            p.meta { "Service period " (inv.period.start.format("%-d %B %Y")) " – " ((inv.period.end - Duration::days(1)).format("%-d %B %Y")) }
                        }
                        div {
                            p.meta { "Invoice " strong data-testid="invoice-number" { (number) } }
                            p { span class={ "status " (inv.status) } data-testid="status" { (inv.status) } }
                            @if let Some(reason) = &inv.void_reason {
                                p.meta data-testid="void-reason" { "Voided: " (reason) }
                            }
                            p.meta { "Currency " (cur) }
                            @if page.signed_in {
                                form method="post" action="/logout" { button type="submit" { "Sign out" } }
                            }
                        }
                    }
                    nav aria-label="Billing periods" {
                        h2 { "Billing periods" }
                        ul {
                            @for p in page.periods {
                                li {
                                    @if p.label == inv.period.label {
                                        a href={ "?period=" (p.label) (page.auth_query) } aria-current="page" { (p.label) }
                                    } @else {
                                        a href={ "?period=" (p.label) (page.auth_query) } { (p.label) }
                                    }
                                }
                            }
                        }
                    }
                    h2 { "Spend over the period" }
                    (chart(page))
                    @for section in &page.invoice.sections {
                        section aria-labelledby={ "p-" (section.provider.id) } {
                            h2 id={ "p-" (section.provider.id) } {
                                (section.provider.name)
                                @if section.provider.kind == "partner" { " " small.meta { "(partner)" } }
                            }
                            table {
                                colgroup { col.c-service; col.c-sku; col.c-qty; col.c-price; col.c-amount; }
                                thead { tr {
                                    th scope="col" { "Service" }
                                    th scope="col" class="sku-code" { "SKU" }
                                    th scope="col" class="num" { "Quantity" }
                                    th scope="col" class="num unit-price" { "Unit price" }
                                    th scope="col" class="num" { "Amount" }
                                } }
                                tbody {
                                    @for (i, line) in section.lines.iter().enumerate() {
                                        @if let Some(r) = group_starts(&section.lines, i) {
                                            tr.resource data-testid="resource" {
                                                th scope="rowgroup" colspan="5" { (resource_label(r)) }
                                            }
                                        }
                                        tr {
                                            th scope="row" {
                                                (line.description)
                                                @if let Some(period) = &line.adjusts {
                                                    br;
                                                    small { "Late usage of " (period.label) }
                                                }
                                            }
                                            td class="sku-code" { code { (line.sku) } }
                                            td.num { (line.quantity) " " (line.unit) }
                                            td class="num unit-price" { @if let Some(p) = line.unit_price { (money(p, cur)) } @else { "tiered" } }
                                            td.num {
                                                (money(line.amount, cur))
                                                @if !line.discount.is_zero() {
                                                    br;
                                                    small.meta data-testid="line-discount" { (money(before_discount(line), cur)) " less " (money(line.discount, cur)) " contract discount" }
                                                }
                                            }
                                        }
                                    }
                                }
                                tfoot { tr {
                                    td colspan="4" { "Subtotal " (section.provider.name) }
                                    td.num data-testid="subtotal" { (money(section.subtotal, cur)) }
                                } }
                            }
                        }
                    }
                    @if page.invoice.sections.is_empty() { p { "No usage in this period yet." } }
                    @if !page.invoice.credits.is_empty() {
                        div.subtotal { span { "Total before credits" } span data-testid="subtotal-before-credits" { (money(inv.subtotal, cur)) } }
                        section aria-labelledby="credits-applied" {
                            h2 id="credits-applied" { "Credits applied" }
                            table {
                                thead { tr {
                                    th scope="col" { "Credit" }
                                    th scope="col" { "Kind" }
                                    th scope="col" class="num" { "Amount" }
                                } }
                                tbody {
                                    @for credit in &page.invoice.credits {
                                        tr data-testid="credit" {
                                            th scope="row" { (credit.name) }
                                            td { (credit.kind) }
                                            td.num { "−" (money(credit.amount, cur)) }
                                        }
                                    }
                                }
                                tfoot { tr {
                                    td colspan="2" { "Credits" }
                                    td.num data-testid="credits-total" { "−" (money(inv.credits_total, cur)) }
                                } }
                            }
                        }
                    }
                    div.total { span { "Total due" } span data-testid="total" { (money(inv.total, cur)) } }
                    @if !page.resources.is_empty() {
                        section aria-labelledby="resources" {
                            h2 id="resources" { "Your resources this period" }
                            table {
                                thead { tr {
                                    th scope="col" { "Resource" }
                                    th scope="col" { "Status" }
                                    th scope="col" class="num" { "So far" }
                                    th scope="col" class="num" { "Forecast for the period" }
                                } }
                                tbody {
                                    @for r in page.resources {
                                        tr data-testid="resource-outlook" {
                                            th scope="row" { (r.name) " · " (r.plan) br; small.meta { (r.provider) } }
                                            td {
                                                (r.status)
                                                @if let Some(m) = &r.status_message { br; small.meta { (m) } }
                                            }
                                            td.num { (money(r.so_far, cur)) }
                                            td.num { (money(r.forecast, cur)) }
                                        }
                                    }
                                }
                            }
                            p.meta { "So far: plan fees of active hours up to now and usage billed. Forecast: the plan as it stands to the period's end, and usage at its rate so far." }
                        }
                    }
                    @if !page.balances.is_empty() {
                        section aria-labelledby="credit-balances" {
                            h2 id="credit-balances" { "Your credit balances" }
                            table {
                                thead { tr {
                                    th scope="col" { "Credit" }
                                    th scope="col" { "Expires" }
                                    th scope="col" class="num" { "Remaining" }
                                } }
                                tbody {
                                    @for b in page.balances {
                                        tr data-testid="balance" {
                                            th scope="row" { (b.name) @if b.status == GrantStatus::Scheduled { " " small.meta { "(not yet active)" } } }
                                            td { @if let Some(e) = b.expires_at { (e.format("%-d %B %Y %H:%M UTC")) } @else { "never" } }
                                            td.num { (money(b.remaining, cur)) }
                                        }
                                    }
                                }
                            }
                            p.meta { "Balances include credits used by invoices that are still drafts." }
                        }
                    }
                    (contract_view::render(page.contract, cur))
                    p.downloads {
                        a href={ "bill.csv?period=" (inv.period.label) (page.auth_query) } download { "Download CSV" }
                    }
                    p.meta { "Print this page or save it as PDF from your browser; the printed layout leaves out navigation." }
                }
            }
        }
    }
}

/// Cumulative spend per provider per day, as an accessible SVG line chart.
/// Each line's amount is spread over the days in proportion to its usage, so
/// every provider's curve ends at its subtotal.
fn chart(page: &BillPage<'_>) -> Markup {
    let inv = &page.invoice;
    let start = inv.summary.period.start.date_naive();
    let end = inv.summary.period.end.date_naive();
    let days = (end - start).num_days().max(1);
    // Amounts beyond `Decimal` (none a bill can hold) leave the chart out;
    // the tables still show every amount.
    let Ok(series) = spend_series(page, start, days) else {
        return html! {};
    };
    let max = series
        .iter()
        .map(|(_, subtotal, _)| *subtotal)
        .max()
        .unwrap_or(Decimal::ONE)
        .max(Decimal::ONE);
    let (w, h, left, bottom) = (640.0_f64, 240.0_f64, 56.0_f64, 24.0_f64);
    let x = |i: usize| left + (w - left - 8.0) * (i as f64 + 1.0) / days as f64;
    let y = |v: Decimal| {
        let ratio = v.checked_div(max).and_then(|r| r.to_f64()).unwrap_or(0.0);
        (h - bottom) - (h - bottom - 8.0) * ratio
    };
    let cur = &inv.summary.currency;
    html! {
        figure {
            svg viewBox={ "0 0 " (w) " " (h) } role="img" aria-labelledby="chart-title chart-desc" xmlns="http://www.w3.org/2000/svg" {
                title id="chart-title" { "Cumulative spend per provider" }
                desc id="chart-desc" {
                    @for (name, subtotal, _) in &series { (name) ": " (subtotal) " " (cur) ". " }
                }
                line x1=(left) y1=(h - bottom) x2=(w - 8.0) y2=(h - bottom) stroke="#9ca3af" {}
                line x1=(left) y1="8" x2=(left) y2=(h - bottom) stroke="#9ca3af" {}
                text x=(left - 6.0) y="14" text-anchor="end" font-size="11" fill="#4b5563" { (max.round_dp_with_strategy(0, rust_decimal::RoundingStrategy::AwayFromZero)) " " (cur) }
                text x=(left - 6.0) y=(h - bottom) text-anchor="end" font-size="11" fill="#4b5563" { "0" }
                text x=(left) y=(h - 6.0) font-size="11" fill="#4b5563" { (start.format("%-d %b")) }
                text x=(w - 8.0) y=(h - 6.0) text-anchor="end" font-size="11" fill="#4b5563" { ((end - Duration::days(1)).format("%-d %b")) }
                @for (i, (_, _, c)) in series.iter().enumerate() {
                    polyline fill="none" stroke-width="2.5" stroke=(PALETTE[i % PALETTE.len()])
                        points={ @for (d, v) in c.iter().enumerate() { (format!("{:.1},{:.1} ", x(d), y(*v))) } } {}
                }
            }
            figcaption {
                "Cumulative spend per provider, " (start.format("%B %Y")) ": "
                @for (i, (name, subtotal, _)) in series.iter().enumerate() {
                    span style={ "color:" (PALETTE[i % PALETTE.len()]) } aria-hidden="true" { "■ " }
                    (name) " " (subtotal) " " (cur) "  "
                }
            }
        }
    }
}

/// One CSV cell of text: neutralised against formula injection (every text
/// cell, whoever chose it: [`tally_domain::spreadsheet`]), then quoted when
/// it needs to be.
pub(crate) fn csv_text(text: &str) -> String {
    let text = tally_domain::spreadsheet::text_cell(text);
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.into_owned()
    }
}

/// A line's description, naming the period an adjustment bills late usage of.
fn described(line: &LineView) -> String {
    match &line.adjusts {
        Some(period) => format!("{} (late usage of {})", line.description, period.label),
        None => line.description.clone(),
    }
}

/// The resource whose group of lines starts at line `i` (lines come
/// grouped by resource within a provider, unbound ones first).
fn group_starts(lines: &[LineView], i: usize) -> Option<&ResourceView> {
    let resource = lines.get(i)?.resource.as_ref()?;
    let previous = i
        .checked_sub(1)
        .and_then(|p| lines.get(p))
        .and_then(|l| l.resource.as_ref());
    match previous {
        Some(p) if p.binding == resource.binding => None,
        _ => Some(resource),
    }
}

/// A bound resource as the bill groups its lines: `prod-db · PS-10`.
pub fn resource_label(r: &ResourceView) -> String {
    format!("{} · {}", r.name, r.plan)
}

/// A line's price before its contract discount: `amount + discount` (its
/// amount, the net, is what the account pays).
fn before_discount(line: &LineView) -> Decimal {
    line.amount
        .checked_add(line.discount)
        .unwrap_or(line.amount)
}

/// The invoice as CSV: one row per line (a bound resource's lines name it:
/// `resource` is `prod-db · PS-10`, `binding_id` its binding; `amount` is
/// the net, `before_discount` the price before the contract's `discount`,
/// funded by `discount_funded_by`); when credits apply, a subtotal row
/// and one (negative) row per credit; then the total due; then the
/// contract's sections ([`contract_view::csv`]).
pub fn csv(invoice: &Invoice, contract: &BillContract) -> String {
    let s = &invoice.summary;
    let mut out = String::from(
        "account_id,period,invoice_number,status,currency,provider_id,provider_name,sku,description,quantity,unit,unit_price,amount,resource,binding_id,before_discount,discount,discount_funded_by\n",
    );
    let number = s.number.as_deref().unwrap_or("");
    for section in &invoice.sections {
        for l in &section.lines {
            // Text cells neutralised; the numbers Tally formats itself are
            // not (a spreadsheet adds them up).
            let cells = [
                csv_text(&s.account_id),
                csv_text(&s.period.label),
                csv_text(number),
                csv_text(s.status.as_str()),
                csv_text(s.currency.code()),
                csv_text(section.provider.id.as_str()),
                csv_text(&section.provider.name),
                csv_text(l.sku.as_str()),
                csv_text(&described(l)),
                l.quantity.to_string(),
                csv_text(&l.unit),
                l.unit_price.map(|p| p.to_string()).unwrap_or_default(),
                l.amount.to_string(),
                csv_text(&l.resource.as_ref().map(resource_label).unwrap_or_default()),
                csv_text(l.resource.as_ref().map_or("", |r| r.binding.as_str())),
                s.currency.scaled(before_discount(l)).to_string(),
                s.currency.scaled(l.discount).to_string(),
                csv_text(l.discount_funded_by.as_deref().unwrap_or("")),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    let mut summary_row = |description: &str, amount: Decimal| {
        out.push_str(&format!(
            "{},{},{},{},{},,,,{},,,,{},,,,,\n",
            csv_text(&s.account_id),
            csv_text(&s.period.label),
            csv_text(number),
            csv_text(s.status.as_str()),
            csv_text(s.currency.code()),
            csv_text(description),
            amount
        ));
    };
    if !invoice.credits.is_empty() {
        summary_row("subtotal", s.subtotal);
        for credit in &invoice.credits {
            summary_row(&format!("credit: {}", credit.name), -credit.amount);
        }
    }
    summary_row("total", s.total);
    out.push_str(&contract_view::csv(contract));
    out
}

/// Per provider section: its name, subtotal and cumulative spend per day
/// up to today, each line's amount spread over the days by its usage.
fn spend_series(
    page: &BillPage<'_>,
    start: NaiveDate,
    days: i64,
) -> Result<Vec<(String, Decimal, Vec<Decimal>)>, MoneyError> {
    let inv = &page.invoice;
    let mut line_totals: BTreeMap<i64, Decimal> = BTreeMap::new();
    for (_, price, q) in page.daily {
        let total = line_totals.entry(*price).or_default();
        *total = checked::add(*total, *q)?;
    }
    let mut series = Vec::new();
    for section in &inv.sections {
        let mut per_day = vec![Decimal::ZERO; usize::try_from(days).unwrap_or(31)];
        for line in &section.lines {
            let total_q = line_totals.get(&line.price_id).copied().unwrap_or_default();
            if total_q.is_zero() {
                continue;
            }
            for (day, _, q) in page.daily.iter().filter(|d| d.1 == line.price_id) {
                let index = usize::try_from((*day - start).num_days()).unwrap_or(0);
                if let Some(slot) = per_day.get_mut(index) {
                    let share = checked::div(checked::mul(line.amount, *q)?, total_q)?;
                    *slot = checked::add(*slot, share)?;
                }
            }
        }
        let shown = usize::try_from((page.today - start).num_days() + 1)
            .unwrap_or(0)
            .clamp(1, per_day.len().max(1));
        let mut running = Decimal::ZERO;
        let mut cumulative = Vec::with_capacity(shown);
        for d in per_day.iter().take(shown) {
            running = checked::add(running, *d)?;
            cumulative.push(running);
        }
        series.push((section.provider.name.clone(), section.subtotal, cumulative));
    }
    Ok(series)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finance::invoices::tests::sample;

    static NO_CONTRACT: BillContract = BillContract {
        contract: None,
        commitments: Vec::new(),
        price_changes: Vec::new(),
    };

    fn page<'a>(invoice: &'a Invoice, daily: &'a [(NaiveDate, i64, Decimal)]) -> BillPage<'a> {
        BillPage {
            account_name: "Acme",
            invoice,
            periods: &[],
            daily,
            today: NaiveDate::from_ymd_opt(2026, 11, 30).unwrap_or_default(),
            auth_query: "",
            signed_in: false,
            balances: &[],
            resources: &[],
            contract: &NO_CONTRACT,
        }
    }

    #[test]
    fn the_chart_spreads_each_line_over_its_days_and_leaves_out_what_overflows() {
        let usd = Currency::parse("USD").unwrap();
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let mut invoice = sample(usd);
        // 1 hour on the 2nd, 2 on the 4th: 0.50 and 1.00 of the 1.50.
        let daily = [(day(2), 7, Decimal::ONE), (day(4), 7, Decimal::TWO)];
        let start = day(1);
        let series = spend_series(&page(&invoice, &daily), start, 30).unwrap();
        assert_eq!(series.len(), 1);
        let (name, subtotal, cumulative) = &series[0];
        assert_eq!((name.as_str(), *subtotal), ("DB Co", Decimal::new(1500, 3)));
        assert_eq!(cumulative.len(), 30);
        assert_eq!(
            cumulative[..5],
            [
                Decimal::ZERO,
                Decimal::new(5, 1),
                Decimal::new(5, 1),
                Decimal::new(15, 1),
                Decimal::new(15, 1)
            ]
        );
        // A line at the limit of `Decimal`: amount × quantity overflows.
        invoice.sections[0].lines[0].amount = Decimal::MAX;
        assert_eq!(
            spend_series(&page(&invoice, &daily), start, 30),
            Err(MoneyError::Overflow)
        );
        assert_eq!(chart(&page(&invoice, &daily)).into_string(), "");
    }
}
