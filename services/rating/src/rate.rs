//! Rating one batch of usage, end to end inside one PostgreSQL transaction:
//! admit it to the dedupe window, resolve prices, drop duplicates, add to
//! aggregates, restate every touched account-period. The statement is
//! recomputed from the stored aggregates, so it depends only on the set of
//! events, never on batch boundaries or order.

use chrono::{DateTime, DurationRound, Utc};
use sqlx::{PgConnection, PgPool};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use tally_domain::contract::Contract;
use tally_domain::dedupe::Refusal;

use tally_domain::{Aggregation, Currency, DedupeWindow, Period, UsageEvent};
use tally_platform::catalog::{self, PriceVersion};
use tally_platform::{composition, contracts};

use crate::corrections_repo::{self, CountedEvent};
use crate::dedupe::{self, Retained};
use crate::error::{in_transaction, ProcessError};
use crate::on_behalf;
use crate::outcome::{BatchOutcome, DeadLetter};
use crate::repo::{self, AccountPeriod, HourKey, Increment};
use crate::restate::restate;
use crate::seals_repo::{self, AccountState};

/// Price versions by (SKU, currency code), oldest first.
type Versions = HashMap<(String, &'static str), Vec<PriceVersion>>;

/// Which event times a batch rates: those inside the dedupe `window` at
/// `now` ([`DedupeWindow::admits`]), and in any case only times whose
/// dedupe partition is kept; the others are dead-lettered
/// `outside_dedupe_window`. `window` also sizes the partitions a batch
/// creates when its events need one.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub window: DedupeWindow,
    /// The moment of rating; `None` applies no clock, only the kept
    /// partitions (what the tests of rating with fixed event times use).
    pub now: Option<DateTime<Utc>>,
}

impl Admission {
    /// The configured window at `now` (what the consumer rates with).
    pub fn at(window: DedupeWindow, now: DateTime<Utc>) -> Self {
        Self {
            window,
            now: Some(now),
        }
    }

    /// No clock: only the kept partitions bound what is rated; the
    /// default configuration's window sizes new partitions.
    pub fn unclocked() -> Self {
        Self {
            window: tally_platform::Config::default().dedupe_window(),
            now: None,
        }
    }

    /// Why an event of `time` is refused ([`DedupeWindow::refusal`]), if it is.
    pub(crate) fn refuses(
        &self,
        time: DateTime<Utc>,
        retained: Option<&Retained>,
    ) -> Option<String> {
        let refusal = self
            .window
            .refusal(time, self.now, retained.and_then(|r| r.from))?;
        Some(match refusal {
            Refusal::OutsideWindow { cutoff, newest } => format!(
                "`time` {} is outside the dedupe window: rating rates times from {} to {}",
                time.to_rfc3339(),
                cutoff.to_rfc3339(),
                newest.to_rfc3339()
            ),
            Refusal::Dropped { kept_from } => format!(
                "`time` {} is older than the dedupe ids kept (from {}): its partition was dropped",
                time.to_rfc3339(),
                kept_from.to_rfc3339()
            ),
        })
    }
}

/// Rates one batch in one transaction (retried on serialization failures),
/// with no clock ([`Admission::unclocked`]).
pub async fn process_batch(
    pool: &PgPool,
    events: &[UsageEvent],
) -> Result<BatchOutcome, ProcessError> {
    process_batch_at(pool, events, Admission::unclocked()).await
}

/// Rates one batch in one transaction (retried on serialization failures),
/// admitting events by `admission`. When an event needs a dedupe partition
/// not made yet, it is made (in a transaction of its own) and the batch
/// rated again.
pub async fn process_batch_at(
    pool: &PgPool,
    events: &[UsageEvent],
    admission: Admission,
) -> Result<BatchOutcome, ProcessError> {
    let mut attempt = 0;
    loop {
        let rated = in_transaction(pool, "rating transaction", events, move |conn, events| {
            Box::pin(rate_in(conn, events, admission))
        })
        .await;
        match rated {
            Err(ProcessError::Uncovered { from, through }) if attempt == 0 => {
                attempt += 1;
                dedupe::ensure(pool, &admission.window, from, through).await?;
            }
            other => return other,
        }
    }
}

