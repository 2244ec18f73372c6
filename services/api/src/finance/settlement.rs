//! Partner settlements, the reconciliation of a month, and the finance CSV
//! exports. A month holds the invoices of the periods that start in it once
//! they are finalized (drafts still change), and the corrections made in it:
//! invoices voided in the month (their whole invoice reversed) and credit
//! notes issued in it, whatever period they correct. A month that was
//! settled and paid out never changes afterwards; a later correction is
//! part of the month it is made in.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use std::collections::BTreeMap;
use tally_domain::money::checked;
use tally_domain::reconciliation::{self, InvoiceFigures, MonthFigures};
use tally_domain::{spreadsheet, Currency, MoneyError, Period};
use tally_platform::auth::Principal;

use crate::auth::{Caller, Staff};
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::finance::invoices::parse_period;
use tally_invoicing::amounts::{currency_of, fits, parse_stored};

/// One partner's settlement figures for one SKU and account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementFigures)]
pub struct Figures {
    /// Usage at the partner's list price (less that of invoices voided in
    /// the month).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub gross_list: Decimal,
    /// The platform's share of the list amount.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub platform_fee: Decimal,
    /// The partner's share given back by credit notes.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub credit_notes: Decimal,
    /// What the platform owes the partner: `gross_list - platform_fee - credit_notes`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub net_payable: Decimal,
    /// Contract discounts the partner funded (agreed terms): part of
    /// `platform_fee`, so they lower `net_payable`.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub partner_funded_discounts: Decimal,
    /// Contract discounts the platform funded on the partner's lines: the
    /// partner is settled at list, so they change nothing above.
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub platform_funded_discounts: Decimal,
}

impl Figures {
    /// With the exponent of `currency`, as the API shows them.
    fn scale(&mut self, currency: Currency) {
        for figure in [
            &mut self.gross_list,
            &mut self.platform_fee,
            &mut self.credit_notes,
            &mut self.net_payable,
            &mut self.partner_funded_discounts,
            &mut self.platform_funded_discounts,
        ] {
            *figure = currency.scaled(*figure);
        }
    }

