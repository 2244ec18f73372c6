//! Building and running invoicing: the statement consumer and the HTTP API.

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use rdkafka::consumer::Consumer;
use sqlx::PgPool;
use tally_platform::health::{Probe, Readiness};
use tally_platform::{kafka, telemetry, Config};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::links::Signer;
use crate::page::{self, PageState};
use crate::sessions;
use crate::{
    admin, auth, consumer, corrections, credits_api, extract, lifecycle, provider_api, routes,
    settlement,
};

/// The OpenAPI document of every Tally HTTP API (schemas/openapi.json).
pub const OPENAPI: &str = include_str!("../../../schemas/openapi.json");

/// The JSON Schemas the document refers to by relative reference, served
/// beside it so that a client reading the document from this server (a code
/// generator, schemathesis) resolves them here.
const CLOUDEVENT_USAGE_SCHEMA: &str = include_str!("../../../schemas/cloudevent-usage.schema.json");
const COLLECTOR_RESPONSE_SCHEMA: &str =
    include_str!("../../../schemas/collector-response.schema.json");

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}

fn json_schema(body: &'static str) -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    (
        [(axum::http::header::CONTENT_TYPE, "application/schema+json")],
        body,
    )
}

/// The routes: the bearer-key API authenticates every request first
/// (`auth::authenticate`), before any extractor reads it; the bill pages let
/// their viewers in themselves (`page::admit`). Every error is JSON with a
/// code, the routes' own and the router's (`unknown_route`,
/// `method_not_allowed`) alike; the bill pages answer pages.
pub fn router(pool: PgPool, signer: Signer, issuer: &str) -> Router {
    let authenticate = from_fn_with_state(pool.clone(), auth::authenticate);
    let pages = Router::new()
        .route("/accounts/{account}/bill", get(page::bill_page))
        .route("/accounts/{account}/bill.csv", get(page::bill_csv))
        .route("/login", get(page::login_form).post(page::login))
        .route("/logout", post(page::logout))
        .layer(axum::middleware::map_response(sessions::page_headers))
        .route(
            "/v1/accounts/{account}/bill-links",
            post(page::create_link).route_layer(authenticate.clone()),
        )
        .with_state(PageState {
            pool: pool.clone(),
            signer,
            throttle: Default::default(),
        });
    Router::new()
        .route("/v1/invoices", get(routes::list_invoices))
        .route("/v1/invoices/{id}", get(routes::get_invoice))
        .route("/v1/invoices/{id}/void", post(corrections::void_invoice))
        .route(
            "/v1/invoices/{id}/credit-notes",
            get(corrections::invoice_credit_notes).post(corrections::create_credit_note),
        )
        .route("/v1/credit-notes", get(corrections::list_credit_notes))
        .route("/v1/credit-notes/{id}", get(corrections::get_credit_note))
        .route("/v1/settlements", get(settlement::get_settlements))
        .route("/v1/reconciliation", get(settlement::get_reconciliation))
        .route("/v1/exports/invoices.csv", get(settlement::export_invoices))
        .route(
            "/v1/exports/invoice-lines.csv",
            get(settlement::export_lines),
        )
        .route("/v1/accounts/{account}/bill", get(routes::get_bill))
        .route(
            "/v1/accounts/{account}/grants",
            get(credits_api::list_grants).post(credits_api::create_grant),
        )
        .route(
            "/v1/accounts/{account}/credit-ledger",
            get(credits_api::account_ledger),
        )
        .route("/v1/grants/{id}", get(credits_api::get_grant))
        .route("/v1/grants/{id}/ledger", get(credits_api::grant_ledger))
        .route("/v1/grants/{id}/void", post(credits_api::void_grant))
        .route(
            "/v1/admin/providers",
            post(admin::create_provider).get(admin::list_providers),
        )
        .route(
            "/v1/admin/accounts",
            post(admin::create_account).get(admin::list_accounts),
        )
        .route(
            "/v1/admin/skus",
            post(admin::create_sku).get(admin::list_skus),
        )
        .route("/v1/admin/prices", post(admin::create_price))
        .route("/v1/admin/keys", post(admin::create_staff_key))
        .route(
            "/v1/provider/skus",
            get(provider_api::list_skus).post(provider_api::create_sku),
        )
        .route(
            "/v1/provider/skus/{sku}/prices",
            get(provider_api::list_prices).post(provider_api::publish_price),
        )
        .route_layer(authenticate)
        .with_state(pool)
        .layer(axum::Extension(corrections::Issuer(issuer.to_owned())))
        .merge(pages)
        .route("/openapi.json", get(openapi))
        .route(
            "/cloudevent-usage.schema.json",
            get(|| async { json_schema(CLOUDEVENT_USAGE_SCHEMA) }),
        )
        .route(
            "/collector-response.schema.json",
            get(|| async { json_schema(COLLECTOR_RESPONSE_SCHEMA) }),
        )
        .route("/healthz", get(telemetry::healthz))
        .fallback(extract::unknown_route)
        .method_not_allowed_fallback(extract::method_not_allowed)
        .layer(
            tower_http::trace::TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span::<axum::body::Body>),
        )
}

pub struct Application {
    config: Config,
    pool: PgPool,
    consumer: tally_platform::kafka::Consumer,
    producer: tally_platform::kafka::Producer,
    listener: TcpListener,
    signer: Signer,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        telemetry::metrics();
        let pool = tally_platform::db::connect_service(&config, "invoicing").await?;
        let consumer = kafka::consumer(&config, &config.group("invoicing"))?;
        consumer.subscribe(&[&config.topics().statements])?;
        let producer = kafka::producer(&config)?;
        let listener = TcpListener::bind(config.invoicing_addr).await?;
        let signer = Signer::new(config.link_secret.as_deref())?;
        Ok(Application {
            config,
            pool,
            consumer,
            producer,
            listener,
            signer,
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

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "invoicing listening");
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
        let stop = shutdown.clone();
        let served = axum::serve(
            self.listener,
            router(self.pool, self.signer, &self.config.invoice_issuer)
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
        shutdown.cancel();
        consuming.await??;
        closing.await?;
        telling.await?;
        served?;
        Ok(())
    }
}
