//! `tally demo`: a platform and two partners, two customer accounts, a few
//! thousand usage events (duplicates and invalid ones included) sent through
//! the HTTP collector, then the combined bills, checked against amounts the
//! demo computes on its own.

use anyhow::{bail, Context};
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::Connection;
use std::collections::BTreeMap;
use std::str::FromStr;
use tally_domain::money::checked;
use tally_domain::{Currency, Period, ProviderKind};
use tally_platform::Config;
use tokio_util::sync::CancellationToken;

use crate::up::{self, Service};

pub struct DemoProvider {
    pub id: &'static str,
    pub name: &'static str,
    pub kind: ProviderKind,
    /// (sku, name, unit, USD price, EUR price)
    pub skus: &'static [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    )],
}

pub const PROVIDERS: [DemoProvider; 3] = [
    DemoProvider {
        id: "nimbus",
        name: "Nimbus Cloud",
        kind: ProviderKind::FirstParty,
        skus: &[
            (
                "nimbus.compute.vcpu-hour",
                "Compute",
                "vCPU-hour",
                "0.0416",
                "0.0383",
            ),
            (
                "nimbus.storage.gb-month",
                "Object storage",
                "GB-month",
                "0.023",
                "0.0212",
            ),
            ("nimbus.egress.gb", "Internet egress", "GB", "0.09", "0.083"),
        ],
    },
    DemoProvider {
        id: "acmedb",
        name: "Acme Databases",
        kind: ProviderKind::Partner,
        skus: &[
            (
                "acmedb.postgres.instance-hour",
                "Managed PostgreSQL",
                "instance-hour",
                "0.2475",
                "0.2280",
            ),
            (
                "acmedb.postgres.storage-gb",
                "Database storage",
                "GB-month",
                "0.115",
                "0.106",
            ),
        ],
    },
    DemoProvider {
        id: "boltq",
        name: "Bolt Queue",
        kind: ProviderKind::Partner,
        skus: &[
            (
                "boltq.messages.million",
                "Messages",
                "million messages",
                "0.40",
                "0.37",
            ),
            (
                "boltq.queue.hour",
                "Dedicated queue",
                "queue-hour",
                "0.0125",
                "0.0115",
            ),
        ],
    },
];

/// (id, name, currency)
pub const ACCOUNTS: [(&str, &str, &str); 2] = [
    ("globex", "Globex Corporation", "USD"),
    ("initech", "Initech GmbH", "EUR"),
];

pub use tally_platform::db::with_database;

