//! Usage on behalf of a consumer (issue 17): the part of each aggregate a
//! composing provider's upstream usage did for each consumer reference
//! (`usage_on_behalf`), written in the batch's transaction beside
//! `usage_aggregates` (same account, period counted in and price version),
//! so a margin report can split the composing provider's upstream invoice
//! lines by consumer. The statement is not changed by it.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use std::collections::BTreeMap;

/// (account, period counted in, price version, reference).
pub type OnBehalfKey = (String, DateTime<Utc>, i64, String);

/// A batch's quantities and event counts per [`OnBehalfKey`].
#[derive(Debug, Default)]
pub struct OnBehalf(pub BTreeMap<OnBehalfKey, (Decimal, i64)>);

impl OnBehalf {
    /// Counts `quantity` of one event (at most `Quantity::MAX`: a batch
    /// cannot overflow, as `Increment::add`).
    pub fn add(&mut self, key: OnBehalfKey, quantity: Decimal) {
        let entry = self.0.entry(key).or_default();
        entry.0 += quantity;
        entry.1 += 1;
    }
}

/// Adds a batch's increments, in key order (concurrent batches lock rows
/// alike).
pub async fn record(conn: &mut PgConnection, counted: &OnBehalf) -> Result<(), sqlx::Error> {
    write(
        conn,
        "INSERT INTO usage_on_behalf (account_id, period_start, price_id, on_behalf_of, quantity, event_count)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::numeric[], $6::bigint[])
         ON CONFLICT (account_id, period_start, price_id, on_behalf_of) DO UPDATE
         SET quantity = usage_on_behalf.quantity + EXCLUDED.quantity,
             event_count = usage_on_behalf.event_count + EXCLUDED.event_count",
        counted,
    )
    .await
}

/// Takes out of `usage_on_behalf` the quantities and event counts of events
/// counted before that a correction cancelled or replaced (`removed`, as
/// [`OnBehalf::add`] gathered them), in key order.
pub async fn take_out(conn: &mut PgConnection, removed: &OnBehalf) -> Result<(), sqlx::Error> {
    write(
        conn,
        "UPDATE usage_on_behalf u
         SET quantity = u.quantity - v.q, event_count = u.event_count - v.c
         FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::numeric[], $6::bigint[])
             AS v (a, s, p, r, q, c)
         WHERE u.account_id = v.a AND u.period_start = v.s AND u.price_id = v.p
           AND u.on_behalf_of = v.r",
        removed,
    )
    .await
}

/// Runs `sql` with `parts` as six arrays in key order: account, period
/// start, price version, reference, quantity, event count.
async fn write(conn: &mut PgConnection, sql: &str, parts: &OnBehalf) -> Result<(), sqlx::Error> {
    if parts.0.is_empty() {
        return Ok(());
    }
    let mut accounts = Vec::with_capacity(parts.0.len());
    let mut starts = Vec::with_capacity(parts.0.len());
    let mut prices = Vec::with_capacity(parts.0.len());
    let mut references = Vec::with_capacity(parts.0.len());
    let mut quantities = Vec::with_capacity(parts.0.len());
    let mut counts = Vec::with_capacity(parts.0.len());
    for ((account, start, price, reference), (quantity, events)) in &parts.0 {
        accounts.push(account.as_str());
        starts.push(*start);
        prices.push(*price);
        references.push(reference.as_str());
        quantities.push(*quantity);
        counts.push(*events);
    }
    sqlx::query(sql)
        .bind(&accounts)
        .bind(&starts)
        .bind(&prices)
        .bind(&references)
        .bind(&quantities)
        .bind(&counts)
        .execute(conn)
        .await?;
    Ok(())
}
