//! Logs (readable in dev, JSON with `TALLY_LOG_FORMAT=json`) and Prometheus metrics.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use tracing_subscriber::{fmt, EnvFilter};

/// Installs the global log subscriber once; later calls do nothing.
pub fn init_logging() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let filter = EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
        let json = std::env::var("TALLY_LOG_FORMAT").is_ok_and(|v| v == "json");
        let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
        let _ = if json {
            builder.json().try_init()
        } else {
            builder.try_init()
        };
    });
}

/// The process-wide Prometheus recorder; `/metrics` renders it.
pub fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (e.g. by an embedding
        // program); then this handle simply renders nothing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Axum handler for `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "meta",
    summary = "Prometheus metrics (admin address only)",
    responses((status = 200, description = "Metrics", content_type = "text/plain", body = String)),
)]
pub async fn metrics_endpoint() -> String {
    metrics().render()
}

/// Axum handler for `GET /healthz`.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    summary = "Liveness (on the public and the admin address)",
    responses((status = 200, description = "ok", content_type = "text/plain", body = String)),
)]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The span of each HTTP request (`TraceLayer::make_span_with`): its method
/// and path only. The query string is left out, since it can hold a bill
/// link's signature; headers (keys, cookies) are never recorded.
pub fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path()
    )
}
