//! SQL of rating's own tables: aggregates, statements, the statement outbox.
//! Every function takes the caller's connection or transaction.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, Row};
use std::collections::{HashMap, HashSet};
use tally_domain::{
    BindingId, PriceBook, ProviderId, ProviderKind, ProviderRef, ResourceRef, Sku, Statement,
    UsageAggregate,
};
use tally_platform::db;

use crate::outcome::HeldStatement;

/// Key of one account-period.
pub type AccountPeriod = (String, DateTime<Utc>);

/// Key of one hour of usage: (account, period start, price version, hour).
pub type HourKey = (String, DateTime<Utc>, i64, DateTime<Utc>);

/// Key of one aggregate: (account, period start, price version, binding id;
/// `""` for usage that names no binding).
pub type AggregateKey = (String, DateTime<Utc>, i64, String);

/// One aggregate increment: quantity and event count to add.
#[derive(Debug, Clone, Default)]
pub struct Increment {
    pub period_end: Option<DateTime<Utc>>,
    pub quantity: Decimal,
    pub events: i64,
    pub max: Decimal,
    /// (event time, event id, quantity) of the latest event.
    pub latest: Option<(DateTime<Utc>, String, Decimal)>,
    /// Distinct values of the SKU's unique-count dimension.
    pub distinct: std::collections::BTreeSet<String>,
}

impl Increment {
    /// Folds one event in; the result does not depend on the order of events.
    /// Unchecked on purpose: a quantity is at most `Quantity::MAX` (1e15), so
    /// a batch would need some 8e13 events to overflow a `Decimal` (the
    /// period's stored total is summed in PostgreSQL's `NUMERIC`).
    pub fn add(&mut self, time: DateTime<Utc>, event_id: &str, quantity: Decimal) {
        self.quantity += quantity;
        self.events += 1;
        self.max = self.max.max(quantity);
        let newer = self
            .latest
            .as_ref()
            .is_none_or(|(t, id, _)| (time, event_id) > (*t, id.as_str()));
        if newer {
            self.latest = Some((time, event_id.to_owned(), quantity));
        }
    }
}

