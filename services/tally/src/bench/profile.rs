//! Where a run's time goes outside the services: PostgreSQL's own
//! statistics of the statements the run executed (`pg_stat_statements`:
//! time, calls, rows, buffers and WAL of each), and the CPU the database's
//! and the broker's processes used, read from `/proc` as for the services.

use serde::{Deserialize, Serialize};
use sqlx::{PgPool, Row};
use std::collections::BTreeMap;

/// One statement as `pg_stat_statements` saw it during the throughput run.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PgStatement {
    /// The normalised text, whitespace collapsed, cut at 160 characters.
    pub query: String,
    pub calls: i64,
    /// Execution time in all, ms.
    pub total_ms: f64,
    /// Its share of the execution time of every statement of the run.
    pub share: f64,
    pub rows: i64,
    pub shared_blks_hit: i64,
    pub shared_blks_read: i64,
    pub shared_blks_dirtied: i64,
    pub wal_bytes: f64,
}

/// Turns the profile on for the run's database and empties it; `false`
/// when the server was started without `pg_stat_statements` in
/// `shared_preload_libraries` (a cluster `tally local postgres` started
/// before it loaded the library, or a server of one's own): the run goes
/// on without a profile.
pub(super) async fn reset(pool: &PgPool) -> bool {
    let loaded = async {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .execute(pool)
            .await?;
        sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(pool)
            .await?;
        anyhow::Ok(())
    }
    .await;
    match loaded {
        Ok(()) => true,
        Err(e) => {
            println!("profile: pg_stat_statements is not available ({e:#}); no statement profile");
            false
        }
    }
}

/// The `top` statements of the run's database by execution time, with
/// each one's share of all of them.
pub(super) async fn top_statements(pool: &PgPool, top: i64) -> anyhow::Result<Vec<PgStatement>> {
    let total: Option<f64> = sqlx::query_scalar(
        "SELECT sum(total_exec_time)::float8 FROM pg_stat_statements s
         JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()",
    )
    .fetch_one(pool)
    .await?;
    let rows = sqlx::query(
        "SELECT s.query, s.calls, s.total_exec_time::float8 AS total_ms, s.rows,
                s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied,
                s.wal_bytes::float8 AS wal_bytes
         FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
         WHERE d.datname = current_database()
         ORDER BY s.total_exec_time DESC LIMIT $1",
    )
    .bind(top)
    .fetch_all(pool)
    .await?;
    let total = total.unwrap_or_default();
    rows.iter()
        .map(|row| {
            let total_ms: f64 = row.try_get("total_ms")?;
            Ok(PgStatement {
                query: short(&row.try_get::<String, _>("query")?, 160),
                calls: row.try_get("calls")?,
                total_ms,
                share: if total > 0.0 { total_ms / total } else { 0.0 },
                rows: row.try_get("rows")?,
                shared_blks_hit: row.try_get("shared_blks_hit")?,
                shared_blks_read: row.try_get("shared_blks_read")?,
                shared_blks_dirtied: row.try_get("shared_blks_dirtied")?,
                wal_bytes: row.try_get("wal_bytes")?,
            })
        })
        .collect()
}

/// `query` on one line (runs of whitespace as one space), at most `max`
/// characters.
fn short(query: &str, max: usize) -> String {
    query
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(max)
        .collect()
}

/// CPU seconds (user + system) used so far by the processes that are not
/// the services: PostgreSQL's (`postgres`, the server and its backends)
/// and the broker's (a `java` whose command line names Kafka), by that
/// name. A backend that exits during the run takes its time with it; the
/// services keep their connections, so few do.
pub(super) fn infrastructure_cpu_seconds() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Some((comm, seconds)) = super::services::cpu_seconds_of(pid) else {
            continue;
        };
        let kind = match comm.as_str() {
            "postgres" => "postgres",
            "java" if is_kafka(pid) => "kafka",
            _ => continue,
        };
        *out.entry(kind.to_owned()).or_default() += seconds;
    }
    out
}

fn is_kafka(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("kafka"))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_is_shown_on_one_line_and_cut() {
        assert_eq!(
            short("SELECT a,\n        b\tFROM  t", 160),
            "SELECT a, b FROM t"
        );
        assert_eq!(short("INSERT INTO statements", 6), "INSERT");
    }
}
