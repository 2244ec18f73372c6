//! Bindings repository (tables `bindings`, `binding_status_changes`,
//! `binding_plan_changes`, `binding_outbox`, and `providers.requires_binding`).
//! Every decision is `tally_domain::binding`'s; this module loads a binding
//! under a row lock, applies the domain's move, and writes the binding, its
//! history and its outbox event in the caller's transaction, so a binding
//! never changes without the provider being told.
//!
//! Lives in `tally-platform` because the collector (usage windows), rating
//! (plan fees and resources) and the HTTP API (every write) all use it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap};
use tally_domain::binding::{
    Actor, Binding, BindingError, BindingEvent, BindingStatus, PlanChange, StatusChange,
    UsageWindow,
};
use tally_domain::plan::BoundResource;
use tally_domain::{
    AccountId, BindingId, PlanId, ProviderId, ProviderKind, ProviderRef, ResourceType,
};
use uuid::Uuid;

use crate::catalog::decode_err;
use crate::plans;

#[derive(Debug, thiserror::Error)]
pub enum BindingRepoError {
    /// No such binding, or not one the asker may see.
    #[error("binding {0} does not exist")]
    NotFound(String),
    #[error("unknown plan {0}")]
    UnknownPlan(String),
    #[error("plan {plan} is not for provider {provider}'s {resource_type} resources")]
    PlanMismatch {
        plan: String,
        provider: String,
        resource_type: String,
    },
    #[error("plan {plan} has no {currency} version in effect at {at}: the account could not be billed for it")]
    PlanNotOffered {
        plan: String,
        currency: String,
        at: DateTime<Utc>,
    },
    #[error("unknown account {0}")]
    UnknownAccount(String),
    /// The Idempotency-Key created another binding (different provider,
    /// resource type, name or plan).
    #[error("this Idempotency-Key already created binding {0}, with other terms")]
    IdempotencyKeyReused(String),
    #[error(transparent)]
    Binding(#[from] BindingError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Who asks: a binding outside the asker's scope does not exist for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A customer token: its own account's bindings.
    Account(AccountId),
    /// A provider key: bindings to that provider.
    Provider(ProviderId),
    /// The admin API: every binding.
    Platform,
}

impl Scope {
    fn admits(&self, binding: &Binding) -> bool {
        match self {
            Scope::Account(a) => &binding.account == a,
            Scope::Provider(p) => &binding.provider == p,
            Scope::Platform => true,
        }
    }
}

/// A binding event as published on `bindings.events` and delivered to the
/// provider's webhook: `id` is stable across retries (the provider dedupes
/// by it). `type` is `binding.<status>` after the move, or
/// `binding.plan_changed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingNotice {
    pub id: Uuid,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: DateTime<Utc>,
    pub actor: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub binding: Binding,
}

/// A new binding's request.
#[derive(Debug, Clone)]
pub struct NewBinding {
    pub account: AccountId,
    pub provider: ProviderId,
    pub resource_type: ResourceType,
    pub name: String,
    pub plan: PlanId,
    pub region: Option<String>,
    pub tags: BTreeMap<String, String>,
}

/// A fresh binding id: `bnd_` and a UUIDv7 (time-ordered) in hex.
pub fn new_binding_id() -> BindingId {
    let id = format!("bnd_{}", Uuid::now_v7().simple());
    // A lowercase hex slug always parses.
    BindingId::parse(&id).unwrap_or_else(|_| unreachable!("{id} is a slug"))
}