/// Adds increments to `usage_aggregates`, in key order so concurrent batches
/// lock rows in the same order.
pub async fn add_to_aggregates(
    conn: &mut PgConnection,
    increments: &std::collections::BTreeMap<AggregateKey, Increment>,
) -> Result<(), sqlx::Error> {
    let mut accounts = Vec::with_capacity(increments.len());
    let mut bindings = Vec::with_capacity(increments.len());
    let mut starts = Vec::with_capacity(increments.len());
    let mut ends = Vec::with_capacity(increments.len());
    let mut prices = Vec::with_capacity(increments.len());
    let mut quantities = Vec::with_capacity(increments.len());
    let mut counts = Vec::with_capacity(increments.len());
    let mut maxes = Vec::with_capacity(increments.len());
    let mut latest_times = Vec::with_capacity(increments.len());
    let mut latest_ids = Vec::with_capacity(increments.len());
    let mut latest_quantities = Vec::with_capacity(increments.len());
    let (mut d_accounts, mut d_starts, mut d_prices, mut d_bindings, mut d_values) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((account, start, price, binding), inc) in increments {
        accounts.push(account.as_str());
        bindings.push(binding.as_str());
        starts.push(*start);
        ends.push(inc.period_end.unwrap_or(*start));
        prices.push(*price);
        quantities.push(inc.quantity);
        counts.push(inc.events);
        maxes.push(inc.max);
        latest_times.push(inc.latest.as_ref().map(|l| l.0));
        latest_ids.push(inc.latest.as_ref().map(|l| l.1.as_str()));
        latest_quantities.push(inc.latest.as_ref().map_or(Decimal::ZERO, |l| l.2));
        for value in &inc.distinct {
            d_accounts.push(account.as_str());
            d_starts.push(*start);
            d_prices.push(*price);
            d_bindings.push(binding.as_str());
            d_values.push(value.as_str());
        }
    }
    sqlx::query(
        "INSERT INTO usage_aggregates (account_id, period_start, period_end, price_id, quantity, event_count,
             max_quantity, latest_time, latest_event_id, latest_quantity, binding_id)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[], $5::numeric[],
             $6::bigint[], $7::numeric[], $8::timestamptz[], $9::text[], $10::numeric[], $11::text[])
         ON CONFLICT (account_id, period_start, price_id, binding_id) DO UPDATE
         SET quantity = usage_aggregates.quantity + EXCLUDED.quantity,
             event_count = usage_aggregates.event_count + EXCLUDED.event_count,
             max_quantity = GREATEST(usage_aggregates.max_quantity, EXCLUDED.max_quantity),
             latest_time = CASE WHEN usage_aggregates.latest_time IS NULL
                 OR (EXCLUDED.latest_time, EXCLUDED.latest_event_id)
                 > (usage_aggregates.latest_time, usage_aggregates.latest_event_id)
                 THEN EXCLUDED.latest_time ELSE usage_aggregates.latest_time END,
             latest_event_id = CASE WHEN usage_aggregates.latest_time IS NULL
                 OR (EXCLUDED.latest_time, EXCLUDED.latest_event_id)
                 > (usage_aggregates.latest_time, usage_aggregates.latest_event_id)
                 THEN EXCLUDED.latest_event_id ELSE usage_aggregates.latest_event_id END,
             latest_quantity = CASE WHEN usage_aggregates.latest_time IS NULL
                 OR (EXCLUDED.latest_time, EXCLUDED.latest_event_id)
                 > (usage_aggregates.latest_time, usage_aggregates.latest_event_id)
                 THEN EXCLUDED.latest_quantity ELSE usage_aggregates.latest_quantity END",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&ends)
    .bind(&prices)
    .bind(&quantities)
    .bind(&counts)
    .bind(&maxes)
    .bind(&latest_times)
    .bind(&latest_ids)
    .bind(&latest_quantities)
    .bind(&bindings)
    .execute(&mut *conn)
    .await?;
    if !d_values.is_empty() {
        sqlx::query(
            "INSERT INTO usage_distinct_values (account_id, period_start, price_id, value, binding_id)
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::text[], $5::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&d_accounts)
        .bind(&d_starts)
        .bind(&d_prices)
        .bind(&d_values)
        .bind(&d_bindings)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Adds increments to `usage_hourly`: (account, period start, price, hour) → increment.
pub async fn add_to_hourly(
    conn: &mut PgConnection,
    increments: &std::collections::BTreeMap<HourKey, Increment>,
) -> Result<(), sqlx::Error> {
    let mut accounts = Vec::with_capacity(increments.len());
    let mut starts = Vec::with_capacity(increments.len());
    let mut prices = Vec::with_capacity(increments.len());
    let mut hours = Vec::with_capacity(increments.len());
    let mut quantities = Vec::with_capacity(increments.len());
    let mut counts = Vec::with_capacity(increments.len());
    for ((account, start, price, hour), inc) in increments {
        accounts.push(account.as_str());
        starts.push(*start);
        prices.push(*price);
        hours.push(*hour);
        quantities.push(inc.quantity);
        counts.push(inc.events);
    }
    sqlx::query(
        "INSERT INTO usage_hourly (account_id, period_start, price_id, hour, quantity, event_count)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::timestamptz[], $5::numeric[], $6::bigint[])
         ON CONFLICT (account_id, period_start, price_id, hour) DO UPDATE
         SET quantity = usage_hourly.quantity + EXCLUDED.quantity,
             event_count = usage_hourly.event_count + EXCLUDED.event_count",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&prices)
    .bind(&hours)
    .bind(&quantities)
    .bind(&counts)
    .execute(conn)
    .await?;
    Ok(())
}

/// The stored version of each of these account-periods' statements (those
/// without one are left out), each row locked until the transaction ends
/// (in key order), so a concurrent restatement of the same statements
/// waits instead of failing. Only the lock is written, not a new row
/// version: [`store_statements`] writes each row once, over the version read
/// here (a statement first stored concurrently, with no row to lock yet,
/// makes that write fail and the transaction run again).
pub async fn current_versions(
    conn: &mut PgConnection,
    keys: &[AccountPeriod],
) -> Result<HashMap<AccountPeriod, i64>, sqlx::Error> {
    let accounts: Vec<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = keys.iter().map(|(_, s)| *s).collect();
    let rows = sqlx::query(
        "SELECT st.account_id, st.period_start, st.version
         FROM UNNEST($1::text[], $2::timestamptz[]) AS k(a, s)
         JOIN statements st ON st.account_id = k.a AND st.period_start = k.s
         ORDER BY st.account_id, st.period_start
         FOR NO KEY UPDATE OF st",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                (r.try_get("account_id")?, r.try_get("period_start")?),
                r.try_get("version")?,
            ))
        })
        .collect()
}

