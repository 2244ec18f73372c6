//! SQL of usage corrections: the values of each counted event
//! (`counted_events`), taking events back out of their aggregates, and the
//! audit trail (`usage_corrections`, `usage_correction_changes`). Every
//! function takes the caller's transaction.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tally_domain::{Period, UsageEvent};

use crate::repo::{AggregateKey, HourKey};

/// One counted event's values, where its aggregates count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedEvent {
    pub provider_id: String,
    pub event_id: String,
    pub account_id: String,
    pub sku: String,
    pub price_id: i64,
    /// The binding it names; `""` for none.
    pub binding_id: String,
    /// The period whose aggregates count it (its own, also when late).
    pub period: Period,
    pub time: DateTime<Utc>,
    pub quantity: Decimal,
    pub dimensions: BTreeMap<String, String>,
    /// The consumer reference it was done on behalf of; `""` for none.
    pub on_behalf_of: String,
}

/// The values of an event as the audit trail shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventValues<'a> {
    pub sku: &'a str,
    #[serde(with = "rust_decimal::serde::str")]
    pub quantity: Decimal,
    pub time: DateTime<Utc>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: &'a BTreeMap<String, String>,
    #[serde(skip_serializing_if = "str::is_empty")]
    pub resource: &'a str,
}

impl CountedEvent {
    pub fn of(event: &UsageEvent, price_id: i64, period: Period) -> Self {
        CountedEvent {
            provider_id: event.provider_id.to_string(),
            event_id: event.event_id.to_string(),
            account_id: event.account_id.to_string(),
            sku: event.sku.to_string(),
            price_id,
            binding_id: event
                .resource
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
            period,
            time: event.time,
            quantity: event.quantity.value(),
            dimensions: event.dimensions.clone(),
            on_behalf_of: event
                .on_behalf_of
                .as_ref()
                .map_or_else(String::new, ToString::to_string),
        }
    }

    /// Its aggregate's key.
    pub fn aggregate(&self) -> AggregateKey {
        (
            self.account_id.clone(),
            self.period.start(),
            self.price_id,
            self.binding_id.clone(),
        )
    }

    pub fn values(&self) -> EventValues<'_> {
        EventValues {
            sku: &self.sku,
            quantity: self.quantity,
            time: self.time,
            dimensions: &self.dimensions,
            resource: &self.binding_id,
        }
    }
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// Counts events not counted before: stores the values of those of
/// `events` whose (provider, event id) `counted_events` does not hold yet
/// and returns their keys; the others are duplicates, whatever their
/// `time` (a careless client resending an id with another `time` is still
/// counted once). `counted_events` is the dedupe set: its key is (provider,
/// event id), and `ON CONFLICT DO NOTHING` makes a concurrent transaction
/// counting the same event wait for this one and then drop it. With
/// `legacy` (`processed_events` still holds ids, recorded before rating
/// counted by `counted_events` alone), an id found there is a duplicate
/// too: one index probe per partition, a `LATERAL … LIMIT 1` so that
/// PostgreSQL looks each id up rather than hash-joining the batch against
/// the table. The events go in (provider, event id) order, so that
/// concurrent transactions lock rows in one order.
pub async fn count_new(
    conn: &mut PgConnection,
    mut events: Vec<CountedEvent>,
    legacy: bool,
) -> Result<HashSet<(String, String)>, sqlx::Error> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    // Stable: of two values under one id, the first given is stored.
    events.sort_by(|a, b| (&a.provider_id, &a.event_id).cmp(&(&b.provider_id, &b.event_id)));
    let seen_before = if legacy {
        "LEFT JOIN LATERAL (
             SELECT true AS seen FROM processed_events pe
             WHERE pe.provider_id = v.p AND pe.event_id = v.e
             LIMIT 1) l ON true
         WHERE l.seen IS NULL"
    } else {
        ""
    };
    let rows = bind_values(
        sqlx::query(&format!(
            "{INSERT_VALUES} {seen_before}
             ON CONFLICT (provider_id, event_id) DO NOTHING
             RETURNING provider_id, event_id"
        )),
        &events,
    )?
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| Ok((r.try_get("provider_id")?, r.try_get("event_id")?)))
        .collect()
}

