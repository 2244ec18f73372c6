//! The month's reconciliation: the identity per currency, each side read
//! from its own records.

use axum::extract::State;
use axum::Json;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use tally_domain::contract::discounts::DiscountFigures;
use tally_domain::money::checked;
use tally_domain::reconciliation::{self, InvoiceFigures, MonthFigures};
use tally_domain::{Currency, MoneyError, Period};

use super::chains::{chains_of, ChainView};
use super::settlements;
use crate::auth::Staff;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::finance::invoices::parse_period;
use tally_invoicing::amounts::{fits, parse_stored};

/// The identity of one month in one currency (DESIGN.md, "It reconciles"):
/// `invoiced = platform_revenue + partner_settlements + credits_applied`,
/// computed by `tally_domain::reconciliation` over the figures read here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CurrencyReconciliation {
    /// ISO 4217
    #[schema(value_type = String)]
    pub currency: Currency,
    /// Finalized invoices of the month's periods (void ones included: they
    /// were issued; their void is a correction of the month it happened in).
    pub invoices: i64,
    /// Their subtotals (before credits), from the invoice headers.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub subtotals: Decimal,
    /// Subtotals of invoices voided in the month.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub voided: Decimal,
    /// Credit notes issued in the month, from their headers.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub credit_notes: Decimal,
    /// `subtotals - voided - credit_notes`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub invoiced: Decimal,
    /// Markup and platform fees of the lines (first-party lines whole), less
    /// those of voided invoices and the platform's part of credit notes,
    /// less credits applied.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub platform_revenue: Decimal,
    /// Net payable of every partner's settlement.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub partner_settlements: Decimal,
    /// Credits applied on the invoices (their credit lines), less those of
    /// voided invoices.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub credits_applied: Decimal,
    /// `invoiced - (platform_revenue + partner_settlements + credits_applied)`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub difference: Decimal,
    /// Discounts as their own category (`tally_domain::contract::discounts`):
    /// the lines' providers' list prices (`list_amount`), less those of
    /// invoices voided in the month.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub list_value: Decimal,
    /// The platform's markup before discounts (`markup + discount` of the lines).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub markups: Decimal,
    /// Contract discounts of the lines: `platform_funded_discounts + partner_funded_discounts`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub discounts: Decimal,
    /// Discounts the platform funds (the partner settled at list).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub platform_funded_discounts: Decimal,
    /// Discounts partners fund (their settlements lower by as much).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub partner_funded_discounts: Decimal,
    /// `subtotals - voided - (list_value + markups - discounts)`: the
    /// discount identity, zero when it holds.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub discount_difference: Decimal,
    /// Problems found: an invoice whose header disagrees with its lines or
    /// credits, a line whose split does not add up, a credit note whose
    /// total is not its lines', the credit ledger disagreeing with the
    /// credits the invoices apply.
    pub problems: Vec<String>,
}

impl CurrencyReconciliation {
    pub fn holds(&self) -> bool {
        self.difference.is_zero() && self.discount_difference.is_zero() && self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub period: String,
    /// Invoices of the month not finalized yet (left out of the figures).
    pub drafts: i64,
    pub currencies: Vec<CurrencyReconciliation>,
    /// The month per chain of composition (issue 17): each composing root
    /// and the providers it draws from, with the identity on the chain's
    /// lines ([`super::chains`]). Not a partition of the month: a supplier
    /// two roots draw from is in both.
    pub chains: Vec<ChainView>,
}

impl Reconciliation {
    pub fn holds(&self) -> bool {
        self.currencies.iter().all(CurrencyReconciliation::holds)
            && self.chains.iter().all(ChainView::holds)
    }
}

/// The month's invoices (finalized, voided since or not), and the invoices
/// voided in the month (whatever their period): a query adds the first and
/// takes the second away.
pub(crate) const ISSUED: &str =
    "i.status IN ('finalized', 'void') AND i.period_start >= $1 AND i.period_start < $2";
pub(crate) const VOIDED: &str = "i.status = 'void' AND i.voided_at >= $1 AND i.voided_at < $2";

/// Per currency, `select` (a scalar subquery over `i`, the invoice) summed
/// over the month's invoices, less the same over those voided in the month.
async fn per_currency(
    conn: &mut PgConnection,
    month: Period,
    select: &str,
) -> Result<BTreeMap<String, Decimal>, sqlx::Error> {
    let sql = format!(
        "SELECT currency, sum(v) AS v FROM (
             SELECT i.currency, ({select}) AS v FROM invoices i WHERE {ISSUED}
             UNION ALL
             SELECT i.currency, -({select}) FROM invoices i WHERE {VOIDED}) t
         GROUP BY currency"
    );
    let rows = sqlx::query(&sql)
        .bind(month.start())
        .bind(month.end())
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("currency")?,
                r.try_get::<Option<Decimal>, _>("v")?.unwrap_or_default(),
            ))
        })
        .collect()
}

