//! The bench's load: the catalog and accounts it seeds, the dedupe history
//! it stores, the events it plans (each a pure function of its index) and
//! the invoice totals they must come to.

use anyhow::Context;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use std::collections::HashMap;
use tally_domain::money::checked;
use tally_domain::pricing::{PriceBook, PriceModel};
use tally_domain::{Currency, Period, ProviderKind};

use super::BenchArgs;

/// The bench's catalog: prices per SKU index, accounts, keys.
pub(super) struct Catalog {
    pub(super) provider_ids: Vec<String>,
    pub(super) provider_keys: Vec<String>,
    /// Per provider: SKU ids and USD unit prices.
    pub(super) skus: Vec<Vec<(String, Decimal)>>,
    pub(super) accounts: Vec<String>,
    /// What the grant of each of `accounts` pays per period (`--grants`).
    pub(super) grant_cap: Option<Decimal>,
    /// The contract of a share of `accounts` (`--contracts`).
    pub(super) contracts: Option<BenchContract>,
}

fn price_of(provider: usize, sku: usize) -> Decimal {
    // Distinct prices with up to 5 decimals: rounding matters.
    Decimal::new(1_237 + 311 * provider as i64 + 97 * sku as i64, 5)
}

pub(super) async fn seed(
    pool: &PgPool,
    a: &BenchArgs,
    since: DateTime<Utc>,
) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog {
        provider_ids: Vec::new(),
        provider_keys: Vec::new(),
        skus: Vec::new(),
        accounts: Vec::new(),
        grant_cap: None,
        contracts: None,
    };
    for p in 0..a.providers {
        let id = format!("p{p}");
        let kind = if p == 0 {
            ProviderKind::FirstParty
        } else {
            ProviderKind::Partner
        };
        let key = crate::admin::create_provider(pool, &id, &format!("Provider {p}"), kind).await?;
        crate::admin::set_kafka_ingest(pool, &id, true).await?;
        if p > 0 {
            crate::admin::set_platform_fee(pool, &id, Decimal::from(20)).await?;
        }
        let skus: Vec<(String, Decimal)> = (0..a.skus)
            .map(|s| (format!("{id}.sku{s}"), price_of(p, s)))
            .collect();
        seed_skus(pool, &id, &skus, since).await?;
        catalog.provider_ids.push(id);
        catalog.provider_keys.push(key);
        catalog.skus.push(skus);
    }
    // Accounts in bulk, one statement: the bench needs no customer tokens.
    sqlx::query(
        "INSERT INTO accounts (id, name, currency)
         SELECT 'a' || g, 'Account ' || g, 'USD' FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(i64::try_from(a.accounts)?)
    .execute(pool)
    .await?;
    catalog.accounts = (0..a.accounts).map(|i| format!("a{i}")).collect();
    if a.grants {
        let cap = Decimal::new(1, 2);
        // As the credits API gives them: the grant and its ledger entry.
        sqlx::query(
            "WITH g AS (
                 INSERT INTO credit_grants (account_id, name, kind, currency, amount, effective_at,
                                            eligibility, cap_per_period)
                 SELECT 'a' || g, 'Bench credit', 'promotional', 'USD', 1000000,
                        date_trunc('hour', $2::timestamptz), 'all_usage', $3
                 FROM generate_series(0, $1 - 1) AS g
                 RETURNING id, account_id, amount)
             INSERT INTO credit_ledger (grant_id, account_id, kind, amount)
             SELECT id, account_id, 'grant', amount FROM g",
        )
        .bind(i64::try_from(a.accounts)?)
        .bind(since)
        .bind(cap)
        .execute(pool)
        .await?;
        catalog.grant_cap = Some(cap);
    }
    if a.contracts > 0 {
        let terms = BenchContract {
            share_percent: a.contracts.min(100),
            discount_percent: Decimal::new(125, 1),
            minimum: a.commitment,
        };
        seed_contracts(pool, a.accounts, &terms, since).await?;
        catalog.contracts = Some(terms);
    }
    Ok(catalog)
}

