//! Configuration from the environment. Every knob has a default that works
//! on a developer machine; production sets `DATABASE_URL` and `KAFKA_BROKERS`.

use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {value:?} ({reason})")]
pub struct ConfigError {
    name: &'static str,
    value: String,
    reason: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// PostgreSQL connection string (`DATABASE_URL`).
    pub database_url: String,
    /// Kafka bootstrap servers (`KAFKA_BROKERS`).
    pub kafka_brokers: String,
    /// Prefix of every topic name (`TALLY_TOPIC_PREFIX`), so several pipelines
    /// (or tests) can share one broker.
    pub topic_prefix: String,
    /// Prefix of consumer group ids (`TALLY_GROUP_PREFIX`).
    pub group_prefix: String,
    /// Partitions of `usage.events` when Tally creates it (`TALLY_USAGE_PARTITIONS`).
    pub usage_partitions: i32,
    /// Replication factor of the topics Tally creates
    /// (`TALLY_TOPIC_REPLICATION`); unset, the broker's
    /// `default.replication.factor` applies.
    pub topic_replication: Option<i32>,
    pub collector_addr: SocketAddr,
    pub invoicing_addr: SocketAddr,
    /// Consumer group session timeout (`TALLY_KAFKA_SESSION_TIMEOUT_MS`).
    pub kafka_session_timeout: Duration,
    /// How long a consumer may go without polling, e.g. while it retries a
    /// batch during a database outage, before it leaves its group
    /// (`TALLY_KAFKA_MAX_POLL_INTERVAL_MS`).
    pub kafka_max_poll_interval: Duration,
    /// Events older than this are refused at ingest (`TALLY_INGEST_MAX_AGE_HOURS`);
    /// event ids are kept at least this long for dedupe.
    pub ingest_max_age: Duration,
    /// Events further than this in the future are refused (`TALLY_INGEST_MAX_FUTURE_SECS`).
    pub ingest_max_future: Duration,
    /// Rating and invoicing close a batch at this many messages (`TALLY_BATCH_MAX`)…
    pub batch_max: usize,
    /// …or after this long (`TALLY_BATCH_WAIT_MS`).
    pub batch_wait: Duration,
    /// Rating rates a batch in this many lanes at once, each a share of the
    /// partitions in its own transactions (`TALLY_RATING_LANES`, default 1:
    /// on the 2-core bench machine, where PostgreSQL shares the cores, two
    /// lanes measured no faster; see BENCHMARKS.md).
    pub rating_lanes: usize,
    pub db_max_connections: u32,
    /// How long a service waits for a database connection before the work
    /// that needs it fails and is retried (`TALLY_DB_ACQUIRE_TIMEOUT_MS`).
    pub db_acquire_timeout: Duration,
    /// PostgreSQL cancels a statement of the pool's after this long
    /// (`statement_timeout`, and `lock_timeout` likewise); none when unset.
    pub db_statement_timeout: Option<Duration>,
    /// How long the collector waits for PostgreSQL to check a POST before it
    /// answers from what it read before (`TALLY_COLLECTOR_DB_TIMEOUT_MS`).
    pub collector_db_timeout: Duration,
    /// While PostgreSQL is out of reach, the collector accepts usage checked
    /// against keys and catalog entries it read within this window
    /// (`TALLY_COLLECTOR_REMEMBER_SECS`): the bound on how long a key
    /// revoked just before an outage keeps working.
    pub collector_remember: Duration,
    /// How long after its end a period waits for late usage before invoicing
    /// seals it (`TALLY_GRACE_HOURS`, default 48).
    pub grace: Duration,
    /// How often invoicing looks for periods to seal (`TALLY_CLOSE_EVERY_SECS`,
    /// default 60; 0 turns the closer off, e.g. for a replica that only serves).
    pub close_every: Option<Duration>,
    /// Prefix of invoice and credit note numbers (`TALLY_INVOICE_ISSUER`, default `TLY`).
    pub invoice_issuer: String,
    /// Secret that signs bill links and bill-page sessions (`TALLY_LINK_SECRET`).
    /// Without it each invoicing process draws a random one, so links do not
    /// survive a restart and do not work across instances.
    pub link_secret: Option<String>,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tally";
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.into(),
            kafka_brokers: DEFAULT_KAFKA_BROKERS.into(),
            topic_prefix: String::new(),
            group_prefix: "tally".into(),
            usage_partitions: 8,
            topic_replication: None,
            collector_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            invoicing_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            kafka_session_timeout: Duration::from_secs(10),
            kafka_max_poll_interval: Duration::from_secs(300),
            ingest_max_age: Duration::from_secs(35 * 24 * 3600),
            ingest_max_future: Duration::from_secs(300),
            // `tally bench`: 20,000 over 5,000 raised end-to-end throughput and
            // lowered freshness (a batch restates each touched account once).
            batch_max: 20_000,
            batch_wait: Duration::from_millis(100),
            rating_lanes: 1,
            db_max_connections: 10,
            db_acquire_timeout: Duration::from_secs(30),
            db_statement_timeout: None,
            collector_db_timeout: Duration::from_secs(2),
            collector_remember: Duration::from_secs(300),
            grace: Duration::from_secs(48 * 3600),
            close_every: Some(Duration::from_secs(60)),
            invoice_issuer: "TLY".into(),
            link_secret: None,
        }
    }
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn parsed<T: std::str::FromStr>(name: &'static str) -> Result<Option<T>, ConfigError>
where
    T::Err: std::fmt::Display,
{
    var(name)
        .map(|value| {
            value.trim().parse::<T>().map_err(|e| ConfigError {
                name,
                reason: e.to_string(),
                value,
            })
        })
        .transpose()
}

impl Config {
    /// Reads the environment over the defaults.
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Config::default();
        let config = Self {
            database_url: var("DATABASE_URL").unwrap_or(d.database_url),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or(d.kafka_brokers),
            topic_prefix: var("TALLY_TOPIC_PREFIX").unwrap_or(d.topic_prefix),
            group_prefix: var("TALLY_GROUP_PREFIX").unwrap_or(d.group_prefix),
            usage_partitions: parsed("TALLY_USAGE_PARTITIONS")?.unwrap_or(d.usage_partitions),
            topic_replication: match parsed::<i32>("TALLY_TOPIC_REPLICATION")? {
                Some(n) if n < 1 => {
                    return Err(ConfigError {
                        name: "TALLY_TOPIC_REPLICATION",
                        reason: "must be at least 1".into(),
                        value: n.to_string(),
                    })
                }
                n => n,
            },
            collector_addr: parsed("TALLY_COLLECTOR_ADDR")?.unwrap_or(d.collector_addr),
            invoicing_addr: parsed("TALLY_INVOICING_ADDR")?.unwrap_or(d.invoicing_addr),
            kafka_session_timeout: parsed("TALLY_KAFKA_SESSION_TIMEOUT_MS")?
                .map(Duration::from_millis)
                .unwrap_or(d.kafka_session_timeout),
            kafka_max_poll_interval: parsed("TALLY_KAFKA_MAX_POLL_INTERVAL_MS")?
                .map(Duration::from_millis)
                .unwrap_or(d.kafka_max_poll_interval),
            ingest_max_age: parsed::<u64>("TALLY_INGEST_MAX_AGE_HOURS")?
                .map(|h| Duration::from_secs(h * 3600))
                .unwrap_or(d.ingest_max_age),
            ingest_max_future: parsed("TALLY_INGEST_MAX_FUTURE_SECS")?
                .map(Duration::from_secs)
                .unwrap_or(d.ingest_max_future),
            batch_max: parsed("TALLY_BATCH_MAX")?.unwrap_or(d.batch_max),
            batch_wait: parsed("TALLY_BATCH_WAIT_MS")?
                .map(Duration::from_millis)
                .unwrap_or(d.batch_wait),
            rating_lanes: match parsed::<usize>("TALLY_RATING_LANES")? {
                Some(0) => {
                    return Err(ConfigError {
                        name: "TALLY_RATING_LANES",
                        reason: "must be at least 1".into(),
                        value: "0".into(),
                    })
                }
                Some(n) => n,
                None => d.rating_lanes,
            },
            db_max_connections: parsed("TALLY_DB_MAX_CONNECTIONS")?.unwrap_or(d.db_max_connections),
            db_acquire_timeout: parsed("TALLY_DB_ACQUIRE_TIMEOUT_MS")?
                .map(Duration::from_millis)
                .unwrap_or(d.db_acquire_timeout),
            db_statement_timeout: d.db_statement_timeout,
            collector_db_timeout: parsed("TALLY_COLLECTOR_DB_TIMEOUT_MS")?
                .map(Duration::from_millis)
                .unwrap_or(d.collector_db_timeout),
            collector_remember: parsed("TALLY_COLLECTOR_REMEMBER_SECS")?
                .map(Duration::from_secs)
                .unwrap_or(d.collector_remember),
            grace: parsed::<u64>("TALLY_GRACE_HOURS")?
                .map(|h| Duration::from_secs(h * 3600))
                .unwrap_or(d.grace),
            close_every: match parsed::<u64>("TALLY_CLOSE_EVERY_SECS")? {
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
                None => d.close_every,
            },
            invoice_issuer: match var("TALLY_INVOICE_ISSUER") {
                Some(issuer) if !issuer.chars().all(|c| c.is_ascii_alphanumeric()) => {
                    return Err(ConfigError {
                        name: "TALLY_INVOICE_ISSUER",
                        value: issuer,
                        reason: "letters and digits only".into(),
                    })
                }
                Some(issuer) => issuer,
                None => d.invoice_issuer,
            },
            link_secret: var("TALLY_LINK_SECRET"),
        };
        config.validated()
    }

    /// Settings that are only wrong together.
    fn validated(self) -> Result<Self, ConfigError> {
        // Each lane holds a connection for its transaction; the credit
        // restatements and publishing need theirs beside them.
        if self.rating_lanes + 2 > self.db_max_connections as usize {
            return Err(ConfigError {
                name: "TALLY_RATING_LANES",
                value: self.rating_lanes.to_string(),
                reason: format!(
                    "needs at least {} database connections (TALLY_DB_MAX_CONNECTIONS is {})",
                    self.rating_lanes + 2,
                    self.db_max_connections
                ),
            });
        }
        Ok(self)
    }

    pub fn topics(&self) -> Topics {
        Topics::with_prefix(&self.topic_prefix)
    }

    pub fn group(&self, service: &str) -> String {
        format!("{}-{service}", self.group_prefix)
    }
}

/// Topic names, each with the configured prefix.
#[derive(Debug, Clone)]
pub struct Topics {
    pub usage_events: String,
    pub usage_dlq: String,
    pub statements: String,
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            usage_events: format!("{prefix}usage.events"),
            usage_dlq: format!("{prefix}usage.events.dlq"),
            statements: format!("{prefix}billing.statements"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rating_lanes_must_leave_connections_for_the_rest() {
        let fits = Config {
            rating_lanes: 8,
            db_max_connections: 10,
            ..Config::default()
        };
        assert_eq!(fits.validated().map(|c| c.rating_lanes).ok(), Some(8));
        let too_many = Config {
            rating_lanes: 9,
            db_max_connections: 10,
            ..Config::default()
        };
        assert_eq!(
            too_many.validated().map(|_| ()).map_err(|e| e.to_string()),
            Err("invalid value for TALLY_RATING_LANES: \"9\" (needs at least 11 database connections (TALLY_DB_MAX_CONNECTIONS is 10))".to_owned())
        );
        assert!(Config::default().validated().is_ok());
    }
}
