//! The dedupe set as the services that check ids against it read it:
//! `counted_events` (rating's, keyed by provider and event id), and the ids
//! `processed_events` kept from before rating counted by `counted_events`
//! alone (see `tally_rating::corrections_repo::count_new`).

use sqlx::PgExecutor;
use std::collections::BTreeSet;

/// Of these event ids of `provider`, those already counted (a cancelled
/// event's id stays taken).
pub async fn already_counted<'e>(
    executor: impl PgExecutor<'e>,
    provider: &str,
    ids: &[&str],
) -> Result<BTreeSet<String>, sqlx::Error> {
    let rows: Vec<String> = sqlx::query_scalar(
        "SELECT event_id FROM counted_events WHERE provider_id = $1 AND event_id = ANY($2)
         UNION
         SELECT event_id FROM processed_events WHERE provider_id = $1 AND event_id = ANY($2)",
    )
    .bind(provider)
    .bind(ids)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().collect())
}