/// Checks that `plan` is `provider`'s for `resource_type`, with a version
/// in `account`'s currency in effect at `at`.
async fn check_plan(
    conn: &mut PgConnection,
    plan: &PlanId,
    provider: &ProviderId,
    resource_type: &ResourceType,
    account: &AccountId,
    at: DateTime<Utc>,
) -> Result<(), BindingRepoError> {
    let found = plans::get_plan(&mut *conn, plan)
        .await?
        .ok_or_else(|| BindingRepoError::UnknownPlan(plan.to_string()))?;
    if &found.provider != provider || &found.resource_type != resource_type {
        return Err(BindingRepoError::PlanMismatch {
            plan: plan.to_string(),
            provider: provider.to_string(),
            resource_type: resource_type.to_string(),
        });
    }
    let currency = crate::catalog::get_account(&mut *conn, account)
        .await?
        .ok_or_else(|| BindingRepoError::UnknownAccount(account.to_string()))?
        .currency;
    let versions = plans::plan_versions(&mut *conn, &[plan.as_str()], currency).await?;
    let offered = versions
        .get(plan)
        .is_some_and(|v| v.iter().any(|v| v.effective_from <= at));
    if !offered {
        return Err(BindingRepoError::PlanNotOffered {
            plan: plan.to_string(),
            currency: currency.code().to_owned(),
            at,
        });
    }
    Ok(())
}

/// Records a requested binding, its first history entry, its plan, and the
/// `binding.requested` event for the provider.
pub async fn create_binding(
    conn: &mut PgConnection,
    new: NewBinding,
    by: Actor,
    at: DateTime<Utc>,
) -> Result<Binding, BindingRepoError> {
    check_plan(
        &mut *conn,
        &new.plan,
        &new.provider,
        &new.resource_type,
        &new.account,
        at,
    )
    .await?;
    let (binding, change) = Binding::request(
        new_binding_id(),
        new.account,
        new.provider,
        new.resource_type,
        new.name,
        new.plan,
        new.region,
        new.tags,
        at,
        by,
    )?;
    sqlx::query(
        "INSERT INTO bindings (id, account_id, provider_id, resource_type, name, plan_id, region,
                               tags, status, requested_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(binding.id.as_str())
    .bind(binding.account.as_str())
    .bind(binding.provider.as_str())
    .bind(binding.resource_type.as_str())
    .bind(&binding.name)
    .bind(binding.plan.as_str())
    .bind(&binding.region)
    .bind(serde_json::to_value(&binding.tags).map_err(decode_err)?)
    .bind(binding.status.as_str())
    .bind(binding.requested_at)
    .execute(&mut *conn)
    .await?;
    record_status(&mut *conn, &binding.id, &change).await?;
    record_plan(&mut *conn, &binding.id, &binding.plan, at).await?;
    enqueue(&mut *conn, &binding, "binding.requested", &change).await?;
    Ok(binding)
}

/// [`create_binding`] under the caller's idempotency `key`: the binding
/// that key created on the account before (and false), or a new one (and
/// true). Requests with the same key are serialized (a transaction-scoped
/// advisory lock); a key that created a binding of other terms is refused.
pub async fn create_binding_once(
    conn: &mut PgConnection,
    new: NewBinding,
    key: &str,
    by: Actor,
    at: DateTime<Utc>,
) -> Result<(Binding, bool), BindingRepoError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 16))")
        .bind(format!("{}|{key}", new.account))
        .execute(&mut *conn)
        .await?;
    let row = sqlx::query(&format!(
        "{SELECT_BINDING} WHERE account_id = $1 AND idempotency_key = $2"
    ))
    .bind(new.account.as_str())
    .bind(key)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = row {
        let found = binding_from_row(&row)?;
        let first_plan = plan_history(&mut *conn, &found.id)
            .await?
            .into_iter()
            .next()
            .map(|p| p.plan);
        let same = found.provider == new.provider
            && found.resource_type == new.resource_type
            && found.name == new.name
            && first_plan.as_ref() == Some(&new.plan);
        if !same {
            return Err(BindingRepoError::IdempotencyKeyReused(found.id.to_string()));
        }
        return Ok((found, false));
    }
    let binding = create_binding(&mut *conn, new, by, at).await?;
    sqlx::query("UPDATE bindings SET idempotency_key = $2 WHERE id = $1")
        .bind(binding.id.as_str())
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok((binding, true))
}

/// A move on a binding: its event, who makes it and when, and the
/// provider's message (and its own id of the resource) with its report.
#[derive(Debug, Clone)]
pub struct Move {
    pub event: BindingEvent,
    pub by: Actor,
    pub at: DateTime<Utc>,
    pub message: Option<String>,
    pub provider_resource_id: Option<String>,
}