    fn add(&mut self, other: &Figures) -> Result<(), MoneyError> {
        self.gross_list = checked::add(self.gross_list, other.gross_list)?;
        self.platform_fee = checked::add(self.platform_fee, other.platform_fee)?;
        self.credit_notes = checked::add(self.credit_notes, other.credit_notes)?;
        self.net_payable = checked::add(self.net_payable, other.net_payable)?;
        self.partner_funded_discounts = checked::add(
            self.partner_funded_discounts,
            other.partner_funded_discounts,
        )?;
        self.platform_funded_discounts = checked::add(
            self.platform_funded_discounts,
            other.platform_funded_discounts,
        )?;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(as = SettlementKeyed)]
pub struct Keyed {
    pub id: String,
    #[serde(flatten)]
    pub figures: Figures,
}

/// A partner's statement in one currency.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CurrencySettlement {
    /// ISO 4217
    #[schema(value_type = String)]
    pub currency: Currency,
    #[serde(flatten)]
    pub totals: Figures,
    pub by_sku: Vec<Keyed>,
    pub by_account: Vec<Keyed>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Settlement {
    pub provider_id: String,
    pub provider_name: String,
    pub period: String,
    pub currencies: Vec<CurrencySettlement>,
}

/// Settlements of every partner (or one) for the invoices of `month`.
pub async fn settlements(
    conn: &mut PgConnection,
    month: Period,
    provider: Option<&str>,
) -> Result<Vec<Settlement>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH facts AS (
             -- The partner lines of the month's invoices (finalized; voided later or not).
             SELECT i.currency, l.provider_id, l.provider_name, l.sku_id, i.account_id,
                    l.list_amount AS gross_list, l.platform_fee, l.partner_net, 0::numeric AS back,
                    CASE WHEN l.discount_funded_by = 'partner' THEN l.discount ELSE 0 END AS by_partner,
                    CASE WHEN l.discount_funded_by = 'platform' THEN l.discount ELSE 0 END AS by_platform
             FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE i.status IN ('finalized', 'void') AND i.period_start >= $1 AND i.period_start < $2
               AND l.provider_kind = 'partner' AND ($3::text IS NULL OR l.provider_id = $3)
             UNION ALL
             -- Invoices voided in the month: their lines reversed.
             SELECT i.currency, l.provider_id, l.provider_name, l.sku_id, i.account_id,
                    -l.list_amount, -l.platform_fee, -l.partner_net, 0,
                    CASE WHEN l.discount_funded_by = 'partner' THEN -l.discount ELSE 0 END,
                    CASE WHEN l.discount_funded_by = 'platform' THEN -l.discount ELSE 0 END
             FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
             WHERE i.status = 'void' AND i.voided_at >= $1 AND i.voided_at < $2
               AND l.provider_kind = 'partner' AND ($3::text IS NULL OR l.provider_id = $3)
             UNION ALL
             -- Credit notes issued in the month: the partner's part given back.
             SELECT n.currency, c.provider_id, l.provider_name, c.sku_id, n.account_id,
                    0, 0, 0, c.partner_part, 0, 0
             FROM credit_note_lines c
             JOIN credit_notes n ON n.id = c.credit_note_id
             JOIN invoice_lines l ON l.invoice_id = c.invoice_id AND l.position = c.line_position
             WHERE n.created_at >= $1 AND n.created_at < $2
               AND l.provider_kind = 'partner' AND ($3::text IS NULL OR c.provider_id = $3))
         SELECT currency, provider_id, max(provider_name) AS provider_name, sku_id, account_id,
                sum(gross_list) AS gross_list, sum(platform_fee) AS platform_fee,
                sum(partner_net) AS partner_net, sum(back) AS back,
                sum(by_partner) AS by_partner, sum(by_platform) AS by_platform
         FROM facts
         GROUP BY currency, provider_id, sku_id, account_id
         ORDER BY provider_id, currency, sku_id, account_id",
    )
    .bind(month.start())
    .bind(month.end())
    .bind(provider)
    .fetch_all(conn)
    .await?;
    let mut out: Vec<Settlement> = Vec::new();
    for r in &rows {
        let provider_id: String = r.try_get("provider_id")?;
        let currency = currency_of(r, "currency")?;
        let back: Decimal = r.try_get("back")?;
        let net: Decimal = r.try_get("partner_net")?;
        let figures = Figures {
            gross_list: r.try_get("gross_list")?,
            platform_fee: r.try_get("platform_fee")?,
            credit_notes: back,
            net_payable: fits(checked::sub(net, back))?,
            partner_funded_discounts: r.try_get("by_partner")?,
            platform_funded_discounts: r.try_get("by_platform")?,
        };
        if out.last().is_none_or(|s| s.provider_id != provider_id) {
            out.push(Settlement {
                provider_id: provider_id.clone(),
                provider_name: r.try_get("provider_name")?,
                period: month.label(),
                currencies: Vec::new(),
            });
        }
        let Some(settlement) = out.last_mut() else {
            continue;
        };
        if settlement
            .currencies
            .last()
            .is_none_or(|c| c.currency != currency)
        {
            settlement.currencies.push(CurrencySettlement {
                currency,
                totals: Figures::default(),
                by_sku: Vec::new(),
                by_account: Vec::new(),
            });
        }
        let Some(c) = settlement.currencies.last_mut() else {
            continue;
        };
        fits(c.totals.add(&figures))?;
        fits(add_keyed(&mut c.by_sku, r.try_get("sku_id")?, &figures))?;
        fits(add_keyed(
            &mut c.by_account,
            r.try_get("account_id")?,
            &figures,
        ))?;
    }
    for s in &mut out {
        for c in &mut s.currencies {
            c.by_account.sort_by(|a, b| a.id.cmp(&b.id));
            c.totals.scale(c.currency);
            for k in c.by_sku.iter_mut().chain(&mut c.by_account) {
                k.figures.scale(c.currency);
            }
        }
    }
    Ok(out)
}

