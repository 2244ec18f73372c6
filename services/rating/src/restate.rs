//! Restating account-periods: a new statement version of each, recomputed in
//! full from its aggregates, with adjustment lines for the late usage of
//! sealed periods it bills and the account's credits applied. Rating a
//! batch, applying a seal and a credit change all end here.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};
use tally_domain::contract::{self, commitments, Contract};
use tally_domain::credits::{Grant, StoredGrant, UsageHours};
use tally_domain::money::MoneyError;
use tally_domain::plan::{self, BoundResource, PlanVersion};
use tally_domain::statement::{adjustment_lines, merge_billed, StatementError};
use tally_domain::{
    AccountId, AnchorDay, Currency, Period, PlanId, Statement, StatementLine, UsageAggregate,
};
use tally_platform::{bindings, contracts, plans};

use crate::credits_repo::{self, PeriodDraws};
use crate::draws::{self, Draws};
use crate::error::ProcessError;
use crate::outcome::Restated;
use crate::repo::{self, AccountPeriod};
use crate::seals_repo::{self, AccountState};

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
/// this one back. With `seal_through`, what each period sealed billed is
/// recorded ([`crate::seal::record_billed`]) before it is stored: from then
/// on only the stored body is held ([`crate::outcome::HeldStatement`]).
///
/// The account-periods are restated a few accounts at a time
/// ([`RESTATE_CHUNK`]), each account's all together (its credits and
/// commitments span its periods), so a batch's aggregates are never all
/// loaded at once; each chunk has its own outbox row.
pub(crate) async fn restate(
    conn: &mut PgConnection,
    keys: BTreeMap<AccountPeriod, DateTime<Utc>>,
    states: &HashMap<String, AccountState>,
    seal_through: Option<&BTreeMap<String, DateTime<Utc>>>,
) -> Result<Restated, ProcessError> {
    let mut restated = Restated::default();
    for keys in by_accounts(keys, RESTATE_CHUNK) {
        let chunk = restate_accounts(&mut *conn, keys, states, seal_through).await?;
        restated.statements.extend(chunk.statements);
        restated.outbox.extend(chunk.outbox);
    }
    Ok(restated)
}

/// The account-periods a restatement loads and computes at a time, at
/// most (an account with more is restated alone): heaptrack of rating at
/// 400 lines a statement (6750fdb, shape base of BENCHMARKS.md) put its
/// heap peak where a whole batch's aggregates were loaded: 75 MiB of 185.
const RESTATE_CHUNK: usize = 256;

/// `keys` in chunks of at most `most` account-periods, in (account,
/// period) order, never splitting an account's (one with more than `most`
/// is a chunk alone).
fn by_accounts(
    keys: BTreeMap<AccountPeriod, DateTime<Utc>>,
    most: usize,
) -> Vec<BTreeMap<AccountPeriod, DateTime<Utc>>> {
    let mut chunks: Vec<BTreeMap<AccountPeriod, DateTime<Utc>>> = Vec::new();
    let mut account: Vec<(AccountPeriod, DateTime<Utc>)> = Vec::new();
    let mut flush = |account: &mut Vec<(AccountPeriod, DateTime<Utc>)>| {
        let fits = chunks
            .last()
            .is_some_and(|last| last.len() + account.len() <= most);
        if !fits {
            chunks.push(BTreeMap::new());
        }
        if let Some(last) = chunks.last_mut() {
            last.extend(account.drain(..));
        }
    };
    for (key, end) in keys {
        if account.first().is_some_and(|((a, _), _)| *a != key.0) {
            flush(&mut account);
        }
        account.push((key, end));
    }
    if !account.is_empty() {
        flush(&mut account);
    }
    chunks
}

