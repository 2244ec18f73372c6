//! The rating service: builds its pool, producer and consumer, and runs the
//! consumer loop (batches handled in [`crate::consume`]), the outbox sweep,
//! the credit restatements ([`crate::credit_restatements`]) and the dedupe
//! prune ([`crate::dedupe::run`]).

use rdkafka::consumer::Consumer;
use sqlx::PgPool;
use std::time::{Duration, Instant};
use tally_platform::config::Topics;
use tally_platform::health::{Probe, Readiness};
use tally_platform::{kafka, telemetry, Config};
use tokio_util::sync::CancellationToken;

use crate::{credit_restatements, dedupe, outbox};

/// How often statements left unpublished (by a crash elsewhere) are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub struct Application {
    pub(crate) config: Config,
    pub(crate) pool: PgPool,
    pub(crate) producer: tally_platform::kafka::Producer,
    /// Where statements go (the same producer).
    pub(crate) statements: outbox::StatementSink,
    pub(crate) consumer: tally_platform::kafka::Consumer,
    pub(crate) topics: Topics,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        // The recorder before the first batch: without it a process that
        // runs rating alone drops its counts until `/metrics` is first read.
        telemetry::metrics();
        let pool = tally_platform::db::connect_service(&config, "rating").await?;
        let producer = kafka::statements_producer(&config)?;
        let consumer = kafka::consumer(&config, &config.group("rating"))?;
        let topics = config.topics();
        consumer.subscribe(&[&topics.usage_events])?;
        let statements = outbox::StatementSink {
            producer: producer.clone(),
            topic: topics.statements.clone(),
            max_bytes: config.statement_max_bytes,
        };
        Ok(Application {
            config,
            pool,
            producer,
            statements,
            consumer,
            topics,
        })
    }

    /// What `/readyz` checks for this service.
    pub fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        readiness.add("rating.database", Probe::Database(self.pool.clone()));
        readiness.add("rating.kafka", Probe::Kafka(self.producer.clone()));
        readiness.add("rating.consumer", kafka::assigned(&self.consumer));
        readiness
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let published = outbox::publish_pending(&self.pool, &self.statements).await?;
        tracing::info!(published, "rating started");
        let restatements = tokio::spawn(credit_restatements::run(
            self.pool.clone(),
            self.statements.clone(),
            shutdown.clone(),
        ));
        let prune = self.config.dedupe_prune_every.map(|every| {
            tokio::spawn(dedupe::run(
                self.pool.clone(),
                self.config.dedupe_window(),
                every,
                shutdown.clone(),
            ))
        });
        let mut last_sweep = Instant::now();
        loop {
            let batch = tokio::select! {
                () = shutdown.cancelled() => break,
                batch = kafka::next_batch_within(
                    &self.consumer,
                    self.config.batch_max,
                    self.config.batch_wait,
                    SWEEP_EVERY,
                ) => batch,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(err) => {
                    kafka::after_consumer_error(&err).await;
                    continue;
                }
            };
            if !batch.is_empty() {
                self.handle_until_done(&batch, &shutdown).await;
                if shutdown.is_cancelled() {
                    break;
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                if let Err(err) = outbox::publish_pending(&self.pool, &self.statements).await {
                    tracing::warn!(error = %err, "statement sweep failed");
                }
            }
        }
        shutdown.cancel();
        if let Err(err) = restatements.await {
            tracing::error!(error = %err, "credit restatement task failed");
        }
        if let Some(Err(err)) = futures::future::OptionFuture::from(prune).await {
            tracing::error!(error = %err, "dedupe prune task failed");
        }
        tracing::info!("rating stopped");
        Ok(())
    }
}
