//! The audit trail of providers' usage corrections (cancels, amendments,
//! backfills; asked for at the collector, applied or refused by rating):
//! a provider reads its own (`GET /v1/provider/corrections`), finance those
//! of an invoice's period (`GET /v1/invoices/{id}/usage-corrections`): who
//! asked, when, why, and each event's values before and after.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::auth::{ProviderCaller, Staff};
use crate::error::ApiError;
use crate::extract::ApiPath;

/// At most this many corrections in a provider's list (the newest).
pub const PROVIDER_LIST_MAX: i64 = 1000;

/// One event a correction changed.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageCorrectionChange {
    pub event_id: String,
    /// `cancelled` (no longer counts), `amended` (counts with new values),
    /// `added` (a backfill's new event)
    #[schema(schema_with = change_kind)]
    pub change: String,
    /// The event's values before (`sku`, `quantity`, `time`, `dimensions`,
    /// `resource`); absent for an added event
    #[schema(value_type = Option<Object>)]
    pub previous: Option<Value>,
    /// Its values after; absent for a cancelled event
    #[schema(value_type = Option<Object>)]
    pub current: Option<Value>,
    /// The start of the period whose usage changed
    pub period_start: DateTime<Utc>,
    /// The start of the period whose invoice bills the change: the period
    /// itself while open, else the account's next open period (an
    /// adjustment line naming the sealed period)
    pub billed_in: DateTime<Utc>,
}

/// A usage correction as rating applied (or refused) it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageCorrection {
    pub id: Uuid,
    /// `cancel`, `amend` or `backfill`
    #[schema(schema_with = correction_kind)]
    pub kind: String,
    pub provider_id: String,
    pub account_id: String,
    /// The event cancelled or amended (not for a backfill)
    pub event_id: Option<String>,
    /// A backfill's window, `[start, end)`
    pub window_start: Option<DateTime<Utc>>,
    pub window_end: Option<DateTime<Utc>>,
    pub reason: String,
    /// Who asked: the id of the provider's API key
    pub requested_by: String,
    /// When the collector accepted it
    pub requested_at: DateTime<Utc>,
    /// When rating applied or refused it
    pub applied_at: DateTime<Utc>,
    /// `applied` or `refused`
    #[schema(schema_with = correction_status)]
    pub status: String,
    /// Why it was refused (`unknown_event`, `already_cancelled`,
    /// `event_id_taken`, `no_price`, `values_unknown`, …)
    pub code: Option<String>,
    /// What it changed, by event id
    pub changes: Vec<UsageCorrectionChange>,
}

fn enumeration(values: &[&str]) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::openapi::schema(serde_json::json!({"type": "string", "enum": values}))
}

fn change_kind() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    enumeration(&["cancelled", "amended", "added"])
}

fn correction_kind() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    enumeration(&["cancel", "amend", "backfill"])
}

fn correction_status() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    enumeration(&["applied", "refused"])
}

/// A list of usage corrections.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageCorrectionList {
    pub data: Vec<UsageCorrection>,
}

/// These corrections, in this order, with their changes.
async fn load(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<UsageCorrection>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.id, c.kind, c.provider_id, c.account_id, c.event_id, c.window_start,
                c.window_end, c.reason, c.requested_by, c.requested_at, c.applied_at, c.status,
                c.code
         FROM UNNEST($1::uuid[]) WITH ORDINALITY AS k(id, n)
         JOIN usage_corrections c ON c.id = k.id
         ORDER BY k.n",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.push(UsageCorrection {
            id: r.try_get(0)?,
            kind: r.try_get(1)?,
            provider_id: r.try_get(2)?,
            account_id: r.try_get(3)?,
            event_id: r.try_get(4)?,
            window_start: r.try_get(5)?,
            window_end: r.try_get(6)?,
            reason: r.try_get(7)?,
            requested_by: r.try_get(8)?,
            requested_at: r.try_get(9)?,
            applied_at: r.try_get(10)?,
            status: r.try_get(11)?,
            code: r.try_get(12)?,
            changes: Vec::new(),
        });
    }
    let changes = sqlx::query(
        "SELECT correction_id, event_id, change, previous, current, period_start, billed_in
         FROM usage_correction_changes WHERE correction_id = ANY($1)
         ORDER BY correction_id, event_id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    for r in &changes {
        let id: Uuid = r.try_get(0)?;
        if let Some(c) = out.iter_mut().find(|c| c.id == id) {
            c.changes.push(UsageCorrectionChange {
                event_id: r.try_get(1)?,
                change: r.try_get(2)?,
                previous: r.try_get(3)?,
                current: r.try_get(4)?,
                period_start: r.try_get(5)?,
                billed_in: r.try_get(6)?,
            });
        }
    }
    Ok(out)
}

#[utoipa::path(
    get,
    path = "/v1/provider/corrections",
    tag = "provider",
    summary = "The calling provider's usage corrections, newest first (at most 1,000): applied or refused, with each event's values before and after",
    description = "Corrections are asked for at the collector (`POST /v1/events/{id}/cancel`, `POST /v1/events/{id}/amend`, `POST /v1/backfills`) and listed here once rating applied them, in order with the account's usage; one rating could not apply is listed `refused` with its `code`.",
    responses((status = 200, description = "Corrections", body = UsageCorrectionList)),
    security(("bearer" = [])),
)]
pub async fn provider_corrections(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
) -> Result<Json<UsageCorrectionList>, ApiError> {
    let mut conn = pool.acquire().await?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM usage_corrections WHERE provider_id = $1
         ORDER BY requested_at DESC, id DESC LIMIT $2",
    )
    .bind(me.as_str())
    .bind(PROVIDER_LIST_MAX)
    .fetch_all(&mut *conn)
    .await?;
    let data = load(&mut conn, &ids).await?;
    Ok(Json(UsageCorrectionList { data }))
}

#[utoipa::path(
    get,
    path = "/v1/invoices/{id}/usage-corrections",
    tag = "finance",
    summary = "Every usage correction of an invoice's period (finance, admin): those that changed its usage, and those it bills as adjustments of sealed periods; who asked, when, why, and each event's values before and after",
    params(("id" = String, Path, description = "Invoice id", format = Uuid)),
    responses((status = 200, description = "Corrections, newest first", body = UsageCorrectionList)),
    security(("bearer" = [])),
)]
pub async fn invoice_corrections(
    _: Staff,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<UsageCorrectionList>, ApiError> {
    let not_found = || ApiError::NotFound(format!("invoice {id}"));
    let uuid = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let mut conn = pool.acquire().await?;
    let invoice: Option<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT account_id, period_start FROM invoices WHERE id = $1")
            .bind(uuid)
            .fetch_optional(&mut *conn)
            .await?;
    let (account, start) = invoice.ok_or_else(not_found)?;
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT c.id FROM usage_corrections c
         WHERE c.account_id = $1 AND EXISTS (SELECT 1 FROM usage_correction_changes ch
             WHERE ch.correction_id = c.id AND (ch.period_start = $2 OR ch.billed_in = $2))
         ORDER BY c.requested_at DESC, c.id DESC",
    )
    .bind(&account)
    .bind(start)
    .fetch_all(&mut *conn)
    .await?;
    let data = load(&mut conn, &ids).await?;
    Ok(Json(UsageCorrectionList { data }))
}