fn decode_err(e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::Decode(Box::new(e))
}

/// What never changes about a price version: its book, and the SKU's and
/// provider's names (`skus` and `providers` rows change only in their
/// markup, platform fee and aggregation, which are read with every load).
#[derive(Debug, Clone)]
struct PriceFacts {
    model: PriceBook,
    effective_from: DateTime<Utc>,
    sku: Sku,
    sku_name: String,
    unit: String,
    provider: ProviderRef,
}

/// Price facts by (database, price id). A price version row never changes
/// (a new price is a new version), so they stay valid for the process's
/// life; `tally bench` found parsing every aggregate's book per batch a large
/// part of loading them, and then reading the names with every aggregate.
/// The database is part of the key: one process (the tests) may rate in
/// several databases, whose price ids overlap.
type FactsCache = HashMap<(String, i64), PriceFacts>;

fn price_facts() -> &'static std::sync::RwLock<FactsCache> {
    static FACTS: std::sync::OnceLock<std::sync::RwLock<FactsCache>> = std::sync::OnceLock::new();
    FACTS.get_or_init(Default::default)
}

/// The facts of these price ids, from the cache or (once) from the database.
async fn facts_of(
    conn: &mut PgConnection,
    ids: &HashSet<i64>,
) -> Result<HashMap<i64, PriceFacts>, sqlx::Error> {
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *conn)
        .await?;
    let mut out = HashMap::with_capacity(ids.len());
    let mut missing = Vec::new();
    {
        let cache = price_facts()
            .read()
            .map_err(|_| sqlx::Error::Protocol("price cache poisoned".into()))?;
        for id in ids {
            match cache.get(&(database.clone(), *id)) {
                Some(facts) => {
                    out.insert(*id, facts.clone());
                }
                None => missing.push(*id),
            }
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    let rows = sqlx::query(
        "SELECT p.id, p.model, p.effective_from, p.sku_id, s.name, s.unit,
                pr.id AS provider_id, pr.name AS provider_name, pr.kind
         FROM prices p JOIN skus s ON s.id = p.sku_id JOIN providers pr ON pr.id = s.provider_id
         WHERE p.id = ANY($1)",
    )
    .bind(&missing)
    .fetch_all(conn)
    .await?;
    let mut cache = price_facts()
        .write()
        .map_err(|_| sqlx::Error::Protocol("price cache poisoned".into()))?;
    for r in rows {
        let id: i64 = r.try_get(0)?;
        let model: serde_json::Value = r.try_get(1)?;
        let kind: String = r.try_get(8)?;
        let facts = PriceFacts {
            model: serde_json::from_value::<PriceBook>(model).map_err(decode_err)?,
            effective_from: r.try_get(2)?,
            sku: Sku::parse(r.try_get(3)?).map_err(decode_err)?,
            sku_name: r.try_get(4)?,
            unit: r.try_get(5)?,
            provider: ProviderRef {
                id: ProviderId::parse(r.try_get(6)?).map_err(decode_err)?,
                name: r.try_get(7)?,
                kind: ProviderKind::parse(&kind)
                    .ok_or_else(|| sqlx::Error::Decode(format!("unknown kind {kind}").into()))?,
            },
        };
        cache.insert((database.clone(), id), facts.clone());
        out.insert(id, facts);
    }
    Ok(out)
}

/// One row of [`load_aggregates`], read off its `PgRow` as it arrives.
struct AggregateRow {
    key: AccountPeriod,
    price_id: i64,
    /// Each quantity a SKU may bill by (sum, count, max, latest); which one
    /// is known once the price's terms are read.
    sum: Decimal,
    event_count: i64,
    max: Decimal,
    latest: Decimal,
    provider_owned: bool,
    resource: Option<ResourceRef>,
}

/// The terms of a price that may change between two restatements: its SKU's
/// aggregation and markup, its provider's fees.
struct Terms {
    aggregation: String,
    markup_pct: Decimal,
    platform_fee_pct: Decimal,
    p2p_fee_pct: Option<Decimal>,
}

/// Every aggregate of the given account-periods, with its price and provider.
/// Each row is read into its own few columns as it arrives (the rows as
/// sqlx returns them, every column's bytes and offsets, were all held
/// beside the aggregates built from them), and each account-period's
/// aggregates go in a vector of exactly their number (grown one push at a
/// time, a vector of 400 took room for 512): rating's heap peaked here
/// (heaptrack; BENCHMARKS.md, "Rating's memory where it loads aggregates,
/// invoicing's batch bytes").
///
/// The terms that may change are read once for each price among the rows
/// ([`terms_of`]), and distinct values counted only for the SKUs that bill
/// by them ([`distinct_counts`]): joined to every aggregate, the lookups of
/// its price and SKU were 86 % of the query's buffers (EXPLAIN (ANALYZE,
/// BUFFERS) at 400 lines a statement; BENCHMARKS.md, "Statements held
/// compressed until they are published"). Three plain queries: one query
/// with the terms in materialized CTEs, as fast alone, took 10–80 s a run
/// of `tally bench` against 17–21 s.
pub async fn load_aggregates(
    conn: &mut PgConnection,
    keys: &[AccountPeriod],
) -> Result<HashMap<AccountPeriod, Vec<UsageAggregate>>, sqlx::Error> {
    let accounts: Vec<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = keys.iter().map(|(_, s)| *s).collect();
    // Only what changes is read here (the rest is in `price_facts`), and
    // columns by position: 20,000 rows a batch in `tally bench`.
    let rows: Vec<AggregateRow> = sqlx::query(
        "SELECT ua.account_id, ua.period_start, ua.price_id, ua.quantity, ua.event_count,
                ua.max_quantity, ua.latest_quantity, acc.owner_provider_id IS NOT NULL,
                ua.binding_id, b.name AS resource_name, pl.name AS plan_name
         FROM usage_aggregates ua
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, s) ON ua.account_id = k.a AND ua.period_start = k.s
         JOIN accounts acc ON acc.id = ua.account_id
         LEFT JOIN bindings b ON b.id = ua.binding_id
         LEFT JOIN plans pl ON pl.id = b.plan_id",
    )
    .bind(&accounts)
    .bind(&starts)
    .try_map(|r: sqlx::postgres::PgRow| {
        Ok(AggregateRow {
            key: (r.try_get(0)?, r.try_get(1)?),
            price_id: r.try_get(2)?,
            sum: r.try_get(3)?,
            event_count: r.try_get(4)?,
            max: r.try_get(5)?,
            latest: r.try_get(6)?,
            provider_owned: r.try_get(7)?,
            resource: resource_of(&r)?,
        })
    })
    .fetch_all(&mut *conn)
    .await?;
    let ids: HashSet<i64> = rows.iter().map(|r| r.price_id).collect();
    let terms = terms_of(&mut *conn, &ids).await?;
    let counted: Vec<i64> = terms
        .iter()
        .filter(|(_, t)| t.aggregation == "unique_count")
        .map(|(id, _)| *id)
        .collect();
    let distinct = if counted.is_empty() {
        HashMap::new()
    } else {
        distinct_counts(&mut *conn, &accounts, &starts, &counted).await?
    };
    let facts = facts_of(conn, &ids).await?;
    let mut sizes: HashMap<&AccountPeriod, usize> = HashMap::with_capacity(keys.len());
    for r in &rows {
        *sizes.entry(&r.key).or_default() += 1;
    }
    let mut out: HashMap<AccountPeriod, Vec<UsageAggregate>> = sizes
        .into_iter()
        .map(|(key, n)| (key.clone(), Vec::with_capacity(n)))
        .collect();
    for r in rows {
        let vanished = || sqlx::Error::Decode(format!("price {} vanished", r.price_id).into());
        let f = facts.get(&r.price_id).ok_or_else(vanished)?;
        let t = terms.get(&r.price_id).ok_or_else(vanished)?;
        let quantity = match t.aggregation.as_str() {
            "count" => Decimal::from(r.event_count),
            "max" => r.max,
            "latest" => r.latest,
            "unique_count" => {
                let binding = r.resource.as_ref().map_or("", |b| b.binding.as_str());
                let key = (r.key.0.clone(), r.key.1, r.price_id, binding.to_owned());
                Decimal::from(distinct.get(&key).copied().unwrap_or(0))
            }
            _ => r.sum,
        };
        let aggregate = UsageAggregate {
            provider: f.provider.clone(),
            sku: f.sku.clone(),
            sku_name: f.sku_name.clone(),
            unit: f.unit.clone(),
            price_id: r.price_id,
            price_effective_from: f.effective_from,
            model: f.model.clone(),
            quantity,
            event_count: r.event_count,
            markup_pct: t.markup_pct,
            platform_fee_pct: tally_domain::composition::platform_fee_pct(
                t.platform_fee_pct,
                t.p2p_fee_pct,
                r.provider_owned,
            ),
            resource: r.resource,
            included: Decimal::ZERO,
        };
        out.entry(r.key).or_default().push(aggregate);
    }
    Ok(out)
}

