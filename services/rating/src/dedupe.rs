//! The dedupe window's partitions: which event times rating keeps ids of
//! (`processed_events`' partitions, listed in `dedupe_partitions`),
//! creating the next ones, dropping those that fell out of the window
//! (`tally_domain::dedupe` decides which; this module only runs the DDL),
//! and then pruning the dedupe set itself, `counted_events`, to the oldest
//! time still kept. Run by rating's periodic prune, by `tally dedupe
//! prune`, and by a batch whose events need a partition not made yet.
//! Rating no longer writes `processed_events`: its partitions bound what
//! is kept, and hold the ids counted before `counted_events` was the
//! dedupe set until they are dropped.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};
use std::time::Duration;
use tally_domain::dedupe::Span;
use tally_domain::DedupeWindow;
use tokio_util::sync::CancellationToken;

use crate::corrections_repo;

/// Serialises the processes that create or drop partitions (rating
/// instances, `tally dedupe prune`): `pg_advisory_xact_lock` key.
const PARTITION_LOCK: i64 = 0x7461_6c6c_7964_6470; // "tallyddp"

/// The event times rating can record now: from the oldest partition's start
/// (`None`: the beginning of time) to the newest one's end (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retained {
    pub from: Option<DateTime<Utc>>,
    pub until: DateTime<Utc>,
}

impl Retained {
    /// Whether an event of `time` has a partition.
    pub fn covers(&self, time: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| from <= time) && time < self.until
    }
}

/// One partition as listed in `dedupe_partitions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub name: String,
    pub span: Span,
}

/// What one prune did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub created: Vec<String>,
    pub dropped: Vec<String>,
    /// Partitions left.
    pub partitions: usize,
    /// Rows of `counted_events` deleted: the events whose period ended
    /// before the oldest time still kept, which no batch admits and no
    /// correction reaches any more.
    pub values_pruned: u64,
}

/// The retained event times, read under a share lock on `processed_events`
/// taken first: a prune dropping a partition waits for this transaction to
/// end (and one that dropped before it is seen). `None` when there is no
/// partition at all.
pub async fn retained(conn: &mut PgConnection) -> Result<Option<Retained>, sqlx::Error> {
    sqlx::query("LOCK TABLE processed_events IN ACCESS SHARE MODE")
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query(
        "SELECT bool_or(starts IS NULL) AS unbounded, min(starts) AS starts, max(ends) AS ends
         FROM dedupe_partitions",
    )
    .fetch_one(&mut *conn)
    .await?;
    let until: Option<DateTime<Utc>> = row.try_get("ends")?;
    let unbounded: Option<bool> = row.try_get("unbounded")?;
    let starts: Option<DateTime<Utc>> = row.try_get("starts")?;
    Ok(until.map(|until| Retained {
        from: if unbounded == Some(true) {
            None
        } else {
            starts
        },
        until,
    }))
}

/// Whether `processed_events` still holds ids: those recorded before rating
/// counted by `counted_events` alone (issue 19), kept until their
/// partitions fall out of the window. Nothing writes it since, so once it
/// is empty it stays empty and batches stop probing it. Read after
/// [`retained`]'s lock.
pub async fn holds_legacy_ids(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM processed_events)")
        .fetch_one(conn)
        .await
}

/// Every partition, oldest first.
pub async fn partitions(conn: &mut PgConnection) -> Result<Vec<Partition>, sqlx::Error> {
    let rows = sqlx::query("SELECT name, starts, ends FROM dedupe_partitions ORDER BY ends")
        .fetch_all(conn)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(Partition {
                name: r.try_get("name")?,
                span: Span {
                    start: r.try_get("starts")?,
                    end: r.try_get("ends")?,
                },
            })
        })
        .collect()
}

/// Creates the partitions that event times from `from` through `through`
/// need and lack ([`DedupeWindow::to_create`]; after the newest one, with
/// no gap: `from` only matters when there is none); returns their names.
pub async fn ensure(
    pool: &PgPool,
    window: &DedupeWindow,
    from: DateTime<Utc>,
    through: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock(&mut tx).await?;
    let existing = partitions(&mut tx).await?;
    let from = match existing.last() {
        Some(newest) => newest.span.end,
        None => from,
    };
    let created = create(&mut tx, window, &existing, from, through).await?;
    tx.commit().await?;
    metrics::counter!("tally_dedupe_partitions_created_total").increment(created.len() as u64);
    Ok(created)
}

