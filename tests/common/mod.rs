//! Shared harness of the end-to-end tests: each test gets its own database,
//! its own topics and consumer groups (by prefix) on the test run's Apache
//! Kafka, which `bash deploy/dev.sh test` starts once for the whole run.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::time::Duration;
use tally::infra;
use tally::up::{self, Running, Service};
use tally_platform::Config;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub config: Config,
    pub pool: PgPool,
}

/// The test run's Kafka: `KAFKA_BROKERS`, else one already on 127.0.0.1:9092.
pub fn test_kafka() -> String {
    if let Some(brokers) = std::env::var("KAFKA_BROKERS")
        .ok()
        .filter(|b| !b.trim().is_empty())
    {
        return brokers;
    }
    let local = std::net::SocketAddr::from(([127, 0, 0, 1], 9092));
    assert!(
        infra::port_open(local),
        "no Kafka for the tests: run them with `bash deploy/dev.sh test`, \
         or set KAFKA_BROKERS (e.g. after `tally local kafka --dir .tally/kafka`)"
    );
    local.to_string()
}

impl Harness {
    pub async fn new() -> Harness {
        Harness::on(&test_kafka()).await
    }

    /// A harness whose pipeline uses the Kafka at `brokers`.
    pub async fn on(brokers: &str) -> Harness {
        tally_platform::telemetry::init_logging();
        let server = infra::ensure_postgres().await.unwrap();
        Harness::with(brokers, &server).await
    }

    /// A harness on the Kafka at `brokers` and the PostgreSQL server at `server`.
    pub async fn with(brokers: &str, server: &str) -> Harness {
        Harness::build(brokers, server, |_| {}).await
    }

    /// Like [`Harness::with`], its configuration adjusted before the
    /// database and topics are prepared.
    pub async fn build(brokers: &str, server: &str, adjust: impl FnOnce(&mut Config)) -> Harness {
        tally_platform::telemetry::init_logging();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut config = Config {
            database_url: tally::demo::with_database(
                server,
                &tally_platform::db::scratch_name("tally_e2e"),
            ),
            kafka_brokers: brokers.to_owned(),
            topic_prefix: format!("t{id}."),
            group_prefix: format!("t{id}"),
            usage_partitions: 4,
            collector_addr: "127.0.0.1:0".parse().unwrap(),
            api_addr: "127.0.0.1:0".parse().unwrap(),
            admin_addr: Some("127.0.0.1:0".parse().unwrap()),
            kafka_session_timeout: Duration::from_secs(6),
            batch_max: 2000,
            batch_wait: Duration::from_millis(50),
            // Two lanes (the default is one): pipeline tests rate through
            // rating's lanes (a batch that holds messages of partitions in
            // both lanes rates them side by side).
            rating_lanes: 2,
            // Tests close periods when they mean to (`lifecycle::request_seals`).
            close_every: None,
            ..Config::default()
        };
        adjust(&mut config);
        tally_platform::prepare(&config).await.unwrap();
        let pool = tally_platform::db::connect(&config.database_url, 4)
            .await
            .unwrap();
        Harness { config, pool }
    }

    /// Starts `services` inside the test process.
    pub async fn start(&self, services: &[Service]) -> Running {
        up::start(&self.config, services, CancellationToken::new())
            .await
            .unwrap()
    }

    /// Runs one service as a separate `tally up --only <service>` process
    /// (killed when the handle is dropped).
    pub fn spawn(&self, service: &str) -> Spawned {
        Spawned(self.command(service).spawn().unwrap())
    }

    /// `tally up --only <service>` with this harness's settings, to adjust
    /// before spawning.
    pub fn command(&self, service: &str) -> std::process::Command {
        self.tally(&["up", "--only", service])
    }

