//! What each POST is checked against (the provider's key, who owns each SKU,
//! its markup and prices, which accounts exist and their currency, whether
//! the provider requires bindings and the usage window of each binding
//! named), read from PostgreSQL and remembered, so that
//! ingest outlives the database: Kafka is the durable buffer, and a
//! collector keeps accepting usage while PostgreSQL restarts.
//!
//! The terms of SKUs and the accounts, the bulk of what a POST names, are
//! checked against the catalog's generations ([`catalog::catalog_generations`],
//! one row each, grown by every change in the same transaction): an answer
//! read at the generation PostgreSQL gives now is still true, so only what
//! is not remembered at it is read. `tally bench` found these reads a
//! fifth of PostgreSQL's busiest time at 1,000 SKUs (BENCHMARKS.md, "The
//! collector's catalog remembered").
//!
//! PostgreSQL is asked first. When it cannot answer in time (out of reach,
//! or a query held by a lock past the statement timeout), the collector
//! answers from what it read in the last `remember` window, and asks no more
//! until a probe in the background finds PostgreSQL answering again (every
//! second), so no POST waits for a database that is down. What it has not
//! seen in that window it cannot decide: the request is refused whole with
//! 503 and `Retry-After`, nothing accepted. So a revoked key stops working
//! at once while PostgreSQL answers, and at most `remember` after its
//! revocation while it does not.

use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_domain::binding::UsageWindow;
use tally_domain::ProviderId;
use tally_platform::auth::{self, Principal};
use tally_platform::catalog::{self, KnownAccount, SkuTerms};
use tally_platform::{bindings, composition};

/// How often the background probe asks whether PostgreSQL answers again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// PostgreSQL did not answer, and what was remembered does not decide.
    #[error("the catalog cannot be checked right now")]
    Unavailable,
    #[error(transparent)]
    Database(sqlx::Error),
}

/// The answers of one batch: each SKU's owner, markup and prices (list and
/// wholesale), the billing currency of each account that exists and
/// whether a provider owns it, whether the provider
/// requires bindings, and the usage window of each named binding that exists.
pub struct Catalog {
    pub skus: HashMap<String, Arc<SkuTerms>>,
    pub accounts: HashMap<String, KnownAccount>,
    pub requires_binding: bool,
    pub windows: HashMap<String, UsageWindow>,
    /// The (on-behalf-of reference, account) pairs named that are valid:
    /// the reference was minted by the provider that owns the account.
    pub on_behalf: HashSet<(String, String)>,
}

/// An answer, when it was last confirmed, and the catalog generation it
/// was read at (`None`: the generations could not be read).
type Confirmed<T> = (T, Instant, Option<i64>);

#[derive(Default)]
struct Remembered {
    /// Key hash → the provider it belongs to (only provider keys are kept).
    keys: HashMap<Vec<u8>, (ProviderId, Instant)>,
    skus: HashMap<String, Confirmed<Arc<SkuTerms>>>,
    accounts: HashMap<String, Confirmed<KnownAccount>>,
    requires_binding: HashMap<ProviderId, (bool, Instant)>,
    windows: HashMap<String, (UsageWindow, Instant)>,
    /// Valid (reference, account) pairs (invalid ones are not remembered).
    on_behalf: HashMap<(String, String), Instant>,
    /// Provider → whether it may produce to `usage.ingest`.
    kafka_ingest: HashMap<String, (bool, Instant)>,
    /// PostgreSQL did not answer, and the probe has not seen it answer since.
    down: bool,
    pruned_at: Option<Instant>,
}

/// Cheap to clone: clones share the pool and what was remembered.
#[derive(Clone)]
pub struct Lookup {
    pool: PgPool,
    remember: Duration,
    timeout: Duration,
    state: Arc<Mutex<Remembered>>,
}

impl Lookup {
    /// `timeout` bounds each question to PostgreSQL (acquiring a connection
    /// included); answers are used for `remember` while it is out of reach.
    pub fn new(pool: PgPool, timeout: Duration, remember: Duration) -> Lookup {
        Lookup {
            pool,
            remember,
            timeout,
            state: Arc::new(Mutex::new(Remembered::default())),
        }
    }

