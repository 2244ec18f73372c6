//! `tally bench`: drives a running pipeline (the three services as separate
//! `tally up --only …` processes on the embedded default, or on the Kafka and
//! PostgreSQL that `KAFKA_BROKERS` / `DATABASE_URL` name) and measures
//! collector ingest, end-to-end throughput with exact totals, freshness at a
//! steady rate, the raw ceilings of the broker and PostgreSQL underneath, and
//! each service's peak memory.

use anyhow::{bail, Context};
use chrono::{DateTime, Duration as TimeDelta, Utc};
use hdrhistogram::Histogram;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tally_domain::money::checked;
use tally_domain::{Currency, Period, ProviderKind};
use tally_platform::Config;

use crate::infra;

/// What to run; `--smoke` shrinks everything to a quick exactness check.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Providers (the first is first-party, the others partners).
    #[arg(long, default_value_t = 4)]
    pub providers: usize,
    /// Customer accounts (USD).
    #[arg(long, default_value_t = 1000)]
    pub accounts: usize,
    /// SKUs per provider.
    #[arg(long, default_value_t = 5)]
    pub skus: usize,
    /// Dedupe history stored before the run: this many earlier events'
    /// ids (spread over the past 12 months, over the bench's accounts and
    /// providers), as months of traffic would have left them.
    #[arg(long, default_value_t = 0)]
    pub history_events: u64,
    /// How usage spreads over accounts: 0 evenly, else Zipf with this
    /// exponent (account `a0` the busiest; 1.0 is the classic long tail).
    #[arg(long, default_value_t = 0.0)]
    pub zipf: f64,
    /// The SKUs of a provider one account uses at most (its statement's
    /// lines per provider); 0: any of them.
    #[arg(long, default_value_t = 0)]
    pub lines: usize,
    /// Events of the throughput run (ingest and end to end).
    #[arg(long, default_value_t = 5_000_000)]
    pub events: u64,
    /// Events produced to the `usage.ingest` topic after the HTTP run, in
    /// records of `batch-size` events (0: none).
    #[arg(long, default_value_t = 1_000_000)]
    pub kafka_events: u64,
    /// Events per HTTP batch.
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Offered rate of the throughput run in events/s; 0 sends as fast as the collector takes them.
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Steady rate of the freshness run, events/s.
    #[arg(long, default_value_t = 10_000)]
    pub freshness_rate: u64,
    /// Length of the freshness run.
    #[arg(long, default_value_t = 30)]
    pub freshness_seconds: u64,
    /// Records for each raw ceiling (rdkafka produce/consume, PostgreSQL COPY).
    #[arg(long, default_value_t = 1_000_000)]
    pub ceiling_events: u64,
    /// Start a private single-node Apache Kafka with empty storage for the
    /// run (under the data directory, removed afterwards) instead of using
    /// the configured / embedded one.
    #[arg(long)]
    pub private_broker: bool,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,
    /// A small run (20,000 events, 3 s of freshness) that checks exactness, not speed.
    #[arg(long)]
    pub smoke: bool,
}