/// One of a month's figures, to be set.
type Figure = fn(&mut MonthFigures) -> &mut Decimal;

/// Checks the identity for `month`, per currency, each side from its own
/// records: invoice and credit note headers; invoice lines and credit note
/// lines; the settlements; the invoices' credit lines (and the credit ledger
/// beside them).
pub async fn reconcile(
    conn: &mut PgConnection,
    month: Period,
) -> Result<Reconciliation, sqlx::Error> {
    let (start, end) = (month.start(), month.end());
    let drafts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM invoices WHERE status = 'draft' AND period_start >= $1 AND period_start < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_one(&mut *conn)
    .await?;
    let mut by_currency: BTreeMap<String, Month> = BTreeMap::new();

    let counts: Vec<(String, i64, Decimal)> = sqlx::query_as(&format!(
        "SELECT i.currency, count(*), sum(i.subtotal) FROM invoices i WHERE {ISSUED} GROUP BY i.currency"
    ))
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for (currency, n, subtotals) in counts {
        let c = entry(&mut by_currency, &currency);
        c.invoices = n;
        c.figures.subtotals = subtotals;
    }
    let voided: Vec<(String, Decimal)> = sqlx::query_as(&format!(
        "SELECT i.currency, sum(i.subtotal) FROM invoices i WHERE {VOIDED} GROUP BY i.currency"
    ))
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for (currency, amount) in voided {
        entry(&mut by_currency, &currency).figures.voided = amount;
    }
    let notes: Vec<(String, Decimal, Decimal)> = sqlx::query_as(
        "SELECT n.currency, sum(n.total),
                COALESCE(sum((SELECT sum(c.platform_part) FROM credit_note_lines c WHERE c.credit_note_id = n.id)), 0)
         FROM credit_notes n WHERE n.created_at >= $1 AND n.created_at < $2 GROUP BY n.currency",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for (currency, total, platform_part) in notes {
        let c = entry(&mut by_currency, &currency);
        c.figures.credit_notes = total;
        c.figures.platform_credited = platform_part;
    }
    // Per invoice: the platform's part of its lines, and the credits applied.
    let sums: [(&str, Figure); 2] = [
        (
            "SELECT COALESCE(sum(l.markup + l.platform_fee), 0) FROM invoice_lines l WHERE l.invoice_id = i.id",
            |f| &mut f.platform_fees,
        ),
        (
            "SELECT COALESCE(sum(c.amount), 0) FROM invoice_credits c WHERE c.invoice_id = i.id",
            |f| &mut f.credits_applied,
        ),
    ];
    for (select, figure) in sums {
        for (currency, sum) in per_currency(&mut *conn, month, select).await? {
            *figure(&mut entry(&mut by_currency, &currency).figures) = sum;
        }
    }
    discount_figures(&mut *conn, month, &mut by_currency).await?;
    for s in settlements(&mut *conn, month, None).await? {
        for cs in s.currencies {
            let figures = &mut entry(&mut by_currency, cs.currency.code()).figures;
            figures.partner_settlements = fits(checked::add(
                figures.partner_settlements,
                cs.totals.net_payable,
            ))?;
        }
    }

    // The month's invoices checked against their own lines and credits, and
    // the credit ledger against the invoices.
    let invoices = sqlx::query(&format!(
        "SELECT i.currency, i.number, i.subtotal, i.credits_total, i.total,
                COALESCE((SELECT sum(amount) FROM invoice_lines WHERE invoice_id = i.id), 0) AS lines,
                COALESCE((SELECT sum(amount) FROM invoice_credits WHERE invoice_id = i.id), 0) AS credits,
                COALESCE((SELECT sum(amount) FROM credit_ledger
                          WHERE kind = 'draw' AND account_id = i.account_id AND period_start = i.period_start), 0) AS drawn,
                (SELECT count(*) FROM invoice_lines
                  WHERE invoice_id = i.id AND amount <> markup + platform_fee + partner_net) AS split_off
         FROM invoices i WHERE {ISSUED} ORDER BY i.number"
    ))
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for r in &invoices {
        let number: Option<String> = r.try_get("number")?;
        let figures = InvoiceFigures {
            subtotal: r.try_get("subtotal")?,
            credits_total: r.try_get("credits_total")?,
            total: r.try_get("total")?,
            lines: r.try_get("lines")?,
            credits: r.try_get("credits")?,
            drawn: r.try_get("drawn")?,
            split_off: r.try_get("split_off")?,
        };
        let problems = reconciliation::invoice_problems(&number.unwrap_or_default(), &figures);
        if !problems.is_empty() {
            entry(&mut by_currency, r.try_get("currency")?)
                .problems
                .extend(problems);
        }
    }
    let notes_off: Vec<(String, String)> = sqlx::query_as(
        "SELECT n.currency, n.number FROM credit_notes n
         WHERE n.created_at >= $1 AND n.created_at < $2
           AND n.total <> (SELECT sum(amount) FROM credit_note_lines WHERE credit_note_id = n.id)",
    )
    .bind(start)
    .bind(end)
    .fetch_all(&mut *conn)
    .await?;
    for (currency, number) in notes_off {
        entry(&mut by_currency, &currency)
            .problems
            .push(reconciliation::credit_note_problem(&number));
    }
    let currencies = by_currency
        .into_iter()
        .map(|(code, month)| fits(month.view(parse_stored("currency", &code)?)))
        .collect::<Result<_, _>>()?;
    let chains = chains_of(&mut *conn, month).await?;
    Ok(Reconciliation {
        period: month.label(),
        drafts,
        currencies,
        chains,
    })
}

