//! PostgreSQL: pool, migrations, database creation.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

use crate::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    pool_of(
        options,
        max_connections,
        Config::default().db_acquire_timeout,
    )
    .await
}

/// The pool of a service, sized and timed by `config`: its connections
/// carry the application name `tally-<service>` (in `pg_stat_activity` and
/// the server's logs), unless the URL names one.
pub async fn connect_service(config: &Config, service: &str) -> Result<PgPool, sqlx::Error> {
    let url = &config.database_url;
    let mut options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    if !url.contains("application_name=") {
        options = options.application_name(&format!("tally-{service}"));
    }
    if let Some(timeout) = config.db_statement_timeout {
        // PostgreSQL cancels a statement, or a wait for a lock, itself: the
        // connection goes back to the pool instead of staying blocked.
        let ms = timeout.as_millis().to_string();
        options = options.options([("statement_timeout", &ms), ("lock_timeout", &ms)]);
    }
    pool_of(
        options,
        config.db_max_connections,
        config.db_acquire_timeout,
    )
    .await
}

async fn pool_of(
    options: PgConnectOptions,
    max_connections: u32,
    acquire_timeout: Duration,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(acquire_timeout)
        // A connection keeps its buffers as large as the largest query it
        // sent or result it read (sqlx's documented behaviour): a rating
        // batch's statements carry every event's values, so each pooled
        // connection kept megabytes (about 20 MiB of rating's peak RSS at
        // 100,000 accounts: BENCHMARKS.md, "Scale-out and rating's
        // memory"). They go back to their default size when the
        // connection returns to the pool.
        .after_release(|conn, _| {
            Box::pin(async move {
                conn.shrink_buffers();
                Ok(true)
            })
        })
        .connect_with(options)
        .await
}

/// Creates the database named in `url` if it does not exist yet.
pub async fn create_database_if_missing(url: &str) -> Result<(), sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    let name = options.get_database().unwrap_or("postgres").to_owned();
    let mut admin = options.database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await?;
    }
    admin.close().await
}

/// Creates the database if needed and applies every pending migration.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    create_database_if_missing(url).await?;
    let pool = connect(url, 2).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}

/// True when the error is a serialization failure or deadlock: retry the transaction.
pub fn is_retryable(err: &sqlx::Error) -> bool {
    matches!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("40001") | Some("40P01")
    )
}

/// True when the database could not be reached or did not answer in time:
/// no connection from the pool in time, a broken or refused connection, the
/// server shutting down or starting up (SQLSTATE classes 08, 53, 58 and
/// 57P01–57P03), or a statement cancelled by a timeout (57014). Such a
/// failure says nothing about the data being written: retry later, and
/// never blame (dead-letter) the input for it.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|code| {
            ["08", "53", "58"]
                .iter()
                .any(|class| code.starts_with(class))
                || ["57P01", "57P02", "57P03", "57014"].contains(&code.as_ref())
        }),
        _ => false,
    }
}

/// Name of the violated constraint, if any: callers map it to a domain error.
pub fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    err.as_database_error().and_then(|e| e.constraint())
}

/// `url` pointing at database `name` instead.
pub fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix = match base.rfind('/') {
        Some(i) if i > base.find("://").map_or(0, |s| s + 2) => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}

/// A database of its own for one test, on the server of `DATABASE_URL`
/// (the test run's; default the local one), named by [`scratch_name`].
pub fn scratch_database(prefix: &str) -> String {
    let server = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| crate::config::DEFAULT_DATABASE_URL.to_owned());
    with_database(&server, &scratch_name(prefix))
}

/// `{prefix}_r{run}_{random}` under a test run (`TALLY_TEST_RUN`, set by
/// `deploy/dev.sh test`, which drops the run's databases when it ends:
/// `tally local drop-test-databases --run …`), else `{prefix}_{random}`.
pub fn scratch_name(prefix: &str) -> String {
    let random = uuid::Uuid::new_v4().simple();
    match std::env::var("TALLY_TEST_RUN") {
        Ok(run) if is_run_id(&run) => format!("{prefix}_r{run}_{random}"),
        _ => format!("{prefix}_{random}"),
    }
}

/// A test run's id: 1 to 16 lowercase hex digits.
pub fn is_run_id(run: &str) -> bool {
    (1..=16).contains(&run.len())
        && run
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Drops every database of test run `run` on the server of `url`; returns
/// how many. Eight at a time: PostgreSQL checkpoints for each drop, and
/// concurrent drops share their checkpoints.
pub async fn drop_test_databases(url: &str, run: &str) -> anyhow::Result<usize> {
    use futures::{StreamExt, TryStreamExt};
    anyhow::ensure!(
        is_run_id(run),
        "a test run's id is 1 to 16 lowercase hex digits"
    );
    let options =
        PgConnectOptions::from_str(&with_database(url, "postgres"))?.disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("tally\\_%\\_r{run}\\_%"))
            .fetch_all(&pool)
            .await?;
    futures::stream::iter(&names)
        .map(|name| {
            let pool = &pool;
            async move {
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(pool)
                    .await
            }
        })
        .buffer_unordered(8)
        .try_collect::<Vec<_>>()
        .await?;
    pool.close().await;
    Ok(names.len())
}

