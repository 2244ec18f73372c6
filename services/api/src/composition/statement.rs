//! A composing provider's statements (`/v1/provider/statements…`, issue 17
//! item 4), per month and currency: what its consumers owe it less the
//! platform fee (its settlement, as `GET /v1/settlements` shows it), what
//! it owes its upstream providers (its own accounts' invoices of the month,
//! counted as settlements count a month: their subtotal, the credits that
//! paid part of them, what is due), and the net of the two, paid gross or net as the platform set for
//! it ([`tally_domain::composition::statement`]). A provider reads its own
//! statements only.

use axum::extract::State;
use axum::Json;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use tally_domain::composition::statement::{settle, Payer, SettlementMode};
use tally_domain::{Currency, MoneyError, Period, ProviderId};
use tally_invoicing::amounts::{fits, parse_stored};

use crate::auth::ProviderCaller;
use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::finance::invoices::parse_period;
use crate::finance::settlement::reconciliation::{ISSUED, VOIDED};
use crate::finance::settlement::{settlements, CurrencySettlement, Settlement};

/// At most this many months are listed, newest first.
const MONTHS: i64 = 24;

/// A provider's own accounts' invoices of a month, in one currency, as a
/// month counts them for settlements: the finalized invoices of the
/// periods starting in it (voided since or not), less those voided in the
/// month and the credit notes issued in it (whatever period they correct),
/// so that a month settled and paid out never changes afterwards.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnInvoices {
    /// The month's finalized invoices (voided since or not).
    pub invoices: i64,
    /// Their subtotals (before credits), less voided subtotals and credit
    /// notes.
    pub invoiced: Decimal,
    /// The credits applied on them, less those of voided invoices.
    pub credits_applied: Decimal,
    /// What is left to pay: `invoiced - credits_applied`.
    pub due: Decimal,
}

/// The own invoices ([`OwnInvoices`]) of `month` of each provider (or of
/// `provider`), by (provider, currency code).
pub async fn own_invoices(
    conn: &mut PgConnection,
    month: Period,
    provider: Option<&str>,
) -> Result<BTreeMap<(String, String), OwnInvoices>, sqlx::Error> {
    let owned =
        "a.owner_provider_id IS NOT NULL AND ($3::text IS NULL OR a.owner_provider_id = $3)";
    let rows: Vec<(String, String, i64, Decimal, Decimal, Decimal)> = sqlx::query_as(&format!(
        "SELECT owner, currency, sum(n)::bigint, sum(subtotal), sum(credits), sum(total) FROM (
             SELECT a.owner_provider_id AS owner, i.currency, 1 AS n,
                    i.subtotal, i.credits_total AS credits, i.total
             FROM invoices i JOIN accounts a ON a.id = i.account_id WHERE {owned} AND {ISSUED}
             UNION ALL
             SELECT a.owner_provider_id, i.currency, 0, -i.subtotal, -i.credits_total, -i.total
             FROM invoices i JOIN accounts a ON a.id = i.account_id WHERE {owned} AND {VOIDED}
             UNION ALL
             SELECT a.owner_provider_id, n.currency, 0, -n.total, 0, -n.total
             FROM credit_notes n JOIN accounts a ON a.id = n.account_id
             WHERE {owned} AND n.created_at >= $1 AND n.created_at < $2
         ) t GROUP BY owner, currency"
    ))
    .bind(month.start())
    .bind(month.end())
    .bind(provider)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(p, c, invoices, invoiced, credits_applied, due)| {
            let own = OwnInvoices {
                invoices,
                invoiced,
                credits_applied,
                due,
            };
            ((p, c), own)
        })
        .collect())
}

/// A provider as the platform settles with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settling {
    pub name: String,
    /// A partner (a first-party provider is never settled).
    pub partner: bool,
    pub mode: SettlementMode,
}

/// Each provider's settlement mode (or `provider`'s), with its name and kind.
pub async fn settlement_modes(
    conn: &mut PgConnection,
    provider: Option<&str>,
) -> Result<BTreeMap<String, Settling>, sqlx::Error> {
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT id, name, kind, settlement_mode FROM providers WHERE $1::text IS NULL OR id = $1",
    )
    .bind(provider)
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|(id, name, kind, mode)| {
            let mode =
                SettlementMode::parse(&mode).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
            let partner = kind == "partner";
            Ok((
                id,
                Settling {
                    name,
                    partner,
                    mode,
                },
            ))
        })
        .collect()
}

