//! Credit restatements: when a grant is given or voided (or a binding
//! changes status or plan), the account's statements are asked to be
//! restated (`credit_recompute`); rating takes those requests, restates
//! every open period of the account, and publishes the new versions.
//!
//! Bound periods: an account with a binding active now gets a statement of
//! its current period even without usage, so its plan fees are billed; so
//! does an account whose current period ends a commitment period, so a
//! commitment period without usage bills its whole minimum as a true-up
//! ([`restate_bound_periods`], once a minute).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use tally_domain::contract::commitments;
use tally_platform::contracts;

use crate::credits_repo;
use crate::error::{in_transaction, ProcessError};
use crate::outbox;
use crate::outcome::Restated;
use crate::restate::restate;
use crate::seals_repo;

/// How often pending credit restatements (a grant given or voided) are looked for.
const RESTATE_EVERY: Duration = Duration::from_millis(500);

/// How often the current periods of bound accounts are checked for a statement.
const BOUND_EVERY: Duration = Duration::from_secs(60);

/// Restates every statement of accounts whose grants changed (requests in
/// `credit_recompute`), at most `limit` accounts per call, in one
/// transaction with taking the requests.
pub async fn restate_requested(pool: &PgPool, limit: i64) -> Result<Restated, ProcessError> {
    in_transaction(pool, "credit restatement", &limit, |conn, limit| {
        Box::pin(restate_requested_in(conn, *limit))
    })
    .await
}

async fn restate_requested_in(
    conn: &mut PgConnection,
    limit: i64,
) -> Result<Restated, ProcessError> {
    let accounts = credits_repo::take_recompute_requests(&mut *conn, limit).await?;
    if accounts.is_empty() {
        return Ok(Restated::default());
    }
    let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let states = seals_repo::account_states(&mut *conn, &refs).await?;
    let keys: BTreeMap<_, _> = credits_repo::all_periods(&mut *conn, &refs)
        .await?
        .into_iter()
        .collect();
    if keys.is_empty() {
        return Ok(Restated::default());
    }
    restate(conn, keys, &states, None).await
}

/// Opens the current period (at `now`) of every account with a binding
/// active at `now`, or whose contract's commitment period ends with that
/// period, that has no statement for it yet: its first version, with the
/// plan fees of its resources and the commitment's true-up.
pub async fn restate_bound_periods(
    pool: &PgPool,
    now: DateTime<Utc>,
) -> Result<Restated, ProcessError> {
    in_transaction(pool, "bound periods", &now, |conn, now| {
        Box::pin(restate_bound_periods_in(conn, *now))
    })
    .await
}

async fn restate_bound_periods_in(
    conn: &mut PgConnection,
    now: DateTime<Utc>,
) -> Result<Restated, ProcessError> {
    let (accounts, committed): (Vec<String>, Vec<bool>) = sqlx::query_as::<_, (String, bool)>(
        "SELECT account_id, bool_and(committed) FROM (
             SELECT account_id, false AS committed FROM bindings
             WHERE activated_at <= $1 AND (deleted_at IS NULL OR deleted_at > $1)
             UNION ALL
             SELECT c.account_id, true FROM contracts c
             JOIN contract_commitments m ON m.contract_id = c.id
             WHERE m.starts_at <= $1 AND $1 < m.ends_at
         ) a GROUP BY account_id ORDER BY account_id",
    )
    .bind(now)
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .unzip();
    if accounts.is_empty() {
        return Ok(Restated::default());
    }
    let refs: Vec<&str> = accounts.iter().map(String::as_str).collect();
    let states = seals_repo::account_states(&mut *conn, &refs).await?;
    // Accounts with a commitment in force and no binding: only when the
    // current period ends one of its commitment periods.
    let only_committed: Vec<&str> = refs
        .iter()
        .zip(&committed)
        .filter(|(_, c)| **c)
        .map(|(a, _)| *a)
        .collect();
    let contracts = contracts::contracts_of(&mut *conn, &only_committed).await?;
    let mut keys: BTreeMap<(String, DateTime<Utc>), DateTime<Utc>> = states
        .iter()
        .map(|(account, state)| (account, state.place(now).billed_in))
        .filter(|(account, period)| {
            !only_committed.contains(&account.as_str())
                || contracts.get(account.as_str()).is_some_and(|all| {
                    all.iter()
                        .any(|c| commitments::ends_a_commitment_period(c, *period))
                })
        })
        .map(|(account, period)| ((account.clone(), period.start()), period.end()))
        .collect();
    if keys.is_empty() {
        return Ok(Restated::default());
    }
    let (accounts, starts): (Vec<&str>, Vec<DateTime<Utc>>) =
        keys.keys().map(|(a, s)| (a.as_str(), *s)).unzip();
    let existing: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT st.account_id, st.period_start
         FROM UNNEST($1::text[], $2::timestamptz[]) AS k(a, s)
         JOIN statements st ON st.account_id = k.a AND st.period_start = k.s",
    )
    .bind(&accounts)
    .bind(&starts)
    .fetch_all(&mut *conn)
    .await?;
    for key in existing {
        keys.remove(&key);
    }
    if keys.is_empty() {
        return Ok(Restated::default());
    }
    restate(conn, keys, &states, None).await
}

/// Restates the accounts whose grants changed, then publishes the new
/// statement versions. Several rating instances share the work: each takes
/// requests with `SKIP LOCKED`.
pub(crate) async fn run(pool: PgPool, sink: outbox::StatementSink, shutdown: CancellationToken) {
    let mut bound_checked: Option<std::time::Instant> = None;
    loop {
        if bound_checked.is_none_or(|at| at.elapsed() >= BOUND_EVERY) {
            bound_checked = Some(std::time::Instant::now());
            match restate_bound_periods(&pool, chrono::Utc::now()).await {
                Ok(opened) if !opened.statements.is_empty() => {
                    tracing::info!(
                        statements = opened.statements.len(),
                        "opened the periods of bound accounts"
                    );
                    if let Err(err) =
                        outbox::publish(&pool, &sink, &opened.statements, &[], &opened.outbox).await
                    {
                        tracing::warn!(error = %err, "publishing opened statements failed");
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "opening bound periods failed"),
            }
        }
        match restate_requested(&pool, 50).await {
            Ok(restated) if !restated.statements.is_empty() => {
                tracing::info!(
                    statements = restated.statements.len(),
                    "restated after a credit change"
                );
                // A failed publish is retried by the outbox sweep.
                if let Err(err) =
                    outbox::publish(&pool, &sink, &restated.statements, &[], &restated.outbox).await
                {
                    tracing::warn!(error = %err, "publishing restated statements failed");
                }
                continue;
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "credit restatement failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(RESTATE_EVERY) => {}
        }
    }
}