/// Stores counted events' values over those of the same ids (a
/// correction's amendment, or a backfill's replacement that reuses an id it
/// replaces, counts again with its new values).
pub async fn store_counted(
    conn: &mut PgConnection,
    events: &[CountedEvent],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    bind_values(
        sqlx::query(&format!(
            "{INSERT_VALUES}
             ON CONFLICT (provider_id, event_id) DO UPDATE
             SET account_id = EXCLUDED.account_id, sku_id = EXCLUDED.sku_id,
                 price_id = EXCLUDED.price_id, binding_id = EXCLUDED.binding_id,
                 period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end,
                 event_time = EXCLUDED.event_time, quantity = EXCLUDED.quantity,
                 dimensions = EXCLUDED.dimensions, on_behalf_of = EXCLUDED.on_behalf_of,
                 cancelled_by = NULL"
        )),
        events,
    )?
    .execute(conn)
    .await?;
    Ok(())
}

/// Counted events' values as one `INSERT … SELECT` from `UNNEST` (aliased
/// `v`), bound by [`bind_values`]; the caller adds its conflict clause.
const INSERT_VALUES: &str =
    "INSERT INTO counted_events (provider_id, event_id, account_id, sku_id, price_id, binding_id,
         period_start, period_end, event_time, quantity, dimensions, on_behalf_of)
     SELECT v.p, v.e, v.a, v.s, v.pr, v.b, v.ps, v.pe, v.t, v.q, v.d::jsonb, v.o
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
         $7::timestamptz[], $8::timestamptz[], $9::timestamptz[], $10::numeric[], $11::text[],
         $12::text[])
         AS v(p, e, a, s, pr, b, ps, pe, t, q, d, o)";

fn bind_values<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    events: &'q [CountedEvent],
) -> Result<sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>, sqlx::Error> {
    let col = |f: fn(&CountedEvent) -> &str| events.iter().map(f).collect::<Vec<&str>>();
    let dimensions = events
        .iter()
        .map(|e| serde_json::to_string(&e.dimensions).map_err(decode_err))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(query
        .bind(col(|e| &e.provider_id))
        .bind(col(|e| &e.event_id))
        .bind(col(|e| &e.account_id))
        .bind(col(|e| &e.sku))
        .bind(events.iter().map(|e| e.price_id).collect::<Vec<_>>())
        .bind(col(|e| &e.binding_id))
        .bind(events.iter().map(|e| e.period.start()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.period.end()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.time).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.quantity).collect::<Vec<_>>())
        .bind(dimensions)
        .bind(col(|e| &e.on_behalf_of)))
}

const COLUMNS: &str = "provider_id, event_id, account_id, sku_id, price_id, binding_id,
    period_start, period_end, event_time, quantity, dimensions::text, cancelled_by IS NOT NULL,
    on_behalf_of";

/// A stored event and whether a correction cancelled it.
fn counted_of(r: &sqlx::postgres::PgRow) -> Result<(CountedEvent, bool), sqlx::Error> {
    let dimensions: String = r.try_get(10)?;
    Ok((
        CountedEvent {
            provider_id: r.try_get(0)?,
            event_id: r.try_get(1)?,
            account_id: r.try_get(2)?,
            sku: r.try_get(3)?,
            price_id: r.try_get(4)?,
            binding_id: r.try_get(5)?,
            period: Period::new(r.try_get(6)?, r.try_get(7)?).map_err(decode_err)?,
            time: r.try_get(8)?,
            quantity: r.try_get(9)?,
            dimensions: serde_json::from_str(&dimensions).map_err(decode_err)?,
            on_behalf_of: r.try_get(12)?,
        },
        r.try_get(11)?,
    ))
}

/// The stored event `(provider, event id)`, locked, and whether it was cancelled.
pub async fn event_for_update(
    conn: &mut PgConnection,
    provider: &str,
    event_id: &str,
) -> Result<Option<(CountedEvent, bool)>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM counted_events WHERE provider_id = $1 AND event_id = $2 FOR UPDATE"
    ))
    .bind(provider)
    .bind(event_id)
    .fetch_optional(conn)
    .await?;
    row.as_ref().map(counted_of).transpose()
}

