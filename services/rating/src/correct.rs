//! Applying a provider's usage correction (a cancel, an amendment, a
//! backfill) in one transaction, in its partition's order with the usage:
//! the events it takes back leave their aggregates (sums and counts by
//! difference; largest, latest and distinct values recomputed from the
//! stored events), its new values are counted like usage, and the touched
//! periods are restated; a change to a sealed period is billed on the
//! account's next open period as an adjustment, exactly like late usage.
//! Each correction is recorded once (by id) in the audit trail, applied or
//! refused with a stable code ([`tally_domain::usage_correction::Refusal`]).

use chrono::{DateTime, DurationRound, Utc};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tally_domain::usage::{Change, CorrectionRequest};
use tally_domain::usage_correction::{self, Refusal};
use tally_domain::{Period, Quantity, UsageEvent};

use crate::corrections_repo::{self, ChangeRow, CountedEvent, Recorded};
use crate::dedupe;
use crate::error::{in_transaction, ProcessError};
use crate::on_behalf;
use crate::outcome::{BatchOutcome, Restated};
use crate::rate::{count, price, values, Admission, Catalog};
use crate::repo::{self, AccountPeriod};
use crate::restate::restate;
use crate::seals_repo;

/// Applies one correction in its own transaction (retried on serialization
/// failures), with no clock ([`Admission::unclocked`]); a redelivered one
/// changes nothing.
pub async fn apply_correction(
    pool: &PgPool,
    request: &CorrectionRequest,
) -> Result<Restated, ProcessError> {
    apply_correction_at(pool, request, Admission::unclocked()).await
}

/// Applies one correction, its new events admitted to the dedupe window by
/// `admission` like usage (outside it the correction is refused,
/// `outside_window`). When one needs a dedupe partition not made yet, it is
/// made (in a transaction of its own) and the correction applied again.
pub async fn apply_correction_at(
    pool: &PgPool,
    request: &CorrectionRequest,
    admission: Admission,
) -> Result<Restated, ProcessError> {
    let mut attempt = 0;
    loop {
        let applied = in_transaction(pool, "correction", request, move |conn, request| {
            Box::pin(apply_in(conn, request, admission))
        })
        .await;
        match applied {
            Err(ProcessError::Uncovered { from, through }) if attempt == 0 => {
                attempt += 1;
                dedupe::ensure(pool, &admission.window, from, through).await?;
            }
            other => return other,
        }
    }
}

/// What a correction does, once checked.
struct Plan {
    /// Stored events that stop counting as they are.
    removed: Vec<CountedEvent>,
    /// Events counted with their (new) values.
    added: Vec<UsageEvent>,
}

