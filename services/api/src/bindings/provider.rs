//! A provider's side of its bindings (`/v1/provider/bindings…`): it sees
//! only bindings to itself (another's does not exist for it: 404), reports
//! how provisioning goes, and sets where it receives binding events
//! (`/v1/provider/webhook`).

use axum::extract::State;
use axum::{Extension, Json};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tally_domain::binding::{Actor, BindingEvent};
use tally_platform::binding_outbox::{self, WebhookKey};
use tally_platform::bindings::{self, Move, Scope};

use super::account::detail;
use super::{binding_id, move_time, BindingDetail, BindingList, BindingView};
use crate::auth::ProviderCaller;
use crate::error::{ApiError, Code};
use crate::extract::{ApiJson, ApiPath, RequestBody};

/// The platform's webhook key, if the deployment has one (`TALLY_WEBHOOK_KEY`).
#[derive(Clone)]
pub struct Webhooks(pub Option<WebhookKey>);

#[utoipa::path(
    get,
    path = "/v1/provider/bindings",
    tag = "provider",
    summary = "Bindings to the calling provider, oldest first",
    responses((status = 200, description = "Bindings", body = BindingList)),
    security(("bearer" = [])),
)]
pub async fn list_bindings(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
) -> Result<Json<BindingList>, ApiError> {
    let mut conn = pool.acquire().await?;
    let found = bindings::list_bindings(&mut conn, &Scope::Provider(me)).await?;
    Ok(Json(BindingList::of(found)))
}

#[utoipa::path(
    get,
    path = "/v1/provider/bindings/{id}",
    tag = "provider",
    summary = "One binding to the calling provider, with its histories",
    params(("id" = String, Path, description = "Binding id")),
    responses((status = 200, description = "The binding", body = BindingDetail)),
    security(("bearer" = [])),
)]
pub async fn get_binding(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<BindingDetail>, ApiError> {
    detail(&pool, &Scope::Provider(me), &binding_id(&id)?)
        .await
        .map(Json)
}

/// What the provider reports.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportedStatus {
    Provisioning,
    Active,
    Failed,
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct StatusReport {
    status: ReportedStatus,
    /// Shown to the customer (why it failed)
    #[schema(max_length = 1000)]
    message: Option<String>,
    /// The provider's own id of the resource
    #[schema(max_length = 100)]
    resource_id: Option<String>,
    /// When it happened (now by default; not ahead of Tally's clock, not before the binding's last change)
    at: Option<DateTime<Utc>>,
}

impl RequestBody for StatusReport {}

/// Through the state machine: provisioning and active from requested or
/// provisioning, failed before it ran; a repeat of the status the binding
/// has records its message only. The report is published on
/// `bindings.events` but not sent back to the provider's webhook.
#[utoipa::path(
    post,
    path = "/v1/provider/bindings/{id}/status",
    tag = "provider",
    summary = "Report a binding's status: provisioning, active or failed (with a message)",
    params(("id" = String, Path, description = "Binding id")),
    request_body = StatusReport,
    responses((status = 200, description = "The binding", body = BindingView)),
    security(("bearer" = [])),
)]
pub async fn report_status(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<StatusReport>,
) -> Result<Json<BindingView>, ApiError> {
    let id = binding_id(&id)?;
    let event = match body.status {
        ReportedStatus::Provisioning => BindingEvent::Provisioning,
        ReportedStatus::Active => BindingEvent::Activated,
        ReportedStatus::Failed => BindingEvent::Failed,
    };
    let mv = Move {
        event,
        by: Actor::Provider,
        at: move_time(body.at, Utc::now())?,
        message: body.message,
        provider_resource_id: body.resource_id,
    };
    let mut tx = pool.begin().await?;
    let (binding, _) = bindings::apply_move(&mut tx, &Scope::Provider(me), &id, mv).await?;
    tx.commit().await?;
    Ok(Json(binding.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
pub struct WebhookBody {
    /// Where binding events are POSTed (http or https)
    url: String,
    /// A new signing secret (the old one stops signing at once)
    #[serde(default)]
    #[schema(default = false)]
    rotate_secret: bool,
}

impl RequestBody for WebhookBody {}

#[derive(Serialize, utoipa::ToSchema)]
pub struct WebhookView {
    url: String,
    /// Verifies `webhook-signature: v1=<hex HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`
    secret: String,
    secret_generation: i32,
}

/// Events wait for a webhook: once set, the undelivered ones are sent, in
/// order per binding, retried from 10 s doubling up to an hour until the
/// webhook answers 2xx; each carries its `webhook-id`, the same on every
/// retry, by which the provider drops repeats.
#[utoipa::path(
    post,
    path = "/v1/provider/webhook",
    tag = "provider",
    summary = "Set where the calling provider receives binding events; returns its signing secret",
    request_body = WebhookBody,
    responses((status = 200, description = "The webhook and its secret", body = WebhookView)),
    security(("bearer" = [])),
)]
pub async fn set_webhook(
    ProviderCaller(me): ProviderCaller,
    State(pool): State<PgPool>,
    Extension(Webhooks(key)): Extension<Webhooks>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> Result<Json<WebhookView>, ApiError> {
    let Some(key) = key else {
        return Err(ApiError::Refused(
            Code::WebhooksDisabled,
            "this deployment has no webhook key (TALLY_WEBHOOK_KEY): binding events are on Kafka only".into(),
        ));
    };
    let url = body.url.trim();
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| ApiError::Refused(Code::InvalidUrl, format!("url: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || !parsed.has_host() {
        return Err(ApiError::Refused(
            Code::InvalidUrl,
            "url must be an http or https URL with a host".into(),
        ));
    }
    let mut conn = pool.acquire().await?;
    let generation = binding_outbox::set_webhook(&mut conn, &me, url, body.rotate_secret).await?;
    Ok(Json(WebhookView {
        url: url.to_owned(),
        secret: key.provider_secret(&me, generation),
        secret_generation: generation,
    }))
}