    /// `tally <args>` with this harness's settings.
    pub fn tally(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tally"));
        cmd.args(args)
            .env("DATABASE_URL", &self.config.database_url)
            .env("KAFKA_BROKERS", &self.config.kafka_brokers)
            .env("TALLY_TOPIC_PREFIX", &self.config.topic_prefix)
            .env("TALLY_GROUP_PREFIX", &self.config.group_prefix)
            .env(
                "TALLY_USAGE_PARTITIONS",
                self.config.usage_partitions.to_string(),
            )
            .env("TALLY_KAFKA_SESSION_TIMEOUT_MS", "6000")
            .env("TALLY_BATCH_MAX", self.config.batch_max.to_string())
            .env("TALLY_RATING_LANES", self.config.rating_lanes.to_string())
            .env("TALLY_BATCH_WAIT_MS", "50")
            .env("TALLY_CLOSE_EVERY_SECS", "0")
            .env("TALLY_COLLECTOR_ADDR", "127.0.0.1:0")
            .env("TALLY_API_ADDR", "127.0.0.1:0")
            .env("TALLY_ADMIN_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null());
        cmd
    }
}

/// A usage CloudEvent.
pub fn event(
    id: &str,
    provider: &str,
    account: &str,
    sku: &str,
    quantity: &str,
    time: DateTime<Utc>,
) -> Value {
    json!({
        "specversion": "1.0",
        "id": id,
        "source": provider,
        "type": "com.tally.usage",
        "subject": account,
        "time": time.to_rfc3339(),
        "data": {"sku": sku, "quantity": quantity},
    })
}

/// POSTs a batch; returns (status, body).
pub async fn post_events(
    http: &reqwest::Client,
    collector: &str,
    key: &str,
    events: &[Value],
) -> (u16, Value) {
    let response = http
        .post(format!("{collector}/v1/events"))
        .bearer_auth(key)
        .header("content-type", "application/cloudevents-batch+json")
        .json(events)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GET with a bearer key; returns (status, body).
pub async fn get(http: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let response = http.get(url).bearer_auth(key).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// GET with a bearer key; returns the body as text (pages, CSV, raw JSON).
pub async fn get_text(http: &reqwest::Client, url: &str, key: &str) -> String {
    http.get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// `method` ("get" or "post", with the JSON `body`) `url` with `key`: the
/// status and the JSON answer (null when it is not JSON).
pub async fn send(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    key: &str,
    body: Value,
) -> (u16, Value) {
    let request = match method {
        "get" => http.get(url),
        _ => http.post(url).json(&body),
    };
    let response = request.bearer_auth(key).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// Polls the bill of each account-period until its total equals `expected`
/// (or the deadline passes); returns the bills as last seen.
pub async fn wait_for_totals(
    http: &reqwest::Client,
    invoicing: &str,
    finance_key: &str,
    expected: &BTreeMap<(String, String), Decimal>,
    deadline: Duration,
) -> BTreeMap<(String, String), Value> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let mut bills = BTreeMap::new();
        for (account, period) in expected.keys() {
            let (status, body) = get(
                http,
                &format!("{invoicing}/v1/accounts/{account}/bill?period={period}"),
                finance_key,
            )
            .await;
            if status == 200 {
                bills.insert((account.clone(), period.clone()), body);
            }
        }
        let done = expected.iter().all(|(k, total)| {
            bills.get(k).and_then(|b| b["total"].as_str()) == Some(total.to_string().as_str())
        });
        if done || tokio::time::Instant::now() > until {
            return bills;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every line of a bill as (provider id, sku, quantity, amount, event count).
pub fn bill_lines(bill: &Value) -> Vec<(String, String, String, String, i64)> {
    bill["sections"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|section| {
            let provider = section["provider"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            section["lines"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |l| {
                    (
                        provider.clone(),
                        l["sku"].as_str().unwrap_or_default().to_owned(),
                        l["quantity"].as_str().unwrap_or_default().to_owned(),
                        l["amount"].as_str().unwrap_or_default().to_owned(),
                        l["event_count"].as_i64().unwrap_or(-1),
                    )
                })
        })
        .collect()
}

pub struct Keys {
    pub cloud: String,
    pub dbco: String,
    pub queueco: String,
    pub acme: String,
    pub umbrella: String,
    pub finance: String,
    pub admin: String,
}

/// USD and EUR prices of the test catalog; `None` where a SKU has no price.
pub fn price(sku: &str, currency: &str) -> Option<Decimal> {
    let (usd, eur) = match sku {
        "cloud.vm.hour" => ("0.0416", Some("0.0383")),
        "cloud.egress.gb" => ("0.09", None),
        "dbco.db.hour" => ("0.2475", Some("0.228")),
        "queueco.msg.million" => ("0.405", Some("0.375")),
        _ => return None,
    };
    let text = if currency == "USD" { Some(usd) } else { eur };
    text.map(|t| t.parse().unwrap())
}

/// The platform (`cloud`, first-party) and two partners, four SKUs, two
/// accounts (`acme` in USD, `umbrella` in EUR), prices since `since`.
pub async fn seed_catalog(pool: &PgPool, since: DateTime<Utc>) -> Keys {
    use tally_domain::ProviderKind::{FirstParty, Partner};
    let cloud = tally::admin::create_provider(pool, "cloud", "Stratus Cloud", FirstParty)
        .await
        .unwrap();
    let dbco = tally::admin::create_provider(pool, "dbco", "DB Co", Partner)
        .await
        .unwrap();
    let queueco = tally::admin::create_provider(pool, "queueco", "Queue Co", Partner)
        .await
        .unwrap();
    for (sku, provider, name, unit) in [
        ("cloud.vm.hour", "cloud", "Virtual machines", "hour"),
        ("cloud.egress.gb", "cloud", "Egress", "GB"),
        ("dbco.db.hour", "dbco", "Managed database", "hour"),
        ("queueco.msg.million", "queueco", "Messages", "million"),
    ] {
        tally::admin::create_sku(pool, sku, provider, name, unit)
            .await
            .unwrap();
        for currency in ["USD", "EUR"] {
            if let Some(p) = price(sku, currency) {
                tally::admin::set_price(pool, sku, currency, p, since)
                    .await
                    .unwrap();
            }
        }
    }
    Keys {
        cloud,
        dbco,
        queueco,
        acme: tally::admin::create_account(pool, "acme", "Acme Inc", "USD")
            .await
            .unwrap(),
        umbrella: tally::admin::create_account(pool, "umbrella", "Umbrella GmbH", "EUR")
            .await
            .unwrap(),
        finance: tally::admin::create_staff_key(pool, "finance")
            .await
            .unwrap(),
        admin: tally::admin::create_staff_key(pool, "admin").await.unwrap(),
    }
}

pub fn currency_of(account: &str) -> &'static str {
    if account == "umbrella" {
        "EUR"
    } else {
        "USD"
    }
}

/// Usage the test expects to be billed: (account, period, sku) → quantity.
#[derive(Default)]
pub struct Expected {
    pub quantities: BTreeMap<(String, String, String), Decimal>,
    pub events: BTreeMap<(String, String, String), i64>,
}

impl Expected {
    pub fn add(&mut self, account: &str, time: DateTime<Utc>, sku: &str, quantity: &str) {
        let period = time.format("%Y-%m").to_string();
        let key = (account.to_owned(), period, sku.to_owned());
        *self.quantities.entry(key.clone()).or_default() += quantity.parse::<Decimal>().unwrap();
        *self.events.entry(key).or_default() += 1;
    }

    /// Each line's amount: quantity × price, rounded once to cents, half away from zero.
    pub fn line_amount(&self, key: &(String, String, String)) -> Decimal {
        let q = self.quantities[key];
        let p = price(&key.2, currency_of(&key.0)).unwrap();
        (q * p).round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    }

    /// Invoice totals: the sum of rounded lines per account-period.
    pub fn totals(&self) -> BTreeMap<(String, String), Decimal> {
        let mut totals: BTreeMap<(String, String), Decimal> = BTreeMap::new();
        for key in self.quantities.keys() {
            *totals.entry((key.0.clone(), key.1.clone())).or_default() += self.line_amount(key);
        }
        totals
    }
}

impl Seeded {
    /// `method` on the API's `path` with `key` (and `body`, for a POST):
    /// (status, body).
    pub async fn call(&self, method: &str, path: &str, key: &str, body: Value) -> (u16, Value) {
        send(
            &self.http,
            method,
            &format!("{}{path}", self.invoicing),
            key,
            body,
        )
        .await
    }
}

/// `x` rounded to cents, half away from zero, with two decimals (`5.00`).
pub fn cents(x: Decimal) -> Decimal {
    let mut rounded =
        x.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}

/// A seeded pipeline: the harness, the test catalog (prices since 60 days
/// ago), `services` running in this process, and an HTTP client.
pub struct Seeded {
    pub h: Harness,
    pub now: DateTime<Utc>,
    pub keys: Keys,
    pub running: Running,
    /// Empty when the collector is not among the services.
    pub collector: String,
    /// The API's base URL (the field keeps its name from before the API
    /// left invoicing); empty when the API is not among the services.
    pub invoicing: String,
    pub http: reqwest::Client,
}

impl Seeded {
    pub async fn start(services: &[Service]) -> Seeded {
        Seeded::start_with(services, 60, |_| {}).await
    }

    /// Like [`Seeded::start`], with prices since `price_days` ago and the
    /// services' configuration adjusted first.
    pub async fn start_with(
        services: &[Service],
        price_days: i64,
        adjust: impl FnOnce(&mut Config),
    ) -> Seeded {
        let mut h = Harness::new().await;
        adjust(&mut h.config);
        Seeded::start_in(h, services, price_days).await
    }

    /// Like [`Seeded::start`], on the harness `h`.
    pub async fn start_in(h: Harness, services: &[Service], price_days: i64) -> Seeded {
        let now = Utc::now();
        let keys = seed_catalog(&h.pool, now - chrono::Duration::days(price_days)).await;
        let running = h.start(services).await;
        Seeded {
            collector: running.collector_url().unwrap_or_default(),
            invoicing: running.api_url().unwrap_or_default(),
            h,
            now,
            keys,
            running,
            http: reqwest::Client::new(),
        }
    }
}

/// The collector, rating, invoicing and the API, with prices and ingest
/// reaching back 120 days (for tests that bill the month before the open
/// one).
pub async fn pipeline() -> Seeded {
    pipeline_with(|_| {}).await
}

/// Like [`pipeline`], with the configuration adjusted further by `adjust`.
pub async fn pipeline_with(adjust: impl FnOnce(&mut Config)) -> Seeded {
    Seeded::start_with(
        &[
            Service::Collector,
            Service::Rating,
            Service::Invoicing,
            Service::Api,
        ],
        120,
        |c| {
            c.ingest_max_age = std::time::Duration::from_secs(120 * 86_400);
            adjust(c);
        },
    )
    .await
}

/// `n` usage events, the three providers in turn (one SKU each), spread over
/// `accounts` (USD, `umbrella` EUR) within the last day, in POST batches of
/// `batch` events of one provider, the providers taking turns; and what
/// they should bill. Returns (API key, events) per POST.
pub fn usage_stream(
    keys: &Keys,
    now: DateTime<Utc>,
    accounts: &[String],
    n: usize,
    batch: usize,
) -> (Vec<(String, Vec<Value>)>, Expected) {
    let plan = [
        ("cloud", keys.cloud.clone(), "cloud.vm.hour"),
        ("dbco", keys.dbco.clone(), "dbco.db.hour"),
        ("queueco", keys.queueco.clone(), "queueco.msg.million"),
    ];
    let mut expected = Expected::default();
    let mut per_provider: Vec<Vec<Value>> = vec![Vec::new(); plan.len()];
    for i in 0..n {
        let (provider, _, sku) = &plan[i % 3];
        let account = &accounts[(i / 3) % accounts.len()];
        let quantity = format!("{}.{:02}", i % 13, i % 100);
        let time = now - chrono::Duration::seconds(30 + (i % 86_400) as i64);
        per_provider[i % 3].push(event(
            &format!("{provider}-{i}"),
            provider,
            account,
            sku,
            &quantity,
            time,
        ));
        expected.add(account, time, sku, &quantity);
    }
    let chunked: Vec<Vec<Vec<Value>>> = per_provider
        .into_iter()
        .map(|events| events.chunks(batch).map(<[_]>::to_vec).collect())
        .collect();
    let mut batches = Vec::new();
    for round in 0..chunked.iter().map(Vec::len).max().unwrap_or(0) {
        for (p, chunks) in chunked.iter().enumerate() {
            if let Some(chunk) = chunks.get(round) {
                batches.push((plan[p].1.clone(), chunk.clone()));
            }
        }
    }
    (batches, expected)
}

/// POSTs `batches` one after another, `pause` apart, each answered 202 in
/// full; returns how many events were accepted.
pub fn send_stream(
    http: &reqwest::Client,
    collector: &str,
    batches: Vec<(String, Vec<Value>)>,
    pause: Duration,
) -> tokio::task::JoinHandle<u64> {
    let (http, collector) = (http.clone(), collector.to_owned());
    tokio::spawn(async move {
        let mut accepted = 0u64;
        for (key, events) in batches {
            let (status, body) = post_events(&http, &collector, &key, &events).await;
            assert_eq!(status, 202, "{body}");
            assert_eq!(
                body["accepted"].as_u64(),
                Some(events.len() as u64),
                "{body}"
            );
            accepted += events.len() as u64;
            tokio::time::sleep(pause).await;
        }
        accepted
    })
}

/// USD accounts `acct-00`, `acct-01`, …: enough keys to reach every partition.
pub async fn create_accounts(pool: &PgPool, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("acct-{i:02}");
        tally::admin::create_account(pool, &id, &format!("Account {i}"), "USD")
            .await
            .unwrap();
        ids.push(id);
    }
    ids
}

/// A counter of the Prometheus text, 0 when absent.
pub fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Events rating has counted so far.
pub async fn counted(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM counted_events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Waits until every invoice equals what `expected` bills, then asserts
/// each total and that exactly `events` events were billed.
pub async fn assert_exact_invoices(
    s: &Seeded,
    expected: &Expected,
    events: usize,
    within: Duration,
) {
    let totals = expected.totals();
    let bills = wait_for_totals(&s.http, &s.invoicing, &s.keys.finance, &totals, within).await;
    let mut billed_events = 0;
    for (key, total) in &totals {
        let bill = bills
            .get(key)
            .unwrap_or_else(|| panic!("no invoice for {key:?}"));
        assert_eq!(
            bill["total"].as_str().unwrap(),
            total.to_string(),
            "{key:?}"
        );
        billed_events += bill_lines(bill).iter().map(|l| l.4).sum::<i64>();
    }
    assert_eq!(billed_events, events as i64);
}

/// Prints a test's figures, and adds them to `TALLY_TEST_REPORT` when set
/// (`bash deploy/dev.sh test` prints that file at the end of the run, as
/// cargo hides a passing test's output).
pub fn report(line: &str) {
    println!("{line}");
    if let Ok(path) = std::env::var("TALLY_TEST_REPORT") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        writeln!(file, "{line}").unwrap();
    }
}

/// A PostgreSQL cluster of one test's own (an outage there touches no other
/// test), stopped and removed when dropped, even when the test fails.
pub struct PrivatePostgres {
    pub root: std::path::PathBuf,
    pub data: std::path::PathBuf,
    pub port: u16,
    /// Its certificates, when it takes only TLS.
    pub certs: Option<infra::tls::Certs>,
}

impl PrivatePostgres {
    pub async fn start() -> PrivatePostgres {
        PrivatePostgres::start_with(false).await
    }

    /// One that refuses every connection without TLS.
    pub async fn start_tls() -> PrivatePostgres {
        PrivatePostgres::start_with(true).await
    }

    async fn start_with(tls: bool) -> PrivatePostgres {
        let root = std::env::temp_dir().join(format!("tally-pg-{}", uuid::Uuid::new_v4().simple()));
        let mut pg = PrivatePostgres {
            data: root.join("data"),
            root,
            port: infra::free_port().unwrap(),
            certs: None,
        };
        if tls {
            pg.certs = Some(infra::tls::Certs::make(&pg.root.join("tls")).unwrap());
        }
        pg.restart().await;
        pg
    }

    /// The server's URL (`sslmode=verify-full` against its CA when TLS).
    pub fn server(&self) -> String {
        let base = format!("postgres://postgres@127.0.0.1:{}/postgres", self.port);
        match &self.certs {
            Some(certs) => format!(
                "{base}?sslmode=verify-full&sslrootcert={}",
                certs.ca.display()
            ),
            None => base,
        }
    }

    /// Stops at once, as a crash would.
    pub async fn crash(&self) {
        infra::postgres::stop_private_postgres(&self.data, "immediate")
            .await
            .unwrap();
    }

    pub async fn restart(&self) {
        match &self.certs {
            Some(certs) => {
                infra::postgres::start_private_postgres_tls(&self.data, self.port, certs).await
            }
            None => infra::postgres::start_private_postgres(&self.data, self.port).await,
        }
        .unwrap();
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        infra::postgres::stop_private_postgres_now(&self.data, "immediate");
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A child process killed (and waited for) when dropped, so a failed test
/// leaves no service running.
pub struct Spawned(pub std::process::Child);

impl std::ops::Deref for Spawned {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        &self.0
    }
}

impl std::ops::DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        &mut self.0
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Signs in on the bill page as a browser does: `GET /login` (its nonce
/// cookie and form field), then `POST /login` with `token`. Returns the
/// POST's response (`http` must not follow redirects).
pub async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> reqwest::Response {
    let form = http.get(format!("{base}/login")).send().await.unwrap();
    let cookie = set_cookie(&form, "tally_login").unwrap_or_default();
    let page = form.text().await.unwrap();
    let nonce = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned();
    http.post(format!("{base}/login"))
        .header("cookie", cookie)
        .form(&[("token", token), ("csrf", nonce.as_str())])
        .send()
        .await
        .unwrap()
}

/// The `name=value` of the response's `Set-Cookie` for `name`.
pub fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// Waits until rating has committed every message on `usage.events` (its
/// group's committed offsets reach the partitions' ends): everything sent
/// so far is rated. Panics after `deadline`.
pub async fn wait_until_rated(h: &Harness, deadline: Duration) {
    wait_until_committed(h, "rating", &h.config.topics().usage_events, deadline).await
}

/// Waits until the consumer group of `service` has committed the end of
/// every partition of `topic` (which has `usage_partitions` partitions).
pub async fn wait_until_committed(h: &Harness, service: &str, topic: &str, deadline: Duration) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let observer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &h.config.kafka_brokers)
        .set("group.id", h.config.group(service))
        .create()
        .unwrap();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let mut list = rdkafka::TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in 0..h.config.usage_partitions {
            list.add_partition(topic, p);
            let (_, high) = observer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .unwrap();
            ends.push(high);
        }
        let committed: Vec<i64> = observer
            .committed_offsets(list, Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .map(|e| match e.offset() {
                rdkafka::Offset::Offset(o) => o,
                _ => 0,
            })
            .collect();
        if committed == ends {
            return;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "{service} did not catch up on {topic}: committed {committed:?}, ends {ends:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