fn add_keyed(list: &mut Vec<Keyed>, id: String, figures: &Figures) -> Result<(), MoneyError> {
    match list.iter_mut().find(|k| k.id == id) {
        Some(k) => k.figures.add(figures)?,
        None => list.push(Keyed {
            id,
            figures: figures.clone(),
        }),
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SettlementQuery {
    /// Month whose periods' invoices count, as YYYY-MM
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: String,
    /// Only this partner
    provider: Option<String>,
}

/// `GET /v1/settlements?period=YYYY-MM[&provider=]`: finance sees every
/// partner, a provider only itself.
#[utoipa::path(
    get,
    path = "/v1/settlements",
    tag = "finance",
    summary = "Partner settlements of a month: gross usage at list price, platform fee, credit notes, net payable, per currency, SKU and account; the month's finalized invoices, less invoices voided and credit notes issued in the month (finance, admin: every partner or one; a provider: its own)",
    params(SettlementQuery),
    responses((status = 200, description = "The settlements", body = inline(crate::openapi::SettlementList))),
    security(("bearer" = [])),
)]
pub async fn get_settlements(
    Caller(caller): Caller,
    State(pool): State<PgPool>,
    query: Result<ApiQuery<SettlementQuery>, ApiError>,
) -> Result<Json<serde_json::Value>, ApiError> {
    // Who may ask at all, before what they asked is read.
    if let Principal::Customer(_) = caller {
        return Err(ApiError::Forbidden);
    }
    let ApiQuery(q) = query?;
    let provider = match caller {
        Principal::Admin | Principal::Finance => q.provider,
        Principal::Provider(own) => match q.provider {
            Some(asked) if asked != own.as_str() => return Err(ApiError::Forbidden),
            _ => Some(own.to_string()),
        },
        Principal::Customer(_) => return Err(ApiError::Forbidden),
    };
    let month = parse_period(&q.period)?;
    let mut conn = pool.acquire().await?;
    let data = settlements(&mut conn, month, provider.as_deref()).await?;
    Ok(Json(serde_json::json!({ "data": data })))
}

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
    /// Problems found: an invoice whose header disagrees with its lines or
    /// credits, a line whose split does not add up, a credit note whose
    /// total is not its lines', the credit ledger disagreeing with the
    /// credits the invoices apply.
    pub problems: Vec<String>,
}