/// Index ranges `[from, to)` of `items`, in order, each weighing at most
/// `limit` in all (by `weight`), or one heavier item on its own: the rows
/// of one set-based write, sent as several so that sqlx's copies of the
/// values bound (its arguments, then its message) stay small.
pub fn chunks<T>(items: &[T], limit: usize, weight: impl Fn(&T) -> usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut from, mut sum) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        let w = weight(item);
        if i > from && sum + w > limit {
            out.push((from, i));
            (from, sum) = (i, 0);
        }
        sum += w;
    }
    if from < items.len() {
        out.push((from, items.len()));
    }
    out
}

/// The JSON of `items`, serialised a chunk at a time: each chunk's range
/// `[from, to)` with its bodies, in order, the same chunks as [`chunks`]
/// over the bodies by their length. Only one chunk's bodies (and the next
/// item's) are held at a time, where serialising them all first held every
/// body beside its item.
pub fn json_chunks<T: serde::Serialize>(
    items: &[T],
    limit: usize,
) -> impl Iterator<Item = serde_json::Result<(std::ops::Range<usize>, Vec<String>)>> + '_ {
    let mut next = 0;
    // The body that would have passed the limit: it opens the next chunk.
    let mut carried: Option<String> = None;
    std::iter::from_fn(move || {
        let from = next - usize::from(carried.is_some());
        let mut bodies: Vec<String> = carried.take().into_iter().collect();
        let mut sum = bodies.first().map_or(0, String::len);
        while next < items.len() {
            let body = match serde_json::to_string(&items[next]) {
                Ok(body) => body,
                Err(err) => {
                    next = items.len();
                    return Some(Err(err));
                }
            };
            next += 1;
            if !bodies.is_empty() && sum + body.len() > limit {
                carried = Some(body);
                break;
            }
            sum += body.len();
            bodies.push(body);
        }
        (!bodies.is_empty()).then(|| Ok((from..from + bodies.len(), bodies)))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_weigh_at_most_the_limit_or_one_heavier_item() {
        let len = |n: &usize| *n;
        assert_eq!(super::chunks(&[], 10, len), []);
        assert_eq!(super::chunks(&[4, 6, 1], 10, len), [(0, 2), (2, 3)]);
        assert_eq!(
            super::chunks(&[11, 3, 3, 3, 2, 12], 10, len),
            [(0, 1), (1, 4), (4, 5), (5, 6)]
        );
        assert_eq!(super::chunks(&[5, 5, 5], 100, len), [(0, 3)]);
    }

    #[test]
    fn json_chunks_are_the_chunks_of_the_bodies_serialised_as_they_go() {
        // Bodies of 3, 5, 3, 4, 2, 12 and 3 bytes: "abc" is 5 with its quotes.
        let items = ["a", "abc", "b", "cc", "", "abcdefghij", "d"];
        let bodies: Vec<String> = items.iter().map(|i| format!("\"{i}\"")).collect();
        for limit in [1, 5, 8, 10, 12, 100] {
            let got: Vec<(std::ops::Range<usize>, Vec<String>)> = super::json_chunks(&items, limit)
                .collect::<Result<_, _>>()
                .unwrap();
            let want: Vec<(std::ops::Range<usize>, Vec<String>)> =
                super::chunks(&bodies, limit, String::len)
                    .into_iter()
                    .map(|(from, to)| (from..to, bodies[from..to].to_vec()))
                    .collect();
            assert_eq!(got, want, "limit {limit}");
        }
        assert_eq!(
            super::json_chunks(&items, 10)
                .map(|c| c.unwrap().0)
                .collect::<Vec<_>>(),
            [0..2, 2..5, 5..6, 6..7]
        );
        assert_eq!(super::json_chunks::<String>(&[], 10).count(), 0);
    }

    #[test]
    fn json_chunks_end_with_the_error_of_an_item_that_does_not_serialise() {
        // A map with a non-string key is no JSON object.
        let bad: std::collections::BTreeMap<(u8, u8), u8> = [((1, 2), 3)].into();
        let items = vec![Default::default(), bad, Default::default()];
        let got: Vec<_> = super::json_chunks(&items, 100).collect();
        assert_eq!(got.len(), 1);
        assert!(got[0].is_err());
    }

    use super::*;

    #[test]
    fn an_unreachable_or_slow_database_is_unavailable_not_a_bad_input() {
        assert!(is_unavailable(&sqlx::Error::PoolTimedOut));
        assert!(is_unavailable(&sqlx::Error::PoolClosed));
        assert!(is_unavailable(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!is_unavailable(&sqlx::Error::RowNotFound));
        assert!(!is_unavailable(&sqlx::Error::ColumnNotFound("x".into())));
    }
}