/// The provider's counted events of the account timed in `[start, end)`,
/// not cancelled, locked, by event id. An event's period holds its time, so
/// only the periods meeting the window are read (the aggregate index leads
/// with the account and the period, and carries the provider and the time).
pub async fn window_for_update(
    conn: &mut PgConnection,
    account: &str,
    provider: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<CountedEvent>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM counted_events
         WHERE account_id = $1 AND period_start < $4 AND period_end > $3
           AND provider_id = $2 AND event_time >= $3 AND event_time < $4
           AND cancelled_by IS NULL
         ORDER BY event_id
         FOR UPDATE"
    ))
    .bind(account)
    .bind(provider)
    .bind(start)
    .bind(end)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| counted_of(r).map(|(e, _)| e)).collect()
}

/// Of these event ids of `provider`, those already counted
/// ([`tally_platform::counted::already_counted`]).
pub async fn already_counted(
    conn: &mut PgConnection,
    provider: &str,
    ids: &[&str],
) -> Result<BTreeSet<String>, sqlx::Error> {
    tally_platform::counted::already_counted(conn, provider, ids).await
}

/// Whether each aggregate's events are all stored (the events counted
/// before `counted_events` existed, or pruned, are not): (aggregate's
/// event count, events stored and not cancelled, the SKU's aggregation).
/// Only a complete aggregate can have its max, latest and distinct values
/// recomputed.
pub async fn completeness(
    conn: &mut PgConnection,
    keys: &[AggregateKey],
) -> Result<HashMap<AggregateKey, (i64, i64, String)>, sqlx::Error> {
    let (accounts, starts, prices, bindings) = columns(keys);
    let rows = sqlx::query(
        "SELECT k.a, k.s, k.p, k.b, COALESCE(ua.event_count, 0),
                (SELECT count(*) FROM counted_events c
                  WHERE c.account_id = k.a AND c.period_start = k.s AND c.price_id = k.p
                    AND c.binding_id = k.b AND c.cancelled_by IS NULL),
                s.aggregation
         FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[]) AS k(a, s, p, b)
         JOIN prices p ON p.id = k.p JOIN skus s ON s.id = p.sku_id
         LEFT JOIN usage_aggregates ua ON ua.account_id = k.a AND ua.period_start = k.s
             AND ua.price_id = k.p AND ua.binding_id = k.b",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&prices)
    .bind(&bindings)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?),
                (r.try_get(4)?, r.try_get(5)?, r.try_get(6)?),
            ))
        })
        .collect()
}

/// Aggregate keys as columns to bind: accounts, period starts, prices, bindings.
type KeyColumns<'a> = (Vec<&'a str>, Vec<DateTime<Utc>>, Vec<i64>, Vec<&'a str>);

fn columns(keys: &[AggregateKey]) -> KeyColumns<'_> {
    (
        keys.iter().map(|k| k.0.as_str()).collect(),
        keys.iter().map(|k| k.1).collect(),
        keys.iter().map(|k| k.2).collect(),
        keys.iter().map(|k| k.3.as_str()).collect(),
    )
}

/// Marks these events of `provider` cancelled by correction `by`.
pub async fn mark_cancelled(
    conn: &mut PgConnection,
    provider: &str,
    ids: &[&str],
    by: uuid::Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE counted_events SET cancelled_by = $3 WHERE provider_id = $1 AND event_id = ANY($2)",
    )
    .bind(provider)
    .bind(ids)
    .bind(by)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes events out of their aggregates' sums and counts and out of their