async fn apply_in(
    conn: &mut PgConnection,
    request: &CorrectionRequest,
    admission: Admission,
) -> Result<Restated, ProcessError> {
    // First, so a prune dropping a partition waits for this transaction.
    let retained = dedupe::retained(&mut *conn).await?;
    let Ok(id) = uuid::Uuid::parse_str(&request.id) else {
        return Err(sqlx::Error::Decode(
            format!("correction id {:?} is no UUID", request.id).into(),
        )
        .into());
    };
    if corrections_repo::is_recorded(&mut *conn, id).await? {
        return Ok(Restated::default());
    }
    let plan = match plan(&mut *conn, request).await? {
        Ok(plan) => plan,
        Err(refusal) => return refuse(&mut *conn, id, request, refusal).await,
    };
    // The new values are priced and placed like usage; an event that
    // cannot be (no price in effect, a dimension missing) refuses the
    // whole correction.
    let catalog = Catalog::load(&mut *conn, &plan.added).await?;
    let mut priced_out = BatchOutcome::default();
    let added: Vec<&UsageEvent> = plan.added.iter().collect();
    let priced = price(&catalog, &added, &mut priced_out);
    if let Some(dead) = priced_out.dead.first() {
        let refusal = Refusal::from_rating_code(dead.code);
        return refuse(&mut *conn, id, request, refusal).await;
    }
    let states = if plan.added.is_empty() {
        seals_repo::account_states(&mut *conn, &[request.account_id.as_str()]).await?
    } else {
        catalog.states.clone()
    };
    let Some(state) = states.get(request.account_id.as_str()) else {
        return refuse(&mut *conn, id, request, Refusal::AccountUnknown).await;
    };

    // The new values are counted as new events (a backfill's replacement
    // that reuses an id it replaces counts again under it).
    let removed_ids: HashSet<(String, String)> = plan
        .removed
        .iter()
        .map(|e| (e.provider_id.clone(), e.event_id.clone()))
        .collect();
    let all: HashSet<(String, String)> = priced
        .iter()
        .map(|(e, _)| (e.provider_id.to_string(), e.event_id.to_string()))
        .collect();
    let mut counted_out = BatchOutcome::default();
    let counted = count(&catalog, &priced, &all, &mut counted_out);

    // Only an aggregate whose events are all stored can give back its
    // largest, latest or distinct values (checked before anything is written).
    let mut keys: BTreeSet<repo::AggregateKey> =
        plan.removed.iter().map(CountedEvent::aggregate).collect();
    keys.extend(counted.increments.keys().cloned());
    let keys: Vec<repo::AggregateKey> = keys.into_iter().collect();
    let complete = corrections_repo::completeness(&mut *conn, &keys).await?;
    let mut recomputable = Vec::new();
    for key in &keys {
        let Some((events, stored, aggregation)) = complete.get(key) else {
            continue;
        };
        if events == stored {
            recomputable.push(key.clone());
        } else if !matches!(aggregation.as_str(), "sum" | "count") {
            // Its events before `counted_events` (or pruned) are unknown.
            return refuse(&mut *conn, id, request, Refusal::ValuesUnknown).await;
        }
    }
    let fresh: Vec<&UsageEvent> = priced
        .iter()
        .map(|(e, _)| *e)
        .filter(|e| !removed_ids.contains(&(e.provider_id.to_string(), e.event_id.to_string())))
        .collect();
    // The events counted anew are admitted like usage: inside the dedupe
    // window, with a partition for their ids.
    let mut uncovered: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for event in &fresh {
        if admission.refuses(event.time, retained.as_ref()).is_some() {
            return refuse(&mut *conn, id, request, Refusal::OutsideWindow).await;
        }
        if !retained.as_ref().is_some_and(|r| r.covers(event.time)) {
            let (from, through) = uncovered.get_or_insert((event.time, event.time));
            *from = (*from).min(event.time);
            *through = (*through).max(event.time);
        }
    }
    if let Some((from, through)) = uncovered {
        return Err(ProcessError::Uncovered { from, through });
    }
    // The new values: those under new ids are counted like usage (storing
    // them is the dedupe), those reusing an id the correction removes are
    // stored over the old.
    let values = values(&catalog, &priced);
    let (new, reused): (Vec<CountedEvent>, Vec<CountedEvent>) = values
        .iter()
        .cloned()
        .partition(|v| !removed_ids.contains(&(v.provider_id.clone(), v.event_id.clone())));
    let legacy = !new.is_empty() && dedupe::holds_legacy_ids(&mut *conn).await?;
    let expected = new.len();
    if corrections_repo::count_new(&mut *conn, new, legacy)
        .await?
        .len()
        != expected
    {
        // Counted meanwhile (another account's usage under the same id):
        // run again; the plan then refuses it (`event_id_taken`).
        return Err(ProcessError::Conflict);
    }

    // Take the removed events out, count the new values in.
    let mut aggregates: BTreeMap<repo::AggregateKey, (Decimal, i64)> = BTreeMap::new();
    let mut hours: BTreeMap<repo::HourKey, (Decimal, i64)> = BTreeMap::new();
    let mut touched: BTreeMap<AccountPeriod, DateTime<Utc>> = BTreeMap::new();
    let mut late = BTreeSet::new();
    let mut billed: HashMap<(String, String), (Period, Period)> = HashMap::new();
    // The removed events' parts done on behalf of consumers, to take out.
    let mut on_behalf_removed = on_behalf::OnBehalf::default();
    for event in &plan.removed {
        let a = aggregates.entry(event.aggregate()).or_default();
        a.0 += event.quantity;
        a.1 += 1;
        if !event.on_behalf_of.is_empty() {
            on_behalf_removed.add(
                (
                    event.account_id.clone(),
                    event.period.start(),
                    event.price_id,
                    event.on_behalf_of.clone(),
                ),
                event.quantity,
            );
        }
        let hour = event
            .time
            .duration_trunc(chrono::TimeDelta::hours(1))
            .unwrap_or(event.time);
        let h = hours
            .entry((
                event.account_id.clone(),
                event.period.start(),
                event.price_id,
                hour,
            ))
            .or_default();
        h.0 += event.quantity;
        h.1 += 1;
        let billed_in = if state.is_open(event.period.start()) {
            event.period
        } else {
            let billed_in = state.place(event.time).billed_in;
            late.insert((event.account_id.clone(), billed_in.start(), event.period));
            billed_in
        };
        touched.insert(
            (event.account_id.clone(), billed_in.start()),
            billed_in.end(),
        );
        billed.insert(
            (event.provider_id.clone(), event.event_id.clone()),
            (event.period, billed_in),
        );
    }
    let removed_refs: Vec<&str> = plan.removed.iter().map(|e| e.event_id.as_str()).collect();
    corrections_repo::mark_cancelled(&mut *conn, request.provider_id.as_str(), &removed_refs, id)
        .await?;
    repo::add_to_aggregates(&mut *conn, &counted.increments).await?;
    repo::add_to_hourly(&mut *conn, &counted.hourly).await?;
    corrections_repo::subtract(&mut *conn, &aggregates, &hours).await?;
    on_behalf::take_out(&mut *conn, &on_behalf_removed).await?;
    on_behalf::record(&mut *conn, &counted.on_behalf).await?;
    corrections_repo::store_counted(&mut *conn, &reused).await?;
    corrections_repo::recompute(&mut *conn, &recomputable).await?;
    late.extend(counted.late.iter().cloned());
    let late: Vec<_> = late.into_iter().collect();
    seals_repo::record_late(&mut *conn, &late).await?;
    touched.extend(counted.touched.iter().map(|(k, v)| (k.clone(), *v)));

    let changes = changes(&plan.removed, &values, &billed, &counted.billed)?;
    corrections_repo::record(
        &mut *conn,
        &Recorded {
            id,
            request,
            refused: None,
        },
        &changes,
    )
    .await?;
    restate(&mut *conn, touched, &states, None).await
}