/// Applies `mv` to binding `id` as seen by `scope` (under a row lock):
/// the binding after it, and whether it changed. A repeat of the status it
/// has records its message only; a refused move changes nothing.
pub async fn apply_move(
    conn: &mut PgConnection,
    scope: &Scope,
    id: &BindingId,
    mv: Move,
) -> Result<(Binding, bool), BindingRepoError> {
    let (mut binding, last) = locked(&mut *conn, scope, id).await?;
    if let Some(resource_id) = &mv.provider_resource_id {
        tally_domain::binding::check_text(
            "provider_resource_id",
            resource_id,
            tally_domain::binding::MAX_NAME_CHARS,
        )?;
    }
    let applied = binding.apply(mv.event, mv.by, mv.at, last, mv.message)?;
    if mv.provider_resource_id.is_some() && mv.by == Actor::Provider {
        binding.provider_resource_id = mv.provider_resource_id;
    }
    sqlx::query(
        "UPDATE bindings SET status = $2, status_message = $3, activated_at = $4,
                suspended_at = $5, deleted_at = $6, provider_resource_id = $7, updated_at = now()
         WHERE id = $1",
    )
    .bind(binding.id.as_str())
    .bind(binding.status.as_str())
    .bind(&binding.status_message)
    .bind(binding.activated_at)
    .bind(binding.suspended_at)
    .bind(binding.deleted_at)
    .bind(&binding.provider_resource_id)
    .execute(&mut *conn)
    .await?;
    if applied.changed || applied.change.message.is_some() {
        record_status(&mut *conn, &binding.id, &applied.change).await?;
    }
    if applied.changed {
        let kind = format!("binding.{}", binding.status.as_str());
        enqueue(&mut *conn, &binding, &kind, &applied.change).await?;
        request_restatement(&mut *conn, &binding.account).await?;
    }
    Ok((binding, applied.changed))
}

/// Moves binding `id` to `plan` from `at` on (checked like a new
/// binding's plan), and tells the provider (`binding.plan_changed`).
pub async fn change_plan(
    conn: &mut PgConnection,
    scope: &Scope,
    id: &BindingId,
    plan: &PlanId,
    by: Actor,
    at: DateTime<Utc>,
) -> Result<Binding, BindingRepoError> {
    let (mut binding, last) = locked(&mut *conn, scope, id).await?;
    if at < last {
        return Err(BindingError::OutOfOrder { at, last }.into());
    }
    check_plan(
        &mut *conn,
        plan,
        &binding.provider,
        &binding.resource_type,
        &binding.account,
        at,
    )
    .await?;
    binding.change_plan(plan.clone(), at)?;
    sqlx::query("UPDATE bindings SET plan_id = $2, updated_at = now() WHERE id = $1")
        .bind(binding.id.as_str())
        .bind(plan.as_str())
        .execute(&mut *conn)
        .await?;
    record_plan(&mut *conn, &binding.id, plan, at).await?;
    let change = StatusChange {
        at,
        from: Some(binding.status),
        to: binding.status,
        by,
        message: None,
    };
    enqueue(&mut *conn, &binding, "binding.plan_changed", &change).await?;
    request_restatement(&mut *conn, &binding.account).await?;
    Ok(binding)
}

/// Asks rating to restate the account's open statements (a status or plan
/// change moves its plan fees): the same request a grant change makes
/// (`credit_recompute`, taken by rating's restatement loop).
async fn request_restatement(
    conn: &mut PgConnection,
    account: &AccountId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO credit_recompute (account_id) VALUES ($1) ON CONFLICT (account_id) DO NOTHING",
    )
    .bind(account.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// The binding under a row lock, and the time of its last recorded move.
async fn locked(
    conn: &mut PgConnection,
    scope: &Scope,
    id: &BindingId,
) -> Result<(Binding, DateTime<Utc>), BindingRepoError> {
    let row = sqlx::query(&format!("{SELECT_BINDING} WHERE id = $1 FOR UPDATE"))
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    let binding = row
        .map(|r| binding_from_row(&r))
        .transpose()?
        .filter(|b| scope.admits(b))
        .ok_or_else(|| BindingRepoError::NotFound(id.to_string()))?;
    let last: DateTime<Utc> = sqlx::query_scalar(
        "SELECT max(at) FROM (
             SELECT at FROM binding_status_changes WHERE binding_id = $1
             UNION ALL SELECT at FROM binding_plan_changes WHERE binding_id = $1) t",
    )
    .bind(id.as_str())
    .fetch_one(&mut *conn)
    .await?;
    Ok((binding, last))
}