/// [`restate`] of these accounts' periods, in one go.
async fn restate_accounts(
    conn: &mut PgConnection,
    keys: BTreeMap<AccountPeriod, DateTime<Utc>>,
    states: &HashMap<String, AccountState>,
    seal_through: Option<&BTreeMap<String, DateTime<Utc>>>,
) -> Result<Restated, ProcessError> {
    let (keys, grants, contracts) = with_later_periods(&mut *conn, keys, states).await?;
    let t = Instant::now();
    let mut inputs = Inputs::load(&mut *conn, &keys, states, &grants, contracts).await?;
    let mut statements = Vec::with_capacity(keys.len());
    let mut draws = Vec::new();
    for ((account, start), end) in keys {
        let currency = states.get(&account).map(|s| s.currency).ok_or_else(|| {
            sqlx::Error::Decode(format!("account {account} vanished during rating").into())
        })?;
        let sealed = seal_through
            .and_then(|through| through.get(&account))
            .is_some_and(|through| start < *through);
        let mut statement = inputs.statement(&account, start, end, currency, sealed)?;
        if let Some(stored) = grants.get(&account) {
            draws.push(inputs.apply_credits(&mut statement, stored)?);
        }
        statements.push(statement);
    }
    let computed = t.elapsed() - inputs.versions_read - inputs.loaded;
    credits_repo::write_draws(&mut *conn, &draws).await?;
    let accounts: Vec<&str> = grants.keys().map(String::as_str).collect();
    if seal_through.is_some() {
        crate::seal::record_billed(&mut *conn, &statements).await?;
    }
    let restated = store(&mut *conn, statements, &accounts).await?;
    tracing::debug!(
        statements = restated.statements.len(),
        versions_ms = inputs.versions_read.as_millis() as u64,
        load_ms = inputs.loaded.as_millis() as u64,
        compute_ms = computed.as_millis() as u64,
        store_ms =
            (t.elapsed() - inputs.versions_read - inputs.loaded - computed).as_millis() as u64,
        "restated"
    );
    Ok(restated)
}

fn statement_error(account: &str, start: DateTime<Utc>, source: StatementError) -> ProcessError {
    ProcessError::Statement {
        account: account.to_owned(),
        period: start.to_rfc3339(),
        source,
    }
}

/// The open periods among `keys`, and for each account with grants or a
/// commitment, every open period after its first one too; in (account,
/// period) order: row locks are taken in one order, and an account's
/// periods are restated oldest first. With the grants of those accounts
/// (share-locked) and the contracts of the accounts that have any. (A
/// period's draws change the balances later periods start from; its net
/// spend, the true-up of a later period ending its commitment period.)
async fn with_later_periods(
    conn: &mut PgConnection,
    mut keys: BTreeMap<AccountPeriod, DateTime<Utc>>,
    states: &HashMap<String, AccountState>,
) -> Result<
    (
        Vec<(AccountPeriod, DateTime<Utc>)>,
        HashMap<String, Vec<StoredGrant>>,
        HashMap<String, Vec<Contract>>,
    ),
    ProcessError,
> {
    keys.retain(|(account, start), _| states.get(account).is_none_or(|s| s.is_open(*start)));
    let accounts: Vec<&str> = keys
        .keys()
        .map(|(a, _)| a.as_str())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let grants = credits_repo::grants_of(&mut *conn, &accounts).await?;
    let contracts = contracts::contracts_of(&mut *conn, &accounts).await?;
    let carries = |account: &String| {
        grants.contains_key(account)
            || contracts
                .get(account)
                .is_some_and(|all| all.iter().any(|c| !c.commitments.is_empty()))
    };
    let mut first: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for (account, start) in keys.keys() {
        if carries(account) {
            first
                .entry(account.clone())
                .and_modify(|f| *f = (*f).min(*start))
                .or_insert(*start);
        }
    }
    if !first.is_empty() {
        for (key, end) in credits_repo::later_periods(&mut *conn, &first).await? {
            keys.entry(key).or_insert(end);
        }
    }
    Ok((keys.into_iter().collect(), grants, contracts))
}

/// What the statements of a restatement are computed from, read once for
/// all of them.
struct Inputs {
    /// The stored version of each statement (its row locked).
    stored_versions: HashMap<AccountPeriod, i64>,
    /// The sealed periods whose late usage each statement bills.
    late: HashMap<AccountPeriod, Vec<Period>>,
    /// Those sealed periods, each once however many periods adjust it.
    origin_set: BTreeSet<AccountPeriod>,
    /// The earlier billing periods of commitment periods that end with a
    /// period restated or adjusted: their net spend counts in its true-up.
    window_set: BTreeSet<AccountPeriod>,
    /// What has been billed for them.
    billed: HashMap<AccountPeriod, Vec<StatementLine>>,
    /// The aggregates of every period restated or adjusted.
    aggregates: HashMap<AccountPeriod, Vec<UsageAggregate>>,
    /// The bound resources of every period restated or adjusted.
    bound: HashMap<AccountPeriod, Vec<BoundResource>>,
    /// Their plans' versions, by currency code.
    plan_versions: HashMap<&'static str, BTreeMap<PlanId, Vec<PlanVersion>>>,
    /// The credit ledger's draws of each account with grants, up to its
    /// last period restated, kept as each statement rewrites its own.
    draws: HashMap<String, Draws>,
    /// The usage hours of those accounts' periods restated or adjusted.
    hours: HashMap<String, UsageHours>,
    /// The contracts of the accounts that have any.
    contracts: HashMap<String, Vec<Contract>>,
    /// The billing anchor of each account restated.
    anchors: HashMap<String, AnchorDay>,
    versions_read: Duration,
    loaded: Duration,
}

