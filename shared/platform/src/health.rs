//! The admin port: `/healthz` (the process is alive), `/readyz` (it can do
//! its work: its database and brokers answer, its consumers are in their
//! groups) and `/metrics` (Prometheus), on an address of its own
//! (`TALLY_ADMIN_ADDR`), apart from the public API.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::kafka::Producer;
use crate::telemetry;

/// How long one readiness check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One thing a service needs to do its work.
#[derive(Clone)]
pub enum Probe {
    /// The pool hands out a connection that answers `SELECT 1`.
    Database(PgPool),
    /// The brokers answer a metadata request (through this client).
    Kafka(Producer),
    /// The consumer has an assignment from its group (possibly empty, when
    /// the group has more members than partitions).
    Consumer(Arc<AtomicBool>),
}

impl Probe {
    async fn check(&self) -> Result<(), String> {
        match self {
            Probe::Database(pool) => {
                match tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(pool))
                    .await
                {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(err)) => Err(err.to_string()),
                    Err(_) => Err(format!("no answer within {CHECK_TIMEOUT:?}")),
                }
            }
            Probe::Kafka(producer) => {
                let producer = producer.clone();
                tokio::task::spawn_blocking(move || {
                    use rdkafka::producer::Producer as _;
                    producer
                        .client()
                        .fetch_metadata(None, CHECK_TIMEOUT)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                })
                .await
                .map_err(|e| e.to_string())?
            }
            Probe::Consumer(assigned) => {
                if assigned.load(Ordering::Relaxed) {
                    Ok(())
                } else {
                    Err("no partition assignment from the consumer group yet".into())
                }
            }
        }
    }
}

/// The probes of the services in this process, each named `service.what`.
#[derive(Clone, Default)]
pub struct Readiness {
    probes: Vec<(String, Probe)>,
}

impl Readiness {
    pub fn add(&mut self, name: impl Into<String>, probe: Probe) {
        self.probes.push((name.into(), probe));
    }

    pub fn extend(&mut self, other: Readiness) {
        self.probes.extend(other.probes);
    }

    /// Every check, side by side; ready when all pass.
    pub async fn check(&self) -> (bool, Value) {
        let results =
            futures::future::join_all(self.probes.iter().map(|(_, probe)| probe.check())).await;
        let mut checks = Map::new();
        let mut ready = true;
        for ((name, _), result) in self.probes.iter().zip(results) {
            let value = match result {
                Ok(()) => json!("ok"),
                Err(reason) => {
                    ready = false;
                    json!({ "error": reason })
                }
            };
            checks.insert(name.clone(), value);
        }
        (ready, json!({"ready": ready, "checks": checks}))
    }
}

/// What `/readyz` answers (its schema in the OpenAPI document).
pub struct ReadinessBody;

impl utoipa::PartialSchema for ReadinessBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        let schema = serde_json::json!({
            "type": "object",
            "required": ["ready", "checks"],
            "properties": {
                "ready": {"type": "boolean"},
                "checks": {
                    "type": "object",
                    "description": "One entry per check, named service.what (rating.database, rating.kafka, rating.consumer, …): \"ok\", or an object with the error",
                    "additionalProperties": {"oneOf": [
                        {"type": "string", "enum": ["ok"]},
                        {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
                    ]},
                },
            },
        });
        serde_json::from_value(schema).unwrap_or_default()
    }
}

impl utoipa::ToSchema for ReadinessBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "Readiness".into()
    }
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    summary = "Readiness: the process's database, brokers and consumer groups answer (admin address only)",
    responses(
        (status = 200, description = "Ready", body = ReadinessBody),
        (status = 503, description = "Not ready; each failing check says why", body = ReadinessBody),
    ),
)]
async fn readyz(State(readiness): State<Arc<Readiness>>) -> (StatusCode, Json<Value>) {
    let (ready, body) = readiness.check().await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/readyz", get(readyz))
        .with_state(Arc::new(readiness))
        .route("/healthz", get(telemetry::healthz))
        .route("/metrics", get(telemetry::metrics_endpoint))
}

/// The admin server, bound: `serve` runs it until `shutdown`.
pub struct AdminServer {
    listener: TcpListener,
    router: Router,
}

impl AdminServer {
    pub async fn bind(addr: SocketAddr, readiness: Readiness) -> std::io::Result<AdminServer> {
        Ok(AdminServer {
            listener: TcpListener::bind(addr).await?,
            router: router(readiness),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        tracing::info!(port = self.port(), "admin endpoints listening");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}