const SELECT_BINDING: &str = "SELECT id, account_id, provider_id, resource_type, name,
    provider_resource_id, plan_id, region, tags, status, status_message, requested_at,
    activated_at, suspended_at, deleted_at FROM bindings";

fn binding_from_row(r: &sqlx::postgres::PgRow) -> Result<Binding, sqlx::Error> {
    Ok(Binding {
        id: BindingId::parse(r.try_get("id")?).map_err(decode_err)?,
        account: AccountId::parse(r.try_get("account_id")?).map_err(decode_err)?,
        provider: ProviderId::parse(r.try_get("provider_id")?).map_err(decode_err)?,
        resource_type: ResourceType::parse(r.try_get("resource_type")?).map_err(decode_err)?,
        name: r.try_get("name")?,
        provider_resource_id: r.try_get("provider_resource_id")?,
        plan: PlanId::parse(r.try_get("plan_id")?).map_err(decode_err)?,
        region: r.try_get("region")?,
        tags: serde_json::from_value(r.try_get("tags")?).map_err(decode_err)?,
        status: BindingStatus::parse(r.try_get("status")?).map_err(decode_err)?,
        status_message: r.try_get("status_message")?,
        requested_at: r.try_get("requested_at")?,
        activated_at: r.try_get("activated_at")?,
        suspended_at: r.try_get("suspended_at")?,
        deleted_at: r.try_get("deleted_at")?,
    })
}

async fn record_status(
    conn: &mut PgConnection,
    id: &BindingId,
    change: &StatusChange,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO binding_status_changes (binding_id, at, from_status, to_status, actor, message)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.as_str())
    .bind(change.at)
    .bind(change.from.map(BindingStatus::as_str))
    .bind(change.to.as_str())
    .bind(change.by.as_str())
    .bind(&change.message)
    .execute(conn)
    .await?;
    Ok(())
}

async fn record_plan(
    conn: &mut PgConnection,
    id: &BindingId,
    plan: &PlanId,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO binding_plan_changes (binding_id, at, plan_id) VALUES ($1, $2, $3)")
        .bind(id.as_str())
        .bind(at)
        .bind(plan.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes the event for the provider in the outbox. The provider's own
/// reports are published on `bindings.events` but not sent back to its
/// webhook (it knows them): they are written delivered.
async fn enqueue(
    conn: &mut PgConnection,
    binding: &Binding,
    kind: &str,
    change: &StatusChange,
) -> Result<(), sqlx::Error> {
    let notice = BindingNotice {
        id: Uuid::now_v7(),
        kind: kind.to_owned(),
        time: change.at,
        actor: change.by,
        message: change.message.clone(),
        binding: binding.clone(),
    };
    sqlx::query(
        "INSERT INTO binding_outbox (event_id, binding_id, provider_id, body, delivered_at)
         VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN now() END)",
    )
    .bind(notice.id)
    .bind(binding.id.as_str())
    .bind(binding.provider.as_str())
    .bind(serde_json::to_value(&notice).map_err(decode_err)?)
    .bind(change.by == Actor::Provider)
    .execute(conn)
    .await?;
    Ok(())
}

/// One binding, if `scope` may see it.
pub async fn get_binding(
    conn: &mut PgConnection,
    scope: &Scope,
    id: &BindingId,
) -> Result<Option<Binding>, sqlx::Error> {
    let row = sqlx::query(&format!("{SELECT_BINDING} WHERE id = $1"))
        .bind(id.as_str())
        .fetch_optional(conn)
        .await?;
    Ok(row
        .map(|r| binding_from_row(&r))
        .transpose()?
        .filter(|b| scope.admits(b)))
}

/// The bindings `scope` may see, oldest first.
pub async fn list_bindings(
    conn: &mut PgConnection,
    scope: &Scope,
) -> Result<Vec<Binding>, sqlx::Error> {
    let (account, provider) = match scope {
        Scope::Account(a) => (Some(a.as_str()), None),
        Scope::Provider(p) => (None, Some(p.as_str())),
        Scope::Platform => (None, None),
    };
    let rows = sqlx::query(&format!(
        "{SELECT_BINDING} WHERE ($1::text IS NULL OR account_id = $1)
           AND ($2::text IS NULL OR provider_id = $2) ORDER BY requested_at, id"
    ))
    .bind(account)
    .bind(provider)
    .fetch_all(conn)
    .await?;
    rows.iter().map(binding_from_row).collect()
}

/// A binding's status history, oldest first.
pub async fn status_history(
    conn: &mut PgConnection,
    id: &BindingId,
) -> Result<Vec<StatusChange>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, from_status, to_status, actor, message FROM binding_status_changes
         WHERE binding_id = $1 ORDER BY id",
    )
    .bind(id.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(status_change_from_row).collect()
}

