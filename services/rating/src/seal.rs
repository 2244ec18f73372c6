//! Applying seal markers: every open period of an account before the
//! marker's `through` gets its final statement (`sealed`), what it billed is
//! recorded, and from then on usage for it is late (billed as an adjustment
//! on the next open period). When a seal is asked for is invoicing's
//! decision (`tally_domain::seal_policy`).

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, HashMap};
use tally_domain::seal_policy;
use tally_domain::statement::merge_billed;
use tally_domain::usage::SealMarker;
use tally_domain::{Statement, StatementLine};

use crate::credits_repo;
use crate::error::{in_transaction, ProcessError};
use crate::outcome::{DeadLetter, Restated};
use crate::repo::AccountPeriod;
use crate::restate::restate;
use crate::seals_repo::{self, AccountState};

/// Applies a run of seal markers in one transaction: every open period of
/// each account starting before its `through` gets its final statement
/// (`sealed`), what it billed is recorded (its own lines, and its
/// adjustments on top of what their periods had billed), and from then on
/// usage for those periods is late. A marker that does not move the
/// account's seal forward (a redelivery, another invoicing instance's
/// duplicate) changes nothing.
pub async fn seal(pool: &PgPool, markers: &[SealMarker]) -> Result<Restated, ProcessError> {
    in_transaction(pool, "a seal", markers, |conn, markers| {
        Box::pin(seal_in(conn, markers))
    })
    .await
}

/// Like [`seal`], but a marker that still fails on its own while the
/// database answers is dead-lettered as `seal_failed` instead of holding up
/// its partition (the closer sends it again ten minutes later, as the seal
/// did not move). A failure of the database, the code or the schema is
/// returned: the batch waits.
pub async fn seal_isolating(
    pool: &PgPool,
    markers: &[SealMarker],
) -> Result<(Restated, Vec<DeadLetter>), ProcessError> {
    let mut restated = Restated::default();
    let mut dead = Vec::new();
    for marker in markers {
        match seal(pool, std::slice::from_ref(marker)).await {
            Ok(sealed) => {
                restated.statements.extend(sealed.statements);
                restated.outbox.extend(sealed.outbox);
            }
            Err(err) if err.is_systemic() => return Err(err),
            Err(err) => {
                sqlx::query("SELECT 1").execute(pool).await?;
                tracing::error!(account = %marker.account_id, error = %err, "seal dead-lettered");
                dead.push(DeadLetter {
                    code: "seal_failed",
                    reason: err.to_string(),
                    event: None,
                    payload: serde_json::to_string(&tally_domain::usage::UsageMessage::Seal(
                        marker.clone(),
                    ))
                    .ok(),
                });
            }
        }
    }
    Ok((restated, dead))
}

/// Every marker of a run in one transaction, set-based: at a period
/// boundary every account gets one, and a transaction each had `tally bench`
/// freshness wait seconds behind a run of them.
async fn seal_in(
    conn: &mut PgConnection,
    markers: &[SealMarker],
) -> Result<Restated, ProcessError> {
    let wanted = furthest_per_account(markers);
    let accounts: Vec<&str> = wanted.keys().map(String::as_str).collect();
    let states = seals_repo::account_states(&mut *conn, &accounts).await?;
    let Closings { through, advancing } = closings(wanted, &states);
    if through.is_empty() {
        return Ok(Restated::default());
    }
    let keys = periods_to_close(&mut *conn, &through, &advancing).await?;
    if keys.is_empty() && advancing.is_empty() {
        return Ok(Restated::default());
    }
    // `restate` leaves periods below an account's seal alone; these close now.
    let closing: HashMap<String, AccountState> = states
        .into_iter()
        .map(|(account, state)| {
            (
                account,
                AccountState {
                    sealed_through: None,
                    ..state
                },
            )
        })
        .collect();
    let restated = if keys.is_empty() {
        Restated::default()
    } else {
        restate(&mut *conn, keys, &closing, Some(&through)).await?
    };
    seals_repo::set_sealed_through(&mut *conn, &advancing).await?;
    tracing::info!(
        accounts = advancing.len(),
        sealed = restated.statements.iter().filter(|s| s.sealed).count(),
        "periods sealed"
    );
    Ok(restated)
}

