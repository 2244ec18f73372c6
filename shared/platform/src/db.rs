//! PostgreSQL: pool, migrations, database creation.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    pool_of(options, max_connections).await
}

/// Like [`connect`], for a service: its connections carry the application
/// name `tally-<service>` (in `pg_stat_activity` and the server's logs),
/// unless the URL names one.
pub async fn connect_service(
    url: &str,
    max_connections: u32,
    service: &str,
) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(url)?.disable_statement_logging();
    if !url.contains("application_name=") {
        options = options.application_name(&format!("tally-{service}"));
    }
    pool_of(options, max_connections).await
}

async fn pool_of(options: PgConnectOptions, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
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

/// Name of the violated constraint, if any: callers map it to a domain error.
pub fn violated_constraint(err: &sqlx::Error) -> Option<&str> {
    err.as_database_error().and_then(|e| e.constraint())
}
