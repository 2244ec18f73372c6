//! Partner settlements, the reconciliation of a month, and the finance CSV
//! exports. A month holds the invoices of the periods that start in it once
//! they are finalized (drafts still change), and the corrections made in it:
//! invoices voided in the month (their whole invoice reversed) and credit
//! notes issued in it, whatever period they correct. A month that was
//! settled and paid out never changes afterwards; a later correction is
//! part of the month it is made in.

use axum::extract::State;
use axum::Json;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool, Row};
use tally_domain::composition::statement::SettlementMode;
use tally_domain::money::checked;
use tally_domain::{Currency, MoneyError, Period};
use tally_platform::auth::Principal;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::finance::invoices::parse_period;
use tally_invoicing::amounts::{currency_of, fits};

pub mod chains;
pub mod exports;
pub mod reconciliation;

pub use reconciliation::{reconcile, CurrencyReconciliation, PeriodQuery, Reconciliation};

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
    /// What the partner's own accounts' invoices of the month leave to pay
    /// after credits, counted as the month counts invoices (less voids and
    /// credit notes made in it; a provider that is also a customer, issue 17).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub own_invoices_due: Decimal,
    /// What the platform pays the partner for the month: `net_payable` when
    /// it is settled gross (it pays its own invoices separately);
    /// `net_payable - own_invoices_due` when it is settled net (negative:
    /// the partner pays the platform the difference).
    #[serde(with = "rust_decimal::serde::str")]
    #[schema(value_type = crate::openapi::Decimal)]
    pub paid: Decimal,
}

impl CurrencySettlement {
    /// A currency in which the partner sold nothing: every figure zero.
    pub(crate) fn without_sales(currency: Currency) -> Self {
        let mut totals = Figures::default();
        totals.scale(currency);
        CurrencySettlement {
            currency,
            totals,
            by_sku: Vec::new(),
            by_account: Vec::new(),
            own_invoices_due: currency.scaled(Decimal::ZERO),
            paid: currency.scaled(Decimal::ZERO),
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Settlement {
    pub provider_id: String,
    pub provider_name: String,
    pub period: String,
    /// `gross` or `net`: how the platform settles with the partner
    #[schema(value_type = String, pattern = "^(gross|net)$")]
    pub settlement_mode: SettlementMode,
    pub currencies: Vec<CurrencySettlement>,
}

impl Settlement {
    /// A partner's settlement of `month` before its currencies: one that
    /// sold nothing in it.
    pub(crate) fn without_sales(id: &str, name: &str, month: Period) -> Self {
        Settlement {
            provider_id: id.to_owned(),
            provider_name: name.to_owned(),
            period: month.label(),
            settlement_mode: SettlementMode::default(),
            currencies: Vec::new(),
        }
    }
}

/// Settlements of every partner (or one) for the invoices of `month`; a
/// partner settled net with own invoices in the month is listed though it
/// sold nothing ([`crate::composition::statement::apply_modes`]).
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
    .fetch_all(&mut *conn)
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
            let name: String = r.try_get("provider_name")?;
            out.push(Settlement::without_sales(&provider_id, &name, month));
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
                own_invoices_due: Decimal::ZERO,
                paid: Decimal::ZERO,
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
    crate::composition::statement::apply_modes(conn, month, provider, &mut out).await?;
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