/// A provider's SKUs and their list prices (per unit, USD, from `since`),
/// each table in one statement: 10,000 SKUs take one round trip, not
/// 20,000.
async fn seed_skus(
    pool: &PgPool,
    provider: &str,
    skus: &[(String, Decimal)],
    since: DateTime<Utc>,
) -> anyhow::Result<()> {
    let ids: Vec<&str> = skus.iter().map(|(id, _)| id.as_str()).collect();
    let names: Vec<String> = (0..skus.len()).map(|s| format!("SKU {s}")).collect();
    let models: Vec<serde_json::Value> = skus
        .iter()
        .map(|(_, price)| {
            let book: PriceBook = PriceModel::per_unit(*price)?.into();
            book.validate()?;
            Ok(serde_json::to_value(book)?)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO skus (id, provider_id, name, unit)
         SELECT id, $2, name, 'unit' FROM UNNEST($1::text[], $3::text[]) AS t(id, name)",
    )
    .bind(&ids)
    .bind(provider)
    .bind(&names)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO prices (sku_id, currency, effective_from, model, audience)
         SELECT id, 'USD', $2, model, 'list' FROM UNNEST($1::text[], $3::jsonb[]) AS t(id, model)",
    )
    .bind(&ids)
    .bind(since)
    .bind(&models)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The contract of the accounts that have one (`--contracts`): a discount
/// of every line, funded by the platform, and a monthly commitment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct BenchContract {
    /// Share of the accounts with a contract: account `i` has one when
    /// `i % 100 < share_percent` (so the head of a Zipf spread does too).
    pub(super) share_percent: u32,
    pub(super) discount_percent: Decimal,
    /// The monthly commitment's minimum net spend (USD).
    pub(super) minimum: Decimal,
}

impl BenchContract {
    pub(super) fn covers(&self, account: usize) -> bool {
        (account % 100) < self.share_percent as usize
    }
}

/// One contract per covered account, as the contracts API stores them:
/// from the first of the month of `since` for two years, one term (all
/// usage, platform-funded) and one monthly commitment over the whole term,
/// so each calendar month is a commitment period. Signed at its start (a
/// contract without a signature is in force nowhere).
async fn seed_contracts(
    pool: &PgPool,
    accounts: usize,
    c: &BenchContract,
    since: DateTime<Utc>,
) -> anyhow::Result<()> {
    let start = Period::month_containing(since).start();
    let end = start
        .checked_add_months(chrono::Months::new(24))
        .context("contract end")?;
    sqlx::query(
        "WITH c AS (
             INSERT INTO contracts (account_id, starts_at, ends_at, currency, signed_at)
             SELECT 'a' || g, $3, $4, 'USD', $3 FROM generate_series(0, $1 - 1) AS g
             WHERE g % 100 < $2
             RETURNING id),
         t AS (
             INSERT INTO contract_terms (contract_id, scope, percent, funded_by, effective_from, effective_to)
             SELECT id, 'all', $5, 'platform', $3, $4 FROM c)
         INSERT INTO contract_commitments (contract_id, cadence, minimum, starts_at, ends_at)
         SELECT id, 'month', $6, $3, $4 FROM c",
    )
    .bind(i64::try_from(accounts)?)
    .bind(i64::from(c.share_percent))
    .bind(start)
    .bind(end)
    .bind(c.discount_percent)
    .bind(c.minimum)
    .execute(pool)
    .await?;
    Ok(())
}

/// Event `i` of the throughput run: its batch decides the provider.
pub(super) struct Gen<'a> {
    pub(super) catalog: &'a Catalog,
    pub(super) batch_size: u64,
    pub(super) now: DateTime<Utc>,
    /// Cumulative share of usage up to each account (Zipf), or `None`
    /// for an even spread.
    pub(super) spread: Option<Vec<f64>>,
    /// SKUs of a provider an account uses at most (0: all).
    pub(super) lines: usize,
}

/// The cumulative Zipf distribution over `n` ranks with exponent `s`.
pub(super) fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
    let weights: Vec<f64> = (1..=n).map(|rank| (rank as f64).powf(-s)).collect();
    let total: f64 = weights.iter().sum();
    let mut running = 0.0;
    weights
        .iter()
        .map(|w| {
            running += w / total;
            running
        })
        .collect()
}