/// hours (in key order, as rating locks rows); rows left with no event are
/// deleted.
pub async fn subtract(
    conn: &mut PgConnection,
    aggregates: &BTreeMap<AggregateKey, (Decimal, i64)>,
    hours: &BTreeMap<HourKey, (Decimal, i64)>,
) -> Result<(), sqlx::Error> {
    if aggregates.is_empty() {
        return Ok(());
    }
    let keys: Vec<AggregateKey> = aggregates.keys().cloned().collect();
    let (accounts, starts, prices, bindings) = columns(&keys);
    let quantities: Vec<Decimal> = aggregates.values().map(|v| v.0).collect();
    let counts: Vec<i64> = aggregates.values().map(|v| v.1).collect();
    sqlx::query(
        "UPDATE usage_aggregates ua
         SET quantity = ua.quantity - k.q, event_count = ua.event_count - k.n
         FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::numeric[], $6::bigint[])
             AS k(a, s, p, b, q, n)
         WHERE ua.account_id = k.a AND ua.period_start = k.s AND ua.price_id = k.p AND ua.binding_id = k.b",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&prices)
    .bind(&bindings)
    .bind(&quantities)
    .bind(&counts)
    .execute(&mut *conn)
    .await?;
    let h_accounts: Vec<&str> = hours.keys().map(|k| k.0.as_str()).collect();
    let h_starts: Vec<DateTime<Utc>> = hours.keys().map(|k| k.1).collect();
    let h_prices: Vec<i64> = hours.keys().map(|k| k.2).collect();
    let h_hours: Vec<DateTime<Utc>> = hours.keys().map(|k| k.3).collect();
    let h_quantities: Vec<Decimal> = hours.values().map(|v| v.0).collect();
    let h_counts: Vec<i64> = hours.values().map(|v| v.1).collect();
    sqlx::query(
        "UPDATE usage_hourly uh
         SET quantity = uh.quantity - k.q, event_count = uh.event_count - k.n
         FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::timestamptz[], $5::numeric[], $6::bigint[])
             AS k(a, s, p, h, q, n)
         WHERE uh.account_id = k.a AND uh.period_start = k.s AND uh.price_id = k.p AND uh.hour = k.h",
    )
    .bind(&h_accounts)
    .bind(&h_starts)
    .bind(&h_prices)
    .bind(&h_hours)
    .bind(&h_quantities)
    .bind(&h_counts)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "DELETE FROM usage_hourly uh
         USING UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::timestamptz[]) AS k(a, s, p, h)
         WHERE uh.account_id = k.a AND uh.period_start = k.s AND uh.price_id = k.p AND uh.hour = k.h
           AND uh.event_count = 0",
    )
    .bind(&h_accounts)
    .bind(&h_starts)
    .bind(&h_prices)
    .bind(&h_hours)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The statements of [`recompute`], in order, each over the keys `k(a, s,
/// p, b)`: the largest and latest values from the stored events; the
/// distinct values cleared and taken again from them; aggregates left
/// without events deleted.
const RECOMPUTE: [&str; 4] = [
    "UPDATE usage_aggregates ua
     SET max_quantity = COALESCE(m.max_q, 0), latest_time = l.event_time,
         latest_event_id = l.event_id, latest_quantity = COALESCE(l.quantity, 0)
     FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[]) AS k(a, s, p, b)
     CROSS JOIN LATERAL (SELECT max(c.quantity) AS max_q FROM counted_events c
         WHERE c.account_id = k.a AND c.period_start = k.s AND c.price_id = k.p
           AND c.binding_id = k.b AND c.cancelled_by IS NULL) m
     LEFT JOIN LATERAL (SELECT c.event_time, c.event_id, c.quantity FROM counted_events c
         WHERE c.account_id = k.a AND c.period_start = k.s AND c.price_id = k.p
           AND c.binding_id = k.b AND c.cancelled_by IS NULL
         ORDER BY c.event_time DESC, c.event_id COLLATE \"C\" DESC LIMIT 1) l ON true
     WHERE ua.account_id = k.a AND ua.period_start = k.s AND ua.price_id = k.p AND ua.binding_id = k.b",
    "DELETE FROM usage_distinct_values d
     USING UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[]) AS k(a, s, p, b)
     WHERE d.account_id = k.a AND d.period_start = k.s AND d.price_id = k.p AND d.binding_id = k.b",
    "INSERT INTO usage_distinct_values (account_id, period_start, price_id, binding_id, value)
     SELECT DISTINCT k.a, k.s, k.p, k.b, c.dimensions ->> s.aggregation_dimension
     FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[]) AS k(a, s, p, b)
     JOIN prices p ON p.id = k.p JOIN skus s ON s.id = p.sku_id
     JOIN counted_events c ON c.account_id = k.a AND c.period_start = k.s AND c.price_id = k.p
         AND c.binding_id = k.b AND c.cancelled_by IS NULL
     WHERE s.aggregation = 'unique_count' AND c.dimensions ? s.aggregation_dimension",
    "DELETE FROM usage_aggregates ua
     USING UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[]) AS k(a, s, p, b)
     WHERE ua.account_id = k.a AND ua.period_start = k.s AND ua.price_id = k.p
       AND ua.binding_id = k.b AND ua.event_count = 0",
];