/// Drops database `name` on the server of `url`, if it exists (it is
/// created again, empty, by the next migration).
pub async fn drop_database(url: &str, name: &str) -> anyhow::Result<()> {
    let admin_url = with_database(url, "postgres");
    let mut conn = sqlx::PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

/// Keys the demo needs, returned by [`seed`].
pub struct DemoKeys {
    pub providers: BTreeMap<&'static str, String>,
    pub customers: BTreeMap<&'static str, String>,
    pub finance: String,
}

/// Creates the demo catalog with prices in effect since `since`.
pub async fn seed(pool: &sqlx::PgPool, since: DateTime<Utc>) -> anyhow::Result<DemoKeys> {
    let mut keys = DemoKeys {
        providers: BTreeMap::new(),
        customers: BTreeMap::new(),
        finance: crate::admin::create_staff_key(pool, "finance").await?,
    };
    for p in &PROVIDERS {
        let key = crate::admin::create_provider(pool, p.id, p.name, p.kind).await?;
        keys.providers.insert(p.id, key);
        for (sku, name, unit, usd, eur) in p.skus {
            crate::admin::create_sku(pool, sku, p.id, name, unit).await?;
            crate::admin::set_price(pool, sku, "USD", Decimal::from_str(usd)?, since).await?;
            crate::admin::set_price(pool, sku, "EUR", Decimal::from_str(eur)?, since).await?;
        }
    }
    for (id, name, currency) in ACCOUNTS {
        let key = crate::admin::create_account(pool, id, name, currency).await?;
        keys.customers.insert(id, key);
    }
    Ok(keys)
}

fn price_of(sku: &str, currency: &str) -> Option<Decimal> {
    PROVIDERS
        .iter()
        .flat_map(|p| p.skus.iter())
        .find_map(|(s, _, _, usd, eur)| {
            (*s == sku)
                .then(|| Decimal::from_str(if currency == "USD" { usd } else { eur }).ok())?
        })
}

struct Planned {
    provider: &'static str,
    event: Value,
    /// (account, period label, sku, quantity) when the event should be billed.
    billed: Option<(String, String, String, Decimal)>,
}

fn plan_events(count: usize, now: DateTime<Utc>, rng: &mut StdRng) -> Vec<Planned> {
    let mut out = Vec::with_capacity(count + count / 50);
    for n in 0..count {
        let provider = &PROVIDERS[rng.gen_range(0..PROVIDERS.len())];
        let (sku, ..) = provider.skus[rng.gen_range(0..provider.skus.len())];
        let (account, ..) = ACCOUNTS[rng.gen_range(0..ACCOUNTS.len())];
        let quantity = Decimal::new(rng.gen_range(1..5_000), rng.gen_range(1..4));
        let time = now - Duration::seconds(rng.gen_range(60..20 * 24 * 3600));
        let event = json!({
            "specversion": "1.0",
            "id": format!("demo-{n}"),
            "source": provider.id,
            "type": "com.tally.usage",
            "subject": account,
            "time": time.to_rfc3339(),
            "data": {"sku": sku, "quantity": quantity.to_string()},
        });
        let period = Period::month_containing(time).label();
        out.push(Planned {
            provider: provider.id,
            event,
            billed: Some((account.to_owned(), period, sku.to_owned(), quantity)),
        });
    }
    // Invalid events: each must be refused with its code, siblings unharmed.
    let now_s = (now - Duration::minutes(5)).to_rfc3339();
    let invalid = [
        (
            "nimbus",
            json!({"specversion":"1.0","id":"bad-sku","source":"nimbus","type":"com.tally.usage","subject":"globex","time":now_s,"data":{"sku":"nimbus.nope","quantity":"1"}}),
        ),
        (
            "acmedb",
            json!({"specversion":"1.0","id":"not-owned","source":"acmedb","type":"com.tally.usage","subject":"globex","time":now_s,"data":{"sku":"nimbus.egress.gb","quantity":"1"}}),
        ),
        (
            "boltq",
            json!({"specversion":"1.0","id":"negative","source":"boltq","type":"com.tally.usage","subject":"initech","time":now_s,"data":{"sku":"boltq.queue.hour","quantity":"-3"}}),
        ),
        (
            "nimbus",
            json!({"specversion":"1.0","id":"who","source":"nimbus","type":"com.tally.usage","subject":"nobody","time":now_s,"data":{"sku":"nimbus.egress.gb","quantity":"1"}}),
        ),
        ("nimbus", json!({"specversion":"0.3","id":"old-spec"})),
    ];
    for (provider, event) in invalid {
        out.push(Planned {
            provider,
            event,
            billed: None,
        });
    }
    out
}

/// Globex's startup programme credit, in USD.
const DEMO_CREDIT: Decimal = Decimal::from_parts(500, 0, 0, false, 0);

/// Expected invoice totals (amounts due), computed without Tally: per
/// account-period, each SKU's quantity times its price, rounded once, summed;
/// then Globex's credit, which covers everything, paying its oldest month first.
fn expected_totals(planned: &[Planned]) -> anyhow::Result<BTreeMap<(String, String), Decimal>> {
    let mut quantities: BTreeMap<(String, String, String), Decimal> = BTreeMap::new();
    for (account, period, sku, q) in planned.iter().filter_map(|p| p.billed.clone()) {
        let quantity = quantities.entry((account, period, sku)).or_default();
        *quantity = checked::add(*quantity, q)?;
    }
    let mut totals: BTreeMap<(String, String), Decimal> = BTreeMap::new();
    for ((account, period, sku), q) in quantities {
        let currency = ACCOUNTS
            .iter()
            .find(|a| a.0 == account)
            .map_or("USD", |a| a.2);
        let price = price_of(&sku, currency).context("demo price")?;
        let amount = Currency::parse(currency)?.round(checked::mul(q, price)?);
        let total = totals.entry((account, period)).or_default();
        *total = checked::add(*total, amount)?;
    }
    let mut credit = DEMO_CREDIT;
    for ((account, _), total) in totals.iter_mut() {
        if account == "globex" {
            let paid = credit.min(*total);
            *total = checked::sub(*total, paid)?;
            credit = checked::sub(credit, paid)?;
        }
    }
    Ok(totals)
}

async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    events: &[&Value],
) -> anyhow::Result<Value> {
    let response = http
        .post(format!("{url}/v1/events"))
        .bearer_auth(key)
        .header("content-type", "application/cloudevents-batch+json")
        .json(&events)
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await?;
    if status.as_u16() != 202 {
        bail!("collector answered {status}: {body}");
    }
    Ok(body)
}