/// One of a month's discount figures, to be set.
type DiscountFigure = fn(&mut DiscountFigures) -> &mut Decimal;

/// The month's lines as list value, markup and discounts, per currency,
/// over the same invoices as the identity (issued, less voided in the month).
async fn discount_figures(
    conn: &mut PgConnection,
    month: Period,
    by_currency: &mut BTreeMap<String, Month>,
) -> Result<(), sqlx::Error> {
    let lines = |what: &str| {
        format!("SELECT COALESCE(sum({what}), 0) FROM invoice_lines l WHERE l.invoice_id = i.id")
    };
    let sums: [(String, DiscountFigure); 4] = [
        (lines("l.list_amount"), |f| &mut f.list),
        (lines("l.markup + l.discount"), |f| &mut f.markups),
        (
            lines("l.discount) FILTER (WHERE l.discount_funded_by = 'platform'"),
            |f| &mut f.platform_funded,
        ),
        (
            lines("l.discount) FILTER (WHERE l.discount_funded_by = 'partner'"),
            |f| &mut f.partner_funded,
        ),
    ];
    for (select, figure) in sums {
        for (currency, sum) in per_currency(&mut *conn, month, &select).await? {
            *figure(&mut entry(by_currency, &currency).discounts) = sum;
        }
    }
    Ok(())
}

/// One currency's figures of a month, as they are read.
#[derive(Default)]
struct Month {
    invoices: i64,
    figures: MonthFigures,
    discounts: DiscountFigures,
    problems: Vec<String>,
}

impl Month {
    /// The identity over the figures, amounts with the currency's exponent.
    fn view(self, currency: Currency) -> Result<CurrencyReconciliation, MoneyError> {
        let identity = self.figures.identity()?;
        let f = self.figures;
        let d = DiscountFigures {
            billed: checked::sub(f.subtotals, f.voided)?,
            ..self.discounts
        };
        let discounts = d.identity()?;
        let s = |amount| currency.scaled(amount);
        Ok(CurrencyReconciliation {
            invoices: self.invoices,
            subtotals: s(f.subtotals),
            voided: s(f.voided),
            credit_notes: s(f.credit_notes),
            invoiced: s(identity.invoiced),
            platform_revenue: s(identity.platform_revenue),
            partner_settlements: s(identity.partner_settlements),
            credits_applied: s(identity.credits_applied),
            difference: s(identity.difference),
            list_value: s(d.list),
            markups: s(d.markups),
            discounts: s(discounts.discounts),
            platform_funded_discounts: s(d.platform_funded),
            partner_funded_discounts: s(d.partner_funded),
            discount_difference: s(discounts.difference),
            problems: self.problems,
            currency,
        })
    }
}

