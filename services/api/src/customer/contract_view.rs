//! The contract on the bill page and in its CSV: the contract in force,
//! each commitment's progress and the coming price changes
//! ([`super::contract::BillContract`]).

use maud::{html, Markup};
use tally_domain::pricing::{PriceBook, PriceModel};
use tally_domain::{Currency, Money};

use super::bill_view::csv_text;
use super::contract::BillContract;

fn money(amount: rust_decimal::Decimal, currency: Currency) -> String {
    Money::new(amount, currency).to_string()
}

/// A price book in a few words: `0.30 USD per unit`, `graduated, 3 tiers`.
pub fn describe(book: &PriceBook, currency: Currency) -> String {
    match &book.model {
        PriceModel::PerUnit { unit_price } => format!("{unit_price} {currency} per unit"),
        PriceModel::Graduated { tiers } => format!("graduated, {} tiers", tiers.len()),
        PriceModel::Volume { tiers } => format!("volume, {} tiers", tiers.len()),
        PriceModel::Package {
            package_size,
            package_price,
        } => format!("{package_price} {currency} per {package_size} units"),
    }
}

/// What a term discounts: `all usage`, `provider dbco`, `dbco: dbco.db, dbco.io`.
fn scope_text(t: &crate::contracts::TermView) -> String {
    let b = &t.body;
    match (b.scope.as_str(), &b.provider) {
        ("provider", Some(p)) => format!("everything of {p}"),
        ("skus", Some(p)) => format!("{p}: {}", b.skus.join(", ")),
        _ => "all usage".into(),
    }
}

fn day(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%-d %B %Y").to_string()
}