pub async fn run(mut config: Config, events: usize) -> anyhow::Result<()> {
    let run_id = Utc::now().timestamp();
    drop_database(&config.database_url, "tally_demo").await?;
    config.database_url = with_database(&config.database_url, "tally_demo");
    config.topic_prefix = format!("demo-{run_id}.");
    config.group_prefix = format!("demo-{run_id}");
    config.collector_addr = "127.0.0.1:0".parse()?;
    config.api_addr = "127.0.0.1:0".parse()?;
    // The demo's usage spans the last 20 days and it checks each calendar
    // month's bill; with the closer on, early in a month the previous month
    // would be sealed first and its usage billed as adjustments instead.
    config.close_every = None;

    let shutdown = CancellationToken::new();
    let running = up::start(&config, &Service::ALL, shutdown.clone()).await?;
    let collector = running.collector_url().context("collector running")?;
    let api = running.api_url().context("api running")?;
    println!("Tally demo: collector {collector}, api {api}");

    let pool = tally_platform::db::connect(&config.database_url, 2).await?;
    let now = Utc::now();
    let keys = seed(&pool, now - Duration::days(60)).await?;
    println!("seeded 3 providers (1 first-party, 2 partners), 7 SKUs, 2 accounts");

    // A startup programme credit for Globex, through the finance API: it pays
    // for all of Globex's usage, platform and partners alike, oldest month first.
    let http = reqwest::Client::new();
    let effective = Period::month_containing(now - Duration::days(60)).start();
    let grant = http
        .post(format!("{api}/v1/accounts/globex/grants"))
        .bearer_auth(&keys.finance)
        .json(&json!({
            "name": "Startup programme",
            "kind": "programme",
            "amount": DEMO_CREDIT.to_string(),
            "effective_at": effective,
        }))
        .send()
        .await?;
    if !grant.status().is_success() {
        bail!("granting the demo credit failed: {}", grant.text().await?);
    }
    println!("granted Globex {DEMO_CREDIT} USD of startup programme credits");

    let mut rng = StdRng::seed_from_u64(7);
    let planned = plan_events(events, now, &mut rng);
    let (mut accepted, mut rejected, mut sent) = (0u64, 0u64, 0usize);
    let mut rejections: BTreeMap<String, u64> = BTreeMap::new();
    let mut first_batch: Option<(&str, Vec<&Value>)> = None;
    for provider in PROVIDERS.iter().map(|p| p.id) {
        let mine: Vec<&Value> = planned
            .iter()
            .filter(|p| p.provider == provider)
            .map(|p| &p.event)
            .collect();
        for chunk in mine.chunks(500) {
            // Every 10th event is sent a second time in the same batch.
            let mut batch: Vec<&Value> = chunk.to_vec();
            batch.extend(chunk.iter().step_by(10));
            let body = post_batch(&http, &collector, &keys.providers[provider], &batch).await?;
            sent += batch.len();
            accepted += body["accepted"].as_u64().unwrap_or(0);
            rejected += body["rejected"].as_u64().unwrap_or(0);
            for r in body["results"].as_array().into_iter().flatten() {
                if let Some(code) = r["code"].as_str() {
                    *rejections.entry(code.to_owned()).or_default() += 1;
                }
            }
            first_batch.get_or_insert((provider, batch));
        }
    }
    // A client retry: the first batch is sent again, whole.
    if let Some((provider, batch)) = &first_batch {
        let body = post_batch(&http, &collector, &keys.providers[provider], batch).await?;
        sent += batch.len();
        accepted += body["accepted"].as_u64().unwrap_or(0);
        rejected += body["rejected"].as_u64().unwrap_or(0);
    }
    println!("sent {sent} events: {accepted} accepted (duplicates included), {rejected} rejected {rejections:?}");

    let expected = expected_totals(&planned)?;
    let bills = wait_for_invoices(&http, &api, &keys.finance, &expected).await?;
    for bill in &bills {
        print_bill(bill);
    }
    let exact = bills.iter().all(|b| total_as_expected(b, &expected));
    println!(
        "{} invoice(s); every total equals the demo's own computation: {}",
        bills.len(),
        if exact { "yes" } else { "NO" }
    );
    if !exact {
        running.stop().await?;
        bail!("invoice totals differ from the expected amounts");
    }
    close_and_reconcile(&config, &pool, &expected, bills.len()).await?;
    running.stop().await?;
    Ok(())
}