impl BenchArgs {
    fn effective(&self) -> BenchArgs {
        if !self.smoke {
            return self.clone();
        }
        BenchArgs {
            providers: 3,
            accounts: 50,
            skus: 3,
            zipf: self.zipf,
            lines: self.lines,
            history_events: self.history_events.min(100_000),
            events: 20_000,
            kafka_events: 5_000,
            batch_size: 500,
            concurrency: 4,
            rate: 0,
            freshness_rate: 2_000,
            freshness_seconds: 3,
            ceiling_events: 20_000,
            json: self.json.clone(),
            private_broker: self.private_broker,
            smoke: true,
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub events: u64,
    pub accepted: u64,
    pub ingest_events_per_s: f64,
    pub post_p50_ms: f64,
    pub post_p99_ms: f64,
    pub kafka_events: u64,
    /// `usage.ingest` records validated and forwarded (offsets committed), events/s.
    pub kafka_ingest_events_per_s: f64,
    pub kafka_ingest_to_produce_ratio: f64,
    pub end_to_end_events_per_s: f64,
    pub end_to_end_seconds: f64,
    /// PostgreSQL's WAL written during the throughput run, per event: every
    /// byte the database wrote for it (dedupe rows, aggregates, statement
    /// versions, invoices, indexes).
    pub wal_bytes_per_event: f64,
    /// How much the database grew during the throughput run, per million events.
    pub database_mib_per_million_events: f64,
    pub invoices: usize,
    pub invoices_exact: usize,
    pub freshness_rate: u64,
    pub freshness_achieved_events_per_s: f64,
    pub freshness_probes: usize,
    pub freshness_p50_ms: f64,
    pub freshness_p99_ms: f64,
    pub freshness_max_ms: f64,
    pub ceiling_produce_events_per_s: f64,
    pub ceiling_consume_events_per_s: f64,
    pub ceiling_copy_rows_per_s: f64,
    pub ingest_to_produce_ratio: f64,
    pub end_to_end_to_consume_ratio: f64,
    pub end_to_end_to_copy_ratio: f64,
    /// Peak resident memory (VmHWM) per service, MiB.
    pub peak_rss_mib: BTreeMap<String, f64>,
}

/// The bench's catalog: prices per SKU index, accounts, keys.
struct Catalog {
    provider_ids: Vec<String>,
    provider_keys: Vec<String>,
    /// Per provider: SKU ids and USD unit prices.
    skus: Vec<Vec<(String, Decimal)>>,
    accounts: Vec<String>,
}

fn price_of(provider: usize, sku: usize) -> Decimal {
    // Distinct prices with up to 5 decimals: rounding matters.
    Decimal::new(1_237 + 311 * provider as i64 + 97 * sku as i64, 5)
}

async fn seed(pool: &PgPool, a: &BenchArgs, since: DateTime<Utc>) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog {
        provider_ids: Vec::new(),
        provider_keys: Vec::new(),
        skus: Vec::new(),
        accounts: Vec::new(),
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
        let mut skus = Vec::new();
        for s in 0..a.skus {
            let sku = format!("{id}.sku{s}");
            crate::admin::create_sku(pool, &sku, &id, &format!("SKU {s}"), "unit").await?;
            crate::admin::set_price(pool, &sku, "USD", price_of(p, s), since).await?;
            skus.push((sku, price_of(p, s)));
        }
        catalog.provider_ids.push(id);
        catalog.provider_keys.push(key);
        catalog.skus.push(skus);
    }
    // Accounts in bulk: the bench needs no customer tokens.
    sqlx::query(
        "INSERT INTO accounts (id, name, currency)
         SELECT 'a' || g, 'Account ' || g, 'USD' FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(i64::try_from(a.accounts)?)
    .execute(pool)
    .await?;
    catalog.accounts = (0..a.accounts).map(|i| format!("a{i}")).collect();
    Ok(catalog)
}

/// Event `i` of the throughput run: its batch decides the provider.
struct Gen<'a> {
    catalog: &'a Catalog,
    batch_size: u64,
    now: DateTime<Utc>,
    /// Cumulative share of usage up to each account (Zipf), or `None`
    /// for an even spread.
    spread: Option<Vec<f64>>,
    /// SKUs of a provider an account uses at most (0: all).
    lines: usize,
}

/// The cumulative Zipf distribution over `n` ranks with exponent `s`.
fn zipf_cdf(n: usize, s: f64) -> Vec<f64> {
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

struct Planned {
    provider: usize,
    sku: usize,
    account: usize,
    /// Tenths.
    quantity: i64,
    time: DateTime<Utc>,
}

impl Gen<'_> {
    fn plan(&self, i: u64) -> Planned {
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
    fn batch(&self, range: std::ops::Range<u64>) -> (usize, String) {
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

    fn json(&self, id: &str, p: &Planned, account: &str) -> String {
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
type Expected = HashMap<(String, String), Decimal>;

fn expected_totals(
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
    let mut totals: Expected = HashMap::new();
    for ((account, label, provider, sku), tenths) in quantities {
        let amount = usd.round(checked::mul(
            Decimal::new(tenths, 1),
            gen.catalog.skus[provider][sku].1,
        )?);
        let total = totals.entry((account, label)).or_default();
        *total = checked::add(*total, amount)?;
    }
    Ok(totals)
}

/// A child `tally up --only <service>` process.
struct ServiceProcess {
    name: &'static str,
    child: Child,
}

impl ServiceProcess {
    fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    name: &'static str,
    config: &Config,
    collector: u16,
    api: u16,
) -> anyhow::Result<ServiceProcess> {
    let exe = std::env::current_exe().context("locating the tally binary")?;
    let child = Command::new(exe)
        .args(["up", "--only", name])
        .env("DATABASE_URL", &config.database_url)
        .env("KAFKA_BROKERS", &config.kafka_brokers)
        .env("TALLY_TOPIC_PREFIX", &config.topic_prefix)
        .env("TALLY_GROUP_PREFIX", &config.group_prefix)
        .env(
            "TALLY_USAGE_PARTITIONS",
            config.usage_partitions.to_string(),
        )
        .env("TALLY_BATCH_MAX", config.batch_max.to_string())
        .env("TALLY_RATING_LANES", config.rating_lanes.to_string())
        .env(
            "TALLY_BATCH_WAIT_MS",
            config.batch_wait.as_millis().to_string(),
        )
        .env("TALLY_COLLECTOR_ADDR", format!("127.0.0.1:{collector}"))
        .env("TALLY_API_ADDR", format!("127.0.0.1:{api}"))
        .env("TALLY_ADMIN_ADDR", "127.0.0.1:0")
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(match std::env::var_os("TALLY_BENCH_LOG_DIR") {
            // Each service's log in a file of its own, for diagnosis.
            Some(dir) => Stdio::from(std::fs::File::create(
                std::path::Path::new(&dir).join(format!("{name}.log")),
            )?),
            None => Stdio::inherit(),
        })
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(ServiceProcess { name, child })
}

async fn wait_healthy(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{base} did not become healthy within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// Fills the dedupe table with `n` earlier events' ids (`h0`, `h1`, …),
/// spread over the past year, a million rows per statement.
async fn store_history(pool: &PgPool, catalog: &Catalog, n: u64) -> anyhow::Result<()> {
    let providers: Vec<&str> = catalog.provider_ids.iter().map(String::as_str).collect();
    let accounts = i64::try_from(catalog.accounts.len())?;
    let mut from = 0i64;
    let n = i64::try_from(n)?;
    while from < n {
        let to = (from + 1_000_000).min(n);
        sqlx::query(
            "INSERT INTO processed_events (provider_id, event_id, account_id, event_time, processed_at)
             SELECT ($1::text[])[1 + g % cardinality($1::text[])], 'h' || g, 'a' || (g % $2),
                    now() - make_interval(secs => (g % 31536000)::double precision),
                    now() - make_interval(secs => (g % 31536000)::double precision)
             FROM generate_series($3::bigint, $4::bigint - 1) AS g",
        )
        .bind(&providers)
        .bind(accounts)
        .bind(from)
        .bind(to)
        .execute(pool)
        .await?;
        from = to;
    }
    Ok(())
}

/// The bench database's size and the server's WAL position, in bytes.
async fn database_size_and_wal(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT pg_database_size(current_database()),
                (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint",
    )
    .fetch_one(pool)
    .await?)
}

/// Events billed on draft invoices so far.
async fn billed_events(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(sum(event_count), 0)::bigint FROM invoice_lines WHERE kind = 'usage'",
    )
    .fetch_one(pool)
    .await?)
}

async fn post_batch(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: String,
) -> anyhow::Result<u64> {
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/cloudevents-batch+json")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    if status.as_u16() != 202 {
        bail!("collector answered {status}: {body}");
    }
    Ok(body["accepted"].as_u64().unwrap_or(0))
}

pub async fn run(mut config: Config, args: &BenchArgs) -> anyhow::Result<Report> {
    let a = args.effective();
    let run_id = Utc::now().timestamp();
    let mut private = infra::Embedded::default();
    let private_dir = infra::data_dir().join(format!("bench-kafka-{run_id}"));
    if a.private_broker {
        let dir = &private_dir;
        // Two free ports in a row: the client's and the controller's.
        let port = loop {
            let port = infra::free_port()?;
            if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let kafka = infra::LocalKafka::create(dir, 1, port)?;
        private.adopt_private(kafka.clone());
        kafka.start().await?;
        config.kafka_brokers = kafka.bootstrap();
    }
    crate::demo::drop_database(&config.database_url, "tally_bench").await?;
    config.database_url = crate::demo::with_database(&config.database_url, "tally_bench");
    config.topic_prefix = format!("bench-{run_id}.");
    config.group_prefix = format!("bench-{run_id}");
    tally_platform::prepare(&config).await?;
    let pool = tally_platform::db::connect(&config.database_url, 4).await?;
    let now = Utc::now();
    let catalog = seed(&pool, &a, now - TimeDelta::days(60)).await?;
    if a.history_events > 0 {
        let t0 = Instant::now();
        store_history(&pool, &catalog, a.history_events).await?;
        println!(
            "history: {} earlier events' ids stored in {:.1} s",
            a.history_events,
            t0.elapsed().as_secs_f64()
        );
    }
    println!(
        "bench: {} providers × {} SKUs, {} accounts (zipf {}, lines {}, history {}); {} events in batches of {} from {} clients",
        a.providers, a.skus, a.accounts, a.zipf, a.lines, a.history_events, a.events, a.batch_size, a.concurrency
    );

    let (collector_port, api_port) = (infra::free_port()?, infra::free_port()?);
    let services = vec![
        spawn("collector", &config, collector_port, api_port)?,
        spawn("rating", &config, collector_port, api_port)?,
        spawn("invoicing", &config, collector_port, api_port)?,
        spawn("api", &config, collector_port, api_port)?,
    ];
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .build()?;
    let collector = format!("http://127.0.0.1:{collector_port}");
    wait_healthy(&http, &collector).await?;
    wait_healthy(&http, &format!("http://127.0.0.1:{api_port}")).await?;
    let events_url = format!("{collector}/v1/events");

    let mut report = Report {
        events: a.events,
        ..Report::default()
    };
    let gen = Gen {
        catalog: &catalog,
        batch_size: a.batch_size as u64,
        now,
        spread: (a.zipf > 0.0).then(|| zipf_cdf(catalog.accounts.len(), a.zipf)),
        lines: a.lines,
    };

    // 1. Throughput: ingest, then end to end.
    let (db_before, wal_before) = database_size_and_wal(&pool).await?;
    let batches = a.events.div_ceil(a.batch_size as u64);
    let next = AtomicU64::new(0);
    let accepted = AtomicU64::new(0);
    let latencies = Mutex::new(Histogram::<u64>::new(3)?);
    let started = Instant::now();
    let sender = |_: usize| async {
        let mut local = Histogram::<u64>::new(3)?;
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= batches {
                break;
            }
            if a.rate > 0 {
                let due = started
                    + Duration::from_secs_f64((k * a.batch_size as u64) as f64 / a.rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            let first = k * a.batch_size as u64;
            let (provider, body) = gen.batch(first..(first + a.batch_size as u64).min(a.events));
            let t0 = Instant::now();
            let n = post_batch(&http, &events_url, &catalog.provider_keys[provider], body).await?;
            local.record(t0.elapsed().as_micros() as u64)?;
            accepted.fetch_add(n, Ordering::Relaxed);
        }
        latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("latency histogram poisoned"))?
            .add(&local)?;
        anyhow::Ok(())
    };
    let results = futures::future::join_all((0..a.concurrency).map(sender)).await;
    let ingest_elapsed = started.elapsed();
    for r in results {
        r?;
    }
    let accepted = accepted.load(Ordering::Relaxed);
    report.accepted = accepted;
    report.ingest_events_per_s = accepted as f64 / ingest_elapsed.as_secs_f64();
    {
        let h = latencies
            .lock()
            .map_err(|_| anyhow::anyhow!("latency histogram poisoned"))?;
        report.post_p50_ms = ms(&h, 0.50);
        report.post_p99_ms = ms(&h, 0.99);
    }
    println!(
        "ingest: {accepted} events accepted in {:.1} s = {:.0} events/s; POST p50 {:.1} ms, p99 {:.1} ms",
        ingest_elapsed.as_secs_f64(),
        report.ingest_events_per_s,
        report.post_p50_ms,
        report.post_p99_ms
    );
    if accepted != a.events {
        bail!("the collector accepted {accepted} of {} events", a.events);
    }
    let deadline = Instant::now() + Duration::from_secs(600 + a.events / 1000);
    loop {
        let billed = billed_events(&pool).await?;
        if billed as u64 >= accepted {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {billed} of {accepted} events reached invoices before the deadline");
        }
        // Not faster: the poll is a scan of invoice lines, load on the database measured.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let e2e = started.elapsed();
    report.end_to_end_seconds = e2e.as_secs_f64();
    report.end_to_end_events_per_s = accepted as f64 / e2e.as_secs_f64();
    println!(
        "end to end: {accepted} events on draft invoices {:.1} s after the first POST = {:.0} events/s",
        e2e.as_secs_f64(),
        report.end_to_end_events_per_s
    );
    let (db_after, wal_after) = database_size_and_wal(&pool).await?;
    report.wal_bytes_per_event = (wal_after - wal_before) as f64 / accepted as f64;
    report.database_mib_per_million_events =
        (db_after - db_before) as f64 / (1024.0 * 1024.0) / accepted as f64 * 1e6;
    println!(
        "writes: {:.0} bytes of WAL per event; the database grew {:.1} MiB per million events",
        report.wal_bytes_per_event, report.database_mib_per_million_events
    );

    // 1b. Kafka ingest: the next events as `usage.ingest` records, until
    //     the collector committed past the last one, then billed.
    report.kafka_events = a.kafka_events;
    if a.kafka_events > 0 {
        report.kafka_ingest_events_per_s =
            kafka_ingest(&config, &gen, a.events, a.kafka_events, &a).await?;
        println!(
            "kafka ingest: {} events from usage.ingest validated and forwarded = {:.0} events/s",
            a.kafka_events, report.kafka_ingest_events_per_s
        );
        let total = accepted + a.kafka_events;
        let deadline = Instant::now() + Duration::from_secs(600 + a.kafka_events / 1000);
        while (billed_events(&pool).await? as u64) < total {
            if Instant::now() > deadline {
                bail!("the events of usage.ingest did not all reach invoices before the deadline");
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // 2. Freshness: a steady rate; each batch carries one probe event for an
    //    account of its own, so "on the draft invoice" is one invoice row.
    let freshness = freshness(&pool, &http, &events_url, &catalog, &gen, &a).await?;
    report.freshness_rate = a.freshness_rate;
    report.freshness_achieved_events_per_s = freshness.achieved;
    report.freshness_probes = freshness.probes;
    report.freshness_p50_ms = ms(&freshness.histogram, 0.50);
    report.freshness_p99_ms = ms(&freshness.histogram, 0.99);
    report.freshness_max_ms = freshness.histogram.max() as f64 / 1000.0;
    println!(
        "freshness at {} events/s (achieved {:.0}): {} probes, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        a.freshness_rate,
        freshness.achieved,
        freshness.probes,
        report.freshness_p50_ms,
        report.freshness_p99_ms,
        report.freshness_max_ms
    );

    // 3. Exactness of every invoice, throughput and freshness events together.
    let expected = expected_totals(&gen, a.events + a.kafka_events, &freshness.planned)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let exact = loop {
        let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>, Decimal)> =
            sqlx::query_as("SELECT account_id, period_start, period_end, total FROM invoices")
                .fetch_all(&pool)
                .await?;
        let exact = rows
            .iter()
            .filter(|(account, start, end, total)| {
                let label = Period::new(*start, *end)
                    .map(|p| p.label())
                    .unwrap_or_default();
                expected.get(&(account.clone(), label)) == Some(total)
            })
            .count();
        if (rows.len() == expected.len() && exact == rows.len()) || Instant::now() > deadline {
            report.invoices = rows.len();
            break exact;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    report.invoices_exact = exact;
    println!(
        "exactness: {exact} of {} invoices equal the bench's own computation ({} expected)",
        report.invoices,
        expected.len()
    );

    // 4. Peak memory, read while the services still run.
    for s in &services {
        if let Some(mib) = s.peak_rss_mib() {
            report.peak_rss_mib.insert(s.name.to_owned(), mib);
        }
    }
    println!("peak RSS (MiB): {:?}", report.peak_rss_mib);
    drop(services);

    // 5. Ceilings on the same broker and database, with the same payloads.
    let ceilings = ceilings(&config, &pool, &gen, &a).await?;
    report.ceiling_produce_events_per_s = ceilings.0;
    report.ceiling_consume_events_per_s = ceilings.1;
    report.ceiling_copy_rows_per_s = ceilings.2;
    report.ingest_to_produce_ratio = report.ingest_events_per_s / ceilings.0;
    report.kafka_ingest_to_produce_ratio = report.kafka_ingest_events_per_s / ceilings.0;
    report.end_to_end_to_consume_ratio = report.end_to_end_events_per_s / ceilings.1;
    report.end_to_end_to_copy_ratio = report.end_to_end_events_per_s / ceilings.2;
    println!(
        "ceilings: rdkafka produce {:.0}/s (ingest at {:.2}, kafka ingest at {:.2}), consume {:.0}/s (end to end at {:.2}), PostgreSQL COPY {:.0} rows/s (end to end at {:.2})",
        ceilings.0,
        report.ingest_to_produce_ratio,
        report.kafka_ingest_to_produce_ratio,
        ceilings.1,
        report.end_to_end_to_consume_ratio,
        ceilings.2,
        report.end_to_end_to_copy_ratio
    );
    if let Some(path) = &a.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    if report.invoices_exact != expected.len() || report.invoices != expected.len() {
        bail!(
            "{} of {} invoices are exact",
            report.invoices_exact,
            expected.len()
        );
    }
    drop(private);
    Ok(report)
}

struct Freshness {
    histogram: Histogram<u64>,
    probes: usize,
    achieved: f64,
    /// The events sent, by account, for the exactness check.
    planned: Vec<(String, Planned)>,
}

async fn freshness(
    pool: &PgPool,
    http: &reqwest::Client,
    url: &str,
    catalog: &Catalog,
    gen: &Gen<'_>,
    a: &BenchArgs,
) -> anyhow::Result<Freshness> {
    const BATCH: u64 = 100;
    let batches = (a.freshness_rate * a.freshness_seconds).div_ceil(BATCH);
    sqlx::query(
        "INSERT INTO accounts (id, name, currency)
         SELECT 'probe' || g, 'Probe ' || g, 'USD' FROM generate_series(0, $1 - 1) AS g",
    )
    .bind(i64::try_from(batches)?)
    .execute(pool)
    .await?;
    let acked: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let next = AtomicU64::new(0);
    let planned: Mutex<Vec<(String, Planned)>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let interval = Duration::from_secs_f64(BATCH as f64 / a.freshness_rate as f64);
    let base = a.events + 1_000_000;
    let sender = |_: usize| async {
        loop {
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= batches {
                return anyhow::Ok(());
            }
            tokio::time::sleep_until((started + interval * k as u32).into()).await;
            let probe = format!("probe{k}");
            let mut body = String::from("[");
            let mut provider = 0;
            let mut mine = Vec::with_capacity(BATCH as usize);
            for j in 0..BATCH {
                let i = base + k * BATCH + j;
                let mut p = gen.plan(i);
                // The batch's provider owns every SKU in it.
                p.provider = (k % catalog.provider_ids.len() as u64) as usize;
                p.sku %= catalog.skus[p.provider].len();
                p.time = Utc::now() - TimeDelta::seconds(1);
                let account = if j == 0 {
                    probe.clone()
                } else {
                    catalog.accounts[p.account].clone()
                };
                if j > 0 {
                    body.push(',');
                }
                body.push_str(&gen.json(&format!("f{i}"), &p, &account));
                provider = p.provider;
                mine.push((account, p));
            }
            body.push(']');
            post_batch(http, url, &catalog.provider_keys[provider], body).await?;
            acked
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .insert(probe, Instant::now());
            planned
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .extend(mine);
        }
    };
    let senders = futures::future::join_all((0..a.concurrency.max(4)).map(sender));
    let mut histogram = Histogram::<u64>::new(3)?;
    let mut seen: HashSet<String> = HashSet::new();
    let poll = async {
        let deadline = started + Duration::from_secs(a.freshness_seconds + 120);
        while seen.len() < batches as usize && Instant::now() < deadline {
            // Only the probes acked and not seen yet, each an index lookup:
            // the poll is load on the same PostgreSQL, so it stays small.
            // A probe leaves `acked` once it is seen.
            let waiting: Vec<String> = acked
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .keys()
                .cloned()
                .collect();
            let visible: Vec<String> = if waiting.is_empty() {
                Vec::new()
            } else {
                sqlx::query_scalar(
                    "SELECT i.account_id FROM UNNEST($1::text[]) AS t(id)
                     JOIN invoices i ON i.account_id = t.id",
                )
                .bind(&waiting)
                .fetch_all(pool)
                .await?
            };
            let at = Instant::now();
            {
                let mut acked = acked.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                for account in visible {
                    if let Some(t) = acked.remove(&account) {
                        if seen.insert(account) {
                            histogram.record(at.saturating_duration_since(t).as_micros() as u64)?;
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        anyhow::Ok(())
    };
    let (sent, polled) = tokio::join!(
        async {
            let r = senders.await;
            (r, started.elapsed())
        },
        poll
    );
    for r in sent.0 {
        r?;
    }
    polled?;
    let planned = planned
        .into_inner()
        .map_err(|_| anyhow::anyhow!("poisoned"))?;
    Ok(Freshness {
        probes: seen.len(),
        achieved: planned.len() as f64 / sent.1.as_secs_f64(),
        histogram,
        planned,
    })
}

/// Produces events `from..from + count` to `usage.ingest` (records of
/// `batch_size` events of one provider, with the `tally-provider` header)
/// and waits until the collector's consumer group has committed past the
/// last record: events/s from the first record sent.
async fn kafka_ingest(
    config: &Config,
    gen: &Gen<'_>,
    from: u64,
    count: u64,
    a: &BenchArgs,
) -> anyhow::Result<f64> {
    use futures::StreamExt;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::FutureRecord;
    let topic = config.topics().usage_ingest;
    let size = a.batch_size.max(1) as u64;
    // Records follow the HTTP run's batches (one provider each), cut at
    // `from` and at the end.
    let records: Vec<(usize, String)> = (from / size..(from + count).div_ceil(size))
        .map(|k| gen.batch((k * size).max(from)..((k + 1) * size).min(from + count)))
        .collect();
    let producer = tally_platform::kafka::producer(config)?;
    let t0 = Instant::now();
    let delivered: Vec<Result<(i32, i64), rdkafka::error::KafkaError>> =
        futures::stream::iter(records.iter().enumerate())
            .map(|(k, (provider, body))| {
                let key = k.to_string();
                let producer = &producer;
                let topic = &topic;
                async move {
                    let id = &gen.catalog.provider_ids[*provider];
                    let record = FutureRecord::to(topic)
                        .key(&key)
                        .payload(body.as_bytes())
                        .headers(OwnedHeaders::new().insert(Header {
                            key: tally_collector::kafka_ingest::PROVIDER_HEADER,
                            value: Some(id.as_str()),
                        }));
                    producer
                        .send(record, Duration::from_secs(30))
                        .await
                        .map(|d| (d.partition, d.offset))
                        .map_err(|(e, _)| e)
                }
            })
            .buffer_unordered(a.concurrency.max(1))
            .collect()
            .await;
    let mut end: HashMap<i32, i64> = HashMap::new();
    for d in delivered {
        let (partition, offset) = d?;
        let next = end.entry(partition).or_default();
        *next = (*next).max(offset + 1);
    }
    let watcher: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("group.id", config.group("collector-ingest"))
        .create()?;
    let mut wanted = rdkafka::TopicPartitionList::new();
    for partition in end.keys() {
        wanted.add_partition(&topic, *partition);
    }
    let deadline = Instant::now() + Duration::from_secs(600 + count / 1000);
    loop {
        let committed = tokio::task::block_in_place(|| {
            watcher.committed_offsets(wanted.clone(), Duration::from_secs(10))
        })?;
        let done = end.iter().all(|(partition, next)| {
            committed
                .find_partition(&topic, *partition)
                .and_then(|e| e.offset().to_raw())
                .is_some_and(|at| at >= *next)
        });
        if done {
            return Ok(count as f64 / t0.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("the collector did not take every usage.ingest record before the deadline");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Raw rdkafka produce and consume of the usage payloads, and raw COPY of
/// the dedupe rows, each of `a.ceiling_events` records: (produce/s,
/// consume/s, COPY rows/s). The producer sends the ingest run's batches
/// with its concurrency, each batch waited for like a POST.
async fn ceilings(
    config: &Config,
    pool: &PgPool,
    gen: &Gen<'_>,
    a: &BenchArgs,
) -> anyhow::Result<(f64, f64, f64)> {
    use futures::StreamExt;
    use rdkafka::consumer::Consumer;
    let n = a.ceiling_events;
    let mut raw = config.clone();
    raw.topic_prefix = format!("{}ceiling.", config.topic_prefix);
    tally_platform::kafka::ensure_topics(&raw).await?;
    let topic = raw.topics().usage_events;
    let payloads: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| {
            let p = gen.plan(i);
            let account = gen.catalog.accounts[p.account].clone();
            let message = serde_json::json!({
                "kind": "usage",
                "provider_id": gen.catalog.provider_ids[p.provider],
                "event_id": format!("e{i}"),
                "account_id": account,
                "sku": gen.catalog.skus[p.provider][p.sku].0,
                "quantity": Decimal::new(p.quantity, 1).to_string(),
                "time": p.time,
                "received_at": Utc::now(),
            });
            Ok((account, serde_json::to_vec(&message)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let producer = tally_platform::kafka::producer(&raw)?;
    let t0 = Instant::now();
    let sent: Vec<Result<(), rdkafka::error::KafkaError>> =
        futures::stream::iter(payloads.chunks(a.batch_size.max(1)))
            .map(|chunk| {
                tally_platform::kafka::send_all(
                    &producer,
                    chunk
                        .iter()
                        .map(|(k, p)| (topic.as_str(), k.as_str(), p.as_slice())),
                )
            })
            .buffer_unordered(a.concurrency.max(1))
            .collect()
            .await;
    sent.into_iter().collect::<Result<Vec<()>, _>>()?;
    let produce = n as f64 / t0.elapsed().as_secs_f64();

    let consumer = tally_platform::kafka::consumer(&raw, &format!("{}ceiling", raw.group_prefix))?;
    consumer.subscribe(&[&topic])?;
    let mut got = 0u64;
    let mut t0 = None;
    while got < n {
        let batch =
            tally_platform::kafka::next_batch(&consumer, 5000, Duration::from_millis(50)).await?;
        t0.get_or_insert_with(Instant::now);
        got += batch.len() as u64;
    }
    // From the first message on: the group join is not the broker's speed.
    let consume = n as f64 / t0.map_or(1.0, |t| t.elapsed().as_secs_f64());

    sqlx::query("CREATE TABLE bench_copy (LIKE processed_events INCLUDING ALL)")
        .execute(pool)
        .await?;
    let mut text = String::with_capacity(n as usize * 64);
    let stamp = Utc::now().to_rfc3339();
    for i in 0..n {
        let p = gen.plan(i);
        text.push_str(&format!(
            "{}\te{i}\t{}\t{}\t{stamp}\n",
            gen.catalog.provider_ids[p.provider],
            gen.catalog.accounts[p.account],
            p.time.to_rfc3339()
        ));
    }
    let mut conn = pool.acquire().await?;
    let t0 = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY bench_copy (provider_id, event_id, account_id, event_time, processed_at) FROM STDIN",
        )
        .await?;
    for chunk in text.as_bytes().chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    copy.finish().await?;
    let copy_rate = n as f64 / t0.elapsed().as_secs_f64();
    Ok((produce, consume, copy_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog(accounts: usize, skus: usize) -> Catalog {
        Catalog {
            provider_ids: vec!["p0".into()],
            provider_keys: vec![String::new()],
            skus: vec![(0..skus)
                .map(|s| (format!("p0.sku{s}"), Decimal::ONE))
                .collect()],
            accounts: (0..accounts).map(|i| format!("a{i}")).collect(),
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
}