/// Records a correction refused, with nothing changed.
async fn refuse(
    conn: &mut PgConnection,
    id: uuid::Uuid,
    request: &CorrectionRequest,
    refusal: Refusal,
) -> Result<Restated, ProcessError> {
    let recorded = Recorded {
        id,
        request,
        refused: Some(refusal.code()),
    };
    corrections_repo::record(conn, &recorded, &[]).await?;
    tracing::info!(correction = %request.id, code = refusal.code(), "usage correction refused");
    Ok(Restated::default())
}

/// Checks a correction against what is stored now, and what it takes back
/// and counts anew; or why it is refused.
async fn plan(
    conn: &mut PgConnection,
    request: &CorrectionRequest,
) -> Result<Result<Plan, Refusal>, ProcessError> {
    let provider = request.provider_id.as_str();
    Ok(match &request.change {
        Change::Cancel { event_id } | Change::Amend { event_id, .. } => {
            let stored =
                corrections_repo::event_for_update(&mut *conn, provider, event_id.as_str()).await?;
            let stored = stored.map(|(e, cancelled)| {
                let account = e.account_id.clone();
                (e, cancelled, account)
            });
            match usage_correction::check_target(
                stored
                    .as_ref()
                    .map(|(_, cancelled, account)| (*cancelled, account.as_str())),
                request.account_id.as_str(),
            ) {
                Err(refusal) => Err(refusal),
                Ok(()) => {
                    let Some((event, _, _)) = stored else {
                        return Ok(Err(Refusal::UnknownEvent));
                    };
                    let added = match &request.change {
                        Change::Amend {
                            quantity,
                            dimensions,
                            ..
                        } => vec![amended(request, &event, *quantity, dimensions)?],
                        _ => Vec::new(),
                    };
                    Ok(Plan {
                        removed: vec![event],
                        added,
                    })
                }
            }
        }
        Change::Backfill { start, end, events } => {
            let removed = corrections_repo::window_for_update(
                &mut *conn,
                request.account_id.as_str(),
                provider,
                *start,
                *end,
            )
            .await?;
            let replaced: BTreeSet<&str> = removed.iter().map(|e| e.event_id.as_str()).collect();
            let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
            let taken = corrections_repo::already_counted(&mut *conn, provider, &ids).await?;
            match usage_correction::check_backfill(
                request,
                &replaced,
                &taken.iter().map(String::as_str).collect(),
            ) {
                Err(refusal) => Err(refusal),
                Ok(()) => Ok(Plan {
                    removed,
                    added: events.clone(),
                }),
            }
        }
    })
}

