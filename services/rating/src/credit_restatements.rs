//! Credit restatements: when a grant is given or voided, the credits API
//! asks for the account's statements to be restated (`credit_recompute`);
//! rating takes those requests, restates every open period of the account,
//! and publishes the new versions.

use sqlx::{PgConnection, PgPool};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::credits_repo;
use crate::error::{in_transaction, ProcessError};
use crate::outbox;
use crate::outcome::Restated;
use crate::restate::restate;
use crate::seals_repo;

/// How often pending credit restatements (a grant given or voided) are looked for.
const RESTATE_EVERY: Duration = Duration::from_millis(500);

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

/// Restates the accounts whose grants changed, then publishes the new
/// statement versions. Several rating instances share the work: each takes
/// requests with `SKIP LOCKED`.
pub(crate) async fn run(
    pool: PgPool,
    producer: tally_platform::kafka::Producer,
    topic: String,
    shutdown: CancellationToken,
) {
    loop {
        match restate_requested(&pool, 50).await {
            Ok(restated) if !restated.statements.is_empty() => {
                tracing::info!(
                    statements = restated.statements.len(),
                    "restated after a credit change"
                );
                // A failed publish is retried by the outbox sweep.
                if let Err(err) = outbox::publish(
                    &pool,
                    &producer,
                    &topic,
                    &restated.statements,
                    &restated.bodies,
                    &[],
                    &restated.outbox,
                )
                .await
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
