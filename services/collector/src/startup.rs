//! Building and running the collector's HTTP server.

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;
use tally_platform::{kafka, telemetry, Config};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ingest::{post_events, IngestState, MAX_BODY_BYTES};
use crate::lookup::Lookup;
use crate::sink::KafkaSink;

pub struct Application {
    listener: TcpListener,
    router: Router,
}

pub fn router(state: Arc<IngestState>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        .route("/healthz", get(telemetry::healthz))
        .route("/metrics", get(telemetry::metrics_endpoint))
        .layer(tower_http::trace::TraceLayer::new_for_http())
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
        let state = Arc::new(IngestState {
            lookup: Lookup::new(pool, config.collector_db_timeout, config.collector_remember),
            sink: Arc::new(KafkaSink::new(
                kafka::producer(&config)?,
                config.topics().usage_events,
            )),
            max_age: config.ingest_max_age,
            max_future: config.ingest_max_future,
        });
        let listener = TcpListener::bind(config.collector_addr).await?;
        Ok(Application {
            listener,
            router: router(state),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "collector listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await?;
        Ok(())
    }
}
