//! One batch of usage, end to end inside one PostgreSQL transaction:
//! resolve prices, drop duplicates, add to aggregates, re-rate every touched
//! account-period. The statement is recomputed from the stored aggregates, so
//! it depends only on the set of events, never on batch boundaries or order.

use chrono::{DateTime, DurationRound, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tally_domain::credits::Grant;
use tally_domain::statement::{adjustment_lines, merge_billed, StatementError};
use tally_domain::usage::SealMarker;
use tally_domain::{
    AccountId, Aggregation, Currency, MoneyError, Period, PricingError, Statement, UsageEvent,
};
use tally_platform::catalog::{self, PriceVersion};

use crate::credits_repo;
use crate::repo::{self, AccountPeriod, HourKey, Increment, NewEventIds};
use crate::seals_repo::{self, AccountState};

/// The SQLSTATE of the database's refusal to change a sealed statement.
pub const SEALED: &str = "TY001";

/// Why an event could not be rated; it goes to `usage.events.dlq`.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    /// Stable code: `account_unknown`, `no_price`, `dimension_missing`,
    /// `malformed_message`, `amount_overflow`, `rating_failed`, `seal_failed`.
    pub code: &'static str,
    pub reason: String,
    /// The event, when it could be parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<UsageEvent>,
    /// The raw payload, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
}

impl DeadLetter {
    pub fn for_event(code: &'static str, reason: String, event: &UsageEvent) -> Self {
        Self {
            code,
            reason,
            event: Some(event.clone()),
            payload: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// New statement versions, to publish once the transaction committed.
    pub statements: Vec<Statement>,
    /// Their JSON as stored, one for each (published as is).
    pub bodies: Vec<String>,
    /// The outbox rows listing them, deleted once they are published.
    pub outbox: Vec<i64>,
    pub dead: Vec<DeadLetter>,
    pub counted: usize,
    pub duplicates: usize,
}

impl BatchOutcome {
    /// Adds another run's outcome to this one.
    pub fn merge(&mut self, other: BatchOutcome) {
        self.counted += other.counted;
        self.duplicates += other.duplicates;
        self.dead.extend(other.dead);
        self.add(Restated {
            statements: other.statements,
            bodies: other.bodies,
            outbox: other.outbox,
        });
    }

    /// Adds statements a transaction restated.
    pub fn add(&mut self, restated: Restated) {
        self.statements.extend(restated.statements);
        self.bodies.extend(restated.bodies);
        self.outbox.extend(restated.outbox);
    }

    /// Keeps only the newest version of each account-period's statement
    /// (and its body).
    pub fn keep_newest_statements(&mut self) {
        let mut pairs: Vec<(Statement, Option<String>)> = std::mem::take(&mut self.statements)
            .into_iter()
            .zip(
                std::mem::take(&mut self.bodies)
                    .into_iter()
                    .map(Some)
                    .chain(std::iter::repeat(None)),
            )
            .collect();
        pairs.sort_by(|(a, _), (b, _)| {
            (a.account_id.as_str(), a.period.start(), b.version).cmp(&(
                b.account_id.as_str(),
                b.period.start(),
                a.version,
            ))
        });
        pairs.dedup_by(|(b, _), (a, _)| a.account_id == b.account_id && a.period == b.period);
        // Bodies only when every statement has its own.
        let complete = pairs.iter().all(|(_, body)| body.is_some());
        for (statement, body) in pairs {
            self.statements.push(statement);
            if let Some(body) = body.filter(|_| complete) {
                self.bodies.push(body);
            }
        }
    }
}

/// Statement versions one transaction committed, their JSON as stored, and
/// the outbox row that lists them (deleted once they are on the broker).
#[derive(Debug, Default)]
pub struct Restated {
    pub statements: Vec<Statement>,
    pub bodies: Vec<String>,
    pub outbox: Vec<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A concurrent transaction stored a statement this one restated.
    #[error("a concurrent transaction restated a statement of this run first")]
    Conflict,
    #[error("statement of {account} {period}: {source}")]
    Statement {
        account: String,
        period: String,
        source: StatementError,
    },
}

impl ProcessError {
    /// Worth running again at once: a serialization failure or deadlock, or
    /// a batch that met a statement a concurrent seal just closed (SQLSTATE
    /// TY001; run again, it sees the seal).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProcessError::Database(e) => {
                tally_platform::db::is_retryable(e)
                    || e.as_database_error().and_then(|d| d.code()).as_deref() == Some(SEALED)
            }
            ProcessError::Conflict => true,
            ProcessError::Statement { .. } => false,
        }
    }

    /// The dead-letter code of an event that fails on its own with this
    /// error: `amount_overflow` when a charge does not fit in an amount
    /// (the period's usage at its price is beyond what Tally can bill),
    /// `rating_failed` for anything else.
    pub fn dead_letter_code(&self) -> &'static str {
        match self {
            ProcessError::Statement {
                source:
                    StatementError::Pricing(PricingError::Overflow)
                    | StatementError::Money(MoneyError::Overflow),
                ..
            } => "amount_overflow",
            _ => "rating_failed",
        }
    }

    /// A failure of the code, the schema or the database, not of an event:
    /// SQLSTATE class 42 (e.g. an undefined column or a type mismatch, as
    /// when a binary runs against a database it was not built for) or 0A, a
    /// column the code expects missing, or a database that cannot be reached
    /// or timed out ([`tally_platform::db::is_unavailable`]). No event is
    /// dead-lettered for it: the batch is retried.
    pub fn is_systemic(&self) -> bool {
        match self {
            ProcessError::Database(sqlx::Error::ColumnNotFound(_)) => true,
            ProcessError::Database(e) if tally_platform::db::is_unavailable(e) => true,
            ProcessError::Database(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .is_some_and(|code| code.starts_with("42") || code.starts_with("0A")),
            ProcessError::Conflict | ProcessError::Statement { .. } => false,
        }
    }
}