pub(super) struct Planned {
    pub(super) provider: usize,
    pub(super) sku: usize,
    pub(super) account: usize,
    /// Tenths.
    pub(super) quantity: i64,
    pub(super) time: DateTime<Utc>,
}

impl Gen<'_> {
    pub(super) fn plan(&self, i: u64) -> Planned {
        let providers = self.catalog.provider_ids.len() as u64;
        let provider = ((i / self.batch_size) % providers) as usize;
        let skus = self.catalog.skus[provider].len() as u64;
        let mixed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        let accounts = self.catalog.accounts.len();
        let account = match &self.spread {
            None => ((mixed >> 20) % accounts as u64) as usize,
            Some(cdf) => {
                // 44 bits of the hash as a uniform draw in [0, 1).
                let u = ((mixed >> 20) & ((1 << 44) - 1)) as f64 / (1u64 << 44) as f64;
                cdf.partition_point(|c| *c <= u).min(accounts - 1)
            }
        };
        let sku = if self.lines == 0 {
            mixed % skus
        } else {
            // A window of `lines` SKUs that starts where the account's does.
            (account as u64 * 31 + mixed % self.lines as u64) % skus
        };
        Planned {
            provider,
            sku: sku as usize,
            account,
            quantity: (mixed >> 40) as i64 % 1000 + 1,
            // Within the last hour (a minute of margin for the collector's clock check).
            time: self.now - TimeDelta::seconds(60 + (i % 3540) as i64),
        }
    }

    /// Events `range` (`e<i>`) as a JSON batch, with their provider (one
    /// per batch of the throughput run).
    pub(super) fn batch(&self, range: std::ops::Range<u64>) -> (usize, String) {
        let mut body = String::with_capacity(260 * (range.end - range.start) as usize);
        body.push('[');
        let mut provider = 0;
        for i in range.clone() {
            let p = self.plan(i);
            provider = p.provider;
            if i > range.start {
                body.push(',');
            }
            body.push_str(&self.json(&format!("e{i}"), &p, &self.catalog.accounts[p.account]));
        }
        body.push(']');
        (provider, body)
    }

    pub(super) fn json(&self, id: &str, p: &Planned, account: &str) -> String {
        format!(
            r#"{{"specversion":"1.0","id":"{id}","source":"{}","type":"com.tally.usage","subject":"{account}","time":"{}","data":{{"sku":"{}","quantity":"{}"}}}}"#,
            self.catalog.provider_ids[p.provider],
            p.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            self.catalog.skus[p.provider][p.sku].0,
            Decimal::new(p.quantity, 1),
        )
    }
}

/// Per (account, period label): the amount due, computed without Tally.
pub(super) type Expected = HashMap<(String, String), Decimal>;

pub(super) fn expected_totals(
    gen: &Gen<'_>,
    events: u64,
    extra: &[(String, Planned)],
) -> anyhow::Result<Expected> {
    let mut quantities: HashMap<(String, String, usize, usize), i64> = HashMap::new();
    let mut add = |account: &str, p: &Planned| {
        let label = Period::month_containing(p.time).label();
        let tenths = quantities
            .entry((account.to_owned(), label, p.provider, p.sku))
            .or_default();
        *tenths = tenths
            .checked_add(p.quantity)
            .context("expected quantity overflows")?;
        anyhow::Ok(())
    };
    for i in 0..events {
        let p = gen.plan(i);
        add(&gen.catalog.accounts[p.account], &p)?;
    }
    for (account, p) in extra {
        add(account, p)?;
    }
    let usd = Currency::parse("USD").unwrap_or_else(|_| unreachable!("USD is ISO 4217"));
    let mut lines: HashMap<(String, String), Vec<Decimal>> = HashMap::new();
    for ((account, label, provider, sku), tenths) in quantities {
        let amount = usd.round(checked::mul(
            Decimal::new(tenths, 1),
            gen.catalog.skus[provider][sku].1,
        )?);
        lines.entry((account, label)).or_default().push(amount);
    }
    // The bench's own accounts (`a<i>`) have its contract and grant; the
    // freshness probes have neither.
    let index: HashMap<&str, usize> = gen
        .catalog
        .accounts
        .iter()
        .enumerate()
        .map(|(i, a)| (a.as_str(), i))
        .collect();
    let mut totals: Expected = HashMap::with_capacity(lines.len());
    for ((account, label), amounts) in lines {
        let own = index.get(account.as_str()).copied();
        let contract = gen
            .catalog
            .contracts
            .filter(|c| own.is_some_and(|i| c.covers(i)));
        let cap = gen.catalog.grant_cap.filter(|_| own.is_some());
        let total = amount_due(&amounts, contract.as_ref(), cap, usd)?;
        totals.insert((account, label), total);
    }
    Ok(totals)
}