/// Like [`process_batch_at`], but an event that cannot be rated on its own
/// does not hold up the rest: when the whole batch fails, each event is
/// rated alone, and those that still fail while the database answers are
/// dead-lettered as `rating_failed` (replayable once the cause is fixed).
/// If the database itself does not answer, or the failure is the code's or
/// the schema's ([`ProcessError::is_systemic`]), the error is returned and
/// the batch is retried later, nothing dead-lettered.
pub async fn process_batch_isolating(
    pool: &PgPool,
    events: &[UsageEvent],
    admission: Admission,
) -> Result<BatchOutcome, ProcessError> {
    let whole = match process_batch_at(pool, events, admission).await {
        Ok(outcome) => return Ok(outcome),
        Err(err) => err,
    };
    tracing::warn!(error = %whole, events = events.len(), "batch failed; rating its events one by one");
    let mut merged = BatchOutcome::default();
    let mut failed = Vec::new();
    for event in events {
        match process_batch_at(pool, std::slice::from_ref(event), admission).await {
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

/// What rating needs to know of a batch's accounts and SKUs.
pub(crate) struct Catalog {
    /// Billing currency, anchor day, how far sealed.
    pub(crate) states: HashMap<String, AccountState>,
    versions: Versions,
    /// Wholesale versions (issue 17), for the accounts providers own.
    wholesale: Versions,
    provider_owned: HashSet<String>,
    aggregations: HashMap<String, Aggregation>,
    /// The contracts of the batch's accounts that have any (price protection).
    contracts: HashMap<String, Vec<Contract>>,
}

impl Catalog {
    pub(crate) async fn load(
        conn: &mut PgConnection,
        events: &[UsageEvent],
    ) -> Result<Self, ProcessError> {
        let account_ids: Vec<&str> = distinct(events.iter().map(|e| e.account_id.as_str()));
        let states = seals_repo::account_states(&mut *conn, &account_ids).await?;
        // Price versions of every SKU in those currencies.
        let skus: Vec<&str> = distinct(events.iter().map(|e| e.sku.as_str()));
        let codes: Vec<&str> = distinct(states.values().map(|s| s.currency.code()));
        let mut versions: Versions = HashMap::new();
        for v in catalog::price_versions(&mut *conn, &skus, &codes).await? {
            versions
                .entry((v.sku.to_string(), v.currency.code()))
                .or_default()
                .push(v);
        }
        let provider_owned = composition::provider_owned(&mut *conn, &account_ids).await?;
        let mut wholesale: Versions = HashMap::new();
        if !provider_owned.is_empty() {
            for v in catalog::wholesale_versions(&mut *conn, &skus, &codes).await? {
                wholesale
                    .entry((v.sku.to_string(), v.currency.code()))
                    .or_default()
                    .push(v);
            }
        }
        let aggregations = catalog::sku_aggregations(&mut *conn, &skus).await?;
        let contracts = contracts::contracts_of(&mut *conn, &account_ids).await?;
        Ok(Catalog {
            states,
            versions,
            wholesale,
            provider_owned,
            aggregations,
            contracts,
        })
    }

    /// The dimension whose distinct values `sku` counts, if it counts any.
    fn dimension(&self, sku: &str) -> Option<&str> {
        self.aggregations.get(sku).and_then(Aggregation::dimension)
    }

    /// The price version of `sku` in `currency` in effect at `at` for
    /// `account`: wholesale for an account a provider owns, where in
    /// effect ([`tally_domain::composition::price_version`]).
    fn price_at(
        &self,
        account: &str,
        sku: &str,
        currency: Currency,
        at: DateTime<Utc>,
    ) -> Option<&PriceVersion> {
        let key = (sku.to_owned(), currency.code());
        let none: &[PriceVersion] = &[];
        tally_domain::composition::price_version(
            self.versions.get(&key).map_or(none, Vec::as_slice),
            self.wholesale.get(&key).map_or(none, Vec::as_slice),
            self.provider_owned.contains(account),
            at,
        )
    }
}

fn distinct<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    items.collect::<BTreeSet<_>>().into_iter().collect()
}

async fn rate_in(
    conn: &mut PgConnection,
    events: &[UsageEvent],
    admission: Admission,
) -> Result<BatchOutcome, ProcessError> {
    let mut outcome = BatchOutcome::default();
    // First, so a prune dropping a partition waits for this transaction.
    let retained = dedupe::retained(&mut *conn).await?;
    let admitted = admit(events, admission, retained.as_ref(), &mut outcome)?;
    let catalog = Catalog::load(&mut *conn, events).await?;
    let priced = price(&catalog, &admitted, &mut outcome);
    if priced.is_empty() {
        return Ok(outcome);
    }

    // Dedupe against everything counted before: storing the values of the
    // events not counted yet is the dedupe.
    let t = std::time::Instant::now();
    let legacy = dedupe::holds_legacy_ids(&mut *conn).await?;
    let fresh = corrections_repo::count_new(&mut *conn, values(&catalog, &priced), legacy).await?;
    let dedupe = t.elapsed();

    let counted = count(&catalog, &priced, &fresh, &mut outcome);
    if counted.increments.is_empty() {
        return Ok(outcome);
    }
    let t = std::time::Instant::now();
    repo::add_to_aggregates(&mut *conn, &counted.increments).await?;
    let aggregated = t.elapsed();
    repo::add_to_hourly(&mut *conn, &counted.hourly).await?;
    on_behalf::record(&mut *conn, &counted.on_behalf).await?;
    let late: Vec<_> = counted.late.into_iter().collect();
    seals_repo::record_late(&mut *conn, &late).await?;
    let hours = t.elapsed() - aggregated;

    // A new statement version of every touched account-period, recomputed in full.
    let t = std::time::Instant::now();
    outcome.add(restate(&mut *conn, counted.touched, &catalog.states, None).await?);
    tracing::debug!(
        dedupe_ms = dedupe.as_millis() as u64,
        aggregates_ms = aggregated.as_millis() as u64,
        hourly_ms = hours.as_millis() as u64,
        restate_ms = t.elapsed().as_millis() as u64,
        "rating steps"
    );
    Ok(outcome)
}

/// The events of the batch inside the dedupe window (the others are dead
/// letters, `outside_dedupe_window`). [`ProcessError::Uncovered`] when one
/// needs a partition not made yet (nothing is written before this).
fn admit<'e>(
    events: &'e [UsageEvent],
    admission: Admission,
    retained: Option<&Retained>,
    outcome: &mut BatchOutcome,
) -> Result<Vec<&'e UsageEvent>, ProcessError> {
    let mut admitted = Vec::with_capacity(events.len());
    let mut uncovered: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    for event in events {
        if let Some(reason) = admission.refuses(event.time, retained) {
            outcome.dead.push(DeadLetter::for_event(
                "outside_dedupe_window",
                reason,
                event,
            ));
            continue;
        }
        if !retained.is_some_and(|r| r.covers(event.time)) {
            let (from, through) = uncovered.get_or_insert((event.time, event.time));
            *from = (*from).min(event.time);
            *through = (*through).max(event.time);
        }
        admitted.push(event);
    }
    match uncovered {
        Some((from, through)) => Err(ProcessError::Uncovered { from, through }),
        None => Ok(admitted),
    }
}