impl CurrencyReconciliation {
    pub fn holds(&self) -> bool {
        self.difference.is_zero() && self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Reconciliation {
    pub period: String,
    /// Invoices of the month not finalized yet (left out of the figures).
    pub drafts: i64,
    pub currencies: Vec<CurrencyReconciliation>,
}

impl Reconciliation {
    pub fn holds(&self) -> bool {
        self.currencies.iter().all(CurrencyReconciliation::holds)
    }
}

/// The month's invoices (finalized, voided since or not), and the invoices
/// voided in the month (whatever their period): a query adds the first and
/// takes the second away.
const ISSUED: &str =
    "i.status IN ('finalized', 'void') AND i.period_start >= $1 AND i.period_start < $2";
const VOIDED: &str = "i.status = 'void' AND i.voided_at >= $1 AND i.voided_at < $2";

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
    let platform = per_currency(
        &mut *conn,
        month,
        "SELECT COALESCE(sum(l.markup + l.platform_fee), 0) FROM invoice_lines l WHERE l.invoice_id = i.id",
    )
    .await?;
    let credits = per_currency(
        &mut *conn,
        month,
        "SELECT COALESCE(sum(c.amount), 0) FROM invoice_credits c WHERE c.invoice_id = i.id",
    )
    .await?;
    for (currency, gross) in platform {
        entry(&mut by_currency, &currency).figures.platform_fees = gross;
    }
    for (currency, applied) in credits {
        entry(&mut by_currency, &currency).figures.credits_applied = applied;
    }
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
    Ok(Reconciliation {
        period: month.label(),
        drafts,
        currencies,
    })
}

/// One currency's figures of a month, as they are read.
#[derive(Default)]
struct Month {
    invoices: i64,
    figures: MonthFigures,
    problems: Vec<String>,
}

impl Month {
    /// The identity over the figures, amounts with the currency's exponent.
    fn view(self, currency: Currency) -> Result<CurrencyReconciliation, MoneyError> {
        let identity = self.figures.identity()?;
        let f = self.figures;
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
    period: String,
}

/// `GET /v1/reconciliation?period=YYYY-MM` (finance).
#[utoipa::path(
    get,
    path = "/v1/reconciliation",
    tag = "finance",
    summary = "The month's identity per currency: invoiced = platform revenue + partner settlements + credits applied (finance, admin)",
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

fn csv_response(name: &str, body: Vec<u8>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
}

fn csv_error(e: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    ApiError::Internal(anyhow::Error::new(e))
}

/// A finance export of a month as CSV: the rows of `sql` (bound to the
/// month's start and end), each written by `record` under `header`.
async fn month_csv(
    pool: &PgPool,
    period: &str,
    name: &str,
    sql: &str,
    header: &[&str],
    record: fn(&sqlx::postgres::PgRow) -> Result<Vec<String>, sqlx::Error>,
) -> Result<impl IntoResponse, ApiError> {
    let month = parse_period(period)?;
    let rows = sqlx::query(sql)
        .bind(month.start())
        .bind(month.end())
        .fetch_all(pool)
        .await?;
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header).map_err(csv_error)?;
    for r in &rows {
        w.write_record(record(r)?).map_err(csv_error)?;
    }
    let body = w.into_inner().map_err(|e| csv_error(e.into_error()))?;
    Ok(csv_response(&format!("{name}-{}.csv", month.label()), body))
}

fn timestamp(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    Ok(r.try_get::<Option<chrono::DateTime<chrono::Utc>>, _>(name)?
        .map(|t| t.to_rfc3339())
        .unwrap_or_default())
}

/// A text column, neutralised against formula injection
/// ([`tally_domain::spreadsheet`]): every text cell of an export, whoever
/// chose it (a partner's SKU name or unit, finance's void reason).
fn text(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    let value: Option<String> = r.try_get(name)?;
    Ok(value
        .map(|v| spreadsheet::text_cell(&v).into_owned())
        .unwrap_or_default())
}

fn decimal(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    Ok(r.try_get::<Option<Decimal>, _>(name)?
        .map(|d| d.to_string())
        .unwrap_or_default())
}

/// An amount (or a unit price) of the row's `currency`, with its exponent.
fn amount(r: &sqlx::postgres::PgRow, name: &str) -> Result<String, sqlx::Error> {
    let currency = currency_of(r, "currency")?;
    Ok(r.try_get::<Option<Decimal>, _>(name)?
        .map(|d| currency.scaled(d).to_string())
        .unwrap_or_default())
}

/// `GET /v1/exports/invoices.csv?period=YYYY-MM` (finance): one row per
/// invoice of the month, any status.
#[utoipa::path(
    get,
    path = "/v1/exports/invoices.csv",
    tag = "finance",
    summary = "CSV of the month's invoices, any status (finance, admin)",
    description = "Text cells are neutralised against formula injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`. Numbers Tally formats (amounts, quantities, unit prices) are never prefixed.",
    params(PeriodQuery),
    responses((status = 200, description = "invoice_id,number,account_id,period_start,period_end,status,currency,subtotal,credits_total,total,credit_notes,finalized_at,voided_at,void_reason", content_type = "text/csv", body = String)),
    security(("bearer" = [])),
)]
pub async fn export_invoices(
    _: Staff,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<impl IntoResponse, ApiError> {
    month_csv(
        &pool,
        &q.period,
        "invoices",
        "SELECT i.id, i.number, i.account_id, i.period_start, i.period_end, i.status, i.currency,
                i.subtotal, i.credits_total, i.total,
                COALESCE((SELECT sum(n.total) FROM credit_notes n WHERE n.invoice_id = i.id), 0) AS credit_notes,
                i.finalized_at, i.voided_at, i.void_reason
         FROM invoices i WHERE i.period_start >= $1 AND i.period_start < $2
         ORDER BY i.account_id, i.period_start",
        &[
            "invoice_id",
            "number",
            "account_id",
            "period_start",
            "period_end",
            "status",
            "currency",
            "subtotal",
            "credits_total",
            "total",
            "credit_notes",
            "finalized_at",
            "voided_at",
            "void_reason",
        ],
        |r| {
            Ok(vec![
                r.try_get::<uuid::Uuid, _>("id")?.to_string(),
                text(r, "number")?,
                text(r, "account_id")?,
                timestamp(r, "period_start")?,
                timestamp(r, "period_end")?,
                text(r, "status")?,
                currency_of(r, "currency")?.to_string(),
                amount(r, "subtotal")?,
                amount(r, "credits_total")?,
                amount(r, "total")?,
                amount(r, "credit_notes")?,
                timestamp(r, "finalized_at")?,
                timestamp(r, "voided_at")?,
                text(r, "void_reason")?,
            ])
        },
    )
    .await
}

/// `GET /v1/exports/invoice-lines.csv?period=YYYY-MM` (finance): every line
/// of the month's invoices with its split between platform and partner.
#[utoipa::path(
    get,
    path = "/v1/exports/invoice-lines.csv",
    tag = "finance",
    summary = "CSV of every line of the month's invoices with its platform/partner split (finance, admin)",
    description = "Text cells are neutralised against formula injection: a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`. Numbers Tally formats (amounts, quantities, unit prices) are never prefixed.",
    params(PeriodQuery),
    responses((status = 200, description = "invoice_id,number,account_id,status,currency,position,kind,provider_id,sku,description,quantity,unit,unit_price,amount,list_amount,markup,platform_fee,partner_net,discount,discount_funded_by,price_id,adjusts_period_start,binding_id,resource", content_type = "text/csv", body = String)),
    security(("bearer" = [])),
)]
pub async fn export_lines(
    _: Staff,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<PeriodQuery>,
) -> Result<impl IntoResponse, ApiError> {
    month_csv(
        &pool,
        &q.period,
        "invoice-lines",
        "SELECT i.id, i.number, i.account_id, i.status, l.currency, l.position, l.kind, l.provider_id,
                l.sku_id, l.description, l.quantity, l.unit, l.unit_price, l.amount, l.list_amount,
                l.markup, l.platform_fee, l.partner_net, l.discount, l.discount_funded_by,
                l.price_id, l.adjusts_period_start,
                l.binding_id, l.resource_name || ' · ' || l.resource_plan AS resource
         FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id
         WHERE i.period_start >= $1 AND i.period_start < $2
         ORDER BY i.account_id, i.period_start, l.position",
        &[
            "invoice_id",
            "number",
            "account_id",
            "status",
            "currency",
            "position",
            "kind",
            "provider_id",
            "sku",
            "description",
            "quantity",
            "unit",
            "unit_price",
            "amount",
            "list_amount",
            "markup",
            "platform_fee",
            "partner_net",
            "discount",
            "discount_funded_by",
            "price_id",
            "adjusts_period_start",
            "binding_id",
            "resource",
        ],
        |r| {
            Ok(vec![
                r.try_get::<uuid::Uuid, _>("id")?.to_string(),
                text(r, "number")?,
                text(r, "account_id")?,
                text(r, "status")?,
                currency_of(r, "currency")?.to_string(),
                r.try_get::<i32, _>("position")?.to_string(),
                text(r, "kind")?,
                text(r, "provider_id")?,
                text(r, "sku_id")?,
                text(r, "description")?,
                decimal(r, "quantity")?,
                text(r, "unit")?,
                amount(r, "unit_price")?,
                amount(r, "amount")?,
                amount(r, "list_amount")?,
                amount(r, "markup")?,
                amount(r, "platform_fee")?,
                amount(r, "partner_net")?,
                amount(r, "discount")?,
                text(r, "discount_funded_by")?,
                r.try_get::<i64, _>("price_id")?.to_string(),
                timestamp(r, "adjusts_period_start")?,
                text(r, "binding_id")?,
                text(r, "resource")?,
            ])
        },
    )
    .await
}