/// Recomputes the largest, latest and distinct values of complete
/// aggregates from their stored events (latest: greatest (time, event id),
/// ids in byte order as rating compares them); an aggregate left with no
/// event is deleted, with its distinct values.
pub async fn recompute(conn: &mut PgConnection, keys: &[AggregateKey]) -> Result<(), sqlx::Error> {
    if keys.is_empty() {
        return Ok(());
    }
    let (accounts, starts, prices, bindings) = columns(keys);
    for sql in RECOMPUTE {
        sqlx::query(sql)
            .bind(&accounts)
            .bind(&starts)
            .bind(&prices)
            .bind(&bindings)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Whether correction `id` was applied or refused already (a redelivery).
pub async fn is_recorded(conn: &mut PgConnection, id: uuid::Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM usage_corrections WHERE id = $1)")
        .bind(id)
        .fetch_one(conn)
        .await
}

/// A correction as recorded in the audit trail.
pub struct Recorded<'a> {
    pub id: uuid::Uuid,
    pub request: &'a tally_domain::usage::CorrectionRequest,
    /// `None` when applied, else the code it was refused with.
    pub refused: Option<&'static str>,
}

/// One event a correction changed.
pub struct ChangeRow {
    pub event_id: String,
    /// `cancelled`, `amended` or `added`.
    pub change: &'static str,
    pub previous: Option<String>,
    pub current: Option<String>,
    /// The period whose usage changed.
    pub period_start: DateTime<Utc>,
    /// The period whose statement bills the change.
    pub billed_in: DateTime<Utc>,
}

/// Writes a correction and what it changed to the audit trail.
pub async fn record(
    conn: &mut PgConnection,
    c: &Recorded<'_>,
    changes: &[ChangeRow],
) -> Result<(), sqlx::Error> {
    let (start, end) = match &c.request.change {
        tally_domain::usage::Change::Backfill { start, end, .. } => (Some(*start), Some(*end)),
        _ => (None, None),
    };
    sqlx::query(
        "INSERT INTO usage_corrections (id, kind, provider_id, account_id, event_id, window_start,
             window_end, reason, requested_by, requested_at, status, code)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(c.id)
    .bind(c.request.change.kind())
    .bind(c.request.provider_id.as_str())
    .bind(c.request.account_id.as_str())
    .bind(c.request.change.event_id().map(|e| e.as_str()))
    .bind(start)
    .bind(end)
    .bind(&c.request.reason)
    .bind(&c.request.requested_by)
    .bind(c.request.requested_at)
    .bind(if c.refused.is_some() {
        "refused"
    } else {
        "applied"
    })
    .bind(c.refused)
    .execute(&mut *conn)
    .await?;
    if changes.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO usage_correction_changes (correction_id, provider_id, account_id, event_id,
             change, previous, current, period_start, billed_in)
         SELECT $1, $2, $3, e, ch, pr::jsonb, cu::jsonb, ps, bi
         FROM UNNEST($4::text[], $5::text[], $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[])
             AS v(e, ch, pr, cu, ps, bi)",
    )
    .bind(c.id)
    .bind(c.request.provider_id.as_str())
    .bind(c.request.account_id.as_str())
    .bind(changes.iter().map(|r| r.event_id.as_str()).collect::<Vec<_>>())
    .bind(changes.iter().map(|r| r.change).collect::<Vec<_>>())
    .bind(changes.iter().map(|r| r.previous.as_deref()).collect::<Vec<_>>())
    .bind(changes.iter().map(|r| r.current.as_deref()).collect::<Vec<_>>())
    .bind(changes.iter().map(|r| r.period_start).collect::<Vec<_>>())
    .bind(changes.iter().map(|r| r.billed_in).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// Deletes the counted events of periods that ended before `before` (the
/// oldest event time the dedupe window's partitions still keep,
/// `dedupe::prune`): no batch admits such times any more, so their ids
/// cannot meet a redelivery, and no correction reaches them. A period's
/// rows go together, so an aggregate that can still be corrected keeps all
/// its events. Returns how many rows went.
pub async fn prune(conn: &mut PgConnection, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM counted_events WHERE period_end < $1")
            .bind(before)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}