    /// The pool, for what must be read from PostgreSQL now (a usage
    /// correction is checked against the events counted).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Remembered> {
        lock(&self.state)
    }

    fn fresh(&self, at: Instant, now: Instant) -> bool {
        now.saturating_duration_since(at) <= self.remember
    }

    /// Asks PostgreSQL unless it is down; `Ok(None)` means it is out of
    /// reach (or too slow) right now.
    async fn ask<T>(
        &self,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<Option<T>, LookupError> {
        if self.state().down {
            return Ok(None);
        }
        let answer = match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(answer)) => return Ok(Some(answer)),
            Ok(Err(err)) if tally_platform::db::is_unavailable(&err) => err.to_string(),
            Ok(Err(err)) => return Err(LookupError::Database(err)),
            Err(_) => format!("no answer within {:?}", self.timeout),
        };
        metrics::counter!("tally_collector_catalog_fallbacks_total").increment(1);
        let mut state = self.state();
        if !state.down {
            state.down = true;
            tracing::warn!(error = %answer, "PostgreSQL is out of reach; checking usage against what was read from it before");
            self.probe();
        }
        Ok(None)
    }

    /// Asks PostgreSQL every second, in the background, until it answers.
    fn probe(&self) {
        let (pool, state, timeout) = (self.pool.clone(), self.state.clone(), self.timeout);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(PROBE_EVERY).await;
                let answered =
                    tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&pool))
                        .await
                        .is_ok_and(|r| r.is_ok());
                if answered {
                    lock(&state).down = false;
                    tracing::info!("PostgreSQL answers again");
                    return;
                }
                if pool.is_closed() {
                    return;
                }
            }
        });
    }

    /// The principal of `secret`, if it is a valid key.
    pub async fn principal(&self, secret: &str) -> Result<Option<Principal>, LookupError> {
        let hash = auth::hash(secret);
        if let Some(principal) = self.ask(auth::authenticate(&self.pool, secret)).await? {
            let mut state = self.state();
            match &principal {
                Some(Principal::Provider(id)) => {
                    state.keys.insert(hash, (id.clone(), Instant::now()));
                }
                _ => {
                    state.keys.remove(&hash);
                }
            }
            return Ok(principal);
        }
        let now = Instant::now();
        match self.state().keys.get(&hash) {
            Some((id, at)) if self.fresh(*at, now) => Ok(Some(Principal::Provider(id.clone()))),
            _ => Err(LookupError::Unavailable),
        }
    }

    /// The terms of each of `skus` (owner, markup, prices), the
    /// currency of each of `accounts` that exists, whether `provider`
    /// requires bindings, the usage window of each of `resources` that
    /// exists, and which (on-behalf-of reference, account) pairs are valid.
    pub async fn catalog(
        &self,
        provider: &ProviderId,
        skus: &[&str],
        accounts: &[&str],
        resources: &[&str],
        references: &[(&str, &str)],
    ) -> Result<Catalog, LookupError> {
        let asked = self
            .ask(async {
                let mut conn = self.pool.acquire().await?;
                let generations = catalog::catalog_generations(&mut conn).await?;
                let (mut found_skus, unseen_skus, mut known, unseen_accounts) =
                    self.confirmed(skus, accounts, generations);
                count_entries("sku", found_skus.len(), unseen_skus.len());
                count_entries("account", known.len(), unseen_accounts.len());
                if !unseen_skus.is_empty() {
                    let read = catalog::sku_terms(&mut conn, &unseen_skus).await?;
                    found_skus.extend(read.into_iter().map(|(k, v)| (k, Arc::new(v))));
                }
                if !unseen_accounts.is_empty() {
                    known.extend(catalog::existing_accounts(&mut conn, &unseen_accounts).await?);
                }
                let requires = bindings::requires_binding(&mut conn, &[provider.as_str()]).await?;
                let windows = if resources.is_empty() {
                    HashMap::new()
                } else {
                    bindings::usage_windows(&mut conn, resources).await?
                };
                let on_behalf = if references.is_empty() {
                    HashSet::new()
                } else {
                    composition::valid_references(&mut conn, references).await?
                };
                let catalog = Catalog {
                    skus: found_skus,
                    accounts: known,
                    requires_binding: requires.get(provider.as_str()).copied().unwrap_or(false),
                    windows,
                    on_behalf,
                };
                Ok((catalog, generations))
            })
            .await?;
        let now = Instant::now();
        let mut state = self.state();
        if let Some((found, generations)) = asked {
            let (sku_generation, account_generation) =
                (generations.map(|g| g.skus), generations.map(|g| g.accounts));
            for (sku, terms) in &found.skus {
                let entry = (terms.clone(), now, sku_generation);
                state.skus.insert(sku.clone(), entry);
            }
            for (account, known) in &found.accounts {
                let entry = (*known, now, account_generation);
                state.accounts.insert(account.clone(), entry);
            }
            state
                .requires_binding
                .insert(provider.clone(), (found.requires_binding, now));
            for (id, window) in &found.windows {
                state.windows.insert(id.clone(), (window.clone(), now));
            }
            for pair in &found.on_behalf {
                state.on_behalf.insert(pair.clone(), now);
            }
            prune(&mut state, now, self.remember);
            return Ok(found);
        }
        // Only what was seen to exist is remembered: anything else is
        // undecided, and the whole request waits for PostgreSQL.
        let mut found = HashMap::new();
        for sku in skus {
            match state.skus.get(*sku) {
                Some((terms, at, _)) if self.fresh(*at, now) => {
                    found.insert((*sku).to_owned(), terms.clone());
                }
                _ => return Err(LookupError::Unavailable),
            }
        }
        let mut known = HashMap::new();
        for account in accounts {
            match state.accounts.get(*account) {
                Some((account_terms, at, _)) if self.fresh(*at, now) => {
                    known.insert((*account).to_owned(), *account_terms);
                }
                _ => return Err(LookupError::Unavailable),
            }
        }
        let requires_binding = match state.requires_binding.get(provider) {
            Some((required, at)) if self.fresh(*at, now) => *required,
            _ => return Err(LookupError::Unavailable),
        };
        let mut windows = HashMap::new();
        for id in resources {
            match state.windows.get(*id) {
                Some((window, at)) if self.fresh(*at, now) => {
                    windows.insert((*id).to_owned(), window.clone());
                }
                _ => return Err(LookupError::Unavailable),
            }
        }
        let mut on_behalf = HashSet::new();
        for (reference, account) in references {
            let pair = ((*reference).to_owned(), (*account).to_owned());
            match state.on_behalf.get(&pair) {
                Some(at) if self.fresh(*at, now) => {
                    on_behalf.insert(pair);
                }
                _ => return Err(LookupError::Unavailable),
            }
        }
        Ok(Catalog {
            skus: found,
            accounts: known,
            requires_binding,
            windows,
            on_behalf,
        })
    }
}

