//! The `tally` CLI: runs the pipeline on the embedded default, seeds and
//! drives the demo, and manages the catalog from the command line.

pub mod admin;
pub mod bench;
pub mod demo;
pub mod dlq;
pub mod import;
pub mod infra;
pub mod up;

use tally_platform::Config;

/// The configuration from the environment, with PostgreSQL and (when
/// `broker`) the broker filled in by the embedded default where
/// `DATABASE_URL` / `KAFKA_BROKERS` are not set.
pub async fn embedded_config(
    embedded: &mut infra::Embedded,
    broker: bool,
) -> anyhow::Result<Config> {
    let mut config = Config::from_env()?;
    config.database_url = infra::ensure_postgres().await?;
    if broker {
        config.kafka_brokers = infra::ensure_broker(embedded).await?;
    }
    Ok(config)
}

/// The configuration from the environment, which must name the database
/// (and the brokers, when `kafka`): nothing local is started without
/// `--embedded`.
pub fn explicit_config(kafka: bool) -> anyhow::Result<Config> {
    let mut needed = vec![(
        "DATABASE_URL",
        "PostgreSQL (or DATABASE_URL_FILE, a file holding it)",
    )];
    if kafka {
        needed.push(("KAFKA_BROKERS", "the Kafka bootstrap servers"));
    }
    for (name, what) in needed {
        if tally_platform::config::secret(name)?.is_none() {
            anyhow::bail!(
                "{name} is not set: set it to {what}, or pass --embedded to use a local one \
                 (started if none runs; for development)"
            );
        }
    }
    Ok(Config::from_env()?)
}