/// Every bench account with a contract and no usage in the period labelled
/// `label` still has an invoice there: rating opens the period that ends a
/// commitment period, usage or not, and bills the whole minimum as its
/// true-up (less the grant's credit).
pub(super) fn idle_commitments(
    expected: &mut Expected,
    catalog: &Catalog,
    label: &str,
) -> anyhow::Result<()> {
    let Some(contract) = catalog.contracts else {
        return Ok(());
    };
    let usd = Currency::parse("USD").unwrap_or_else(|_| unreachable!("USD is ISO 4217"));
    for (i, account) in catalog.accounts.iter().enumerate() {
        let key = (account.clone(), label.to_owned());
        if contract.covers(i) && !expected.contains_key(&key) {
            let total = amount_due(&[], Some(&contract), catalog.grant_cap, usd)?;
            expected.insert(key, total);
        }
    }
    Ok(())
}

/// What an account-period comes to, computed without Tally from its usage
/// lines (each already rounded): each line less its contract discount
/// (`percent` of it, rounded once), then the commitment's true-up up to its
/// minimum, then the grant's credit (up to `cap`, never beyond the total).
pub(super) fn amount_due(
    lines: &[Decimal],
    contract: Option<&BenchContract>,
    cap: Option<Decimal>,
    currency: Currency,
) -> anyhow::Result<Decimal> {
    let mut total = Decimal::ZERO;
    for line in lines {
        let discount = match contract {
            Some(c) => currency.round(checked::div(
                checked::mul(*line, c.discount_percent)?,
                Decimal::ONE_HUNDRED,
            )?),
            None => Decimal::ZERO,
        };
        total = checked::add(total, checked::sub(*line, discount)?)?;
    }
    if let Some(c) = contract {
        let short = checked::sub(c.minimum, total)?.max(Decimal::ZERO);
        total = checked::add(total, currency.round(short))?;
    }
    if let Some(cap) = cap {
        total = checked::sub(total, cap.min(total))?;
    }
    Ok(total)
}

