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
    /// librdkafka properties for every client (`TALLY_KAFKA_<PROPERTY>`):
    /// security settings and any other.
    pub kafka_properties: KafkaProperties,
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
    /// `min.insync.replicas` of the topics Tally creates
    /// (`TALLY_TOPIC_MIN_INSYNC_REPLICAS`); unset, the broker's default.
    pub topic_min_insync_replicas: Option<u32>,
    /// `retention.ms` of the topics Tally creates (`TALLY_TOPIC_RETENTION_HOURS`);
    /// unset, the broker's default. Keep `usage.events` at least the late-usage
    /// window, so a restored database can be brought forward by replaying it.
    pub topic_retention: Option<Duration>,
    pub collector_addr: SocketAddr,
    /// The HTTP API (`TALLY_API_ADDR`; `TALLY_INVOICING_ADDR`, its former
    /// name, when that is unset).
    pub api_addr: SocketAddr,
    /// `/healthz`, `/readyz` and `/metrics` of the process
    /// (`TALLY_ADMIN_ADDR`; `off` serves none).
    pub admin_addr: Option<SocketAddr>,
    /// After SIGTERM, how long the process may take to finish its batch,
    /// commit and leave its groups (`TALLY_SHUTDOWN_TIMEOUT_SECS`).
    pub shutdown_timeout: Duration,
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
    /// How long an accepted event may wait in Kafka (or clocks disagree)
    /// and still be rated (`TALLY_DEDUPE_MARGIN_HOURS`, default 72): rating
    /// rates event times within the ingest window widened by this much on
    /// either side; see [`Config::dedupe_window`].
    pub dedupe_margin: Duration,
    /// How many days each partition of the dedupe table spans
    /// (`TALLY_DEDUPE_PARTITION_DAYS`; 0, the default: the whole window).
    pub dedupe_partition_days: u32,
    /// How often rating creates the dedupe table's next partition and drops
    /// those out of the window (`TALLY_DEDUPE_PRUNE_EVERY_SECS`, default
    /// 3600; 0 turns it off, e.g. when `tally dedupe prune` runs from cron).
    pub dedupe_prune_every: Option<Duration>,
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
    /// default 60; 0 turns the closer off, e.g. for a second invoicing instance).
    pub close_every: Option<Duration>,
    /// Prefix of invoice and credit note numbers (`TALLY_INVOICE_ISSUER`, default `TLY`).
    pub invoice_issuer: String,
    /// Secret that signs bill links and bill-page sessions (`TALLY_LINK_SECRET`,
    /// or a file named by `TALLY_LINK_SECRET_FILE`).
    /// Without it each API process draws a random one, so links do not
    /// survive a restart and do not work across instances.
    pub link_secret: Option<String>,
    /// The platform's webhook key (`TALLY_WEBHOOK_KEY`, or a file named by
    /// `TALLY_WEBHOOK_KEY_FILE`): each provider's webhook signing secret
    /// derives from it ([`crate::binding_outbox`]). Without it binding
    /// events are published on Kafka but not delivered to webhooks.
    pub webhook_key: Option<String>,
    /// How long before it takes effect a partner must publish a new price
    /// version of a SKU already priced (`TALLY_PRICE_NOTICE_SECS`, default
    /// 0: none); one with less notice is refused (`price_notice_too_short`).
    pub price_notice: Duration,
    /// The largest statement body (its JSON, in bytes) rating publishes
    /// whole on `billing.statements` (`TALLY_STATEMENT_MAX_BYTES`, default
    /// [`crate::kafka::STATEMENT_MAX_BYTES`]); a larger one is published as
    /// a reference to the version stored in PostgreSQL
    /// ([`crate::statements`]). The statements producer, the topic Tally
    /// creates and invoicing's consumer are sized from it.
    pub statement_max_bytes: usize,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/tally";
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:9092";

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.into(),
            kafka_brokers: DEFAULT_KAFKA_BROKERS.into(),
            kafka_properties: KafkaProperties::default(),
            topic_prefix: String::new(),
            group_prefix: "tally".into(),
            usage_partitions: 8,
            topic_replication: None,
            topic_min_insync_replicas: None,
            topic_retention: None,
            collector_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            api_addr: SocketAddr::from(([127, 0, 0, 1], 8081)),
            admin_addr: Some(SocketAddr::from(([127, 0, 0, 1], 8090))),
            shutdown_timeout: Duration::from_secs(30),
            kafka_session_timeout: Duration::from_secs(10),
            kafka_max_poll_interval: Duration::from_secs(300),
            ingest_max_age: Duration::from_secs(35 * 24 * 3600),
            ingest_max_future: Duration::from_secs(300),
            dedupe_margin: Duration::from_secs(72 * 3600),
            dedupe_partition_days: 0,
            dedupe_prune_every: Some(Duration::from_secs(3600)),
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
            webhook_key: None,
            price_notice: Duration::ZERO,
            statement_max_bytes: crate::kafka::STATEMENT_MAX_BYTES,
        }
    }
}