/// The stored event with an amendment's quantity and dimensions.
fn amended(
    request: &CorrectionRequest,
    event: &CountedEvent,
    quantity: Quantity,
    dimensions: &BTreeMap<String, String>,
) -> Result<UsageEvent, ProcessError> {
    let decode = |e: tally_domain::IdError| ProcessError::from(sqlx::Error::Decode(Box::new(e)));
    Ok(UsageEvent {
        provider_id: request.provider_id.clone(),
        event_id: tally_domain::EventId::parse(&event.event_id).map_err(decode)?,
        account_id: request.account_id.clone(),
        sku: tally_domain::Sku::parse(&event.sku).map_err(decode)?,
        quantity,
        time: event.time,
        received_at: request.requested_at,
        dimensions: dimensions.clone(),
        resource: if event.binding_id.is_empty() {
            None
        } else {
            Some(tally_domain::BindingId::parse(&event.binding_id).map_err(decode)?)
        },
        on_behalf_of: if event.on_behalf_of.is_empty() {
            None
        } else {
            Some(
                tally_domain::composition::OnBehalfOf::parse(&event.on_behalf_of)
                    .map_err(|e| ProcessError::from(sqlx::Error::Decode(Box::new(e))))?,
            )
        },
    })
}

/// The audit rows of a correction: each event it took back (`cancelled`,
/// or `amended` when it counts again with new values) and each it counted
/// for the first time (`added`), with its values before and after.
fn changes(
    removed: &[CountedEvent],
    added: &[CountedEvent],
    removed_billed: &HashMap<(String, String), (Period, Period)>,
    added_billed: &HashMap<(String, String), (Period, Period)>,
) -> Result<Vec<ChangeRow>, ProcessError> {
    let json = |e: &CountedEvent| {
        serde_json::to_string(&e.values())
            .map_err(|err| ProcessError::from(sqlx::Error::Decode(Box::new(err))))
    };
    let now: HashMap<&str, &CountedEvent> =
        added.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let mut rows = Vec::with_capacity(removed.len() + added.len());
    for old in removed {
        let key = (old.provider_id.clone(), old.event_id.clone());
        let (period, billed_in) = removed_billed
            .get(&key)
            .copied()
            .unwrap_or((old.period, old.period));
        let current = now.get(old.event_id.as_str());
        rows.push(ChangeRow {
            event_id: old.event_id.clone(),
            change: if current.is_some() {
                "amended"
            } else {
                "cancelled"
            },
            previous: Some(json(old)?),
            current: current.map(|e| json(e)).transpose()?,
            period_start: period.start(),
            billed_in: billed_in.start(),
        });
    }
    let taken: HashSet<&str> = removed.iter().map(|e| e.event_id.as_str()).collect();
    for new in added
        .iter()
        .filter(|e| !taken.contains(e.event_id.as_str()))
    {
        let key = (new.provider_id.clone(), new.event_id.clone());
        let (period, billed_in) = added_billed
            .get(&key)
            .copied()
            .unwrap_or((new.period, new.period));
        rows.push(ChangeRow {
            event_id: new.event_id.clone(),
            change: "added",
            previous: None,
            current: Some(json(new)?),
            period_start: period.start(),
            billed_in: billed_in.start(),
        });
    }
    rows.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    Ok(rows)
}