/// Fills the dedupe set (`counted_events`) with `n` earlier events (`h0`,
/// `h1`, …, each one unit of the catalog's first price, in its calendar
/// month), spread evenly over the `span` before now, a million rows per
/// statement.
pub(super) async fn store_history(
    pool: &PgPool,
    catalog: &Catalog,
    n: u64,
    span: TimeDelta,
) -> anyhow::Result<()> {
    let providers: Vec<&str> = catalog.provider_ids.iter().map(String::as_str).collect();
    let accounts = i64::try_from(catalog.accounts.len())?;
    let mut from = 0i64;
    let n = i64::try_from(n)?;
    while from < n {
        let to = (from + 1_000_000).min(n);
        sqlx::query(
            "INSERT INTO counted_events (provider_id, event_id, account_id, sku_id, price_id,
                 period_start, period_end, event_time, quantity)
             SELECT ($1::text[])[1 + g % cardinality($1::text[])], 'h' || g, 'a' || (g % $2),
                    p.sku_id, p.id, date_trunc('month', t.at, 'UTC'),
                    date_trunc('month', t.at, 'UTC') + interval '1 month', t.at, 1
             FROM generate_series($3::bigint, $4::bigint - 1) AS g
             CROSS JOIN LATERAL (SELECT now() - make_interval(secs => g * $5::double precision / $6)
                 AS at) t
             CROSS JOIN (SELECT id, sku_id FROM prices ORDER BY id LIMIT 1) p",
        )
        .bind(&providers)
        .bind(accounts)
        .bind(from)
        .bind(to)
        .bind(span.num_seconds())
        .bind(n)
        .execute(pool)
        .await?;
        from = to;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn catalog(accounts: usize, skus: usize) -> Catalog {
        Catalog {
            provider_ids: vec!["p0".into()],
            provider_keys: vec![String::new()],
            skus: vec![(0..skus)
                .map(|s| (format!("p0.sku{s}"), Decimal::ONE))
                .collect()],
            accounts: (0..accounts).map(|i| format!("a{i}")).collect(),
            grant_cap: None,
            contracts: None,
        }
    }

    fn counts(gen: &Gen<'_>, events: u64) -> Vec<u64> {
        let mut counts = vec![0u64; gen.catalog.accounts.len()];
        for i in 0..events {
            counts[gen.plan(i).account] += 1;
        }
        counts
    }

    #[test]
    fn a_zipf_spread_gives_the_head_account_its_share() {
        let catalog = catalog(1000, 5);
        let gen = Gen {
            catalog: &catalog,
            batch_size: 1000,
            now: Utc::now(),
            spread: Some(zipf_cdf(1000, 1.0)),
            lines: 0,
        };
        let counts = counts(&gen, 200_000);
        // a0's share is 1 / H(1000) = 13.36 %; a9's a tenth of it.
        let share = |n: u64| n as f64 / 200_000.0;
        assert!((share(counts[0]) - 0.1336).abs() < 0.005, "{}", counts[0]);
        assert!((share(counts[9]) - 0.01336).abs() < 0.002, "{}", counts[9]);
        assert_eq!(counts.iter().sum::<u64>(), 200_000);
        // The same plan every time: the bench's expected totals rely on it.
        assert_eq!(counts, self::counts(&gen, 200_000));
    }

    #[test]
    fn an_account_uses_at_most_its_lines() {
        let catalog = catalog(50, 100);
        let gen = Gen {
            catalog: &catalog,
            batch_size: 1000,
            now: Utc::now(),
            spread: None,
            lines: 3,
        };
        let mut used: HashMap<usize, HashSet<usize>> = HashMap::new();
        for i in 0..20_000 {
            let p = gen.plan(i);
            used.entry(p.account).or_default().insert(p.sku);
        }
        assert_eq!(used.len(), 50);
        assert!(used.values().all(|skus| skus.len() == 3), "{used:?}");
    }

    #[test]
    fn a_granted_accounts_invoice_is_due_the_cap_less_and_a_probes_is_not() {
        let mut catalog = catalog(3, 2);
        let now = Utc::now();
        let probe = Planned {
            provider: 0,
            sku: 1,
            account: 0,
            quantity: 5,
            time: now,
        };
        let extra = vec![("probe0".to_owned(), probe)];
        let totals = |catalog: &Catalog| {
            let gen = Gen {
                catalog,
                batch_size: 10,
                now,
                spread: None,
                lines: 0,
            };
            expected_totals(&gen, 30, &extra).unwrap()
        };
        let plain = totals(&catalog);
        catalog.grant_cap = Some(Decimal::new(1, 2));
        let granted = totals(&catalog);
        assert_eq!(plain.len(), 4);
        assert_eq!(granted.len(), 4);
        for (key, total) in &granted {
            let less = if key.0 == "probe0" {
                Decimal::ZERO
            } else {
                Decimal::new(1, 2)
            };
            assert_eq!(plain[key] - *total, less, "{key:?}");
        }
    }

    fn usd() -> Currency {
        Currency::parse("USD").unwrap()
    }

    #[test]
    fn a_contract_account_without_usage_is_due_its_minimum_less_its_grant() {
        // 120 accounts, a0..a119: the contract covers those whose index
        // is below 30 modulo 100 (a0..a29 and a100..a119: 50); a0 has usage.
        let mut catalog = catalog(120, 2);
        catalog.contracts = Some(CONTRACT);
        catalog.grant_cap = Some(Decimal::new(1, 2));
        let key = |a: &str| (a.to_owned(), "2026-12".to_owned());
        let mut expected: Expected = HashMap::from([(key("a0"), Decimal::new(700, 2))]);
        idle_commitments(&mut expected, &catalog, "2026-12").unwrap();
        assert_eq!(expected.len(), 50);
        assert_eq!(expected[&key("a0")], Decimal::new(700, 2));
        // The minimum 5.00 less the grant's 0.01.
        for a in ["a1", "a29", "a100", "a119"] {
            assert_eq!(expected[&key(a)], Decimal::new(499, 2), "{a}");
        }
        assert!(!expected.contains_key(&key("a30")));
        assert!(!expected.contains_key(&key("a99")));
    }

    const CONTRACT: BenchContract = BenchContract {
        share_percent: 30,
        discount_percent: Decimal::from_parts(125, 0, 0, false, 1),
        minimum: Decimal::from_parts(5, 0, 0, false, 0),
    };

    #[test]
    fn a_contract_discounts_each_line_rounded_once_and_trues_up_to_its_minimum() {
        // 12.5 % of 3.33 is 0.41625 → 0.42; of 4.05, 0.50625 → 0.51.
        let lines = [Decimal::new(333, 2), Decimal::new(405, 2)];
        let net = amount_due(&lines, None, None, usd()).unwrap();
        assert_eq!(net, Decimal::new(738, 2));
        let discounted = amount_due(&lines, Some(&CONTRACT), None, usd()).unwrap();
        assert_eq!(discounted, Decimal::new(645, 2)); // 2.91 + 3.54
                                                      // Below the minimum of 5.00: the true-up bills the rest.
        let small = amount_due(&[Decimal::new(200, 2)], Some(&CONTRACT), None, usd()).unwrap();
        assert_eq!(small, Decimal::new(500, 2));
        // A grant pays up to its cap of what the true-up made due.
        let credited = amount_due(
            &[Decimal::new(200, 2)],
            Some(&CONTRACT),
            Some(Decimal::new(1, 2)),
            usd(),
        )
        .unwrap();
        assert_eq!(credited, Decimal::new(499, 2));
    }

    #[test]
    fn a_contract_covers_its_share_of_the_accounts_and_never_a_probe() {
        let plain_catalog = catalog(200, 2);
        let catalog = Catalog {
            contracts: Some(CONTRACT),
            ..catalog(200, 2)
        };
        assert_eq!((0..200).filter(|i| CONTRACT.covers(*i)).count(), 60);
        let now = Utc::now();
        let probe = Planned {
            provider: 0,
            sku: 0,
            account: 0,
            quantity: 5,
            time: now,
        };
        let extra = vec![("probe0".to_owned(), probe)];
        let gen = Gen {
            catalog: &catalog,
            batch_size: 10,
            now,
            spread: None,
            lines: 0,
        };
        let totals = expected_totals(&gen, 400, &extra).unwrap();
        let plain = expected_totals(
            &Gen {
                catalog: &plain_catalog,
                ..gen
            },
            400,
            &extra,
        )
        .unwrap();
        // Every SKU costs 1 USD a unit: a probe pays its 0.5 units, a
        // covered account at least its minimum, the others their usage.
        let label = Period::month_containing(now).label();
        assert_eq!(totals[&("probe0".to_owned(), label)], Decimal::new(50, 2));
        for ((account, label), total) in &totals {
            let Some(i) = account
                .strip_prefix('a')
                .and_then(|i| i.parse::<usize>().ok())
            else {
                continue;
            };
            let plain = plain[&(account.clone(), label.clone())];
            if CONTRACT.covers(i) {
                assert!(*total >= CONTRACT.minimum, "{account}: {total}");
                assert!(*total == CONTRACT.minimum || *total < plain, "{account}");
            } else {
                assert_eq!(*total, plain, "{account}");
            }
        }
    }
}
