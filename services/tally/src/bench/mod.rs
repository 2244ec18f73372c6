//! `tally bench`: drives a running pipeline (the three services as separate
//! `tally up --only …` processes on the embedded default, or on the Kafka and
//! PostgreSQL that `KAFKA_BROKERS` / `DATABASE_URL` name) and measures
//! collector ingest, end-to-end throughput with exact totals, freshness at a
//! steady rate, the raw ceilings of the broker and PostgreSQL underneath, and
//! each service's peak memory; with several rating or invoicing instances
//! (`--churn`: leaving and joining during the run), what each one did.

use anyhow::bail;
use chrono::{DateTime, Duration as TimeDelta, Utc};
use hdrhistogram::Histogram;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tally_domain::Period;
use tally_platform::Config;

use crate::infra;

mod args;
mod churn;
mod figures;
mod freshness;
mod history;
mod instances;
pub mod profile;
mod raw;
mod services;
pub mod table;
mod workload;

pub use args::BenchArgs;
use figures::{published_statements, table_sizes, Knobs};
use freshness::freshness;
use instances::{InstanceFigures, Instances};
use raw::{ceilings, kafka_ingest};
use services::{post_batch, spawn, wait_healthy, Ports};
use workload::{expected_totals, seed, store_history, zipf_cdf, Gen};

#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// The shape of the load this run had.
    pub knobs: Knobs,
    /// Seeding the catalog, the accounts, their grants and contracts, s.
    pub seed_seconds: f64,
    /// Storing `--history-months` and `--history-events`, s.
    pub history_seconds: f64,
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
    /// The same per table (a partitioned table with its partitions), for
    /// the tables that grew.
    pub table_mib_per_million_events: BTreeMap<String, f64>,
    /// Statement versions written during the throughput run, per event
    /// (restatements; each is stored and published on `billing.statements`).
    pub statement_writes_per_event: f64,
    /// Statement bytes written during the throughput run, per event: the
    /// bodies of those versions, read back from `billing.statements` (the
    /// database stores each once more).
    pub statement_bytes_per_event: f64,
    /// CPU time (user + system, `/proc/<pid>/stat`) each service used
    /// during the throughput run, µs per event: rating's is its cost per
    /// event.
    pub cpu_us_per_event: BTreeMap<String, f64>,
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
    /// Peak resident memory (VmHWM) per service, MiB (a service with
    /// several instances: the largest, and each under its instance's name).
    pub peak_rss_mib: BTreeMap<String, f64>,
    /// PostgreSQL's busiest statements of the throughput run, by execution
    /// time (`pg_stat_statements`; empty when the server does not load it).
    pub pg_statements: Vec<profile::PgStatement>,
    /// Partitions of `usage.events` and `billing.statements` (Tally creates
    /// both with `TALLY_USAGE_PARTITIONS`).
    pub usage_partitions: i32,
    /// Each rating and invoicing instance in the throughput run.
    pub instances: Vec<InstanceFigures>,
    /// Accepted events of the throughput run no rating instance's count
    /// covers: those an instance counted after its last `/metrics` read
    /// before it left, and those of a batch's lanes that committed when
    /// another lane failed (the retry finds them duplicates). 0 when no
    /// instance left and no batch failed.
    pub rating_events_unattributed: i64,
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
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

/// Events billed on the invoices of the run's periods (from `since`: not
/// the stored history's) so far.
async fn billed_events(pool: &PgPool, since: DateTime<Utc>) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(sum(l.event_count), 0)::bigint
         FROM invoices i JOIN invoice_lines l ON l.invoice_id = i.id
         WHERE i.period_start >= $1 AND l.kind = 'usage'",
    )
    .bind(since)
    .fetch_one(pool)
    .await?)
}