/// The newest price version of `sku` in `currency` in effect at `at`.
fn price_at<'a>(
    versions: &'a HashMap<(String, &'static str), Vec<PriceVersion>>,
    sku: &str,
    currency: Currency,
    at: DateTime<Utc>,
) -> Option<&'a PriceVersion> {
    versions
        .get(&(sku.to_owned(), currency.code()))?
        .iter()
        .rev()
        .find(|v| v.effective_from <= at)
}

/// Rates one batch in one transaction (retried on serialization failures).
pub async fn process_batch(
    pool: &PgPool,
    events: &[UsageEvent],
) -> Result<BatchOutcome, ProcessError> {
    in_transaction(pool, "rating transaction", events, |conn, events| {
        Box::pin(rate_in(conn, events))
    })
    .await
}

/// Runs `work` on `input` in a transaction and commits it. A retryable
/// failure (a deadlock, a serialization failure, a sealed statement met)
/// rolls back and runs it again, up to five more times.
async fn in_transaction<A: ?Sized + Sync, T>(
    pool: &PgPool,
    what: &'static str,
    input: &A,
    work: impl for<'c> Fn(
        &'c mut PgConnection,
        &'c A,
    ) -> futures::future::BoxFuture<'c, Result<T, ProcessError>>,
) -> Result<T, ProcessError> {
    let mut attempt = 0;
    loop {
        let mut tx = pool.begin().await?;
        match work(&mut tx, input).await {
            Ok(done) => {
                tx.commit().await?;
                return Ok(done);
            }
            Err(err) if err.is_retryable() && attempt < 5 => {
                attempt += 1;
                tracing::warn!(attempt, error = %err, "retrying {what}");
            }
            Err(err) => return Err(err),
        }
    }
}