/// The terms of each of these prices.
async fn terms_of(
    conn: &mut PgConnection,
    ids: &HashSet<i64>,
) -> Result<HashMap<i64, Terms>, sqlx::Error> {
    let ids: Vec<i64> = ids.iter().copied().collect();
    sqlx::query(
        "SELECT p.id, s.aggregation, s.markup_pct, pr.platform_fee_pct, pr.p2p_fee_pct
         FROM prices p JOIN skus s ON s.id = p.sku_id JOIN providers pr ON pr.id = s.provider_id
         WHERE p.id = ANY($1)",
    )
    .bind(&ids)
    .try_map(|r: sqlx::postgres::PgRow| {
        Ok((
            r.try_get(0)?,
            Terms {
                aggregation: r.try_get(1)?,
                markup_pct: r.try_get(2)?,
                platform_fee_pct: r.try_get(3)?,
                p2p_fee_pct: r.try_get(4)?,
            },
        ))
    })
    .fetch_all(conn)
    .await
    .map(|rows| rows.into_iter().collect())
}

/// Distinct values seen, by (account, period start, price, binding).
type DistinctCounts = HashMap<(String, DateTime<Utc>, i64, String), i64>;

/// How many distinct values each aggregate of these prices (SKUs billed
/// by `unique_count`) in the given account-periods has seen.
async fn distinct_counts(
    conn: &mut PgConnection,
    accounts: &[&str],
    starts: &[DateTime<Utc>],
    prices: &[i64],
) -> Result<DistinctCounts, sqlx::Error> {
    let rows: Vec<(String, DateTime<Utc>, i64, String, i64)> = sqlx::query_as(
        "SELECT d.account_id, d.period_start, d.price_id, d.binding_id, count(*)
         FROM usage_distinct_values d
         JOIN UNNEST($1::text[], $2::timestamptz[]) AS k(a, s) ON d.account_id = k.a AND d.period_start = k.s
         WHERE d.price_id = ANY($3)
         GROUP BY d.account_id, d.period_start, d.price_id, d.binding_id",
    )
    .bind(accounts)
    .bind(starts)
    .bind(prices)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(a, s, p, b, n)| ((a, s, p, b), n))
        .collect())
}