/// The furthest `through` of each account's markers.
fn furthest_per_account(markers: &[SealMarker]) -> BTreeMap<String, DateTime<Utc>> {
    let mut wanted: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for marker in markers {
        let through = wanted
            .entry(marker.account_id.to_string())
            .or_insert(marker.through);
        *through = (*through).max(marker.through);
    }
    wanted
}

/// How far each known account closes, and the accounts whose seal moves.
struct Closings {
    through: BTreeMap<String, DateTime<Utc>>,
    advancing: BTreeMap<String, DateTime<Utc>>,
}

/// Each account closes up to the furthest of its markers and its seal
/// ([`seal_policy::closing`]): a marker that does not move the seal (a
/// redelivery, a duplicate) still closes a period a concurrent batch opened
/// below the seal.
fn closings(
    wanted: BTreeMap<String, DateTime<Utc>>,
    states: &HashMap<String, AccountState>,
) -> Closings {
    let mut through: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut advancing: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (account, wanted) in wanted {
        let Some(state) = states.get(&account) else {
            tracing::warn!(account, "seal for an unknown account ignored");
            continue;
        };
        let closing = seal_policy::closing(state.sealed_through, wanted);
        if closing.advances {
            advancing.insert(account.clone(), wanted);
        }
        through.insert(account, closing.through);
    }
    Closings { through, advancing }
}

/// The open periods that close (start → end), and the open periods after a
/// period a racing batch opened below the seal: once it closes, they are
/// restated too (an adjustment there may have counted its usage as late
/// while it was open).
async fn periods_to_close(
    conn: &mut PgConnection,
    through: &BTreeMap<String, DateTime<Utc>>,
    advancing: &BTreeMap<String, DateTime<Utc>>,
) -> Result<BTreeMap<AccountPeriod, DateTime<Utc>>, ProcessError> {
    let mut keys: BTreeMap<_, _> = seals_repo::periods_to_seal(&mut *conn, through)
        .await?
        .into_iter()
        .collect();
    let mut orphans: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (account, start) in keys.keys() {
        if !advancing.contains_key(account) {
            orphans.entry(account.clone()).or_insert(*start);
        }
    }
    if !orphans.is_empty() {
        for (key, end) in credits_repo::later_periods(&mut *conn, &orphans).await? {
            keys.entry(key).or_insert(end);
        }
    }
    Ok(keys)
}

/// Records what each sealed period billed: its own lines; and for each
/// period it adjusts, what that period had billed plus this adjustment.
pub(crate) async fn record_billed(
    conn: &mut PgConnection,
    statements: &[Statement],
) -> Result<(), ProcessError> {
    let mut billed: Vec<(AccountPeriod, Vec<StatementLine>)> = Vec::new();
    let mut adjusted: BTreeMap<AccountPeriod, Vec<StatementLine>> = BTreeMap::new();
    for s in statements.iter().filter(|s| s.sealed) {
        let account = s.account_id.to_string();
        let own = s
            .lines
            .iter()
            .filter(|l| l.adjusts.is_none())
            .cloned()
            .collect();
        billed.push(((account.clone(), s.period.start()), own));
        for line in &s.lines {
            if let Some(origin) = line.adjusts {
                adjusted
                    .entry((account.clone(), origin.start()))
                    .or_default()
                    .push(line.clone());
            }
        }
    }
    let origin_keys: Vec<AccountPeriod> = adjusted.keys().cloned().collect();
    let before = seals_repo::billed_lines(&mut *conn, &origin_keys).await?;
    for (key, adjustments) in adjusted {
        let was = before.get(&key).map(Vec::as_slice).unwrap_or_default();
        let merged = merge_billed(was, &adjustments).map_err(|source| ProcessError::Statement {
            account: key.0.clone(),
            period: key.1.to_rfc3339(),
            source: source.into(),
        })?;
        billed.push((key, merged));
    }
    seals_repo::write_billed(&mut *conn, &billed).await?;
    Ok(())
}