async fn rate_in(
    conn: &mut PgConnection,
    events: &[UsageEvent],
) -> Result<BatchOutcome, ProcessError> {
    let mut outcome = BatchOutcome::default();

    // 1. Accounts: billing currency, anchor day, how far they are sealed.
    let account_ids: Vec<&str> = events
        .iter()
        .map(|e| e.account_id.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let states = seals_repo::account_states(&mut *conn, &account_ids).await?;

    // 2. Price versions of every SKU in those currencies.
    let skus: Vec<&str> = events
        .iter()
        .map(|e| e.sku.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let codes: Vec<&str> = states
        .values()
        .map(|s| s.currency.code())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut versions: HashMap<(String, &'static str), Vec<PriceVersion>> = HashMap::new();
    for v in catalog::price_versions(&mut *conn, &skus, &codes).await? {
        versions
            .entry((v.sku.to_string(), v.currency.code()))
            .or_default()
            .push(v);
    }

    let aggregations = catalog::sku_aggregations(&mut *conn, &skus).await?;

    // 3. Price each event; the ones that cannot be priced are dead letters.
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut priced: Vec<(&UsageEvent, i64)> = Vec::with_capacity(events.len());
    for event in events {
        if !seen.insert((event.provider_id.as_str(), event.event_id.as_str())) {
            outcome.duplicates += 1;
            continue;
        }
        let Some(currency) = states.get(event.account_id.as_str()).map(|s| &s.currency) else {
            outcome.dead.push(DeadLetter::for_event(
                "account_unknown",
                format!("account {} does not exist", event.account_id),
                event,
            ));
            continue;
        };
        if let Some(dimension) = aggregations
            .get(event.sku.as_str())
            .and_then(Aggregation::dimension)
        {
            if !event.dimensions.contains_key(dimension) {
                outcome.dead.push(DeadLetter::for_event(
                    "dimension_missing",
                    format!("sku {} counts distinct values of dimension {dimension:?}, which the event lacks", event.sku),
                    event,
                ));
                continue;
            }
        }
        match price_at(&versions, event.sku.as_str(), *currency, event.time) {
            Some(price) => priced.push((event, price.id)),
            None => outcome.dead.push(DeadLetter::for_event(
                "no_price",
                format!(
                    "sku {} has no {} price in effect at {}",
                    event.sku,
                    currency,
                    event.time.to_rfc3339()
                ),
                event,
            )),
        }
    }
    if priced.is_empty() {
        return Ok(outcome);
    }

    // 4. Dedupe against everything counted before (sorted: stable lock order).
    priced.sort_by(|a, b| {
        (a.0.provider_id.as_str(), a.0.event_id.as_str())
            .cmp(&(b.0.provider_id.as_str(), b.0.event_id.as_str()))
    });
    let ids = NewEventIds {
        provider_ids: priced.iter().map(|(e, _)| e.provider_id.as_str()).collect(),
        event_ids: priced.iter().map(|(e, _)| e.event_id.as_str()).collect(),
        account_ids: priced.iter().map(|(e, _)| e.account_id.as_str()).collect(),
        times: priced.iter().map(|(e, _)| e.time).collect(),
    };
    let t = std::time::Instant::now();
    let fresh = repo::insert_event_ids(&mut *conn, &ids).await?;
    let dedupe = t.elapsed();

    // 5. Pre-aggregate the new events in memory, then one upsert.
    let mut increments: BTreeMap<(String, DateTime<Utc>, i64), Increment> = BTreeMap::new();
    let mut hourly: BTreeMap<HourKey, Increment> = BTreeMap::new();
    let mut touched: BTreeMap<AccountPeriod, DateTime<Utc>> = BTreeMap::new();
    let mut late: BTreeSet<(String, DateTime<Utc>, Period)> = BTreeSet::new();
    for (event, price_id) in &priced {
        let key = (event.provider_id.to_string(), event.event_id.to_string());
        if !fresh.contains(&key) {
            outcome.duplicates += 1;
            continue;
        }
        outcome.counted += 1;
        let Some(state) = states.get(event.account_id.as_str()) else {
            continue; // priced events have a known account
        };
        // Usage counts in its own period; late usage of a sealed period is
        // billed on the account's next open one.
        let (billed_in, adjusts) = state.place(event.time);
        let period = adjusts.unwrap_or(billed_in);
        if let Some(origin) = adjusts {
            late.insert((event.account_id.to_string(), billed_in.start(), origin));
        }
        let inc = increments
            .entry((event.account_id.to_string(), period.start(), *price_id))
            .or_default();
        inc.period_end = Some(period.end());
        inc.add(event.time, event.event_id.as_str(), event.quantity.value());
        if let Some(dimension) = aggregations
            .get(event.sku.as_str())
            .and_then(Aggregation::dimension)
        {
            if let Some(value) = event.dimensions.get(dimension) {
                inc.distinct.insert(value.clone());
            }
        }
        let hour = hourly
            .entry((
                event.account_id.to_string(),
                period.start(),
                *price_id,
                hour_of(event.time),
            ))
            .or_default();
        hour.quantity += event.quantity.value();
        hour.events += 1;
        touched.insert(
            (event.account_id.to_string(), billed_in.start()),
            billed_in.end(),
        );
    }
    if increments.is_empty() {
        return Ok(outcome);
    }
    let t = std::time::Instant::now();
    repo::add_to_aggregates(&mut *conn, &increments).await?;
    let aggregated = t.elapsed();
    repo::add_to_hourly(&mut *conn, &hourly).await?;
    let late: Vec<_> = late.into_iter().collect();
    seals_repo::record_late(&mut *conn, &late).await?;
    let hours = t.elapsed() - aggregated;

    // 6. New statement version of every touched account-period, recomputed in full.
    let t = std::time::Instant::now();
    outcome.add(restate(&mut *conn, touched, &states, None).await?);
    tracing::debug!(
        dedupe_ms = dedupe.as_millis() as u64,
        aggregates_ms = aggregated.as_millis() as u64,
        hourly_ms = hours.as_millis() as u64,
        restate_ms = t.elapsed().as_millis() as u64,
        "rating steps"
    );
    Ok(outcome)
}

/// The start of the hour `at` falls in.
fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(chrono::TimeDelta::hours(1)).unwrap_or(at)
}

/// New statement versions of these open account-periods (start → end), each
/// recomputed in full from its aggregates, with adjustment lines for the
/// late usage of sealed periods it bills and the account's credits applied.
/// A period's draws change the balances later periods start from, so for an
/// account with grants every later open period is restated too, in period
/// order. With `seal_through` (per account), an account's periods starting
/// before it become final (`sealed`). Sealed periods are never restated.
///
/// Each statement row is locked and its version read first, then written
/// once, over that version; if a concurrent transaction stored a statement
/// that had no row to lock yet, [`ProcessError::Conflict`] (retryable) rolls
/// this one back.
pub(crate) async fn restate(
    conn: &mut PgConnection,
    mut keys: BTreeMap<AccountPeriod, DateTime<Utc>>,
    states: &HashMap<String, AccountState>,
    seal_through: Option<&BTreeMap<String, DateTime<Utc>>>,
) -> Result<Restated, ProcessError> {
    keys.retain(|(account, start), _| {
        states.get(account).is_none_or(|s| {
            s.sealed_through.is_none_or(|through| *start >= through) || s.open_below.contains(start)
        })
    });
    let accounts: Vec<&str> = keys
        .keys()
        .map(|(a, _)| a.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let grants = credits_repo::grants_of(&mut *conn, &accounts).await?;
    if !grants.is_empty() {
        let mut first: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
        for (account, start) in keys.keys() {
            if grants.contains_key(account) {
                first
                    .entry(account.clone())
                    .and_modify(|f| *f = (*f).min(*start))
                    .or_insert(*start);
            }
        }
        for (key, end) in credits_repo::later_periods(&mut *conn, &first).await? {
            keys.entry(key).or_insert(end);
        }
    }
    // In (account, period) order: row locks are taken in one order, and an
    // account's periods are restated oldest first.
    let keys: Vec<(AccountPeriod, DateTime<Utc>)> = keys.into_iter().collect();
    let t = std::time::Instant::now();
    let plain_keys: Vec<AccountPeriod> = keys.iter().map(|(k, _)| k.clone()).collect();
    let stored_versions = repo::current_versions(&mut *conn, &plain_keys).await?;
    let versions_read = t.elapsed();
    let late = seals_repo::late_origins(&mut *conn, &plain_keys).await?;
    // Each sealed period once, however many periods adjust it.
    let origin_set: BTreeSet<AccountPeriod> = late
        .iter()
        .flat_map(|((account, _), origins)| origins.iter().map(|o| (account.clone(), o.start())))
        .collect();
    let origin_keys: Vec<AccountPeriod> = origin_set.iter().cloned().collect();
    let mut billed = seals_repo::billed_lines(&mut *conn, &origin_keys).await?;
    // Each period's aggregates once (a period may be restated and adjusted).
    let load_keys: Vec<AccountPeriod> = plain_keys
        .iter()
        .chain(&origin_keys)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut aggregates = repo::load_aggregates(&mut *conn, &load_keys).await?;
    let loaded = t.elapsed() - versions_read;
    let mut statements = Vec::with_capacity(keys.len());
    for ((account, start), end) in keys {
        let statement_error = |source| ProcessError::Statement {
            account: account.clone(),
            period: start.to_rfc3339(),
            source,
        };
        let account_id =
            AccountId::parse(&account).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let period = Period::new(start, end).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let currency = states.get(&account).map(|s| s.currency).ok_or_else(|| {
            sqlx::Error::Decode(format!("account {account} vanished during rating").into())
        })?;
        let version = stored_versions
            .get(&(account.clone(), start))
            .map_or(1, |v| v + 1);
        // A period is usually an origin or restated here, not both; a
        // period opened below the seal by a batch racing it can be both
        // (until it is sealed, in this very restatement, before the later
        // periods that adjust it).
        let own_key = (account.clone(), start);
        let rows = if origin_set.contains(&own_key) {
            aggregates.get(&own_key).cloned()
        } else {
            aggregates.remove(&own_key)
        }
        .unwrap_or_default();
        let mut statement = Statement::compute(account_id.clone(), period, currency, version, rows)
            .map_err(statement_error)?;
        let origins = late
            .get(&(account.clone(), start))
            .map(Vec::as_slice)
            .unwrap_or_default();
        statement.sealed = seal_through
            .and_then(|through| through.get(&account))
            .is_some_and(|through| start < *through);
        if statement.sealed && origin_set.contains(&own_key) {
            // Its own lines are billed from now on, for the later periods
            // of this restatement that adjust it.
            let own = statement.lines.clone();
            billed.insert(own_key.clone(), own);
        }
        for origin in origins {
            let key = (account.clone(), origin.start());
            let rows = aggregates.get(&key).cloned().unwrap_or_default();
            let current = Statement::compute(account_id.clone(), *origin, currency, 0, rows)
                .map_err(statement_error)?;
            let before = billed.get(&key).map(Vec::as_slice).unwrap_or_default();
            let adjustments = adjustment_lines(*origin, &current.lines, before)
                .map_err(|e| statement_error(e.into()))?;
            if statement.sealed {
                // Billed from now on: a later period of this restatement
                // (periods go oldest first) adjusts only what is left.
                let merged =
                    merge_billed(before, &adjustments).map_err(|e| statement_error(e.into()))?;
                billed.insert(key, merged);
            }
            statement
                .add_adjustments(adjustments)
                .map_err(|e| statement_error(e.into()))?;
        }
        if let Some(stored) = grants.get(&account) {
            // Adjustment lines are usage of earlier periods: a grant valid
            // then may pay for them.
            let earliest = origins.first().map_or(start, |o| o.start().min(start));
            let drawn = credits_repo::drawn_before(&mut *conn, &account, start).await?;
            let usable: Vec<Grant> = stored
                .iter()
                .filter_map(|g| {
                    let earlier = drawn.get(&g.terms.id).copied().unwrap_or_default();
                    let remaining = g.amount - g.voided_amount - earlier;
                    // A voided grant pays only in periods begun before the void.
                    let overlaps = g.terms.effective_at < end
                        && g.terms.expires_at.is_none_or(|e| e > earliest)
                        && g.voided_at.is_none_or(|v| v > start);
                    (remaining > Decimal::ZERO && overlaps).then(|| Grant {
                        remaining,
                        ..g.terms.clone()
                    })
                })
                .collect();
            let starts: Vec<DateTime<Utc>> = std::iter::once(start)
                .chain(origins.iter().map(Period::start))
                .collect();
            let hours = credits_repo::usage_hours(&mut *conn, &account, &starts).await?;
            statement
                .apply_credits(&usable, &hours)
                .map_err(|e| statement_error(e.into()))?;
            let draws: Vec<(i64, Decimal)> = statement
                .credits
                .iter()
                .map(|c| (c.grant_id, c.amount))
                .collect();
            credits_repo::write_draws(&mut *conn, &account, start, version, &draws).await?;
        }
        statements.push(statement);
    }
    // Serialised once, straight to text (not through `serde_json::Value`).
    let bodies = statements
        .iter()
        .map(serde_json::to_string)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    let computed = t.elapsed() - versions_read - loaded;
    for account in grants.keys() {
        credits_repo::settle_voided(&mut *conn, account).await?;
    }
    let outbox = repo::store_statements(&mut *conn, &statements, &bodies).await?;
    if outbox.is_none() && !statements.is_empty() {
        return Err(ProcessError::Conflict);
    }
    tracing::debug!(
        statements = statements.len(),
        versions_ms = versions_read.as_millis() as u64,
        load_ms = loaded.as_millis() as u64,
        compute_ms = computed.as_millis() as u64,
        store_ms = (t.elapsed() - versions_read - loaded - computed).as_millis() as u64,
        "restated"
    );
    Ok(Restated {
        statements,
        bodies,
        outbox: outbox.into_iter().collect(),
    })
}

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
                restated.bodies.extend(sealed.bodies);
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
    let mut wanted: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for marker in markers {
        let through = wanted
            .entry(marker.account_id.to_string())
            .or_insert(marker.through);
        *through = (*through).max(marker.through);
    }
    let accounts: Vec<&str> = wanted.keys().map(String::as_str).collect();
    let states = seals_repo::account_states(&mut *conn, &accounts).await?;
    // Each account closes up to the furthest of its markers and its seal: a
    // marker that does not move the seal (a redelivery, a duplicate) still
    // closes a period a concurrent batch opened below the seal.
    let mut through: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut advancing: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (account, wanted) in wanted {
        let Some(state) = states.get(&account) else {
            tracing::warn!(account, "seal for an unknown account ignored");
            continue;
        };
        if state.sealed_through.is_none_or(|s| s < wanted) {
            advancing.insert(account.clone(), wanted);
        }
        through.insert(
            account,
            state.sealed_through.map_or(wanted, |s| s.max(wanted)),
        );
    }
    if through.is_empty() {
        return Ok(Restated::default());
    }
    let mut keys: BTreeMap<_, _> = seals_repo::periods_to_seal(&mut *conn, &through)
        .await?
        .into_iter()
        .collect();
    if keys.is_empty() && advancing.is_empty() {
        return Ok(Restated::default());
    }
    // A period a racing batch opened below the seal: once it closes, the
    // open periods after it are restated too (an adjustment there may have
    // counted its usage as late while it was open).
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
    let statements = &restated.statements;
    // What each sealed period billed: its own lines; and for each period it
    // adjusts, what that period had billed plus this adjustment.
    let mut billed: Vec<(AccountPeriod, Vec<tally_domain::StatementLine>)> = Vec::new();
    let mut adjusted: BTreeMap<AccountPeriod, Vec<tally_domain::StatementLine>> = BTreeMap::new();
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
    seals_repo::set_sealed_through(&mut *conn, &advancing).await?;
    tracing::info!(
        accounts = advancing.len(),
        sealed = statements.iter().filter(|s| s.sealed).count(),
        "periods sealed"
    );
    Ok(restated)
}

/// Like [`process_batch`], but an event that cannot be rated on its own does
/// not hold up the rest: when the whole batch fails, each event is rated
/// alone, and those that still fail while the database answers are
/// dead-lettered as `rating_failed` (replayable once the cause is fixed).
/// If the database itself does not answer, or the failure is the code's or
/// the schema's ([`ProcessError::is_systemic`]), the error is returned and
/// the batch is retried later, nothing dead-lettered.
pub async fn process_batch_isolating(
    pool: &PgPool,
    events: &[UsageEvent],
) -> Result<BatchOutcome, ProcessError> {
    let whole = match process_batch(pool, events).await {
        Ok(outcome) => return Ok(outcome),
        Err(err) => err,
    };
    tracing::warn!(error = %whole, events = events.len(), "batch failed; rating its events one by one");
    let mut merged = BatchOutcome::default();
    let mut failed = Vec::new();
    for event in events {
        match process_batch(pool, std::slice::from_ref(event)).await {
            Ok(one) => merged.merge(one),
            // Every event would fail alike: retry the batch, dead-letter nothing.
            Err(err) if err.is_systemic() => return Err(err),
            Err(err) => failed.push((event, err)),
        }
    }
    if !failed.is_empty() {
        sqlx::query("SELECT 1").execute(pool).await?;
        for (event, err) in failed {
            merged.dead.push(DeadLetter::for_event(
                err.dead_letter_code(),
                err.to_string(),
                event,
            ));
        }
    }
    merged.keep_newest_statements();
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(account: &str, month: &str, version: i64) -> Statement {
        Statement::compute(
            AccountId::parse(account).unwrap(),
            Period::parse_month(month).unwrap(),
            Currency::parse("USD").unwrap(),
            version,
            Vec::new(),
        )
        .unwrap()
    }

    fn outcome(versions: &[(&str, &str, i64)], bodies: bool) -> BatchOutcome {
        let statements: Vec<Statement> = versions
            .iter()
            .map(|(a, m, v)| statement(a, m, *v))
            .collect();
        BatchOutcome {
            bodies: if bodies {
                statements
                    .iter()
                    .map(|s| format!("{}@{}", s.account_id, s.version))
                    .collect()
            } else {
                Vec::new()
            },
            statements,
            ..BatchOutcome::default()
        }
    }

    #[test]
    fn an_overflowing_charge_is_dead_lettered_with_its_own_code() {
        let failed = |source| ProcessError::Statement {
            account: "acme".into(),
            period: "2026-11-01T00:00:00+00:00".into(),
            source,
        };
        assert_eq!(
            failed(StatementError::Pricing(PricingError::Overflow)).dead_letter_code(),
            "amount_overflow"
        );
        assert_eq!(
            failed(StatementError::Money(MoneyError::Overflow)).dead_letter_code(),
            "amount_overflow"
        );
        assert_eq!(
            failed(StatementError::Pricing(PricingError::NoTiers)).dead_letter_code(),
            "rating_failed"
        );
        assert_eq!(ProcessError::Conflict.dead_letter_code(), "rating_failed");
    }

    #[test]
    fn the_newest_version_of_each_statement_is_kept_with_its_body() {
        let mut out = outcome(
            &[
                ("b", "2026-11", 2),
                ("a", "2026-11", 3),
                ("b", "2026-11", 4),
                ("a", "2026-10", 1),
            ],
            true,
        );
        out.keep_newest_statements();
        let kept: Vec<(String, String, i64)> = out
            .statements
            .iter()
            .map(|s| (s.account_id.to_string(), s.period.label(), s.version))
            .collect();
        assert_eq!(
            kept,
            [
                ("a".to_owned(), "2026-10".to_owned(), 1),
                ("a".to_owned(), "2026-11".to_owned(), 3),
                ("b".to_owned(), "2026-11".to_owned(), 4)
            ]
        );
        assert_eq!(out.bodies, ["a@1", "a@3", "b@4"]);
        // Without a body for each, none: publishing serialises them.
        let mut out = outcome(&[("b", "2026-11", 2), ("b", "2026-11", 4)], false);
        out.keep_newest_statements();
        assert_eq!((out.statements.len(), out.bodies.len()), (1, 0));
    }
}