/// Sets each settlement's mode, and per currency its provider's own
/// invoices due and what is paid for it ([`Settlement`]): the net payable
/// in gross mode, less the due in net mode. A partner settled net that
/// sold nothing in the month (or in one of its currencies) but has own
/// invoices counted in it is settled too: a settlement of zero netted
/// against them, so finance sees what it owes (`paid` negative). Settled
/// gross, such a provider pays its invoices as any customer does: no
/// settlement. Settlements stay in provider order, currencies in code
/// order.
pub async fn apply_modes(
    conn: &mut PgConnection,
    month: Period,
    provider: Option<&str>,
    settlements: &mut Vec<Settlement>,
) -> Result<(), sqlx::Error> {
    let modes = settlement_modes(&mut *conn, provider).await?;
    let own = own_invoices(&mut *conn, month, provider).await?;
    for (id, code) in own.keys() {
        let Some(p) = modes
            .get(id)
            .filter(|p| p.partner && p.mode == SettlementMode::Net)
        else {
            continue;
        };
        let currency = parse_stored("currency", code)?;
        let index = match settlements.iter().position(|s| s.provider_id == *id) {
            Some(index) => index,
            None => {
                settlements.push(Settlement::without_sales(id, &p.name, month));
                settlements.len() - 1
            }
        };
        let s = &mut settlements[index];
        if !s.currencies.iter().any(|c| c.currency == currency) {
            s.currencies
                .push(CurrencySettlement::without_sales(currency));
        }
    }
    settlements.sort_by(|a, b| a.provider_id.cmp(&b.provider_id));
    for s in settlements {
        s.currencies
            .sort_by(|a, b| a.currency.code().cmp(b.currency.code()));
        let mode = modes
            .get(&s.provider_id)
            .map(|p| p.mode)
            .unwrap_or_default();
        s.settlement_mode = mode;
        for c in &mut s.currencies {
            let due = own
                .get(&(s.provider_id.clone(), c.currency.code().to_owned()))
                .map_or(Decimal::ZERO, |o| o.due);
            c.own_invoices_due = c.currency.scaled(due);
            let settled = fits(settle(mode, c.totals.net_payable, due))?;
            c.paid = c.currency.scaled(settled.paid);
        }
    }
    Ok(())
}

/// One payment of the month between the platform and the provider.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    /// `platform` (the platform pays the provider) or `provider` (the
    /// provider pays the platform)
    #[schema(value_type = String, pattern = "^(platform|provider)$")]
    pub payer: Payer,
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub amount: Decimal,
}

/// A provider's statement in one currency.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CurrencyStatement {
    /// ISO 4217
    #[schema(value_type = String)]
    pub currency: Currency,
    /// What its consumers owe for its SKUs, at its list price (its
    /// settlement's `gross_list`)
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub consumers_owe: Decimal,
    /// The platform's fee on it
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub platform_fee: Decimal,
    /// Its share given back by credit notes issued in the month
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub credit_notes: Decimal,
    /// What the platform owes it: its settlement's `net_payable`
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub settlement: Decimal,
    /// Its own accounts' finalized invoices of the month's periods (what it
    /// owes its upstream providers, through the platform)
    pub own_invoices: i64,
    /// Their subtotals, less those of its invoices voided in the month
    /// and its credit notes issued in it
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub invoiced: Decimal,
    /// The credits that paid part of them
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub credits_applied: Decimal,
    /// What is left to pay of them: `invoiced - credits_applied`
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub due: Decimal,
    /// `settlement - due`: positive when the platform owes the provider
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub net: Decimal,
    /// How it is paid: gross, the settlement to the provider and the due
    /// to the platform; net, one payment of `net` in the direction it
    /// falls. Payments of zero are left out.
    pub payments: Vec<PaymentView>,
}

/// A provider's statement of a month.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProviderStatement {
    /// The month, YYYY-MM
    pub period: String,
    pub provider_id: String,
    /// `gross` or `net`, as the platform set it for the provider
    #[schema(value_type = String, pattern = "^(gross|net)$")]
    pub settlement_mode: SettlementMode,
    pub currencies: Vec<CurrencyStatement>,
}