fn var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `NAME`, or the contents of the file `NAME_FILE` names (a mounted secret;
/// one trailing newline dropped).
pub fn secret(name: &'static str) -> Result<Option<String>, ConfigError> {
    if let Some(value) = var(name) {
        return Ok(Some(value));
    }
    let file_var = format!("{name}_FILE");
    match std::env::var(&file_var)
        .ok()
        .filter(|v| !v.trim().is_empty())
    {
        Some(path) => read_secret(&path).map(Some).map_err(|reason| ConfigError {
            name,
            value: format!("{file_var}={path}"),
            reason,
        }),
        None => Ok(None),
    }
}

fn read_secret(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let text = text.strip_suffix('\n').unwrap_or(&text);
    Ok(text.strip_suffix('\r').unwrap_or(text).to_owned())
}

/// librdkafka properties given as `TALLY_KAFKA_<PROPERTY>`: the property in
/// capitals, dots as underscores (`TALLY_KAFKA_SECURITY_PROTOCOL=SASL_SSL`
/// is `security.protocol`). `TALLY_KAFKA_<PROPERTY>_FILE` reads the value
/// from a file (`TALLY_KAFKA_SASL_PASSWORD_FILE=/run/secrets/kafka`).
/// Values are never shown (`Debug` names the properties only).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KafkaProperties(Vec<(String, String)>);

/// Tally's own `TALLY_KAFKA_*` settings, not librdkafka properties.
const OWN_KAFKA_SETTINGS: [&str; 4] =
    ["SESSION_TIMEOUT_MS", "MAX_POLL_INTERVAL_MS", "HEAP", "HOME"];

/// Properties Tally sets itself because its guarantees rest on them: a
/// 202 is on every in-sync replica, offsets are committed only after the
/// database, a new group reads from the start, every instance is a member
/// of its own.
const FIXED_KAFKA_PROPERTIES: [&str; 8] = [
    "bootstrap.servers",
    "acks",
    "enable.idempotence",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
    "group.id",
    "group.instance.id",
];

impl KafkaProperties {
    pub fn from_vars(vars: impl Iterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let mut properties = Vec::new();
        for (name, value) in vars {
            let Some(rest) = name.strip_prefix("TALLY_KAFKA_") else {
                continue;
            };
            let (rest, from_file) = match rest.strip_suffix("_FILE") {
                Some(rest) => (rest, true),
                None => (rest, false),
            };
            if OWN_KAFKA_SETTINGS.contains(&rest) || rest.is_empty() {
                continue;
            }
            let property = rest.to_ascii_lowercase().replace('_', ".");
            let refuse = |reason: String| ConfigError {
                name: "TALLY_KAFKA_*",
                value: name.clone(),
                reason,
            };
            if FIXED_KAFKA_PROPERTIES.contains(&property.as_str()) {
                return Err(refuse(format!(
                    "Tally sets {property} itself (use KAFKA_BROKERS for the servers)"
                )));
            }
            let value = if from_file {
                read_secret(&value).map_err(refuse)?
            } else {
                value
            };
            if properties.iter().any(|(p, _)| *p == property) {
                return Err(refuse(format!(
                    "{property} is given twice (TALLY_KAFKA_{rest} and TALLY_KAFKA_{rest}_FILE)"
                )));
            }
            properties.push((property, value));
        }
        properties.sort();
        Ok(KafkaProperties(properties))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|(k, _)| format!("{k}=…")))
            .finish()
    }
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
            database_url: secret("DATABASE_URL")?.unwrap_or(d.database_url),
            kafka_brokers: var("KAFKA_BROKERS").unwrap_or(d.kafka_brokers),
            kafka_properties: KafkaProperties::from_vars(std::env::vars())?,
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
            topic_min_insync_replicas: parsed("TALLY_TOPIC_MIN_INSYNC_REPLICAS")?,
            topic_retention: parsed::<u64>("TALLY_TOPIC_RETENTION_HOURS")?
                .map(|h| Duration::from_secs(h * 3600)),
            collector_addr: parsed("TALLY_COLLECTOR_ADDR")?.unwrap_or(d.collector_addr),
            api_addr: match parsed("TALLY_API_ADDR")? {
                Some(addr) => addr,
                None => parsed("TALLY_INVOICING_ADDR")?.unwrap_or(d.api_addr),
            },
            admin_addr: match var("TALLY_ADMIN_ADDR") {
                Some(off) if off.trim() == "off" => None,
                Some(_) => parsed("TALLY_ADMIN_ADDR")?,
                None => d.admin_addr,
            },
            shutdown_timeout: parsed("TALLY_SHUTDOWN_TIMEOUT_SECS")?
                .map(Duration::from_secs)
                .unwrap_or(d.shutdown_timeout),
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
            dedupe_margin: parsed::<u64>("TALLY_DEDUPE_MARGIN_HOURS")?
                .map(|h| Duration::from_secs(h.saturating_mul(3600)))
                .unwrap_or(d.dedupe_margin),
            dedupe_partition_days: parsed("TALLY_DEDUPE_PARTITION_DAYS")?
                .unwrap_or(d.dedupe_partition_days),
            dedupe_prune_every: match parsed::<u64>("TALLY_DEDUPE_PRUNE_EVERY_SECS")? {
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
                None => d.dedupe_prune_every,
            },
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
            link_secret: secret("TALLY_LINK_SECRET")?,
            webhook_key: secret("TALLY_WEBHOOK_KEY")?,
            price_notice: parsed("TALLY_PRICE_NOTICE_SECS")?
                .map(Duration::from_secs)
                .unwrap_or(d.price_notice),
            statement_max_bytes: match parsed::<usize>("TALLY_STATEMENT_MAX_BYTES")? {
                Some(n) if n > crate::kafka::STATEMENT_MAX_BYTES_CEILING => {
                    return Err(ConfigError {
                        name: "TALLY_STATEMENT_MAX_BYTES",
                        reason: format!(
                            "at most {} (larger statements are published by reference)",
                            crate::kafka::STATEMENT_MAX_BYTES_CEILING
                        ),
                        value: n.to_string(),
                    })
                }
                Some(n) => n,
                None => d.statement_max_bytes,
            },
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

    /// The dedupe window: the one place it is made from the configuration
    /// (`TALLY_INGEST_MAX_AGE_HOURS`, `TALLY_INGEST_MAX_FUTURE_SECS`,
    /// `TALLY_DEDUPE_MARGIN_HOURS`, `TALLY_DEDUPE_PARTITION_DAYS`). Its `cutoff(now)` is the oldest event
    /// time rating rates and whose id is remembered.
    pub fn dedupe_window(&self) -> tally_domain::DedupeWindow {
        tally_domain::DedupeWindow::new(
            self.ingest_max_age,
            self.ingest_max_future,
            self.dedupe_margin,
        )
        .with_partition_days(self.dedupe_partition_days)
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
    /// Usage CloudEvents produced straight to Kafka by first-party services.
    pub usage_ingest: String,
    /// What the collector refused from `usage_ingest`, with code and reason.
    pub usage_ingest_rejects: String,
    pub usage_events: String,
    pub usage_dlq: String,
    pub statements: String,
    /// Binding lifecycle events (key = binding id).
    pub binding_events: String,
}