#[cfg(test)]
mod tests {
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
            currencies: vec![CurrencySettlement {
                currency: jpy,
                totals: figures.clone(),
                by_sku: vec![Keyed {
                    id: "dbco.db".into(),
                    figures: figures.clone(),
                }],
                by_account: vec![],
            }],
        };
        let figures = r#""gross_list":"1234","platform_fee":"247","credit_notes":"0","net_payable":"987","partner_funded_discounts":"0","platform_funded_discounts":"0""#;
        assert_eq!(
            serde_json::to_string(&settlement).unwrap(),
            format!(
                r#"{{"provider_id":"dbco","provider_name":"DB Co","period":"2026-11","currencies":[{{"currency":"JPY",{figures},"by_sku":[{{"id":"dbco.db",{figures}}}],"by_account":[]}}]}}"#
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
            problems: vec![],
        };
        assert_eq!(
            serde_json::to_string(&month.view(usd).unwrap()).unwrap(),
            concat!(
                r#"{"currency":"USD","invoices":2,"subtotals":"10.00","voided":"0.00","#,
                r#""credit_notes":"0.00","invoiced":"10.00","platform_revenue":"2.50","#,
                r#""partner_settlements":"7.50","credits_applied":"0.00","difference":"0.00","#,
                r#""problems":[]}"#
            )
        );
    }
}