fn status_change_from_row(r: &sqlx::postgres::PgRow) -> Result<StatusChange, sqlx::Error> {
    let from: Option<String> = r.try_get("from_status")?;
    let actor: String = r.try_get("actor")?;
    Ok(StatusChange {
        at: r.try_get("at")?,
        from: from
            .map(|f| BindingStatus::parse(&f))
            .transpose()
            .map_err(decode_err)?,
        to: BindingStatus::parse(r.try_get("to_status")?).map_err(decode_err)?,
        by: Actor::parse(&actor)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown actor {actor}").into()))?,
        message: r.try_get("message")?,
    })
}

/// A binding's plan history, oldest first.
pub async fn plan_history(
    conn: &mut PgConnection,
    id: &BindingId,
) -> Result<Vec<PlanChange>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT at, plan_id FROM binding_plan_changes WHERE binding_id = $1 ORDER BY id",
    )
    .bind(id.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PlanChange {
                at: r.try_get("at")?,
                plan: PlanId::parse(r.try_get("plan_id")?).map_err(decode_err)?,
            })
        })
        .collect()
}

/// For each of `periods` (account, start, end), the account's bindings
/// active at some time in it, with their histories, provider and plan
/// name: what its statement bills plan fees and allowances for. Three
/// queries for all of them (none more when no binding is found).
pub async fn bound_in_periods(
    conn: &mut PgConnection,
    periods: &[(String, DateTime<Utc>, DateTime<Utc>)],
) -> Result<HashMap<(String, DateTime<Utc>), Vec<BoundResource>>, sqlx::Error> {
    let accounts: Vec<&str> = periods.iter().map(|(a, _, _)| a.as_str()).collect();
    let starts: Vec<DateTime<Utc>> = periods.iter().map(|(_, s, _)| *s).collect();
    let ends: Vec<DateTime<Utc>> = periods.iter().map(|(_, _, e)| *e).collect();
    let rows = sqlx::query(
        "SELECT k.s AS period_start, b.id, b.account_id, b.provider_id, b.resource_type, b.name,
                b.provider_resource_id, b.plan_id, b.region, b.tags, b.status, b.status_message,
                b.requested_at, b.activated_at, b.suspended_at, b.deleted_at,
                pr.name AS provider_name, pr.kind AS provider_kind, pr.platform_fee_pct,
                pl.name AS plan_name, pr.p2p_fee_pct,
                acc.owner_provider_id IS NOT NULL AS provider_owned
         FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[]) AS k(a, s, e)
         JOIN bindings b ON b.account_id = k.a AND b.activated_at IS NOT NULL
             AND b.activated_at < k.e AND (b.deleted_at IS NULL OR b.deleted_at > k.s)
         JOIN accounts acc ON acc.id = b.account_id
         JOIN providers pr ON pr.id = b.provider_id
         JOIN plans pl ON pl.id = b.plan_id
         ORDER BY b.id",
    )
    .bind(&accounts)
    .bind(&starts)
    .bind(&ends)
    .fetch_all(&mut *conn)
    .await?;
    let mut out: HashMap<(String, DateTime<Utc>), Vec<BoundResource>> = HashMap::new();
    if rows.is_empty() {
        return Ok(out);
    }
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<std::collections::BTreeSet<String>, _>>()?
        .into_iter()
        .collect();
    let histories = status_histories(&mut *conn, &ids).await?;
    let plans = plan_histories(&mut *conn, &ids).await?;
    for r in &rows {
        let binding = binding_from_row(r)?;
        let kind: String = r.try_get("provider_kind")?;
        let provider = ProviderRef {
            id: binding.provider.clone(),
            name: r.try_get("provider_name")?,
            kind: ProviderKind::parse(&kind)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown kind {kind}").into()))?,
        };
        let id = binding.id.to_string();
        out.entry((binding.account.to_string(), r.try_get("period_start")?))
            .or_default()
            .push(BoundResource {
                history: histories.get(&id).cloned().unwrap_or_default(),
                plans: plans.get(&id).cloned().unwrap_or_default(),
                provider,
                platform_fee_pct: tally_domain::composition::platform_fee_pct(
                    r.try_get("platform_fee_pct")?,
                    r.try_get("p2p_fee_pct")?,
                    r.try_get("provider_owned")?,
                ),
                plan_name: r.try_get("plan_name")?,
                binding,
            });
    }
    Ok(out)
}

