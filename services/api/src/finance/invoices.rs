//! Finance API (`/v1/invoices`).

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tally_domain::{InvoiceStatus, Period};
use uuid::Uuid;

use crate::auth::Staff;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::openapi;
use tally_invoicing::invoices_repo::{self, Invoice, InvoiceFilter, InvoiceSummary};

pub fn parse_period(raw: &str) -> Result<Period, ApiError> {
    Period::parse_month(raw).map_err(|e| ApiError::InvalidPeriod(e.to_string()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Account id
    account: Option<String>,
    /// Invoices of the periods starting in this month, as YYYY-MM
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    period: Option<String>,
    /// draft, finalized or void
    #[param(schema_with = openapi::invoice_status)]
    status: Option<String>,
    /// 1 to 500 (default 50)
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<i64>,
    /// The previous page's next_cursor
    #[param(format = Uuid)]
    cursor: Option<String>,
}

/// One page of a list; `next_cursor` fetches the next (absent on the last).
#[derive(Debug, Serialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/invoices",
    tag = "finance",
    summary = "List invoices (finance, admin)",
    params(ListQuery),
    responses((status = 200, description = "A page of invoices in id order", body = inline(openapi::InvoicePage))),
    security(("bearer" = [])),
)]
pub async fn list_invoices(
    _: Staff,
    State(pool): State<PgPool>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Page<InvoiceSummary>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::InvalidRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    let status = q
        .status
        .as_deref()
        .map(InvoiceStatus::parse)
        .transpose()
        .map_err(|_| ApiError::InvalidRequest("status must be draft, finalized or void".into()))?;
    let after = q
        .cursor
        .as_deref()
        .map(|c| Uuid::parse_str(c).map_err(|_| ApiError::InvalidRequest("bad cursor".into())))
        .transpose()?;
    let filter = InvoiceFilter {
        account: q.account,
        month: q.period.as_deref().map(parse_period).transpose()?,
        status,
        after,
        limit,
    };
    let mut conn = pool.acquire().await?;
    let data = invoices_repo::list_invoices(&mut conn, &filter).await?;
    let next_cursor = (data.len() as i64 == limit)
        .then(|| data.last().map(|i| i.id.to_string()))
        .flatten();
    Ok(Json(Page { data, next_cursor }))
}

#[utoipa::path(
    get,
    path = "/v1/invoices/{id}",
    tag = "finance",
    summary = "One invoice (finance, admin)",
    params(("id" = String, Path, description = "Invoice id", format = Uuid)),
    responses((status = 200, description = "The invoice", body = inline(openapi::InvoiceRef))),
    security(("bearer" = [])),
)]
pub async fn get_invoice(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Invoice>, ApiError> {
    let not_found = || ApiError::NotFound(format!("invoice {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    invoices_repo::get_invoice(&mut conn, uuid)
        .await?
        .map(Json)
        .ok_or_else(not_found)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use rust_decimal_macros::dec;
    use tally_domain::Currency;
    use tally_invoicing::invoices_repo::{LineView, PeriodView, ProviderView, Section};

    /// A finalized November invoice of acme in `currency`: one DB Co line,
    /// 3 hours at 0.5 (1.5, of which the partner nets 1.2).
    pub(crate) fn sample(currency: Currency) -> Invoice {
        let at = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 0, 0, 0).unwrap();
        Invoice {
            summary: InvoiceSummary {
                id: Uuid::nil(),
                number: Some("TLY-2026-000001".into()),
                account_id: "acme".into(),
                period: PeriodView {
                    start: at(1),
                    end: Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
                    label: "2026-11".into(),
                },
                status: InvoiceStatus::Finalized,
                currency,
                statement_version: 3,
                subtotal: currency.scaled(dec!(1.5)),
                credits_total: currency.scaled(dec!(0)),
                total: currency.scaled(dec!(1.5)),
                created_at: at(2),
                updated_at: at(3),
                finalized_at: Some(at(3)),
                voided_at: None,
                void_reason: None,
            },
            sections: vec![Section {
                provider: ProviderView {
                    id: "dbco".into(),
                    name: "DB Co".into(),
                    kind: "partner".into(),
                },
                lines: vec![LineView {
                    kind: "usage".into(),
                    sku: "dbco.db".into(),
                    price_id: 7,
                    description: "DB".into(),
                    unit: "hour".into(),
                    quantity: dec!(3),
                    unit_price: Some(currency.scaled(dec!(0.5))),
                    amount: currency.scaled(dec!(1.5)),
                    list_amount: currency.scaled(dec!(1.5)),
                    markup: currency.scaled(dec!(0)),
                    platform_fee: currency.scaled(dec!(0.3)),
                    partner_net: currency.scaled(dec!(1.2)),
                    discount: currency.scaled(dec!(0)),
                    discount_funded_by: None,
                    price_effective_from: at(1),
                    event_count: 2,
                    adjusts: None,
                    resource: None,
                }],
                subtotal: currency.scaled(dec!(1.5)),
            }],
            credits: vec![],
        }
    }

    #[test]
    fn an_invoice_serializes_its_currency_as_the_code_and_amounts_with_its_exponent() {
        let invoice = sample(Currency::parse("BHD").unwrap());
        assert_eq!(
            serde_json::to_string(&invoice).unwrap(),
            concat!(
                r#"{"id":"00000000-0000-0000-0000-000000000000","number":"TLY-2026-000001","#,
                r#""account_id":"acme","period":{"start":"2026-11-01T00:00:00Z","#,
                r#""end":"2026-12-01T00:00:00Z","label":"2026-11"},"status":"finalized","#,
                r#""currency":"BHD","statement_version":3,"subtotal":"1.500","#,
                r#""credits_total":"0.000","total":"1.500","created_at":"2026-11-02T00:00:00Z","#,
                r#""updated_at":"2026-11-03T00:00:00Z","finalized_at":"2026-11-03T00:00:00Z","#,
                r#""sections":[{"provider":{"id":"dbco","name":"DB Co","kind":"partner"},"#,
                r#""lines":[{"kind":"usage","sku":"dbco.db","price_id":7,"description":"DB","#,
                r#""unit":"hour","quantity":"3","unit_price":"0.500","amount":"1.500","#,
                r#""list_amount":"1.500","markup":"0.000","platform_fee":"0.300","#,
                r#""partner_net":"1.200","discount":"0.000","#,
                r#""price_effective_from":"2026-11-01T00:00:00Z","#,
                r#""event_count":2}],"subtotal":"1.500"}],"credits":[]}"#
            )
        );
    }
}
