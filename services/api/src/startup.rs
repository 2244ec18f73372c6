//! Building and running the API: the router of every audience's routes.

use axum::middleware::from_fn_with_state;
use axum::Router;
use sqlx::PgPool;
use tally_platform::binding_outbox::WebhookKey;
use tally_platform::health::{Probe, Readiness};
use tally_platform::{telemetry, Config};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::bindings::provider::Webhooks;
use crate::customer;
use crate::customer::links::Signer;
use crate::customer::page::{self, PageState};
use crate::customer::sessions;
use crate::finance::{corrections, invoices, settlement};
use crate::{
    admin, auth, bindings, composition, contracts, credits, extract, openapi, provider,
    usage_corrections,
};

/// The bearer-key API: each route comes with its handler's documentation
/// (`routes!` reads the path and method from its `#[utoipa::path]`), so no
/// route is undocumented.
fn api_routes() -> OpenApiRouter<PgPool> {
    OpenApiRouter::new()
        .routes(routes!(invoices::list_invoices))
        .routes(routes!(invoices::get_invoice))
        .routes(routes!(corrections::void_invoice))
        .routes(routes!(
            corrections::invoice_credit_notes,
            corrections::create_credit_note
        ))
        .routes(routes!(corrections::list_credit_notes))
        .routes(routes!(corrections::get_credit_note))
        .routes(routes!(settlement::get_settlements))
        .routes(routes!(settlement::reconciliation::get_reconciliation))
        .routes(routes!(settlement::exports::export_invoices))
        .routes(routes!(settlement::exports::export_lines))
        .routes(routes!(customer::bill::get_bill))
        .routes(routes!(customer::contract::list_price_changes))
        .routes(routes!(credits::list_grants, credits::create_grant))
        .routes(routes!(credits::account_ledger))
        .routes(routes!(credits::get_grant))
        .routes(routes!(credits::grant_ledger))
        .routes(routes!(credits::void_grant))
        .routes(routes!(
            contracts::list_contracts,
            contracts::create_contract
        ))
        .routes(routes!(contracts::sign_contract))
        .routes(routes!(contracts::list_partner_terms))
        .routes(routes!(contracts::agree_to_term))
        .routes(routes!(admin::create_provider, admin::list_providers))
        .routes(routes!(admin::set_settlement_mode))
        .routes(routes!(admin::create_account, admin::list_accounts))
        .routes(routes!(admin::create_sku, admin::list_skus))
        .routes(routes!(admin::create_price))
        .routes(routes!(admin::create_staff_key))
        .routes(routes!(provider::list_skus, provider::create_sku))
        .routes(routes!(provider::list_prices, provider::publish_price))
        .routes(routes!(
            bindings::account::list_bindings,
            bindings::account::create_binding
        ))
        .routes(routes!(bindings::account::get_binding))
        .routes(routes!(bindings::account::change_plan))
        .routes(routes!(bindings::account::suspend))
        .routes(routes!(bindings::account::resume))
        .routes(routes!(bindings::account::delete))
        .routes(routes!(bindings::provider::list_bindings))
        .routes(routes!(bindings::provider::get_binding))
        .routes(routes!(bindings::provider::report_status))
        .routes(routes!(bindings::provider::set_webhook))
        .routes(routes!(
            bindings::plans::list_plans,
            bindings::plans::create_plan
        ))
        .routes(routes!(bindings::plans::publish_version))
        .routes(routes!(bindings::plans::admin_plan_version))
        .routes(routes!(usage_corrections::provider_corrections))
        .routes(routes!(usage_corrections::invoice_corrections))
        .routes(routes!(composition::account::list_invoices))
        .routes(routes!(composition::account::get_invoice))
        .routes(routes!(composition::references::mint))
        .routes(routes!(composition::margin::get_margin))
        .routes(routes!(composition::margin::export_margin))
        .routes(routes!(composition::statement::list_statements))
        .routes(routes!(composition::statement::get_statement))
}

/// The bill pages, which let their viewers in themselves (`page::admit`).
fn page_routes() -> OpenApiRouter<PageState> {
    OpenApiRouter::new()
        .routes(routes!(page::bill_page))
        .routes(routes!(page::bill_csv))
        .routes(routes!(page::login_form, page::login))
        .routes(routes!(page::logout))
}

/// Bill links, which finance makes with a bearer key.
fn link_routes() -> OpenApiRouter<PageState> {
    OpenApiRouter::new().routes(routes!(page::create_link))
}

/// This document, the schemas it refers to, and liveness.
fn meta_routes() -> OpenApiRouter {
    OpenApiRouter::new()
        .routes(routes!(openapi::openapi))
        .routes(routes!(openapi::cloudevent_usage_schema))
        .routes(routes!(openapi::collector_response_schema))
        .routes(routes!(telemetry::healthz))
}

/// The operations of every route of the API, as their handlers document
/// them (`openapi::document` makes the whole document of them).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = api_routes().into_openapi();
    doc.merge(page_routes().into_openapi());
    doc.merge(link_routes().into_openapi());
    doc.merge(meta_routes().into_openapi());
    doc
}

/// The routes: the bearer-key API authenticates every request first
/// (`auth::authenticate`), before any extractor reads it; the bill pages let
/// their viewers in themselves (`page::admit`). Every error is JSON with a
/// code, the routes' own and the router's (`unknown_route`,
/// `method_not_allowed`) alike; the bill pages answer pages.
pub fn router(
    pool: PgPool,
    signer: Signer,
    issuer: &str,
    webhooks: Webhooks,
    notice: provider::PriceNotice,
) -> Router {
    let authenticate = from_fn_with_state(pool.clone(), auth::authenticate);
    let (pages, _) = page_routes().split_for_parts();
    let (links, _) = link_routes().split_for_parts();
    let (api, _) = api_routes().split_for_parts();
    let (meta, _) = meta_routes().split_for_parts();
    let pages = pages
        .layer(axum::middleware::map_response(sessions::page_headers))
        .merge(links.route_layer(authenticate.clone()))
        .with_state(PageState {
            pool: pool.clone(),
            signer,
            throttle: Default::default(),
        });
    api.route_layer(authenticate)
        .with_state(pool)
        .layer(axum::Extension(corrections::Issuer(issuer.to_owned())))
        .layer(axum::Extension(webhooks))
        .layer(axum::Extension(notice))
        .merge(pages)
        .merge(meta)
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
            router(
                self.pool,
                self.signer,
                &self.config.invoice_issuer,
                Webhooks(self.config.webhook_key.as_deref().map(WebhookKey::new)),
                provider::PriceNotice(self.config.price_notice),
            )
            .into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await?;
        Ok(())
    }
}