/// The statement of `provider` for `month`.
pub async fn statement(
    conn: &mut PgConnection,
    provider: &ProviderId,
    month: Period,
) -> Result<ProviderStatement, sqlx::Error> {
    let id = provider.as_str();
    let mode = settlement_modes(&mut *conn, Some(id))
        .await?
        .remove(id)
        .map(|p| p.mode)
        .unwrap_or_default();
    let own = own_invoices(&mut *conn, month, Some(id)).await?;
    let sold = settlements(&mut *conn, month, Some(id)).await?;
    let mut by: BTreeMap<String, CurrencyStatement> = BTreeMap::new();
    for c in sold.iter().flat_map(|s| &s.currencies) {
        let entry = by
            .entry(c.currency.code().to_owned())
            .or_insert_with(|| empty(c.currency));
        entry.consumers_owe = c.totals.gross_list;
        entry.platform_fee = c.totals.platform_fee;
        entry.credit_notes = c.totals.credit_notes;
        entry.settlement = c.totals.net_payable;
    }
    for ((_, code), o) in own {
        let currency = parse_stored("currency", &code)?;
        let entry = by.entry(code).or_insert_with(|| empty(currency));
        entry.own_invoices = o.invoices;
        entry.invoiced = currency.scaled(o.invoiced);
        entry.credits_applied = currency.scaled(o.credits_applied);
        entry.due = currency.scaled(o.due);
    }
    let mut currencies = Vec::with_capacity(by.len());
    for mut c in by.into_values() {
        fits(net(&mut c, mode))?;
        currencies.push(c);
    }
    Ok(ProviderStatement {
        period: month.label(),
        provider_id: id.to_owned(),
        settlement_mode: mode,
        currencies,
    })
}

fn empty(currency: Currency) -> CurrencyStatement {
    let zero = currency.scaled(Decimal::ZERO);
    CurrencyStatement {
        currency,
        consumers_owe: zero,
        platform_fee: zero,
        credit_notes: zero,
        settlement: zero,
        own_invoices: 0,
        invoiced: zero,
        credits_applied: zero,
        due: zero,
        net: zero,
        payments: Vec::new(),
    }
}

fn net(c: &mut CurrencyStatement, mode: SettlementMode) -> Result<(), MoneyError> {
    let settled = settle(mode, c.settlement, c.due)?;
    c.net = c.currency.scaled(settled.net);
    c.payments = settled
        .payments
        .into_iter()
        .map(|p| PaymentView {
            payer: p.payer,
            amount: c.currency.scaled(p.amount),
        })
        .collect();
    Ok(())
}

/// The months, newest first, in which `provider` has lines or its own
/// accounts have invoices, finalized (voided since or not).
async fn months(
    conn: &mut PgConnection,
    provider: &ProviderId,
) -> Result<Vec<Period>, sqlx::Error> {
    let starts: Vec<(String,)> = sqlx::query_as(
        "SELECT DISTINCT to_char(i.period_start AT TIME ZONE 'UTC', 'YYYY-MM') AS month
         FROM invoices i
         WHERE i.status IN ('finalized', 'void')
           AND (EXISTS (SELECT 1 FROM invoice_lines l WHERE l.invoice_id = i.id AND l.provider_id = $1)
                OR EXISTS (SELECT 1 FROM accounts a WHERE a.id = i.account_id AND a.owner_provider_id = $1))
         ORDER BY month DESC LIMIT $2",
    )
    .bind(provider.as_str())
    .bind(MONTHS)
    .fetch_all(conn)
    .await?;
    starts
        .into_iter()
        .map(|(m,)| Period::parse_month(&m).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .collect()
}

/// The statements of a provider, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatementList {
    data: Vec<ProviderStatement>,
}

#[utoipa::path(
    get,
    path = "/v1/provider/statements",
    tag = "provider",
    summary = "The caller's statements, newest month first (at most 24): its settlement, its own invoices and the net of the two, paid gross or net",
    responses((status = 200, description = "Its statements", body = StatementList)),
    security(("bearer" = [])),
)]
pub async fn list_statements(
    ProviderCaller(provider): ProviderCaller,
    State(pool): State<PgPool>,
) -> Result<Json<StatementList>, ApiError> {
    let mut conn = pool.acquire().await?;
    let mut data = Vec::new();
    for month in months(&mut conn, &provider).await? {
        data.push(statement(&mut conn, &provider, month).await?);
    }
    Ok(Json(StatementList { data }))
}

#[utoipa::path(
    get,
    path = "/v1/provider/statements/{period}",
    tag = "provider",
    summary = "The caller's statement of a month: what its consumers owe it less the platform fee, its own invoices (credits applied, due) and the net, paid gross or net",
    params(("period" = String, Path, description = "The month, as YYYY-MM", pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")),
    responses((status = 200, description = "The statement", body = ProviderStatement)),
    security(("bearer" = [])),
)]
pub async fn get_statement(
    ProviderCaller(provider): ProviderCaller,
    State(pool): State<PgPool>,
    ApiPath(period): ApiPath<String>,
) -> Result<Json<ProviderStatement>, ApiError> {
    let month = parse_period(&period)?;
    let mut conn = pool.acquire().await?;
    Ok(Json(statement(&mut conn, &provider, month).await?))
}