/// The bound resource of an aggregate (the columns of [`load_aggregates`]),
/// its plan the binding's current one until its plan fees say otherwise
/// ([`tally_domain::plan::bill_resources`]).
fn resource_of(r: &sqlx::postgres::PgRow) -> Result<Option<ResourceRef>, sqlx::Error> {
    let binding: &str = r.try_get(8)?;
    if binding.is_empty() {
        return Ok(None);
    }
    Ok(Some(ResourceRef {
        binding: BindingId::parse(binding).map_err(decode_err)?,
        name: r.try_get::<Option<String>, _>(9)?.unwrap_or_default(),
        plan: r.try_get::<Option<String>, _>(10)?.unwrap_or_default(),
    }))
}

/// Statement bodies sent in one `INSERT` at most (but always one statement):
/// sqlx builds a query's arguments, and then its message in the
/// connection's write buffer, each a copy of every body bound, so one
/// `INSERT` of a batch's statements (some 10 MiB at 100,000 accounts) held
/// two more copies, and the buffer stayed that large until the connection
/// went back to its pool (heaptrack: BENCHMARKS.md, "Fewer indexes on
/// counted events, and rating's memory, profiled").
const STORE_CHUNK_BYTES: usize = 1 << 20;

/// Stores each statement (in the order given: account-period order, so
/// concurrent writers lock rows alike) over the version before it, and
/// records them in the outbox. Returns the outbox row and the statements
/// held as stored, or `None` when a concurrent transaction wrote one of
/// them first (its version moved since [`current_versions`]): the caller
/// runs again. The statements are serialised (straight to text, not through
/// `serde_json::Value`) and sent in chunks of at most [`STORE_CHUNK_BYTES`]
/// of bodies.
pub async fn store_statements(
    conn: &mut PgConnection,
    statements: &[Statement],
) -> Result<Option<(i64, Vec<HeldStatement>)>, sqlx::Error> {
    if statements.is_empty() {
        return Ok(None);
    }
    let mut held = Vec::with_capacity(statements.len());
    for chunk in db::json_chunks(statements, STORE_CHUNK_BYTES) {
        let (range, bodies) = chunk.map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let stored = &statements[range];
        if !store_chunk(&mut *conn, stored, &bodies).await? {
            return Ok(None);
        }
        held.extend(
            stored
                .iter()
                .zip(&bodies)
                .map(|(s, b)| HeldStatement::new(s, b)),
        );
    }
    let accounts: Vec<&str> = statements.iter().map(|s| s.account_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = statements.iter().map(|s| s.period.start()).collect();
    let id = sqlx::query_scalar(
        "INSERT INTO statement_outbox (account_ids, period_starts) VALUES ($1, $2) RETURNING id",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_one(conn)
    .await?;
    Ok(Some((id, held)))
}

/// Writes these statements over their previous versions; `false` when one
/// of them was not written (another writer moved its version).
async fn store_chunk(
    conn: &mut PgConnection,
    statements: &[Statement],
    bodies: &[String],
) -> Result<bool, sqlx::Error> {
    let accounts: Vec<&str> = statements.iter().map(|s| s.account_id.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = statements.iter().map(|s| s.period.start()).collect();
    let ends: Vec<DateTime<Utc>> = statements.iter().map(|s| s.period.end()).collect();
    let versions: Vec<i64> = statements.iter().map(|s| s.version).collect();
    let sealed: Vec<bool> = statements.iter().map(|s| s.sealed).collect();
    let written = sqlx::query(
        "INSERT INTO statements AS st (account_id, period_start, period_end, version, body, sealed)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[], $4::bigint[],
             $5::text[], $6::bool[])
         ON CONFLICT (account_id, period_start) DO UPDATE
         SET version = EXCLUDED.version, body = EXCLUDED.body, sealed = EXCLUDED.sealed,
             updated_at = now()
         WHERE st.version = EXCLUDED.version - 1",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&ends)
    .bind(&versions)
    .bind(bodies)
    .bind(&sealed)
    .execute(&mut *conn)
    .await?;
    Ok(written.rows_affected() == statements.len() as u64)
}

/// Outbox rows left behind (a publish that failed, a crash before it), oldest
/// first: as many as list at most `statements` account-periods together, and
/// at least one.
pub async fn pending_outbox(
    conn: &mut PgConnection,
    statements: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT id FROM (
             SELECT id, sum(cardinality(account_ids)) OVER (ORDER BY id)
                        - cardinality(account_ids) AS before
             FROM statement_outbox) o
         WHERE o.before < $1 OR o.before = 0
         ORDER BY id",
    )
    .bind(statements)
    .fetch_all(conn)
    .await
}

/// The account-periods these outbox rows list, each once, in order.
pub async fn outbox_keys(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<Vec<AccountPeriod>, sqlx::Error> {
    sqlx::query_as(
        "SELECT DISTINCT k.a, k.s FROM statement_outbox o,
             UNNEST(o.account_ids, o.period_starts) AS k(a, s)
         WHERE o.id = ANY($1)
         ORDER BY k.a, k.s",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// The newest statement of each of these account-periods, held as stored,
/// in order.
pub async fn statement_bodies(
    conn: &mut PgConnection,
    keys: &[AccountPeriod],
) -> Result<Vec<HeldStatement>, sqlx::Error> {
    let accounts: Vec<&str> = keys.iter().map(|(a, _)| a.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = keys.iter().map(|(_, s)| *s).collect();
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT st.body FROM UNNEST($1::text[], $2::timestamptz[]) AS k(a, s)
         JOIN statements st ON st.account_id = k.a AND st.period_start = k.s
         ORDER BY st.account_id, st.period_start",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(conn)
    .await?;
    bodies
        .iter()
        .map(|b| {
            let statement: Statement = serde_json::from_str(b).map_err(decode_err)?;
            Ok(HeldStatement::new(&statement, b))
        })
        .collect()
}

/// Deletes outbox rows whose statements reached the broker.
pub async fn clear_outbox(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM statement_outbox WHERE id = ANY($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}