impl Topics {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            usage_ingest: format!("{prefix}usage.ingest"),
            usage_ingest_rejects: format!("{prefix}usage.ingest.rejects"),
            usage_events: format!("{prefix}usage.events"),
            usage_dlq: format!("{prefix}usage.events.dlq"),
            statements: format!("{prefix}billing.statements"),
            binding_events: format!("{prefix}bindings.events"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn kafka_properties_map_from_the_environment_and_files() {
        let secret = std::env::temp_dir().join(format!("tally-secret-{}", std::process::id()));
        std::fs::write(&secret, "s3cret\n").unwrap();
        let props = KafkaProperties::from_vars(vars(&[
            ("TALLY_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("TALLY_KAFKA_SASL_MECHANISMS", "SCRAM-SHA-512"),
            ("TALLY_KAFKA_SASL_PASSWORD_FILE", secret.to_str().unwrap()),
            ("TALLY_KAFKA_SESSION_TIMEOUT_MS", "6000"),
            ("TALLY_KAFKA_HEAP", "1g"),
            ("TALLY_TOPIC_PREFIX", "x."),
        ]))
        .unwrap();
        let got: Vec<(&str, &str)> = props.iter().collect();
        assert_eq!(
            got,
            [
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.password", "s3cret"),
                ("security.protocol", "SASL_SSL")
            ]
        );
        // Values never show in Debug output.
        assert_eq!(
            format!("{props:?}"),
            "[\"sasl.mechanisms=…\", \"sasl.password=…\", \"security.protocol=…\"]"
        );
        std::fs::remove_file(&secret).unwrap();
    }

    #[test]
    fn kafka_properties_tally_relies_on_cannot_be_overridden() {
        let err = KafkaProperties::from_vars(vars(&[("TALLY_KAFKA_ACKS", "1")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value for TALLY_KAFKA_*: \"TALLY_KAFKA_ACKS\" (Tally sets acks itself (use KAFKA_BROKERS for the servers))"
        );
        let err = KafkaProperties::from_vars(vars(&[("TALLY_KAFKA_AUTO_OFFSET_RESET", "latest")]))
            .unwrap_err();
        assert!(err
            .to_string()
            .contains("Tally sets auto.offset.reset itself"));
        let err = KafkaProperties::from_vars(vars(&[
            ("TALLY_KAFKA_SASL_USERNAME", "a"),
            ("TALLY_KAFKA_SASL_USERNAME_FILE", "/dev/null"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string().contains("sasl.username is given twice"),
            "{err}"
        );
        let err = KafkaProperties::from_vars(vars(&[(
            "TALLY_KAFKA_SSL_KEY_PASSWORD_FILE",
            "/nonexistent/tally",
        )]))
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid value for TALLY_KAFKA_*: \"TALLY_KAFKA_SSL_KEY_PASSWORD_FILE\" (cannot read /nonexistent/tally"));
    }

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