/// The status histories of `ids`, each oldest first.
async fn status_histories(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, Vec<StatusChange>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT binding_id, at, from_status, to_status, actor, message FROM binding_status_changes
         WHERE binding_id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<String, Vec<StatusChange>> = HashMap::new();
    for r in &rows {
        out.entry(r.try_get("binding_id")?)
            .or_default()
            .push(status_change_from_row(r)?);
    }
    Ok(out)
}

/// The plan histories of `ids`, each oldest first.
async fn plan_histories(
    conn: &mut PgConnection,
    ids: &[String],
) -> Result<HashMap<String, Vec<PlanChange>>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT binding_id, at, plan_id FROM binding_plan_changes WHERE binding_id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut out: HashMap<String, Vec<PlanChange>> = HashMap::new();
    for r in &rows {
        out.entry(r.try_get("binding_id")?)
            .or_default()
            .push(PlanChange {
                at: r.try_get("at")?,
                plan: PlanId::parse(r.try_get("plan_id")?).map_err(decode_err)?,
            });
    }
    Ok(out)
}

/// The usage window of each existing binding among `ids`.
pub async fn usage_windows(
    conn: &mut PgConnection,
    ids: &[&str],
) -> Result<HashMap<String, UsageWindow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT b.id, b.account_id, b.provider_id, b.activated_at, b.deleted_at
         FROM bindings b JOIN UNNEST($1::text[]) AS t(id) ON b.id = t.id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("id")?,
                UsageWindow {
                    account: AccountId::parse(r.try_get("account_id")?).map_err(decode_err)?,
                    provider: ProviderId::parse(r.try_get("provider_id")?).map_err(decode_err)?,
                    activated_at: r.try_get("activated_at")?,
                    deleted_at: r.try_get("deleted_at")?,
                },
            ))
        })
        .collect()
}

/// Whether each of `providers` (that exists) requires its usage to name a binding.
pub async fn requires_binding(
    conn: &mut PgConnection,
    providers: &[&str],
) -> Result<HashMap<String, bool>, sqlx::Error> {
    let rows: Vec<(String, bool)> =
        sqlx::query_as("SELECT id, requires_binding FROM providers WHERE id = ANY($1)")
            .bind(providers)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Sets whether `provider`'s usage must name an active binding; false when
/// there is no such provider.
pub async fn set_requires_binding(
    conn: &mut PgConnection,
    provider: &ProviderId,
    required: bool,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query("UPDATE providers SET requires_binding = $2 WHERE id = $1")
        .bind(provider.as_str())
        .bind(required)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(updated == 1)
}
