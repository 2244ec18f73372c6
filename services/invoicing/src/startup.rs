//! Building and running invoicing: the statement consumer and the closer.

use rdkafka::consumer::Consumer;
use sqlx::PgPool;
use tally_platform::health::{Probe, Readiness};
use tally_platform::{kafka, telemetry, Config};
use tokio_util::sync::CancellationToken;

use crate::{consumer, lifecycle};

pub struct Application {
    config: Config,
    pool: PgPool,
    consumer: tally_platform::kafka::Consumer,
    producer: tally_platform::kafka::Producer,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        telemetry::metrics();
        let pool = tally_platform::db::connect_service(&config, "invoicing").await?;
        let consumer = kafka::statements_consumer(&config, &config.group("invoicing"))?;
        consumer.subscribe(&[&config.topics().statements])?;
        let producer = kafka::producer(&config)?;
        Ok(Application {
            config,
            pool,
            consumer,
            producer,
        })
    }

    /// What `/readyz` checks for this service.
    pub fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        readiness.add("invoicing.database", Probe::Database(self.pool.clone()));
        readiness.add("invoicing.kafka", Probe::Kafka(self.producer.clone()));
        readiness.add("invoicing.consumer", kafka::assigned(&self.consumer));
        readiness
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!("invoicing consuming statements");
        let consuming = tokio::spawn(consumer::run(
            self.pool.clone(),
            self.consumer,
            self.config.batch_max,
            self.config.batch_wait,
            shutdown.clone(),
        ));
        let telling = tokio::spawn(tally_platform::binding_outbox::run(
            self.pool.clone(),
            self.producer.clone(),
            self.config.topics().binding_events,
            self.config
                .webhook_key
                .as_deref()
                .map(tally_platform::binding_outbox::WebhookKey::new),
            shutdown.clone(),
        ));
        let closing = tokio::spawn(lifecycle::run(
            self.pool.clone(),
            self.producer,
            self.config.topics().usage_events,
            self.config.invoice_issuer.clone(),
            self.config.grace,
            self.config.close_every,
            shutdown.clone(),
        ));
        let consumed = consuming.await;
        // The consumer ends at shutdown, or on a panic: the closer with it.
        shutdown.cancel();
        closing.await?;
        telling.await?;
        consumed??;
        Ok(())
    }
}