fn entry<'a>(by: &'a mut BTreeMap<String, Month>, currency: &str) -> &'a mut Month {
    by.entry(currency.to_owned()).or_default()
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// Month whose periods' invoices count, as YYYY-MM
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub(super) period: String,
}

/// `GET /v1/reconciliation?period=YYYY-MM` (finance).
#[utoipa::path(
    get,
    path = "/v1/reconciliation",
    tag = "finance",
    summary = "The month's identity per currency: invoiced = platform revenue + partner settlements + credits applied; and discounts as their own category: list value + markups - discounts = subtotals - voided (finance, admin)",
    params(PeriodQuery),
    responses((status = 200, description = "The reconciliation", body = Reconciliation)),
    security(("bearer" = [])),
)]
pub async fn get_reconciliation(
    _: Staff,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<Json<Reconciliation>, ApiError> {
    let month = parse_period(&q.period)?;
    let mut conn = pool.acquire().await?;
    Ok(Json(reconcile(&mut conn, month).await?))
}

#[cfg(test)]
mod tests {
    use super::super::{CurrencySettlement, Figures, Keyed, Settlement};
    use super::*;
    use rust_decimal_macros::dec;

    #[test]
    fn settlements_and_reconciliations_serialize_the_currency_code_and_scaled_amounts() {
        let jpy = Currency::parse("JPY").unwrap();
        let figures = Figures {
            gross_list: dec!(1234),
            platform_fee: dec!(247),
            credit_notes: dec!(0),
            net_payable: dec!(987),
            partner_funded_discounts: dec!(0),
            platform_funded_discounts: dec!(0),
        };
        let settlement = Settlement {
            provider_id: "dbco".into(),
            provider_name: "DB Co".into(),
            period: "2026-11".into(),
            settlement_mode: tally_domain::composition::statement::SettlementMode::Net,
            currencies: vec![CurrencySettlement {
                currency: jpy,
                totals: figures.clone(),
                by_sku: vec![Keyed {
                    id: "dbco.db".into(),
                    figures: figures.clone(),
                }],
                by_account: vec![],
                own_invoices_due: dec!(1000),
                paid: dec!(-13),
            }],
        };
        let figures = r#""gross_list":"1234","platform_fee":"247","credit_notes":"0","net_payable":"987","partner_funded_discounts":"0","platform_funded_discounts":"0""#;
        assert_eq!(
            serde_json::to_string(&settlement).unwrap(),
            format!(
                r#"{{"provider_id":"dbco","provider_name":"DB Co","period":"2026-11","settlement_mode":"net","currencies":[{{"currency":"JPY",{figures},"by_sku":[{{"id":"dbco.db",{figures}}}],"by_account":[],"own_invoices_due":"1000","paid":"-13"}}]}}"#
            )
        );
        let usd = Currency::parse("USD").unwrap();
        let month = Month {
            invoices: 2,
            figures: MonthFigures {
                subtotals: dec!(10),
                platform_fees: dec!(2.5),
                partner_settlements: dec!(7.5),
                ..MonthFigures::default()
            },
            discounts: DiscountFigures {
                list: dec!(9),
                markups: dec!(1.5),
                platform_funded: dec!(0.25),
                partner_funded: dec!(0.25),
                billed: dec!(0),
            },
            problems: vec![],
        };
        assert_eq!(
            serde_json::to_string(&month.view(usd).unwrap()).unwrap(),
            concat!(
                r#"{"currency":"USD","invoices":2,"subtotals":"10.00","voided":"0.00","#,
                r#""credit_notes":"0.00","invoiced":"10.00","platform_revenue":"2.50","#,
                r#""partner_settlements":"7.50","credits_applied":"0.00","difference":"0.00","#,
                r#""list_value":"9.00","markups":"1.50","discounts":"0.50","#,
                r#""platform_funded_discounts":"0.25","partner_funded_discounts":"0.25","#,
                r#""discount_difference":"0.00","#,
                r#""problems":[]}"#
            )
        );
    }
}
