//! Building and running the collector's HTTP server.

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use tally_platform::health::{Probe, Readiness};
use tally_platform::{kafka, telemetry, Config};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::corrections;
use crate::error::ApiError;
use crate::ingest::{post_events, IngestState, MAX_BODY_BYTES};
use crate::kafka_ingest::KafkaIngest;
use crate::lookup::Lookup;
use crate::sink::KafkaSink;
use crate::upload::{post_import, MAX_IMPORT_BYTES};

pub struct Application {
    listener: TcpListener,
    router: Router,
    readiness: Readiness,
    /// The consumer of `usage.ingest`, beside the HTTP server.
    kafka_ingest: KafkaIngest,
}

/// `POST /v1/events` authenticates before it reads the body (`ingest`);
/// the router's own answers (no such route, another method) are JSON with a
/// code too.
pub fn router(state: Arc<IngestState>) -> Router {
    let imports = Router::new().route("/v1/imports", post(post_import)).layer(
        tower_http::limit::RequestBodyLimitLayer::new(MAX_IMPORT_BYTES),
    );
    Router::new()
        .route("/v1/events", post(post_events))
        .route("/v1/events/{id}/cancel", post(corrections::cancel))
        .route("/v1/events/{id}/amend", post(corrections::amend))
        .route("/v1/backfills", post(corrections::backfill))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .merge(imports)
        .with_state(state)
        .route("/healthz", get(telemetry::healthz))
        .fallback(|| async { ApiError::UnknownRoute })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span::<axum::body::Body>),
        )
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        telemetry::metrics();
        // A POST waits for PostgreSQL at most `collector_db_timeout` (a
        // connection, a statement or a lock), then answers from what it read
        // before (`lookup`).
        let db = Config {
            db_acquire_timeout: config.collector_db_timeout,
            db_statement_timeout: Some(config.collector_db_timeout),
            ..config.clone()
        };
        let pool = tally_platform::db::connect_service(&db, "collector").await?;
        let producer = kafka::producer(&config)?;
        // Ready while the brokers answer: the collector keeps taking usage
        // while PostgreSQL is down (`lookup`), so the database is not
        // among its probes.
        let mut readiness = Readiness::default();
        readiness.add("collector.kafka", Probe::Kafka(producer.clone()));
        let lookup = Lookup::new(pool, config.collector_db_timeout, config.collector_remember);
        let sink = Arc::new(KafkaSink::new(producer, config.topics().usage_events));
        let kafka_ingest = KafkaIngest::new(&config, lookup.clone(), sink.clone())?;
        let state = Arc::new(IngestState {
            lookup,
            sink,
            max_age: config.ingest_max_age,
            max_future: config.ingest_max_future,
        });
        let listener = TcpListener::bind(config.collector_addr).await?;
        Ok(Application {
            listener,
            router: router(state),
            readiness,
            kafka_ingest,
        })
    }

    /// What `/readyz` checks for this service.
    pub fn readiness(&self) -> Readiness {
        self.readiness.clone()
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "collector listening");
        let stopped = shutdown.clone();
        let http = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stopped.cancelled().await });
        let (http, kafka) = tokio::join!(http, self.kafka_ingest.run(shutdown));
        http?;
        kafka
    }
}