/// Closes the bills' months as invoicing's closer does once their grace
/// window is over (here, as if it were already then), waits for the
/// invoices to be finalized with their numbers, and reconciles each month.
async fn close_and_reconcile(
    config: &Config,
    pool: &sqlx::PgPool,
    expected: &BTreeMap<(String, String), Decimal>,
    invoices: usize,
) -> anyhow::Result<()> {
    let months = expected
        .keys()
        .map(|(_, label)| Period::parse_month(label))
        .collect::<Result<std::collections::BTreeSet<_>, _>>()?;
    let Some(last) = months.last() else {
        return Ok(());
    };
    let grace = Duration::from_std(config.grace)?;
    let producer = tally_platform::kafka::producer(config)?;
    let after_grace = last.end() + grace + Duration::hours(1);
    tally_invoicing::lifecycle::request_seals(
        pool,
        &producer,
        &config.topics().usage_events,
        after_grace,
        grace,
    )
    .await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    let numbers: Vec<(String, String, String)> = loop {
        let rows: Vec<(String, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT account_id, period_start, number FROM invoices
             WHERE status = 'finalized' ORDER BY number",
        )
        .fetch_all(pool)
        .await?;
        if rows.len() >= invoices {
            break rows
                .into_iter()
                .map(|(a, start, n)| (a, Period::month_containing(start).label(), n))
                .collect();
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{} of {invoices} invoices finalized after the seal",
                rows.len()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    println!();
    println!(
        "closed as of {} (grace window over): every period sealed in order with its events, invoices finalized",
        after_grace.format("%Y-%m-%d %H:%M UTC")
    );
    for (account, period, number) in &numbers {
        println!("  {number}  {account} {period}");
    }
    let mut conn = pool.acquire().await?;
    for month in &months {
        let report = tally_api::finance::settlement::reconcile(&mut conn, *month).await?;
        print!("{}", crate::admin::reconciliation_text(&report));
        if !report.holds() {
            bail!("{} does not reconcile", month.label());
        }
    }
    Ok(())
}

/// Whether a bill's total is the one the demo computed for its account-period.
fn total_as_expected(bill: &Value, expected: &BTreeMap<(String, String), Decimal>) -> bool {
    let key = (
        bill["account_id"].as_str().unwrap_or_default().to_owned(),
        bill["period"]["label"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    expected.get(&key).map(Decimal::to_string).as_deref() == bill["total"].as_str()
}

async fn wait_for_invoices(
    http: &reqwest::Client,
    api: &str,
    finance_key: &str,
    expected: &BTreeMap<(String, String), Decimal>,
) -> anyhow::Result<Vec<Value>> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let mut bills = Vec::new();
        for (account, period) in expected.keys() {
            let response = http
                .get(format!("{api}/v1/accounts/{account}/bill?period={period}"))
                .bearer_auth(finance_key)
                .send()
                .await?;
            if response.status().is_success() {
                bills.push(response.json::<Value>().await?);
            }
        }
        let done =
            bills.len() == expected.len() && bills.iter().all(|b| total_as_expected(b, expected));
        if done || tokio::time::Instant::now() > deadline {
            return Ok(bills);
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn print_bill(bill: &Value) {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    println!();
    println!(
        "== {} · {} · {} · {} ==",
        s(&bill["account_id"]),
        s(&bill["period"]["label"]),
        s(&bill["status"]),
        s(&bill["currency"])
    );
    for section in bill["sections"].as_array().into_iter().flatten() {
        println!(
            "  {} ({})",
            s(&section["provider"]["name"]),
            s(&section["provider"]["kind"])
        );
        for line in section["lines"].as_array().into_iter().flatten() {
            println!(
                "    {:<32} {:>14} {:<17} × {:>8} = {:>10}",
                s(&line["description"]),
                s(&line["quantity"]),
                s(&line["unit"]),
                s(&line["unit_price"]),
                s(&line["amount"])
            );
        }
        println!("    {:<85} {:>10}", "subtotal", s(&section["subtotal"]));
    }
    let credits = bill["credits"].as_array().cloned().unwrap_or_default();
    if !credits.is_empty() {
        println!("  {:<87} {:>10}", "subtotal", s(&bill["subtotal"]));
        for credit in &credits {
            println!(
                "  {:<87} {:>10}",
                format!("credit: {} ({})", s(&credit["name"]), s(&credit["kind"])),
                format!("-{}", s(&credit["amount"]))
            );
        }
    }
    println!("  {:<87} {:>10}", "TOTAL DUE", s(&bill["total"]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_swaps_only_the_database_name() {
        assert_eq!(
            with_database("postgres://u:p@h:5432/tally?sslmode=disable", "x"),
            "postgres://u:p@h:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