/// How long to wait before polling [`billed_events`] again, `elapsed` into
/// a phase that has billed `done` of its `target` events: half the time the
/// rate so far says is left, from 250 ms to 2 s (1/4 of `elapsed` while
/// nothing is billed). The poll scans the run's invoice lines: polled every
/// 250 ms it took 18 % of PostgreSQL's execution time in a 100,000-account
/// run, taken from the pipeline it measures; halving the wait toward the
/// predicted end keeps the end's resolution at 250 ms when the rate holds.
fn poll_interval(elapsed: Duration, done: u64, target: u64) -> Duration {
    let floor = Duration::from_millis(250);
    let cap = Duration::from_secs(2);
    let wait = if done == 0 {
        elapsed / 4
    } else {
        let left = target.saturating_sub(done) as f64;
        elapsed.mul_f64(left / done as f64 / 2.0)
    };
    wait.clamp(floor, cap)
}

pub async fn run(mut config: Config, args: &BenchArgs) -> anyhow::Result<Report> {
    let a = args.effective();
    if a.rating_instances == 0 || a.invoicing_instances == 0 {
        bail!("--rating-instances and --invoicing-instances must be at least 1");
    }
    let consumers = a.rating_instances.max(a.invoicing_instances);
    if (config.usage_partitions as usize) < consumers {
        bail!(
            "{consumers} instances in one group need at least as many partitions: set TALLY_USAGE_PARTITIONS (now {})",
            config.usage_partitions
        );
    }
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
    crate::demo::drop_database(&config.database_url, &a.database).await?;
    config.database_url = crate::demo::with_database(&config.database_url, &a.database);
    config.topic_prefix = format!("bench-{run_id}.");
    config.group_prefix = format!("bench-{run_id}");
    tally_platform::prepare(&config).await?;
    let pool = tally_platform::db::connect(&config.database_url, 4).await?;
    let now = Utc::now();
    // The month of the run's earliest event (each is within the hour before `now`).
    let run_period = Period::month_containing(now - TimeDelta::seconds(3600));
    let t0 = Instant::now();
    let catalog = seed(&pool, &a, now - TimeDelta::days(60)).await?;
    let seed_seconds = t0.elapsed().as_secs_f64();
    println!(
        "seed: {} providers × {} SKUs, {} accounts, grants {}, contracts {} % in {seed_seconds:.1} s",
        a.providers, a.skus, a.accounts, a.grants, a.contracts
    );
    let t0 = Instant::now();
    if a.history_events > 0 {
        // Over the stored months when there are any, else the past year.
        let span = match a.history_months {
            0 => TimeDelta::days(365),
            months => now - history::history_start(run_period, months)?,
        };
        store_history(&pool, &catalog, a.history_events, span).await?;
    }
    if a.history_months > 0 {
        history::store_months(&pool, &catalog, run_period, a.history_months, a.lines).await?;
    }
    let history_seconds = t0.elapsed().as_secs_f64();
    if a.history_events > 0 || a.history_months > 0 {
        sqlx::query("ANALYZE").execute(&pool).await?;
        println!(
            "history: {} months, {} earlier counted events stored in {history_seconds:.1} s",
            a.history_months, a.history_events
        );
    }
    println!(
        "bench: {} providers × {} SKUs, {} accounts (zipf {}, lines {}, contracts {} %, history {} months and {} ids, grants {}); {} events in batches of {} from {} clients",
        a.providers, a.skus, a.accounts, a.zipf, a.lines, a.contracts, a.history_months, a.history_events, a.grants, a.events, a.batch_size, a.concurrency
    );
    println!(
        "instances: {} rating, {} invoicing (churn {}); usage.events and billing.statements have {} partitions",
        a.rating_instances, a.invoicing_instances, a.churn, config.usage_partitions
    );

    let (collector_port, api_port) = (infra::free_port()?, infra::free_port()?);
    let ports = Ports {
        collector: collector_port,
        api: api_port,
        admin: 0,
    };
    let services = vec![
        spawn("collector", "collector", &config, ports)?,
        spawn("api", "api", &config, ports)?,
    ];
    let churn_invoicing = a.churn && a.invoicing_instances > 1;
    let mut instances = Instances::start(
        &config,
        collector_port,
        api_port,
        (a.rating_instances, a.invoicing_instances),
        (a.churn, churn_invoicing),
    )?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(a.concurrency * 2)
        .build()?;
    let collector = format!("http://127.0.0.1:{collector_port}");
    wait_healthy(&http, &collector).await?;
    wait_healthy(&http, &format!("http://127.0.0.1:{api_port}")).await?;
    instances.wait_ready().await?;
    let events_url = format!("{collector}/v1/events");

    let mut report = Report {
        knobs: Knobs::of(&a),
        seed_seconds,
        history_seconds,
        events: a.events,
        usage_partitions: config.usage_partitions,
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
    let tables_before = table_sizes(&pool).await?;
    let cpu_before: Vec<Option<f64>> = services.iter().map(|s| s.cpu_seconds()).collect();
    let infra_before = profile::infrastructure_cpu_seconds();
    let profiled = profile::reset(&pool).await;
    let batches = a.events.div_ceil(a.batch_size as u64);
    let next = AtomicU64::new(0);
    let accepted = AtomicU64::new(0);
    let latencies = Mutex::new(Histogram::<u64>::new(3)?);
    instances.scrape().await;
    instances.mark_start();
    let started = Instant::now();
    let plan = churn::plan(a.churn, churn_invoicing);
    let controller = churn::Controller::spawn(instances, plan, a.events, started);
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
        let billed = billed_events(&pool, run_period.start()).await?;
        if billed as u64 >= accepted {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {billed} of {accepted} events reached invoices before the deadline");
        }
        tokio::time::sleep(poll_interval(started.elapsed(), billed as u64, accepted)).await;
    }
    let e2e = started.elapsed();
    let (mut instances, not_taken) = controller.stop().await?;
    instances.scrape().await;
    report.end_to_end_seconds = e2e.as_secs_f64();
    report.end_to_end_events_per_s = accepted as f64 / e2e.as_secs_f64();
    println!(
        "end to end: {accepted} events on draft invoices {:.1} s after the first POST = {:.0} events/s",
        e2e.as_secs_f64(),
        report.end_to_end_events_per_s
    );
    for step in &not_taken {
        println!(
            "churn: not taken before the last event was billed: {:?} of {} ({:?})",
            step.action, step.service, step.when
        );
    }
    report.instances = instances.figures(started, started + e2e);
    let (lines, unattributed) = instances::describe(&report.instances, accepted);
    report.rating_events_unattributed = unattributed;
    println!(
        "per instance, in the throughput run ({unattributed} of the {accepted} events counted by an instance after its last /metrics read before it left):\n{}",
        lines.join("\n")
    );
    for (s, before) in services.iter().zip(cpu_before) {
        if let (Some(before), Some(after)) = (before, s.cpu_seconds()) {
            let us = (after - before) * 1e6 / accepted as f64;
            report.cpu_us_per_event.insert(s.name.to_owned(), us);
        }
    }
    for (name, after) in profile::infrastructure_cpu_seconds() {
        let before = infra_before.get(&name).copied().unwrap_or_default();
        let us = (after - before) * 1e6 / accepted as f64;
        report.cpu_us_per_event.insert(name, us);
    }
    for f in &report.instances {
        // A service's cost per event: all its instances' CPU together.
        *report
            .cpu_us_per_event
            .entry(f.service.clone())
            .or_default() += f.cpu_seconds * 1e6 / accepted as f64;
    }
    let cpu: Vec<String> = report
        .cpu_us_per_event
        .iter()
        .map(|(name, us)| format!("{name} {us:.1}"))
        .collect();
    println!("CPU per event (µs): {}", cpu.join(", "));
    if profiled {
        report.pg_statements = profile::top_statements(&pool, 15).await?;
        println!("PostgreSQL's busiest statements of the run (pg_stat_statements):");
        println!("  share   total ms      calls       rows  WAL MiB  query");
        for s in &report.pg_statements {
            println!(
                "  {:>4.1} % {:>10.0} {:>10} {:>10} {:>8.1}  {}",
                s.share * 100.0,
                s.total_ms,
                s.calls,
                s.rows,
                s.wal_bytes / (1024.0 * 1024.0),
                s.query
            );
        }
    }
    let (db_after, wal_after) = database_size_and_wal(&pool).await?;
    report.wal_bytes_per_event = (wal_after - wal_before) as f64 / accepted as f64;
    report.database_mib_per_million_events =
        (db_after - db_before) as f64 / (1024.0 * 1024.0) / accepted as f64 * 1e6;
    let tables_after = table_sizes(&pool).await?;
    for (table, after) in &tables_after {
        let grew = after - tables_before.get(table).copied().unwrap_or(0);
        if grew > 0 {
            let mib = grew as f64 / (1024.0 * 1024.0) / accepted as f64 * 1e6;
            report
                .table_mib_per_million_events
                .insert(table.clone(), mib);
        }
    }
    let (versions, bytes) = published_statements(&config).await?;
    report.statement_writes_per_event = versions as f64 / accepted as f64;
    report.statement_bytes_per_event = bytes as f64 / accepted as f64;
    println!(
        "writes: {:.0} bytes of WAL per event; the database grew {:.1} MiB per million events; {:.4} statement versions and {:.0} statement bytes per event",
        report.wal_bytes_per_event,
        report.database_mib_per_million_events,
        report.statement_writes_per_event,
        report.statement_bytes_per_event
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
        let phase = Instant::now();
        loop {
            let billed = billed_events(&pool, run_period.start()).await? as u64;
            if billed >= total {
                break;
            }
            if Instant::now() > deadline {
                bail!("the events of usage.ingest did not all reach invoices before the deadline");
            }
            let done = billed.saturating_sub(accepted);
            let wait = poll_interval(phase.elapsed(), done, a.kafka_events);
            tokio::time::sleep(wait).await;
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
    let mut expected = expected_totals(&gen, a.events + a.kafka_events, &freshness.planned)?;
    workload::idle_commitments(&mut expected, &catalog, &run_period.label())?;
    let deadline = Instant::now() + Duration::from_secs(120);
    let exact = loop {
        let rows: Vec<(String, DateTime<Utc>, DateTime<Utc>, Decimal)> =
            // The run's periods only: the stored history is not the run's.
            sqlx::query_as(
                "SELECT account_id, period_start, period_end, total FROM invoices
                 WHERE period_start >= $1",
            )
            .bind(run_period.start())
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
    for (service, name, mib) in instances.peak_rss_mib() {
        let largest = report.peak_rss_mib.entry(service.to_owned()).or_default();
        *largest = largest.max(mib);
        if name != service {
            report.peak_rss_mib.insert(name, mib);
        }
    }
    println!("peak RSS (MiB): {:?}", report.peak_rss_mib);
    drop(services);
    drop(instances);

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
    if let Some(path) = &a.results {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{}", serde_json::to_string(&report)?)?;
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

#[cfg(test)]
mod tests {
    use super::poll_interval;
    use std::time::Duration;

    #[test]
    fn the_billed_events_poll_waits_half_the_predicted_rest_within_its_bounds() {
        let s = Duration::from_secs;
        // 40 of 100 billed in 8 s: 12 s left at that rate, half of it capped at 2 s.
        assert_eq!(poll_interval(s(8), 40, 100), s(2));
        // 90 of 100 in 9 s: 1 s left, half of it.
        assert_eq!(poll_interval(s(9), 90, 100), Duration::from_millis(500));
        // Nearly done, or done: never faster than 250 ms.
        assert_eq!(poll_interval(s(9), 99, 100), Duration::from_millis(250));
        assert_eq!(poll_interval(s(9), 100, 100), Duration::from_millis(250));
        // Nothing billed yet: a quarter of the time so far.
        assert_eq!(poll_interval(s(4), 0, 100), s(1));
        assert_eq!(
            poll_interval(Duration::ZERO, 0, 100),
            Duration::from_millis(250)
        );
    }
}