/// The page's sections: nothing when the account has no contract in force
/// and no price change is coming.
pub fn render(c: &BillContract, cur: Currency) -> Markup {
    html! {
        @if let Some(contract) = &c.contract {
            section aria-labelledby="contract" data-testid="contract" {
                h2 id="contract" { "Your contract" }
                p {
                    "Term " (day(contract.starts_at)) " – " (day(contract.ends_at)) " (end exclusive). "
                    @if contract.price_protection {
                        "Your prices are protected: you keep the prices in force when the contract was signed until its term ends."
                    } @else {
                        "Prices are not protected."
                    }
                }
                @if !contract.terms.is_empty() {
                    table {
                        thead { tr {
                            th scope="col" { "Discount applies to" }
                            th scope="col" class="num" { "Discount" }
                            th scope="col" { "Funded by" }
                            th scope="col" { "Effective" }
                        } }
                        tbody {
                            @for t in &contract.terms {
                                tr data-testid="contract-term" {
                                    th scope="row" { (scope_text(t)) }
                                    td.num {
                                        @if let Some(percent) = t.body.percent {
                                            (percent) "%"
                                        } @else {
                                            "Negotiated price"
                                        }
                                    }
                                    td { (t.body.funded_by) }
                                    td { (day(t.body.effective_from)) " – " (day(t.body.effective_to)) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if !c.commitments.is_empty() {
            section aria-labelledby="commitments" {
                h2 id="commitments" { "Committed spend" }
                table {
                    thead { tr {
                        th scope="col" { "Commitment period" }
                        th scope="col" class="num" { "Minimum" }
                        th scope="col" class="num" { "Spent" }
                        th scope="col" class="num" { "Remaining" }
                        th scope="col" class="num" { "True-up" }
                    } }
                    tbody {
                        @for p in &c.commitments {
                            tr data-testid="commitment" {
                                th scope="row" {
                                    (day(p.period_start)) " – " (day(p.period_end - chrono::Duration::days(1)))
                                    br; small.meta { (p.cadence) ", " @if p.standing == "in_progress" { "in progress" } @else { "finished" } }
                                }
                                td.num { (money(p.minimum, cur)) }
                                td.num { (money(p.net_spend, cur)) }
                                td.num { (money(p.remaining, cur)) }
                                td.num { (money(p.true_up, cur)) br; small.meta { @if p.true_up_billed { "billed" } @else { "projected" } } }
                            }
                        }
                    }
                }
                p.meta { "Spent: net of discounts, before credits; true-up lines excluded." }
            }
        }
        @if !c.price_changes.is_empty() {
            section aria-labelledby="price-changes" {
                h2 id="price-changes" { "Upcoming price changes" }
                table {
                    thead { tr {
                        th scope="col" { "SKU" }
                        th scope="col" { "From" }
                        th scope="col" { "Now" }
                        th scope="col" { "New" }
                        th scope="col" { "For you" }
                    } }
                    tbody {
                        @for change in &c.price_changes {
                            tr data-testid="price-change" {
                                th scope="row" { code { (change.sku) } br; small.meta { (change.provider) } }
                                td { (day(change.effective_from)) }
                                td { @if let Some(v) = &change.current { (describe(&v.model, cur)) } @else { "no price yet" } }
                                td { (describe(&change.new.model, cur)) }
                                td {
                                    @if let Some(until) = change.protected_until {
                                        "Does not apply to you until " (day(until)) " (your contract's end)"
                                    } @else {
                                        "Applies from " (day(change.effective_from))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The CSV's contract sections, each after a blank row with its own header
/// row, only those that have rows: `contract_id,...` (the contract in
/// force and one row per term), `commitment_id,...` (each commitment
/// period's progress), `price_change_sku,...` (each coming change, its
/// price books as JSON).
pub fn csv(c: &BillContract) -> String {
    let mut out = String::new();
    if let Some(contract) = &c.contract {
        out.push_str("\ncontract_id,starts_at,ends_at,currency,price_protection,term_id,scope,provider_id,skus,percent,funded_by,effective_from,effective_to,price_book\n");
        let head = [
            contract.id.to_string(),
            contract.starts_at.to_rfc3339(),
            contract.ends_at.to_rfc3339(),
            csv_text(contract.currency.code()),
            contract.price_protection.to_string(),
        ]
        .join(",");
        out.push_str(&format!("{head},,,,,,,,,\n"));
        for t in &contract.terms {
            let cells = [
                head.clone(),
                t.id.to_string(),
                csv_text(&t.body.scope),
                csv_text(t.body.provider.as_deref().unwrap_or("")),
                csv_text(&t.body.skus.join(" ")),
                t.body.percent.map(|p| p.to_string()).unwrap_or_default(),
                csv_text(&t.body.funded_by),
                t.body.effective_from.to_rfc3339(),
                t.body.effective_to.to_rfc3339(),
                t.body
                    .price_book
                    .as_ref()
                    .and_then(|b| serde_json::to_string(b).ok())
                    .map(|b| csv_text(&b))
                    .unwrap_or_default(),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    if !c.commitments.is_empty() {
        out.push_str("\ncommitment_id,cadence,standing,period_start,period_end,minimum,net_spend,remaining,true_up,true_up_billed\n");
        for p in &c.commitments {
            let cells = [
                p.commitment_id.to_string(),
                csv_text(&p.cadence),
                csv_text(&p.standing),
                p.period_start.to_rfc3339(),
                p.period_end.to_rfc3339(),
                p.minimum.to_string(),
                p.net_spend.to_string(),
                p.remaining.to_string(),
                p.true_up.to_string(),
                p.true_up_billed.to_string(),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    if !c.price_changes.is_empty() {
        out.push_str("\nprice_change_sku,provider_id,effective_from,current_price_id,current_price_book,new_price_id,new_price_book,protected_until,applies_from\n");
        for change in &c.price_changes {
            let book = |b: &PriceBook| csv_text(&serde_json::to_string(b).unwrap_or_default());
            let cells = [
                csv_text(&change.sku),
                csv_text(&change.provider),
                change.effective_from.to_rfc3339(),
                change
                    .current
                    .as_ref()
                    .map(|v| v.id.to_string())
                    .unwrap_or_default(),
                change
                    .current
                    .as_ref()
                    .map(|v| book(&v.model))
                    .unwrap_or_default(),
                change.new.id.to_string(),
                book(&change.new.model),
                change
                    .protected_until
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                change.applies_from.to_rfc3339(),
            ];
            out.push_str(&cells.join(","));
            out.push('\n');
        }
    }
    out
}