/// Keeps the dedupe set to the window at `now`, in one transaction: creates
/// partitions through the newest time rating rates
/// ([`DedupeWindow::ahead`]) and drops every partition that ends at or
/// before the cutoff ([`DedupeWindow::to_drop`]; `DROP TABLE`, O(1) per
/// partition whatever it holds).
pub async fn prune(
    pool: &PgPool,
    window: &DedupeWindow,
    now: DateTime<Utc>,
) -> Result<Pruned, sqlx::Error> {
    let mut tx = pool.begin().await?;
    lock(&mut tx).await?;
    // Dropping waits for the rating transactions in flight, and holds new
    // ones back meanwhile: give up (until the next prune) rather than stall
    // rating behind a long one.
    sqlx::query("SET LOCAL lock_timeout = '5s'")
        .execute(&mut *tx)
        .await?;
    let existing = partitions(&mut tx).await?;
    let created = create(
        &mut tx,
        window,
        &existing,
        window.cutoff(now),
        window.ahead(now),
    )
    .await?;
    let spans: Vec<Span> = existing.iter().map(|p| p.span).collect();
    let gone = window.to_drop(&spans, now);
    let mut dropped = Vec::new();
    for partition in existing.iter().filter(|p| gone.contains(&p.span)) {
        sqlx::query(&format!("DROP TABLE {}", quoted(&partition.name)))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dedupe_partitions WHERE name = $1")
            .bind(&partition.name)
            .execute(&mut *tx)
            .await?;
        dropped.push(partition.name.clone());
    }
    let kept = partitions(&mut tx).await?;
    tx.commit().await?;
    // The counted events (the dedupe set itself, and the values corrections
    // need) go by whole periods that ended before the oldest time still
    // kept: from then on every batch refuses earlier times
    // (`Refusal::Dropped`), so none can meet an id this deletes. (A batch
    // still reading the older bound held the lock this transaction's drop
    // waited for.) Nothing while a partition without a start is kept.
    let values_pruned = match kept.iter().map(|p| p.span.start).min() {
        Some(Some(from)) => {
            let mut conn = pool.acquire().await?;
            corrections_repo::prune(&mut conn, from).await?
        }
        _ => 0,
    };
    let partitions = kept.len();
    metrics::counter!("tally_dedupe_partitions_created_total").increment(created.len() as u64);
    metrics::counter!("tally_dedupe_partitions_dropped_total").increment(dropped.len() as u64);
    metrics::gauge!("tally_dedupe_partitions").set(partitions as f64);
    Ok(Pruned {
        created,
        dropped,
        partitions,
        values_pruned,
    })
}

/// Prunes at start and then every `every`, until `shutdown`; a failed prune
/// is logged and tried again at the next tick.
pub async fn run(pool: PgPool, window: DedupeWindow, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match prune(&pool, &window, Utc::now()).await {
            Ok(p) if !p.created.is_empty() || !p.dropped.is_empty() => tracing::info!(
                created = ?p.created,
                dropped = ?p.dropped,
                partitions = p.partitions,
                "dedupe partitions pruned"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "dedupe prune failed; trying again later"),
        }
    }
}

async fn lock(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(PARTITION_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// Creates the partitions `window` plans after `existing` for times from
/// `from` through `through`, each named by its first day.
async fn create(
    conn: &mut PgConnection,
    window: &DedupeWindow,
    existing: &[Partition],
    from: DateTime<Utc>,
    through: DateTime<Utc>,
) -> Result<Vec<String>, sqlx::Error> {
    let mut created = Vec::new();
    let last_end = existing.last().map(|p| p.span.end);
    for (start, end) in window.to_create(last_end, from, through) {
        let name = format!("processed_events_{}", start.format("%Y%m%d"));
        // Bounds are timestamps this process formats, never input.
        sqlx::query(&format!(
            "CREATE TABLE {} PARTITION OF processed_events FOR VALUES FROM ('{}') TO ('{}')",
            quoted(&name),
            start.to_rfc3339(),
            end.to_rfc3339()
        ))
        .execute(&mut *conn)
        .await?;
        sqlx::query("INSERT INTO dedupe_partitions (name, starts, ends) VALUES ($1, $2, $3)")
            .bind(&name)
            .bind(start)
            .bind(end)
            .execute(&mut *conn)
            .await?;
        created.push(name);
    }
    Ok(created)
}

/// `name` as an SQL identifier.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