impl Lookup {
    /// Of `skus` and `accounts`, the terms and accounts remembered as read
    /// at `generations` (still true), and those to read: not remembered, or
    /// read at an earlier generation (or at none).
    #[allow(clippy::type_complexity)]
    fn confirmed<'a>(
        &self,
        skus: &[&'a str],
        accounts: &[&'a str],
        generations: Option<catalog::CatalogGenerations>,
    ) -> (
        HashMap<String, Arc<SkuTerms>>,
        Vec<&'a str>,
        HashMap<String, KnownAccount>,
        Vec<&'a str>,
    ) {
        let state = self.state();
        let (mut found, mut unseen_skus) = (HashMap::new(), Vec::new());
        let (mut known, mut unseen_accounts) = (HashMap::new(), Vec::new());
        let current = |read_at: &Option<i64>, now: Option<i64>| now.is_some() && *read_at == now;
        for sku in skus {
            match state.skus.get(*sku) {
                Some((terms, _, read_at)) if current(read_at, generations.map(|g| g.skus)) => {
                    found.insert((*sku).to_owned(), terms.clone());
                }
                _ => unseen_skus.push(*sku),
            }
        }
        for account in accounts {
            match state.accounts.get(*account) {
                Some((terms, _, read_at)) if current(read_at, generations.map(|g| g.accounts)) => {
                    known.insert((*account).to_owned(), *terms);
                }
                _ => unseen_accounts.push(*account),
            }
        }
        (found, unseen_skus, known, unseen_accounts)
    }

    /// For each of `providers` that exists, whether it may produce usage
    /// to the `usage.ingest` topic; a provider absent from the answer does
    /// not exist.
    pub async fn kafka_ingest(
        &self,
        providers: &[&str],
    ) -> Result<HashMap<String, bool>, LookupError> {
        let asked = self
            .ask(async {
                let mut conn = self.pool.acquire().await?;
                catalog::kafka_ingest_of(&mut conn, providers).await
            })
            .await?;
        let now = Instant::now();
        let mut state = self.state();
        if let Some(found) = asked {
            for (provider, allowed) in &found {
                state.kafka_ingest.insert(provider.clone(), (*allowed, now));
            }
            return Ok(found);
        }
        let mut found = HashMap::new();
        for provider in providers {
            match state.kafka_ingest.get(*provider) {
                Some((allowed, at)) if self.fresh(*at, now) => {
                    found.insert((*provider).to_owned(), *allowed);
                }
                _ => return Err(LookupError::Unavailable),
            }
        }
        Ok(found)
    }
}

/// `tally_collector_catalog_entries_total{kind, from}`: the SKUs and
/// accounts a POST named, answered from memory or read from PostgreSQL.
fn count_entries(kind: &'static str, remembered: usize, read: usize) {
    for (from, n) in [("memory", remembered), ("database", read)] {
        if n > 0 {
            metrics::counter!("tally_collector_catalog_entries_total", "kind" => kind, "from" => from)
                .increment(n as u64);
        }
    }
}

fn lock(state: &Mutex<Remembered>) -> std::sync::MutexGuard<'_, Remembered> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Forgets what is older than `remember` (memory bounded by what was seen
/// in two windows), at most once per window.
fn prune(state: &mut Remembered, now: Instant, remember: Duration) {
    let fresh = |at: &Instant| now.saturating_duration_since(*at) <= remember;
    if state.pruned_at.is_some_and(|t| fresh(&t)) {
        return;
    }
    state.pruned_at = Some(now);
    state.keys.retain(|_, (_, at)| fresh(at));
    state.skus.retain(|_, (_, at, _)| fresh(at));
    state.accounts.retain(|_, (_, at, _)| fresh(at));
    state.requires_binding.retain(|_, (_, at)| fresh(at));
    state.windows.retain(|_, (_, at)| fresh(at));
    state.on_behalf.retain(|_, at| fresh(at));
    state.kafka_ingest.retain(|_, (_, at)| fresh(at));
}