impl Inputs {
    async fn load(
        conn: &mut PgConnection,
        keys: &[(AccountPeriod, DateTime<Utc>)],
        states: &HashMap<String, AccountState>,
        grants: &HashMap<String, Vec<StoredGrant>>,
        contracts: HashMap<String, Vec<Contract>>,
    ) -> Result<Self, ProcessError> {
        let t = Instant::now();
        let plain_keys: Vec<AccountPeriod> = keys.iter().map(|(k, _)| k.clone()).collect();
        let stored_versions = repo::current_versions(&mut *conn, &plain_keys).await?;
        let versions_read = t.elapsed();
        let mut late = seals_repo::late_origins(&mut *conn, &plain_keys).await?;
        let anchors: HashMap<String, AnchorDay> = states
            .iter()
            .map(|(account, s)| (account.clone(), s.anchor))
            .collect();
        let ends = window_ends(&late, &contracts, &anchors);
        let origins_of = |late: &HashMap<AccountPeriod, Vec<Period>>| -> BTreeSet<AccountPeriod> {
            late.iter()
                .flat_map(|((account, _), origins)| {
                    origins.iter().map(|o| (account.clone(), o.start()))
                })
                .collect()
        };
        let origin_keys: Vec<AccountPeriod> = origins_of(&late)
            .into_iter()
            .chain(origins_of(&ends))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let billed = seals_repo::billed_lines(&mut *conn, &origin_keys).await?;
        // Only a sealed period (what it billed is recorded) is adjusted.
        for ((account, billed_in), more) in ends {
            let sealed = more
                .into_iter()
                .filter(|p| billed.contains_key(&(account.clone(), p.start())));
            let origins = late.entry((account.clone(), billed_in)).or_default();
            origins.extend(sealed);
            origins.sort();
            origins.dedup();
        }
        let origin_set = origins_of(&late);
        let mut periods: BTreeSet<(String, DateTime<Utc>, DateTime<Utc>)> = keys
            .iter()
            .map(|((account, start), end)| (account.clone(), *start, *end))
            .chain(late.iter().flat_map(|((account, _), origins)| {
                origins
                    .iter()
                    .map(|o| (account.clone(), o.start(), o.end()))
            }))
            .collect();
        let windows = window_periods(&periods, &contracts, &anchors);
        let window_set: BTreeSet<AccountPeriod> = windows
            .iter()
            .map(|(account, p)| (account.clone(), p.start()))
            .collect();
        periods.extend(windows.iter().map(|(a, p)| (a.clone(), p.start(), p.end())));
        // Each period's aggregates once (a period may be restated, adjusted
        // and counted in a commitment period).
        let load_keys: Vec<AccountPeriod> = periods
            .iter()
            .map(|(account, start, _)| (account.clone(), *start))
            .collect();
        let aggregates = repo::load_aggregates(&mut *conn, &load_keys).await?;
        let periods: Vec<_> = periods.into_iter().collect();
        let bound = bindings::bound_in_periods(&mut *conn, &periods).await?;
        let mut plan_versions = HashMap::new();
        if !bound.is_empty() {
            let plan_ids: Vec<&str> = bound
                .values()
                .flatten()
                .flat_map(|b| b.plans.iter().map(|p| p.plan.as_str()))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let currencies: BTreeMap<&'static str, Currency> = bound
                .keys()
                .filter_map(|(account, _)| states.get(account))
                .map(|s| (s.currency.code(), s.currency))
                .collect();
            for (code, currency) in currencies {
                plan_versions.insert(
                    code,
                    plans::plan_versions(&mut *conn, &plan_ids, currency).await?,
                );
            }
        }
        let (draws, hours) = credit_inputs(&mut *conn, keys, &late, grants).await?;
        Ok(Inputs {
            stored_versions,
            late,
            origin_set,
            window_set,
            billed,
            aggregates,
            bound,
            plan_versions,
            draws,
            hours,
            contracts,
            anchors,
            versions_read,
            loaded: t.elapsed() - versions_read,
        })
    }

