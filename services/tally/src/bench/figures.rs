//! What a run records beside its speeds: its knobs (the shape of the load,
//! so a sweep's results file says what each line measured) and the
//! database's figures read before and after the throughput run.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use std::collections::BTreeMap;

use super::BenchArgs;

/// The shape of a run's load.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knobs {
    pub accounts: usize,
    pub providers: usize,
    pub skus_per_provider: usize,
    /// All providers' SKUs together.
    pub skus: usize,
    pub zipf: f64,
    pub lines: usize,
    pub contracts_percent: u32,
    pub commitment: Decimal,
    pub grants: bool,
    pub history_months: u32,
    pub history_events: u64,
    pub events: u64,
}

impl Knobs {
    pub(super) fn of(a: &BenchArgs) -> Knobs {
        Knobs {
            accounts: a.accounts,
            providers: a.providers,
            skus_per_provider: a.skus,
            skus: a.providers * a.skus,
            zipf: a.zipf,
            lines: a.lines,
            contracts_percent: a.contracts,
            commitment: a.commitment,
            grants: a.grants,
            history_months: a.history_months,
            history_events: a.history_events,
            events: a.events,
        }
    }
}

/// Bytes on disk of each table of the bench database (with its indexes
/// and TOAST; a partitioned table with its partitions).
pub(super) async fn table_sizes(pool: &PgPool) -> anyhow::Result<BTreeMap<String, i64>> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text,
                sum(pg_total_relation_size(c.oid))::bigint
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'r'
         GROUP BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Statement versions of the periods from `since` on, and their bytes,
/// each version at its statement's final body size: (versions, bytes).
pub(super) async fn statement_writes(
    pool: &PgPool,
    since: DateTime<Utc>,
) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT coalesce(sum(version), 0)::bigint,
                coalesce(sum(version * octet_length(body)), 0)::bigint
         FROM statements WHERE period_start >= $1",
    )
    .bind(since)
    .fetch_one(pool)
    .await?)
}