/// Each event of the batch with the id of its price version; the ones that
/// cannot be priced are dead letters, repeats within the batch duplicates.
pub(crate) fn price<'e>(
    catalog: &Catalog,
    events: &[&'e UsageEvent],
    outcome: &mut BatchOutcome,
) -> Vec<(&'e UsageEvent, i64)> {
    let mut seen: HashSet<(&str, &str)> = HashSet::new();
    let mut priced: Vec<(&UsageEvent, i64)> = Vec::with_capacity(events.len());
    for &event in events {
        if !seen.insert((event.provider_id.as_str(), event.event_id.as_str())) {
            outcome.duplicates += 1;
            continue;
        }
        let Some(currency) = catalog
            .states
            .get(event.account_id.as_str())
            .map(|s| s.currency)
        else {
            outcome.dead.push(DeadLetter::for_event(
                "account_unknown",
                format!("account {} does not exist", event.account_id),
                event,
            ));
            continue;
        };
        if let Some(dimension) = catalog.dimension(event.sku.as_str()) {
            if !event.dimensions.contains_key(dimension) {
                outcome.dead.push(DeadLetter::for_event(
                    "dimension_missing",
                    format!("sku {} counts distinct values of dimension {dimension:?}, which the event lacks", event.sku),
                    event,
                ));
                continue;
            }
        }
        // A protected account keeps the version in force at its contract's
        // signature (if the SKU had one then).
        let account = event.account_id.as_str();
        let protected = catalog
            .contracts
            .get(account)
            .and_then(|c| Contract::protected_price_time(c, event.time))
            .and_then(|signed| catalog.price_at(account, event.sku.as_str(), currency, signed));
        match protected
            .or_else(|| catalog.price_at(account, event.sku.as_str(), currency, event.time))
        {
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
    priced
}

/// The values to store of each priced event (placed in the period that
/// counts it, [`AccountState::place`]); priced events have known accounts.
pub(crate) fn values(catalog: &Catalog, priced: &[(&UsageEvent, i64)]) -> Vec<CountedEvent> {
    priced
        .iter()
        .filter_map(|(event, price_id)| {
            let state = catalog.states.get(event.account_id.as_str())?;
            Some(CountedEvent::of(
                event,
                *price_id,
                state.place(event.time).counted_in(),
            ))
        })
        .collect()
}

/// The new events of a batch, pre-aggregated in memory for one upsert each.
#[derive(Default)]
pub(crate) struct Counted {
    /// By (account, period counted in, price version, binding).
    pub(crate) increments: BTreeMap<repo::AggregateKey, Increment>,
    pub(crate) hourly: BTreeMap<HourKey, Increment>,
    /// The account-periods whose statements bill them (start → end).
    pub(crate) touched: BTreeMap<AccountPeriod, DateTime<Utc>>,
    /// Late usage: (account, start of the period billing it, sealed period).
    pub(crate) late: BTreeSet<(String, DateTime<Utc>, Period)>,
    /// Where each counted event is billed: (provider, event id) → (period
    /// counted in, period billing it).
    pub(crate) billed: HashMap<(String, String), (Period, Period)>,
    /// The part of the increments done on behalf of consumer references.
    pub(crate) on_behalf: on_behalf::OnBehalf,
}

/// Places each event not counted before ([`AccountState::place`]) and adds
/// it to its period's aggregates; the others are duplicates.
pub(crate) fn count(
    catalog: &Catalog,
    priced: &[(&UsageEvent, i64)],
    fresh: &HashSet<(String, String)>,
    outcome: &mut BatchOutcome,
) -> Counted {
    let mut counted = Counted::default();
    for (event, price_id) in priced {
        let key = (event.provider_id.to_string(), event.event_id.to_string());
        if !fresh.contains(&key) {
            outcome.duplicates += 1;
            continue;
        }
        outcome.counted += 1;
        let Some(state) = catalog.states.get(event.account_id.as_str()) else {
            continue; // priced events have a known account
        };
        // Usage counts in its own period; late usage of a sealed period is
        // billed on the account's next open one.
        let placement = state.place(event.time);
        let (billed_in, period) = (placement.billed_in, placement.counted_in());
        if let Some(origin) = placement.adjusts {
            counted
                .late
                .insert((event.account_id.to_string(), billed_in.start(), origin));
        }
        let inc = counted
            .increments
            .entry((
                event.account_id.to_string(),
                period.start(),
                *price_id,
                event
                    .resource
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
            ))
            .or_default();
        inc.period_end = Some(period.end());
        inc.add(event.time, event.event_id.as_str(), event.quantity.value());
        if let Some(reference) = &event.on_behalf_of {
            counted.on_behalf.add(
                (
                    event.account_id.to_string(),
                    period.start(),
                    *price_id,
                    reference.to_string(),
                ),
                event.quantity.value(),
            );
        }
        if let Some(dimension) = catalog.dimension(event.sku.as_str()) {
            if let Some(value) = event.dimensions.get(dimension) {
                inc.distinct.insert(value.clone());
            }
        }
        let hour = counted
            .hourly
            .entry((
                event.account_id.to_string(),
                period.start(),
                *price_id,
                hour_of(event.time),
            ))
            .or_default();
        // At most `Quantity::MAX` an event: cannot overflow in one batch
        // (see `Increment::add`).
        hour.quantity += event.quantity.value();
        hour.events += 1;
        counted.touched.insert(
            (event.account_id.to_string(), billed_in.start()),
            billed_in.end(),
        );
        counted.billed.insert(key, (period, billed_in));
    }
    counted
}

/// The start of the hour `at` falls in.
fn hour_of(at: DateTime<Utc>) -> DateTime<Utc> {
    at.duration_trunc(chrono::TimeDelta::hours(1)).unwrap_or(at)
}