    /// Applies the account's usable grants to `statement` and records its
    /// period's draws as exactly what they pay, for the periods after it
    /// and for the ledger. Adjustment lines are usage of earlier periods: a
    /// grant valid then may pay for them.
    fn apply_credits(
        &mut self,
        statement: &mut Statement,
        stored: &[StoredGrant],
    ) -> Result<PeriodDraws, ProcessError> {
        let account = statement.account_id.to_string();
        let (period, version) = (statement.period, statement.version);
        let start = period.start();
        let earliest = self
            .origins(&account, start)
            .first()
            .map_or(start, |o| o.start().min(start));
        let fail = |e: MoneyError| statement_error(&account, start, e.into());
        let ledger = self.draws.entry(account.clone()).or_default();
        let drawn = draws::drawn_before(ledger, start).map_err(fail)?;
        let here = draws::drawn_in(ledger, start);
        let mut usable: Vec<Grant> = Vec::with_capacity(stored.len());
        for g in stored {
            let earlier = drawn.get(&g.terms.id).copied().unwrap_or_default();
            // Only a voided grant looks at its draws here (it never draws more).
            let so_far = here.get(&g.terms.id).copied().unwrap_or_default();
            let grant = g
                .usable_in(period, earliest, earlier, so_far)
                .map_err(fail)?;
            usable.extend(grant);
        }
        let none = UsageHours::new();
        let hours = self.hours.get(&account).unwrap_or(&none);
        statement.apply_credits(&usable, hours).map_err(fail)?;
        let made: Vec<(i64, Decimal)> = statement
            .credits
            .iter()
            .map(|c| (c.grant_id, c.amount))
            .collect();
        draws::record(ledger, start, &made);
        Ok(PeriodDraws {
            account,
            period_start: start,
            version,
            draws: made,
        })
    }

