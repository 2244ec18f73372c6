//! Building and running the API: the router of every audience's routes.

use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use sqlx::PgPool;
use tally_platform::health::{Probe, Readiness};
use tally_platform::{telemetry, Config};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::customer;
use crate::customer::links::Signer;
use crate::customer::page::{self, PageState};
use crate::customer::sessions;
use crate::finance::{corrections, invoices, settlement};
use crate::{admin, auth, credits, extract, openapi, provider};

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
        .route("/v1/invoices", get(invoices::list_invoices))
        .route("/v1/invoices/{id}", get(invoices::get_invoice))
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
        .route("/v1/accounts/{account}/bill", get(customer::bill::get_bill))
        .route(
            "/v1/accounts/{account}/grants",
            get(credits::list_grants).post(credits::create_grant),
        )
        .route(
            "/v1/accounts/{account}/credit-ledger",
            get(credits::account_ledger),
        )
        .route("/v1/grants/{id}", get(credits::get_grant))
        .route("/v1/grants/{id}/ledger", get(credits::grant_ledger))
        .route("/v1/grants/{id}/void", post(credits::void_grant))
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
            get(provider::list_skus).post(provider::create_sku),
        )
        .route(
            "/v1/provider/skus/{sku}/prices",
            get(provider::list_prices).post(provider::publish_price),
        )
        .route_layer(authenticate)
        .with_state(pool)
        .layer(axum::Extension(corrections::Issuer(issuer.to_owned())))
        .merge(pages)
        .route("/openapi.json", get(openapi::openapi))
        .route(
            "/cloudevent-usage.schema.json",
            get(openapi::cloudevent_usage_schema),
        )
        .route(
            "/collector-response.schema.json",
            get(openapi::collector_response_schema),
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
    listener: TcpListener,
    signer: Signer,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        telemetry::metrics();
        let pool = tally_platform::db::connect_service(&config, "api").await?;
        let listener = TcpListener::bind(config.api_addr).await?;
        let signer = Signer::new(config.link_secret.as_deref())?;
        Ok(Application {
            config,
            pool,
            listener,
            signer,
        })
    }

    /// What `/readyz` checks for this service.
    pub fn readiness(&self) -> Readiness {
        let mut readiness = Readiness::default();
        readiness.add("api.database", Probe::Database(self.pool.clone()));
        readiness
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |a| a.port())
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "api listening");
        axum::serve(
            self.listener,
            router(self.pool, self.signer, &self.config.invoice_issuer)
                .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
        Ok(())
    }
}