    /// The sealed periods whose late usage the statement of `account`'s
    /// period at `start` bills, oldest first.
    fn origins(&self, account: &str, start: DateTime<Utc>) -> &[Period] {
        self.late
            .get(&(account.to_owned(), start))
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    /// The next version of one statement, with its adjustments; when it is
    /// `sealed`, what it bills is recorded for the later periods of this
    /// restatement.
    fn statement(
        &mut self,
        account: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        currency: Currency,
        sealed: bool,
    ) -> Result<Statement, ProcessError> {
        let account_id = AccountId::parse(account).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let period = Period::new(start, end).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let own_key = (account.to_owned(), start);
        let version = self.stored_versions.get(&own_key).map_or(1, |v| v + 1);
        // A period is usually an origin or restated here, not both; a
        // period opened below the seal by a batch racing it can be both
        // (until it is sealed, in this very restatement, before the later
        // periods that adjust it).
        let rows = if self.origin_set.contains(&own_key) || self.window_set.contains(&own_key) {
            self.aggregates.get(&own_key).cloned()
        } else {
            self.aggregates.remove(&own_key)
        }
        .unwrap_or_default();
        let mut statement = self
            .compute(&account_id, period, currency, version, rows)
            .map_err(|e| statement_error(account, start, e))?;
        statement.sealed = sealed;
        if sealed && self.origin_set.contains(&own_key) {
            // Its own lines are billed from now on, for the later periods
            // of this restatement that adjust it.
            self.billed.insert(own_key, statement.lines.clone());
        }
        let origins = self.origins(account, start).to_vec();
        for origin in origins {
            let adjustments = self
                .adjust(&account_id, origin, currency, sealed)
                .map_err(|e| statement_error(account, start, e))?;
            statement
                .add_adjustments(adjustments)
                .map_err(|e| statement_error(account, start, e.into()))?;
        }
        Ok(statement)
    }

    /// A statement of `period` from its aggregates and the plan fees and
    /// allowances of the account's resources bound in it, with the
    /// account's contract in force at the period's start applied
    /// ([`contract::pricing::apply`]) and each commitment period longer
    /// than a billing period that ends with it trued up over the net spend
    /// of its billing periods, each priced with everything known
    /// ([`commitments::true_up_windows`]).
    fn compute(
        &self,
        account_id: &AccountId,
        period: Period,
        currency: Currency,
        version: i64,
        rows: Vec<UsageAggregate>,
    ) -> Result<Statement, StatementError> {
        let mut statement = self.priced(account_id, period, currency, version, rows)?;
        let Some(c) = self.contract_at(account_id, period.start()) else {
            return Ok(statement);
        };
        let anchor = self
            .anchors
            .get(account_id.as_str())
            .copied()
            .unwrap_or_default();
        let earlier = commitments::earlier_periods(c, period, anchor);
        if earlier.is_empty() {
            return Ok(statement);
        }
        let mut spent = BTreeMap::new();
        for p in earlier {
            let key = (account_id.to_string(), p.start());
            let rows = self.aggregates.get(&key).cloned().unwrap_or_default();
            let own = self.priced(account_id, p, currency, 0, rows)?;
            spent.insert(p.start(), commitments::net_spend(&own.lines)?);
        }
        commitments::true_up_windows(&mut statement, c, &spent)?;
        Ok(statement)
    }

    /// The account's contract in force at `at`.
    fn contract_at(&self, account_id: &AccountId, at: DateTime<Utc>) -> Option<&Contract> {
        self.contracts
            .get(account_id.as_str())
            .and_then(|all| all.iter().find(|c| c.in_force_at(at)))
    }

    /// A statement of `period` from its aggregates and bound resources with
    /// its contract's discounts and a true-up of a commitment period of
    /// exactly this billing period ([`contract::pricing::apply`]).
    fn priced(
        &self,
        account_id: &AccountId,
        period: Period,
        currency: Currency,
        version: i64,
        mut rows: Vec<UsageAggregate>,
    ) -> Result<Statement, StatementError> {
        let key = (account_id.to_string(), period.start());
        let fees = match self.bound.get(&key) {
            Some(bound) => {
                let none = BTreeMap::new();
                let versions = self.plan_versions.get(currency.code()).unwrap_or(&none);
                plan::bill_resources(period, currency, bound, versions, &mut rows)?
            }
            None => Vec::new(),
        };
        let mut statement = Statement::compute_with_plans(
            account_id.clone(),
            period,
            currency,
            version,
            rows,
            fees,
        )?;
        if let Some(c) = self.contract_at(account_id, period.start()) {
            contract::pricing::apply(&mut statement, c)?;
        }
        Ok(statement)
    }

    /// The adjustment lines of sealed period `origin`: it priced again with
    /// everything known, less what was billed for it. When the statement
    /// billing them is `sealed`, they are billed from now on: a later period
    /// of this restatement (periods go oldest first) adjusts only what is
    /// left.
    fn adjust(
        &mut self,
        account_id: &AccountId,
        origin: Period,
        currency: Currency,
        sealed: bool,
    ) -> Result<Vec<StatementLine>, StatementError> {
        let key = (account_id.to_string(), origin.start());
        let rows = self.aggregates.get(&key).cloned().unwrap_or_default();
        let current = self.compute(account_id, origin, currency, 0, rows)?;
        let before = self.billed.get(&key).map(Vec::as_slice).unwrap_or_default();
        let adjustments = adjustment_lines(origin, &current.lines, before)?;
        if sealed {
            let merged = merge_billed(before, &adjustments)?;
            self.billed.insert(key, merged);
        }
        Ok(adjustments)
    }
}

/// For each statement with late origins, the billing periods before it
/// that ended a commitment period holding one of them: late usage changes
/// that commitment period's net spend, so its true-up is priced again and,
/// when that period is sealed, the difference billed as its adjustment
/// ([`commitments::window_ends_to_adjust`]).
fn window_ends(
    late: &HashMap<AccountPeriod, Vec<Period>>,
    contracts: &HashMap<String, Vec<Contract>>,
    anchors: &HashMap<String, AnchorDay>,
) -> HashMap<AccountPeriod, Vec<Period>> {
    let mut out = HashMap::new();
    for ((account, billed_in), origins) in late {
        let Some(all) = contracts.get(account) else {
            continue;
        };
        let anchor = anchors.get(account).copied().unwrap_or_default();
        let ends: Vec<Period> = origins
            .iter()
            .flat_map(|origin| {
                all.iter()
                    .filter(|c| c.in_force_at(origin.start()))
                    .flat_map(|c| {
                        commitments::window_ends_to_adjust(c, *origin, *billed_in, anchor)
                    })
            })
            .filter(|end| !origins.contains(end))
            .collect();
        if !ends.is_empty() {
            out.insert((account.clone(), *billed_in), ends);
        }
    }
    out
}

/// The earlier billing periods of the commitment periods that end with
/// each of `periods` ([`commitments::earlier_periods`]), each once.
fn window_periods(
    periods: &BTreeSet<(String, DateTime<Utc>, DateTime<Utc>)>,
    contracts: &HashMap<String, Vec<Contract>>,
    anchors: &HashMap<String, AnchorDay>,
) -> BTreeSet<(String, Period)> {
    let mut out = BTreeSet::new();
    for (account, start, end) in periods {
        let (Some(all), Ok(period)) = (contracts.get(account), Period::new(*start, *end)) else {
            continue;
        };
        let anchor = anchors.get(account).copied().unwrap_or_default();
        for c in all.iter().filter(|c| c.in_force_at(*start)) {
            for p in commitments::earlier_periods(c, period, anchor) {
                out.insert((account.clone(), p));
            }
        }
    }
    out
}

/// The credit inputs of the accounts with grants, one query each for all
/// of them: their ledger draws up to their last period restated, and the
/// usage hours of their periods restated and of the sealed periods those
/// adjust.
async fn credit_inputs(
    conn: &mut PgConnection,
    keys: &[(AccountPeriod, DateTime<Utc>)],
    late: &HashMap<AccountPeriod, Vec<Period>>,
    grants: &HashMap<String, Vec<StoredGrant>>,
) -> Result<(HashMap<String, Draws>, HashMap<String, UsageHours>), ProcessError> {
    let mut through: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut periods: BTreeSet<AccountPeriod> = BTreeSet::new();
    for (key, _) in keys.iter().filter(|((a, _), _)| grants.contains_key(a)) {
        let (account, start) = key;
        through
            .entry(account.clone())
            .and_modify(|t| *t = (*t).max(*start))
            .or_insert(*start);
        periods.insert(key.clone());
        for origin in late.get(key).into_iter().flatten() {
            periods.insert((account.clone(), origin.start()));
        }
    }
    if through.is_empty() {
        return Ok((HashMap::new(), HashMap::new()));
    }
    let draws = credits_repo::draws_through(&mut *conn, &through).await?;
    let periods: Vec<AccountPeriod> = periods.into_iter().collect();
    let hours = credits_repo::usage_hours(&mut *conn, &periods).await?;
    Ok((draws, hours))
}

/// Keeps voided grants of `accounts` paying nothing beyond their draws, and
/// stores the statements with their outbox row.
async fn store(
    conn: &mut PgConnection,
    statements: Vec<Statement>,
    accounts: &[&str],
) -> Result<Restated, ProcessError> {
    credits_repo::settle_voided(&mut *conn, accounts).await?;
    if statements.is_empty() {
        return Ok(Restated::default());
    }
    let (outbox, statements) = repo::store_statements(&mut *conn, &statements)
        .await?
        .ok_or(ProcessError::Conflict)?;
    Ok(Restated {
        statements,
        outbox: vec![outbox],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn month(m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, 1, 0, 0, 0).unwrap()
    }

    /// Accounts `a`, `b`, `c`, `d` with 2, 1, 3 and 1 periods.
    fn keys() -> BTreeMap<AccountPeriod, DateTime<Utc>> {
        [("a", 2), ("b", 1), ("c", 3), ("d", 1)]
            .into_iter()
            .flat_map(|(account, n)| {
                (1..=n).map(move |m| ((account.to_owned(), month(m)), month(m + 1)))
            })
            .collect()
    }

    fn accounts(chunks: &[BTreeMap<AccountPeriod, DateTime<Utc>>]) -> Vec<Vec<&str>> {
        chunks
            .iter()
            .map(|chunk| chunk.keys().map(|(a, _)| a.as_str()).collect())
            .collect()
    }

    #[test]
    fn chunks_hold_whole_accounts_up_to_their_size() {
        let chunks = by_accounts(keys(), 3);
        assert_eq!(
            accounts(&chunks),
            [vec!["a", "a", "b"], vec!["c", "c", "c"], vec!["d"]]
        );
        assert_eq!(chunks.iter().map(BTreeMap::len).sum::<usize>(), 7);
    }

    #[test]
    fn an_account_larger_than_a_chunk_is_a_chunk_alone() {
        assert_eq!(
            accounts(&by_accounts(keys(), 2)),
            [vec!["a", "a"], vec!["b"], vec!["c", "c", "c"], vec!["d"]]
        );
        assert_eq!(
            accounts(&by_accounts(keys(), 1)),
            [vec!["a", "a"], vec!["b"], vec!["c", "c", "c"], vec!["d"]]
        );
    }

    #[test]
    fn all_in_one_chunk_when_they_fit() {
        assert_eq!(by_accounts(keys(), 7), vec![keys()]);
        assert!(by_accounts(BTreeMap::new(), 3).is_empty());
    }
}
